//! An organization's adaptive concurrency: slow start, then AIMD.
//!
//! It starts at [`START`] in flight and grows by one per success (doubling
//! every round trip) until the first 429, then halves on 429 and grows back
//! by one per "window" of successes, never above `org_concurrency` (52 by
//! default: Dataverse's limit of concurrent requests per user) nor what
//! Dataverse recommends in `x-ms-dop-hint`, never below one. A 429 also
//! remembers the level that caused it: growth stops just below it, and
//! probes one higher only after a long run of successes, so a steady limit
//! is not hit over and over (each hit pauses the whole organization for
//! Retry-After).
//!
//! Why slow start rather than all 52 at once: every 429 pauses the whole
//! organization for its Retry-After (a second or more). Starting at 52
//! against a user whose real ceiling is lower gets a burst of 429s and then
//! several halvings in a row, each with its pause, before the level fits;
//! doubling from 8 finds the ceiling with one or two 429s and reaches 52
//! within three round trips when there is no lower ceiling. Measured
//! (BENCHMARKS.md, `benches/drain.rs`): against 8 concurrent and 30
//! requests/s, starting at 52 drained 600 leads in 24.1 s with 28 to 67
//! 429s, slow start in 22.5 s with 3; at Dataverse's defaults both drain
//! 1,500 leads at about 500 creates/s.
//!
//! Dataverse's limit on requests per window is different: fewer requests
//! in flight do not help against it, only waiting does, and the pause
//! already waits. So a 429 for that limit (known from its error code,
//! which the Dataverse client reports, see [`AdaptiveLimit::review`]) keeps
//! the level it had: cutting it would only make each window's requests
//! take longer once the pause is over.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::dataverse::Throttles;

/// The level a fresh organization starts at: the fixed default of earlier
/// versions, known to be safe, so that the first round trip is not a burst
/// of 429s if the user's ceiling is low.
const START: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Levels {
    /// Current allowed parallelism; fractional so that additive increase can
    /// be spread over many successes.
    limit: f64,
    /// Just below the level of the last 429, if one was seen.
    learned: Option<usize>,
    /// When the learned level was last set or raised.
    since_probe: Instant,
    /// Before the first 429: grow by one per success.
    slow_start: bool,
}

#[derive(Debug)]
struct State {
    levels: Levels,
    /// The most we may grow to: the configured cap, or the DOP hint if lower.
    ceiling: usize,
    /// When the limit was last cut: the other 429s of the same burst
    /// must not cut it again.
    last_cut: Option<Instant>,
    /// The levels before the last cut, until the 429 that caused it is
    /// known to be of a kind a cut helps against (see [`AdaptiveLimit::review`]).
    before_cut: Option<Levels>,
    in_flight: usize,
}

impl State {
    fn allowed(&self) -> usize {
        (self.levels.limit.floor() as usize).max(1)
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
        Self::starting_at(cap, START)
    }

    fn starting_at(cap: usize, start: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            burst: Duration::from_secs(1),
            probe_after: PROBE_AFTER,
            state: Mutex::new(State {
                levels: Levels {
                    limit: start.clamp(1, cap) as f64,
                    learned: None,
                    since_probe: Instant::now(),
                    slow_start: true,
                },
                ceiling: cap,
                last_cut: None,
                before_cut: None,
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
            let l = &mut o.levels;
            if let Some(learned) = l.learned.as_mut()
                && l.since_probe.elapsed() >= probe_after
            {
                l.since_probe = Instant::now();
                *learned = learned.saturating_add(1);
            }
            let top = l.learned.map_or(o.ceiling, |n| n.min(o.ceiling));
            let step = if l.slow_start {
                1.0
            } else {
                1.0 / l.limit.max(1.0)
            };
            l.limit = (l.limit + step).min(top as f64);
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
            o.before_cut = Some(o.levels);
            // The requests in flight when the 429 came (this one included).
            let level = if o.in_flight > 0 {
                o.in_flight
            } else {
                o.levels.limit.floor() as usize
            };
            let l = &mut o.levels;
            l.learned = Some(level.saturating_sub(1).max(1));
            l.since_probe = now;
            l.slow_start = false;
            l.limit = (l.limit / 2.0).max(1.0);
        });
    }

