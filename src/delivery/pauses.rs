//! When an organization's destinations are paused (throttled) in this
//! process, checked right before a request goes out. The store keeps the
//! shared copy, which stops other replicas from claiming.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use time::OffsetDateTime;

use crate::store::Destination;

#[derive(Debug, Default)]
pub struct Pauses {
    until: Mutex<HashMap<Destination, OffsetDateTime>>,
}

impl Pauses {
    /// Extends, never shortens, a pause.
    pub fn pause(&self, destination: Destination, until: OffsetDateTime) {
        let mut map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(destination).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    pub fn paused_until(&self, destination: Destination) -> Option<OffsetDateTime> {
        let now = OffsetDateTime::now_utc();
        let map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&destination).copied().filter(|until| *until > now)
    }
}
