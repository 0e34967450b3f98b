//! End-to-end tests: real server, real SQLite file, faked Microsoft endpoints.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod blocking;
mod credentials;
mod delivery;
mod durability;
mod email;
mod email_tls;
mod history;
mod hostile;
mod intake;
mod listener;
mod metadata;
mod pauses;
mod reload;
mod restart;
mod throttling;
mod tokens;