    /// Settles the last cut with what the Dataverse client saw of the 429s
    /// around it (it sees each one before the worker reports it). A cut
    /// caused by 429s for requests per window only is taken back: the pause
    /// deals with that limit, fewer in flight would only slow the next
    /// window down. Called before each send, so the first call after a cut
    /// comes before the next round of requests.
    pub fn review(&self, seen: Throttles) {
        let burst = self.burst;
        self.with(|o| {
            let (Some(cut), Some(before)) = (o.last_cut, o.before_cut.take()) else {
                return;
            };
            let around_cut =
                |t: Option<Instant>| t.is_some_and(|t| t >= cut.checked_sub(burst).unwrap_or(cut));
            let own_per_window = seen
                .per_window
                .is_some_and(|t| t <= cut && cut.duration_since(t) < burst);
            if own_per_window && !around_cut(seen.other) {
                o.levels = before;
            }
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

    fn per_window(at: Instant) -> Throttles {
        Throttles {
            per_window: Some(at),
            ..Default::default()
        }
    }

    /// Past slow start: at `cap`, after a first 429 would have ended it.
    fn at_cap(cap: usize) -> AdaptiveLimit {
        let l = AdaptiveLimit::starting_at(cap, cap);
        l.with(|o| o.levels.slow_start = false);
        l
    }

    #[test]
    fn slow_start_doubles_each_round_trip_up_to_the_cap() {
        let l = AdaptiveLimit::new(52);
        assert_eq!(l.limit(), START);
        for _ in 0..START {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 2 * START, "one more per success");
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 52, "Dataverse's concurrency per user");
    }

    #[test]
    fn the_first_429_ends_slow_start() {
        let mut l = AdaptiveLimit::starting_at(52, 4);
        l.burst = Duration::ZERO;
        for _ in 0..12 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 16);
        l.on_throttled();
        assert_eq!(l.limit(), 8, "halved");
        for _ in 0..8 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 8, "additive now: +1 per window of 8 successes");
        l.on_success(None);
        assert_eq!(l.limit(), 9);
    }

    #[test]
    fn one_cut_per_burst_of_429s() {
        let l = at_cap(8);
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
        let mut l = at_cap(8);
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
        let l = Arc::new(at_cap(32));
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
    fn a_429_for_requests_per_window_takes_its_cut_back() {
        let l = Arc::new(at_cap(8));
        let seen = Instant::now();
        let slots: Vec<_> = (0..8).filter_map(|_| l.try_acquire()).collect();
        l.on_throttled();
        drop(slots);
        assert_eq!(l.limit(), 4, "cut at once: the kind is not known yet");
        l.review(per_window(seen));
        assert_eq!(l.limit(), 8, "the pause handles that limit");
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 8, "nothing learned from it either");
    }

    #[test]
    fn a_429_for_concurrency_keeps_its_cut() {
        let l = Arc::new(at_cap(16));
        let seen = Instant::now();
        let slots: Vec<_> = (0..10).filter_map(|_| l.try_acquire()).collect();
        l.on_throttled();
        drop(slots);
        l.review(Throttles {
            other: Some(seen),
            ..Default::default()
        });
        assert_eq!(l.limit(), 8);
        // A later review of the same 429 changes nothing.
        l.review(per_window(seen));
        assert_eq!(l.limit(), 8);
        for _ in 0..100 {
            l.on_success(None);
        }
        assert_eq!(l.limit(), 9, "stops below the 10 in flight that got a 429");
    }

    #[test]
    fn a_cut_with_a_429_for_concurrency_around_it_stays() {
        let l = at_cap(8);
        let seen = Instant::now();
        l.on_throttled();
        l.review(Throttles {
            per_window: Some(seen),
            other: Some(Instant::now()),
            ..Default::default()
        });
        assert_eq!(l.limit(), 4, "both limits were hit: the cut helps one");
    }

    #[test]
    fn a_429_for_requests_per_window_after_the_cut_is_not_its_cause() {
        let l = at_cap(8);
        l.on_throttled();
        std::thread::sleep(Duration::from_millis(5));
        l.review(per_window(Instant::now()));
        assert_eq!(l.limit(), 4);
    }

    #[test]
    fn follows_the_dop_hint_below_the_cap() {
        let l = at_cap(8);
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
        let l = Arc::new(at_cap(2));
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        assert!(l.is_full());
        drop(a);
        assert!(!l.is_full());
        assert!(l.try_acquire().is_some());
    }
}
