use leadbridge::store::DeliveryStatus;

use crate::common::*;

#[tokio::test]
async fn a_restart_between_accepting_and_delivering_loses_nothing() {
    // One pass takes all five; their retries are due as soon as the next
    // process looks.
    let mut t = TestApp::spawn_with(TestConfig {
        concurrency: 5,
        ..TestConfig::retry_at_once()
    })
    .await;
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
    assert_eq!(t.run_worker_once().await, 5);
    for id in &ids {
        t.delivery_in(*id, DeliveryStatus::Retrying).await;
    }
    t.stop().await;

    // Dynamics comes back; a new process on the same store picks everything up.
    t.dataverse.reset().await;
    mount_created(&t.dataverse).await;
    t.start().await;
    assert_eq!(t.deliver_due().await, 5);
    for id in &ids {
        t.delivery_in(*id, DeliveryStatus::Delivered).await;
    }
    let created = t.create_requests().await;
    assert_eq!(
        created.len(),
        5,
        "each lead created exactly once after the restart"
    );
    assert_eq!(t.count("leads").await, 5);
}
