//! When to try a failed delivery again, and when to give up.

use std::time::Duration;

use rand::Rng;

use crate::config::DeliverySettings;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl From<&DeliverySettings> for RetryPolicy {
    fn from(s: &DeliverySettings) -> Self {
        Self {
            max_attempts: s.max_attempts,
            initial: s.backoff_initial,
            max: s.backoff_max,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next try, after `attempts_made` failed attempts, or
    /// `None` when the budget is spent. Exponential with "equal jitter" (half
    /// fixed, half random), so retries of many leads do not arrive together;
    /// never shorter than the server's `Retry-After`.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let exp = 2u32.saturating_pow(attempts_made.saturating_sub(1));
        let base = self.initial.saturating_mul(exp).min(self.max);
        let half = base / 2;
        let jitter = rand::thread_rng().gen_range(Duration::ZERO..=half);
        let backoff = half + jitter;
        Some(retry_after.map_or(backoff, |ra| ra.max(backoff)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(10),
        }
    }

    #[test]
    fn grows_exponentially_within_bounds() {
        let p = policy();
        for _ in 0..100 {
            let d1 = p.next_delay(1, None).unwrap();
            assert!(
                d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2),
                "{d1:?}"
            );
            let d3 = p.next_delay(3, None).unwrap();
            assert!(
                d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8),
                "{d3:?}"
            );
            let d4 = p.next_delay(4, None).unwrap();
            assert!(
                d4 >= Duration::from_secs(5) && d4 <= Duration::from_secs(10),
                "capped: {d4:?}"
            );
        }
    }

    #[test]
    fn gives_up_after_the_budget() {
        assert_eq!(policy().next_delay(5, None), None);
    }

    #[test]
    fn never_earlier_than_retry_after() {
        let d = policy()
            .next_delay(1, Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(d, Duration::from_secs(30));
    }
}
