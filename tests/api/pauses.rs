//! Retry-After from every answer that carries one, bounded, and an
//! operator's way to clear a pause.

use std::time::Duration;

use leadbridge::lead::OrgName;
use leadbridge::store::{DeliveryStatus, Destination};
use time::OffsetDateTime;

use crate::common::*;

/// Until when the store says the organization is paused.
async fn paused_until(t: &TestApp) -> Option<OffsetDateTime> {
    let store = t.app.as_ref().expect("running").store();
    let org = OrgName::parse("contoso").expect("name");
    store
        .paused_until(&org, Destination::Dataverse, OffsetDateTime::now_utc())
        .await
        .expect("store")
}

#[tokio::test]
async fn a_503_with_retry_after_is_not_retried_sooner() {
    let t = TestApp::spawn_with(TestConfig {
        backoff: ("100ms", "30s"),
        ..TestConfig::default()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    let _fake = first_create_answered(
        &t.dataverse,
        service_unavailable().insert_header("Retry-After", "3"),
    )
    .await;
    let id = t.accept_lead(sample_2020()).await;
    let before = OffsetDateTime::now_utc();
    assert_eq!(t.run_worker_once().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert!(
        d.next_attempt_at >= before + Duration::from_secs(3),
        "Retry-After: 3 honoured: next attempt {} after {before}",
        d.next_attempt_at
    );
    assert_eq!(t.run_worker_once().await, 0, "not due before Retry-After");
}

#[tokio::test]
async fn an_absurd_retry_after_neither_panics_nor_pauses_beyond_backoff_max() {
    // Default test schedule: backoff_max = 400 ms.
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    let fake = first_create_answered(&t.dataverse, throttled(99_999_999_999)).await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 1);
    let after = OffsetDateTime::now_utc();
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert!(
        d.next_attempt_at <= after + Duration::from_millis(400),
        "bounded by backoff_max: next attempt {} after {after}",
        d.next_attempt_at
    );
    let paused = paused_until(&t).await;
    assert!(
        paused.is_none_or(|until| until <= after + Duration::from_millis(400)),
        "organization paused until {paused:?}"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::Delivered).await;
    assert_eq!(fake.record_count(), 1);
}

#[tokio::test]
async fn unpause_clears_a_long_pause_and_delivery_resumes() {
    let t = TestApp::spawn_with(TestConfig {
        backoff: ("100ms", "2h"),
        ..TestConfig::default()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    let fake = first_create_answered(&t.dataverse, throttled(3600)).await;
    let id = t.accept_lead(sample_2020()).await;
    let before = OffsetDateTime::now_utc();
    assert_eq!(t.run_worker_once().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert!(d.next_attempt_at >= before + Duration::from_secs(3600));
    assert!(
        paused_until(&t).await.is_some(),
        "the 429 paused the organization"
    );
    assert_eq!(t.run_worker_once().await, 0, "nothing due while paused");

    let run = t.cli(&["deliveries", "unpause", "--org", "contoso"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "organization contoso: 1 pause(s) and 0 block(s) cleared, 1 retrying deliveries due now"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(paused_until(&t).await, None);
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::Delivered).await;
    assert_eq!(fake.record_count(), 1);
}
