//! What a 429 means for this process's other requests to the organization
//! that are already on their way.
//!
//! The worker shares a 429's pause through the store, and every attempt
//! checks it right before sending. On a busy store, committing the pause
//! and reading it both wait for a connection; an attempt whose check began
//! before the 429 came can still find no pause and send inside Retry-After.
//! Two guards close that gap: an attempt about to check waits until the
//! pause must be in the store ([`Quiet::hold`], at most `hold` after the
//! 429), and a request that reaches the client within that time did its
//! check before the 429, so it is not sent ([`Quiet::refuse`]): Dataverse
//! would have refused it anyway, and counted it against us.
//!
//! Only for `hold` after a 429: after that the store's pause, which
//! `backoff_max` bounds and `deliveries unpause` clears, decides alone.
//!
//! A 429 for requests per window also states the limit; from then on the
//! organization's creates are paced just below it ([`Quiet::pace`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use url::Url;

use super::DataverseError;
use crate::outbound::ErrorKind;

#[derive(Default)]
pub(super) struct Quiet {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By organization URL: when its last 429 came, and until when it asked
    /// for quiet.
    announced: HashMap<String, (Instant, Instant)>,
    /// By organization URL: the hold its attempts use (see [`Quiet::hold`]).
    holds: HashMap<String, Duration>,
    /// By organization URL: when its last 429s came (see [`Throttles`]).
    last: HashMap<String, Throttles>,
    /// By organization URL: the pace of its limit on requests per window,
    /// once a 429 has stated it (see [`Quiet::pace`]).
    paces: HashMap<String, Pace>,
}

/// Requests spread evenly over Dataverse's window, as its 429 stated it.
struct Pace {
    limit: (u32, Duration),
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// The pace keeps this much below the stated limit: requests sent evenly
/// still arrive a little bunched.
const PACE_MARGIN: f64 = 0.95;

/// When an organization last answered 429, by kind of limit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Throttles {
    /// For the number of requests per window (`0x80072322`).
    pub per_window: Option<Instant>,
    /// For anything else: concurrent requests, execution time, or a 429
    /// without a known code.
    pub other: Option<Instant>,
    /// The limit on requests per window as the last such 429 stated it
    /// ("… the limit of 6000 over time window of 300 seconds."): how many,
    /// and the window.
    pub window_limit: Option<(u32, Duration)>,
}

