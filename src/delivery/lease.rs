//! Keeping a claimed delivery's lease while its attempt runs.
//!
//! A lease is short (`delivery.lease`, 30 s by default) so that the
//! deliveries of a process that died are taken over soon; an attempt can take
//! longer (token, metadata, a slow create), so it renews the lease every
//! `delivery.lease_renewal` beside the attempt. The attempt runs under a
//! deadline that each successful renewal pushes on: when the lease turns out
//! lost (another worker holds it) or cannot be renewed in time (the store is
//! unreachable), the attempt is dropped before another worker could claim
//! the delivery, so two attempts of one delivery never run at once.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::DeliverySettings;
use crate::store::{ClaimedDelivery, Store};

/// Why an attempt was stopped before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum LeaseLost {
    /// The store no longer has the claim: it was handed back (an operator's
    /// replay) or, after it expired, claimed by another worker.
    #[error("the lease is held by another worker or was handed back")]
    TakenOver,
    /// No renewal got through before the lease would end.
    #[error("the lease could not be renewed before it ran out")]
    Expired,
}

/// How a lease is kept: its length and the renewal period.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeaseTimes {
    lease: Duration,
    renewal: Duration,
}

impl LeaseTimes {
    pub(super) fn new(settings: &DeliverySettings) -> Self {
        Self {
            lease: settings.lease,
            renewal: settings.lease_renewal,
        }
    }

    /// How long after a claim or renewal was sent the attempt may run: the
    /// lease less one renewal period, the room left for replicas' clocks to
    /// disagree and for the attempt to stop (configuration checks that the
    /// lease holds three renewal periods).
    fn usable(&self) -> Duration {
        self.lease.saturating_sub(self.renewal)
    }

    /// After a failed renewal, the next one comes sooner than the period,
    /// so that one store hiccup does not cost the attempt.
    fn retry(&self) -> Duration {
        (self.renewal / 4).max(Duration::from_millis(10))
    }
}

/// Runs `attempt` while keeping `d`'s lease, which began at `claimed_at`
/// (taken just before the claim was sent, so never later than the store's
/// idea of it). `Err` when the attempt was stopped because the lease is lost.
pub(super) async fn hold<T>(
    store: &dyn Store,
    d: &ClaimedDelivery,
    times: LeaseTimes,
    claimed_at: Instant,
    attempt: impl Future<Output = T>,
) -> Result<T, LeaseLost> {
    tokio::select! {
        // An attempt that ended as the lease did is kept: its outcome is
        // recorded only if the store still has this lease token.
        biased;
        out = attempt => Ok(out),
        lost = keep(store, d, times, claimed_at) => Err(lost),
    }
}

/// Renews the lease until it is lost; never returns while it holds.
async fn keep(
    store: &dyn Store,
    d: &ClaimedDelivery,
    times: LeaseTimes,
    claimed_at: Instant,
) -> LeaseLost {
    let mut valid_until = after(claimed_at, times.usable());
    let mut next = after(claimed_at, times.renewal);
    loop {
        tokio::time::sleep_until(next.min(valid_until)).await;
        if Instant::now() >= valid_until {
            return LeaseLost::Expired;
        }
        let sent = Instant::now();
        let renewal = store.renew_lease(d, OffsetDateTime::now_utc(), times.lease);
        match tokio::time::timeout_at(valid_until, renewal).await {
            Err(_) => return LeaseLost::Expired,
            Ok(Ok(true)) => {
                valid_until = after(sent, times.usable());
                next = after(sent, times.renewal);
            }
            Ok(Ok(false)) => return LeaseLost::TakenOver,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the lease; trying again");
                next = after(Instant::now(), times.retry());
            }
        }
    }
}

/// `at + wait`; only an absurd duration overflows, and then the attempt
/// stops at once rather than outliving its lease.
fn after(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LeadId;
    use crate::lead::OrgName;
    use crate::store::{Destination, NewLead};
    use std::sync::Arc;

    const TIMES: LeaseTimes = LeaseTimes {
        lease: Duration::from_millis(600),
        renewal: Duration::from_millis(200),
    };

    async fn claimed_delivery(dir: &tempfile::TempDir) -> (Arc<dyn Store>, ClaimedDelivery) {
        let url = format!("sqlite://{}", dir.path().join("lb.db").display());
        let store = crate::store::connect(&url).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let lead = NewLead {
            id: LeadId::generate(),
            org: OrgName::parse("contoso").unwrap(),
            received_at: now,
            request_id: "req-1".into(),
            is_test: false,
            payload: r#"{"OfferTitle":"x"}"#.into(),
            fingerprint: "f".into(),
            destinations: vec![Destination::Dataverse],
        };
        store.insert_lead(&lead, None).await.unwrap();
        let mut claimed = store.claim_due(now, TIMES.lease, 1, &[]).await.unwrap();
        (store, claimed.remove(0))
    }

    #[tokio::test]
    async fn an_attempt_longer_than_its_lease_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, d) = claimed_delivery(&dir).await;
        let claimed_at = Instant::now();
        let attempt = async {
            tokio::time::sleep(TIMES.lease * 3).await;
            "done"
        };
        let out = hold(store.as_ref(), &d, TIMES, claimed_at, attempt).await;
        assert_eq!(out, Ok("done"));
        let later = OffsetDateTime::now_utc();
        assert!(
            store
                .claim_due(later, TIMES.lease, 1, &[])
                .await
                .unwrap()
                .is_empty(),
            "still held: nobody else could claim it meanwhile"
        );
    }

    #[tokio::test]
    async fn an_attempt_whose_lease_went_elsewhere_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (store, d) = claimed_delivery(&dir).await;
        // Someone else holds it now (here: handed back and claimed again).
        assert_eq!(store.release_all_claims().await.unwrap(), 1);
        let other = store
            .claim_due(OffsetDateTime::now_utc(), TIMES.lease, 1, &[])
            .await
            .unwrap();
        assert_eq!(other.len(), 1);
        let started = Instant::now();
        let out = hold(
            store.as_ref(),
            &d,
            TIMES,
            started,
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(out, Err(LeaseLost::TakenOver));
        assert!(started.elapsed() < TIMES.lease, "stopped at the renewal");
    }

    #[tokio::test]
    async fn an_attempt_that_cannot_renew_stops_before_its_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, d) = claimed_delivery(&dir).await;
        // Every renewal fails from now on, as with a store that is down.
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", dir.path().join("lb.db").display());
        let db = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE deliveries RENAME TO deliveries_gone")
            .execute(&db)
            .await
            .unwrap();
        let started = Instant::now();
        let out = hold(
            store.as_ref(),
            &d,
            TIMES,
            started,
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(out, Err(LeaseLost::Expired));
        let took = started.elapsed();
        assert!(took >= TIMES.usable(), "{took:?}");
        assert!(
            took < TIMES.lease,
            "{took:?}: stopped before the lease ended"
        );
    }
}
