use std::time::Duration;

use leadbridge::store::DeliveryStatus;
use wiremock::matchers::{body_string_contains, header};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn one_token_serves_many_leads_and_the_request_is_client_credentials() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(t.accept_lead(&lead_n(n)).await);
    }
    // Four at a time (the test config's concurrency): the first pass's four
    // attempts run together.
    assert_eq!(t.deliver_due().await, 12);
    for id in ids {
        t.delivery_in(id, DeliveryStatus::Delivered).await;
    }
    let token_reqs = t.token_requests().await;
    assert_eq!(
        token_reqs.len(),
        1,
        "concurrent deliveries share one token request"
    );
    let f = form_fields(&token_reqs[0].body);
    let get = |k: &str| f.get(k).map(String::as_str);
    assert_eq!(get("grant_type"), Some("client_credentials"));
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    assert_eq!(get("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(
        get("scope"),
        Some(format!("{}/.default", t.dataverse.uri()).as_str())
    );
    assert_eq!(t.create_requests().await.len(), 12);
}

#[tokio::test]
async fn the_token_is_fetched_again_when_it_nears_expiry() {
    let t = TestApp::spawn().await;
    // 302 s of life and a 300 s refresh margin: good for about 2 s.
    on_token_request()
        .respond_with(token_ok("short-lived", 302))
        .mount(&t.entra)
        .await;
    mount_created(&t.dataverse).await;
    let a = t.accept_lead(&lead_n(1)).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(a, DeliveryStatus::Delivered).await;
    let b = t.accept_lead(&lead_n(2)).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(b, DeliveryStatus::Delivered).await;
    assert_eq!(t.token_requests().await.len(), 1, "still fresh");
    // The token's own clock: past its refresh point.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let c = t.accept_lead(&lead_n(3)).await;
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(c, DeliveryStatus::Delivered).await;
    assert_eq!(t.token_requests().await.len(), 2, "refreshed before expiry");
}

#[tokio::test]
async fn a_401_from_dataverse_triggers_exactly_one_refresh() {
    let t = TestApp::spawn().await;
    on_token_request()
        .respond_with(token_ok("revoked-token", 3599))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&t.entra)
        .await;
    mount_token(&t.entra, "fresh-token").await;
    on_lead_create()
        .and(header("authorization", "Bearer revoked-token"))
        .respond_with(dataverse_error(401, "", "").insert_header(
            "WWW-Authenticate",
            "Bearer error=\"invalid_token\", error_description=\"The access token is invalid\"",
        ))
        .mount(&t.dataverse)
        .await;
    on_lead_create()
        .and(header("authorization", "Bearer fresh-token"))
        .respond_with(FakeDataverse::new(&t.dataverse))
        .mount(&t.dataverse)
        .await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
    assert_eq!(d.attempts, 1, "the refresh happens inside one attempt");
    assert_eq!(t.token_requests().await.len(), 2);
    assert_eq!(t.create_requests().await.len(), 2);
}

#[tokio::test]
async fn refused_credentials_block_the_organization_with_entras_description() {
    for (status, error, code, text) in [
        (
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID",
        ),
        (
            400,
            "unauthorized_client",
            700016,
            "Application with identifier 'x' was not found in the directory 'contoso'.",
        ),
        (
            400,
            "invalid_request",
            90002,
            "Tenant '11111111-2222-3333-4444-555555555555' not found.",
        ),
    ] {
        let t = TestApp::spawn().await;
        on_token_request()
            .respond_with(entra_error(status, error, code, text))
            .mount(&t.entra)
            .await;
        let id = t.accept_lead(sample_2020()).await;
        assert_eq!(t.deliver_due().await, 1);
        let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
        assert!(
            d.blocked,
            "{error}: organization-wide, not the lead's fault"
        );
        let err = d.last_error.unwrap_or_default();
        assert!(
            err.contains(error) && err.contains(&format!("AADSTS{code}")),
            "{err}"
        );
        assert!(
            !err.contains("Trace ID"),
            "only the first line of the description: {err}"
        );
        assert!(!err.contains(CLIENT_SECRET));
        assert_eq!(d.attempts, 1);
        assert!(t.create_requests().await.is_empty());
    }
}

/// The first token request gets Entra's 503 `temporarily_unavailable`.
async fn first_token_request_unavailable(t: &TestApp) {
    on_token_request()
        .respond_with(entra_error(
            503,
            "temporarily_unavailable",
            50000,
            "There was an error issuing a token.",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&t.entra)
        .await;
}

#[tokio::test]
async fn an_unavailable_token_endpoint_is_retried() {
    // The second answer's Retry-After is a wait on the clock: the worker's
    // own loop must keep it (and backoff_max, its bound, be longer).
    let t = TestApp::spawn_with(TestConfig {
        backoff: ("100ms", "5s"),
        ..TestConfig::background_worker()
    })
    .await;
    first_token_request_unavailable(&t).await;
    on_token_request()
        .respond_with(
            entra_error(
                429,
                "temporarily_unavailable",
                50196,
                "The server terminated an operation because it encountered a client request loop.",
            )
            .insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&t.entra)
        .await;
    on_token_request()
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(token_ok("token-1", 3599))
        .with_priority(3)
        .mount(&t.entra)
        .await;
    mount_created(&t.dataverse).await;
    let id = t.accept_lead(sample_2020()).await;
    let d = t.wait_for(id, DeliveryStatus::Delivered, WAIT).await;
    assert_eq!(d.attempts, 3);
    assert_eq!(t.token_requests().await.len(), 3);
    let sent = t.create_bodies().await.remove(0);
    assert_eq!(sent["emailaddress1"], "someone@contoso.com");
}

#[tokio::test]
async fn a_failing_token_endpoint_gets_one_request_not_one_per_waiting_delivery() {
    let t = TestApp::spawn_with(TestConfig {
        backoff: ("100ms", "5s"),
        ..TestConfig::default()
    })
    .await;
    first_token_request_unavailable(&t).await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(t.accept_lead(&lead_n(n)).await);
    }
    let before = time::OffsetDateTime::now_utc();
    assert_eq!(t.run_worker_once().await, 4);
    assert_eq!(
        t.token_requests().await.len(),
        1,
        "the other three waited for the first one's answer and its backoff"
    );
    for id in &ids {
        let d = t.delivery_in(*id, DeliveryStatus::Retrying).await;
        assert!(
            d.next_attempt_at >= before + Duration::from_millis(900),
            "retried after the token backoff (1 s), not at once: {d:#?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(t.deliver_due().await, 4);
    for id in ids {
        t.delivery_in(id, DeliveryStatus::Delivered).await;
    }
    assert_eq!(t.token_requests().await.len(), 2);
}
