//! The operator verbs, one module each. Binary-side code: errors are
//! `anyhow`, messages are written for a person at a terminal.

pub mod check;
pub mod deliveries;
pub mod render;
pub mod send_test_lead;
pub mod serve;

use std::path::PathBuf;

use anyhow::Context;

use leadbridge::config::DEFAULT_CONFIG_PATH;

/// Every verb takes the same `--config`, so one `LEADBRIDGE_CONFIG` in the
/// environment serves them all. A verb that needs it hidden or global says so
/// with `mut_arg("config", ..)` on its own `Args`.
#[derive(clap::Args)]
pub struct ConfigArg {
    #[arg(
        id = "config",
        long = "config",
        value_name = "CONFIG",
        env = "LEADBRIDGE_CONFIG",
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub path: PathBuf,
}

/// The offline verbs need no runtime; the ones that talk HTTP build one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
