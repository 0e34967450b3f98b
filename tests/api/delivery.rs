use std::time::{Duration, Instant};

use leadbridge::store::DeliveryStatus;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;
use wiremock::matchers::header;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn both_seed_samples_become_exactly_the_expected_dataverse_request() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .and(header("authorization", "Bearer token-1"))
        .and(header("accept", "application/json"))
        .and(header("odata-maxversion", "4.0"))
        .and(header("odata-version", "4.0"))
        .and(header("content-type", "application/json; charset=utf-8"))
        .respond_with(FakeDataverse::new(&t.dataverse))
        .mount(&t.dataverse)
        .await;

    for sample in [sample_2020(), sample_2018()] {
        let id = t.accept_lead(sample).await;
        assert_eq!(t.deliver_due().await, 1);
        let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
        let expected_ref = format!("{}{LEADS_PATH}({})", t.dataverse.uri(), d.record_id);
        assert_eq!(
            d.remote_ref.as_deref(),
            Some(expected_ref.as_str()),
            "record id read from OData-EntityId"
        );

        let sent = t.last_create_body().await;
        let mut expected = seed_sample_record(sample);
        expected["leadid"] = json!(d.record_id.to_string());
        assert_eq!(sent, expected, "body for {sample}");
    }
}

#[tokio::test]
async fn a_transient_error_is_retried_until_delivered() {
    let t = TestApp::spawn_with(TestConfig::retry_at_once()).await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(service_unavailable())
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&t.dataverse)
        .await;
    mount_created(&t.dataverse).await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 3, "two retries, each due at once");
    let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
    assert_eq!(d.attempts, 3);
    let bodies = t.create_bodies().await;
    assert_eq!(bodies.len(), 3);
    let ids: Vec<Value> = bodies.iter().map(|b| b["leadid"].clone()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "every retry carries the same leadid: {ids:?}"
    );
}

