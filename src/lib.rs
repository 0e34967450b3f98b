//! leadbridge: Microsoft commercial-marketplace leads into Dynamics 365.

pub mod admin;
pub mod auth;
pub mod config;
pub mod dataverse;
pub mod delivery;
pub mod http_client;
pub mod intake;
pub mod lead;
pub mod mapping;
pub mod metrics;
pub mod startup;
pub mod store;
pub mod telemetry;
