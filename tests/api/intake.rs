use serde_json::Value;

use crate::common::*;

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("every error body is JSON");
    (
        status,
        v["error"].as_str().unwrap_or_default().to_owned(),
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn the_seed_sample_is_accepted_and_stored_before_the_answer() {
    let t = TestApp::spawn_dry_run().await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.count("leads").await, 1);
    let ds = t.deliveries(id).await;
    assert_eq!(ds.len(), 1, "one delivery per destination");
}

#[tokio::test]
async fn both_rotation_secrets_work() {
    let t = TestApp::spawn_dry_run().await;
    for (n, code) in [SECRET, SECOND_SECRET].into_iter().enumerate() {
        let r = t
            .http
            .post(t.lead_url("contoso", code))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(lead_n(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}

#[tokio::test]
async fn wrong_secret_and_unknown_org_get_the_same_401() {
    let t = TestApp::spawn_dry_run().await;
    let mut answers = Vec::new();
    for url in [
        t.lead_url("contoso", "wrong-secret-0123456789"),
        t.lead_url("fabrikam", SECRET),
        t.lead_url("Not_A_Name", SECRET),
        format!("{}/leads/contoso", t.base),
        t.lead_url("contoso", ""),
    ] {
        let r = post_lead_to(&t.http, &url, sample_2020())
            .send()
            .await
            .unwrap();
        answers.push(error_of(r).await);
    }
    for a in &answers {
        assert_eq!(a, &answers[0], "all refusals must look the same");
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1, "unauthorized");
    assert_eq!(t.count("leads").await, 0);
}

/// name, Content-Type, body, expected status, error code, part of the message
type BadCase = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn each_kind_of_bad_request_gets_its_status_and_stores_nothing() {
    let t = TestApp::spawn_dry_run().await;
    let url = t.lead_url("contoso", SECRET);
    let cases: Vec<BadCase> = vec![
        (
            "form",
            Some("application/x-www-form-urlencoded"),
            sample_2020().into(),
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "text",
            Some("text/plain"),
            sample_2020().into(),
            415,
            "unsupported_media_type",
            "not JSON",
        ),
        (
            "syntax",
            Some("application/json"),
            b"{\"OfferTitle\": ".to_vec(),
            400,
            "invalid_json",
            "line 1",
        ),
        (
            "garbage",
            Some("application/json"),
            b"hello".to_vec(),
            400,
            "invalid_json",
            "expected",
        ),
        (
            "array",
            Some("application/json"),
            b"[1,2]".to_vec(),
            400,
            "invalid_lead",
            "JSON object",
        ),
        (
            "empty object",
            Some("application/json"),
            b"{}".to_vec(),
            400,
            "invalid_lead",
            "UserDetails is missing",
        ),
        (
            "no user details",
            Some("application/json"),
            br#"{"OfferTitle":"Contoso Analytics","LeadSource":"AzureMarketplace"}"#.to_vec(),
            400,
            "invalid_lead",
            "UserDetails is missing",
        ),
        (
            "null user details",
            Some("application/json"),
            br#"{"OfferTitle":"Contoso Analytics","UserDetails":null}"#.to_vec(),
            400,
            "invalid_lead",
            "UserDetails must be an object, got null",
        ),
        (
            "empty user details and nothing else",
            Some("application/json"),
            br#"{"UserDetails":{}}"#.to_vec(),
            400,
            "invalid_lead",
            "no usable field",
        ),
        (
            "blank fields",
            Some("application/json"),
            br#"{"OfferTitle":" ","UserDetails":{"Email":""}}"#.to_vec(),
            400,
            "invalid_lead",
            "no usable field",
        ),
        (
            "bad user details",
            Some("application/json"),
            br#"{"UserDetails":"x"}"#.to_vec(),
            400,
            "invalid_lead",
            "UserDetails must be an object",
        ),
        (
            "nested value",
            Some("application/json"),
            br#"{"OfferTitle":{"a":1}}"#.to_vec(),
            400,
            "invalid_lead",
            "OfferTitle must be a string",
        ),
        (
            "too large",
            Some("application/json"),
            format!("{{\"OfferTitle\":\"{}\"}}", "x".repeat(5000)).into_bytes(),
            413,
            "payload_too_large",
            "4096",
        ),
    ];
    for (name, ct, body, status, error, message_part) in cases {
        let mut req = t.http.post(&url).body(body);
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let (s, e, m) = error_of(req.send().await.unwrap()).await;
        assert_eq!((s, e.as_str()), (status, error), "case {name}: {m}");
        assert!(
            m.contains(message_part),
            "case {name}: message {m:?} should mention {message_part:?}"
        );
    }
    assert_eq!(
        t.count("leads").await,
        0,
        "a refused request stores nothing"
    );
    assert_eq!(t.count("deliveries").await, 0);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    let t = TestApp::spawn_dry_run().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = post_lead_to(&t.http, &t.lead_url("contoso", SECRET), body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 413);
    assert_eq!(t.count("leads").await, 0);
}

#[tokio::test]
async fn lenient_about_what_the_marketplace_really_sends() {
    let t = TestApp::spawn_dry_run().await;
    for body in [
        // camelCase from one of Microsoft's FAQ samples, extra fields, no Content-Type parameters.
        r#"{"userDetails":{"firstName":"A","email":"a@b.c"},"offerTitle":"X","Extra":{"k":1}}"#,
        // Only a few fields, the rest blank.
        r#"{"UserDetails":{"FirstName":" ","Email":"a@b.c"},"Description":"Campaigns: "}"#,
        sample_2018(),
    ] {
        t.accept_lead(body).await;
    }
    // No Content-Type at all is accepted too: the body decides.
    let r = t
        .http
        .post(t.lead_url("contoso", SECRET))
        .body(sample_2020())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn unknown_fields_are_kept_in_the_stored_payload() {
    let t = TestApp::spawn_dry_run().await;
    t.accept_lead(
        r#"{"OfferTitle":"X","CampaignId":"c-42","UserDetails":{"Email":"a@b.c","Region":"EMEA"}}"#,
    )
    .await;
    let pool = t.db().await;
    let payload: String = sqlx::query_scalar("SELECT payload FROM leads")
        .fetch_one(&pool)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["CampaignId"], "c-42");
    assert_eq!(v["UserDetails"]["Region"], "EMEA");
}

#[tokio::test]
async fn a_failing_store_answers_503_and_nothing_is_half_stored() {
    let t = TestApp::spawn_dry_run().await;
    let pool = t.db().await;
    // The deliveries insert fails after the lead row was written: the
    // transaction must take both back.
    let statements: &[&str] = if is_postgres(&t.store_url) {
        &[
            "CREATE FUNCTION fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION fail()",
        ]
    } else {
        &[
            "CREATE TRIGGER fail BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        ]
    };
    for sql in statements {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    let (status, error, message) = error_of(t.post_lead(sample_2020()).await).await;
    assert_eq!((status, error.as_str()), (503, "store_unavailable"));
    assert!(message.contains("NOT accepted"), "{message}");
    assert!(
        !message.contains("disk on fire"),
        "internal errors stay in the log"
    );
    assert_eq!(t.count("leads").await, 0);
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let t = TestApp::spawn_dry_run().await;
    let r = t.get_public("/healthz").await;
    assert_eq!(r.status(), 200);
    let r = t.get_public("/nope").await;
    assert_eq!(error_of(r).await.1, "not_found");
    let r = t
        .http
        .get(t.lead_url("contoso", SECRET))
        .send()
        .await
        .unwrap();
    let (s, e, _) = error_of(r).await;
    assert_eq!((s, e.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn guessing_secrets_is_slowed_down_but_a_right_secret_always_gets_through() {
    let t = TestApp::spawn_dry_run().await;
    let mut statuses = Vec::new();
    for n in 0..35 {
        let url = t.lead_url("contoso", &format!("guess-{n:020}"));
        let r = post_lead_to(&t.http, &url, sample_2020())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "60");
            let (_, error, message) = error_of(r).await;
            assert_eq!(error, "rate_limited");
            assert!(message.contains("wrong endpoint secret"), "{message}");
        }
    }
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    // The real sender, from the same address, is not turned away.
    t.accept_lead(sample_2020()).await;
    assert_eq!(t.count("leads").await, 1);
}