/// `(N, W)` from "Number of requests exceeded the limit of N over time
/// window of W seconds.", if the message says so.
fn window_limit(message: &str) -> Option<(u32, Duration)> {
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &message[message.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let requests = u32::try_from(number_after("limit of ")?).ok()?;
    let window = Duration::from_secs(number_after("time window of ")?);
    // Dataverse's windows are minutes long; a message stating days is not
    // Dataverse's (a proxy, a test), and would overflow the pace arithmetic.
    (requests > 0 && !window.is_zero() && window <= MAX_WINDOW).then_some((requests, window))
}

/// The longest window a stated limit is believed for.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Dataverse's error code for "Number of requests exceeded the limit of N
/// over time window of W seconds."
const REQUESTS_PER_WINDOW: &str = "0x80072322";

impl Quiet {
    /// Remembers a 429's Retry-After; a later one never shortens an earlier one.
    pub(super) fn note(&self, org_url: &Url, e: &DataverseError) {
        let ErrorKind::Throttled { retry_after } = e.kind else {
            return;
        };
        let now = Instant::now();
        let mut inner = self.lock();
        let last = inner.last.entry(key(org_url).to_owned()).or_default();
        if e.code.as_deref() == Some(REQUESTS_PER_WINDOW) {
            last.per_window = Some(now);
            if let Some(limit) = window_limit(&e.message) {
                last.window_limit = Some(limit);
            }
        } else {
            last.other = Some(now);
        }
        let Some(wait) = retry_after else { return };
        let until = now.checked_add(wait).unwrap_or(now);
        let entry = inner
            .announced
            .entry(key(org_url).to_owned())
            .or_insert((now, until));
        if entry.1 <= until {
            *entry = (now, until);
        }
    }

    /// How long an attempt waits before checking the store's pause: until
    /// `hold` after the last 429, or its Retry-After if that ends sooner.
    pub(super) fn hold(&self, org_url: &Url, hold: Duration) -> Duration {
        let mut inner = self.lock();
        let key = key(org_url);
        if inner.holds.get(key) != Some(&hold) {
            inner.holds.insert(key.to_owned(), hold);
        }
        let Some(&(at, until)) = inner.announced.get(key) else {
            return Duration::ZERO;
        };
        let end = until.min(at.checked_add(hold).unwrap_or(at));
        end.saturating_duration_since(Instant::now())
    }

    /// The limiter that spreads the organization's creates evenly at (just
    /// under) its limit on requests per window, once a 429 has stated it.
    /// Without it a backlog goes out in bursts: as fast as the concurrency
    /// allows until the window is full, then a whole-second Retry-After;
    /// evenly spread, as many get through without 429s, and the organization
    /// is not paused for that limit. Waited for right before sending, after
    /// the store's pause check, so that the store's latency does not bunch
    /// the requests up again.
    pub(super) fn pace(&self, org_url: &Url) -> Option<Arc<DefaultDirectRateLimiter>> {
        let mut inner = self.lock();
        let key = key(org_url);
        let stated = inner.last.get(key)?.window_limit?;
        if let Some(p) = inner.paces.get(key)
            && p.limit == stated
        {
            return Some(Arc::clone(&p.limiter));
        }
        let (requests, window) = stated;
        let per_request = window.div_f64(f64::from(requests) * PACE_MARGIN);
        let limiter = Arc::new(RateLimiter::direct(Quota::with_period(per_request)?));
        let pace = Pace {
            limit: stated,
            limiter: Arc::clone(&limiter),
        };
        inner.paces.insert(key.to_owned(), pace);
        Some(limiter)
    }

    /// When the organization's last 429s came, by kind.
    pub(super) fn last_throttles(&self, org_url: &Url) -> Throttles {
        self.lock()
            .last
            .get(key(org_url))
            .copied()
            .unwrap_or_default()
    }

    /// A request must not go out while a 429's Retry-After runs if its
    /// attempt checked the store's pause before that 429 came: within the
    /// hold of the 429, or when the 429 came after `since` (when this
    /// request began waiting for its pace).
    pub(super) fn refuse(&self, org_url: &Url, since: Instant) -> Result<(), DataverseError> {
        let inner = self.lock();
        let key = key(org_url);
        let Some(&(at, until)) = inner.announced.get(key) else {
            return Ok(());
        };
        let hold = inner.holds.get(key).copied().unwrap_or_default();
        let now = Instant::now();
        let held = at.checked_add(hold).is_some_and(|end| now < end);
        if !(held || at >= since) || now >= until {
            return Ok(());
        }
        Err(DataverseError::new(
            ErrorKind::Throttled {
                retry_after: Some(until.saturating_duration_since(now)),
            },
            "Dataverse: not sent: a 429 came while this request was on its way, and its Retry-After still runs",
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain inserts and reads: a poisoned lock still holds usable data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(org_url: &Url) -> &str {
    org_url.as_str().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("https://contoso.crm4.dynamics.com/").unwrap()
    }

    fn throttled(secs: u64) -> DataverseError {
        DataverseError::new(
            ErrorKind::Throttled {
                retry_after: Some(Duration::from_secs(secs)),
            },
            "429",
        )
    }

    #[test]
    fn without_a_429_nothing_waits_and_everything_goes() {
        let q = Quiet::default();
        assert_eq!(q.hold(&url(), Duration::from_secs(1)), Duration::ZERO);
        assert!(q.refuse(&url(), Instant::now()).is_ok());
    }

    #[test]
    fn right_after_a_429_checks_wait_and_requests_on_their_way_stay_back() {
        let q = Quiet::default();
        assert_eq!(q.hold(&url(), Duration::from_secs(1)), Duration::ZERO);
        q.note(&url(), &throttled(60));
        let wait = q.hold(&url(), Duration::from_secs(1));
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        let refused = q.refuse(&url(), Instant::now()).unwrap_err();
        assert!(matches!(
            refused.kind,
            ErrorKind::Throttled { retry_after: Some(ra) } if ra > Duration::from_secs(59)
        ));
        assert_eq!(refused.status, None, "nothing was sent");
    }

    #[test]
    fn after_the_hold_the_store_decides_alone() {
        let q = Quiet::default();
        q.note(&url(), &throttled(3600));
        // A hold of zero (backoff_max shorter than any wait): no guard at all.
        assert_eq!(q.hold(&url(), Duration::ZERO), Duration::ZERO);
        assert!(q.refuse(&url(), Instant::now()).is_ok());
    }

    #[test]
    fn reads_the_window_limit_from_dataverse_s_message() {
        let q = Quiet::default();
        let e = DataverseError {
            code: Some(REQUESTS_PER_WINDOW.into()),
            ..throttled(12)
        };
        let e = DataverseError {
            message: "Dataverse HTTP 429 0x80072322: Number of requests exceeded the limit of 6000 over time window of 300 seconds.".into(),
            ..e
        };
        q.note(&url(), &e);
        let seen = q.last_throttles(&url());
        assert!(seen.per_window.is_some() && seen.other.is_none());
        assert_eq!(seen.window_limit, Some((6000, Duration::from_secs(300))));
        assert_eq!(window_limit("Rate limit exceeded."), None);
        assert_eq!(
            window_limit("the limit of 0 over time window of 1 seconds"),
            None
        );
        // From the network: an absurd window must neither be believed nor
        // overflow the pace (a panic in the delivery).
        let absurd = DataverseError {
            message: "Number of requests exceeded the limit of 1 over time window of 18446744073709551615 seconds.".into(),
            ..e
        };
        assert_eq!(window_limit(&absurd.message), None);
        let q = Quiet::default();
        q.note(&url(), &absurd);
        assert!(q.pace(&url()).is_none());
    }

    #[test]
    fn a_429_while_a_request_waited_for_its_pace_holds_it_back() {
        let q = Quiet::default();
        q.hold(&url(), Duration::ZERO);
        let since = Instant::now();
        q.note(&url(), &throttled(5));
        assert!(q.refuse(&url(), since).is_err());
        assert!(q.refuse(&url(), Instant::now()).is_ok(), "checked after it");
    }

    #[test]
    fn a_429_without_retry_after_is_the_store_s_business() {
        let q = Quiet::default();
        q.hold(&url(), Duration::from_secs(1));
        q.note(
            &url(),
            &DataverseError::new(ErrorKind::Throttled { retry_after: None }, "429"),
        );
        assert!(q.refuse(&url(), Instant::now()).is_ok());
    }
}
