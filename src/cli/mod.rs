//! Command-line verbs beyond `serve`.

pub mod deliveries;
