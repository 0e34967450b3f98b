//! Layered configuration: built-in defaults, then the TOML file, then
//! `LEADBRIDGE__SECTION__KEY` environment variables. Everything is checked at
//! load and turned into typed values; an invalid config never starts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use config::{Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::auth::{
    AssertionAlg, ClientCertificate, DEFAULT_IMDS_ENDPOINT, EntraApp, ManagedIdentity,
};
use crate::lead::OrgName;

pub use crate::auth::Credentials;

/// Where `serve` and the other verbs look when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";
pub const ENV_PREFIX: &str = "LEADBRIDGE";
pub const PUBLIC_CLOUD_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Endpoint secrets travel in a URL; shorter ones can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub store: StoreSettings,
    pub delivery: DeliverySettings,
    pub log: LogSettings,
    pub organizations: BTreeMap<OrgName, Organization>,
}

#[derive(Debug, Clone, Deserialize)]
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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 64 * 1024,
            public_url: None,
            dedupe_window: Duration::from_secs(24 * 3600),
            auth_failures_per_minute: 30,
        }
    }
}

/// The admin listener: `/readyz`, `/metrics`, `/admin/...`. Never exposed
/// through the Ingress.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Bearer token for `/admin/...`; `None` disables those routes.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://path/to/file.db` (relative to the working directory),
    /// `sqlite:///abs/path.db`, or `postgres://user:password@host/db` for
    /// several replicas.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Deliveries in flight at once, across organizations.
    pub concurrency: usize,
    /// Requests in flight per organization at most. Dataverse allows 52
    /// concurrent requests per user; the limit adapts below this on 429 and
    /// follows `x-ms-dop-hint` when Dataverse sends it.
    pub org_concurrency: usize,
    /// Requests per minute per organization at most (Dataverse: 6000 per 5
    /// minutes per user).
    pub org_requests_per_minute: u32,
    /// The retry schedule of every destination, unless overridden below;
    /// see [`RetrySettings`].
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
    pub max_attempts: Option<u32>,
    /// Per-destination schedules: `[delivery.destinations.dataverse]`.
    pub destinations: BTreeMap<String, RetryOverride>,
    /// How often the worker looks for due retries when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Timeout of one call to Entra ID or Dataverse.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a claimed delivery stays reserved for its worker; after a
    /// crash, another worker takes it over when this expires.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// On SIGTERM, how long deliveries in flight may take before they are
    /// handed back to the queue.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            org_concurrency: 8,
            org_requests_per_minute: 1000,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(72 * 3600),
            max_attempts: None,
            destinations: BTreeMap::new(),
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Exponential backoff with jitter from `backoff_initial` to `backoff_max`,
/// for `retry_for` after the lead arrived (or was replayed); then the
/// delivery is dead-lettered. `max_attempts` optionally caps it sooner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// One Dynamics 365 organization leads are delivered to.
#[derive(Clone)]
pub struct Organization {
    pub name: OrgName,
    /// `https://contoso.crm4.dynamics.com`
    pub url: Url,
    /// Render and log, never call Microsoft.
    pub dry_run: bool,
    pub mapping: PathBuf,
    /// Live secrets for `?code=`; several during a rotation.
    pub endpoint_secrets: Vec<SecretString>,
    /// `None` only in dry-run mode.
    pub auth: Option<Credentials>,
}

impl fmt::Debug for Organization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Organization")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("dry_run", &self.dry_run)
            .field("mapping", &self.mapping)
            .field("endpoint_secrets", &self.endpoint_secrets.len())
            .field("auth", &self.auth)
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

