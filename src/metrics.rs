//! Every Prometheus metric leadbridge exports: names, labels and one small
//! function per event, so that call sites elsewhere stay one line and the
//! naming lives in one place.
//!
//! Recording goes through the `metrics` facade: until [`install`] runs (the
//! `serve` verb), every function here is a cheap no-op, which keeps the
//! offline verbs and unit tests free of global state.
//!
//! Label values are bounded by configuration (organization names, a fixed
//! set of outcomes); lead ids and personal data never become labels.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use time::OffsetDateTime;

use crate::lead::OrgName;
use crate::store::{AttemptOutcome, ClaimedDelivery, Destination, QueueStats};

pub const LEADS_RECEIVED: &str = "leadbridge_leads_received_total";
pub const DELIVERIES: &str = "leadbridge_deliveries_total";
pub const ATTEMPT_DURATION: &str = "leadbridge_delivery_attempt_duration_seconds";
pub const QUEUE_DEPTH: &str = "leadbridge_queue_depth";
pub const OLDEST_PENDING_AGE: &str = "leadbridge_queue_oldest_pending_age_seconds";
pub const DEAD_LETTERS: &str = "leadbridge_dead_letters";
pub const TOKEN_REQUESTS: &str = "leadbridge_token_requests_total";
pub const THROTTLED: &str = "leadbridge_throttled_total";
pub const MAPPING_RELOADS: &str = "leadbridge_mapping_reloads_total";
pub const METADATA_FETCHES: &str = "leadbridge_metadata_fetches_total";
pub const TRUNCATED_VALUES: &str = "leadbridge_truncated_values_total";

/// The `org` label of a request whose organization is not configured. Not a
/// valid organization name, so it can never collide with a real one.
pub const UNKNOWN_ORG: &str = "_unknown";

/// Upper bounds of the attempt-latency histogram: a Dataverse create takes
/// 100 ms to a few seconds; timeouts end at `delivery.request_timeout`.
const LATENCY_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that
/// renders it. Later calls (several applications in one test process) get the
/// same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            // Only fails for an empty bucket list, which LATENCY_BUCKETS is not;
            // without buckets, histograms render as summaries.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        LEADS_RECEIVED,
        "Lead requests answered by the public listener, by organization and outcome"
    );
    describe_counter!(
        DELIVERIES,
        "Delivery attempts by organization, destination and outcome (delivered, retry, dead)"
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        metrics::Unit::Seconds,
        "Duration of one delivery attempt, token included"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Deliveries waiting to be made (pending or retrying)"
    );
    describe_gauge!(
        OLDEST_PENDING_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest delivery still waiting; 0 when none waits"
    );
    describe_gauge!(DEAD_LETTERS, "Dead-lettered deliveries in the store");
    describe_counter!(
        TOKEN_REQUESTS,
        "Token requests to Entra ID by outcome (ok, rejected, failed)"
    );
    describe_counter!(
        THROTTLED,
        "HTTP 429 answers received, by service (dataverse, entra)"
    );
    describe_counter!(
        MAPPING_RELOADS,
        "Mapping file reloads by organization and outcome"
    );
    describe_counter!(
        METADATA_FETCHES,
        "Dataverse column metadata fetches by organization and outcome"
    );
    describe_counter!(
        TRUNCATED_VALUES,
        "Values cut to a Dataverse column's MaxLength at delivery"
    );
}

/// Creates the main series of an organization at zero, so that dashboards
/// and `rate()` see them before the first lead arrives.
pub fn register_org(org: &OrgName) {
    let name = org.as_str().to_owned();
    counter!(LEADS_RECEIVED, "org" => name.clone(), "outcome" => "accepted").increment(0);
    for outcome in ["delivered", "retry", "dead"] {
        counter!(DELIVERIES, "org" => name.clone(), "destination" => Destination::Dataverse.as_str(), "outcome" => outcome)
            .increment(0);
    }
}

/// One answered `POST /leads/{org}`. `org` is `None` when the organization
/// is not configured; the outcome is `accepted` or the error code answered.
pub fn lead_received(org: Option<&OrgName>, outcome: &'static str) {
    let org = org.map_or(UNKNOWN_ORG, OrgName::as_str).to_owned();
    counter!(LEADS_RECEIVED, "org" => org, "outcome" => outcome).increment(1);
}

/// One finished delivery attempt and how long it took.
pub fn delivery_attempt(d: &ClaimedDelivery, outcome: &AttemptOutcome, took: Duration) {
    let result = match outcome {
        AttemptOutcome::Delivered { .. } => "delivered",
        AttemptOutcome::Retry { .. } => "retry",
        AttemptOutcome::Dead { .. } => "dead",
    };
    let org = d.org.as_str().to_owned();
    let destination = d.destination.as_str();
    counter!(DELIVERIES, "org" => org.clone(), "destination" => destination, "outcome" => result)
        .increment(1);
    histogram!(ATTEMPT_DURATION, "org" => org, "destination" => destination)
        .record(took.as_secs_f64());
}

/// The store's view of the queue at `now`, set at scrape time.
pub fn queue(stats: &QueueStats, now: OffsetDateTime) {
    let age = stats
        .oldest_waiting_since
        .map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0));
    gauge!(QUEUE_DEPTH).set(stats.waiting as f64);
    gauge!(OLDEST_PENDING_AGE).set(age);
    gauge!(DEAD_LETTERS).set(stats.dead as f64);
}

/// How a token request to Entra ID ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    Ok,
    /// Entra refused the credentials (permanent until the config changes).
    Rejected,
    /// Throttled, outage or network.
    Failed,
}

pub fn token_request(outcome: TokenOutcome) {
    let outcome = match outcome {
        TokenOutcome::Ok => "ok",
        TokenOutcome::Rejected => "rejected",
        TokenOutcome::Failed => "failed",
    };
    counter!(TOKEN_REQUESTS, "outcome" => outcome).increment(1);
}

/// An HTTP 429 from `service` (`dataverse` or `entra`).
pub fn throttled(service: &'static str) {
    counter!(THROTTLED, "service" => service).increment(1);
}

/// A mapping file was re-read (hot reload); `ok = false` when the new file
/// was invalid and the old mapping stayed in force.
pub fn mapping_reloaded(org: &OrgName, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(MAPPING_RELOADS, "org" => org.as_str().to_owned(), "outcome" => outcome).increment(1);
}

/// Column metadata was fetched from Dataverse (or failed to be).
pub fn metadata_fetched(org: &OrgName, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(METADATA_FETCHES, "org" => org.as_str().to_owned(), "outcome" => outcome).increment(1);
}

/// A rendered value was cut to the column's MaxLength at delivery. Column
/// names come from the mapping file, so they are bounded too.
pub fn value_truncated(org: &OrgName, column: &str) {
    counter!(TRUNCATED_VALUES, "org" => org.as_str().to_owned(), "column" => column.to_owned())
        .increment(1);
}
