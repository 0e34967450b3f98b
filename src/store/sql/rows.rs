//! Rows read back into store types, and the SELECTs that produce them.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::lead::OrgName;
use crate::store::{
    ClaimedDelivery, DeliveryView, Destination, StoreError, from_millis, parse_id, parse_name,
    parse_org,
};

pub(super) fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

pub(super) const CLAIMED: &str = "SELECT d.id, d.lead_id, d.org, d.destination, d.record_id, d.attempts, \
     d.retry_attempts, d.retry_started_at, l.received_at, l.request_id, l.payload, d.lease_token \
     FROM deliveries d JOIN leads l ON l.id = d.lead_id WHERE d.lease_token = $1 \
     ORDER BY d.next_attempt_at";

pub(super) const VIEW: &str = "SELECT d.id, d.lead_id, d.org, d.destination, d.status, d.record_id, \
     d.remote_ref, d.attempts, d.next_attempt_at, d.last_error, l.received_at, d.updated_at, \
     CAST(CASE WHEN b.org IS NULL THEN 0 ELSE 1 END AS BIGINT) AS blocked \
     FROM deliveries d JOIN leads l ON l.id = d.lead_id \
     LEFT JOIN organization_blocks b ON b.org = d.org AND b.destination = d.destination";

pub(super) fn claimed(row: &AnyRow) -> Result<ClaimedDelivery, StoreError> {
    Ok(ClaimedDelivery {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        lead_id: parse_id(&row.try_get::<String, _>("lead_id")?)?,
        org: parse_org(&row.try_get::<String, _>("org")?)?,
        destination: parse_name("destination", &row.try_get::<String, _>("destination")?)?,
        record_id: parse_id(&row.try_get::<String, _>("record_id")?)?,
        attempts: count(row.try_get("attempts")?),
        retry_attempts: count(row.try_get("retry_attempts")?),
        retry_started_at: from_millis(row.try_get("retry_started_at")?)?,
        received_at: from_millis(row.try_get("received_at")?)?,
        request_id: row.try_get("request_id")?,
        payload: row.try_get("payload")?,
        lease_token: parse_id(&row.try_get::<String, _>("lease_token")?)?,
    })
}

pub(super) fn view(row: &AnyRow) -> Result<DeliveryView, StoreError> {
    Ok(DeliveryView {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        lead_id: parse_id(&row.try_get::<String, _>("lead_id")?)?,
        org: parse_org(&row.try_get::<String, _>("org")?)?,
        destination: parse_name("destination", &row.try_get::<String, _>("destination")?)?,
        status: parse_name("status", &row.try_get::<String, _>("status")?)?,
        record_id: parse_id(&row.try_get::<String, _>("record_id")?)?,
        remote_ref: row.try_get("remote_ref")?,
        attempts: count(row.try_get("attempts")?),
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?)?,
        last_error: row.try_get("last_error")?,
        received_at: from_millis(row.try_get("received_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
        blocked: row.try_get::<i64, _>("blocked")? != 0,
    })
}

/// `["contoso/dataverse", …]`: what the claim compares `org || '/' ||
/// destination` with (organization names have no `/`).
pub(super) fn queue_list(queues: &[(OrgName, Destination)]) -> String {
    serde_json::to_string(
        &queues
            .iter()
            .map(|(org, dest)| format!("{org}/{dest}"))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into())
}
