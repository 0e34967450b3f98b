//! The public HTTP listener: receives leads, checks the endpoint secret,
//! validates, stores durably, answers. It never calls Microsoft.

mod auth_failures;
mod error;
pub mod listener;
mod secrets;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::ids::LeadId;
use crate::lead::{Lead, OrgName, ParseError, fingerprint};
use crate::store::{Destination, GroupCommit, Inserted, NewLead};

pub use auth_failures::AuthFailures;
pub use error::ApiError;
pub use secrets::EndpointSecrets;

/// What the intake handlers share.
pub struct Intake {
    /// Where accepted leads go: the store, through group commit (which
    /// also applies the de-duplication window).
    pub leads: GroupCommit,
    pub secrets: EndpointSecrets,
    /// Each organization's destinations: one delivery each per lead.
    pub destinations: HashMap<OrgName, Vec<Destination>>,
    pub max_body_bytes: usize,
    /// The whole body must arrive within this once the headers are in.
    pub body_read_timeout: Duration,
    /// Tells the delivery worker there is new work.
    pub wake: Arc<Notify>,
    /// `None`: `server.auth_failures_per_minute = 0`.
    pub auth_failures: Option<AuthFailures>,
}

/// All public routes, with JSON bodies for every error, 404 and 405 included.
pub fn routes(
    intake: Arc<Intake>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})).into_response());

    let leads = warp::path!("leads" / String)
        .and(warp::post())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(warp::ext::optional::<listener::ClientAddr>())
        .and(warp::any().map(move || Arc::clone(&intake)))
        .then(
            |org: String,
             query: String,
             ct: Option<String>,
             len: Option<u64>,
             body,
             remote: Option<listener::ClientAddr>,
             intake: Arc<Intake>| async move {
                let request_id = Uuid::new_v4().to_string();
                let request = Request {
                    org: &org,
                    query: &query,
                    content_type: ct,
                    content_length: len,
                    remote: remote.map(|a| a.0.ip()),
                    request_id: &request_id,
                };
                let result = receive(&intake, request, body).await;
                let outcome = match &result {
                    Ok(Received::Accepted(_)) => "accepted",
                    Ok(Received::Duplicate(_)) => "duplicate",
                    Err(e) => e.code(),
                };
                crate::metrics::lead_received(
                    intake.secrets.configured(&org).map(OrgName::as_str),
                    outcome,
                );
                let mut response = match result {
                    Ok(Received::Accepted(id)) => warp::reply::with_status(
                        warp::reply::json(&json!({"id": id, "status": "accepted"})),
                        StatusCode::ACCEPTED,
                    )
                    .into_response(),
                    Ok(Received::Duplicate(original)) => warp::reply::with_status(
                        warp::reply::json(&json!({"id": original, "status": "duplicate"})),
                        StatusCode::OK,
                    )
                    .into_response(),
                    Err(e) => e.into_response(),
                };
                if let Ok(v) = request_id.parse() {
                    response.headers_mut().insert("x-request-id", v);
                }
                response
            },
        );

    health.or(leads).unify().recover(recover).unify()
}

/// What the route extracted, before the body.
struct Request<'a> {
    org: &'a str,
    query: &'a str,
    content_type: Option<String>,
    content_length: Option<u64>,
    remote: Option<IpAddr>,
    request_id: &'a str,
}

