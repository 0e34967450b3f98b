//! The Dataverse Web API, as far as leadbridge needs it: create a record,
//! and read `WhoAmI` and column metadata ([`metadata`]).

mod metadata;
mod quiet;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use url::Url;

use crate::auth::AccessToken;
use crate::ids::RecordId;
use crate::outbound;

pub use crate::outbound::{ErrorKind, RemoteError as DataverseError};
pub use metadata::WhoAmI;
use quiet::Quiet;
pub use quiet::Throttles;

pub(crate) const API_PATH: &str = "api/data/v9.2";

/// `Cannot insert duplicate key` / `A record with matching key values already exists`.
const DUPLICATE_KEY_CODE: &str = "0x80040237";

/// Every request asks for JSON in OData 4.0.
const READ_HEADERS: [(&str, &str); 3] = [
    ("Accept", "application/json"),
    ("OData-MaxVersion", "4.0"),
    ("OData-Version", "4.0"),
];

/// A record creation request, rendered but not yet sent.
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    pub org_url: &'a Url,
    pub entity_set: &'a str,
    /// The client-generated primary key inside `body`.
    pub record_id: RecordId,
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
        let [a, b, c] = READ_HEADERS;
        [a, b, c, ("Content-Type", "application/json; charset=utf-8")]
    }

    /// The request as text, the token left out: what a dry run logs and
    /// `leadbridge render` prints.
    pub fn preview(&self, token_note: &str) -> String {
        let mut out = format!("POST {}\nAuthorization: Bearer {token_note}\n", self.url());
        for (k, v) in Self::headers() {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        out.push_str(&serde_json::to_string_pretty(self.body).unwrap_or_default());
        out
    }
}

fn collection_base(org_url: &Url) -> String {
    format!("{}/{API_PATH}", org_url.as_str().trim_end_matches('/'))
}

/// A record Dataverse created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// `OData-EntityId`: `{org}/api/data/v9.2/leads(<guid>)`.
    pub entity_ref: String,
    pub status: u16,
    /// `x-ms-dop-hint`: the degree of parallelism Dataverse recommends.
    pub dop_hint: Option<usize>,
}

/// The Dataverse Web API client. It knows requests and answers, nothing of
/// mappings, configuration or the store.
pub struct DataverseClient {
    http: reqwest::Client,
    /// Each organization's last Retry-After, for requests already on their way.
    quiet: Quiet,
}

