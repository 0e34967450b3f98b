//! The operator verbs other than `serve`. Binary-side code: errors are
//! `anyhow`, messages are written for a person at a terminal.

pub mod check;
pub mod deliveries;
pub mod render;
pub mod send_test_lead;

use anyhow::Context;

/// The offline verbs need no runtime; the ones that talk HTTP build one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