// ---- the raw, unchecked shape of the file ---------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    server: ServerSettings,
    admin: RawAdmin,
    store: StoreSettings,
    delivery: DeliverySettings,
    log: LogSettings,
    organizations: BTreeMap<String, RawOrganization>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: Option<SocketAddr>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl RawAdmin {
    fn validate(self, issue: &mut impl FnMut(String, String)) -> AdminSettings {
        let defaults = AdminSettings::default();
        let token = match (self.token, self.token_file) {
            (Some(_), Some(_)) => {
                issue(
                    "admin.token".into(),
                    "give token or token_file, not both".into(),
                );
                None
            }
            (Some(t), None) => Some(t.trim().to_owned()),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(t) => Some(t.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => {
                    issue(
                        "admin.token_file".into(),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        // A weak token on a port that can change the outbox is worse than none.
        if let Some(t) = &token
            && t.len() < MIN_SECRET_LEN
        {
            issue(
                "admin.token".into(),
                format!(
                    "too short: use at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 24`), or leave it out to disable /admin/..."
                ),
            );
        }
        AdminSettings {
            listen: self.listen.unwrap_or(defaults.listen),
            token: token.map(SecretString::from),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    url: Option<String>,
    #[serde(default)]
    dry_run: bool,
    mapping: Option<PathBuf>,
    #[serde(default)]
    endpoint_secrets: OneOrMany,
    endpoint_secrets_file: Option<PathBuf>,
    auth: Option<RawAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    /// `client_secret` (default), `certificate`, `workload_identity`, `managed_identity`.
    method: Option<String>,
    authority_host: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    /// PEM text (certificate, and the key unless `private_key*` is given).
    certificate: Option<String>,
    certificate_file: Option<PathBuf>,
    private_key: Option<String>,
    private_key_file: Option<PathBuf>,
    assertion_alg: Option<String>,
    federated_token_file: Option<PathBuf>,
    imds_endpoint: Option<String>,
}

/// The credential kinds `auth.method` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMethod {
    ClientSecret,
    Certificate,
    WorkloadIdentity,
    ManagedIdentity,
}

impl AuthMethod {
    const ALL: [(&'static str, AuthMethod); 4] = [
        ("client_secret", AuthMethod::ClientSecret),
        ("certificate", AuthMethod::Certificate),
        ("workload_identity", AuthMethod::WorkloadIdentity),
        ("managed_identity", AuthMethod::ManagedIdentity),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }
}

/// Where `AZURE_*` variables are read: the process environment, or the map a
/// test passes to [`Settings::load_with_env`].
struct EnvVars(Option<HashMap<String, String>>);

impl EnvVars {
    fn get(&self, key: &str) -> Option<String> {
        match &self.0 {
            Some(map) => map.get(key).cloned(),
            None => std::env::var(key).ok(),
        }
        .filter(|v| !v.trim().is_empty())
    }
}

/// A list, or one string with comma-separated items: environment variables
/// can only carry the latter (`LEADBRIDGE__ORGANIZATIONS__X__ENDPOINT_SECRETS=a,b`).
#[derive(Default)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            Many(Vec<String>),
        }
        Ok(OneOrMany(match Either::deserialize(d)? {
            Either::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Either::Many(v) => v,
        }))
    }
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

/// Stands in for every secret in [`Settings::redacted`].
pub const REDACTED: &str = "<redacted>";

impl Settings {
    /// The effective configuration as JSON, with every secret replaced by
    /// [`REDACTED`] (endpoint secrets, client secrets, the admin token, a
    /// password in the store URL). What `GET /admin/config` shows.
    pub fn redacted(&self) -> serde_json::Value {
        use serde_json::json;
        let secret = |present: bool| {
            if present {
                json!(REDACTED)
            } else {
                serde_json::Value::Null
            }
        };
        let organizations: serde_json::Map<String, serde_json::Value> = self
            .organizations
            .values()
            .map(|o| {
                let auth = o.auth.as_ref().map(|a| {
                    let mut v = match a {
                        crate::auth::Credentials::ManagedIdentity(mi) => json!({
                            "imds_endpoint": mi.endpoint.as_str(),
                            "client_id": mi.client_id,
                        }),
                        other => {
                            let app = other.app();
                            json!({
                                "authority_host": app.map(|a| a.authority_host.as_str()),
                                "tenant_id": app.map(|a| a.tenant_id.as_str()),
                                "client_id": app.map(|a| a.client_id.as_str()),
                                "scope": app.map(|a| a.scope.as_str()),
                            })
                        }
                    };
                    v["method"] = json!(a.method());
                    match a {
                        crate::auth::Credentials::ClientSecret { .. } => {
                            v["client_secret"] = json!(REDACTED)
                        }
                        crate::auth::Credentials::Certificate { .. } => {
                            v["private_key"] = json!(REDACTED)
                        }
                        _ => {}
                    }
                    v
                });
                let value = json!({
                    "url": o.url.as_str(),
                    "dry_run": o.dry_run,
                    "mapping": o.mapping.display().to_string(),
                    "endpoint_secrets": vec![REDACTED; o.endpoint_secrets.len()],
                    "auth": auth,
                });
                (o.name.to_string(), value)
            })
            .collect();
        let d = &self.delivery;
        let human = |t: Duration| humantime_serde::re::humantime::format_duration(t).to_string();
        json!({
            "server": {
                "listen": self.server.listen.to_string(),
                "max_body_bytes": self.server.max_body_bytes,
                "public_url": self.server.public_url.as_ref().map(Url::as_str),
                "dedupe_window": human(self.server.dedupe_window),
                "auth_failures_per_minute": self.server.auth_failures_per_minute,
            },
            "admin": {
                "listen": self.admin.listen.to_string(),
                "token": secret(self.admin.token.is_some()),
            },
            "store": {
                "url": redact_url_password(&self.store.url),
                "retention": human(self.store.retention),
            },
            "delivery": {
                "concurrency": d.concurrency,
                "org_concurrency": d.org_concurrency,
                "org_requests_per_minute": d.org_requests_per_minute,
                "poll_interval": human(d.poll_interval),
                "max_attempts": d.max_attempts,
                "backoff_initial": human(d.backoff_initial),
                "backoff_max": human(d.backoff_max),
                "retry_for": human(d.retry_for),
                "destinations": d.destinations.keys().map(|k| (k.clone(), {
                    let r = d.retry_for_destination(k);
                    json!({
                        "backoff_initial": human(r.backoff_initial),
                        "backoff_max": human(r.backoff_max),
                        "retry_for": human(r.retry_for),
                        "max_attempts": r.max_attempts,
                    })
                })).collect::<serde_json::Map<_, _>>(),
                "request_timeout": human(d.request_timeout),
                "lease": human(d.lease),
                "shutdown_grace": human(d.shutdown_grace),
            },
            "log": {
                "format": match self.log.format {
                    LogFormat::Auto => "auto",
                    LogFormat::Json => "json",
                    LogFormat::Text => "text",
                },
                "pii": self.log.pii,
                "level": self.log.level,
            },
            "organizations": organizations,
        })
    }
}

/// Store URLs may carry a password (PostgreSQL): it becomes `***` (which
/// needs no escaping in a URL), the rest is kept.
pub fn redact_url_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl RawSettings {
    /// `base_dir`: relative mapping paths that do not exist from the working
    /// directory are tried relative to the config file's project directory.
    fn validate(self, base_dir: Option<&Path>, env: &EnvVars) -> Result<Settings, ConfigError> {
        let mut issues = Vec::new();
        let mut issue = |key: String, problem: String| issues.push(ConfigIssue { key, problem });

        if self.server.max_body_bytes < 1024 {
            issue(
                "server.max_body_bytes".into(),
                "must be at least 1024: a lead is a few hundred bytes, but leave room".into(),
            );
        }
        if let Some(u) = &self.server.public_url
            && !matches!(u.scheme(), "http" | "https")
        {
            issue("server.public_url".into(), "must be an http(s) URL".into());
        }
        let store_ok = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| self.store.url.starts_with(p));
        if !store_ok {
            issue(
                "store.url".into(),
                "expected sqlite://PATH (embedded, one replica) or postgres://USER@HOST/DB (several replicas)".into(),
            );
        }
        if self.store.retention < Duration::from_secs(86400) {
            issue(
                "store.retention".into(),
                "must be at least 1 day (deliveries retry for days)".into(),
            );
        }
        let d = &self.delivery;
        for (key, value) in [
            ("concurrency", d.concurrency),
            ("org_concurrency", d.org_concurrency),
            (
                "org_requests_per_minute",
                d.org_requests_per_minute as usize,
            ),
        ] {
            if value == 0 {
                issue(format!("delivery.{key}"), "must be at least 1".into());
            }
        }
        for name in d.destinations.keys() {
            if name != "dataverse" {
                issue(
                    format!("delivery.destinations.{name}"),
                    "unknown destination; expected dataverse".into(),
                );
            }
        }
        for (key, r) in std::iter::once(("delivery".to_owned(), d.retry_for_destination(""))).chain(
            d.destinations.keys().map(|n| {
                (
                    format!("delivery.destinations.{n}"),
                    d.retry_for_destination(n),
                )
            }),
        ) {
            if r.backoff_initial.is_zero() || r.backoff_max < r.backoff_initial {
                issue(
                    format!("{key}.backoff_max"),
                    "backoff_initial must be > 0 and backoff_max >= backoff_initial".into(),
                );
            }
            if r.max_attempts == Some(0) {
                issue(format!("{key}.max_attempts"), "must be at least 1".into());
            }
            if r.retry_for.is_zero() {
                issue(format!("{key}.retry_for"), "must be > 0".into());
            }
        }
        if d.request_timeout.is_zero() || d.poll_interval.is_zero() || d.lease.is_zero() {
            issue(
                "delivery".into(),
                "request_timeout, poll_interval and lease must be > 0".into(),
            );
        }
        let admin = self.admin.validate(&mut issue);
        if self.organizations.is_empty() {
            issue(
                "organizations".into(),
                "no organization configured: add an [organizations.<name>] section".into(),
            );
        }

        let mut organizations = BTreeMap::new();
        for (name, raw) in self.organizations {
            let key = format!("organizations.{name}");
            let org_name = match OrgName::parse(&name) {
                Ok(n) => n,
                Err(e) => {
                    issue(key, e.to_string());
                    continue;
                }
            };
            match raw.validate(&org_name, &key, base_dir, env) {
                Ok(org) => {
                    organizations.insert(org_name, org);
                }
                Err(more) => {
                    for i in more {
                        issue(i.key, i.problem);
                    }
                }
            }
        }

        if issues.is_empty() {
            Ok(Settings {
                server: self.server,
                admin,
                store: self.store,
                delivery: self.delivery,
                log: self.log,
                organizations,
            })
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }
}

impl RawOrganization {
    fn validate(
        self,
        name: &OrgName,
        key: &str,
        base_dir: Option<&Path>,
        env: &EnvVars,
    ) -> Result<Organization, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut issue = |k: &str, problem: String| {
            issues.push(ConfigIssue {
                key: format!("{key}.{k}"),
                problem,
            })
        };

        let url = match self.url.as_deref().map(Url::parse) {
            Some(Ok(u)) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Some(u),
            Some(_) => {
                issue(
                    "url",
                    "must be the organization's URL, e.g. https://contoso.crm4.dynamics.com".into(),
                );
                None
            }
            None => {
                issue(
                    "url",
                    "missing: the organization's URL, e.g. https://contoso.crm4.dynamics.com"
                        .into(),
                );
                None
            }
        };

        let mut secrets = self.endpoint_secrets.0;
        if let Some(path) = &self.endpoint_secrets_file {
            match std::fs::read_to_string(path) {
                Ok(text) => secrets.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                ),
                Err(e) => issue(
                    "endpoint_secrets_file",
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        if secrets.is_empty() {
            issue(
                "endpoint_secrets",
                "at least one secret is needed: it is the ?code= part of the URL pasted into Partner Center".into(),
            );
        }
        for (i, s) in secrets.iter().enumerate() {
            if s.len() < MIN_SECRET_LEN {
                issue(
                    &format!("endpoint_secrets[{i}]"),
                    format!(
                        "too short: use at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 24`)"
                    ),
                );
            } else if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            {
                issue(
                    &format!("endpoint_secrets[{i}]"),
                    "use only letters, digits and - . _ ~ so the secret needs no escaping in a URL"
                        .into(),
                );
            }
        }

        let auth = match (self.auth, self.dry_run) {
            (Some(a), _) => a.validate(url.as_ref(), env, &mut issue),
            (None, true) => None,
            (None, false) => {
                issue(
                    "auth",
                    "missing: credentials are needed unless dry_run = true (tenant_id, client_id and client_secret, or another auth.method)".into(),
                );
                None
            }
        };

        let mapping = resolve_mapping_path(self.mapping, name, base_dir);
        if issues.is_empty()
            && let Some(url) = url
        {
            Ok(Organization {
                name: name.clone(),
                url,
                dry_run: self.dry_run,
                mapping,
                endpoint_secrets: secrets.into_iter().map(SecretString::from).collect(),
                auth,
            })
        } else {
            Err(issues)
        }
    }
}

impl RawAuth {
    fn validate(
        self,
        org_url: Option<&Url>,
        env: &EnvVars,
        issue: &mut impl FnMut(&str, String),
    ) -> Option<Credentials> {
        let method = match self.method.as_deref().map(str::trim) {
            None | Some("") => AuthMethod::ClientSecret,
            Some(m) => match AuthMethod::ALL.iter().find(|(name, _)| *name == m) {
                Some((_, method)) => *method,
                None => {
                    issue(
                        "auth.method",
                        format!(
                            "unknown method `{m}`; expected one of client_secret, certificate, workload_identity, managed_identity"
                        ),
                    );
                    return None;
                }
            },
        };

        // A secret given for another method is a mistake worth stopping for:
        // the user believes it is in use.
        let only_for = [
            (
                "client_secret",
                self.client_secret.is_some(),
                AuthMethod::ClientSecret,
            ),
            (
                "client_secret_file",
                self.client_secret_file.is_some(),
                AuthMethod::ClientSecret,
            ),
            (
                "certificate",
                self.certificate.is_some(),
                AuthMethod::Certificate,
            ),
            (
                "certificate_file",
                self.certificate_file.is_some(),
                AuthMethod::Certificate,
            ),
            (
                "private_key",
                self.private_key.is_some(),
                AuthMethod::Certificate,
            ),
            (
                "private_key_file",
                self.private_key_file.is_some(),
                AuthMethod::Certificate,
            ),
            (
                "assertion_alg",
                self.assertion_alg.is_some(),
                AuthMethod::Certificate,
            ),
            (
                "federated_token_file",
                self.federated_token_file.is_some(),
                AuthMethod::WorkloadIdentity,
            ),
            (
                "imds_endpoint",
                self.imds_endpoint.is_some(),
                AuthMethod::ManagedIdentity,
            ),
        ];
        let mut misplaced = false;
        for (key, given, belongs_to) in only_for {
            if given && belongs_to != method {
                issue(
                    &format!("auth.{key}"),
                    format!(
                        "only used with method = \"{}\", but method is \"{}\"",
                        belongs_to.name(),
                        method.name()
                    ),
                );
                misplaced = true;
            }
        }

        if method == AuthMethod::ManagedIdentity {
            let endpoint = self
                .imds_endpoint
                .as_deref()
                .unwrap_or(DEFAULT_IMDS_ENDPOINT);
            let endpoint = match Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => Some(u),
                _ => {
                    issue(
                        "auth.imds_endpoint",
                        format!("must be a URL such as {DEFAULT_IMDS_ENDPOINT}"),
                    );
                    None
                }
            };
            // IMDS wants the resource itself; a configured scope names it too.
            let resource = match self.scope {
                Some(scope) => scope.trim().trim_end_matches("/.default").to_owned(),
                None => org_url?.as_str().trim_end_matches('/').to_owned(),
            };
            let client_id = self
                .client_id
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty());
            if misplaced {
                return None;
            }
            return Some(Credentials::ManagedIdentity(ManagedIdentity {
                endpoint: endpoint?,
                resource,
                client_id,
            }));
        }

        // Workload identity: the webhook's AZURE_* variables fill what the
        // file leaves out (the Helm chart may render an empty tenant_id).
        let from_env = |given: Option<String>, var: &str| {
            let given = given.filter(|s| !s.trim().is_empty());
            if method == AuthMethod::WorkloadIdentity {
                given.or_else(|| env.get(var))
            } else {
                given
            }
        };
        let wi_hint = |var: &str| {
            if method == AuthMethod::WorkloadIdentity {
                format!(
                    " (or the environment variable {var}, set by the Azure Workload Identity webhook)"
                )
            } else {
                String::new()
            }
        };
        let authority_host = from_env(self.authority_host, "AZURE_AUTHORITY_HOST");
        let authority_host =
            match Url::parse(authority_host.as_deref().unwrap_or(PUBLIC_CLOUD_AUTHORITY)) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => Some(u),
                _ => {
                    issue(
                        "auth.authority_host",
                        "must be a URL such as https://login.microsoftonline.com".into(),
                    );
                    None
                }
            };
        let mut required =
            |k: &str, v: Option<String>, what: String| match v.map(|s| s.trim().to_owned()) {
                Some(s) if !s.is_empty() => Some(s),
                _ => {
                    issue(&format!("auth.{k}"), format!("missing: {what}"));
                    None
                }
            };
        let tenant_id = required(
            "tenant_id",
            from_env(self.tenant_id, "AZURE_TENANT_ID"),
            format!(
                "the Directory (tenant) ID of the app registration{}",
                wi_hint("AZURE_TENANT_ID")
            ),
        );
        let client_id = required(
            "client_id",
            from_env(self.client_id, "AZURE_CLIENT_ID"),
            format!(
                "the Application (client) ID of the app registration{}",
                wi_hint("AZURE_CLIENT_ID")
            ),
        );
        let scope = self
            .scope
            .or_else(|| org_url.map(|u| format!("{}/.default", u.as_str().trim_end_matches('/'))));

        let kind = match method {
            AuthMethod::ClientSecret => {
                match secret_text(
                    issue,
                    "client_secret",
                    self.client_secret,
                    self.client_secret_file,
                ) {
                    Ok(Some(secret)) => Some(Kind::Secret(SecretString::from(secret))),
                    Ok(None) => {
                        issue(
                            "auth.client_secret",
                            "missing: the app registration's client secret (or client_secret_file)"
                                .into(),
                        );
                        None
                    }
                    Err(()) => None,
                }
            }
            AuthMethod::Certificate => certificate(
                issue,
                (self.certificate, self.certificate_file),
                (self.private_key, self.private_key_file),
                self.assertion_alg,
            )
            .map(|c| Kind::Certificate(Arc::new(c))),
            AuthMethod::WorkloadIdentity => {
                match from_env(
                    self.federated_token_file.map(|p| p.display().to_string()),
                    "AZURE_FEDERATED_TOKEN_FILE",
                ) {
                    Some(path) if Path::new(&path).is_file() => {
                        Some(Kind::Federated(PathBuf::from(path)))
                    }
                    Some(path) => {
                        issue(
                            "auth.federated_token_file",
                            format!("{path} does not exist or is not a file"),
                        );
                        None
                    }
                    None => {
                        issue(
                            "auth.federated_token_file",
                            format!(
                                "missing: the path of the projected service-account token{}",
                                wi_hint("AZURE_FEDERATED_TOKEN_FILE")
                            ),
                        );
                        None
                    }
                }
            }
            AuthMethod::ManagedIdentity => None,
        };
        if misplaced {
            return None;
        }
        let app = EntraApp {
            authority_host: authority_host?,
            tenant_id: tenant_id?,
            client_id: client_id?,
            scope: scope?,
        };
        Some(match kind? {
            Kind::Secret(secret) => Credentials::ClientSecret { app, secret },
            Kind::Certificate(certificate) => Credentials::Certificate { app, certificate },
            Kind::Federated(token_file) => Credentials::WorkloadIdentity { app, token_file },
        })
    }
}

/// What an app registration's credential turned out to be.
enum Kind {
    Secret(SecretString),
    Certificate(Arc<ClientCertificate>),
    Federated(PathBuf),
}

/// A secret given as `key` or as `key_file` (trailing newline dropped).
/// `Ok(None)`: neither given; `Err`: the problem is already reported.
fn secret_text(
    issue: &mut impl FnMut(&str, String),
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, ()> {
    match (inline, file) {
        (Some(s), None) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        (Some(_), None) => {
            issue(&format!("auth.{key}"), "is empty".into());
            Err(())
        }
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim_end_matches(['\r', '\n']).to_owned())),
            Ok(_) => {
                issue(
                    &format!("auth.{key}_file"),
                    format!("{} is empty", path.display()),
                );
                Err(())
            }
            Err(e) => {
                issue(
                    &format!("auth.{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                );
                Err(())
            }
        },
        (Some(_), Some(_)) => {
            issue(
                &format!("auth.{key}"),
                format!("give {key} or {key}_file, not both"),
            );
            Err(())
        }
        (None, None) => Ok(None),
    }
}

/// Reads and checks the certificate credential: PEM certificate, its RSA key
/// (from the same text unless given apart) and the assertion algorithm.
fn certificate(
    issue: &mut impl FnMut(&str, String),
    cert: (Option<String>, Option<PathBuf>),
    key: (Option<String>, Option<PathBuf>),
    alg: Option<String>,
) -> Option<ClientCertificate> {
    let alg = match alg.as_deref() {
        None => Some(AssertionAlg::Ps256),
        Some(a) => AssertionAlg::parse(a).or_else(|| {
            issue(
                "auth.assertion_alg",
                format!("unknown algorithm `{a}`; expected PS256 (default) or RS256"),
            );
            None
        }),
    };
    // Which setting a problem is reported under, and the file it came from.
    let named = |inline: &Option<String>, file: &Option<PathBuf>, name: &'static str| match file {
        Some(path) if inline.is_none() => (format!("{name}_file"), format!("{}: ", path.display())),
        _ => (name.to_owned(), String::new()),
    };
    let cert_names = named(&cert.0, &cert.1, "certificate");
    let key_names = if key.0.is_none() && key.1.is_none() {
        cert_names.clone()
    } else {
        named(&key.0, &key.1, "private_key")
    };
    let cert_text = match secret_text(issue, "certificate", cert.0, cert.1) {
        Ok(Some(text)) => Some(text),
        Ok(None) => {
            issue(
                "auth.certificate_file",
                "missing: a PEM file with the app registration's certificate and its private key"
                    .into(),
            );
            None
        }
        Err(()) => None,
    };
    let key_text = match secret_text(issue, "private_key", key.0, key.1) {
        Ok(Some(text)) => Some(text),
        Ok(None) => cert_text.clone(),
        Err(()) => None,
    };
    match ClientCertificate::from_pem(cert_text?.as_bytes(), key_text?.as_bytes(), alg?) {
        Ok(c) => Some(c),
        Err(e) => {
            let (k, file) = if e.concerns_key() {
                key_names
            } else {
                cert_names
            };
            issue(&format!("auth.{k}"), format!("{file}{e}"));
            None
        }
    }
}

/// `mappings/<org>.yaml` by default. A relative path is taken from the working
/// directory, or else from the project directory the config file lives in, so
/// `leadbridge serve --config /path/to/project/config/default.toml` works from anywhere.
fn resolve_mapping_path(given: Option<PathBuf>, org: &OrgName, base_dir: Option<&Path>) -> PathBuf {
    let path = given.unwrap_or_else(|| PathBuf::from(format!("mappings/{org}.yaml")));
    match base_dir {
        Some(base) if path.is_relative() && !path.exists() && base.join(&path).exists() => {
            base.join(path)
        }
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(&path, Some(env))
    }

    fn problems(toml: &str) -> Vec<ConfigIssue> {
        match load(toml, &[]) {
            Err(ConfigError::Invalid(i)) => i,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    const DRY: &str = r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
dry_run = true
endpoint_secrets = ["0123456789abcdef"]
"#;

    #[test]
    fn shipped_default_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let s = Settings::load_with_env(&path, Some(HashMap::new())).unwrap();
        let contoso = s.organization(&OrgName::parse("contoso").unwrap()).unwrap();
        assert!(contoso.dry_run);
        assert!(contoso.mapping.ends_with("mappings/contoso.yaml"));
        assert_eq!(s.store.url, "sqlite://data/leadbridge.db");
        assert_eq!(s.server.listen.port(), 8080);
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let s = load(DRY, &[]).unwrap();
        assert_eq!(s.server.max_body_bytes, 65536);
        assert_eq!(s.delivery.max_attempts, None);
        assert_eq!(s.delivery.retry_for, Duration::from_secs(72 * 3600));
        assert_eq!(s.server.dedupe_window, Duration::from_secs(24 * 3600));
        assert_eq!(s.public_base_url(), "http://localhost:8080");
        let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
        assert_eq!(org.mapping, PathBuf::from("mappings/contoso.yaml"));
        assert!(org.auth.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = load(
            DRY,
            &[
                ("LEADBRIDGE__SERVER__LISTEN", "127.0.0.1:9999"),
                ("LEADBRIDGE__DELIVERY__REQUEST_TIMEOUT", "5s"),
                (
                    "LEADBRIDGE__ORGANIZATIONS__CONTOSO__ENDPOINT_SECRETS",
                    "aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb",
                ),
            ],
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9999);
        assert_eq!(s.delivery.request_timeout, Duration::from_secs(5));
        let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
        let secrets: Vec<&str> = org
            .endpoint_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(secrets, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
    }

    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("cs");
        std::fs::write(&cs, "s3cret-value\n").unwrap();
        let es = dir.path().join("es");
        std::fs::write(
            &es,
            "# rotation\nfirst-secret-123456\n\nsecond-secret-12345\n",
        )
        .unwrap();
        let toml = format!(
            r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets_file = "{}"
[organizations.contoso.auth]
tenant_id = "t"
client_id = "c"
client_secret_file = "{}"
"#,
            es.display(),
            cs.display()
        );
        let s = load(&toml, &[]).unwrap();
        let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
        assert_eq!(org.endpoint_secrets.len(), 2);
        let Some(Credentials::ClientSecret { app, secret }) = &org.auth else {
            panic!("client secret credentials expected: {:?}", org.auth);
        };
        assert_eq!(secret.expose_secret(), "s3cret-value");
        assert_eq!(app.scope, "https://contoso.crm4.dynamics.com/.default");
        assert_eq!(
            app.authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert!(
            !format!("{org:?}").contains("s3cret"),
            "Debug must not show secrets"
        );
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let p = problems(
            r#"
[server]
max_body_bytes = 10
[store]
url = "mysql://x"
[delivery]
concurrency = 0
[organizations.Bad_Name]
url = "https://x.crm.dynamics.com"
[organizations.contoso]
url = "not a url"
endpoint_secrets = ["short", "has space in it 123"]
[organizations.contoso.auth]
client_secret = "x"
client_secret_file = "/nonexistent"
"#,
        );
        let keys: Vec<&str> = p.iter().map(|i| i.key.as_str()).collect();
        for k in [
            "server.max_body_bytes",
            "store.url",
            "delivery.concurrency",
            "organizations.Bad_Name",
            "organizations.contoso.url",
            "organizations.contoso.endpoint_secrets[0]",
            "organizations.contoso.endpoint_secrets[1]",
            "organizations.contoso.auth.tenant_id",
            "organizations.contoso.auth.client_id",
            "organizations.contoso.auth.client_secret",
        ] {
            assert!(keys.contains(&k), "missing {k} in {p:#?}");
        }
    }

    #[test]
    fn live_organizations_need_credentials() {
        let p = problems(
            r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets = ["0123456789abcdef"]
"#,
        );
        assert_eq!(p[0].key, "organizations.contoso.auth");
    }

    #[test]
    fn typos_and_bad_types_are_load_errors_naming_the_key() {
        let err = load(&format!("{DRY}\n[server]\nlisten = \"nowhere\"\n"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("listen") || err.to_string().contains("server"),
            "{err}"
        );
        let err = load(&format!("{DRY}\n[server]\nlistn = \"0.0.0.0:1\"\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let err = load(DRY, &[("LEADBRIDGE__DELIVERY__MAX_ATTEMPTS", "many")]).unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }

    #[test]
    fn admin_listener_defaults_and_token_sources() {
        let s = load(DRY, &[]).unwrap();
        assert_eq!(s.admin.listen, SocketAddr::from(([127, 0, 0, 1], 9090)));
        assert!(s.admin.token.is_none(), "no token: /admin/... disabled");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-token");
        std::fs::write(&file, "from-a-kubernetes-secret-0123\n").unwrap();
        let toml = format!(
            "{DRY}\n[admin]\nlisten = \"0.0.0.0:9091\"\ntoken_file = \"{}\"\n",
            file.display()
        );
        let s = load(&toml, &[]).unwrap();
        assert_eq!(s.admin.listen.port(), 9091);
        assert_eq!(
            s.admin.token.as_ref().map(|t| t.expose_secret()),
            Some("from-a-kubernetes-secret-0123")
        );

        let p = problems(&format!("{DRY}\n[admin]\ntoken = \"short\"\n"));
        assert_eq!(p[0].key, "admin.token");
        assert!(p[0].problem.starts_with("too short"), "{p:?}");
        let p = problems(&format!(
            "{DRY}\n[admin]\ntoken = \"0123456789abcdef0\"\ntoken_file = \"{}\"\n",
            file.display()
        ));
        assert_eq!(p[0].key, "admin.token");
        let p = problems(&format!(
            "{DRY}\n[admin]\ntoken_file = \"/nonexistent/admin-token\"\n"
        ));
        assert_eq!(p[0].key, "admin.token_file");
    }

    #[test]
    fn redacted_config_has_no_secrets() {
        let toml = r#"
[admin]
token = "admin-token-0123456789"
[store]
url = "sqlite://data/x.db"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets = ["endpoint-secret-0123456789"]
[organizations.contoso.auth]
tenant_id = "t"
client_id = "c"
client_secret = "client-secret-value"
"#;
        let s = load(toml, &[]).unwrap();
        let v = s.redacted();
        let text = v.to_string();
        for secret in [
            "admin-token-0123456789",
            "endpoint-secret-0123456789",
            "client-secret-value",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(v["admin"]["token"], REDACTED);
        assert_eq!(
            v["organizations"]["contoso"]["auth"]["client_secret"],
            REDACTED
        );
        assert_eq!(v["organizations"]["contoso"]["auth"]["client_id"], "c");
        assert_eq!(v["delivery"]["backoff_max"], "1h");
        assert_eq!(v["delivery"]["retry_for"], "3days");
        assert_eq!(
            redact_url_password("postgres://leadbridge:hunter2@db:5432/leads"),
            "postgres://leadbridge:***@db:5432/leads"
        );
        assert_eq!(
            redact_url_password("sqlite://data/x.db"),
            "sqlite://data/x.db"
        );
    }

    #[test]
    fn missing_file_is_a_load_error() {
        let err = Settings::load(Path::new("/nonexistent/leadbridge.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Load { .. }));
    }

    fn fixture(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
            .display()
            .to_string()
    }

    fn live(auth: &str) -> String {
        format!(
            r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com/"
endpoint_secrets = ["0123456789abcdef"]
[organizations.contoso.auth]
{auth}
"#
        )
    }

    fn credentials(toml: &str, env: &[(&str, &str)]) -> Credentials {
        let s = load(toml, env).unwrap_or_else(|e| panic!("{e}"));
        s.organizations[&OrgName::parse("contoso").unwrap()]
            .auth
            .clone()
            .unwrap()
    }

    fn problem_at(toml: &str, key: &str) -> String {
        let p = problems(toml);
        p.iter()
            .find(|i| i.key == format!("organizations.contoso.auth.{key}"))
            .unwrap_or_else(|| panic!("no problem at {key}: {p:#?}"))
            .problem
            .clone()
    }

    #[test]
    fn certificate_credentials_in_one_file_or_two() {
        for auth in [
            format!(
                "method = \"certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = \"{}\"",
                fixture("client-combined.pem")
            ),
            format!(
                "method = \"certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\nassertion_alg = \"RS256\"",
                fixture("client-cert.pem"),
                fixture("client-key-pkcs1.pem")
            ),
        ] {
            let c = credentials(&live(&auth), &[]);
            let Credentials::Certificate { app, certificate } = &c else {
                panic!("certificate expected: {c:?}");
            };
            assert_eq!(app.client_id, "c");
            assert_eq!(
                app.token_url(),
                "https://login.microsoftonline.com/t/oauth2/v2.0/token"
            );
            let expected = if auth.contains("RS256") {
                AssertionAlg::Rs256
            } else {
                AssertionAlg::Ps256
            };
            assert_eq!(certificate.alg(), expected);
            assert!(!format!("{c:?}").contains("PRIVATE"));
        }
    }

    #[test]
    fn certificate_problems_name_the_key_and_the_file() {
        let base = "method = \"certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"";
        let mismatch = problem_at(
            &live(&format!(
                "{base}\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"",
                fixture("client-cert.pem"),
                fixture("other-key.pem")
            )),
            "private_key_file",
        );
        assert!(
            mismatch.contains("does not belong to the certificate")
                && mismatch.contains("other-key.pem"),
            "{mismatch}"
        );
        let unreadable = problem_at(
            &live(&format!(
                "{base}\ncertificate_file = \"/nonexistent/cert.pem\""
            )),
            "certificate_file",
        );
        assert!(
            unreadable.contains("cannot read /nonexistent/cert.pem"),
            "{unreadable}"
        );
        let no_key = problem_at(
            &live(&format!(
                "{base}\ncertificate_file = \"{}\"",
                fixture("client-cert.pem")
            )),
            "certificate_file",
        );
        assert!(no_key.contains("no PEM private key"), "{no_key}");
        let no_cert = problem_at(
            &live(&format!(
                "{base}\ncertificate_file = \"{}\"",
                fixture("client-key.pem")
            )),
            "certificate_file",
        );
        assert!(no_cert.contains("no PEM certificate"), "{no_cert}");
        assert!(problem_at(&live(base), "certificate_file").starts_with("missing"));
        let alg = problem_at(
            &live(&format!(
                "{base}\nassertion_alg = \"HS256\"\ncertificate_file = \"{}\"",
                fixture("client-combined.pem")
            )),
            "assertion_alg",
        );
        assert!(alg.contains("PS256"), "{alg}");
    }

    #[test]
    fn unknown_methods_and_misplaced_keys_are_refused() {
        let p = problem_at(&live("method = \"password\""), "method");
        assert!(p.contains("unknown method `password`"), "{p}");
        let p = problem_at(
            &live("method = \"managed_identity\"\nclient_secret = \"x\""),
            "client_secret",
        );
        assert!(
            p.contains("only used with method = \"client_secret\""),
            "{p}"
        );
        let p = problem_at(
            &live(
                "tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\nfederated_token_file = \"/x\"",
            ),
            "federated_token_file",
        );
        assert!(p.contains("workload_identity"), "{p}");
    }

    #[test]
    fn workload_identity_as_the_helm_chart_renders_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("azure-identity-token");
        std::fs::write(&token, "eyJhbGciOi.federated.token").unwrap();
        let token = token.display().to_string();
        // The chart renders an empty tenant_id when only the webhook knows it.
        let chart = live(
            "method = \"workload_identity\"\nauthority_host = \"https://login.microsoftonline.com\"\ntenant_id = \"\"\nclient_id = \"from-chart\"",
        );
        let env = [
            ("AZURE_TENANT_ID", "tenant-from-env"),
            ("AZURE_CLIENT_ID", "client-from-env"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
            ("AZURE_FEDERATED_TOKEN_FILE", token.as_str()),
        ];
        let Credentials::WorkloadIdentity { app, token_file } = credentials(&chart, &env) else {
            panic!("workload identity expected");
        };
        assert_eq!(app.tenant_id, "tenant-from-env");
        assert_eq!(
            app.client_id, "from-chart",
            "the config wins over the environment"
        );
        assert_eq!(
            app.authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(app.scope, "https://contoso.crm4.dynamics.com/.default");
        assert_eq!(token_file, PathBuf::from(&token));

        // Nothing in the file but the method: all from the webhook's variables.
        let Credentials::WorkloadIdentity { app, .. } =
            credentials(&live("method = \"workload_identity\""), &env)
        else {
            panic!("workload identity expected");
        };
        assert_eq!(
            app.token_url(),
            "https://login.microsoftonline.us/tenant-from-env/oauth2/v2.0/token"
        );

        // Without the webhook, every missing piece is named.
        let p = problems(&live("method = \"workload_identity\""));
        let keys: Vec<&str> = p.iter().map(|i| i.key.as_str()).collect();
        for k in ["tenant_id", "client_id", "federated_token_file"] {
            assert!(
                keys.contains(&format!("organizations.contoso.auth.{k}").as_str()),
                "{p:#?}"
            );
        }
        assert!(
            p.iter()
                .any(|i| i.problem.contains("AZURE_FEDERATED_TOKEN_FILE"))
        );
        let p = problem_at(
            &live(
                "method = \"workload_identity\"\ntenant_id = \"t\"\nclient_id = \"c\"\nfederated_token_file = \"/nonexistent/token\"",
            ),
            "federated_token_file",
        );
        assert!(p.contains("/nonexistent/token"), "{p}");
    }

    #[test]
    fn managed_identity_needs_nothing_but_the_method() {
        let c = credentials(&live("method = \"managed_identity\""), &[]);
        let Credentials::ManagedIdentity(mi) = c else {
            panic!("managed identity expected");
        };
        assert_eq!(mi.endpoint.as_str(), DEFAULT_IMDS_ENDPOINT);
        assert_eq!(mi.resource, "https://contoso.crm4.dynamics.com");
        assert_eq!(mi.client_id, None);
        let c = credentials(
            &live(
                "method = \"managed_identity\"\nclient_id = \"user-assigned\"\nimds_endpoint = \"http://127.0.0.1:1/token\"",
            ),
            &[],
        );
        let Credentials::ManagedIdentity(mi) = c else {
            panic!("managed identity expected");
        };
        assert_eq!(mi.client_id.as_deref(), Some("user-assigned"));
        assert_eq!(mi.endpoint.as_str(), "http://127.0.0.1:1/token");
        let p = problem_at(
            &live("method = \"managed_identity\"\nimds_endpoint = \"nope\""),
            "imds_endpoint",
        );
        assert!(p.contains("169.254.169.254"), "{p}");
    }
}
