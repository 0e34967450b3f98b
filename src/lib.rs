//! leadbridge: Microsoft commercial-marketplace leads into Dynamics 365.
//!
//! Inner modules first: `lead`, `mapping`, `entity` and `ids` are pure
//! domain (no I/O); `outbound`, `auth` and `dataverse` are the clients of
//! Microsoft's services; `store` is durable state; `intake` and `delivery`
//! are the two halves of a lead's path; `admin`, `startup` and the rest wire
//! and watch them.

mod admin;
pub mod auth;
pub mod config;
pub mod dataverse;
pub mod delivery;
pub mod email;
pub mod entity;
mod housekeeping;
pub mod ids;
mod intake;
pub mod lead;
pub mod mail;
pub mod mapping;
mod mapping_watch;
mod metrics;
pub mod outbound;
mod secret;
pub mod startup;
pub mod store;
pub mod telemetry;
