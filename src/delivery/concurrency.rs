//! Per-organization adaptive concurrency (AIMD): start at the configured cap,
//! halve on 429, grow back by one per "window" of successes, and never above
//! what Dataverse recommends in `x-ms-dop-hint`. A 429 also remembers the
//! level that caused it: growth stops just below it, and probes one higher
//! only after a long run of successes, so a steady limit is not hit over and
//! over (each hit pauses the whole organization for Retry-After).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::lead::OrgName;

#[derive(Debug)]
struct OrgLimit {
    /// Current allowed parallelism; fractional so that additive increase can
    /// be spread over many successes.
    limit: f64,
    /// The most we may grow to: the configured cap, or the DOP hint if lower.
    ceiling: usize,
    /// Just below the level of the last 429, if one was seen.
    learned: Option<usize>,
    /// When the learned level was last set or raised.
    since_probe: Instant,
    /// When the limit was last cut: the other 429s of the same burst
    /// must not cut it again.
    last_cut: Option<Instant>,
    in_flight: usize,
}

/// Time without a 429 before trying one more in flight than the learned
/// level: every probe that fails pauses the organization for Retry-After.
const PROBE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct AdaptiveLimits {
    cap: usize,
    burst: Duration,
    probe_after: Duration,
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
            burst: Duration::from_secs(1),
            probe_after: PROBE_AFTER,
            orgs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn with<R>(&self, org: &OrgName, f: impl FnOnce(&mut OrgLimit) -> R) -> R {
        let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = orgs.entry(org.clone()).or_insert_with(|| OrgLimit {
            limit: self.cap as f64,
            ceiling: self.cap,
            learned: None,
            since_probe: Instant::now(),
            last_cut: None,
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

    /// The most free slots any of `orgs` has: a claim larger than that would
    /// only hand deliveries straight back.
    pub fn most_available<'a>(&self, orgs: impl IntoIterator<Item = &'a OrgName>) -> usize {
        orgs.into_iter()
            .map(|org| {
                self.with(org, |o| {
                    (o.limit.floor() as usize)
                        .max(1)
                        .saturating_sub(o.in_flight)
                })
            })
            .max()
            .unwrap_or(0)
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
        let probe_after = self.probe_after;
        self.with(org, |o| {
            if let Some(hint) = dop_hint {
                o.ceiling = hint.clamp(1, cap);
            }
            if let Some(learned) = o.learned.as_mut()
                && o.since_probe.elapsed() >= probe_after
            {
                o.since_probe = Instant::now();
                *learned += 1;
            }
            let top = o.learned.map_or(o.ceiling, |l| l.min(o.ceiling));
            o.limit = (o.limit + 1.0 / o.limit.max(1.0)).min(top as f64);
        });
    }

    pub fn on_throttled(&self, org: &OrgName) {
        let burst = self.burst;
        self.with(org, |o| {
            let now = Instant::now();
            if o.last_cut.is_some_and(|t| now.duration_since(t) < burst) {
                return;
            }
            o.last_cut = Some(now);
            // The requests in flight when the 429 came (this one included).
            let level = if o.in_flight > 0 {
                o.in_flight
            } else {
                o.limit.floor() as usize
            };
            o.learned = Some(level.saturating_sub(1).max(1));
            o.since_probe = now;
            o.limit = (o.limit / 2.0).max(1.0);
        });
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
    fn one_cut_per_burst_of_429s() {
        let l = AdaptiveLimits::new(8);
        let org = OrgName::parse("contoso").unwrap();
        l.on_throttled(&org);
        l.on_throttled(&org);
        assert_eq!(
            l.limit(&org),
            4,
            "the second 429 of the burst is the same event"
        );
    }

    #[test]
    fn halves_on_429_and_grows_back_to_the_cap() {
        let mut l = AdaptiveLimits::new(8);
        l.burst = Duration::ZERO;
        let org = OrgName::parse("contoso").unwrap();
        assert_eq!(l.limit(&org), 8);
        l.on_throttled(&org);
        assert_eq!(l.limit(&org), 4);
        for _ in 0..100 {
            l.on_success(&org, None);
        }
        assert_eq!(l.limit(&org), 7, "back up to just below where the 429 came");
        l.on_throttled(&org);
        l.on_throttled(&org);
        l.on_throttled(&org);
        l.on_throttled(&org);
        assert_eq!(l.limit(&org), 1, "never below one");
        for _ in 0..200 {
            l.on_success(&org, None);
        }
        assert_eq!(l.limit(&org), 1, "the last 429 came at one");
        for _ in 0..100 {
            l.on_success(&org, None);
        }
        assert_eq!(l.limit(&org), 1, "no probing before probe_after");
        l.probe_after = Duration::ZERO;
        for _ in 0..100 {
            l.on_success(&org, None);
        }
        assert_eq!(
            l.limit(&org),
            8,
            "after quiet periods it probes higher, up to the cap"
        );
    }

    #[test]
    fn remembers_the_level_that_was_throttled() {
        let l = AdaptiveLimits::new(32);
        let org = OrgName::parse("contoso").unwrap();
        let slots: Vec<_> = (0..17).filter_map(|_| l.try_acquire(&org)).collect();
        assert_eq!(slots.len(), 17);
        l.on_throttled(&org);
        drop(slots);
        for _ in 0..100 {
            l.on_success(&org, None);
        }
        assert_eq!(
            l.limit(&org),
            16,
            "stops below the 17 in flight that got a 429"
        );
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
