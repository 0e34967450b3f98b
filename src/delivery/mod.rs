//! The delivery worker: the only part of leadbridge that talks to Entra ID and
//! Dataverse. It claims due deliveries from the store, runs each attempt
//! ([`attempt`]) and records the outcome, keeping within each organization's
//! limits ([`org`]).

mod alerts;
mod attempt;
mod blocking;
mod concurrency;
mod email;
mod fit;
mod health;
mod in_flight;
mod lease;
mod metadata;
mod org;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenProvider;
use crate::config::{DeliverySettings, Settings};
use crate::dataverse::DataverseClient;
use crate::lead::OrgName;
use crate::mail::GraphMailer;
use crate::outbound::ErrorKind;
use crate::store::{AttemptOutcome, ClaimedDelivery, Destination, Store};

use alerts::Alerts;
use attempt::{Completed, Decision, Sent};
use concurrency::Slot;
pub use health::{WorkerHealth, supervise};
use in_flight::InFlight;
use lease::LeaseTimes;
pub use org::{OrgRuntime, Organizations};
use retry::RetryPolicy;

/// Everything an attempt needs besides its organization.
pub(crate) struct Deps {
    store: Arc<dyn Store>,
    organizations: Arc<Organizations>,
    tokens: Arc<TokenProvider>,
    dataverse: DataverseClient,
    graph: GraphMailer,
    alerts: Alerts,
    settings: DeliverySettings,
    /// `log.pii`: personal data in logs and errors unmasked.
    log_pii: bool,
    policies: HashMap<Destination, RetryPolicy>,
    fallback_policy: RetryPolicy,
}

impl Deps {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        settings: &Settings,
        organizations: Arc<Organizations>,
        http: reqwest::Client,
    ) -> Self {
        let d = &settings.delivery;
        let policies = [Destination::Dataverse, Destination::Email]
            .into_iter()
            .map(|dest| {
                (
                    dest,
                    RetryPolicy::new(d.retry_for_destination(dest.as_str())),
                )
            })
            .collect();
        let tokens = Arc::new(TokenProvider::new(http.clone()));
        let graph = GraphMailer::new(http.clone());
        let alerts = Alerts::spawn(
            Arc::clone(&organizations),
            Arc::clone(&tokens),
            graph.clone(),
            d.alert_window,
        );
        Self {
            store,
            organizations,
            tokens,
            graph,
            alerts,
            dataverse: DataverseClient::new(http),
            settings: d.clone(),
            log_pii: settings.log.pii,
            fallback_policy: RetryPolicy::new(d.retry_for_destination("")),
            policies,
        }
    }

    fn policy(&self, destination: Destination) -> &RetryPolicy {
        self.policies
            .get(&destination)
            .unwrap_or(&self.fallback_policy)
    }
}

/// A claimed delivery ready to run: its organization (if still configured),
/// the concurrency slot it holds until the attempt ends, and when its lease
/// began.
struct Job {
    delivery: ClaimedDelivery,
    org: Option<Arc<OrgRuntime>>,
    _slot: Option<Slot>,
    /// Claimed past its organization's block, to find out whether the
    /// cause is gone.
    probe: bool,
    claimed_at: tokio::time::Instant,
}

pub(crate) struct Worker {
    deps: Arc<Deps>,
    /// Intake pokes this after storing a lead, so delivery starts at once.
    wake: Arc<Notify>,
    /// When blocked organizations' probes were last looked for: taking them
    /// is a write, so not on every claim of a busy loop but once per poll
    /// interval (which is how soon a due probe is noticed anyway).
    probes_checked: std::sync::Mutex<Option<Instant>>,
}

impl Worker {
    pub(crate) fn new(deps: Deps, wake: Arc<Notify>) -> Self {
        Self {
            deps: Arc::new(deps),
            wake,
            probes_checked: std::sync::Mutex::new(None),
        }
    }

    /// One pass: claims what is due now (as much as the limits allow), runs
    /// those attempts to the end and records them. Returns how many
    /// deliveries it claimed, so that a caller can repeat until the queue has
    /// nothing due.
    pub(crate) async fn run_once(&self) -> usize {
        // A pass looks for due probes whatever the last one did.
        *self.probes_lock() = None;
        let mut in_flight = InFlight::default();
        let (jobs, _) = self.claim(self.deps.settings.concurrency).await;
        let claimed = jobs.len();
        for job in jobs {
            self.start(&mut in_flight, job);
        }
        while let Some(done) = in_flight.next_done().await {
            in_flight.settle(&self.deps, done).await;
        }
        claimed
    }

    fn start(&self, in_flight: &mut InFlight, job: Job) {
        let deps = Arc::clone(&self.deps);
        in_flight.spawn(job.delivery.clone(), async move {
            process(&deps, job).await;
        });
    }

