//! Raw shapes into typed settings. Nothing stops at the first problem: each
//! one is collected with its key, so one run of `leadbridge check` shows them
//! all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::raw::{EnvVars, RawAdmin, RawOrganization, RawSettings};
use super::{AdminSettings, ConfigError, ConfigIssue, MIN_SECRET_LEN, Organization, Settings};

/// How the endpoint secrets of the shipped configuration begin.
const PLACEHOLDER_SECRET_PREFIX: &str = "change-me";
use crate::lead::OrgName;

impl RawSettings {
    /// `base_dir`: relative mapping paths that do not exist from the working
    /// directory are tried relative to the config file's project directory.
    pub(super) fn validate(
        self,
        base_dir: Option<&Path>,
        env: &EnvVars,
    ) -> Result<Settings, ConfigError> {
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
        let srv = &self.server;
        if srv.header_read_timeout.is_zero()
            || srv.body_read_timeout.is_zero()
            || srv.idle_timeout.is_zero()
        {
            issue(
                "server".into(),
                "header_read_timeout, body_read_timeout and idle_timeout must be > 0".into(),
            );
        }
        if srv.max_connections == 0 {
            issue("server.max_connections".into(), "must be at least 1".into());
        }
        // The fingerprints that recognise a re-sent lead are purged with
        // the lead: a longer window would promise what retention deletes.
        if self.server.dedupe_window > self.store.retention {
            issue(
                "server.dedupe_window".into(),
                format!(
                    "must not exceed store.retention ({}): a lead's fingerprint is deleted with it",
                    humantime_serde::re::humantime::format_duration(self.store.retention)
                ),
            );
        }
        let d = &self.delivery;
        for (key, value) in [
            ("concurrency", d.concurrency),
            ("org_concurrency", d.org_concurrency),
        ] {
            if value == 0 {
                issue(format!("delivery.{key}"), "must be at least 1".into());
            }
        }
        for name in d.destinations.keys() {
            if name.parse::<crate::store::Destination>().is_err() {
                issue(
                    format!("delivery.destinations.{name}"),
                    "unknown destination; expected dataverse or email".into(),
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
        if d.request_timeout.is_zero()
            || d.poll_interval.is_zero()
            || d.lease.is_zero()
            || d.block_probe_interval.is_zero()
            || d.alert_window.is_zero()
        {
            issue(
                "delivery".into(),
                "request_timeout, poll_interval, lease, block_probe_interval and alert_window must be > 0".into(),
            );
        }
        // See `DeliverySettings::lease_renewal` for why three renewals.
        if d.lease_renewal.is_zero() || d.lease < d.lease_renewal.saturating_mul(3) {
            issue(
                "delivery.lease_renewal".into(),
                format!(
                    "must be > 0 and at most a third of delivery.lease ({:?})",
                    d.lease
                ),
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
            Some(Ok(u)) if u.scheme() == "http" && u.host().is_some() && !self.allow_http => {
                issue(
                    "url",
                    "must be https:// (leads and tokens must not cross the network in clear text); \
                     allow_http = true is for local fakes only"
                        .into(),
                );
                None
            }
            Some(Ok(u)) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Some(u),
            Some(_) => {
                issue(
                    "url",
                    "must be the organization's URL, e.g. https://contoso.crm4.dynamics.com".into(),
                );
                None
            }
            None if self.email.is_some() => None,
            None => {
                issue(
                    "url",
                    "missing: the organization's URL, e.g. https://contoso.crm4.dynamics.com \
                     (or an [email] section for an email-only organization)"
                        .into(),
                );
                None
            }
        };
        let url_given = self.url.is_some();

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
            } else if !self.dry_run && s.starts_with(PLACEHOLDER_SECRET_PREFIX) {
                // Anyone who read config/default.toml knows it.
                issue(
                    &format!("endpoint_secrets[{i}]"),
                    "the shipped placeholder cannot guard a live organization: set your own (e.g. `openssl rand -hex 24`)"
                        .into(),
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

        // Graph's URL names the token scope of an email-only organization.
        let graph_url = self.email.as_ref().and_then(|e| e.graph_url());
        let needs_entra = url_given || graph_url.is_some();
        let auth = match (self.auth, self.dry_run) {
            (Some(a), _) => a.validate(url.as_ref().or(graph_url.as_ref()), env, &mut issue),
            (None, true) => None,
            (None, false) if !needs_entra => None,
            (None, false) => {
                issue(
                    "auth",
                    "missing: credentials are needed unless dry_run = true (tenant_id, client_id and client_secret, or another auth.method)".into(),
                );
                None
            }
        };
        // Every problem of the section is reported as an issue of its own.
        let email = self
            .email
            .and_then(|raw| raw.validate(self.allow_http, &mut issue));

        // A client secret or assertion sent in clear text is a secret given away.
        if !self.allow_http
            && let Some(app) = auth.as_ref().and_then(|a| a.app())
            && app.authority_host.scheme() != "https"
        {
            issue(
                "auth.authority_host",
                "must be https://; allow_http = true is for local fakes only".into(),
            );
        }
        let mapping = resolve_mapping_path(self.mapping, name, base_dir);
        if issues.is_empty() && url.is_some() == url_given {
            Ok(Organization {
                name: name.clone(),
                url,
                dry_run: self.dry_run,
                mapping,
                endpoint_secrets: secrets.into_iter().map(SecretString::from).collect(),
                auth,
                email,
            })
        } else {
            Err(issues)
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
