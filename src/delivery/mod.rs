//! The delivery worker: the only part of leadbridge that talks to Entra ID and
//! Dataverse. It claims due deliveries from the store, runs each attempt and
//! records the outcome, keeping within each organization's limits.

mod attempt;
mod concurrency;
mod pauses;
mod retry;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::TokenProvider;
use crate::config::Settings;
use crate::dataverse::DataverseClient;
use crate::lead::OrgName;
use crate::mapping::MappingRegistry;
use crate::store::{AttemptOutcome, ClaimedDelivery, Destination, Store};

use attempt::Decision;
pub use concurrency::AdaptiveLimits;
pub use pauses::Pauses;
pub use retry::{Next, RetryPolicy};

/// Everything an attempt needs.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub mappings: Arc<MappingRegistry>,
    pub tokens: Arc<TokenProvider>,
    pub dataverse: DataverseClient,
    pub limits: AdaptiveLimits,
    pub pauses: Pauses,
    pub rate: DefaultKeyedRateLimiter<OrgName>,
    policies: HashMap<Destination, RetryPolicy>,
    fallback_policy: RetryPolicy,
}

impl Deps {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Arc<Settings>,
        mappings: Arc<MappingRegistry>,
        tokens: Arc<TokenProvider>,
        dataverse: DataverseClient,
    ) -> Self {
        let d = &settings.delivery;
        let per_minute = NonZeroU32::new(d.org_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let policies = [Destination::Dataverse]
            .into_iter()
            .map(|dest| {
                (
                    dest,
                    RetryPolicy::new(d.retry_for_destination(dest.as_str())),
                )
            })
            .collect();
        Self {
            limits: AdaptiveLimits::new(d.org_concurrency),
            pauses: Pauses::default(),
            rate: RateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(
                    NonZeroU32::new(d.org_concurrency as u32).unwrap_or(NonZeroU32::MIN),
                ),
            ),
            fallback_policy: RetryPolicy::new(d.retry_for_destination("")),
            policies,
            store,
            settings,
            mappings,
            tokens,
            dataverse,
        }
    }

    fn policy(&self, destination: Destination) -> &RetryPolicy {
        self.policies
            .get(&destination)
            .unwrap_or(&self.fallback_policy)
    }
}

pub struct Worker {
    deps: Arc<Deps>,
    /// Intake pokes this after storing a lead, so delivery starts at once.
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(deps: Deps, wake: Arc<Notify>) -> Self {
        Self {
            deps: Arc::new(deps),
            wake,
        }
    }

    /// Runs until `shutdown`; then gives attempts in flight `shutdown_grace`
    /// to finish and hands the rest back to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = &self.deps.settings.delivery;
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut claimed_by_task: HashMap<tokio::task::Id, ClaimedDelivery> = HashMap::new();
        loop {
            let free = settings.concurrency.saturating_sub(in_flight.len()).min(
                self.deps
                    .limits
                    .most_available(self.deps.settings.organizations.keys()),
            );
            let mut got_full_batch = false;
            if free > 0 {
                let skip = self.deps.limits.full();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self
                    .deps
                    .store
                    .claim_due(OffsetDateTime::now_utc(), settings.lease, limit, &skip)
                    .await
                {
                    Ok(claimed) => {
                        got_full_batch = claimed.len() == free;
                        for d in claimed {
                            let Some(slot) = self.deps.limits.try_acquire(&d.org) else {
                                // Over this organization's limit: back to the queue.
                                if let Err(e) = self.deps.store.release(&d, None).await {
                                    tracing::warn!(error = %e, "cannot release a delivery; its lease will expire");
                                }
                                got_full_batch = false;
                                continue;
                            };
                            let deps = Arc::clone(&self.deps);
                            let task_delivery = d.clone();
                            let handle = in_flight.spawn(async move {
                                process(&deps, task_delivery).await;
                                drop(slot);
                            });
                            claimed_by_task.insert(handle.id(), d);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim deliveries; will try again"),
                }
            }
            if got_full_batch && in_flight.len() < settings.concurrency {
                continue;
            }
            // With attempts in flight, their completion wakes the loop anyway.
            let sleep = if in_flight.is_empty() {
                self.time_to_next_due().await
            } else {
                settings.poll_interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    forget(&mut claimed_by_task, done);
                }
            }
        }

        tracing::info!(in_flight = in_flight.len(), "delivery worker stopping");
        let grace = tokio::time::sleep(settings.shutdown_grace);
        tokio::pin!(grace);
        while !in_flight.is_empty() {
            tokio::select! {
                _ = &mut grace => {
                    in_flight.abort_all();
                    break;
                }
                Some(done) = in_flight.join_next_with_id() => forget(&mut claimed_by_task, done),
            }
        }
        while let Some(done) = in_flight.join_next_with_id().await {
            forget(&mut claimed_by_task, done);
        }
        // Cut off mid-attempt: hand back now rather than wait for the lease.
        // A create that did reach Dataverse is caught by the record id.
        for d in claimed_by_task.values() {
            if let Err(e) = self.deps.store.release(d, None).await {
                tracing::warn!(delivery_id = %d.id, error = %e, "cannot release; its lease will expire");
            }
        }
        if !claimed_by_task.is_empty() {
            tracing::info!(
                released = claimed_by_task.len(),
                "handed unfinished deliveries back to the queue"
            );
        }
    }

