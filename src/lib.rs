//! leadbridge: Microsoft commercial-marketplace leads into Dynamics 365.

pub mod lead;
pub mod mapping;
