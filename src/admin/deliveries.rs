//! `/admin/deliveries…`: the delivery history, dead letters and replay — the
//! same as `leadbridge deliveries …`, over HTTP.
//!
//! - `GET  /admin/deliveries?status=dead&org=contoso&limit=100`
//! - `GET  /admin/deliveries/{id}` (with its attempts)
//! - `POST /admin/deliveries/{id}/retry`
//! - `POST /admin/deliveries/retry-dead?org=contoso` (bulk replay)

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{AdminState, error_reply, json_reply};
use crate::ids::DeliveryId;
use crate::lead::OrgName;
use crate::store::{DeliveryFilter, DeliveryStatus, RetryResult, StoreError};

type Query = HashMap<String, String>;

pub(super) fn routes(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let with_state = warp::any().map(move || Arc::clone(&state));
    let list = warp::path!("deliveries")
        .and(warp::get())
        .and(warp::query::<Query>())
        .and(with_state.clone())
        .then(|q: Query, s: Arc<AdminState>| async move { list(&s, &q).await });
    let show = warp::path!("deliveries" / String)
        .and(warp::get())
        .and(with_state.clone())
        .then(|id: String, s: Arc<AdminState>| async move { show(&s, &id).await });
    let retry_dead = warp::path!("deliveries" / "retry-dead")
        .and(warp::post())
        .and(warp::query::<Query>())
        .and(with_state.clone())
        .then(|q: Query, s: Arc<AdminState>| async move { retry_dead(&s, &q).await });
    let retry = warp::path!("deliveries" / String / "retry")
        .and(warp::post())
        .and(with_state)
        .then(|id: String, s: Arc<AdminState>| async move { retry(&s, &id).await });
    list.or(show)
        .unify()
        .or(retry_dead)
        .unify()
        .or(retry)
        .unify()
}

fn bad_request(message: String) -> Response {
    error_reply(StatusCode::BAD_REQUEST, "bad_request", &message)
}

fn store_error(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "admin request failed on the store");
    error_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the store did not answer; try again",
    )
}

fn org_param(q: &Query) -> Result<Option<OrgName>, String> {
    q.get("org")
        .map(|o| OrgName::parse(o).map_err(|e| e.to_string()))
        .transpose()
}

fn parse_id(id: &str) -> Result<DeliveryId, String> {
    id.parse()
        .map_err(|_| format!("{id:?} is not a delivery id"))
}

async fn list(state: &AdminState, q: &Query) -> Response {
    let status = match q.get("status").map(|s| s.parse::<DeliveryStatus>()) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return bad_request(
                "status must be pending, retrying, delivered, dead or dry_run".into(),
            );
        }
    };
    let org = match org_param(q) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let limit = match q.get("limit").map(|l| l.parse::<u32>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return bad_request("limit must be a number from 1 to 1000".into()),
    };
    match state
        .store
        .list_deliveries(&DeliveryFilter { status, org, limit })
        .await
    {
        Ok(rows) => json_reply(StatusCode::OK, &json!({"deliveries": rows})),
        Err(e) => store_error(&e),
    }
}

async fn show(state: &AdminState, id: &str) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    let delivery = match state.store.delivery(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return error_reply(StatusCode::NOT_FOUND, "not_found", "no such delivery"),
        Err(e) => return store_error(&e),
    };
    match state.store.attempts(id).await {
        Ok(history) => {
            let mut body = json!(delivery);
            body["history"] = json!(history);
            json_reply(StatusCode::OK, &body)
        }
        Err(e) => store_error(&e),
    }
}

async fn retry(state: &AdminState, id: &str) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match state.store.retry(&[id], OffsetDateTime::now_utc()).await {
        Ok(results) => match results.first().map(|(_, r)| *r) {
            Some(RetryResult::Queued) => {
                tracing::info!(delivery_id = %id, "delivery queued again by the admin API");
                json_reply(StatusCode::ACCEPTED, &json!({"id": id, "result": "queued"}))
            }
            Some(RetryResult::AlreadyDelivered) => error_reply(
                StatusCode::CONFLICT,
                "already_delivered",
                "the delivery succeeded; it is not sent again",
            ),
            _ => error_reply(StatusCode::NOT_FOUND, "not_found", "no such delivery"),
        },
        Err(e) => store_error(&e),
    }
}

async fn retry_dead(state: &AdminState, q: &Query) -> Response {
    let org = match org_param(q) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    match state
        .store
        .retry_all(
            DeliveryStatus::Dead,
            org.as_ref(),
            OffsetDateTime::now_utc(),
        )
        .await
    {
        Ok(n) => {
            tracing::info!(queued = n, org = ?org.as_ref().map(OrgName::as_str), "dead letters queued again by the admin API");
            json_reply(StatusCode::ACCEPTED, &json!({"queued": n}))
        }
        Err(e) => store_error(&e),
    }
}
