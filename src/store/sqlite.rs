//! The embedded default store: one SQLite file, nothing else to run.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AttemptOutcome, ClaimedDelivery, DeliveryStatus, DeliveryView, NewLead, QueueStats, Store,
    StoreError, from_millis, parse_org, parse_uuid, to_millis,
};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 202 means the lead survives a power cut, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

const CLAIMED_COLUMNS: &str = "d.id, d.lead_id, l.org, d.destination, d.record_id, d.attempts, \
     l.received_at, l.request_id, l.payload, d.lease_token";

const VIEW_COLUMNS: &str = "SELECT d.id, d.lead_id, l.org, d.destination, d.status, d.record_id, \
     d.remote_ref, d.attempts, d.next_attempt_at, d.last_error, l.received_at \
     FROM deliveries d JOIN leads l ON l.id = d.lead_id";

fn claimed(row: &SqliteRow) -> Result<ClaimedDelivery, StoreError> {
    Ok(ClaimedDelivery {
        id: parse_uuid(row.try_get("id")?)?,
        lead_id: parse_uuid(row.try_get("lead_id")?)?,
        org: parse_org(row.try_get("org")?)?,
        destination: row.try_get::<&str, _>("destination")?.parse()?,
        record_id: parse_uuid(row.try_get("record_id")?)?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        received_at: from_millis(row.try_get("received_at")?)?,
        request_id: row.try_get("request_id")?,
        payload: row.try_get("payload")?,
        lease_token: parse_uuid(row.try_get("lease_token")?)?,
    })
}

