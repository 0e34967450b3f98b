//! Storing accepted leads: many in one transaction (group commit), each
//! with its fingerprint claim and its deliveries.

use std::time::Duration;

use super::SqlStore;
use crate::ids::{DeliveryId, RecordId};
use crate::store::{Inserted, NewLead, StoreError, parse_id, to_millis};

impl SqlStore {
    pub(super) async fn insert_leads(
        &self,
        leads: &[NewLead],
        dedupe_window: Option<Duration>,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(leads.len());
        for lead in leads {
            let now = to_millis(lead.received_at);
            let id = lead.id.to_string();
            if let Some(window) = dedupe_window {
                // Claims the fingerprint unless a lead within the window holds
                // it (an earlier one of this batch included). Concurrent twins
                // serialise on the primary key: one wins, one is the duplicate.
                let since = lead
                    .received_at
                    .checked_sub(time::Duration::try_from(window).unwrap_or(time::Duration::MAX))
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                let won = sqlx::query(self.sql(
                    "INSERT INTO lead_fingerprints (org, fingerprint, lead_id, received_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org, fingerprint) DO UPDATE \
                       SET lead_id = excluded.lead_id, received_at = excluded.received_at \
                       WHERE lead_fingerprints.received_at < $5 \
                     RETURNING lead_id",
                ))
                .bind(lead.org.as_str())
                .bind(&lead.fingerprint)
                .bind(&id)
                .bind(now)
                .bind(to_millis(since))
                .fetch_optional(&mut *tx)
                .await?;
                if won.is_none() {
                    let original: String = sqlx::query_scalar(self.sql(
                        "SELECT lead_id FROM lead_fingerprints WHERE org = $1 AND fingerprint = $2",
                    ))
                    .bind(lead.org.as_str())
                    .bind(&lead.fingerprint)
                    .fetch_one(&mut *tx)
                    .await?;
                    out.push(Inserted::Duplicate {
                        original: parse_id(&original)?,
                    });
                    continue;
                }
            }
            sqlx::query(self.sql(
                "INSERT INTO leads (id, org, received_at, request_id, is_test, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            ))
            .bind(&id)
            .bind(lead.org.as_str())
            .bind(now)
            .bind(&lead.request_id)
            .bind(i64::from(lead.is_test))
            .bind(&lead.payload)
            .execute(&mut *tx)
            .await?;
            for dest in &lead.destinations {
                sqlx::query(self.sql(
                    "INSERT INTO deliveries (id, lead_id, org, destination, status, record_id, \
                       retry_started_at, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6, $6, $6)",
                ))
                .bind(DeliveryId::generate().to_string())
                .bind(&id)
                .bind(lead.org.as_str())
                .bind(dest.as_str())
                .bind(RecordId::generate().to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            out.push(Inserted::New);
        }
        tx.commit().await?;
        Ok(out)
    }
}
