//! Delivery against Dataverse's service protection limits, with the default
//! delivery settings (no fixed request cap, concurrency up to 52): a backlog
//! drains through a fake that enforces a request window and a concurrency
//! limit far below them, every lead arrives exactly once, and nothing is sent
//! while an announced Retry-After runs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use leadbridge::store::{DeliveryFilter, DeliveryStatus};

use crate::common::*;

/// 30 requests per second and 8 at once: a strict ceiling that a backlog
/// hits within its first second on both limits.
const LIMITS: ServiceLimits = ServiceLimits {
    requests: 30,
    window: Duration::from_secs(1),
    max_in_flight: 8,
    concurrency_retry_after_s: 1,
};
const LEADS: usize = 200;

#[tokio::test]
async fn a_backlog_drains_within_dataverse_limits_without_breaking_a_retry_after() {
    let t = TestApp::spawn_with(TestConfig {
        // The application's defaults for everything that shapes the pace.
        concurrency: leadbridge::config::DeliverySettings::default().concurrency,
        // Retry-After is bounded by backoff_max: keep it above the fake's 1 s;
        // and no lead may run out of attempts while the organization waits.
        backoff: ("100ms", "2s"),
        max_attempts: 1000,
        ..TestConfig::background_worker()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    let fake = FakeDataverse::new(&t.dataverse)
        .with_plan(Plan::ServiceLimits(LIMITS))
        .with_latency(Duration::from_millis(20));
    fake.mount(&t.dataverse).await;

    let mut emails = HashSet::new();
    for n in 0..LEADS {
        t.accept_lead(&lead_n(n)).await;
        emails.insert(email_n(n));
    }

    // A generous bound for a slow machine; how fast it drains is the
    // benchmark's business (benches/drain.rs --scenario strict).
    let store = leadbridge::store::connect(&t.store_url).await.unwrap();
    let all = DeliveryFilter {
        limit: 1000,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let deliveries = loop {
        let ds = store.list_deliveries(&all).await.unwrap();
        let done = ds.iter().all(|d| d.status == DeliveryStatus::Delivered);
        if done || Instant::now() >= deadline {
            break ds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let not_delivered: Vec<_> = deliveries
        .iter()
        .filter(|d| d.status != DeliveryStatus::Delivered)
        .collect();
    assert!(
        not_delivered.is_empty(),
        "{} of {LEADS} not delivered: {not_delivered:#?}",
        not_delivered.len()
    );
    assert_eq!(deliveries.len(), LEADS, "one delivery per lead");
    assert_eq!(fake.record_count(), LEADS);
    let by_email = fake.records_by_email();
    for e in &emails {
        assert_eq!(by_email.get(e), Some(&1), "{e} must exist exactly once");
    }

    let log = fake.log();
    let refused = |code| log.iter().filter(|l| l.limit_code == Some(code)).count();
    assert!(
        refused(REQUESTS_LIMIT) > 0,
        "the backlog must meet the request window for this test to mean anything"
    );
    // Requests already on the wire when a 429 left may land just after it.
    let violations = fake.retry_after_violations(Duration::from_millis(50));
    assert!(
        violations.is_empty(),
        "requests inside Retry-After (gap, Retry-After): {violations:?}; \
         429s: {} for requests, {} for concurrency",
        refused(REQUESTS_LIMIT),
        refused(CONCURRENCY_LIMIT),
    );
}
