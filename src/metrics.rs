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
pub const ORGANIZATION_BLOCKED: &str = "leadbridge_organization_blocked";

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
    describe_gauge!(
        ORGANIZATION_BLOCKED,
        "1 while an organization-wide failure (credentials refused, privilege missing, environment gone) holds the organization's deliveries"
    );
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

/// The outcomes of a delivery attempt, as the `outcome` label spells them.
pub const ATTEMPT_OUTCOMES: [&str; 4] = ["delivered", "retry", "dead", "dry_run"];

/// Creates the main series of an organization at zero, so that dashboards
/// and `rate()` see them before the first lead arrives.
pub fn register_org(org: &str, destinations: &[&'static str]) {
    counter!(LEADS_RECEIVED, "org" => org.to_owned(), "outcome" => "accepted").increment(0);
    gauge!(ORGANIZATION_BLOCKED, "org" => org.to_owned()).set(0.0);
    for destination in destinations {
        for outcome in ATTEMPT_OUTCOMES {
            counter!(DELIVERIES, "org" => org.to_owned(), "destination" => *destination, "outcome" => outcome)
                .increment(0);
        }
    }
}

/// One answered `POST /leads/{org}`. `org` is `None` when the organization
/// is not configured; the outcome is `accepted` or the error code answered.
pub fn lead_received(org: Option<&str>, outcome: &'static str) {
    let org = org.unwrap_or(UNKNOWN_ORG).to_owned();
    counter!(LEADS_RECEIVED, "org" => org, "outcome" => outcome).increment(1);
}

/// One finished delivery attempt (`outcome`: one of [`ATTEMPT_OUTCOMES`])
/// and how long it took.
pub fn delivery_attempt(
    org: &str,
    destination: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let org = org.to_owned();
    counter!(DELIVERIES, "org" => org.clone(), "destination" => destination, "outcome" => outcome)
        .increment(1);
    histogram!(ATTEMPT_DURATION, "org" => org, "destination" => destination)
        .record(took.as_secs_f64());
}

/// The queue at scrape time: deliveries waiting, the age of the oldest of
/// them in seconds (0 when none waits), dead letters.
pub fn queue(waiting: u64, oldest_age_seconds: f64, dead: u64) {
    gauge!(QUEUE_DEPTH).set(waiting as f64);
    gauge!(OLDEST_PENDING_AGE).set(oldest_age_seconds.max(0.0));
    gauge!(DEAD_LETTERS).set(dead as f64);
}

/// Whether an organization-wide failure holds the organization's
/// deliveries (1) or not (0).
pub fn organization_blocked(org: &str, blocked: bool) {
    gauge!(ORGANIZATION_BLOCKED, "org" => org.to_owned()).set(if blocked { 1.0 } else { 0.0 });
}

/// How a token request to Entra ID ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TokenOutcome {
    Ok,
    /// Entra refused the credentials (permanent until the config changes).
    Rejected,
    /// Throttled, outage or network.
    Failed,
}

pub fn token_request(outcome: TokenOutcome) {
    let outcome: &'static str = outcome.into();
    counter!(TOKEN_REQUESTS, "outcome" => outcome).increment(1);
}

/// An HTTP 429 from `service` (`dataverse` or `entra`).
pub fn throttled(service: &'static str) {
    counter!(THROTTLED, "service" => service).increment(1);
}

/// A mapping file was re-read (hot reload); `ok = false` when the new file
/// was invalid and the old mapping stayed in force.
pub fn mapping_reloaded(org: &str, ok: bool) {
    counter!(MAPPING_RELOADS, "org" => org.to_owned(), "outcome" => ok_or_error(ok)).increment(1);
}

/// Column metadata was fetched from Dataverse (or failed to be).
pub fn metadata_fetched(org: &str, ok: bool) {
    counter!(METADATA_FETCHES, "org" => org.to_owned(), "outcome" => ok_or_error(ok)).increment(1);
}

fn ok_or_error(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// A rendered value was cut to the column's MaxLength at delivery. Column
/// names come from the mapping file, so they are bounded too.
pub fn value_truncated(org: &str, column: &str) {
    counter!(TRUNCATED_VALUES, "org" => org.to_owned(), "column" => column.to_owned()).increment(1);
}
