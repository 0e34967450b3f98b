//! The store on SQL: SQLite (embedded default, one file, nothing else to run)
//! and PostgreSQL (several replicas sharing the work), through sqlx's `Any`
//! driver. Queries are written once with `$n` placeholders; the schemas keep
//! the same column types on both, so only claiming differs.

use std::time::Duration;

mod blocks;
mod history;
mod intake;
mod operator;
mod pauses;
mod rows;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use time::OffsetDateTime;

use super::{
    AttemptOutcome, AttemptView, Block, ClaimedDelivery, DeliveryFilter, DeliveryStatus,
    DeliveryView, Destination, HistoryEntry, HistoryQuery, Inserted, NewLead, Pause, Purged,
    QueueStats, RetryResult, Store, StoreError, Unpaused, from_millis, lease_end, single_process,
    to_millis,
};
use crate::ids::{DeliveryId, LeadId, LeaseToken};
use crate::lead::OrgName;
use rows::{CLAIMED, claimed, queue_list};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

impl SqlStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if single_process(url) {
            let url = sqlite_url(url)?;
            let pool = AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // FULL: a 202 means the lead survives a power cut, not just a crash.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Ok(Self {
                pool,
                dialect: Dialect::Sqlite,
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Ok(Self {
                pool,
                dialect: Dialect::Postgres,
            })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// `$1` → `?1` for SQLite (its numbered parameters); PostgreSQL as written.
    fn sql(&self, text: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.dialect {
            Dialect::Postgres => text.to_owned(),
            Dialect::Sqlite => text.replace('$', "?"),
        })
    }
}

