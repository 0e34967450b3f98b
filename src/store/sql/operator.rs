//! What operators read and do: delivery views, replays, retention, queue counts.

use sqlx::Row;
use time::OffsetDateTime;

use sqlx::{AnyConnection, AssertSqlSafe};

use super::rows::{VIEW, view};
use super::{Dialect, SqlStore};
use crate::ids::{DeliveryId, LeadId};
use crate::lead::OrgName;
use crate::store::{
    AttemptView, DeliveryFilter, DeliveryStatus, DeliveryView, Purged, QueueStats, RetryResult,
    StoreError, from_millis, to_millis,
};

/// The advisory lock by which replays and the purge exclude each other on
/// PostgreSQL (any number fixed for this purpose: "leadbr" in ASCII).
const REPLAY_PURGE_LOCK: i64 = 0x6c65_6164_6272;

impl SqlStore {
    pub(super) async fn delivery(
        &self,
        id: DeliveryId,
    ) -> Result<Option<DeliveryView>, StoreError> {
        let row = sqlx::query(self.sql(&format!("{VIEW} WHERE d.id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(view).transpose()
    }

    pub(super) async fn attempts(
        &self,
        delivery_id: DeliveryId,
    ) -> Result<Vec<AttemptView>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT attempted_at, outcome, http_status, error FROM attempts \
             WHERE delivery_id = $1 ORDER BY id",
        ))
        .bind(delivery_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptView {
                    at: from_millis(r.try_get("attempted_at")?)?,
                    outcome: r.try_get("outcome")?,
                    http_status: r
                        .try_get::<Option<i64>, _>("http_status")?
                        .and_then(|s| u16::try_from(s).ok()),
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    pub(super) async fn deliveries_of_lead(
        &self,
        lead_id: LeadId,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = sqlx::query(self.sql(&format!(
            "{VIEW} WHERE d.lead_id = $1 ORDER BY d.destination"
        )))
        .bind(lead_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(view).collect()
    }

    pub(super) async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = sqlx::query(self.sql(&format!(
            "{VIEW} WHERE ($1 = '' OR d.status = $1) AND ($2 = '' OR d.org = $2) \
             ORDER BY d.created_at DESC, d.id DESC LIMIT $3"
        )))
        .bind(filter.status.map(|s| s.as_str()).unwrap_or_default())
        .bind(filter.org.as_ref().map(OrgName::as_str).unwrap_or_default())
        .bind(i64::from(if filter.limit == 0 {
            100
        } else {
            filter.limit
        }))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(view).collect()
    }

    pub(super) async fn retry(
        &self,
        ids: &[DeliveryId],
        now: OffsetDateTime,
    ) -> Result<Vec<(DeliveryId, RetryResult)>, StoreError> {
        let now_ms = to_millis(now);
        let mut out = Vec::with_capacity(ids.len());
        let mut tx = self.pool.begin().await?;
        self.hold_off_purge(&mut tx).await?;
        for id in ids {
            // A delivery in flight keeps its lease: clearing it would let a
            // second worker start an attempt beside the first.
            let updated = sqlx::query(self.sql(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, \
                   retry_attempts = 0, retry_started_at = $1, updated_at = $1 \
                 WHERE id = $2 AND status IN ('dead', 'dry_run', 'retrying', 'pending')",
            ))
            .bind(now_ms)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let result = if updated == 1 {
                RetryResult::Queued
            } else if sqlx::query(self.sql("SELECT 1 FROM deliveries WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
            {
                RetryResult::AlreadyDelivered
            } else {
                RetryResult::NotFound
            };
            out.push((*id, result));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Replays and the purge exclude each other on PostgreSQL. Without it, a
    /// purge that found a lead finished could delete it just after a
    /// concurrent replay made its delivery pending again: a queued lead
    /// gone. (On SQLite, write transactions already run one at a time.)
    async fn hold_off_purge(&self, tx: &mut AnyConnection) -> Result<(), StoreError> {
        self.replay_purge_lock(tx, "pg_advisory_xact_lock_shared")
            .await
    }

    async fn replay_purge_lock(
        &self,
        tx: &mut AnyConnection,
        function: &'static str,
    ) -> Result<(), StoreError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(AssertSqlSafe(format!("SELECT {function}($1)")))
                .bind(REPLAY_PURGE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn retry_all(
        &self,
        status: DeliveryStatus,
        org: Option<&OrgName>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if !matches!(status, DeliveryStatus::Dead | DeliveryStatus::DryRun) {
            return Ok(0);
        }
        let now_ms = to_millis(now);
        let mut tx = self.pool.begin().await?;
        self.hold_off_purge(&mut tx).await?;
        let queued = sqlx::query(self.sql(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, retry_attempts = 0, \
               retry_started_at = $1, updated_at = $1 \
             WHERE status = $3 AND ($2 = '' OR org = $2)",
        ))
        .bind(now_ms)
        .bind(org.map(OrgName::as_str).unwrap_or_default())
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(queued)
    }

    pub(super) async fn purge(
        &self,
        leads_before: OffsetDateTime,
        fingerprints_before: OffsetDateTime,
    ) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.replay_purge_lock(&mut tx, "pg_advisory_xact_lock")
            .await?;
        // Children first, so SQLite needs no cascade support to get it right.
        let finished = "SELECT id FROM leads WHERE received_at < $1 AND NOT EXISTS ( \
             SELECT 1 FROM deliveries d WHERE d.lead_id = leads.id \
             AND d.status IN ('pending', 'retrying'))";
        let before = to_millis(leads_before);
        sqlx::query(self.sql(&format!(
            "DELETE FROM attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE lead_id IN ({finished}))"
        )))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        sqlx::query(self.sql(&format!(
            "DELETE FROM deliveries WHERE lead_id IN ({finished})"
        )))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let leads = sqlx::query(self.sql(
            "DELETE FROM leads WHERE received_at < $1 AND NOT EXISTS ( \
             SELECT 1 FROM deliveries d WHERE d.lead_id = leads.id)",
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let fingerprints =
            sqlx::query(self.sql("DELETE FROM lead_fingerprints WHERE received_at < $1"))
                .bind(to_millis(fingerprints_before))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(Purged {
            leads,
            fingerprints,
        })
    }

    pub(super) async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        // The (status, next_attempt_at) index keeps this cheap at every scrape.
        let row = sqlx::query(self.sql(
            "SELECT \
               COUNT(*) FILTER (WHERE status IN ('pending', 'retrying')) AS waiting, \
               MIN(created_at) FILTER (WHERE status IN ('pending', 'retrying')) AS oldest, \
               COUNT(*) FILTER (WHERE status = 'dead') AS dead \
             FROM deliveries WHERE status IN ('pending', 'retrying', 'dead')",
        ))
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
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::super::tests::{LEASE, lead, stores};
    use crate::store::{AttemptOutcome, DeliveryStatus, RetryResult, Store};

    /// Whichever of a replay and the purge comes first, the other sees its
    /// result: a replayed lead is never purged from under its queued delivery.
    #[tokio::test]
    async fn a_replay_racing_the_purge_never_leaves_a_queued_delivery_without_its_lead() {
        let dir = tempfile::tempdir().unwrap();
        for (name, s) in stores(&dir).await {
            let now = OffsetDateTime::now_utc();
            let old = now - Duration::from_secs(100 * 86400);
            for n in 0..20 {
                s.insert_lead(&lead(old, &format!("race{n}")), None)
                    .await
                    .unwrap();
                let c = s.claim_due(now, LEASE, 1, &[]).await.unwrap();
                let dead = AttemptOutcome::Dead {
                    error: "HTTP 400".into(),
                    http_status: Some(400),
                };
                s.record_attempt(&c[0], now, &dead).await.unwrap();
                let id = c[0].id;
                let ids = [id];
                let (purged, replayed) = tokio::join!(s.purge(now, now), s.retry(&ids, now));
                purged.unwrap();
                let (_, result) = replayed.unwrap()[0];
                let after = s.delivery(id).await.unwrap();
                match result {
                    RetryResult::Queued => assert_eq!(
                        after.map(|d| d.status),
                        Some(DeliveryStatus::Pending),
                        "{name}: queued, so it must still be there"
                    ),
                    RetryResult::NotFound => assert!(after.is_none(), "{name}"),
                    RetryResult::AlreadyDelivered => panic!("{name}: it was dead"),
                }
                // Leave nothing due for the next round's claim.
                s.purge(now, now).await.unwrap();
                if let Some(c) = s.claim_due(now, LEASE, 1, &[]).await.unwrap().pop() {
                    s.record_attempt(&c, now, &dead).await.unwrap();
                    s.purge(now, now).await.unwrap();
                }
            }
        }
    }
}
