//! An organization's adaptive concurrency (AIMD): start at the configured cap,
//! halve on 429, grow back by one per "window" of successes, and never above
//! what Dataverse recommends in `x-ms-dop-hint`. A 429 also remembers the
//! level that caused it: growth stops just below it, and probes one higher
//! only after a long run of successes, so a steady limit is not hit over and
//! over (each hit pauses the whole organization for Retry-After).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
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

impl State {
    fn allowed(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }
}

/// Time without a 429 before trying one more in flight than the learned
/// level: every probe that fails pauses the organization for Retry-After.
const PROBE_AFTER: Duration = Duration::from_secs(60);

/// One organization's concurrency limit.
#[derive(Debug)]
pub struct AdaptiveLimit {
    cap: usize,
    burst: Duration,
    probe_after: Duration,
    state: Mutex<State>,
}

/// A slot of an organization's concurrency; given back on drop.
#[derive(Debug)]
pub struct Slot {
    limit: Arc<AdaptiveLimit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit
            .with(|o| o.in_flight = o.in_flight.saturating_sub(1));
    }
}

impl AdaptiveLimit {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            burst: Duration::from_secs(1),
            probe_after: PROBE_AFTER,
            state: Mutex::new(State {
                limit: cap as f64,
                ceiling: cap,
                learned: None,
                since_probe: Instant::now(),
                last_cut: None,
                in_flight: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // Every update is a handful of assignments: a poisoned lock still
        // holds a usable state.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let ok = self.with(|o| {
            if o.in_flight < o.allowed() {
                o.in_flight += 1;
                true
            } else {
                false
            }
        });
        ok.then(|| Slot {
            limit: Arc::clone(self),
        })
    }

    /// Free slots now: a claim larger than that would only hand deliveries
    /// straight back.
    pub fn available(&self) -> usize {
        self.with(|o| o.allowed().saturating_sub(o.in_flight))
    }

    /// Whether the organization cannot take another request now.
    pub fn is_full(&self) -> bool {
        self.available() == 0
    }

    pub fn on_success(&self, dop_hint: Option<usize>) {
        let cap = self.cap;
        let probe_after = self.probe_after;
        self.with(|o| {
            if let Some(hint) = dop_hint {
                o.ceiling = hint.clamp(1, cap);
            }
            if let Some(learned) = o.learned.as_mut()
                && o.since_probe.elapsed() >= probe_after
            {
                o.since_probe = Instant::now();
                *learned = learned.saturating_add(1);
            }
            let top = o.learned.map_or(o.ceiling, |l| l.min(o.ceiling));
            o.limit = (o.limit + 1.0 / o.limit.max(1.0)).min(top as f64);
        });
    }

    pub fn on_throttled(&self) {
        let burst = self.burst;
        self.with(|o| {
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
    pub fn limit(&self) -> usize {
        self.with(|o| o.allowed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cut_per_burst_of_429s() {
        let l = AdaptiveLimit::new(8);
        l.on_throttled();
        l.on_throttled();
        assert_eq!(
            l.limit(),
            4,
            "the second 429 of the burst is the same event"
        );
    }

    #[test]
    fn halves_on_429_and_grows_back_to_the_cap() {
        let mut l = AdaptiveLimit::new(8);
        l.burst = Duration::ZERO;
        assert_eq!(l.limit(), 8);
        l.on_throttled();
        assert_eq!(l.limit(), 4);
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 7, "back up to just below where the 429 came");
        l.on_throttled();
        l.on_throttled();
        l.on_throttled();
        l.on_throttled();
        assert_eq!(l.limit(), 1, "never below one");
        for _ in 0..200 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 1, "the last 429 came at one");
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 1, "no probing before probe_after");
        l.probe_after = Duration::ZERO;
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(
            l.limit(),
            8,
            "after quiet periods it probes higher, up to the cap"
        );
    }

    #[test]
    fn remembers_the_level_that_was_throttled() {
        let l = Arc::new(AdaptiveLimit::new(32));
        let slots: Vec<_> = (0..17).filter_map(|_| l.try_acquire()).collect();
        assert_eq!(slots.len(), 17);
        l.on_throttled();
        drop(slots);
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 16, "stops below the 17 in flight that got a 429");
    }

    #[test]
    fn follows_the_dop_hint_below_the_cap() {
        let l = AdaptiveLimit::new(8);
        l.on_success(Some(3));
        assert_eq!(l.limit(), 3);
        l.on_success(Some(50));
        for _ in 0..100 {
            l.on_success(Some(50));
        }
        assert_eq!(l.limit(), 8, "a hint above the cap does not raise it");
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let l = Arc::new(AdaptiveLimit::new(2));
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        assert!(l.is_full());
        drop(a);
        assert!(!l.is_full());
        assert!(l.try_acquire().is_some());
    }
}
