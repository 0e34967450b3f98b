//! A scrape of `/metrics` after a handful of leads, with exact values. The
//! service runs as a subprocess so that no other test's counters mix in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::body_string_contains;

use crate::common::*;

/// `series -> value` from Prometheus text.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn lead(last_name: &str) -> String {
    json!({"OfferTitle": "Contoso CRM", "UserDetails": {"LastName": last_name, "Email": "x@example.com"}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_after_a_handful_of_leads() {
    let f = Fakes::start(&TestConfig::json_logs()).await;
    mount_token(&f.entra, ACCESS_TOKEN).await;
    mount_metadata(&f.dataverse, 300).await;
    on_lead_create()
        .and(body_string_contains(r#""lastname":"Refused""#))
        .respond_with(dataverse_error(
            400,
            "0x80044331",
            "A validation error occurred. The value of 'lastname' is not valid.",
        ))
        .with_priority(1)
        .mount(&f.dataverse)
        .await;
    on_lead_create()
        .and(body_string_contains(r#""lastname":"Throttled""#))
        .respond_with(throttled(1))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.dataverse)
        .await;
    mount_created(&f.dataverse).await;

    let served = Served::start(&f.config_path).await;
    let http = reqwest::Client::new();
    let post = |org: &str, code: &str, ct: &str, body: String| {
        http.post(format!("{}/leads/{org}?code={code}", served.base))
            .header("Content-Type", ct)
            .body(body)
            .send()
    };
    for name in ["First", "Second", "Throttled", "Refused"] {
        let r = post("contoso", SECRET, "application/json", lead(name))
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let again = post("contoso", SECRET, "application/json", lead("First"))
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "the same lead again is a duplicate");
    let refused = [
        post(
            "contoso",
            "wrong-secret-0123456789",
            "application/json",
            lead("x"),
        )
        .await,
        post("fabrikam", SECRET, "application/json", lead("x")).await,
        post("contoso", SECRET, "application/json", "{not json".into()).await,
        post("contoso", SECRET, "text/plain", lead("x")).await,
    ];
    let statuses: Vec<u16> = refused
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, [401, 401, 400, 415]);

    let delivered =
        r#"leadbridge_deliveries_total{org="contoso",destination="dataverse",outcome="delivered"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = http
            .get(format!("{}/metrics", served.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let m = parse(&text);
        // Counters move before the store records an outcome: wait for both.
        let settled = m.get(delivered) == Some(&3.0)
            && m.get("leadbridge_queue_depth") == Some(&0.0)
            && m.get("leadbridge_dead_letters") == Some(&1.0);
        if settled {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not finish:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let expected = [
        (
            r#"leadbridge_leads_received_total{org="contoso",outcome="accepted"}"#,
            4.0,
        ),
        (
            r#"leadbridge_leads_received_total{org="contoso",outcome="duplicate"}"#,
            1.0,
        ),
        (
            r#"leadbridge_leads_received_total{org="contoso",outcome="unauthorized"}"#,
            1.0,
        ),
        (
            r#"leadbridge_leads_received_total{org="_unknown",outcome="unauthorized"}"#,
            1.0,
        ),
        (
            r#"leadbridge_leads_received_total{org="contoso",outcome="invalid_json"}"#,
            1.0,
        ),
        (
            r#"leadbridge_leads_received_total{org="contoso",outcome="unsupported_media_type"}"#,
            1.0,
        ),
        (delivered, 3.0),
        (
            r#"leadbridge_deliveries_total{org="contoso",destination="dataverse",outcome="dead"}"#,
            1.0,
        ),
        (r#"leadbridge_token_requests_total{outcome="ok"}"#, 1.0),
        (r#"leadbridge_throttled_total{service="dataverse"}"#, 1.0),
        (
            r#"leadbridge_metadata_fetches_total{org="contoso",outcome="ok"}"#,
            1.0,
        ),
        ("leadbridge_queue_depth", 0.0),
        ("leadbridge_queue_oldest_pending_age_seconds", 0.0),
        ("leadbridge_dead_letters", 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(
            metrics.get(series),
            Some(&value),
            "{series} in {metrics:#?}"
        );
    }
    // The 429 is the one retry: attempts that were about to go out when it
    // came are held back, unsent, and are no attempts.
    assert_eq!(
        metrics.get(
            r#"leadbridge_deliveries_total{org="contoso",destination="dataverse",outcome="retry"}"#
        ),
        Some(&1.0),
        "{metrics:#?}"
    );
    assert_eq!(
        metrics.get(r#"leadbridge_delivery_attempt_duration_seconds_count{org="contoso",destination="dataverse"}"#),
        Some(&5.0),
        "every attempt timed: 3 delivered, 1 dead, 1 retry"
    );
    // Series a fresh process shows before any lead: zeros, not absent.
    let fresh = parse_fresh(&f).await;
    for series in [
        r#"leadbridge_leads_received_total{org="contoso",outcome="accepted"}"#,
        r#"leadbridge_deliveries_total{org="contoso",destination="dataverse",outcome="dead"}"#,
    ] {
        assert_eq!(fresh.get(series), Some(&0.0), "{series} in {fresh:#?}");
    }
    // Nothing else was counted: no other outcome, organization or label value.
    let leads_series = metrics
        .keys()
        .filter(|k| k.starts_with("leadbridge_leads_received_total"))
        .count();
    assert_eq!(leads_series, 6, "{metrics:#?}");
    assert!(
        !metrics
            .keys()
            .any(|k| k.contains("x@example.com") || k.contains("Refused"))
    );
    // Every attempt fell in a histogram bucket no larger than +Inf.
    assert_eq!(
        metrics.get(r#"leadbridge_delivery_attempt_duration_seconds_bucket{org="contoso",destination="dataverse",le="+Inf"}"#),
        Some(&5.0)
    );
    served.stop().await;
}

/// A scrape of a second, idle process on the same configuration.
async fn parse_fresh(f: &Fakes) -> HashMap<String, f64> {
    let idle = Served::start(&f.config_path).await;
    let text = reqwest::get(format!("{}/metrics", idle.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    idle.stop().await;
    parse(&text)
}