fn view(row: &SqliteRow) -> Result<DeliveryView, StoreError> {
    Ok(DeliveryView {
        id: parse_uuid(row.try_get("id")?)?,
        lead_id: parse_uuid(row.try_get("lead_id")?)?,
        org: parse_org(row.try_get("org")?)?,
        destination: row.try_get::<&str, _>("destination")?.parse()?,
        status: row
            .try_get::<&str, _>("status")?
            .parse::<DeliveryStatus>()?,
        record_id: parse_uuid(row.try_get("record_id")?)?,
        remote_ref: row.try_get("remote_ref")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?)?,
        last_error: row.try_get("last_error")?,
        received_at: from_millis(row.try_get("received_at")?)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_lead(&self, lead: &NewLead) -> Result<(), StoreError> {
        let now = to_millis(lead.received_at);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO leads (id, org, received_at, request_id, is_test, payload) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(lead.id.to_string())
        .bind(lead.org.as_str())
        .bind(now)
        .bind(&lead.request_id)
        .bind(lead.is_test)
        .bind(&lead.payload)
        .execute(&mut *tx)
        .await?;
        for dest in &lead.destinations {
            sqlx::query(
                "INSERT INTO deliveries (id, lead_id, destination, status, record_id, attempts, \
                 next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, 'pending', ?, 0, ?, ?, ?)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(lead.id.to_string())
            .bind(dest.as_str())
            .bind(Uuid::new_v4().to_string())
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now_ms = to_millis(now);
        let until = to_millis(now + lease);
        let token = Uuid::new_v4().to_string();
        // One statement, so SQLite's single writer makes the claim atomic.
        sqlx::query(
            "UPDATE deliveries SET lease_token = ?, lease_until = ? WHERE id IN ( \
               SELECT id FROM deliveries \
               WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ? \
                 AND (lease_until IS NULL OR lease_until <= ?) \
               ORDER BY next_attempt_at LIMIT ?)",
        )
        .bind(&token)
        .bind(until)
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLAIMED_COLUMNS} FROM deliveries d JOIN leads l ON l.id = d.lead_id \
             WHERE d.lease_token = ? ORDER BY d.next_attempt_at"
        )))
        .bind(&token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(claimed).collect()
    }

    async fn record_attempt(
        &self,
        delivery: &ClaimedDelivery,
        at: OffsetDateTime,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let at_ms = to_millis(at);
        let id = delivery.id.to_string();
        let token = delivery.lease_token.to_string();
        let (kind, status, http_status, error, remote_ref, next) = match outcome {
            AttemptOutcome::Delivered {
                remote_ref,
                http_status,
            } => (
                "delivered",
                DeliveryStatus::Delivered,
                *http_status,
                None,
                Some(remote_ref.as_str()),
                at_ms,
            ),
            AttemptOutcome::Retry {
                error,
                http_status,
                next_attempt_at,
            } => (
                "retry",
                DeliveryStatus::Retrying,
                *http_status,
                Some(error.as_str()),
                None,
                to_millis(*next_attempt_at),
            ),
            AttemptOutcome::Dead { error, http_status } => (
                "dead",
                DeliveryStatus::Dead,
                *http_status,
                Some(error.as_str()),
                None,
                at_ms,
            ),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (delivery_id, attempted_at, outcome, http_status, error) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(at_ms)
        .bind(kind)
        .bind(http_status.map(i64::from))
        .bind(error)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
               last_error = ?, remote_ref = COALESCE(?, remote_ref), lease_token = NULL, \
               lease_until = NULL, updated_at = ? \
             WHERE id = ? AND lease_token = ?",
        )
        .bind(status.as_str())
        .bind(next)
        .bind(error)
        .bind(remote_ref)
        .bind(at_ms)
        .bind(&id)
        .bind(&token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn release(&self, delivery: &ClaimedDelivery) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET lease_token = NULL, lease_until = NULL WHERE id = ? AND lease_token = ?",
        )
        .bind(delivery.id.to_string())
        .bind(delivery.lease_token.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_due_at(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM deliveries \
             WHERE status IN ('pending', 'retrying')",
        )
        .fetch_one(&self.pool)
        .await?;
        next.map(from_millis).transpose()
    }

    async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryView>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{VIEW_COLUMNS} WHERE d.id = ?"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(view).transpose()
    }

    async fn deliveries_of_lead(&self, lead_id: Uuid) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{VIEW_COLUMNS} WHERE d.lead_id = ? ORDER BY d.destination"
        )))
        .bind(lead_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(view).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        // Both indexes on (status, …) keep this cheap at every scrape.
        let row = sqlx::query(
            "SELECT \
               COUNT(*) FILTER (WHERE status IN ('pending', 'retrying')) AS waiting, \
               MIN(created_at) FILTER (WHERE status IN ('pending', 'retrying')) AS oldest, \
               COUNT(*) FILTER (WHERE status = 'dead') AS dead \
             FROM deliveries WHERE status IN ('pending', 'retrying', 'dead')",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(QueueStats {
            waiting: count("waiting")?,
            oldest_waiting_since: row
                .try_get::<Option<i64>, _>("oldest")?
                .map(from_millis)
                .transpose()?,
            dead: count("dead")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Destination;
    use super::*;
    use crate::lead::OrgName;

    async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!(
            "sqlite://{}",
            dir.path().join("nested/leadbridge.db").display()
        );
        SqliteStore::connect(&url).await.unwrap()
    }

    fn lead(at: OffsetDateTime) -> NewLead {
        NewLead {
            id: Uuid::now_v7(),
            org: OrgName::parse("contoso").unwrap(),
            received_at: at,
            request_id: "req-1".into(),
            is_test: false,
            payload: r#"{"OfferTitle":"x"}"#.into(),
            destinations: vec![Destination::Dataverse],
        }
    }

    #[tokio::test]
    async fn a_claimed_delivery_is_not_claimed_twice_until_its_lease_expires() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let now = OffsetDateTime::now_utc();
        let l = lead(now);
        s.insert_lead(&l).await.unwrap();

        let first = s.claim_due(now, Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].lead_id, l.id);
        assert_eq!(first[0].payload, l.payload);
        assert!(
            s.claim_due(now, Duration::from_secs(60), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // A worker that died: its lease runs out and the delivery is due again.
        let later = now + Duration::from_secs(61);
        let again = s
            .claim_due(later, Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].lease_token, first[0].lease_token);

        // The stale worker's result no longer moves the delivery.
        let stale = s
            .record_attempt(
                &first[0],
                later,
                &AttemptOutcome::Dead {
                    error: "x".into(),
                    http_status: None,
                },
            )
            .await
            .unwrap();
        assert!(!stale);
        let ok = s
            .record_attempt(
                &again[0],
                later,
                &AttemptOutcome::Delivered {
                    remote_ref: "r".into(),
                    http_status: Some(204),
                },
            )
            .await
            .unwrap();
        assert!(ok);
        let v = s.delivery(again[0].id).await.unwrap().unwrap();
        assert_eq!(v.status, DeliveryStatus::Delivered);
        assert_eq!(v.remote_ref.as_deref(), Some("r"));
        assert_eq!(v.attempts, 1);
        assert_eq!(s.next_due_at().await.unwrap(), None);
    }

    #[tokio::test]
    async fn retries_wait_until_due() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let now = OffsetDateTime::now_utc();
        s.insert_lead(&lead(now)).await.unwrap();
        let c = s.claim_due(now, Duration::from_secs(60), 10).await.unwrap();
        let next = now + Duration::from_secs(30);
        s.record_attempt(
            &c[0],
            now,
            &AttemptOutcome::Retry {
                error: "503".into(),
                http_status: Some(503),
                next_attempt_at: next,
            },
        )
        .await
        .unwrap();
        assert!(
            s.claim_due(now + Duration::from_secs(29), Duration::from_secs(60), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            to_millis(s.next_due_at().await.unwrap().unwrap()),
            to_millis(next)
        );
        let c = s
            .claim_due(next, Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].attempts, 1);
        let v = s.delivery(c[0].id).await.unwrap().unwrap();
        assert_eq!(v.status, DeliveryStatus::Retrying);
        assert_eq!(v.last_error.as_deref(), Some("503"));
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let l = lead(now);
        {
            let s = store(&dir).await;
            s.insert_lead(&l).await.unwrap();
        }
        let s = store(&dir).await;
        let ds = s.deliveries_of_lead(l.id).await.unwrap();
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].status, DeliveryStatus::Pending);
    }

    #[tokio::test]
    async fn queue_stats_count_waiting_and_dead_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        assert_eq!(s.queue_stats().await.unwrap(), QueueStats::default());

        let t0 = OffsetDateTime::now_utc() - Duration::from_secs(120);
        let first = lead(t0);
        s.insert_lead(&first).await.unwrap();
        s.insert_lead(&lead(t0 + Duration::from_secs(60)))
            .await
            .unwrap();
        s.insert_lead(&lead(t0 + Duration::from_secs(90)))
            .await
            .unwrap();
        let claimed = s
            .claim_due(t0 + Duration::from_secs(100), Duration::from_secs(60), 2)
            .await
            .unwrap();
        assert_eq!(claimed[0].lead_id, first.id, "oldest first");
        let now = OffsetDateTime::now_utc();
        let dead = AttemptOutcome::Dead {
            error: "x".into(),
            http_status: Some(400),
        };
        s.record_attempt(&claimed[0], now, &dead).await.unwrap();
        let delivered = AttemptOutcome::Delivered {
            remote_ref: "r".into(),
            http_status: Some(204),
        };
        s.record_attempt(&claimed[1], now, &delivered)
            .await
            .unwrap();

        let stats = s.queue_stats().await.unwrap();
        assert_eq!(stats.waiting, 1);
        assert_eq!(stats.dead, 1);
        assert_eq!(
            stats.oldest_waiting_since.map(to_millis),
            Some(to_millis(t0 + Duration::from_secs(90)))
        );
    }
}
