//! When to try a failed delivery again, and when to give up.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use time::OffsetDateTime;

use crate::config::RetrySettings;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(OffsetDateTime),
    GiveUp,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    settings: RetrySettings,
}

impl RetryPolicy {
    pub fn new(settings: RetrySettings) -> Self {
        Self { settings }
    }

    /// A service's `Retry-After`, bounded by `backoff_max`: an absurd value
    /// (a misbehaving proxy, `Retry-After: 99999999999`) must neither
    /// overflow time arithmetic nor park the organization for ever.
    pub fn bound(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.settings.backoff_max)
    }

    /// The latest a waiting delivery is tried again.
    pub fn after_backoff_max(&self, now: OffsetDateTime) -> OffsetDateTime {
        later(now, self.settings.backoff_max)
    }

    /// After the `attempts`-th failed attempt of a retry run that started at
    /// `started` (lead received or replayed): exponential backoff with jitter,
    /// never sooner than `retry_after`, and one last attempt at the end of
    /// `retry_for` rather than giving up early.
    pub fn next(
        &self,
        attempts: u32,
        started: OffsetDateTime,
        now: OffsetDateTime,
        retry_after: Option<Duration>,
    ) -> Next {
        let s = &self.settings;
        if s.max_attempts.is_some_and(|max| attempts >= max) {
            return Next::GiveUp;
        }
        let deadline = later(started, s.retry_for);
        if now >= deadline {
            return Next::GiveUp;
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(s.backoff_initial)
            .with_max_delay(s.backoff_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempts.saturating_sub(1) as usize)
            .unwrap_or(s.backoff_max);
        let retry_after = retry_after.map(|ra| self.bound(ra));
        let wait = retry_after.map_or(backoff, |ra| ra.max(backoff));
        let at = later(now, wait);
        Next::RetryAt(
            if at > deadline && retry_after.is_none_or(|ra| later(now, ra) <= deadline) {
                deadline
            } else {
                at
            },
        )
    }
}

/// `at + wait`, saturating instead of overflowing.
pub(crate) fn later(at: OffsetDateTime, wait: Duration) -> OffsetDateTime {
    at.saturating_add(time::Duration::try_from(wait).unwrap_or(time::Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy::new(RetrySettings {
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(10),
            retry_for: Duration::from_secs(3600),
            max_attempts,
        })
    }

    fn wait(p: &RetryPolicy, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let now = OffsetDateTime::now_utc();
        match p.next(attempts, now, now, retry_after) {
            Next::RetryAt(t) => (t - now).try_into().unwrap(),
            Next::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn grows_exponentially_with_jitter_within_bounds() {
        let p = policy(None);
        for _ in 0..100 {
            let d1 = wait(&p, 1, None);
            assert!(
                d1 >= Duration::from_secs(2) && d1 <= Duration::from_secs(4),
                "{d1:?}"
            );
            let d3 = wait(&p, 3, None);
            assert!(
                d3 >= Duration::from_secs(8) && d3 <= Duration::from_secs(16),
                "{d3:?}"
            );
            let d9 = wait(&p, 9, None);
            assert!(
                d9 >= Duration::from_secs(10) && d9 <= Duration::from_secs(20),
                "capped: {d9:?}"
            );
        }
    }

    #[test]
    fn never_earlier_than_retry_after() {
        // Up to backoff_max (10 s here), Retry-After is a floor.
        assert!(wait(&policy(None), 1, Some(Duration::from_secs(8))) >= Duration::from_secs(8));
    }

    #[test]
    fn an_absurd_retry_after_is_bounded_by_backoff_max() {
        let p = policy(None);
        let w = wait(&p, 1, Some(Duration::from_secs(99_999_999_999)));
        assert!(w <= Duration::from_secs(20), "{w:?}");
        assert!(w >= Duration::from_secs(10), "{w:?}");
        assert_eq!(p.bound(Duration::MAX), Duration::from_secs(10));
        let now = OffsetDateTime::now_utc();
        assert!(later(now, Duration::MAX) > now, "saturates, never panics");
    }

    #[test]
    fn retries_until_the_end_of_retry_for_then_gives_up() {
        let p = policy(None);
        let start = OffsetDateTime::now_utc();
        let near_end = start + Duration::from_secs(3595);
        assert_eq!(
            p.next(50, start, near_end, None),
            Next::RetryAt(start + Duration::from_secs(3600)),
            "a last try at the deadline"
        );
        assert_eq!(
            p.next(51, start, start + Duration::from_secs(3600), None),
            Next::GiveUp
        );
    }

    #[test]
    fn max_attempts_caps_sooner() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(policy(Some(3)).next(3, now, now, None), Next::GiveUp);
        assert!(matches!(
            policy(Some(3)).next(2, now, now, None),
            Next::RetryAt(_)
        ));
    }

    #[test]
    fn the_default_schedule_retries_for_72_hours() {
        let p = RetryPolicy::new(
            crate::config::DeliverySettings::default().retry_for_destination("dataverse"),
        );
        let start = OffsetDateTime::now_utc();
        let mut now = start;
        let mut attempts = 0;
        while let Next::RetryAt(t) = p.next(attempts + 1, start, now, None) {
            attempts += 1;
            now = t;
        }
        let span: Duration = (now - start).try_into().unwrap();
        assert!(span >= Duration::from_secs(72 * 3600), "{span:?}");
        assert!(attempts > 40 && attempts < 200, "{attempts} attempts");
    }
}