    /// Runs until `shutdown`; then gives attempts in flight `shutdown_grace`
    /// to finish and hands the rest back to the queue.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let settings = &self.deps.settings;
        let mut in_flight = InFlight::default();
        loop {
            // Every attempt that ended meanwhile frees its place now, so that
            // one claim takes them all: a claim is a store round trip, and
            // one per ended attempt caps the pace at one claim's latency.
            while let Some(done) = in_flight.done_now() {
                in_flight.settle(&self.deps, done).await;
            }
            let free = settings.concurrency.saturating_sub(in_flight.len());
            let (jobs, got_full_batch) = self.claim(free).await;
            for job in jobs {
                self.start(&mut in_flight, job);
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
                Some(done) = in_flight.next_done(), if !in_flight.is_empty() => {
                    in_flight.settle(&self.deps, done).await;
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
                Some(done) = in_flight.next_done() => in_flight.settle(&self.deps, done).await,
            }
        }
        while let Some(done) = in_flight.next_done().await {
            in_flight.settle(&self.deps, done).await;
        }
        // Cut off mid-attempt: hand back now rather than wait for the lease.
        let released = in_flight.release_cut_off(self.deps.store.as_ref()).await;
        if released > 0 {
            tracing::info!(released, "handed unfinished deliveries back to the queue");
        }
    }

    /// Claims up to `free` due deliveries, no more than the organizations'
    /// limits let through; each job holds its organization's slot. The flag
    /// says the store had at least as many due as were asked for (and none
    /// went back), so another claim right away may find more.
    async fn claim(&self, free: usize) -> (Vec<Job>, bool) {
        let mut jobs = if self.probes_due() {
            self.probes().await
        } else {
            Vec::new()
        };
        let free = free.saturating_sub(jobs.len());
        let (more, full_batch) = self.claim_due(free).await;
        jobs.extend(more);
        (jobs, full_batch)
    }

    fn probes_lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.probes_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether to look for due probes now (and note that we did).
    fn probes_due(&self) -> bool {
        let mut last = self.probes_lock();
        let due = last.is_none_or(|at| at.elapsed() >= self.deps.settings.poll_interval);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// One delivery of each blocked organization whose probe is due.
    async fn probes(&self) -> Vec<Job> {
        // Before the lease's start: it can only end later than this says.
        let claimed_at = tokio::time::Instant::now();
        let now = OffsetDateTime::now_utc();
        let next = retry::later(now, self.deps.settings.block_probe_interval);
        let claimed = match self
            .deps
            .store
            .take_probes(now, next, self.deps.settings.lease)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the probes of blocked organizations");
                return Vec::new();
            }
        };
        let mut jobs = Vec::with_capacity(claimed.len());
        for delivery in claimed {
            let org = self.deps.organizations.get(&delivery.org);
            let slot = org
                .as_ref()
                .and_then(|o| o.state.limit_for(delivery.destination).try_acquire());
            if org.is_some() && slot.is_none() {
                // Busy (replicas share the store): the next interval probes.
                if let Err(e) = self.deps.store.release(&delivery, None).await {
                    tracing::warn!(error = %e, "cannot release a probe; its lease will expire");
                }
                continue;
            }
            tracing::info!(org = %delivery.org, delivery_id = %delivery.id, "probing a blocked organization");
            jobs.push(Job {
                delivery,
                org,
                _slot: slot,
                probe: true,
                claimed_at,
            });
        }
        jobs
    }

    async fn claim_due(&self, free: usize) -> (Vec<Job>, bool) {
        let orgs = self.deps.organizations.all();
        let queues = || {
            orgs.iter().flat_map(|o| {
                o.config
                    .destinations()
                    .into_iter()
                    .map(move |dest| (o, dest, o.state.limit_for(dest)))
            })
        };
        let free = free.min(
            queues()
                .map(|(_, _, limit)| limit.available())
                .max()
                .unwrap_or(0),
        );
        if free == 0 {
            return (Vec::new(), false);
        }
        let full: Vec<(OrgName, Destination)> = queues()
            .filter(|(_, _, limit)| limit.is_full())
            .map(|(o, dest, _)| (o.name().clone(), dest))
            .collect();
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        // Before the claim is sent: the lease can only end later than this says.
        let claimed_at = tokio::time::Instant::now();
        let claimed = match self
            .deps
            .store
            .claim_due(
                OffsetDateTime::now_utc(),
                self.deps.settings.lease,
                limit,
                &full,
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries; will try again");
                return (Vec::new(), false);
            }
        };
        let mut full_batch = claimed.len() == free;
        let mut jobs = Vec::with_capacity(claimed.len());
        for delivery in claimed {
            let org = self.deps.organizations.get(&delivery.org);
            let slot = match &org {
                Some(o) => match o.state.limit_for(delivery.destination).try_acquire() {
                    Some(slot) => Some(slot),
                    None => {
                        // Over this organization's limit: back to the queue.
                        if let Err(e) = self.deps.store.release(&delivery, None).await {
                            tracing::warn!(error = %e, "cannot release a delivery; its lease will expire");
                        }
                        full_batch = false;
                        continue;
                    }
                },
                // Removed from the configuration: the attempt dead-letters it.
                None => None,
            };
            jobs.push(Job {
                delivery,
                org,
                _slot: slot,
                probe: false,
                claimed_at,
            });
        }
        (jobs, full_batch)
    }

    async fn time_to_next_due(&self) -> Duration {
        let poll = self.deps.settings.poll_interval;
        match self.deps.store.next_due_at().await {
            Ok(Some(at)) => Duration::try_from(at - OffsetDateTime::now_utc())
                .unwrap_or_default()
                .min(poll),
            _ => poll,
        }
    }
}

