//! Layered configuration: built-in defaults, then the TOML file, then
//! `LEADBRIDGE__SECTION__KEY` environment variables. Everything is checked at
//! load and turned into typed values; an invalid config never starts.
//!
//! The typed settings serialize with every secret redacted, so the view that
//! `GET /admin/config` shows follows the types as fields are added
//! ([`Settings::redacted`]).

mod credentials;
mod email;
mod raw;
pub(crate) mod redact;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::lead::OrgName;
use raw::{EnvVars, RawSettings};

pub use crate::auth::Credentials;
pub use email::{DEFAULT_GRAPH_URL, EmailSettings, MailTransport, SmtpSettings, SmtpTls};
pub use redact::{REDACTED, redact_url_password};

/// Where `serve` and the other verbs look when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";
pub const ENV_PREFIX: &str = "LEADBRIDGE";
pub const PUBLIC_CLOUD_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Endpoint secrets travel in a URL; shorter ones can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// The validated configuration. Serializes with every secret redacted: that
/// is [`Settings::redacted`], so it can be shown to an operator.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub store: StoreSettings,
    #[serde(serialize_with = "redact::delivery")]
    pub delivery: DeliverySettings,
    pub log: LogSettings,
    pub organizations: BTreeMap<OrgName, Organization>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// The external base URL (the Ingress), used to print the URL to paste
    /// into Partner Center. Defaults to `http://<listen>`.
    pub public_url: Option<Url>,
    /// The same document re-sent for an organization within this window is
    /// answered `200 duplicate` and stored once. `0s` turns this off.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Wrong-secret requests per client address per minute before they are
    /// answered 429 instead of 401 (brute-force brake; `0` turns it off). A
    /// correct secret is always let through.
    pub auth_failures_per_minute: u32,
    /// A client must send a request's headers within this, or its
    /// connection is closed: stalled clients must not pile up.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// ... and the body within this once the headers are in (answered 408).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A kept-alive connection with nothing moving is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections open at once at most; more wait in the listen backlog
    /// rather than being refused.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 64 * 1024,
            public_url: None,
            dedupe_window: Duration::from_secs(24 * 3600),
            auth_failures_per_minute: 30,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// The admin listener: `/readyz`, `/metrics`, `/admin/...`. Never exposed
/// through the Ingress.
#[derive(Debug, Clone, Serialize)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Bearer token for `/admin/...`; `None` disables those routes.
    #[serde(serialize_with = "redact::optional_secret")]
    pub token: Option<SecretString>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://path/to/file.db` (relative to the working directory),
    /// `sqlite:///abs/path.db`, or `postgres://user:password@host/db` for
    /// several replicas.
    #[serde(serialize_with = "redact::url_password")]
    pub url: String,
    /// Leads (with their personal data) and their history are deleted this
    /// long after they arrived, once their deliveries are finished.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/leadbridge.db".into(),
            retention: Duration::from_secs(90 * 86400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Deliveries in flight at once, across organizations. At least
    /// `org_concurrency` by default, so that one organization can use all of
    /// what Dataverse allows it.
    pub concurrency: usize,
    /// Requests in flight per organization at most. Dataverse allows 52
    /// concurrent requests per user, so that is the default ceiling; the
    /// limit adapts below it on 429 and follows `x-ms-dop-hint` when
    /// Dataverse sends it.
    pub org_concurrency: usize,
    /// An optional fixed cap on requests per minute per organization. None
    /// (or 0) by default: Dataverse's own limits (6000 per 5 minutes per
    /// user) are enforced by its 429s, whose Retry-After pauses the
    /// organization; a fixed cap set below them only slows delivery down.
    /// Useful to leave headroom for other clients of the same application
    /// user.
    pub org_requests_per_minute: Option<u32>,
    /// How often the worker looks for due retries when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The retry schedule of every destination, unless overridden below;
    /// see [`RetrySettings`].
    pub max_attempts: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
    /// Per-destination schedules: `[delivery.destinations.dataverse]`.
    /// Left out here because an override alone does not say what applies:
    /// the redacted view shows each one merged with the schedule above.
    #[serde(skip_serializing)]
    pub destinations: BTreeMap<String, RetryOverride>,
    /// Timeout of one call to Entra ID or Dataverse.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a claimed delivery stays reserved for its worker without a
    /// renewal. The worker renews it every `lease_renewal` while the attempt
    /// runs, so this is not a bound on an attempt's length; it is how long
    /// the deliveries of a process that died (SIGKILL, a lost node) wait
    /// before another replica takes them over. (On SQLite, `serve` hands
    /// every claim back at start: only a dead process can have left one.)
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often a running attempt renews its lease. At least three fit in
    /// a `lease` (checked at load): a renewal that fails (the store hiccups)
    /// is retried before the lease ends, and an attempt whose lease could
    /// not be renewed stops `lease_renewal` before the lease ends, which
    /// leaves that much room for replicas' clocks to disagree and for the
    /// attempt to stop before another worker could claim the delivery.
    #[serde(with = "humantime_serde")]
    pub lease_renewal: Duration,
    /// On SIGTERM, how long deliveries in flight may take before they are
    /// handed back to the queue.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// While an organization is blocked (its credentials refused, a
    /// privilege missing, its environment gone), one of its deliveries is
    /// tried this often to find out whether the cause is gone.
    #[serde(with = "humantime_serde")]
    pub block_probe_interval: Duration,
    /// Operators' alerts (`email.alert_to`) of one organization are gathered
    /// this long from the first event and go out as one mail.
    #[serde(with = "humantime_serde")]
    pub alert_window: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            concurrency: 64,
            org_concurrency: 52,
            org_requests_per_minute: None,
            poll_interval: Duration::from_secs(1),
            max_attempts: None,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(72 * 3600),
            destinations: BTreeMap::new(),
            request_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            lease_renewal: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            block_probe_interval: Duration::from_secs(60),
            alert_window: Duration::from_secs(60),
        }
    }
}

