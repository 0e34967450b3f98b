//! The store contract, run on SQLite always and on PostgreSQL when
//! `LEADBRIDGE_TEST_POSTGRES_URL` names a server (CI sets it).

use super::*;
use crate::lead::OrgName;
use uuid::Uuid;

/// A fresh store of each available backend.
pub(super) async fn stores(dir: &tempfile::TempDir) -> Vec<(&'static str, SqlStore)> {
    let mut out = Vec::new();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/leadbridge.db").display()
    );
    out.push(("sqlite", SqlStore::connect(&url).await.unwrap()));
    match std::env::var("LEADBRIDGE_TEST_POSTGRES_URL") {
        Ok(base) => {
            let url = fresh_postgres_database(&base).await;
            out.push(("postgres", SqlStore::connect(&url).await.unwrap()));
        }
        Err(_) => eprintln!("LEADBRIDGE_TEST_POSTGRES_URL not set: PostgreSQL store tests skipped"),
    }
    out
}

async fn fresh_postgres_database(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("lb_unit_{}", Uuid::new_v4().simple());
    let pool = AnyPool::connect(base).await.expect("PostgreSQL reachable");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("url with a database");
    format!("{prefix}/{name}")
}

pub(super) fn lead(at: OffsetDateTime, fingerprint: &str) -> NewLead {
    NewLead {
        id: LeadId::generate(),
        org: OrgName::parse("contoso").unwrap(),
        received_at: at,
        request_id: "req-1".into(),
        is_test: false,
        payload: r#"{"OfferTitle":"x"}"#.into(),
        fingerprint: fingerprint.into(),
        destinations: vec![Destination::Dataverse],
    }
}

pub(super) const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_claimed_delivery_is_not_claimed_twice_until_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let now = OffsetDateTime::now_utc();
        let l = lead(now, "f1");
        assert_eq!(s.insert_lead(&l, None).await.unwrap(), Inserted::New);

        let first = s.claim_due(now, LEASE, 10, &[]).await.unwrap();
        assert_eq!(first.len(), 1, "{name}");
        assert_eq!(first[0].lead_id, l.id);
        assert_eq!(first[0].payload, l.payload);
        assert!(
            s.claim_due(now, LEASE, 10, &[]).await.unwrap().is_empty(),
            "{name}"
        );

        // A worker that died: its lease runs out and the delivery is due again.
        let later = now + Duration::from_secs(61);
        let again = s.claim_due(later, LEASE, 10, &[]).await.unwrap();
        assert_eq!(again.len(), 1, "{name}");
        assert_ne!(again[0].lease_token, first[0].lease_token);

        // The stale worker's result no longer moves the delivery.
        let dead = AttemptOutcome::Dead {
            error: "x".into(),
            http_status: None,
        };
        assert!(
            !s.record_attempt(&first[0], later, &dead).await.unwrap(),
            "{name}"
        );
        let ok = AttemptOutcome::Delivered {
            remote_ref: "r".into(),
            http_status: Some(204),
        };
        assert!(
            s.record_attempt(&again[0], later, &ok).await.unwrap(),
            "{name}"
        );
        let v = s.delivery(again[0].id).await.unwrap().unwrap();
        assert_eq!(v.status, DeliveryStatus::Delivered, "{name}");
        assert_eq!(v.remote_ref.as_deref(), Some("r"));
        assert_eq!(v.attempts, 1);
        assert_eq!(s.next_due_at().await.unwrap(), None);
        assert_eq!(
            s.attempts(v.id).await.unwrap().len(),
            2,
            "{name}: both attempts are history"
        );
    }
}

#[tokio::test]
async fn a_renewed_lease_holds_and_a_lost_one_cannot_be_renewed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let now = OffsetDateTime::now_utc();
        s.insert_lead(&lead(now, "f1"), None).await.unwrap();
        let first = s.claim_due(now, LEASE, 10, &[]).await.unwrap();
        assert_eq!(first.len(), 1, "{name}");

        // Renewed just before it ran out: still held a minute later.
        let renewed_at = now + Duration::from_secs(50);
        assert!(
            s.renew_lease(&first[0], renewed_at, LEASE).await.unwrap(),
            "{name}"
        );
        let after_first_lease = now + Duration::from_secs(61);
        assert!(
            s.claim_due(after_first_lease, LEASE, 10, &[])
                .await
                .unwrap()
                .is_empty(),
            "{name}: the renewal holds the claim"
        );

        // Not renewed again: taken over, and the old holder cannot renew.
        let expired = renewed_at + Duration::from_secs(61);
        let again = s.claim_due(expired, LEASE, 10, &[]).await.unwrap();
        assert_eq!(again.len(), 1, "{name}");
        assert!(
            !s.renew_lease(&first[0], expired, LEASE).await.unwrap(),
            "{name}: a lost lease is not renewed"
        );
        assert!(
            s.renew_lease(&again[0], expired, LEASE).await.unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn release_all_claims_makes_every_claim_due_again() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let now = OffsetDateTime::now_utc();
        for n in 0..3 {
            s.insert_lead(&lead(now, &format!("f{n}")), None)
                .await
                .unwrap();
        }
        let claimed = s.claim_due(now, LEASE, 2, &[]).await.unwrap();
        assert_eq!(claimed.len(), 2, "{name}");
        assert_eq!(s.release_all_claims().await.unwrap(), 2, "{name}");
        assert_eq!(
            s.claim_due(now, LEASE, 10, &[]).await.unwrap().len(),
            3,
            "{name}: at once, without waiting for the lease"
        );
        assert!(
            !s.renew_lease(&claimed[0], now, LEASE).await.unwrap(),
            "{name}: a released claim is gone"
        );
    }
}

