//! The worker's panic handling, on a real SQLite store: a task that
//! panics stands for an attempt that hits a bug.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::config::Settings;
use crate::delivery::Organizations;
use crate::ids::LeadId;
use crate::lead::OrgName;
use crate::store::{DeliveryStatus, Destination, NewLead};

const LEASE: Duration = Duration::from_secs(30);

async fn deps(dir: &tempfile::TempDir) -> Deps {
    let path = dir.path().join("config.toml");
    let toml = format!(
        r#"
[store]
url = "sqlite://{db}"
[delivery]
backoff_initial = "1ms"
backoff_max = "1ms"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
dry_run = true
mapping = "{mapping}"
endpoint_secrets = ["0123456789abcdef"]
"#,
        db = dir.path().join("lb.db").display(),
        mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/contoso.yaml"),
    );
    std::fs::write(&path, toml).unwrap();
    let settings = Settings::load_with_env(&path, Some(HashMap::new())).unwrap();
    let store = crate::store::connect(&settings.store.url).await.unwrap();
    let organizations = Arc::new(Organizations::load(&settings).unwrap());
    Deps::new(store, &settings, organizations, reqwest::Client::new())
}

async fn new_lead(store: &dyn Store) -> LeadId {
    let id = LeadId::generate();
    let lead = NewLead {
        id,
        org: OrgName::parse("contoso").unwrap(),
        received_at: OffsetDateTime::now_utc(),
        request_id: "req-1".into(),
        is_test: false,
        payload: crate::lead::SAMPLE_LEAD_2020.into(),
        fingerprint: "f".into(),
        destinations: vec![Destination::Dataverse],
    };
    store.insert_lead(&lead, None).await.unwrap();
    id
}

/// Claims the lead's delivery (due again after the 1 ms backoff) and runs
/// an attempt that panics with `message` through the worker's handling.
async fn panicking_attempt(deps: &Deps, message: &'static str) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let store = deps.store.as_ref();
    let mut claimed = store
        .claim_due(OffsetDateTime::now_utc(), LEASE, 1, &[])
        .await
        .unwrap();
    let delivery = claimed.pop().expect("the delivery is due");
    let mut in_flight = InFlight::default();
    in_flight.spawn(delivery, async move { panic!("{message}") });
    let done = in_flight.next_done().await.expect("one task");
    in_flight.settle(deps, done).await;
    assert!(in_flight.is_empty());
    assert_eq!(
        in_flight.release_cut_off(store).await,
        0,
        "a panicked attempt is recorded, not left claimed"
    );
}

#[tokio::test]
async fn a_delivery_that_panics_is_retried_then_dead_with_the_panic_message() {
    let dir = tempfile::tempdir().unwrap();
    let deps = deps(&dir).await;
    let store = deps.store.as_ref();
    let lead = new_lead(store).await;
    let delivery = |lead| async move { store.deliveries_of_lead(lead).await.unwrap().remove(0) };

    for n in 1..PANICS_BEFORE_DEAD {
        panicking_attempt(&deps, "index out of bounds: the len is 0").await;
        let d = delivery(lead).await;
        assert_eq!(d.status, DeliveryStatus::Retrying, "after panic {n}");
        assert_eq!(
            d.last_error.as_deref(),
            Some("panicked: index out of bounds: the len is 0")
        );
    }
    panicking_attempt(&deps, "index out of bounds: the len is 0").await;
    let d = delivery(lead).await;
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert_eq!(
        d.last_error.as_deref(),
        Some("panicked: index out of bounds: the len is 0 (3 times in a row)")
    );
    let history = store.attempts(d.id).await.unwrap();
    assert_eq!(history.len(), PANICS_BEFORE_DEAD);
    assert_eq!(history[0].outcome, "retry");
    assert_eq!(history[PANICS_BEFORE_DEAD - 1].outcome, "dead");

    // A replay starts a new count: one panic is a retry again.
    store
        .retry(&[d.id], OffsetDateTime::now_utc())
        .await
        .unwrap();
    panicking_attempt(&deps, "still broken").await;
    let d = delivery(lead).await;
    assert_eq!(d.status, DeliveryStatus::Retrying);
    assert_eq!(d.last_error.as_deref(), Some("panicked: still broken"));
}

#[tokio::test]
async fn a_panic_message_is_masked_like_any_error() {
    let dir = tempfile::tempdir().unwrap();
    let deps = deps(&dir).await;
    let store = deps.store.as_ref();
    let lead = new_lead(store).await;
    panicking_attempt(&deps, "cannot map someone@contoso.com").await;
    let d = store.deliveries_of_lead(lead).await.unwrap().remove(0);
    let error = d.last_error.unwrap_or_default();
    assert!(error.starts_with("panicked: cannot map "), "{error}");
    assert!(!error.contains("someone@contoso.com"), "{error}");
}
