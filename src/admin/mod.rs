//! The admin listener (`admin.listen`, never behind the Ingress):
//!
//! - `GET /readyz`: 200 when the store answers and every mapping is loaded,
//!   503 with the reason otherwise (the Kubernetes readiness probe);
//! - `GET /metrics`: Prometheus text, without authentication so that
//!   Prometheus can scrape it;
//! - `/admin/...`: operator routes behind `Authorization: Bearer <admin.token>`;
//! - `/` and below: the delivery history page for a browser ([`history`]),
//!   behind a login with the same token.
//!
//! Adding an admin route: write a warp filter that extracts a [`Response`]
//! and `.or()` it into [`api`]; the bearer check and the JSON error answers
//! come with it.

mod config_view;
mod deliveries;
mod history;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use time::OffsetDateTime;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::config::Settings;
use crate::delivery::{Organizations, WorkerHealth};
use crate::lead::OrgName;
use crate::store::Store;

/// A readiness probe or a scrape gives up on the store after this long:
/// Kubernetes' default probe timeout is one second.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin routes read.
pub struct AdminState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub organizations: Arc<Organizations>,
    pub metrics: PrometheusHandle,
    /// Whether the delivery worker still runs.
    pub worker: WorkerHealth,
}

/// Everything the admin listener serves, with JSON bodies for every error.
pub fn routes(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_state = {
        let state = Arc::clone(&state);
        warp::any().map(move || Arc::clone(&state))
    };
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state.clone())
        .then(|state: Arc<AdminState>| async move { ready(&state).await });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state)
        .then(|state: Arc<AdminState>| async move { scrape(&state).await });
    readyz
        .or(metrics)
        .unify()
        .or(admin(Arc::clone(&state)))
        .unify()
        .or(history::routes(state))
        .unify()
        .recover(recover)
        .unify()
}

/// `/admin/...`: the bearer check, then [`api`].
pub fn admin(state: Arc<AdminState>) -> BoxedFilter<(Response,)> {
    warp::path("admin")
        .and(guard(Arc::clone(&state)))
        .and(api(state))
        .boxed()
}

/// The routes under `/admin/`. Add new ones here with `.or(...).unify()`.
fn api(state: Arc<AdminState>) -> BoxedFilter<(Response,)> {
    config_view::route(Arc::clone(&state))
        .or(deliveries::routes(state))
        .unify()
        .boxed()
}

/// Passes only requests carrying the admin token. Without a configured
/// token the admin API is off.
pub fn guard(state: Arc<AdminState>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let state = Arc::clone(&state);
            async move { authorize(&state.settings, header.as_deref()) }
        })
        .untuple_one()
}

fn authorize(settings: &Settings, header: Option<&str>) -> Result<(), Rejection> {
    let Some(token) = &settings.admin.token else {
        return Err(warp::reject::custom(AdminRejection::Disabled));
    };
    let presented = header
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or_default();
    let ok: bool = crate::secret::matches(token, presented.as_bytes()).into();
    if ok && !presented.is_empty() {
        Ok(())
    } else {
        Err(warp::reject::custom(AdminRejection::Unauthorized))
    }
}

#[derive(Debug)]
enum AdminRejection {
    Unauthorized,
    Disabled,
}

impl warp::reject::Reject for AdminRejection {}

async fn ready(state: &AdminState) -> Response {
    let ping = match tokio::time::timeout(STORE_TIMEOUT, state.store.ping()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {STORE_TIMEOUT:?}")),
    };
    let missing: Vec<OrgName> = state
        .settings
        .organizations
        .keys()
        .filter(|org| state.organizations.get(org).is_none())
        .cloned()
        .collect();
    let (status, mut body) = readiness(ping, &missing, state.worker.failure().as_deref());
    // Blocked organizations leave the pod ready: it must keep accepting
    // leads (they wait in the store), but the reason is there to read.
    if let Ok(Ok(blocks)) = tokio::time::timeout(STORE_TIMEOUT, state.store.blocks()).await
        && !blocks.is_empty()
    {
        body["blocked_organizations"] = json!(blocks);
    }
    if status != StatusCode::OK {
        tracing::debug!(body = %body, "not ready");
    }
    json_reply(status, &body)
}

/// The readiness answer for a store ping, the organizations whose mapping
/// is not loaded and why the delivery worker stopped, if it did.
fn readiness(
    ping: Result<(), String>,
    missing_mappings: &[OrgName],
    worker_stopped: Option<&str>,
) -> (StatusCode, Value) {
    let mut reasons = Vec::new();
    if let Some(reason) = worker_stopped {
        reasons.push(format!("delivery worker stopped: {reason}"));
    }
    if let Err(e) = ping {
        reasons.push(format!("store: {e}"));
    }
    if !missing_mappings.is_empty() {
        let names: Vec<&str> = missing_mappings.iter().map(OrgName::as_str).collect();
        reasons.push(format!("no mapping loaded for {}", names.join(", ")));
    }
    if reasons.is_empty() {
        (StatusCode::OK, json!({"status": "ready"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reason": reasons.join("; ")}),
        )
    }
}

/// Sets the queue gauges from the store, then renders every metric.
async fn scrape(state: &AdminState) -> Response {
    match tokio::time::timeout(STORE_TIMEOUT, state.store.queue_stats()).await {
        Ok(Ok(stats)) => {
            let age = stats
                .oldest_waiting_since
                .map_or(0.0, |t| (OffsetDateTime::now_utc() - t).as_seconds_f64());
            crate::metrics::queue(stats.waiting, age, stats.dead);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read queue stats for /metrics"),
        Err(_) => tracing::warn!("queue stats for /metrics timed out"),
    }
    // From the store: another replica may have blocked or unblocked one.
    if let Ok(Ok(blocks)) = tokio::time::timeout(STORE_TIMEOUT, state.store.blocks()).await {
        for org in state.settings.organizations.keys() {
            let blocked = blocks.iter().any(|b| &b.org == org);
            crate::metrics::organization_blocked(org.as_str(), blocked);
        }
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn json_reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn error_reply(status: StatusCode, error: &str, message: &str) -> Response {
    json_reply(status, &json!({"error": error, "message": message}))
}

async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let response = match r.find::<AdminRejection>() {
        Some(AdminRejection::Unauthorized) => {
            let mut resp = error_reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong admin token: send Authorization: Bearer <admin.token>",
            );
            resp.headers_mut().insert(
                "www-authenticate",
                warp::http::HeaderValue::from_static("Bearer"),
            );
            resp
        }
        Some(AdminRejection::Disabled) => error_reply(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: set admin.token or admin.token_file",
        ),
        None if r.find::<warp::reject::PayloadTooLarge>().is_some() => error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        None if r.find::<warp::reject::MethodNotAllowed>().is_some() => error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        None => error_reply(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route: the admin listener serves /readyz, /metrics, /admin/... and the history page at /",
        ),
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn ready_only_with_a_store_and_every_mapping() {
        let (status, body) = readiness(Ok(()), &[], None);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ready"}));

        let (status, body) = readiness(
            Err(StoreError::Corrupt("disk gone".into()).to_string()),
            &[OrgName::parse("fabrikam").unwrap()],
            None,
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(
            body["reason"],
            "store: store data is corrupt: disk gone; no mapping loaded for fabrikam"
        );
    }

    #[test]
    fn not_ready_once_the_delivery_worker_stopped() {
        let (status, body) = readiness(Ok(()), &[], Some("panicked: boom"));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"status": "not_ready", "reason": "delivery worker stopped: panicked: boom"})
        );
    }
}
