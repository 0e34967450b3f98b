//! What the outbound clients (Entra ID, Dataverse, Microsoft Graph) share:
//! one configured reqwest client, the reading of `Retry-After` and of OData
//! error bodies, the wording of network failures and the error vocabulary
//! ([`ErrorKind`], [`RemoteError`]).

mod error;

pub use error::{ErrorKind, RemoteError};

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// One connection pool for all outbound calls; rustls, no system OpenSSL.
pub fn build(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("leadbridge/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        // Token endpoints must never redirect a client secret elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let wait = at - OffsetDateTime::now_utc();
    Some(wait.try_into().unwrap_or(Duration::ZERO))
}

/// `{"error":{"code":"0x…","message":"…"}}` (Dataverse and Graph alike),
/// or whatever text a proxy sent.
pub fn error_body(body: &[u8], headers: &HeaderMap) -> (Option<String>, Option<String>) {
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

/// The status's reason phrase, for an error answer without a message.
pub fn status_text(status: reqwest::StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("unexpected status")
        .to_owned()
}

/// A network failure in a few words and its causes, without the URL (which
/// can carry a secret in a query string) and without the request body.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    std::iter::once(kind.to_owned())
        .chain(causes(e))
        .collect::<Vec<_>>()
        .join(": ")
}

/// The messages of an error's sources, outermost first; a source whose
/// message its wrapper already ends with (`Connection error: {source}`) is
/// left out rather than said twice.
pub fn causes(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut shown = e.to_string();
    for source in std::iter::successors(e.source(), |s| s.source()) {
        let text = source.to_string();
        if !shown.ends_with(&text) {
            out.push(text.clone());
        }
        shown = text;
    }
    out
}

/// Whether TLS refused the server's certificate (unknown issuer, expired,
/// wrong name): the same for every request until someone fixes the server
/// or the trusted CAs. rustls's error hides inside an `io::Error`, whose
/// `source()` skips it, so each link is looked into as well.
pub fn is_certificate_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |s| s.source()).any(|link| {
        let inner = link
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        [Some(link), inner].into_iter().flatten().any(|err| {
            matches!(
                err.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(_))
            )
        })
    })
}

/// Timeouts and connection failures are worth another try; a host name
/// that does not resolve (an environment deleted, or a typo in its URL) is
/// the same for every request, so it is organization-wide.
pub(crate) fn network_error(service: &str, e: &reqwest::Error) -> RemoteError {
    let kind = if e.is_connect() && causes(e).iter().any(|c| is_name_resolution_failure(c)) {
        ErrorKind::OrganizationWide
    } else {
        ErrorKind::Transient { retry_after: None }
    };
    RemoteError::new(kind, format!("{service}: {}", describe(e)))
}

/// How hyper's resolver (getaddrinfo) words a name that does not resolve.
fn is_name_resolution_failure(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    c.contains("dns error") || c.contains("failed to lookup address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    /// An error with a message and an optional source.
    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);
    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn a_cause_its_wrapper_already_ends_with_is_said_once() {
        let root = Chain("invalid peer certificate: UnknownIssuer", None);
        let io = Chain(
            "Connection error: invalid peer certificate: UnknownIssuer",
            Some(Box::new(root)),
        );
        let e = Chain("Connection error", Some(Box::new(io)));
        assert_eq!(
            causes(&e),
            ["Connection error: invalid peer certificate: UnknownIssuer"]
        );
        let e = Chain(
            "request failed",
            Some(Box::new(Chain("connection refused", None))),
        );
        assert_eq!(causes(&e), ["connection refused"], "other causes stay");
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_is_organization_wide() {
        let client = build(Duration::from_secs(5)).unwrap();
        // `.invalid` never resolves (RFC 6761), with or without a resolver.
        let e = client
            .get("https://dataverse-environment.invalid/api/data/v9.2/")
            .send()
            .await
            .unwrap_err();
        let classified = network_error("Dataverse", &e);
        assert_eq!(classified.kind, ErrorKind::OrganizationWide, "{classified}");
        // A refused connection is an outage, not the organization's setup.
        let e = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
        assert_eq!(
            network_error("Dataverse", &e).kind,
            ErrorKind::Transient { retry_after: None }
        );
    }
}
