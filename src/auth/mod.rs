//! Entra ID (Azure AD) access tokens for Dataverse.
//!
//! Four ways to get one (see [`Credentials`]): OAuth2 client credentials with
//! a client secret, a certificate-signed assertion or a workload-identity
//! token, or the managed identity endpoint (IMDS) of the machine. Whatever the
//! way, tokens are cached per (method, endpoint, client, scope) and fetched
//! again shortly before they expire; callers asking for the same key at once
//! share one request.

pub mod certificate;
mod credentials;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    StandardErrorResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::outbound::{self, ErrorKind, RemoteError};

pub use certificate::{AssertionAlg, CertificateError, ClientCertificate};
pub use credentials::{Credentials, DEFAULT_IMDS_ENDPOINT, EntraApp, ManagedIdentity};

/// IMDS API version with `resource` (not `scope`) and `client_id` parameters.
const IMDS_API_VERSION: &str = "2018-02-01";

/// Fetch a new token when less than this is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Entra always sends `expires_in`; if it ever does not, assume little.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(300);
/// Entra's tokens last 60–90 minutes; trust none for longer than a day.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A token request that failed, in the vocabulary every outbound client
/// shares: credentials Entra refuses are [`ErrorKind::OrganizationWide`]
/// (every lead of the organization fails until the configuration changes);
/// throttling, outages and the network are [`ErrorKind::Transient`].
pub type AuthError = RemoteError;

/// Wrong secret, unknown app or tenant, bad scope: retrying will not help
/// until the configuration changes.
fn refused(error: &str, description: &str) -> AuthError {
    RemoteError {
        kind: ErrorKind::OrganizationWide,
        status: None,
        code: Some(error.to_owned()),
        message: format!("Entra ID refused the credentials: {error}: {description}"),
    }
}

/// Throttling, outage, network: try again later.
fn temporary(reason: &str, retry_after: Option<Duration>) -> AuthError {
    RemoteError::new(
        ErrorKind::Transient { retry_after },
        format!("Entra ID token request failed temporarily: {reason}"),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    method: &'static str,
    /// The token endpoint, or the IMDS endpoint.
    endpoint: String,
    client_id: String,
    /// The scope, or the IMDS resource.
    scope: String,
}

/// The first wait after a failed token request that Entra did not time
/// itself; it doubles with each failure in a row.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest wait between token requests, whatever `Retry-After` says:
/// a misbehaving endpoint must not park an organization for hours.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One key's cached token, and after Entra answered 429 or 5xx, until when
/// no new request goes out. Without it, every delivery
/// waiting for the token would send a request of its own into a throttled
/// or failing endpoint, one after another.
#[derive(Default)]
struct SlotState {
    token: Option<AccessToken>,
    backoff: Option<Backoff>,
}

struct Backoff {
    until: Instant,
    error: AuthError,
    failures: u32,
}

impl Backoff {
    fn after(previous: Option<&Backoff>, error: AuthError, now: Instant) -> Self {
        let failures = previous.map_or(1, |b| b.failures.saturating_add(1));
        let doubling =
            BACKOFF_INITIAL.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)));
        let wait = error
            .kind
            .retry_after()
            .unwrap_or(doubling)
            .min(BACKOFF_MAX);
        Self {
            until: now.checked_add(wait).unwrap_or(now),
            error,
            failures,
        }
    }

    /// The failure again, with the time left as its `Retry-After`.
    fn remaining(&self, now: Instant) -> Option<AuthError> {
        let left = self
            .until
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())?;
        let mut e = self.error.clone();
        e.kind = ErrorKind::Transient {
            retry_after: Some(left),
        };
        Some(e)
    }
}

