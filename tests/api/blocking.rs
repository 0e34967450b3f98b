//! Organization-wide failures block the organization: its leads wait (none
//! is dead-lettered for it), the block is visible, and delivery resumes by
//! itself once the cause is fixed.

use std::time::Duration;

use leadbridge::ids::LeadId;
use leadbridge::store::DeliveryStatus;
use serde_json::Value;
use wiremock::matchers::body_string_contains;

use crate::common::*;

const WRONG_SECRET: &str = "wrong-client-secret-value";

/// Entra as it checks a client secret: the right one gets a token, any
/// other `invalid_client` (AADSTS7000215).
async fn mount_entra_checking_the_secret(t: &TestApp) {
    on_token_request()
        .and(body_string_contains(CLIENT_SECRET))
        .respond_with(token_ok("token-1", 3599))
        .with_priority(1)
        .mount(&t.entra)
        .await;
    on_token_request()
        .respond_with(entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID",
        ))
        .with_priority(2)
        .mount(&t.entra)
        .await;
}

async fn metric(t: &TestApp, line_start: &str) -> Option<String> {
    let text = t.get_admin("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_owned)
}

async fn readyz(t: &TestApp) -> (u16, Value) {
    let r = t.get_admin("/readyz").await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn accept(t: &TestApp, n: usize) -> Vec<LeadId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(t.accept_lead(&lead_n(i)).await);
    }
    ids
}

#[tokio::test]
async fn a_wrong_client_secret_blocks_the_organization_until_the_config_is_fixed() {
    let mut t = TestApp::spawn_with(TestConfig {
        credential: Some(format!("client_secret = \"{WRONG_SECRET}\"")),
        // Only the restart with the fixed configuration may resume it.
        delivery_toml: "block_probe_interval = \"1h\"".into(),
        ..TestConfig::retry_at_once()
    })
    .await;
    mount_entra_checking_the_secret(&t).await;
    let fake = mount_created(&t.dataverse).await;
    let ids = accept(&t, 5).await;

    // The first pass's four attempts fail alike; then nothing more is tried.
    assert_eq!(t.deliver_due().await, 4);
    assert_eq!(t.deliver_due().await, 0, "a blocked organization waits");
    for id in &ids {
        let d = t.delivery(*id).await;
        assert!(d.blocked, "{d:#?}");
        match d.status {
            DeliveryStatus::Retrying => {
                let err = d.last_error.unwrap_or_default();
                assert!(
                    err.starts_with("organization blocked: ") && err.contains("AADSTS7000215"),
                    "{err}"
                );
                assert!(!err.contains(WRONG_SECRET), "no secret in errors: {err}");
            }
            DeliveryStatus::Pending => assert_eq!(d.attempts, 0),
            other => panic!("{id}: {other} (nothing may be dead-lettered): {d:#?}"),
        }
    }
    assert_eq!(fake.record_count(), 0);

    // Visible: the gauge, /readyz (still ready: intake goes on), the CLI.
    assert_eq!(
        metric(&t, "leadbridge_organization_blocked{org=\"contoso\"}")
            .await
            .as_deref(),
        Some("leadbridge_organization_blocked{org=\"contoso\"} 1")
    );
    let (status, body) = readyz(&t).await;
    assert_eq!(status, 200, "{body}");
    let blocked = &body["blocked_organizations"][0];
    assert_eq!(blocked["org"], "contoso", "{body}");
    assert_eq!(blocked["destination"], "dataverse");
    assert!(
        blocked["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_client")),
        "{body}"
    );
    let run = t.cli(&["deliveries", "list"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("organization contoso BLOCKED since")
            && run.stdout.contains("invalid_client"),
        "{}",
        run.stdout
    );
    let run = t.cli(&["deliveries", "list", "--json"]).await;
    let listed: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|d| d["blocked"] == true), "{listed:#?}");

    // The secret is fixed in the configuration; the restart probes at once.
    t.stop().await;
    let config = std::fs::read_to_string(&t.config_path).unwrap();
    std::fs::write(&t.config_path, config.replace(WRONG_SECRET, CLIENT_SECRET)).unwrap();
    t.start().await;
    assert_eq!(t.deliver_due().await, 5);
    for id in &ids {
        let d = t.delivery_in(*id, DeliveryStatus::Delivered).await;
        assert!(!d.blocked);
    }
    assert_eq!(fake.record_count(), 5, "each lead created once");
    assert_eq!(
        metric(&t, "leadbridge_organization_blocked{org=\"contoso\"}")
            .await
            .as_deref(),
        Some("leadbridge_organization_blocked{org=\"contoso\"} 0")
    );
    let (status, body) = readyz(&t).await;
    assert_eq!(status, 200);
    assert!(body.get("blocked_organizations").is_none(), "{body}");
}

