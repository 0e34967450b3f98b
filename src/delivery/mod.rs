//! The delivery worker: the only part of leadbridge that talks to Entra ID and
//! Dataverse. It claims due deliveries from the store, runs each attempt and
//! records the outcome.

mod attempt;
mod retry;

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::TokenProvider;
use crate::config::Settings;
use crate::dataverse::DataverseClient;
use crate::mapping::MappingRegistry;
use crate::store::{AttemptOutcome, ClaimedDelivery, Store};

pub use retry::RetryPolicy;

/// Everything an attempt needs.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub mappings: Arc<MappingRegistry>,
    pub tokens: Arc<TokenProvider>,
    pub dataverse: DataverseClient,
    pub policy: RetryPolicy,
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

    /// Runs until `shutdown`; then lets attempts in flight finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = &self.deps.settings.delivery;
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let mut in_flight = JoinSet::new();
        loop {
            let free = u32::try_from(permits.available_permits()).unwrap_or(u32::MAX);
            let mut claimed = Vec::new();
            if free > 0 {
                match self
                    .deps
                    .store
                    .claim_due(OffsetDateTime::now_utc(), settings.lease, free)
                    .await
                {
                    Ok(c) => claimed = c,
                    Err(e) => tracing::warn!(error = %e, "cannot claim deliveries; will try again"),
                }
            }
            let got_full_batch = free > 0 && claimed.len() == free as usize;
            for d in claimed {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let deps = Arc::clone(&self.deps);
                in_flight.spawn(async move {
                    process(&deps, d).await;
                    drop(permit);
                });
            }
            if got_full_batch && permits.available_permits() > 0 {
                continue;
            }
            let sleep = self.time_to_next_due().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        tracing::info!(in_flight = in_flight.len(), "delivery worker stopping");
        while in_flight.join_next().await.is_some() {}
    }

    async fn time_to_next_due(&self) -> std::time::Duration {
        let poll = self.deps.settings.delivery.poll_interval;
        match self.deps.store.next_due_at().await {
            Ok(Some(at)) => {
                let wait = at - OffsetDateTime::now_utc();
                std::time::Duration::try_from(wait)
                    .unwrap_or_default()
                    .min(poll)
            }
            _ => poll,
        }
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
        let (outcome, _redactor) = attempt::run(deps, &d).await;
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