    async fn time_to_next_due(&self) -> Duration {
        let poll = self.deps.settings.delivery.poll_interval;
        match self.deps.store.next_due_at().await {
            Ok(Some(at)) => Duration::try_from(at - OffsetDateTime::now_utc())
                .unwrap_or_default()
                .min(poll),
            _ => poll,
        }
    }
}

/// A finished task's delivery needs no release; an aborted one does.
fn forget(
    claimed: &mut HashMap<tokio::task::Id, ClaimedDelivery>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    match done {
        Ok((id, ())) => {
            claimed.remove(&id);
        }
        Err(e) if e.is_panic() => {
            // The lease expires and the delivery is tried again.
            tracing::error!(error = %e, "delivery task panicked");
            claimed.remove(&e.id());
        }
        Err(_) => {}
    }
}

async fn process(deps: &Deps, d: ClaimedDelivery) {
    let span = tracing::info_span!(
        "delivery",
        lead_id = %d.lead_id,
        delivery_id = %d.id,
        request_id = %d.request_id,
        org = %d.org,
        destination = d.destination.as_str(),
        attempt = d.attempts + 1,
    );
    async {
        let started = std::time::Instant::now();
        let outcome = match attempt::run(deps, &d).await {
            Decision::Record(outcome) => outcome,
            Decision::Postpone(until) => {
                tracing::debug!(until = %until, "organization paused; delivery postponed");
                if let Err(e) = deps.store.release(&d, Some(until)).await {
                    tracing::warn!(error = %e, "cannot release; its lease will expire");
                }
                return;
            }
        };
        crate::metrics::delivery_attempt(&d, &outcome, started.elapsed());
        let now = OffsetDateTime::now_utc();
        match &outcome {
            AttemptOutcome::Delivered { remote_ref, .. } => {
                tracing::info!(record = %remote_ref, "lead delivered")
            }
            AttemptOutcome::Retry {
                error,
                next_attempt_at,
                ..
            } => tracing::warn!(
                error = %error,
                retry_in_s = (*next_attempt_at - now).whole_seconds(),
                "delivery failed; will retry"
            ),
            AttemptOutcome::Dead { error, .. } => {
                tracing::error!(error = %error, "delivery failed permanently; dead-lettered")
            }
        }
        match deps.store.record_attempt(&d, now, &outcome).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("lease expired before the outcome was recorded"),
            // The lease runs out and the delivery is tried again; the
            // client-generated record id keeps that from creating a duplicate.
            Err(e) => tracing::error!(error = %e, "cannot record the delivery outcome"),
        }
    }
    .instrument(span)
    .await;
}