#[tokio::test]
async fn throttling_is_honoured() {
    // Retry-After is a wait on the clock: the worker's own loop must keep it.
    // It is bounded by backoff_max, so that must be longer here.
    let t = TestApp::spawn_with(TestConfig {
        backoff: ("100ms", "5s"),
        ..TestConfig::background_worker()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    first_create_answered(&t.dataverse, throttled(2)).await;
    let started = Instant::now();
    let id = t.accept_lead(sample_2020()).await;
    t.wait_for(id, DeliveryStatus::Delivered, WAIT).await;
    assert_eq!(t.create_requests().await.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the retry waited for Retry-After"
    );
}

#[tokio::test]
async fn a_duplicate_key_on_retry_counts_as_delivered() {
    // The first create got through but its answer was lost (timeout / 503 from a
    // gateway); the retry is refused as a duplicate of our own key, and
    // reading the record back finds it.
    let t = TestApp::spawn_with(TestConfig::retry_at_once()).await;
    mount_token(&t.entra, "token-1").await;
    let bad_gateway = ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>");
    let fake = first_create_answered(&t.dataverse, bad_gateway).await;
    let id = t.accept_lead(sample_2020()).await;
    fake.seed(&t.delivery(id).await.record_id.to_string());
    assert_eq!(t.deliver_due().await, 2, "the 502, then the retry");
    let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
    let expected_ref = format!("{}{LEADS_PATH}({})", t.dataverse.uri(), d.record_id);
    assert_eq!(d.remote_ref.as_deref(), Some(expected_ref.as_str()));
    assert_eq!(fake.record_count(), 1, "exactly one record");
    let reads = received(&t.dataverse).await;
    assert!(
        reads.iter().any(|r| r.method.as_str() == "GET"
            && r.url.path() == format!("{LEADS_PATH}({})", d.record_id)),
        "the record was read back before counting the lead as delivered"
    );
}

#[tokio::test]
async fn a_duplicate_key_for_a_record_that_does_not_exist_is_not_delivered() {
    // A plugin or an alternate key refuses the create as a duplicate of some
    // other record: ours is not there, so the lead is not delivered.
    let t = TestApp::spawn_with(TestConfig::retry_at_once()).await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(duplicate_key())
        .with_priority(1)
        .mount(&t.dataverse)
        .await;
    let fake = mount_created(&t.dataverse).await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    let error = d.last_error.unwrap_or_default();
    assert!(error.contains("0x80040237"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    assert_eq!(t.deliver_due().await, 4, "retried up to max_attempts");
    t.delivery_in(id, DeliveryStatus::Dead).await;
    assert_eq!(fake.record_count(), 0);
}

#[tokio::test]
async fn a_permanent_dataverse_error_dead_letters_with_its_message() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(dataverse_error(
            400,
            "0x80060888",
            "Could not find a property named 'new_source' on type 'Microsoft.Dynamics.CRM.lead'.",
        ))
        .mount(&t.dataverse)
        .await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Dead).await;
    assert_eq!(d.attempts, 1, "permanent errors are not retried");
    let err = d.last_error.unwrap_or_default();
    assert!(
        err.contains("HTTP 400") && err.contains("new_source"),
        "{err}"
    );
}

#[tokio::test]
async fn retries_are_bounded() {
    let t = TestApp::spawn_with(TestConfig {
        max_attempts: 3,
        ..TestConfig::retry_at_once()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(dataverse_error(
            500,
            "0x80040216",
            "An unexpected error occurred.",
        ))
        .mount(&t.dataverse)
        .await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 3);
    let d = t.delivery_in(id, DeliveryStatus::Dead).await;
    assert_eq!(d.attempts, 3);
    assert_eq!(t.create_requests().await.len(), 3);
    let err = d.last_error.unwrap_or_default();
    assert!(
        err.contains("gave up after 3 attempts") && err.contains("unexpected error"),
        "{err}"
    );
}

#[tokio::test]
async fn dry_run_sends_nothing_to_microsoft() {
    let t = TestApp::spawn_dry_run().await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::DryRun).await;
    assert!(d.remote_ref.unwrap_or_default().starts_with("dry-run:"));
    assert!(received(&t.entra).await.is_empty());
    assert!(received(&t.dataverse).await.is_empty());
}

#[tokio::test]
async fn dry_run_leads_are_sent_for_real_once_the_organization_is_live() {
    let mut t = TestApp::spawn_dry_run().await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::DryRun).await;
    let run = t
        .cli(&["deliveries", "list", "--status", "dry_run", "--json"])
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let listed: Value = serde_json::from_str(&run.stdout).expect("json list");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["status"], "dry_run");

    // The organization goes live: same store, dry_run = false.
    t.stop().await;
    let config = std::fs::read_to_string(&t.config_path).expect("config");
    std::fs::write(
        &t.config_path,
        config.replace("dry_run = true", "dry_run = false"),
    )
    .expect("rewrite config");
    t.start().await;
    mount_token(&t.entra, "token-1").await;
    let fake = mount_created(&t.dataverse).await;
    assert_eq!(
        t.deliver_due().await,
        0,
        "dry-run deliveries wait for a replay"
    );

    let run = t
        .cli(&["deliveries", "retry", "--all-dry-run", "--org", "contoso"])
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("queued 1 dry-run deliveries of contoso"),
        "{}",
        run.stdout
    );
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
    let expected_ref = format!("{}{LEADS_PATH}({})", t.dataverse.uri(), d.record_id);
    assert_eq!(d.remote_ref.as_deref(), Some(expected_ref.as_str()));
    assert_eq!(fake.record_count(), 1);
}

#[tokio::test]
async fn the_mapping_file_shapes_the_request() {
    let (_dir, mapping) = mapping_file(
        r#"
fields:
  lastname: {from: UserDetails.LastName, default: "(unknown)"}
  subject: {template: "{OfferTitle} - {$action}", transform: [upper, {truncate: {max: 12, ellipsis: true}}]}
  leadsourcecode: {from: $source, map: {AzureMarketplace: 8}, default: 10}
  new_offer: $offer
  ownerid@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}
"#,
    );
    let t = TestApp::spawn_with_mapping(&mapping).await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let id = t
        .accept_lead(r#"{"LeadSource":"AzureMarketplace-PLT|contoso.crm-suite","OfferTitle":"Contoso CRM Suite","UserDetails":{"Email":"a@b.c"}}"#)
        .await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
    let sent = t.create_bodies().await.remove(0);
    assert_eq!(
        sent,
        json!({
            "lastname": "(unknown)",
            "subject": "CONTOSO CRM…",
            "leadsourcecode": 8,
            "new_offer": "contoso.crm-suite",
            "ownerid@odata.bind": "/teams(7a2b5c1e-0000-4000-8000-000000000001)",
            "leadid": d.record_id.to_string(),
        })
    );
}
