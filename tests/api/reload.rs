//! Mapping hot reload through a directory updated the way the kubelet updates
//! a ConfigMap volume.

use std::time::Duration;

use leadbridge::store::DeliveryStatus;
use serde_json::Value;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(10);

fn mapping(subject_template: &str) -> String {
    format!(
        "fields:\n  lastname: UserDetails.LastName\n  emailaddress1: UserDetails.Email\n  subject:\n    template: \"{subject_template}\"\n"
    )
}

const INVALID: &str = "fields:\n  lastname: UserDetails.LastName\n  subject:\n    from: OfferTitle\n    transform: [shout]\n";

async fn deliver_one(t: &TestApp) -> Value {
    let id = t.accept_lead(&next_lead()).await;
    assert_eq!(t.deliver_due().await, 1);
    let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
    t.sent_record(d.record_id).await
}

#[tokio::test]
async fn mappings_follow_configmap_updates_and_survive_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo_path("mappings/contoso.yaml")).unwrap();
    let mut volume =
        ConfigMapVolume::new(&dir.path().join("mappings"), &[("contoso.yaml", &shipped)]);
    let file = volume.path("contoso.yaml");
    assert!(file.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(
        volume
            .dir
            .join("..data")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let t = TestApp::spawn_with_mapping(&file).await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let registry = t.mappings();

    let sent = deliver_one(&t).await;
    assert_eq!(sent["subject"], "Test Microsoft");
    assert_eq!(sent["firstname"], "Some", "the shipped mapping");

    // 1. A valid update is picked up.
    let generation = registry.generation();
    volume.update(&[("contoso.yaml", &mapping("v2: {OfferTitle}"))]);
    wait_until("the second mapping", WAIT, || {
        registry.generation() > generation
    })
    .await;
    let sent = deliver_one(&t).await;
    assert_eq!(sent["subject"], "v2: Test Microsoft");
    assert!(sent.get("firstname").is_none(), "{sent}");

    // 2. An invalid update is refused; the previous mapping stays.
    let generation = registry.generation();
    let rejected = registry.rejected_reloads();
    volume.update(&[("contoso.yaml", INVALID)]);
    wait_until("the invalid mapping to be refused", WAIT, || {
        registry.rejected_reloads() > rejected
    })
    .await;
    assert_eq!(registry.generation(), generation);
    let sent = deliver_one(&t).await;
    assert_eq!(sent["subject"], "v2: Test Microsoft");

    // 3. The watch is still alive: a later valid update is picked up again.
    volume.update(&[("contoso.yaml", &mapping("v3 {OfferTitle}"))]);
    wait_until("the third mapping", WAIT, || {
        registry.generation() > generation
    })
    .await;
    let sent = deliver_one(&t).await;
    assert_eq!(sent["subject"], "v3 Test Microsoft");

    // Both kinds of reload are counted (the recorder is shared by the tests
    // of this process, so at least, not exactly).
    let text = t.get_admin("/metrics").await.text().await.unwrap();
    for (outcome, at_least) in [("ok", 2.0), ("error", 1.0)] {
        let series =
            format!("leadbridge_mapping_reloads_total{{org=\"contoso\",outcome=\"{outcome}\"}} ");
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(value >= at_least, "{series}{value}");
    }
}

#[tokio::test]
async fn a_plain_file_edited_in_place_is_reloaded_too() {
    let (_dir, file) = mapping_file(&mapping("before {OfferTitle}"));
    let t = TestApp::spawn_with_mapping(&file).await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let registry = t.mappings();
    assert_eq!(deliver_one(&t).await["subject"], "before Test Microsoft");

    let generation = registry.generation();
    std::fs::write(&file, mapping("after {OfferTitle}")).unwrap();
    wait_until("the edited mapping", WAIT, || {
        registry.generation() > generation
    })
    .await;
    assert_eq!(deliver_one(&t).await["subject"], "after Test Microsoft");
}
