//! Organization blocks: an organization-wide failure holds the
//! organization's deliveries until a probe (one delivery at a time) gets
//! through, shared by every replica through the store.

use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;

use super::rows::{CLAIMED, claimed};
use super::{Dialect, SqlStore};
use crate::ids::LeaseToken;
use crate::lead::OrgName;
use crate::store::{
    Block, ClaimedDelivery, Destination, StoreError, from_millis, lease_end, parse_name, parse_org,
    to_millis,
};

impl SqlStore {
    pub(super) async fn block(
        &self,
        org: &OrgName,
        destination: Destination,
        reason: &str,
        now: OffsetDateTime,
        probe_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let existed =
            sqlx::query(self.sql(
                "UPDATE organization_blocks SET reason = $3 WHERE org = $1 AND destination = $2",
            ))
            .bind(org.as_str())
            .bind(destination.as_str())
            .bind(reason)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if existed == 0 {
            sqlx::query(self.sql(
                "INSERT INTO organization_blocks (org, destination, reason, since, probe_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org, destination) DO NOTHING",
            ))
            .bind(org.as_str())
            .bind(destination.as_str())
            .bind(reason)
            .bind(to_millis(now))
            .bind(to_millis(probe_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(existed == 0)
    }

    pub(super) async fn unblock(
        &self,
        org: &OrgName,
        destination: Destination,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lifted = sqlx::query(
            self.sql("DELETE FROM organization_blocks WHERE org = $1 AND destination = $2"),
        )
        .bind(org.as_str())
        .bind(destination.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if lifted > 0 {
            sqlx::query(self.sql(
                "UPDATE deliveries SET next_attempt_at = $3, updated_at = $3 \
                 WHERE org = $1 AND destination = $2 AND status = 'retrying' \
                   AND next_attempt_at > $3 AND lease_token IS NULL",
            ))
            .bind(org.as_str())
            .bind(destination.as_str())
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(lifted > 0)
    }

    pub(super) async fn blocks(&self) -> Result<Vec<Block>, StoreError> {
        let rows = sqlx::query(
            "SELECT org, destination, reason, since, probe_at FROM organization_blocks \
             ORDER BY since, org, destination",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Block {
                    org: parse_org(&r.try_get::<String, _>("org")?)?,
                    destination: parse_name(
                        "destination",
                        &r.try_get::<String, _>("destination")?,
                    )?,
                    reason: r.try_get("reason")?,
                    since: from_millis(r.try_get("since")?)?,
                    probe_at: from_millis(r.try_get("probe_at")?)?,
                })
            })
            .collect()
    }

    pub(super) async fn take_probes(
        &self,
        now: OffsetDateTime,
        next_probe: OffsetDateTime,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now_ms = to_millis(now);
        // The conditional update is the race: one replica moves a due probe on.
        let due = sqlx::query(self.sql(
            "UPDATE organization_blocks SET probe_at = $1 WHERE probe_at <= $2 \
             RETURNING org, destination",
        ))
        .bind(to_millis(next_probe))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let claim = match self.dialect {
            Dialect::Sqlite => {
                "UPDATE deliveries SET lease_token = $1, lease_until = $2 WHERE id IN ( \
                   SELECT d.id FROM deliveries d \
                   WHERE d.org = $3 AND d.destination = $4 AND d.status IN ('pending', 'retrying') \
                     AND (d.lease_until IS NULL OR d.lease_until <= $5) \
                   ORDER BY d.next_attempt_at LIMIT 1)"
            }
            Dialect::Postgres => {
                "UPDATE deliveries SET lease_token = $1, lease_until = $2 WHERE id IN ( \
                   SELECT d.id FROM deliveries d \
                   WHERE d.org = $3 AND d.destination = $4 AND d.status IN ('pending', 'retrying') \
                     AND (d.lease_until IS NULL OR d.lease_until <= $5) \
                   ORDER BY d.next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
            }
        };
        let lease_until = to_millis(lease_end(now, lease));
        let mut probes = Vec::with_capacity(due.len());
        for row in &due {
            let org: String = row.try_get("org")?;
            let destination: String = row.try_get("destination")?;
            let token = LeaseToken::generate().to_string();
            sqlx::query(self.sql(claim))
                .bind(&token)
                .bind(lease_until)
                .bind(&org)
                .bind(&destination)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            if let Some(row) = sqlx::query(self.sql(CLAIMED))
                .bind(&token)
                .fetch_optional(&self.pool)
                .await?
            {
                probes.push(claimed(&row)?);
            }
        }
        Ok(probes)
    }

    pub(super) async fn probe_blocks_now(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            self.sql("UPDATE organization_blocks SET probe_at = $1 WHERE probe_at > $1"),
        )
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::super::tests::{LEASE, lead, stores};
    use crate::lead::OrgName;
    use crate::store::{AttemptOutcome, Destination, Store};

    #[tokio::test]
    async fn a_blocked_organization_is_claimed_one_probe_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        for (name, s) in stores(&dir).await {
            let org = OrgName::parse("contoso").unwrap();
            let dest = Destination::Dataverse;
            let now = OffsetDateTime::now_utc();
            for n in 0..3 {
                s.insert_lead(&lead(now, &format!("f{n}")), None)
                    .await
                    .unwrap();
            }
            let probe_at = now + Duration::from_secs(60);
            assert!(s.block(&org, dest, "refused", now, probe_at).await.unwrap());
            assert!(
                !s.block(
                    &org,
                    dest,
                    "refused again",
                    now + Duration::from_secs(1),
                    probe_at
                )
                .await
                .unwrap(),
                "{name}: already blocked"
            );
            let blocks = s.blocks().await.unwrap();
            assert_eq!(blocks.len(), 1, "{name}");
            assert_eq!(blocks[0].reason, "refused again");
            assert_eq!(blocks[0].since.unix_timestamp(), now.unix_timestamp());
            assert!(
                s.list_deliveries(&Default::default())
                    .await
                    .unwrap()
                    .iter()
                    .all(|d| d.blocked)
            );

            assert!(
                s.claim_due(now, LEASE, 10, &[]).await.unwrap().is_empty(),
                "{name}: a blocked organization is passed over"
            );
            assert_eq!(
                s.next_due_at().await.unwrap(),
                None,
                "{name}: nothing the worker should wake for"
            );
            let next = probe_at + Duration::from_secs(60);
            assert!(
                s.take_probes(now, next, LEASE).await.unwrap().is_empty(),
                "{name}: no probe before probe_at"
            );
            let probes = s.take_probes(probe_at, next, LEASE).await.unwrap();
            assert_eq!(probes.len(), 1, "{name}: one probe");
            assert!(
                s.take_probes(probe_at, next, LEASE)
                    .await
                    .unwrap()
                    .is_empty(),
                "{name}: another replica at the same moment gets none"
            );
            let failed = AttemptOutcome::Retry {
                error: "organization blocked: refused".into(),
                http_status: None,
                next_attempt_at: probe_at + Duration::from_secs(3600),
            };
            s.record_attempt(&probes[0], probe_at, &failed)
                .await
                .unwrap();

            assert_eq!(s.probe_blocks_now(probe_at).await.unwrap(), 1, "{name}");
            let probes = s.take_probes(probe_at, next, LEASE).await.unwrap();
            assert_eq!(probes.len(), 1, "{name}: a restart probes at once");
            s.release(&probes[0], None).await.unwrap();

            assert!(s.unblock(&org, dest, probe_at).await.unwrap());
            assert!(!s.unblock(&org, dest, probe_at).await.unwrap());
            assert!(s.blocks().await.unwrap().is_empty());
            let claimed = s.claim_due(probe_at, LEASE, 10, &[]).await.unwrap();
            assert_eq!(
                claimed.len(),
                3,
                "{name}: unblocked, all due now, the probed one's retry too"
            );
        }
    }
}
