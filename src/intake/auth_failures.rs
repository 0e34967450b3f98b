//! The wrong-secret limiter: failed secret checks per client address per
//! minute, past which the answer is 429 instead of 401, so that secrets
//! cannot be guessed at speed. A right secret is never refused for it (a
//! lead turned away is lost for good).
//!
//! Its memory is bounded: addresses not seen for a while are forgotten once
//! many are tracked, IPv6 clients count per /64 (one host can use a whole
//! one), and past a hard cap every further wrong-secret request is refused
//! with 429 until the table drains, rather than growing it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Above this many addresses, those whose budget is full again are dropped.
const TIDY_AT: usize = 10_000;
/// The most addresses tracked (a few MB).
const MAX_TRACKED: usize = 100_000;

pub struct AuthFailures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    tidy_at: usize,
    max_tracked: usize,
    /// Checks since the last tidy-up: it runs at most once per `tidy_at`
    /// checks, so that a full table is not swept on every request.
    since_tidy: AtomicUsize,
}

impl AuthFailures {
    /// `None` when `per_minute` is 0 (turned off).
    pub fn new(per_minute: u32) -> Option<Self> {
        Self::with_bounds(per_minute, TIDY_AT, MAX_TRACKED)
    }

    fn with_bounds(per_minute: u32, tidy_at: usize, max_tracked: usize) -> Option<Self> {
        NonZeroU32::new(per_minute).map(|n| Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            tidy_at,
            max_tracked,
            since_tidy: AtomicUsize::new(0),
        })
    }

    /// Counts one failed check from `ip`; whether it is over the limit.
    pub fn over_limit(&self, ip: IpAddr) -> bool {
        let checks = self.since_tidy.fetch_add(1, Ordering::Relaxed);
        if self.limiter.len() >= self.tidy_at && checks >= self.tidy_at {
            self.since_tidy.store(0, Ordering::Relaxed);
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        if self.limiter.len() >= self.max_tracked {
            return true;
        }
        self.limiter.check_key(&client(ip)).is_err()
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// The unit an address is counted in: IPv4 (and IPv4-mapped IPv6) as is,
/// IPv6 by its /64.
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn counts_per_address_and_per_ipv6_64() {
        let f = AuthFailures::new(2).unwrap();
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(!f.over_limit(a));
        assert!(!f.over_limit(a));
        assert!(f.over_limit(a), "the third within the minute");
        assert!(!f.over_limit(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))));
        let v6 = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        assert!(!f.over_limit(v6(1)));
        assert!(!f.over_limit(v6(2)));
        assert!(f.over_limit(v6(3)), "one /64 is one client");
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let f = AuthFailures::with_bounds(1, 50, 200).unwrap();
        for i in 0..1000u32 {
            f.over_limit(IpAddr::V4(Ipv4Addr::from(i)));
            assert!(f.tracked() <= 200, "at {i}: {}", f.tracked());
        }
        assert!(
            f.over_limit(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            "past the cap, wrong secrets get 429 rather than a new entry"
        );
    }
}
