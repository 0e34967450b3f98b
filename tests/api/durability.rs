//! A lead answered 2xx reaches Dynamics exactly once, or waits in the
//! dead-letter list — through throttling, failures, crashes and replicas.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use leadbridge::store::DeliveryStatus;
use serde_json::Value;
use wiremock::MockServer;
use wiremock::matchers::body_string_contains;

use crate::common::*;

async fn mount_fake(server: &MockServer, plan: Plan, latency: Duration) -> FakeDataverse {
    let fake = FakeDataverse::new(server)
        .with_plan(plan)
        .with_latency(latency);
    fake.mount(server).await;
    fake
}

/// No request-rate ceiling in the way of crash tests.
const FAST: &str = "org_requests_per_minute = 600000";

/// For the tests that kill processes: the product's lease and renewal
/// (30 s, 10 s), room for many attempts in flight so that a kill finds
/// deliveries claimed, and no attempt cap, like the product default (72 h
/// of retries) — the harness's 5 would dead-letter the unlucky lead that
/// meets the fake's 503 five times.
fn crash_test_config() -> TestConfig {
    TestConfig {
        concurrency: 16,
        delivery_toml: format!("{FAST}\norg_concurrency = 16"),
        max_attempts: 1000,
        ..TestConfig::json_logs()
    }
}

/// What a dead process had claimed is delivered within this of a restart
/// (SQLite) or of its death while another replica lives (PostgreSQL).
const RECOVERY: Duration = Duration::from_secs(60);

/// Deliveries claimed at this moment, read behind the processes' backs.
async fn claimed_now(t: &TestApp) -> i64 {
    let pool = t.db().await;
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE lease_token IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    n
}

/// Waits until every lead in the store is delivered (those answered 2xx and
/// those stored just before a kill cut the answer off), within `within`.
async fn wait_all_delivered(t: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    let pool = t.db().await;
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} deliveries not delivered within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
}

/// Every lead answered 2xx exists exactly once, and the fake holds one
/// record per lead in the store: nothing lost, nothing doubled.
async fn assert_each_lead_once(t: &TestApp, fake: &FakeDataverse, accepted: &HashSet<String>) {
    assert_exactly_once(fake, accepted);
    let records = i64::try_from(fake.record_count()).unwrap();
    assert_eq!(
        records,
        t.count("leads").await,
        "one record per stored lead"
    );
}