impl DataverseClient {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            quiet: Quiet::default(),
        }
    }

    /// Called before an attempt checks the organization's shared pause:
    /// how long to wait first, so that the pause of a 429 that came a moment
    /// ago has reached the store (at most `hold` after it, and never past its
    /// Retry-After). A create that checked before that 429 and reaches
    /// [`create`](Self::create) within `hold` of it is not sent.
    pub fn hold_for_pause(&self, org_url: &Url, hold: Duration) -> Duration {
        self.quiet.hold(org_url, hold)
    }

    /// When the organization last answered 429, by kind: the limit on
    /// requests per window, which fewer requests in flight do not help
    /// against (only waiting does), and the others (concurrent requests,
    /// execution time), which they do.
    pub fn last_throttles(&self, org_url: &Url) -> Throttles {
        self.quiet.last_throttles(org_url)
    }

    /// `POST {org}/api/data/v9.2/{entity_set}`. A duplicate of our own key
    /// comes back as [`ErrorKind::DuplicateKey`]: what it means for the
    /// delivery is the caller's to decide.
    pub async fn create(
        &self,
        req: &CreateRequest<'_>,
        token: &AccessToken,
    ) -> Result<Created, DataverseError> {
        let since = std::time::Instant::now();
        if let Some(pace) = self.quiet.pace(req.org_url) {
            pace.until_ready().await;
        }
        self.quiet.refuse(req.org_url, since)?;
        let mut builder = self.http.post(req.url()).bearer_auth(token.bearer());
        for (k, v) in CreateRequest::headers() {
            builder = builder.header(k, v);
        }
        let response = builder
            .body(serde_json::to_vec(req.body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| network(&e))?;
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
                dop_hint: dop_hint(&headers),
            });
        }
        let body = response.bytes().await.unwrap_or_default();
        let e = classify(status, &headers, &body);
        self.quiet.note(req.org_url, &e);
        Err(e)
    }

    /// Whether the record `{entity_set}({record_id})` exists: how a
    /// duplicate-key answer is told apart from a duplicate of another record
    /// (a plugin or an alternate key), which must not count as delivered.
    pub async fn record_exists(
        &self,
        req: &CreateRequest<'_>,
        primary_key: &str,
        token: &AccessToken,
    ) -> Result<bool, DataverseError> {
        self.quiet.refuse(req.org_url, std::time::Instant::now())?;
        let mut builder = self
            .http
            .get(format!("{}?$select={primary_key}", req.entity_ref()))
            .bearer_auth(token.bearer());
        for (k, v) in READ_HEADERS {
            builder = builder.header(k, v);
        }
        let response = builder.send().await.map_err(|e| network(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        let e = classify(status, &headers, &body);
        self.quiet.note(req.org_url, &e);
        Err(e)
    }
}

fn network(e: &reqwest::Error) -> DataverseError {
    outbound::network_error("Dataverse", e)
}

/// `x-ms-dop-hint`: the degree of parallelism Dataverse recommends.
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

fn is_duplicate_key(status: u16, code: Option<&str>, message: &str) -> bool {
    let msg = message.to_ascii_lowercase();
    matches!(status, 400 | 409 | 412)
        && (code == Some(DUPLICATE_KEY_CODE)
            || msg.contains("duplicate key")
            || msg.contains("matching key values already exists"))
}

/// The status decides; `code` is often empty in Dataverse errors.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> DataverseError {
    let (code, message) = outbound::error_body(body, headers);
    let message = message.unwrap_or_else(|| outbound::status_text(status));
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        // A privilege the application user lacks (prvCreateLead), a
        // disabled user or environment: every create of the organization
        // fails alike until an administrator acts.
        403 => ErrorKind::OrganizationWide,
        429 => ErrorKind::Throttled {
            retry_after: outbound::retry_after(headers),
        },
        s if s == 408 || s >= 500 => ErrorKind::Transient {
            retry_after: outbound::retry_after(headers),
        },
        s if is_duplicate_key(s, code.as_deref(), &message) => ErrorKind::DuplicateKey,
        _ => ErrorKind::Permanent,
    };
    DataverseError {
        kind,
        status: Some(status.as_u16()),
        message: describe(Some(status.as_u16()), code.as_deref(), &message),
        code,
    }
}

/// `Dataverse HTTP 400 0x80044331: A validation error occurred …`
fn describe(status: Option<u16>, code: Option<&str>, message: &str) -> String {
    let mut out = String::from("Dataverse");
    if let Some(s) = status {
        out.push_str(&format!(" HTTP {s}"));
    }
    if let Some(c) = code.filter(|c| !c.is_empty()) {
        out.push_str(&format!(" {c}"));
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::CONTENT_TYPE;

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
        assert_eq!(
            err(503, "").kind,
            ErrorKind::Transient { retry_after: None }
        );
        assert_eq!(
            err(429, "").kind,
            ErrorKind::Throttled { retry_after: None }
        );
        for s in [400, 404, 413] {
            assert_eq!(err(s, "").kind, ErrorKind::Permanent, "{s}");
        }
        assert_eq!(err(403, "").kind, ErrorKind::OrganizationWide);
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
        let dup = |status, body| err(status, body).kind == ErrorKind::DuplicateKey;
        assert!(dup(
            412,
            r#"{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}"#
        ));
        assert!(dup(
            400,
            r#"{"error":{"code":"","message":"Cannot insert duplicate key."}}"#
        ));
        assert!(!dup(
            400,
            r#"{"error":{"code":"0x80040333","message":"A record was not created or updated because a duplicate of the current record already exists."}}"#
        ));
    }

    #[test]
    fn non_json_bodies_become_a_short_message() {
        let e = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>Bad gateway</html>",
        );
        assert_eq!(e.message, "Dataverse HTTP 502: <html>Bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Transient { retry_after: None });
    }
}
