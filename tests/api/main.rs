//! End-to-end tests: real server, real SQLite file, faked Microsoft endpoints.

#[path = "../common/mod.rs"]
mod common;

mod delivery;
mod durability;
mod intake;
mod restart;
mod tokens;