#[tokio::test]
async fn retries_wait_until_due_and_paused_orgs_and_skipped_orgs_are_not_claimed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let now = OffsetDateTime::now_utc();
        s.insert_lead(&lead(now, "f1"), None).await.unwrap();
        let c = s.claim_due(now, LEASE, 10, &[]).await.unwrap();
        let next = now + Duration::from_secs(30);
        let retry = AttemptOutcome::Retry {
            error: "503".into(),
            http_status: Some(503),
            next_attempt_at: next,
        };
        s.record_attempt(&c[0], now, &retry).await.unwrap();
        assert!(
            s.claim_due(now + Duration::from_secs(29), LEASE, 10, &[])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            to_millis(s.next_due_at().await.unwrap().unwrap()),
            to_millis(next),
            "{name}"
        );

        let org = OrgName::parse("contoso").unwrap();
        assert!(
            s.claim_due(next, LEASE, 10, &[(org.clone(), Destination::Dataverse)])
                .await
                .unwrap()
                .is_empty(),
            "{name}: skipped org"
        );

        let until = next + Duration::from_secs(5);
        s.pause(&org, Destination::Dataverse, until).await.unwrap();
        s.pause(&org, Destination::Dataverse, next).await.unwrap(); // never shortens
        assert_eq!(
            s.paused_until(&org, Destination::Dataverse, next)
                .await
                .unwrap()
                .map(to_millis),
            Some(to_millis(until))
        );
        assert!(
            s.claim_due(next, LEASE, 10, &[]).await.unwrap().is_empty(),
            "{name}: paused org"
        );
        assert_eq!(
            s.next_due_at().await.unwrap().map(to_millis),
            Some(to_millis(until)),
            "{name}: due when the pause ends, not before"
        );

        let c = s.claim_due(until, LEASE, 10, &[]).await.unwrap();
        assert_eq!(c.len(), 1, "{name}");
        assert_eq!(c[0].attempts, 1);
        assert_eq!(c[0].retry_attempts, 1);
        let v = s.delivery(c[0].id).await.unwrap().unwrap();
        assert_eq!(v.status, DeliveryStatus::Retrying);
        assert_eq!(v.last_error.as_deref(), Some("503"));

        // Released with a later due time, without an attempt.
        s.release(&c[0], Some(until + Duration::from_secs(10)))
            .await
            .unwrap();
        let v = s.delivery(c[0].id).await.unwrap().unwrap();
        assert_eq!(v.attempts, 1, "{name}");
        assert!(
            s.claim_due(until, LEASE, 10, &[]).await.unwrap().is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_same_document_within_the_window_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let now = OffsetDateTime::now_utc();
        let window = Some(Duration::from_secs(3600));
        let first = lead(now, "same");
        assert_eq!(s.insert_lead(&first, window).await.unwrap(), Inserted::New);
        let twin = lead(now + Duration::from_secs(10), "same");
        assert_eq!(
            s.insert_lead(&twin, window).await.unwrap(),
            Inserted::Duplicate { original: first.id },
            "{name}"
        );
        assert!(
            s.deliveries_of_lead(twin.id).await.unwrap().is_empty(),
            "{name}: nothing stored"
        );
        // Another organization, another document, or after the window: new.
        let mut other_org = lead(now, "same");
        other_org.org = OrgName::parse("fabrikam").unwrap();
        assert_eq!(
            s.insert_lead(&other_org, window).await.unwrap(),
            Inserted::New
        );
        assert_eq!(
            s.insert_lead(&lead(now, "different"), window)
                .await
                .unwrap(),
            Inserted::New
        );
        let late = lead(now + Duration::from_secs(3601), "same");
        assert_eq!(
            s.insert_lead(&late, window).await.unwrap(),
            Inserted::New,
            "{name}"
        );
        let again = lead(now + Duration::from_secs(3700), "same");
        assert_eq!(
            s.insert_lead(&again, window).await.unwrap(),
            Inserted::Duplicate { original: late.id }
        );
    }
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let now = OffsetDateTime::now_utc();
        for f in ["a", "b"] {
            s.insert_lead(&lead(now, f), None).await.unwrap();
        }
        let dead = AttemptOutcome::Dead {
            error: "HTTP 400".into(),
            http_status: Some(400),
        };
        for c in s.claim_due(now, LEASE, 10, &[]).await.unwrap() {
            s.record_attempt(&c, now, &dead).await.unwrap();
        }
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Dead),
            ..Default::default()
        };
        let listed = s.list_deliveries(&filter).await.unwrap();
        assert_eq!(listed.len(), 2, "{name}");
        let pending = DeliveryFilter {
            status: Some(DeliveryStatus::Pending),
            ..Default::default()
        };
        assert!(s.list_deliveries(&pending).await.unwrap().is_empty());

        let res = s
            .retry(&[listed[0].id, DeliveryId::from(Uuid::nil())], now)
            .await
            .unwrap();
        assert_eq!(
            res,
            vec![
                (listed[0].id, RetryResult::Queued),
                (DeliveryId::from(Uuid::nil()), RetryResult::NotFound)
            ],
            "{name}"
        );
        let org = OrgName::parse("contoso").unwrap();
        assert_eq!(
            s.retry_all(DeliveryStatus::Dead, Some(&org), now)
                .await
                .unwrap(),
            1,
            "{name}"
        );
        let c = s.claim_due(now, LEASE, 10, &[]).await.unwrap();
        assert_eq!(c.len(), 2, "{name}");
        assert!(
            c.iter().all(|c| c.retry_attempts == 0 && c.attempts == 1),
            "{name}: a fresh retry run"
        );
        let ok = AttemptOutcome::Delivered {
            remote_ref: "r".into(),
            http_status: Some(204),
        };
        s.record_attempt(&c[0], now, &ok).await.unwrap();
        assert_eq!(
            s.retry(&[c[0].id], now).await.unwrap()[0].1,
            RetryResult::AlreadyDelivered
        );
    }
}

