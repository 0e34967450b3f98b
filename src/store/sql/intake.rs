//! Storing accepted leads: a batch (group commit) in one transaction and a
//! handful of statements, whatever its size — each statement is a round
//! trip on PostgreSQL, so one per lead would cap intake at the network's
//! pace.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use sqlx::Row;

use super::SqlStore;
use crate::ids::{DeliveryId, LeadId, RecordId};
use crate::store::{Inserted, NewLead, StoreError, parse_id, to_millis};

/// `($1, $2, …), ($k, …), …`: `rows` tuples of `width` numbered parameters.
fn values(rows: usize, width: usize) -> String {
    let mut out = String::new();
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            let n = r * width + c + 1;
            let _ = write!(out, "{}${n}", if c == 0 { "" } else { ", " });
        }
        out.push(')');
    }
    out
}

impl SqlStore {
    pub(super) async fn insert_leads(
        &self,
        leads: &[NewLead],
        dedupe_window: Option<Duration>,
    ) -> Result<Vec<Inserted>, StoreError> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // What each lead came to; `None` until decided.
        let mut out: Vec<Option<Inserted>> = vec![None; leads.len()];
        if let Some(window) = dedupe_window {
            // The same document twice in one batch: the first one counts.
            let mut first: HashMap<(&str, &str), LeadId> = HashMap::new();
            let mut claim = Vec::new();
            for (i, lead) in leads.iter().enumerate() {
                match first.get(&(lead.org.as_str(), lead.fingerprint.as_str())) {
                    Some(original) => {
                        out[i] = Some(Inserted::Duplicate {
                            original: *original,
                        })
                    }
                    None => {
                        first.insert((lead.org.as_str(), &lead.fingerprint), lead.id);
                        claim.push(i);
                    }
                }
            }
            // Claims each fingerprint unless a lead within the window holds
            // it. Concurrent twins serialise on the primary key: one wins,
            // one is the duplicate.
            let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            let sql = format!(
                "INSERT INTO lead_fingerprints (org, fingerprint, lead_id, received_at) VALUES {} \
                 ON CONFLICT (org, fingerprint) DO UPDATE \
                   SET lead_id = excluded.lead_id, received_at = excluded.received_at \
                   WHERE lead_fingerprints.received_at < excluded.received_at - ${} \
                 RETURNING lead_id",
                values(claim.len(), 4),
                claim.len() * 4 + 1
            );
            let mut q = sqlx::query(self.sql(&sql));
            for &i in &claim {
                let lead = &leads[i];
                q = q
                    .bind(lead.org.as_str())
                    .bind(&lead.fingerprint)
                    .bind(lead.id.to_string())
                    .bind(to_millis(lead.received_at));
            }
            let won: HashSet<String> = q
                .bind(window_ms)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("lead_id"))
                .collect::<Result<_, _>>()?;
            let lost: Vec<usize> = claim
                .iter()
                .copied()
                .filter(|&i| !won.contains(&leads[i].id.to_string()))
                .collect();
            for i in lost {
                let lead = &leads[i];
                let original: String = sqlx::query_scalar(self.sql(
                    "SELECT lead_id FROM lead_fingerprints WHERE org = $1 AND fingerprint = $2",
                ))
                .bind(lead.org.as_str())
                .bind(&lead.fingerprint)
                .fetch_one(&mut *tx)
                .await?;
                out[i] = Some(Inserted::Duplicate {
                    original: parse_id(&original)?,
                });
            }
        }
        let new: Vec<&NewLead> = leads
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|(l, _)| l)
            .collect();
        if !new.is_empty() {
            let sql = format!(
                "INSERT INTO leads (id, org, received_at, request_id, is_test, payload) VALUES {}",
                values(new.len(), 6)
            );
            let mut q = sqlx::query(self.sql(&sql));
            for lead in &new {
                q = q
                    .bind(lead.id.to_string())
                    .bind(lead.org.as_str())
                    .bind(to_millis(lead.received_at))
                    .bind(&lead.request_id)
                    .bind(i64::from(lead.is_test))
                    .bind(&lead.payload);
            }
            q.execute(&mut *tx).await?;
            let deliveries: Vec<_> = new
                .iter()
                .flat_map(|l| l.destinations.iter().map(move |d| (*l, *d)))
                .collect();
            if !deliveries.is_empty() {
                let mut rows = String::new();
                for r in 0..deliveries.len() {
                    let b = r * 6;
                    let _ = write!(
                        rows,
                        "{}(${}, ${}, ${}, ${}, 'pending', ${}, ${t}, ${t}, ${t}, ${t})",
                        if r == 0 { "" } else { ", " },
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        t = b + 6,
                    );
                }
                let sql = format!(
                    "INSERT INTO deliveries (id, lead_id, org, destination, status, record_id, \
                       retry_started_at, next_attempt_at, created_at, updated_at) VALUES {rows}"
                );
                let mut q = sqlx::query(self.sql(&sql));
                for (lead, dest) in deliveries {
                    q = q
                        .bind(DeliveryId::generate().to_string())
                        .bind(lead.id.to_string())
                        .bind(lead.org.as_str())
                        .bind(dest.as_str())
                        .bind(RecordId::generate().to_string())
                        .bind(to_millis(lead.received_at));
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Inserted::New))
            .collect())
    }
}
