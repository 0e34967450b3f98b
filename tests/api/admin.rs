use leadbridge::store::DeliveryStatus;
use serde_json::Value;

use crate::common::*;

async fn get(t: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = t.http.get(format!("{}{path}", t.admin));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.expect("admin answers");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

#[tokio::test]
async fn readyz_is_on_the_admin_listener_only() {
    let t = TestApp::spawn_dry_run().await;
    let (status, body) = get(&t, "/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let public = t.get_public("/readyz").await;
    assert_eq!(public.status(), 404, "the public listener has no /readyz");
    let public = t.get_public("/metrics").await;
    assert_eq!(public.status(), 404, "nor /metrics");
    let health = t.get_public("/healthz").await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_auth() {
    let t = TestApp::spawn_dry_run().await;
    t.accept_lead(sample_2020()).await;
    let r = t.get_admin("/metrics").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    // Other tests in this process count too: exact values are asserted in
    // the subprocess test (tests/cli/metrics.rs).
    assert!(
        text.contains(r#"leadbridge_leads_received_total{org="contoso",outcome="accepted"}"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE leadbridge_queue_depth gauge"),
        "{text}"
    );
    assert!(text.contains("leadbridge_dead_letters "), "{text}");
}

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let t = TestApp::spawn().await;
    for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
        let mut req = t.http.get(format!("{}/admin/config", t.admin));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "token {token:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized");
    }
    // Unknown admin routes do not reveal themselves before the token check.
    let (status, _) = get(&t, "/admin/nope", None).await;
    assert_eq!(status, 401);
    let (status, body) = get(&t, "/admin/nope", Some(ADMIN_TOKEN)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn admin_config_shows_the_effective_config_without_secrets() {
    let t = TestApp::spawn().await;
    let (status, body) = get(&t, "/admin/config", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    let text = body.to_string();
    for secret in [SECRET, SECOND_SECRET, CLIENT_SECRET, ADMIN_TOKEN] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let org = &body["organizations"]["contoso"];
    assert_eq!(org["url"], format!("{}/", t.dataverse.uri()));
    assert_eq!(org["dry_run"], false);
    assert_eq!(
        org["endpoint_secrets"],
        serde_json::json!(["<redacted>", "<redacted>"])
    );
    assert_eq!(org["auth"]["client_secret"], "<redacted>");
    assert_eq!(org["auth"]["client_id"], CLIENT_ID);
    assert_eq!(body["admin"]["token"], "<redacted>");
    assert_eq!(body["delivery"]["max_attempts"], 5);
    assert_eq!(body["delivery"]["poll_interval"], "50ms");
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_disabled() {
    let t = TestApp::spawn_with(TestConfig {
        admin_token: None,
        ..Default::default()
    })
    .await;
    for token in [None, Some(ADMIN_TOKEN)] {
        let (status, body) = get(&t, "/admin/config", token).await;
        assert_eq!(status, 403);
        assert_eq!(body["error"], "admin_disabled");
    }
    let (status, _) = get(&t, "/readyz", None).await;
    assert_eq!(status, 200, "probes work without a token");
}

#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed_over_the_admin_api() {
    let t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(dataverse_error(
            400,
            "0x80044331",
            "A validation error occurred.",
        ))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&t.dataverse)
        .await;
    mount_created(&t.dataverse).await;
    let a = t.accept_lead(&lead_n(1)).await;
    let b = t.accept_lead(&lead_n(2)).await;
    assert_eq!(t.deliver_due().await, 2);
    let dead_a = t.delivery_in(a, DeliveryStatus::Dead).await;
    t.delivery_in(b, DeliveryStatus::Dead).await;

    let (status, body) = get(
        &t,
        "/admin/deliveries?status=dead&org=contoso",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["deliveries"].as_array().map(Vec::len), Some(2));
    let (status, _) = get(&t, "/admin/deliveries?status=lost", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 400);
    let (status, _) = get(&t, "/admin/deliveries", None).await;
    assert_eq!(status, 401, "the bearer token guards these routes too");

    let (status, shown) = get(
        &t,
        &format!("/admin/deliveries/{}", dead_a.id),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown["status"], "dead");
    assert_eq!(shown["history"][0]["http_status"], 400);
    assert!(
        shown["history"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("validation error")
    );

    let post = |path: String| {
        t.http
            .post(format!("{}{path}", t.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let r = post(format!("/admin/deliveries/{}/retry", dead_a.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(t.deliver_due().await, 1, "the replay is due at once");
    t.delivery_in(a, DeliveryStatus::Delivered).await;
    let r = post(format!("/admin/deliveries/{}/retry", dead_a.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a delivered lead is not sent again");
    let r = post(format!("/admin/deliveries/{}/retry", uuid::Uuid::nil()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = post("/admin/deliveries/retry-dead?org=contoso".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["queued"], 1);
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(b, DeliveryStatus::Delivered).await;
}
