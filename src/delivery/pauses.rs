//! Organizations this process knows to be throttled, checked right before a
//! request goes out (the store's copy keeps other replicas from claiming).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

use crate::lead::OrgName;
use crate::store::Destination;

#[derive(Debug, Clone, Default)]
pub struct Pauses {
    until: Arc<Mutex<HashMap<(OrgName, Destination), OffsetDateTime>>>,
}

impl Pauses {
    /// Extends, never shortens, a pause.
    pub fn pause(&self, org: &OrgName, destination: Destination, until: OffsetDateTime) {
        let mut map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry((org.clone(), destination)).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    pub fn paused_until(&self, org: &OrgName, destination: Destination) -> Option<OffsetDateTime> {
        let now = OffsetDateTime::now_utc();
        let map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(org.clone(), destination))
            .copied()
            .filter(|until| *until > now)
    }
}
