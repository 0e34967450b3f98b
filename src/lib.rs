//! leadbridge: Microsoft commercial-marketplace leads into Dynamics 365.

pub mod config;
pub mod lead;
pub mod mapping;
pub mod store;
