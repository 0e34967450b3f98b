//! The binary's verbs, run as subprocesses against wiremock fakes of Entra
//! ID and Dataverse.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod email;
mod logs;
mod metrics;
mod render;
mod send_test_lead;