/// The span of one delivery's attempt: its log lines carry these fields.
fn delivery_span(d: &ClaimedDelivery) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        lead_id = %d.lead_id,
        delivery_id = %d.id,
        request_id = %d.request_id,
        org = %d.org,
        destination = d.destination.as_str(),
        attempt = d.attempts.saturating_add(1),
    )
}

/// Attempt (keeping the lease meanwhile), observe, classify, record.
async fn process(deps: &Deps, job: Job) {
    let d = &job.delivery;
    let started = Instant::now();
    let attempt = attempt::run(deps, job.org.as_deref(), d);
    let times = LeaseTimes::new(&deps.settings);
    let completed = match lease::hold(deps.store.as_ref(), d, times, job.claimed_at, attempt).await
    {
        Ok(completed) => completed,
        Err(lost) => {
            // Nothing to record: the delivery is another worker's now, or
            // will be once the lease runs out.
            tracing::warn!(reason = %lost, "attempt stopped: its lease is lost");
            return;
        }
    };
    if let Some(org) = &job.org {
        observe(deps, org, d, &completed).await;
        blocking::observe(deps, d, job.probe, &completed).await;
    }
    let decision = attempt::classify(
        completed,
        d,
        deps.policy(d.destination),
        OffsetDateTime::now_utc(),
    );
    record(deps, d, decision, started.elapsed()).await;
}

/// What an answer teaches about the organization, whatever becomes of the
/// delivery: the concurrency Dataverse accepts, and a 429's pause (bounded
/// by `backoff_max`), kept in the store so that every replica stops.
async fn observe(deps: &Deps, org: &OrgRuntime, d: &ClaimedDelivery, completed: &Completed) {
    let limit = org.state.limit_for(d.destination);
    // Only Dataverse's answers steer its concurrency; the email queue's
    // limit is fixed.
    let adaptive = d.destination == Destination::Dataverse;
    let retry_after = match &completed.result {
        Ok(Sent::Created(created)) if adaptive => {
            limit.on_success(created.dop_hint);
            return;
        }
        Ok(Sent::AlreadyExisted { .. }) if adaptive => {
            limit.on_success(None);
            return;
        }
        Err(e) => match e.kind() {
            ErrorKind::Throttled { retry_after } => retry_after,
            _ => return,
        },
        Ok(_) => return,
    };
    let service = match d.destination {
        Destination::Dataverse => "dataverse",
        Destination::Email => "graph",
    };
    crate::metrics::throttled(service);
    let wait = deps
        .policy(d.destination)
        .bound(retry_after.unwrap_or(attempt::DEFAULT_PAUSE));
    let until = retry::later(OffsetDateTime::now_utc(), wait);
    if adaptive {
        limit.on_throttled();
    }
    if let Err(e) = deps.store.pause(&d.org, d.destination, until).await {
        tracing::warn!(error = %e, "cannot share the pause with other replicas");
    }
    tracing::warn!(until = %until, limit = limit.limit(), service, "throttled; the organization's queue is paused");
}

#[tracing::instrument(level = "debug", skip_all)]
async fn record(deps: &Deps, d: &ClaimedDelivery, decision: Decision, took: Duration) {
    let outcome = match decision {
        Decision::Record(outcome) => outcome,
        Decision::Postpone(until) => {
            tracing::debug!(until = %until, "organization paused; delivery postponed");
            if let Err(e) = deps.store.release(d, Some(until)).await {
                tracing::warn!(error = %e, "cannot release; its lease will expire");
            }
            return;
        }
    };
    let now = OffsetDateTime::now_utc();
    let label = match &outcome {
        AttemptOutcome::Delivered { remote_ref, .. } => {
            tracing::info!(record = %remote_ref, "lead delivered");
            "delivered"
        }
        AttemptOutcome::Retry {
            error,
            next_attempt_at,
            ..
        } => {
            tracing::warn!(
                error = %error,
                retry_in_s = (*next_attempt_at - now).whole_seconds(),
                "delivery failed; will retry"
            );
            "retry"
        }
        AttemptOutcome::Dead { error, .. } => {
            tracing::error!(error = %error, "delivery failed permanently; dead-lettered");
            deps.alerts.dead_letter(d, error);
            "dead"
        }
        AttemptOutcome::DryRun { remote_ref } => {
            tracing::info!(record = %remote_ref, "dry run recorded; `deliveries retry --all-dry-run` sends it once the organization is live");
            "dry_run"
        }
    };
    crate::metrics::delivery_attempt(d.org.as_str(), d.destination.as_str(), label, took);
    match deps.store.record_attempt(d, now, &outcome).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("lease expired before the outcome was recorded"),
        // The lease runs out and the delivery is tried again; the
        // client-generated record id keeps that from creating a duplicate.
        Err(e) => tracing::error!(error = %e, "cannot record the delivery outcome"),
    }
}
