//! What operators read and do: delivery views, replays, retention, queue counts.

use sqlx::Row;
use time::OffsetDateTime;

use super::SqlStore;
use super::rows::{VIEW, view};
use crate::ids::{DeliveryId, LeadId};
use crate::lead::OrgName;
use crate::store::{
    AttemptView, DeliveryFilter, DeliveryStatus, DeliveryView, Purged, QueueStats, RetryResult,
    StoreError, from_millis, to_millis,
};

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
        for id in ids {
            let updated = sqlx::query(self.sql(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, \
                   retry_attempts = 0, retry_started_at = $1, lease_token = NULL, \
                   lease_until = NULL, updated_at = $1 \
                 WHERE id = $2 AND status IN ('dead', 'dry_run', 'retrying', 'pending')",
            ))
            .bind(now_ms)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
            let result = if updated == 1 {
                RetryResult::Queued
            } else if self.delivery(*id).await?.is_some() {
                RetryResult::AlreadyDelivered
            } else {
                RetryResult::NotFound
            };
            out.push((*id, result));
        }
        Ok(out)
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
        Ok(sqlx::query(self.sql(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, retry_attempts = 0, \
               retry_started_at = $1, updated_at = $1 \
             WHERE status = $3 AND ($2 = '' OR org = $2)",
        ))
        .bind(now_ms)
        .bind(org.map(OrgName::as_str).unwrap_or_default())
        .bind(status.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub(super) async fn purge(
        &self,
        leads_before: OffsetDateTime,
        fingerprints_before: OffsetDateTime,
    ) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin().await?;
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