#[tokio::test]
async fn a_missing_privilege_blocks_and_a_probe_resumes_once_it_is_granted() {
    let t = TestApp::spawn_with(TestConfig {
        // Long enough that a loaded machine takes one probe per interval.
        delivery_toml: "block_probe_interval = \"1s\"".into(),
        ..TestConfig::retry_at_once()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(dataverse_error(
            403,
            "0x80040220",
            "Principal user (Id=…, type=8) is missing prvCreateLead privilege.",
        ))
        .mount(&t.dataverse)
        .await;
    let ids = accept(&t, 3).await;
    assert_eq!(t.run_worker_once().await, 3);
    for id in &ids {
        let d = t.delivery_in(*id, DeliveryStatus::Retrying).await;
        assert!(d.blocked);
        assert!(
            d.last_error.unwrap_or_default().contains("prvCreateLead"),
            "the reason is kept"
        );
    }
    // Every probe interval, one delivery alone tries: still refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(t.run_worker_once().await, 1, "one probe");
    assert_eq!(t.run_worker_once().await, 0);
    assert_eq!(t.create_requests().await.len(), 4);

    // An administrator grants the privilege: the next probe gets through
    // and the waiting deliveries follow at once.
    t.dataverse.reset().await;
    let fake = mount_created(&t.dataverse).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(t.deliver_due().await, 3);
    for id in &ids {
        t.delivery_in(*id, DeliveryStatus::Delivered).await;
    }
    assert_eq!(fake.record_count(), 3);
}

#[tokio::test]
async fn a_401_for_a_fresh_token_blocks_and_a_lead_error_still_dead_letters() {
    let t = TestApp::spawn_with(TestConfig {
        delivery_toml: "block_probe_interval = \"200ms\"".into(),
        ..TestConfig::retry_at_once()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(dataverse_error(
            401,
            "",
            "The user is not a member of the organization.",
        ))
        .mount(&t.dataverse)
        .await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert!(d.blocked);
    assert!(
        d.last_error
            .unwrap_or_default()
            .contains("a freshly issued token was refused too"),
    );
    assert_eq!(t.token_requests().await.len(), 2, "one fresh token, once");
    assert_eq!(t.create_requests().await.len(), 2);

    // The environment works again but this lead has a value Dataverse
    // refuses: the probe's answer is the lead's own. The block lifts, and
    // the lead dead-letters at once, as any lead with a bad value does.
    t.dataverse.reset().await;
    on_lead_create()
        .respond_with(dataverse_error(
            400,
            "0x80044331",
            "A validation error occurred. The value of 'subject' is invalid.",
        ))
        .mount(&t.dataverse)
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Dead).await;
    assert!(!d.blocked, "the probe lifted the block");
    assert!(d.last_error.unwrap_or_default().contains("0x80044331"));
}

#[tokio::test]
async fn unpause_lifts_a_block() {
    let t = TestApp::spawn_with(TestConfig {
        credential: Some(format!("client_secret = \"{WRONG_SECRET}\"")),
        delivery_toml: "block_probe_interval = \"1h\"".into(),
        ..TestConfig::retry_at_once()
    })
    .await;
    mount_entra_checking_the_secret(&t).await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 1);
    assert!(t.delivery(id).await.blocked);
    let run = t.cli(&["deliveries", "unpause", "--org", "contoso"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("organization contoso: 0 pause(s) and 1 block(s) cleared"),
        "{}",
        run.stdout
    );
    let d = t.delivery_in(id, DeliveryStatus::Retrying).await;
    assert!(!d.blocked);
    // Still the wrong secret: the next attempt blocks it again.
    assert_eq!(t.deliver_due().await, 1);
    assert!(t.delivery(id).await.blocked);
}
