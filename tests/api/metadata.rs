//! The worker cuts values to the real MaxLength from Dataverse's metadata.

use std::time::Duration;

use leadbridge::store::DeliveryStatus;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(10);

fn lead_with_title(title: &str) -> String {
    json!({"OfferTitle": title, "UserDetails": {"LastName": "One"}}).to_string()
}

async fn sent_body(t: &TestApp) -> Value {
    let reqs = t.requests_to(&t.dataverse, LEADS_PATH).await;
    serde_json::from_slice(&reqs.last().expect("a create").body).unwrap()
}

#[tokio::test]
async fn a_value_longer_than_max_length_is_cut_to_it() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    mount_metadata(&t.dataverse, 300).await;
    mount_created(&t.dataverse).await;
    let title = "Contoso CRM ".repeat(30); // 360 characters
    let id = t.accept_lead(&lead_with_title(&title)).await;
    t.wait_for(id, DeliveryStatus::Delivered, WAIT).await;
    let sent = sent_body(&t).await;
    let subject = sent["subject"].as_str().unwrap();
    assert_eq!(
        subject,
        &title[..300],
        "a plain cut: the mapping has no truncate"
    );
    assert_eq!(sent["lastname"], "One");
    // The metadata was read once, with the token of the deliveries.
    let string_reqs = t
        .requests_to(
            &t.dataverse,
            &format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.StringAttributeMetadata"),
        )
        .await;
    assert_eq!(string_reqs.len(), 1);
    assert_eq!(string_reqs[0].headers["authorization"], "Bearer token-1");
    assert_eq!(t.requests_to(&t.entra, TOKEN_PATH).await.len(), 1);
}

#[tokio::test]
async fn the_mappings_ellipsis_choice_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("contoso.yaml");
    std::fs::write(
        &mapping,
        "fields:\n  subject: {from: OfferTitle, transform: [{truncate: {max: 400, ellipsis: true}}]}\n",
    )
    .unwrap();
    let t = TestApp::spawn_with(TestConfig {
        mapping,
        ..Default::default()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    // An organization whose administrator shortened the column.
    mount_metadata(&t.dataverse, 20).await;
    mount_created(&t.dataverse).await;
    let id = t
        .accept_lead(&lead_with_title("An offer title of forty characters long!"))
        .await;
    t.wait_for(id, DeliveryStatus::Delivered, WAIT).await;
    assert_eq!(sent_body(&t).await["subject"], "An offer title of f…");
}

#[tokio::test]
async fn metadata_failures_never_block_delivery() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    Mock::given(method("GET"))
        .and(path_regex("^/api/data/v9.2/EntityDefinitions"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .mount(&t.dataverse)
        .await;
    mount_created(&t.dataverse).await;
    let title = "x".repeat(310);
    let first = t.accept_lead(&lead_with_title(&title)).await;
    t.wait_for(first, DeliveryStatus::Delivered, WAIT).await;
    assert_eq!(
        sent_body(&t).await["subject"],
        title.as_str(),
        "sent as rendered"
    );
    let second = t.accept_lead(&lead_with_title("short")).await;
    let d = t.wait_for(second, DeliveryStatus::Delivered, WAIT).await;
    assert_eq!(d.attempts, 1);
    // A failed fetch is not repeated for every delivery.
    let all = t
        .dataverse
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/api/data/v9.2/EntityDefinitions"))
        .count();
    assert_eq!(all, 1);
}

#[tokio::test]
async fn dry_run_organizations_fetch_no_metadata() {
    let t = TestApp::spawn_with(TestConfig {
        dry_run: true,
        ..Default::default()
    })
    .await;
    let id = t.accept_lead(&lead_with_title(&"y".repeat(400))).await;
    t.wait_for(id, DeliveryStatus::Delivered, WAIT).await;
    assert!(
        t.dataverse
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