/// Waits until every email has a record in the fake; on failure shows what
/// the store says about the deliveries that are not delivered.
async fn wait_all_created(
    t: &TestApp,
    fake: &FakeDataverse,
    emails: &HashSet<String>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let have = fake.records_by_email();
        let missing: Vec<_> = emails.iter().filter(|e| !have.contains_key(*e)).collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let store = leadbridge::store::connect(&t.store_url).await.unwrap();
            let filter = leadbridge::store::DeliveryFilter {
                limit: 1000,
                ..Default::default()
            };
            let stuck: Vec<_> = store
                .list_deliveries(&filter)
                .await
                .unwrap()
                .into_iter()
                .filter(|d| d.status != DeliveryStatus::Delivered)
                .collect();
            panic!(
                "{} leads never reached Dataverse: {missing:?}; not delivered: {stuck:#?}",
                missing.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_exactly_once(fake: &FakeDataverse, accepted: &HashSet<String>) {
    let by_email = fake.records_by_email();
    for e in accepted {
        assert_eq!(by_email.get(e), Some(&1), "{e} must exist exactly once");
    }
    for (e, n) in &by_email {
        assert_eq!(*n, 1, "{e} created {n} times");
    }
}

#[tokio::test]
async fn retry_after_pauses_the_whole_queue_and_every_lead_arrives_once() {
    let t = TestApp::spawn_with(TestConfig {
        max_attempts: 1000,
        // Retry-After is bounded by backoff_max: keep it above the fake's 1 s.
        backoff: ("100ms", "2s"),
        ..TestConfig::background_worker()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    let plan = Plan::ThrottleAndFlaky {
        throttle_every: 7,
        retry_after_s: 1,
        flaky_every: 5,
    };
    let fake = mount_fake(&t.dataverse, plan, Duration::from_millis(5)).await;
    let mut accepted = HashSet::new();
    for n in 0..30 {
        t.accept_lead(&lead_n(n)).await;
        accepted.insert(email_n(n));
    }
    wait_all_created(&t, &fake, &accepted, Duration::from_secs(60)).await;
    assert_exactly_once(&fake, &accepted);
    let log = fake.log();
    assert!(log.iter().any(|l| l.status == 429), "the fake throttled");
    assert!(log.iter().any(|l| l.status == 503), "the fake failed");
    // Requests already on the wire when the 429 left may land just after it.
    let violations = fake.retry_after_violations(Duration::from_millis(50));
    assert!(
        violations.is_empty(),
        "requests inside Retry-After: {violations:?}"
    );
}

#[tokio::test]
async fn the_same_lead_twice_within_the_window_is_answered_duplicate_and_created_once() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    let fake = mount_fake(&t.dataverse, Plan::AlwaysOk, Duration::ZERO).await;
    let first = t.accept_lead(sample_2020()).await;

    // Same document, other key order and whitespace.
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(sample_2020()).unwrap();
    let user = v.remove("UserDetails").unwrap();
    v.insert("UserDetails".into(), user);
    let reordered = serde_json::to_string_pretty(&v).unwrap();
    let r = t.post_lead(&reordered).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["id"], first.to_string());

    // Different spacing inside a value is another lead.
    let other = sample_2020().replace("Test Microsoft", "Test  Microsoft");
    let second = t.accept_lead(&other).await;
    assert_ne!(first, second);

    assert_eq!(t.deliver_due().await, 2);
    t.delivery_in(first, DeliveryStatus::Delivered).await;
    t.delivery_in(second, DeliveryStatus::Delivered).await;
    assert_eq!(fake.records().len(), 2);
    assert_eq!(t.count("leads").await, 2);
}

#[tokio::test]
async fn a_permanent_400_dead_letters_then_a_fixed_mapping_is_replayed() {
    let (_dir, mapping) =
        mapping_file("fields:\n  lastname: UserDetails.LastName\n  new_source: $source\n");
    let t = TestApp::spawn_with_mapping(&mapping).await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .and(body_string_contains("new_source"))
        .respond_with(dataverse_error(
            400,
            "0x80060888",
            "Could not find a property named 'new_source' on type 'Microsoft.Dynamics.CRM.lead'.",
        ))
        .with_priority(1)
        .mount(&t.dataverse)
        .await;
    mount_created(&t.dataverse).await;

    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 1);
    let dead = t.delivery_in(id, DeliveryStatus::Dead).await;
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("new_source")
    );

    let out = t
        .cli(&["deliveries", "list", "--status", "dead", "--json"])
        .await;
    assert!(out.success(), "{}", out.stderr);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], dead.id.to_string());
    assert_eq!(listed[0]["status"], "dead");
    let out = t.cli(&["deliveries", "show", &dead.id.to_string()]).await;
    let shown = &out.stdout;
    assert!(
        shown.contains("dead") && shown.contains("Could not find a property named 'new_source'"),
        "{shown}"
    );

    // Fix the mapping; the running service reloads it; replay.
    let registry = t.mappings();
    let generation = registry.generation();
    std::fs::write(&mapping, "fields:\n  lastname: UserDetails.LastName\n").unwrap();
    wait_until(
        "the fixed mapping to be reloaded",
        Duration::from_secs(10),
        || registry.generation() > generation,
    )
    .await;
    let out = t.cli(&["deliveries", "retry", &dead.id.to_string()]).await;
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains("queued"));
    assert_eq!(t.deliver_due().await, 1, "the replay is due at once");
    let delivered = t.delivery_in(id, DeliveryStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let last = t.last_create_body().await;
    assert!(
        last.get("new_source").is_none(),
        "the replay used the current mapping"
    );

    // Retrying a delivered one does not send it again.
    let out = t.cli(&["deliveries", "retry", &dead.id.to_string()]).await;
    assert!(out.stdout.contains("already delivered"));
    let out = t
        .cli(&["deliveries", "retry", &uuid::Uuid::nil().to_string()])
        .await;
    assert!(!out.success(), "an unknown id is an error");
}