/// Exponential backoff with jitter from `backoff_initial` to `backoff_max`,
/// for `retry_for` after the lead arrived (or was replayed); then the
/// delivery is dead-lettered. `max_attempts` optionally caps it sooner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetrySettings {
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub backoff_initial: Duration,
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub backoff_max: Duration,
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub retry_for: Duration,
    pub max_attempts: Option<u32>,
}

/// Any subset of [`RetrySettings`] for one destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    #[serde(default, with = "humantime_serde")]
    pub backoff_initial: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_for: Option<Duration>,
    pub max_attempts: Option<u32>,
}

impl DeliverySettings {
    /// The fixed per-organization request cap, if one is set: absent and 0
    /// both mean none.
    pub fn org_rate_cap(&self) -> Option<std::num::NonZeroU32> {
        self.org_requests_per_minute
            .and_then(std::num::NonZeroU32::new)
    }

    /// The schedule for a destination (`dataverse`).
    pub fn retry_for_destination(&self, destination: &str) -> RetrySettings {
        let base = RetrySettings {
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            retry_for: self.retry_for,
            max_attempts: self.max_attempts,
        };
        match self.destinations.get(destination) {
            None => base,
            Some(o) => RetrySettings {
                backoff_initial: o.backoff_initial.unwrap_or(base.backoff_initial),
                backoff_max: o.backoff_max.unwrap_or(base.backoff_max),
                retry_for: o.retry_for.unwrap_or(base.retry_for),
                max_attempts: o.max_attempts.or(base.max_attempts),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `auto` (JSON unless stdout is a terminal), `json` or `text`.
    pub format: LogFormat,
    /// Show personal data (names, email, phone) in logs. Off by default.
    pub pii: bool,
    /// A tracing filter such as `info` or `leadbridge=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            pii: false,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// One Dynamics 365 organization leads are delivered to.
#[derive(Clone, Serialize)]
pub struct Organization {
    /// Not serialized: it is already the key in [`Settings::organizations`].
    #[serde(skip)]
    pub name: OrgName,
    /// `https://contoso.crm4.dynamics.com`; `None`: no Dynamics destination
    /// (the organization is email only).
    pub url: Option<Url>,
    /// Render and log, never call Microsoft.
    pub dry_run: bool,
    #[serde(serialize_with = "redact::path")]
    pub mapping: PathBuf,
    /// Live secrets for `?code=`; several during a rotation.
    #[serde(serialize_with = "redact::secrets")]
    pub endpoint_secrets: Vec<SecretString>,
    /// `None` in dry-run mode, and when nothing needs Entra ID (email only,
    /// by SMTP).
    pub auth: Option<Credentials>,
    /// The notification per lead (its own delivery, destination `email`).
    pub email: Option<EmailSettings>,
}

impl Organization {
    /// Where each lead of the organization goes: one delivery each.
    pub fn destinations(&self) -> Vec<crate::store::Destination> {
        use crate::store::Destination;
        let mut out = Vec::with_capacity(2);
        if self.url.is_some() {
            out.push(Destination::Dataverse);
        }
        if self.email.is_some() {
            out.push(Destination::Email);
        }
        out
    }
}

impl fmt::Debug for Organization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Organization")
            .field("name", &self.name)
            .field("url", &self.url.as_ref().map(Url::as_str))
            .field("dry_run", &self.dry_run)
            .field("mapping", &self.mapping)
            .field("endpoint_secrets", &self.endpoint_secrets.len())
            .field("auth", &self.auth)
            .field("email", &self.email.is_some())
            .finish()
    }
}

/// What is wrong with the configuration, every problem at once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration from {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{}", format_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub problem: String,
}

fn format_issues(issues: &[ConfigIssue]) -> String {
    let mut out = format!("invalid configuration ({} problem(s)):", issues.len());
    for i in issues {
        out.push_str(&format!("\n  {}: {}", i.key, i.problem));
    }
    out
}

impl Settings {
    /// Loads `path`, then the process environment on top.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Like [`Settings::load`] with an explicit environment (tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let load_err = |message: String| ConfigError::Load {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| load_err(e.to_string()))?;
        let base_dir = path
            .parent()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_owned);
        let mut environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true);
        if let Some(env) = &env {
            environment = environment.source(Some(env.clone().into_iter().collect()));
        }
        let raw: RawSettings = config::Config::builder()
            .add_source(File::from_str(&text, FileFormat::Toml))
            .add_source(environment)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| load_err(e.to_string()))?;
        raw.validate(base_dir.as_deref(), &EnvVars(env))
    }

    pub fn organization(&self, name: &OrgName) -> Option<&Organization> {
        self.organizations.get(name)
    }

    /// The base URL users paste into Partner Center.
    pub fn public_base_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => {
                let host = if self.server.listen.ip().is_unspecified() {
                    "localhost".to_owned()
                } else {
                    self.server.listen.ip().to_string()
                };
                format!("http://{host}:{}", self.server.listen.port())
            }
        }
    }
}
