//! An organization's `auth` section into [`Credentials`]: which method, its
//! secret from the value, a `_file` or (workload identity) the environment,
//! and the certificate checked against its key before anything is called.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use super::PUBLIC_CLOUD_AUTHORITY;
use super::raw::{EnvVars, RawAuth};
use crate::auth::{
    AssertionAlg, ClientCertificate, Credentials, DEFAULT_IMDS_ENDPOINT, EntraApp, ManagedIdentity,
};

/// The credential kinds `auth.method` can name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
enum AuthMethod {
    ClientSecret,
    Certificate,
    WorkloadIdentity,
    ManagedIdentity,
}

impl AuthMethod {
    fn name(self) -> &'static str {
        self.into()
    }
}

impl RawAuth {
    pub(super) fn validate(
        self,
        org_url: Option<&Url>,
        env: &EnvVars,
        issue: &mut impl FnMut(&str, String),
    ) -> Option<Credentials> {
        let method = match self.method.as_deref().map(str::trim) {
            None | Some("") => AuthMethod::ClientSecret,
            Some(m) => match m.parse::<AuthMethod>() {
                Ok(method) => method,
                Err(_) => {
                    use strum::VariantNames;
                    issue(
                        "auth.method",
                        format!(
                            "unknown method `{m}`; expected one of {}",
                            AuthMethod::VARIANTS.join(", ")
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
