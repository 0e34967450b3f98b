use leadbridge::store::DeliveryStatus;
use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_sample_reaches_a_running_leadbridge() {
    let t = TestApp::spawn_dry_run().await;
    let url = t.lead_url("contoso", SECRET);
    let run = run_binary(&["send-test-lead", "--url", &url]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut lines = run.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("POST {}/leads/contoso?code=***", t.base).as_str())
    );
    assert_eq!(lines.next(), Some("HTTP 202 Accepted"));
    let answer: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(answer["status"], "accepted");
    assert!(!run.stdout.contains(SECRET), "the secret is not printed");

    let id = answer["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(t.deliver_due().await, 1);
    t.delivery_in(id, DeliveryStatus::DryRun).await;
    assert_eq!(t.count("leads").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_or_an_unreachable_endpoint_exits_1() {
    let t = TestApp::spawn_dry_run().await;
    let wrong = t.lead_url("contoso", "wrong-secret-0123456789");
    let run = run_binary(&["send-test-lead", "--url", &wrong]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .contains("HTTP 401 Unauthorized\n{\"error\":\"unauthorized\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(
            "the endpoint answered 401: Partner Center would report the validation as failed"
        ),
        "{}",
        run.stderr
    );

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/leads/contoso?code={SECRET}");
    let run = run_binary(&["send-test-lead", "--url", &url]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!(
            "http://127.0.0.1:{port}/leads/contoso?code=***: cannot connect"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lead_file_is_sent_as_is() {
    let t = TestApp::spawn_dry_run().await;
    let file = t.write_file(
        "lead.json",
        r#"{"OfferTitle": "From a file", "UserDetails": {"Email": "MSFT_TEST_1@test.com"}}"#,
    );
    let run = run_binary(&[
        "send-test-lead",
        "--url",
        &t.lead_url("contoso", SECRET),
        "--lead",
        file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer: Value = serde_json::from_str(run.stdout.lines().nth(2).unwrap()).unwrap();
    let id = answer["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::DryRun).await;
    assert_eq!(d.lead_id, id);
    let pool = t.db().await;
    let (payload, is_test): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT payload, is_test FROM leads WHERE id = '{id}'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    let is_test = is_test == 1;
    assert_eq!(
        payload,
        r#"{"OfferTitle": "From a file", "UserDetails": {"Email": "MSFT_TEST_1@test.com"}}"#
    );
    assert!(is_test);
}