#[tokio::test]
async fn sigkill_while_leads_flow_loses_and_doubles_nothing() {
    let t = TestApp::prepare(crash_test_config()).await;
    mount_token(&t.entra, "token-1").await;
    // Creates take a while: every kill finds deliveries claimed, mid-request.
    let fake = mount_fake(
        &t.dataverse,
        Plan::Flaky { every: 4 },
        Duration::from_millis(300),
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut accepted = HashSet::new();
    let mut held_at_kills = 0;
    let mut n = 0;
    for cycle in 0..4 {
        let mut p = Served::start(&t.config_path).await;
        let run_for = Duration::from_millis(400 + 200 * (cycle % 2));
        let started = Instant::now();
        while started.elapsed() < run_for {
            n += 1;
            let r = post_lead_to(&http, &p.lead_url("contoso", SECRET), lead_n(n))
                .send()
                .await;
            if let Ok(r) = r
                && r.status() == 202
            {
                accepted.insert(email_n(n));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p.kill();
        held_at_kills += claimed_now(&t).await;
    }
    assert!(accepted.len() > 20, "leads flowed: {}", accepted.len());
    assert!(held_at_kills > 0, "the kills found deliveries claimed");
    // With the default lease: on SQLite the restart hands the dead
    // processes' claims back at once; on PostgreSQL they expire.
    let restarted = Instant::now();
    let _last = Served::start(&t.config_path).await;
    wait_all_delivered(&t, RECOVERY.saturating_sub(restarted.elapsed())).await;
    wait_all_created(&t, &fake, &accepted, Duration::from_secs(1)).await;
    assert_each_lead_once(&t, &fake, &accepted).await;
}

#[tokio::test]
async fn two_replicas_on_one_postgres_database_one_killed_mid_run() {
    let Some(store_url) =
        postgres_database("two_replicas_on_one_postgres_database_one_killed_mid_run").await
    else {
        return;
    };
    let t = TestApp::prepare(TestConfig {
        store_url: Some(store_url),
        ..crash_test_config()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    let fake = mount_fake(
        &t.dataverse,
        Plan::Flaky { every: 5 },
        Duration::from_millis(500),
    )
    .await;
    let mut a = Served::start(&t.config_path).await;
    let b = Served::start(&t.config_path).await;
    let mut accepted = HashSet::new();
    for n in 0..30 {
        let target = if n % 3 == 2 { &b } else { &a };
        assert_eq!(target.post_lead(lead_n(n)).await.status(), 202);
        accepted.insert(email_n(n));
    }
    // Killed with creates on the wire: the other replica takes its
    // deliveries over once their (default, 30 s) leases run out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.kill();
    let killed = Instant::now();
    assert!(
        claimed_now(&t).await > 0,
        "deliveries were claimed at the kill"
    );
    for n in 30..60 {
        assert_eq!(b.post_lead(lead_n(n)).await.status(), 202);
        accepted.insert(email_n(n));
    }
    wait_all_delivered(&t, RECOVERY.saturating_sub(killed.elapsed())).await;
    wait_all_created(&t, &fake, &accepted, Duration::from_secs(1)).await;
    assert_each_lead_once(&t, &fake, &accepted).await;
    drop(b);
}

#[tokio::test]
async fn an_attempt_longer_than_its_lease_keeps_it_and_is_sent_once() {
    // Every create outlasts the lease: without renewals the delivery would
    // be claimed again (by the same worker, or the other replica on
    // PostgreSQL) and sent a second time.
    let t = TestApp::prepare(TestConfig {
        lease: Some("3s"),
        delivery_toml: r#"lease_renewal = "1s""#.into(),
        request_timeout: "20s",
        ..TestConfig::json_logs()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    let fake = mount_fake(&t.dataverse, Plan::AlwaysOk, Duration::from_secs(7)).await;
    let replicas = if is_postgres(&t.store_url) { 2 } else { 1 };
    let mut served = Vec::new();
    for _ in 0..replicas {
        served.push(Served::start(&t.config_path).await);
    }
    let mut accepted = HashSet::new();
    for n in 0..3 {
        let r = served[n % replicas].post_lead(lead_n(n)).await;
        assert_eq!(r.status(), 202);
        accepted.insert(email_n(n));
    }
    // The fake holds a record as soon as a create arrives; the outcome is
    // recorded once its answer is back, 7 s later.
    wait_all_delivered(&t, Duration::from_secs(30)).await;
    let mut creates: HashMap<String, usize> = HashMap::new();
    for body in t.create_bodies().await {
        let id = body["leadid"].as_str().unwrap_or_default().to_owned();
        *creates.entry(id).or_default() += 1;
    }
    assert_eq!(creates.len(), 3, "{creates:?}");
    assert!(
        creates.values().all(|&n| n == 1),
        "one create request per delivery: {creates:?}"
    );
    assert_each_lead_once(&t, &fake, &accepted).await;
}

#[tokio::test]
async fn sigterm_lets_the_delivery_in_flight_finish() {
    let t = TestApp::prepare(TestConfig::json_logs()).await;
    mount_token(&t.entra, "token-1").await;
    let fake = mount_fake(&t.dataverse, Plan::AlwaysOk, Duration::from_millis(1500)).await;
    let mut p = Served::start(&t.config_path).await;
    let r = p.post_lead(sample_2020()).await;
    assert_eq!(r.status(), 202);
    wait_until("the delivery to start", Duration::from_secs(10), || {
        !fake.log().is_empty()
    })
    .await;
    let status = p.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert_eq!(fake.records().len(), 1, "the request in flight completed");
    let store = leadbridge::store::connect(&t.store_url).await.unwrap();
    let rows = store.list_deliveries(&Default::default()).await.unwrap();
    assert_eq!(
        rows[0].status,
        DeliveryStatus::Delivered,
        "and its outcome was recorded"
    );
}
