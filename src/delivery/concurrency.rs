//! Per-organization adaptive concurrency (AIMD): start at the configured cap,
//! halve on 429, grow back by one per "window" of successes, and never above
//! what Dataverse recommends in `x-ms-dop-hint`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::lead::OrgName;

#[derive(Debug)]
struct OrgLimit {
    /// Current allowed parallelism; fractional so that additive increase can
    /// be spread over many successes.
    limit: f64,
    /// The most we may grow to: the configured cap, or the DOP hint if lower.
    ceiling: usize,
    in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct AdaptiveLimits {
    cap: usize,
    orgs: Arc<Mutex<HashMap<OrgName, OrgLimit>>>,
}

/// A slot of an organization's concurrency; given back on drop.
#[derive(Debug)]
pub struct Slot {
    org: OrgName,
    limits: AdaptiveLimits,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits
            .with(&self.org, |o| o.in_flight = o.in_flight.saturating_sub(1));
    }
}

impl AdaptiveLimits {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            orgs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn with<R>(&self, org: &OrgName, f: impl FnOnce(&mut OrgLimit) -> R) -> R {
        let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = orgs.entry(org.clone()).or_insert_with(|| OrgLimit {
            limit: self.cap as f64,
            ceiling: self.cap,
            in_flight: 0,
        });
        f(entry)
    }

    pub fn try_acquire(&self, org: &OrgName) -> Option<Slot> {
        let ok = self.with(org, |o| {
            let allowed = (o.limit.floor() as usize).max(1);
            if o.in_flight < allowed {
                o.in_flight += 1;
                true
            } else {
                false
            }
        });
        ok.then(|| Slot {
            org: org.clone(),
            limits: self.clone(),
        })
    }

    /// Organizations that cannot take another request now.
    pub fn full(&self) -> Vec<OrgName> {
        let orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        orgs.iter()
            .filter(|(_, o)| o.in_flight >= (o.limit.floor() as usize).max(1))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn on_success(&self, org: &OrgName, dop_hint: Option<usize>) {
        let cap = self.cap;
        self.with(org, |o| {
            if let Some(hint) = dop_hint {
                o.ceiling = hint.clamp(1, cap);
            }
            o.limit = (o.limit + 1.0 / o.limit.max(1.0)).min(o.ceiling as f64);
        });
    }

    pub fn on_throttled(&self, org: &OrgName) {
        self.with(org, |o| o.limit = (o.limit / 2.0).max(1.0));
    }

    /// The current limit (for logs and tests).
    pub fn limit(&self, org: &OrgName) -> usize {
        self.with(org, |o| (o.limit.floor() as usize).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_429_and_grows_back_to_the_cap() {
        let l = AdaptiveLimits::new(8);
        let org = OrgName::parse("contoso").unwrap();
        assert_eq!(l.limit(&org), 8);
        l.on_throttled(&org);
        assert_eq!(l.limit(&org), 4);
        l.on_throttled(&org);
        l.on_throttled(&org);
        l.on_throttled(&org);
        assert_eq!(l.limit(&org), 1, "never below one");
        for _ in 0..200 {
            l.on_success(&org, None);
        }
        assert_eq!(l.limit(&org), 8, "back to the cap, not beyond");
    }

    #[test]
    fn follows_the_dop_hint_below_the_cap() {
        let l = AdaptiveLimits::new(8);
        let org = OrgName::parse("contoso").unwrap();
        l.on_success(&org, Some(3));
        assert_eq!(l.limit(&org), 3);
        l.on_success(&org, Some(50));
        for _ in 0..100 {
            l.on_success(&org, Some(50));
        }
        assert_eq!(l.limit(&org), 8, "a hint above the cap does not raise it");
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let l = AdaptiveLimits::new(2);
        let org = OrgName::parse("contoso").unwrap();
        let a = l.try_acquire(&org).unwrap();
        let _b = l.try_acquire(&org).unwrap();
        assert!(l.try_acquire(&org).is_none());
        assert_eq!(l.full(), vec![org.clone()]);
        drop(a);
        assert!(l.full().is_empty());
        assert!(l.try_acquire(&org).is_some());
    }
}
