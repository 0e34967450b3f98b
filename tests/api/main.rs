//! End-to-end tests: real server, real SQLite file, faked Microsoft endpoints.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod delivery;
mod intake;
mod metadata;
mod restart;
mod tokens;
