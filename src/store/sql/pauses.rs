//! Organization pauses (Retry-After), shared by every replica through the
//! store, and the operator's way to clear them (and blocks).

use time::OffsetDateTime;

use super::SqlStore;
use crate::lead::OrgName;
use crate::store::{Destination, StoreError, Unpaused, from_millis, to_millis};

impl SqlStore {
    pub(super) async fn pause(
        &self,
        org: &OrgName,
        destination: Destination,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "INSERT INTO throttles (org, destination, paused_until) VALUES ($1, $2, $3) \
             ON CONFLICT (org, destination) DO UPDATE SET paused_until = excluded.paused_until \
             WHERE throttles.paused_until < excluded.paused_until",
        ))
        .bind(org.as_str())
        .bind(destination.as_str())
        .bind(to_millis(until))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn paused_until(
        &self,
        org: &OrgName,
        destination: Destination,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let until: Option<i64> = sqlx::query_scalar(self.sql(
            "SELECT paused_until FROM throttles WHERE org = $1 AND destination = $2 \
             AND paused_until > $3",
        ))
        .bind(org.as_str())
        .bind(destination.as_str())
        .bind(to_millis(now))
        .fetch_optional(&self.pool)
        .await?;
        until.map(from_millis).transpose()
    }

    pub(super) async fn unpause(
        &self,
        org: &OrgName,
        now: OffsetDateTime,
    ) -> Result<Unpaused, StoreError> {
        let now_ms = to_millis(now);
        let mut tx = self.pool.begin().await?;
        let pauses = sqlx::query(self.sql("DELETE FROM throttles WHERE org = $1"))
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let blocks = sqlx::query(self.sql("DELETE FROM organization_blocks WHERE org = $1"))
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let deliveries = sqlx::query(self.sql(
            "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2 \
             WHERE org = $1 AND status = 'retrying' AND next_attempt_at > $2 \
               AND (lease_until IS NULL OR lease_until <= $2)",
        ))
        .bind(org.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Unpaused {
            pauses,
            blocks,
            deliveries,
        })
    }
}
