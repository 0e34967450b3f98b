//! The Dataverse Web API, as far as leadbridge needs it: create a record,
//! and read `WhoAmI` and column metadata ([`metadata`]).

pub mod metadata;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use crate::auth::AccessToken;
use crate::http_client;

pub const API_PATH: &str = "api/data/v9.2";

/// `Cannot insert duplicate key` / `A record with matching key values already exists`.
const DUPLICATE_KEY_CODE: &str = "0x80040237";

/// A record creation request, rendered but not yet sent.
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    pub org_url: &'a Url,
    pub entity_set: &'a str,
    /// The client-generated primary key inside `body`.
    pub record_id: Uuid,
    pub body: &'a Map<String, Value>,
}

impl CreateRequest<'_> {
    pub fn url(&self) -> String {
        format!("{}/{}", collection_base(self.org_url), self.entity_set)
    }

    /// The record's address: what `OData-EntityId` says for a created record.
    pub fn entity_ref(&self) -> String {
        format!("{}({})", self.url(), self.record_id)
    }

    /// The headers sent, without `Authorization`.
    pub fn headers() -> [(&'static str, &'static str); 4] {
        [
            ("Accept", "application/json"),
            ("OData-MaxVersion", "4.0"),
            ("OData-Version", "4.0"),
            ("Content-Type", "application/json; charset=utf-8"),
        ]
    }
}

fn collection_base(org_url: &Url) -> String {
    format!("{}/{API_PATH}", org_url.as_str().trim_end_matches('/'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// `OData-EntityId`: `{org}/api/data/v9.2/leads(<guid>)`.
    pub entity_ref: String,
    pub status: u16,
    /// The record already existed with our key: an earlier attempt got through.
    pub already_existed: bool,
    /// `x-ms-dop-hint`: the degree of parallelism Dataverse recommends.
    pub dop_hint: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(*status, code, message))]
pub struct DataverseError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

fn describe(status: Option<u16>, code: &Option<String>, message: &str) -> String {
    let mut out = String::from("Dataverse");
    if let Some(s) = status {
        out.push_str(&format!(" HTTP {s}"));
    }
    if let Some(c) = code.as_deref().filter(|c| !c.is_empty()) {
        out.push_str(&format!(" {c}"));
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401: the token was refused; get a new one and try once more.
    Unauthorized,
    /// 429: service protection limits; wait at least `retry_after`.
    Throttled { retry_after: Option<Duration> },
    /// 5xx, timeouts, connection errors.
    Transient,
    /// 400, 403, 404, 413 …: retrying the same request cannot succeed.
    Permanent,
}

impl DataverseError {
    /// Timeouts and connection failures: always worth another try.
    pub(crate) fn network(e: &reqwest::Error) -> Self {
        Self {
            kind: ErrorKind::Transient,
            status: None,
            code: None,
            message: network_message(e),
        }
    }

    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind, ErrorKind::Permanent)
    }
}

pub use metadata::{MetadataCache, WhoAmI, parse_entity_metadata};

pub struct DataverseClient {
    http: reqwest::Client,
    /// Column limits per organization, for [`DataverseClient::fit_to_columns`].
    metadata: MetadataCache,
}

impl DataverseClient {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            metadata: MetadataCache::default(),
        }
    }

    pub async fn create(
        &self,
        req: &CreateRequest<'_>,
        token: &AccessToken,
    ) -> Result<Created, DataverseError> {
        let mut builder = self.http.post(req.url()).bearer_auth(token.bearer());
        for (k, v) in CreateRequest::headers() {
            builder = builder.header(k, v);
        }
        let response = builder
            .body(serde_json::to_vec(req.body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| DataverseError::network(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            let entity_ref = headers
                .get("OData-EntityId")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| req.entity_ref());
            return Ok(Created {
                entity_ref,
                status: status.as_u16(),
                already_existed: false,
                dop_hint: dop_hint(&headers),
            });
        }
        let body = response.bytes().await.unwrap_or_default();
        let err = classify(status, &headers, &body);
        if is_duplicate_key(&err) {
            return Ok(Created {
                entity_ref: req.entity_ref(),
                status: status.as_u16(),
                already_existed: true,
                dop_hint: dop_hint(&headers),
            });
        }
        Err(err)
    }
}

fn dop_hint(headers: &HeaderMap) -> Option<usize> {
    headers
        .get("x-ms-dop-hint")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

fn is_duplicate_key(e: &DataverseError) -> bool {
    let status_fits = matches!(e.status, Some(400 | 409 | 412));
    let code_fits = e.code.as_deref() == Some(DUPLICATE_KEY_CODE);
    let msg = e.message.to_ascii_lowercase();
    status_fits
        && (code_fits
            || msg.contains("duplicate key")
            || msg.contains("matching key values already exists"))
}

/// The status decides; `code` is often empty in Dataverse errors.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> DataverseError {
    let (code, message) = parse_error_body(body, headers);
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        429 => {
            crate::metrics::throttled("dataverse");
            ErrorKind::Throttled {
                retry_after: http_client::retry_after(headers),
            }
        }
        408 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    DataverseError {
        kind,
        status: Some(status.as_u16()),
        code,
        message: message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned()
        }),
    }
}

/// `{"error":{"code":"0x…","message":"…"}}`, or whatever text a proxy sent.
fn parse_error_body(body: &[u8], headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.contains("json"));
    if is_json && let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v.get("error").unwrap_or(&Value::Null);
        let code = err
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return (code, message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let snippet: String = text.chars().take(300).collect();
    (None, (!snippet.is_empty()).then_some(snippet))
}

fn network_message(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        let mut msg = String::from("request failed");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> DataverseError {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            "application/json; odata.metadata=minimal".parse().unwrap(),
        );
        classify(StatusCode::from_u16(status).unwrap(), &h, body.as_bytes())
    }

    #[test]
    fn classifies_by_status() {
        assert_eq!(err(401, "{}").kind, ErrorKind::Unauthorized);
        assert_eq!(err(503, "").kind, ErrorKind::Transient);
        assert_eq!(
            err(429, "").kind,
            ErrorKind::Throttled { retry_after: None }
        );
        for s in [400, 403, 404, 413] {
            assert_eq!(err(s, "").kind, ErrorKind::Permanent, "{s}");
        }
        let e = err(
            400,
            r#"{"error":{"code":"0x80044331","message":"A validation error occurred. The length of the 'subject' attribute of the 'lead' entity exceeded the maximum allowed length of '300'."}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("0x80044331"));
        assert!(
            e.to_string()
                .starts_with("Dataverse HTTP 400 0x80044331: A validation error"),
            "{e}"
        );
    }

    #[test]
    fn recognises_duplicate_keys() {
        assert!(is_duplicate_key(&err(
            412,
            r#"{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}"#
        )));
        assert!(is_duplicate_key(&err(
            400,
            r#"{"error":{"code":"","message":"Cannot insert duplicate key."}}"#
        )));
        assert!(!is_duplicate_key(&err(
            400,
            r#"{"error":{"code":"0x80040333","message":"A record was not created or updated because a duplicate of the current record already exists."}}"#
        )));
    }

    #[test]
    fn non_json_bodies_become_a_short_message() {
        let e = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>Bad gateway</html>",
        );
        assert_eq!(e.message, "<html>Bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Transient);
    }
}
