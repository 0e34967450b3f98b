//! Microsoft Graph `sendMail`: `POST {graph}/v1.0/users/{from}/sendMail`
//! with an application token (permission Mail.Send) for
//! `{graph}/.default`. Graph answers 202 with no body; errors carry
//! `{"error":{"code","message"}}`, and throttling a 429 (or 503) with
//! Retry-After.
//!
//! Graph's JSON message has one body, so the HTML part goes; the plain-text
//! part is what SMTP adds beside it.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use url::Url;

use crate::auth::AccessToken;
use crate::email::{Mailbox, Message};
use crate::outbound::{self, ErrorKind, RemoteError};

#[derive(Clone)]
pub struct GraphMailer {
    http: reqwest::Client,
}

impl GraphMailer {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// The token scope for a Graph URL: `https://graph.microsoft.com/.default`.
    pub fn scope(graph_url: &Url) -> String {
        format!("{}/.default", graph_url.as_str().trim_end_matches('/'))
    }

    pub fn send_url(graph_url: &Url, from: &Mailbox) -> Result<Url, RemoteError> {
        let mut url = graph_url.clone();
        url.path_segments_mut()
            .map_err(|()| {
                RemoteError::new(
                    ErrorKind::OrganizationWide,
                    format!("Graph URL {graph_url} cannot take a path"),
                )
            })?
            .pop_if_empty()
            .extend(["v1.0", "users", from.address.as_str(), "sendMail"]);
        Ok(url)
    }

    /// The JSON body: subject, HTML body, To and Cc; not saved to the
    /// sender's Sent Items (a shared mailbox would fill up with leads).
    pub fn body(message: &Message) -> Value {
        let addresses = |list: &[Mailbox]| -> Vec<Value> {
            list.iter()
                .map(|m| match &m.name {
                    Some(name) => json!({"emailAddress": {"address": m.address, "name": name}}),
                    None => json!({"emailAddress": {"address": m.address}}),
                })
                .collect()
        };
        let r = &message.recipients;
        let mut msg = json!({
            "subject": message.subject,
            "body": {"contentType": "HTML", "content": message.html},
            "toRecipients": addresses(&r.to),
        });
        if !r.cc.is_empty()
            && let Some(obj) = msg.as_object_mut()
        {
            obj.insert("ccRecipients".into(), Value::Array(addresses(&r.cc)));
        }
        json!({"message": msg, "saveToSentItems": false})
    }

    pub async fn send(
        &self,
        graph_url: &Url,
        message: &Message,
        token: &AccessToken,
    ) -> Result<u16, RemoteError> {
        let url = Self::send_url(graph_url, &message.recipients.from)?;
        let response = self
            .http
            .post(url)
            .bearer_auth(token.bearer())
            .json(&Self::body(message))
            .send()
            .await
            .map_err(|e| outbound::network_error("Microsoft Graph", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Err(classify(status, &headers, &body))
    }
}

fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> RemoteError {
    let (code, message) = outbound::error_body(body, headers);
    let message = message.unwrap_or_else(|| outbound::status_text(status));
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        // Mail.Send not granted (or restricted by an application access
        // policy), or no such mailbox: the same for every lead until an
        // administrator acts.
        403 | 404 => ErrorKind::OrganizationWide,
        429 => ErrorKind::Throttled {
            retry_after: outbound::retry_after(headers),
        },
        // Graph asks for Retry-After on 503 as well: honoured as throttling.
        503 => ErrorKind::Throttled {
            retry_after: outbound::retry_after(headers),
        },
        s if s == 408 || s >= 500 => ErrorKind::Transient {
            retry_after: outbound::retry_after(headers),
        },
        _ => ErrorKind::Permanent,
    };
    let described = match &code {
        Some(c) => format!("Microsoft Graph {}: {c}: {message}", status.as_u16()),
        None => format!("Microsoft Graph {}: {message}", status.as_u16()),
    };
    RemoteError {
        kind,
        status: Some(status.as_u16()),
        code,
        message: described,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    #[test]
    fn the_send_url_escapes_the_sender() {
        let graph = Url::parse("https://graph.microsoft.us/").unwrap();
        let from = Mailbox {
            name: None,
            address: "leads@contoso.com".into(),
        };
        assert_eq!(
            GraphMailer::send_url(&graph, &from).unwrap().as_str(),
            "https://graph.microsoft.us/v1.0/users/leads@contoso.com/sendMail"
        );
        assert_eq!(
            GraphMailer::scope(&graph),
            "https://graph.microsoft.us/.default"
        );
    }

    #[test]
    fn throttling_and_permissions_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("9"));
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"code":"ApplicationThrottled","message":"slow down"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::Throttled {
                retry_after: Some(Duration::from_secs(9))
            }
        );
        assert_eq!(e.code.as_deref(), Some("ApplicationThrottled"));
        let e = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied."}}"#,
        );
        assert_eq!(e.kind, ErrorKind::OrganizationWide);
        assert!(e.message.contains("ErrorAccessDenied"), "{}", e.message);
        let e = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"not json");
        assert_eq!(e.kind, ErrorKind::Permanent);
    }
}