type Slot = Arc<tokio::sync::Mutex<SlotState>>;

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
    pub async fn token(&self, creds: &Credentials) -> Result<AccessToken, AuthError> {
        let key = token_key(creds);
        let slot = self.slot(&key);
        let mut guard = slot.lock().await;
        let now = Instant::now();
        if let Some(t) = guard.token.as_ref()
            && t.expires_at > now.checked_add(REFRESH_MARGIN).unwrap_or(now)
        {
            return Ok(t.clone());
        }
        if let Some(e) = guard.backoff.as_ref().and_then(|b| b.remaining(now)) {
            return Err(e);
        }
        match self.fetch(creds).await {
            Ok(fresh) => {
                guard.token = Some(fresh.clone());
                guard.backoff = None;
                Ok(fresh)
            }
            Err(e) => {
                // Entra (or IMDS) asked for time: throttled, or failing. A
                // local problem (a token file being rotated) is tried again at once.
                if !e.status.is_some_and(|s| s == 429 || s >= 500) {
                    return Err(e);
                }
                let now = Instant::now();
                let backoff = Backoff::after(guard.backoff.as_ref(), e.clone(), now);
                // The caller's retry waits for the backoff too.
                let e = backoff.remaining(now).unwrap_or(e);
                guard.backoff = Some(backoff);
                Err(e)
            }
        }
    }

    /// Drops `rejected` from the cache (Dataverse answered 401 with it), unless
    /// another caller already replaced it.
    pub(crate) async fn invalidate(&self, creds: &Credentials, rejected: &AccessToken) {
        let slot = self.slot(&token_key(creds));
        let mut guard = slot.lock().await;
        if guard
            .token
            .as_ref()
            .is_some_and(|t| t.serial == rejected.serial)
        {
            guard.token = None;
        }
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(slots.entry(key.clone()).or_default())
    }

    async fn fetch(&self, creds: &Credentials) -> Result<AccessToken, AuthError> {
        // Measured from before the request: never trust a token longer than Entra meant.
        let started = Instant::now();
        let result = self.request(creds).await;
        crate::metrics::token_request(token_outcome(&result));
        if let Err(e) = &result
            && e.status == Some(429)
        {
            crate::metrics::throttled("entra");
        }
        let (secret, lifetime) = result?;
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tenant, client_id) = match creds {
            Credentials::ManagedIdentity(mi) => (None, mi.client_id.as_deref()),
            other => (
                other.app().map(|a| a.tenant_id.as_str()),
                other.app().map(|a| a.client_id.as_str()),
            ),
        };
        tracing::info!(
            method = creds.method(),
            tenant,
            client_id,
            expires_in_s = lifetime.as_secs(),
            "fetched Entra ID token"
        );
        Ok(AccessToken {
            secret,
            // A lifetime beyond what Entra ever grants (`expires_in` from a
            // misbehaving endpoint) must not overflow the clock.
            expires_at: started
                .checked_add(lifetime.min(MAX_LIFETIME))
                .unwrap_or(started),
            serial,
        })
    }

    /// One token request by the organization's method: secret and lifetime.
    async fn request(&self, creds: &Credentials) -> Result<(SecretString, Duration), AuthError> {
        Ok(match creds {
            Credentials::ClientSecret { app, secret } => {
                self.client_credentials(app, ClientAuth::Secret(secret))
                    .await?
            }
            Credentials::Certificate { app, certificate } => {
                let assertion = certificate
                    .assertion(&app.client_id, &app.token_url(), OffsetDateTime::now_utc())
                    .map_err(|e| refused("invalid_certificate", &e.to_string()))?;
                self.client_credentials(app, ClientAuth::Assertion(&assertion))
                    .await?
            }
            Credentials::WorkloadIdentity { app, token_file } => {
                let assertion = read_federated_token(token_file).await?;
                self.client_credentials(app, ClientAuth::Assertion(&assertion))
                    .await?
            }
            Credentials::ManagedIdentity(mi) => self.managed_identity(mi).await?,
        })
    }

    /// The OAuth2 client-credentials grant at the app's token endpoint.
    async fn client_credentials(
        &self,
        app: &EntraApp,
        auth: ClientAuth<'_>,
    ) -> Result<(SecretString, Duration), AuthError> {
        let token_url = TokenUrl::new(app.token_url())
            .map_err(|e| refused("invalid_authority", &e.to_string()))?;
        let mut client = BasicClient::new(ClientId::new(app.client_id.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);
        // Without a client secret, oauth2 puts only client_id in the body:
        // exactly what a client assertion goes with.
        if let ClientAuth::Secret(secret) = auth {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        let http = self.http.clone();
        let send = move |req: HttpRequest| {
            let http = http.clone();
            async move { send(&http, req).await }
        };
        let mut request = client
            .exchange_client_credentials()
            .add_scope(Scope::new(app.scope.clone()));
        if let ClientAuth::Assertion(assertion) = auth {
            request = request
                .add_extra_param(
                    "client_assertion_type",
                    certificate::JWT_BEARER_ASSERTION_TYPE,
                )
                .add_extra_param("client_assertion", assertion.expose_secret().to_owned());
        }
        let response = request.request_async(&send).await.map_err(classify)?;
        Ok((
            SecretString::from(response.access_token().secret().to_owned()),
            response.expires_in().unwrap_or(FALLBACK_LIFETIME),
        ))
    }

    /// `GET {imds}?api-version=2018-02-01&resource=…` with `Metadata: true`.
    async fn managed_identity(
        &self,
        mi: &ManagedIdentity,
    ) -> Result<(SecretString, Duration), AuthError> {
        let mut url = mi.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", IMDS_API_VERSION)
                .append_pair("resource", &mi.resource);
            if let Some(id) = &mi.client_id {
                query.append_pair("client_id", id);
            }
        }
        let unreachable = |e: reqwest::Error| {
            temporary(
                &format!("managed identity endpoint: {}", outbound::describe(&e)),
                None,
            )
        };
        let response = self
            .http
            .get(url)
            .header("Metadata", "true")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry_after = outbound::retry_after(response.headers());
        let body = response.bytes().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return imds_token(&body);
        }
        let detail = error_description(&body);
        match status {
            // IMDS answers 404 and 410 while it starts or updates itself.
            404 | 408 | 410 | 429 | 500.. => Err(temporary(
                &format!(
                    "managed identity endpoint: HTTP {status}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                retry_after,
            )
            .with_status(status)),
            _ => {
                let (error, description) =
                    imds_error(&body).unwrap_or_else(|| (format!("HTTP {status}"), String::new()));
                Err(refused(&error, &format!("managed identity: {description}"))
                    .with_status(status))
            }
        }
    }
}