#[tokio::test]
async fn purge_removes_old_finished_leads_only() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        let old = OffsetDateTime::now_utc() - Duration::from_secs(100 * 86400);
        let done = lead(old, "done");
        let waiting = lead(old, "waiting");
        s.insert_lead(&done, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        s.insert_lead(&waiting, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        let c = s.claim_due(old, LEASE, 1, &[]).await.unwrap();
        let ok = AttemptOutcome::Delivered {
            remote_ref: "r".into(),
            http_status: Some(204),
        };
        s.record_attempt(&c[0], old, &ok).await.unwrap();
        let cutoff = OffsetDateTime::now_utc() - Duration::from_secs(90 * 86400);
        let purged = s.purge(cutoff, cutoff).await.unwrap();
        assert_eq!(
            purged,
            Purged {
                leads: 1,
                fingerprints: 2
            },
            "{name}"
        );
        assert!(s.deliveries_of_lead(c[0].lead_id).await.unwrap().is_empty());
        let other = if c[0].lead_id == done.id {
            waiting.id
        } else {
            done.id
        };
        assert_eq!(
            s.deliveries_of_lead(other).await.unwrap().len(),
            1,
            "{name}: unfinished lead kept"
        );
    }
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("leadbridge.db").display());
    let l = lead(OffsetDateTime::now_utc(), "f");
    {
        let s = SqlStore::connect(&url).await.unwrap();
        s.insert_lead(&l, None).await.unwrap();
        s.pool.close().await;
    }
    let s = SqlStore::connect(&url).await.unwrap();
    let ds = s.deliveries_of_lead(l.id).await.unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].status, DeliveryStatus::Pending);
}

#[tokio::test]
async fn queue_stats_count_waiting_and_dead_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in stores(&dir).await {
        assert_eq!(
            s.queue_stats().await.unwrap(),
            QueueStats::default(),
            "{name}"
        );
        let t0 = OffsetDateTime::now_utc() - Duration::from_secs(120);
        let first = lead(t0, "a");
        s.insert_lead(&first, None).await.unwrap();
        s.insert_lead(&lead(t0 + Duration::from_secs(60), "b"), None)
            .await
            .unwrap();
        s.insert_lead(&lead(t0 + Duration::from_secs(90), "c"), None)
            .await
            .unwrap();
        let claimed = s
            .claim_due(t0 + Duration::from_secs(100), LEASE, 2, &[])
            .await
            .unwrap();
        assert_eq!(claimed[0].lead_id, first.id, "{name}: oldest first");
        let now = OffsetDateTime::now_utc();
        let dead = AttemptOutcome::Dead {
            error: "x".into(),
            http_status: Some(400),
        };
        s.record_attempt(&claimed[0], now, &dead).await.unwrap();
        let ok = AttemptOutcome::Delivered {
            remote_ref: "r".into(),
            http_status: Some(204),
        };
        s.record_attempt(&claimed[1], now, &ok).await.unwrap();
        let stats = s.queue_stats().await.unwrap();
        assert_eq!(stats.waiting, 1, "{name}");
        assert_eq!(stats.dead, 1, "{name}");
        assert_eq!(
            stats.oldest_waiting_since.map(to_millis),
            Some(to_millis(t0 + Duration::from_secs(90)))
        );
    }
}
