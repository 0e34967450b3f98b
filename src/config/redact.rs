//! The configuration as an operator may see it (`GET /admin/config`).

use std::time::Duration;

use url::Url;

use super::{LogFormat, Settings};

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
