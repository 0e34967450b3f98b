//! Layered configuration: built-in defaults, then the TOML file, then
//! `LEADBRIDGE__SECTION__KEY` environment variables. Everything is checked at
//! load and turned into typed values; an invalid config never starts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::lead::OrgName;

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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 64 * 1024,
            public_url: None,
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
    /// `sqlite://path/to/file.db` (relative to the working directory) or `sqlite:///abs/path.db`.
    pub url: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/leadbridge.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Deliveries in flight at once, across organizations.
    pub concurrency: usize,
    /// How often the worker looks for due retries when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Timeout of one call to Entra ID or Dataverse.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a claimed delivery stays reserved for its worker; after a
    /// crash, another worker takes it over when this expires.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
            max_attempts: 8,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(300),
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
    pub auth: Option<ClientCredentials>,
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

/// Entra ID client-credentials settings of one organization.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub authority_host: Url,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// `<org url>/.default` unless overridden.
    pub scope: String,
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
    authority_host: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    scope: Option<String>,
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
        if let Some(env) = env {
            environment = environment.source(Some(env.into_iter().collect()));
        }
        let raw: RawSettings = config::Config::builder()
            .add_source(File::from_str(&text, FileFormat::Toml))
            .add_source(environment)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| load_err(e.to_string()))?;
        raw.validate(base_dir.as_deref())
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
                    json!({
                        "authority_host": a.authority_host.as_str(),
                        "tenant_id": a.tenant_id,
                        "client_id": a.client_id,
                        "client_secret": REDACTED,
                        "scope": a.scope,
                    })
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
            },
            "admin": {
                "listen": self.admin.listen.to_string(),
                "token": secret(self.admin.token.is_some()),
            },
            "store": {"url": redact_url_password(&self.store.url)},
            "delivery": {
                "concurrency": d.concurrency,
                "poll_interval": human(d.poll_interval),
                "max_attempts": d.max_attempts,
                "backoff_initial": human(d.backoff_initial),
                "backoff_max": human(d.backoff_max),
                "request_timeout": human(d.request_timeout),
                "lease": human(d.lease),
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
    fn validate(self, base_dir: Option<&Path>) -> Result<Settings, ConfigError> {
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
        if !(self.store.url.starts_with("sqlite:")) {
            issue(
                "store.url".into(),
                format!(
                    "unsupported store {:?}: this version supports sqlite://PATH (PostgreSQL comes with the multi-replica store)",
                    self.store.url
                ),
            );
        }
        let d = &self.delivery;
        if d.concurrency == 0 {
            issue("delivery.concurrency".into(), "must be at least 1".into());
        }
        if d.max_attempts == 0 {
            issue("delivery.max_attempts".into(), "must be at least 1".into());
        }
        if d.backoff_initial.is_zero() || d.backoff_max < d.backoff_initial {
            issue(
                "delivery.backoff_max".into(),
                "backoff_initial must be > 0 and backoff_max >= backoff_initial".into(),
            );
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
            match raw.validate(&org_name, &key, base_dir) {
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
            (Some(a), _) => a.validate(url.as_ref(), &mut issue),
            (None, true) => None,
            (None, false) => {
                issue(
                    "auth",
                    "missing: tenant_id, client_id and client_secret are needed unless dry_run = true".into(),
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
        issue: &mut impl FnMut(&str, String),
    ) -> Option<ClientCredentials> {
        let authority_host = match Url::parse(
            self.authority_host
                .as_deref()
                .unwrap_or(PUBLIC_CLOUD_AUTHORITY),
        ) {
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
            |k: &str, v: Option<String>, what: &str| match v.map(|s| s.trim().to_owned()) {
                Some(s) if !s.is_empty() => Some(s),
                _ => {
                    issue(&format!("auth.{k}"), format!("missing: {what}"));
                    None
                }
            };
        let tenant_id = required(
            "tenant_id",
            self.tenant_id,
            "the Directory (tenant) ID of the app registration",
        );
        let client_id = required(
            "client_id",
            self.client_id,
            "the Application (client) ID of the app registration",
        );
        let client_secret = match (self.client_secret, self.client_secret_file) {
            (Some(s), None) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => Some(s.trim_end_matches(['\r', '\n']).to_owned()),
                Ok(_) => {
                    issue(
                        "auth.client_secret_file",
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    issue(
                        "auth.client_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            },
            (Some(_), Some(_)) => {
                issue(
                    "auth.client_secret",
                    "give client_secret or client_secret_file, not both".into(),
                );
                None
            }
            _ => {
                issue(
                    "auth.client_secret",
                    "missing: the app registration's client secret (or client_secret_file)".into(),
                );
                None
            }
        };
        let scope = self
            .scope
            .or_else(|| org_url.map(|u| format!("{}/.default", u.as_str().trim_end_matches('/'))));
        Some(ClientCredentials {
            authority_host: authority_host?,
            tenant_id: tenant_id?,
            client_id: client_id?,
            client_secret: SecretString::from(client_secret?),
            scope: scope?,
        })
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
        assert_eq!(s.delivery.max_attempts, 8);
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
        let auth = org.auth.as_ref().unwrap();
        assert_eq!(auth.client_secret.expose_secret(), "s3cret-value");
        assert_eq!(auth.scope, "https://contoso.crm4.dynamics.com/.default");
        assert_eq!(
            auth.authority_host.as_str(),
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
        assert_eq!(v["delivery"]["backoff_max"], "10m");
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
}