/// How a client-credentials request proves the client's identity.
#[derive(Clone, Copy)]
enum ClientAuth<'a> {
    Secret(&'a SecretString),
    Assertion(&'a SecretString),
}

fn token_key(creds: &Credentials) -> TokenKey {
    match creds {
        Credentials::ManagedIdentity(mi) => TokenKey {
            method: creds.method(),
            endpoint: mi.endpoint.to_string(),
            client_id: mi.client_id.clone().unwrap_or_default(),
            scope: mi.resource.clone(),
        },
        Credentials::ClientSecret { app, .. }
        | Credentials::Certificate { app, .. }
        | Credentials::WorkloadIdentity { app, .. } => TokenKey {
            method: creds.method(),
            endpoint: app.token_url(),
            client_id: app.client_id.clone(),
            scope: app.scope.clone(),
        },
    }
}

/// The projected service-account token, read anew each time: the kubelet
/// rotates the file, and an old token is refused once it expires.
async fn read_federated_token(path: &Path) -> Result<SecretString, AuthError> {
    let transient = |reason: String| temporary(&reason, None);
    match tokio::fs::read_to_string(path).await {
        Ok(text) if !text.trim().is_empty() => Ok(SecretString::from(text.trim().to_owned())),
        Ok(_) => Err(transient(format!(
            "workload identity: the federated token file {} is empty",
            path.display()
        ))),
        Err(e) => Err(transient(format!(
            "workload identity: cannot read the federated token file {}: {e}",
            path.display()
        ))),
    }
}

/// IMDS sends `expires_in` as a string ("3599"); accept a number as well, and
/// `expires_on` (Unix seconds) when `expires_in` is missing.
fn imds_token(body: &[u8]) -> Result<(SecretString, Duration), AuthError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    impl Seconds {
        fn get(&self) -> Option<u64> {
            match self {
                Seconds::Number(n) => Some(*n),
                Seconds::Text(s) => s.trim().parse().ok(),
            }
        }
    }
    #[derive(Deserialize)]
    struct ImdsToken {
        access_token: String,
        expires_in: Option<Seconds>,
        expires_on: Option<Seconds>,
    }
    // serde's message could quote a value from the body: say where, not what.
    let token: ImdsToken = serde_json::from_slice(body).map_err(|e| {
        temporary(
            &format!(
                "unreadable managed identity token response (line {}, column {})",
                e.line(),
                e.column()
            ),
            None,
        )
    })?;
    let lifetime = match (&token.expires_in, &token.expires_on) {
        (Some(s), _) if s.get().is_some() => s.get().map(Duration::from_secs),
        (_, Some(on)) => on.get().and_then(|at| {
            let left = i64::try_from(at).ok()? - OffsetDateTime::now_utc().unix_timestamp();
            u64::try_from(left).ok().map(Duration::from_secs)
        }),
        _ => None,
    };
    Ok((
        SecretString::from(token.access_token),
        lifetime.unwrap_or(FALLBACK_LIFETIME),
    ))
}

fn imds_error(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?.as_str()?.to_owned();
    let description = v
        .get("error_description")
        .and_then(|d| d.as_str())
        .map(first_line)
        .unwrap_or_default()
        .to_owned();
    Some((error, description))
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
        .map_err(|e| HttpFailure::Network(outbound::describe(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| HttpFailure::Network(outbound::describe(&e)))?;
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(HttpFailure::Status {
            status: status.as_u16(),
            retry_after: outbound::retry_after(&headers),
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
                temporary(&format!("{error}: {description}"), None)
            } else {
                refused(&error, &description)
            }
        }
        RequestTokenError::Request(HttpFailure::Status {
            status,
            retry_after,
            detail,
        }) => temporary(
            &format!(
                "HTTP {status}{}",
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
            retry_after,
        )
        .with_status(status),
        RequestTokenError::Request(HttpFailure::Network(reason)) => temporary(&reason, None),
        // An answer we cannot read is most likely a proxy or outage page.
        RequestTokenError::Parse(err, _) => {
            temporary(&format!("unreadable token response: {err}"), None)
        }
        RequestTokenError::Other(reason) => temporary(&reason, None),
    }
}

fn token_outcome<T>(r: &Result<T, AuthError>) -> crate::metrics::TokenOutcome {
    use crate::metrics::TokenOutcome;
    match r {
        Ok(_) => TokenOutcome::Ok,
        Err(e) if e.is_retryable() => TokenOutcome::Failed,
        Err(_) => TokenOutcome::Rejected,
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
