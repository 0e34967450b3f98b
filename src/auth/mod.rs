//! Entra ID (Azure AD) access tokens for Dataverse, by OAuth2 client credentials.
//!
//! Tokens are cached per (authority, tenant, client, scope) and fetched again
//! shortly before they expire; callers asking for the same key at once share
//! one request to Entra.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    StandardErrorResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::config::ClientCredentials;
use crate::http_client;

/// Fetch a new token when less than this is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Entra always sends `expires_in`; if it ever does not, assume little.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(300);

/// A bearer token. Debug output never shows it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    expires_at: Instant,
    /// Tells tokens apart without comparing secrets.
    serial: u64,
}

impl AccessToken {
    pub fn bearer(&self) -> &str {
        self.secret.expose_secret()
    }

    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong secret, unknown app or tenant, bad scope: retrying will not help
    /// until the configuration changes.
    #[error("Entra ID refused the credentials: {error}: {description}")]
    Permanent { error: String, description: String },
    /// Throttling, outage, network: try again later.
    #[error("Entra ID token request failed temporarily: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    token_url: String,
    client_id: String,
    scope: String,
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

pub struct TokenProvider {
    http: reqwest::Client,
    slots: Mutex<HashMap<TokenKey, Slot>>,
    serial: std::sync::atomic::AtomicU64,
}

impl TokenProvider {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            slots: Mutex::new(HashMap::new()),
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A valid token for these credentials, from the cache when possible.
    pub async fn token(&self, creds: &ClientCredentials) -> Result<AccessToken, AuthError> {
        let key = token_key(creds);
        let slot = self.slot(&key);
        let mut guard = slot.lock().await;
        if let Some(t) = guard.as_ref()
            && t.expires_at > Instant::now() + REFRESH_MARGIN
        {
            return Ok(t.clone());
        }
        let fresh = self.fetch(&key, creds).await?;
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops `rejected` from the cache (Dataverse answered 401 with it), unless
    /// another caller already replaced it.
    pub async fn invalidate(&self, creds: &ClientCredentials, rejected: &AccessToken) {
        let slot = self.slot(&token_key(creds));
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|t| t.serial == rejected.serial) {
            *guard = None;
        }
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(slots.entry(key.clone()).or_default())
    }

    async fn fetch(
        &self,
        key: &TokenKey,
        creds: &ClientCredentials,
    ) -> Result<AccessToken, AuthError> {
        let token_url = TokenUrl::new(key.token_url.clone()).map_err(|e| AuthError::Permanent {
            error: "invalid_authority".into(),
            description: e.to_string(),
        })?;
        let client = BasicClient::new(ClientId::new(creds.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                creds.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);
        let http = self.http.clone();
        let send = move |req: HttpRequest| {
            let http = http.clone();
            async move { send(&http, req).await }
        };
        let started = Instant::now();
        let response = client
            .exchange_client_credentials()
            .add_scope(Scope::new(creds.scope.clone()))
            .request_async(&send)
            .await
            .map_err(classify);
        crate::metrics::token_request(token_outcome(&response));
        let response = response?;
        let lifetime = response.expires_in().unwrap_or(FALLBACK_LIFETIME);
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            tenant = %creds.tenant_id,
            client_id = %creds.client_id,
            expires_in_s = lifetime.as_secs(),
            "fetched Entra ID token"
        );
        Ok(AccessToken {
            secret: SecretString::from(response.access_token().secret().to_owned()),
            // Measured from before the request: never trust a token longer than Entra meant.
            expires_at: started + lifetime,
            serial,
        })
    }
}

fn token_key(creds: &ClientCredentials) -> TokenKey {
    let host = creds.authority_host.as_str().trim_end_matches('/');
    TokenKey {
        token_url: format!("{host}/{}/oauth2/v2.0/token", creds.tenant_id),
        client_id: creds.client_id.clone(),
        scope: creds.scope.clone(),
    }
}

/// Why the HTTP exchange with Entra did not produce a response worth parsing.
#[derive(Debug, thiserror::Error)]
enum HttpFailure {
    #[error("{0}")]
    Network(String),
    #[error("HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        detail: Option<String>,
    },
}

/// Sends with our reqwest client. 429 and 5xx become errors here, so that the
/// classification sees the status (oauth2 would only see an error body).
async fn send(http: &reqwest::Client, req: HttpRequest) -> Result<HttpResponse, HttpFailure> {
    let (parts, body) = req.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpFailure::Network(without_url(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| HttpFailure::Network(without_url(&e)))?;
    if status.as_u16() == 429 {
        crate::metrics::throttled("entra");
    }
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(HttpFailure::Status {
            status: status.as_u16(),
            retry_after: http_client::retry_after(&headers),
            detail: error_description(&bytes),
        });
    }
    let mut out = http::Response::builder().status(status);
    if let Some(h) = out.headers_mut() {
        *h = headers;
    }
    out.body(bytes.to_vec())
        .map_err(|e| HttpFailure::Network(e.to_string()))
}

fn classify(
    e: RequestTokenError<HttpFailure, StandardErrorResponse<BasicErrorResponseType>>,
) -> AuthError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let error = r.error().as_ref().to_owned();
            let description = r
                .error_description()
                .map(|d| first_line(d).to_owned())
                .unwrap_or_default();
            if error == "temporarily_unavailable" {
                AuthError::Transient {
                    reason: format!("{error}: {description}"),
                    retry_after: None,
                }
            } else {
                AuthError::Permanent { error, description }
            }
        }
        RequestTokenError::Request(HttpFailure::Status {
            status,
            retry_after,
            detail,
        }) => AuthError::Transient {
            reason: format!(
                "HTTP {status}{}",
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
            retry_after,
        },
        RequestTokenError::Request(HttpFailure::Network(reason)) => AuthError::Transient {
            reason,
            retry_after: None,
        },
        // An answer we cannot read is most likely a proxy or outage page.
        RequestTokenError::Parse(err, _) => AuthError::Transient {
            reason: format!("unreadable token response: {err}"),
            retry_after: None,
        },
        RequestTokenError::Other(reason) => AuthError::Transient {
            reason,
            retry_after: None,
        },
    }
}

fn token_outcome<T>(r: &Result<T, AuthError>) -> crate::metrics::TokenOutcome {
    use crate::metrics::TokenOutcome;
    match r {
        Ok(_) => TokenOutcome::Ok,
        Err(AuthError::Permanent { .. }) => TokenOutcome::Rejected,
        Err(AuthError::Transient { .. }) => TokenOutcome::Failed,
    }
}

/// Entra's descriptions run on with trace and correlation ids on later lines.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default().trim()
}

fn error_description(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?.as_str()?;
    let desc = v
        .get("error_description")
        .and_then(|d| d.as_str())
        .map(first_line)
        .unwrap_or_default();
    Some(format!("{error}: {desc}"))
}

/// reqwest errors print the URL; ours carry nothing secret, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}