#[tracing::instrument(
    name = "lead",
    skip_all,
    fields(request_id = req.request_id, lead_id = tracing::field::Empty)
)]
async fn receive<S, B>(intake: &Intake, req: Request<'_>, body: S) -> Result<Received, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let Request {
        org,
        query,
        content_type,
        content_length,
        remote,
        request_id,
    } = req;
    let code = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned());
    // An invalid name is just an unknown organization: same 401, same timing.
    let org = OrgName::parse(org).ok();
    let Some(org) = intake.secrets.verify(org.as_ref(), code.as_deref()) else {
        let limited = match (&intake.auth_failures, remote) {
            (Some(limiter), Some(ip)) => limiter.over_limit(ip),
            _ => false,
        };
        return Err(if limited {
            ApiError::RateLimited
        } else {
            ApiError::Unauthorized
        });
    };

    if let Some(ct) = content_type
        && !is_json(&ct)
    {
        return Err(ApiError::UnsupportedMediaType(ct));
    }
    let limit = intake.max_body_bytes;
    let deadline = tokio::time::Instant::now() + intake.body_read_timeout;
    if content_length.is_some_and(|l| l > limit as u64) {
        // Read (and drop) a body of reasonable size before answering, so that
        // the sender, still writing, gets the 413 rather than a reset.
        if content_length.is_some_and(|l| l <= DRAIN_AT_MOST as u64) {
            drain(body, deadline).await;
        }
        return Err(ApiError::TooLarge(limit));
    }
    let read = tokio::time::timeout_at(deadline, read_limited(body, limit));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::Oversized { rest })) => {
            drain(rest, deadline).await;
            return Err(ApiError::TooLarge(limit));
        }
        Ok(Err(BodyError::Broken(e))) => {
            return Err(ApiError::InvalidJson(format!("cannot read body: {e}")));
        }
        Err(_) => return Err(ApiError::BodyTimeout(intake.body_read_timeout)),
    };

    if is_utf16(&bytes) {
        return Err(ApiError::InvalidJson(
            "the body is UTF-16; JSON must be sent as UTF-8 (RFC 8259)".into(),
        ));
    }
    // A UTF-8 byte-order mark is noise some senders add; the lead is the rest.
    let bytes = bytes
        .strip_prefix(UTF8_BOM)
        .map_or(bytes.clone(), |rest| bytes.slice_ref(rest));
    let (lead, document) = Lead::parse_json(&bytes).map_err(|e| match e {
        ParseError::Json(e) => ApiError::InvalidJson(e.to_string()),
        ParseError::Lead(e) => ApiError::InvalidLead(e.to_string()),
    })?;

    let id = LeadId::generate();
    tracing::Span::current().record("lead_id", tracing::field::display(id));
    let new = NewLead {
        id,
        org: org.clone(),
        received_at: OffsetDateTime::now_utc(),
        request_id: request_id.to_owned(),
        is_test: lead.is_test,
        payload: String::from_utf8_lossy(&bytes).into_owned(),
        fingerprint: fingerprint(&document),
        destinations: intake.destinations.get(&org).cloned().unwrap_or_default(),
    };
    let inserted = intake.leads.insert(new).await.map_err(|e| {
        tracing::error!(error = %e, org = %org, request_id, "lead NOT stored; answered 503");
        ApiError::StoreUnavailable
    })?;
    if let Inserted::Duplicate { original } = inserted {
        tracing::info!(lead_id = %original, request_id, org = %org, "duplicate lead; not stored again");
        return Ok(Received::Duplicate(original));
    }
    intake.wake.notify_one();
    tracing::info!(
        lead_id = %id,
        request_id,
        org = %org,
        test = lead.is_test,
        action = lead.action_code.as_ref().map(|a| a.as_str()).unwrap_or(""),
        source = lead.lead_source.as_ref().map(|s| s.source.as_str()).unwrap_or(""),
        bytes = bytes.len(),
        "lead accepted"
    );
    Ok(Received::Accepted(id))
}

/// What a stored (or recognised) lead is answered with.
enum Received {
    /// `202`: the id of the new lead.
    Accepted(LeadId),
    /// `200`: the id of the lead this one repeats.
    Duplicate(LeadId),
}

/// `application/json`, any parameters, and `+json` types.
fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A UTF-16 byte-order mark, or the zero byte beside an ASCII character
/// that UTF-16 puts in front of or after every `{`, `[` or `"`.
fn is_utf16(b: &[u8]) -> bool {
    match b {
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => true,
        [a, 0, ..] | [0, a, ..] => *a != 0,
        _ => false,
    }
}

/// Why a body was not read whole.
enum BodyError<S> {
    /// Longer than the limit; `rest` is what was not read of it.
    Oversized { rest: S },
    /// The stream broke (the client went away, a malformed chunk).
    Broken(String),
}

/// The body, unless it is longer than `limit`.
async fn read_limited<S, B>(mut body: S, limit: usize) -> Result<Bytes, BodyError<S>>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if out.len().saturating_add(chunk.remaining()) > limit {
            return Err(BodyError::Oversized { rest: body });
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

/// How much of a body that is too large is read anyway, so that an
/// ordinary client, still sending, receives the 413 instead of a
/// connection reset. Larger ones are cut off.
const DRAIN_AT_MOST: usize = 16 * 1024 * 1024;

/// Reads and drops what is left of a body, up to [`DRAIN_AT_MOST`] or the deadline.
async fn drain<S, B>(mut body: S, deadline: tokio::time::Instant)
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut drained = 0usize;
    while drained <= DRAIN_AT_MOST {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => drained = drained.saturating_add(chunk.remaining()),
            _ => return,
        }
    }
}

async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let e = if r.is_not_found() {
        ApiError::NotFound
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if r.find::<warp::reject::InvalidHeader>().is_some() {
        ApiError::BadRequest("a request header is malformed (Content-Length?)".into())
    } else {
        ApiError::BadRequest(format!("{r:?}"))
    };
    Ok(e.into_response())
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