/// Creates the file's directory, and the file itself on first start.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    Ok(if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        url.to_owned()
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_leads(
        &self,
        leads: &[NewLead],
        dedupe_window: Option<Duration>,
    ) -> Result<Vec<Inserted>, StoreError> {
        SqlStore::insert_leads(self, leads, dedupe_window).await
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip: &[(OrgName, Destination)],
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let token = LeaseToken::generate().to_string();
        let claim = match self.dialect {
            // One statement: SQLite's single writer makes the claim atomic.
            Dialect::Sqlite => {
                "UPDATE deliveries SET lease_token = $1, lease_until = $2 WHERE id IN ( \
                   SELECT d.id FROM deliveries d \
                   WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_at <= $3 \
                     AND (d.lease_until IS NULL OR d.lease_until <= $3) \
                     AND (d.org || '/' || d.destination) NOT IN (SELECT value FROM json_each($4)) \
                     AND NOT EXISTS (SELECT 1 FROM organization_blocks b WHERE b.org = d.org \
                       AND b.destination = d.destination) \
                     AND NOT EXISTS (SELECT 1 FROM throttles t WHERE t.org = d.org \
                       AND t.destination = d.destination AND t.paused_until > $3) \
                   ORDER BY d.next_attempt_at LIMIT $5)"
            }
            // SKIP LOCKED: replicas claiming at once take different rows.
            Dialect::Postgres => {
                "UPDATE deliveries SET lease_token = $1, lease_until = $2 WHERE id IN ( \
                   SELECT d.id FROM deliveries d \
                   WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_at <= $3 \
                     AND (d.lease_until IS NULL OR d.lease_until <= $3) \
                     AND (d.org || '/' || d.destination) NOT IN (SELECT jsonb_array_elements_text($4::jsonb)) \
                     AND NOT EXISTS (SELECT 1 FROM organization_blocks b WHERE b.org = d.org \
                       AND b.destination = d.destination) \
                     AND NOT EXISTS (SELECT 1 FROM throttles t WHERE t.org = d.org \
                       AND t.destination = d.destination AND t.paused_until > $3) \
                   ORDER BY d.next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED)"
            }
        };
        let now_ms = to_millis(now);
        sqlx::query(self.sql(claim))
            .bind(&token)
            .bind(to_millis(lease_end(now, lease)))
            .bind(now_ms)
            .bind(queue_list(skip))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(self.sql(CLAIMED))
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
            AttemptOutcome::DryRun { remote_ref } => (
                "dry_run",
                DeliveryStatus::DryRun,
                None,
                None,
                Some(remote_ref.as_str()),
                at_ms,
            ),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(self.sql(
            "INSERT INTO attempts (delivery_id, attempted_at, outcome, http_status, error) \
             VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(&id)
        .bind(at_ms)
        .bind(kind)
        .bind(http_status.map(i64::from))
        .bind(error)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query(self.sql(
            "UPDATE deliveries SET status = $1, attempts = attempts + 1, \
               retry_attempts = retry_attempts + 1, next_attempt_at = $2, last_error = $3, \
               remote_ref = COALESCE($4, remote_ref), lease_token = NULL, lease_until = NULL, \
               updated_at = $5 \
             WHERE id = $6 AND lease_token = $7",
        ))
        .bind(status.as_str())
        .bind(next)
        .bind(error)
        .bind(remote_ref)
        .bind(at_ms)
        .bind(&id)
        .bind(delivery.lease_token.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn release(
        &self,
        delivery: &ClaimedDelivery,
        due: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let mut q = String::from("UPDATE deliveries SET lease_token = NULL, lease_until = NULL");
        if due.is_some() {
            q.push_str(", next_attempt_at = $3");
        }
        q.push_str(" WHERE id = $1 AND lease_token = $2");
        let mut query = sqlx::query(self.sql(&q))
            .bind(delivery.id.to_string())
            .bind(delivery.lease_token.to_string());
        if let Some(due) = due {
            query = query.bind(to_millis(due));
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn renew_lease(
        &self,
        delivery: &ClaimedDelivery,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        // The token alone decides: a claim by another worker replaces it in
        // the same row, so a renewal can never extend someone else's lease.
        let updated = sqlx::query(
            self.sql("UPDATE deliveries SET lease_until = $1 WHERE id = $2 AND lease_token = $3"),
        )
        .bind(to_millis(lease_end(now, lease)))
        .bind(delivery.id.to_string())
        .bind(delivery.lease_token.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn release_all_claims(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE deliveries SET lease_token = NULL, lease_until = NULL \
             WHERE lease_token IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn pause(
        &self,
        org: &OrgName,
        destination: Destination,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        SqlStore::pause(self, org, destination, until).await
    }

    async fn paused_until(
        &self,
        org: &OrgName,
        destination: Destination,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        SqlStore::paused_until(self, org, destination, now).await
    }

    async fn unpause(&self, org: &OrgName, now: OffsetDateTime) -> Result<Unpaused, StoreError> {
        SqlStore::unpause(self, org, now).await
    }

    async fn next_due_at(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(self.sql(
            // Leased ones are in flight; if their worker died, the poll
            // interval bounds how late their lease expiry is noticed. A
            // paused organization's deliveries are due when its pause ends,
            // a blocked one's when a probe takes them (at the poll interval):
            // counting them as due now would have the worker spin.
            "SELECT MIN(CASE WHEN t.paused_until > d.next_attempt_at \
                        THEN t.paused_until ELSE d.next_attempt_at END) \
             FROM deliveries d \
             LEFT JOIN throttles t ON t.org = d.org AND t.destination = d.destination \
             WHERE d.status IN ('pending', 'retrying') AND d.lease_token IS NULL \
               AND NOT EXISTS (SELECT 1 FROM organization_blocks b \
                 WHERE b.org = d.org AND b.destination = d.destination)",
        ))
        .fetch_one(&self.pool)
        .await?;
        next.map(from_millis).transpose()
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryView>, StoreError> {
        SqlStore::delivery(self, id).await
    }

    async fn attempts(&self, delivery_id: DeliveryId) -> Result<Vec<AttemptView>, StoreError> {
        SqlStore::attempts(self, delivery_id).await
    }

    async fn deliveries_of_lead(&self, lead_id: LeadId) -> Result<Vec<DeliveryView>, StoreError> {
        SqlStore::deliveries_of_lead(self, lead_id).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        SqlStore::list_deliveries(self, filter).await
    }

    async fn retry(
        &self,
        ids: &[DeliveryId],
        now: OffsetDateTime,
    ) -> Result<Vec<(DeliveryId, RetryResult)>, StoreError> {
        SqlStore::retry(self, ids, now).await
    }

    async fn retry_all(
        &self,
        status: DeliveryStatus,
        org: Option<&OrgName>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        SqlStore::retry_all(self, status, org, now).await
    }

    async fn purge(
        &self,
        leads_before: OffsetDateTime,
        fingerprints_before: OffsetDateTime,
    ) -> Result<Purged, StoreError> {
        SqlStore::purge(self, leads_before, fingerprints_before).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        SqlStore::queue_stats(self).await
    }

    async fn block(
        &self,
        org: &OrgName,
        destination: Destination,
        reason: &str,
        now: OffsetDateTime,
        probe_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        SqlStore::block(self, org, destination, reason, now, probe_at).await
    }

    async fn unblock(
        &self,
        org: &OrgName,
        destination: Destination,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        SqlStore::unblock(self, org, destination, now).await
    }

    async fn blocks(&self) -> Result<Vec<Block>, StoreError> {
        SqlStore::blocks(self).await
    }

    async fn take_probes(
        &self,
        now: OffsetDateTime,
        next_probe: OffsetDateTime,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        SqlStore::take_probes(self, now, next_probe, lease).await
    }

    async fn probe_blocks_now(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        SqlStore::probe_blocks_now(self, now).await
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
        SqlStore::history(self, query).await
    }

    async fn lead_payload(&self, lead_id: LeadId) -> Result<Option<String>, StoreError> {
        SqlStore::lead_payload(self, lead_id).await
    }

    async fn pauses(&self, now: OffsetDateTime) -> Result<Vec<Pause>, StoreError> {
        SqlStore::pauses(self, now).await
    }
}

#[cfg(test)]
mod tests;
