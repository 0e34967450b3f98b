use std::time::Duration;

use leadbridge::store::DeliveryStatus;

use crate::common::*;

#[tokio::test]
async fn a_restart_between_accepting_and_delivering_loses_nothing() {
    let mut t = TestApp::spawn().await;
    mount_token(&t.entra, "token-1").await;
    // Dynamics is down while the first process runs.
    on_lead_create()
        .respond_with(service_unavailable())
        .mount(&t.dataverse)
        .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(t.accept_lead(&lead_n(n)).await);
    }
    for id in &ids {
        t.wait_for(*id, DeliveryStatus::Retrying, Duration::from_secs(10))
            .await;
    }
    t.stop().await;

    // Dynamics comes back; a new process on the same store picks everything up.
    t.dataverse.reset().await;
    mount_created(&t.dataverse).await;
    t.start().await;
    for id in &ids {
        t.wait_for(*id, DeliveryStatus::Delivered, Duration::from_secs(10))
            .await;
    }
    let created = t.create_requests().await;
    assert_eq!(
        created.len(),
        5,
        "each lead created exactly once after the restart"
    );
    assert_eq!(t.count("leads").await, 5);
}
