//! `[organizations.<org>.email]`: the notification per lead, its transport
//! and the operators' alerts. Addresses and templates are checked here, so
//! a notification can always be composed once the configuration loads.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::raw::OneOrMany;
use crate::email::{Mailbox, Recipients, Templates};
use crate::mapping::TextTemplate;

/// Microsoft Graph in the public cloud; sovereign clouds have their own.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    #[serde(default)]
    to: OneOrMany,
    #[serde(default)]
    cc: OneOrMany,
    from: Option<String>,
    transport: Option<String>,
    smtp_url: Option<String>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    smtp_password_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    smtp_timeout: Option<Duration>,
    smtp_ca_file: Option<PathBuf>,
    graph_url: Option<String>,
    subject: Option<String>,
    text_body: Option<String>,
    html_body: Option<String>,
    #[serde(default)]
    alert_to: OneOrMany,
}

/// The validated section.
#[derive(Debug, Clone, Serialize)]
pub struct EmailSettings {
    #[serde(flatten)]
    pub recipients: Recipients,
    #[serde(flatten)]
    pub transport: MailTransport,
    /// The templates as written (`null`: the built-in layout).
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    #[serde(skip)]
    pub templates: Templates,
    /// Operators told of dead letters and blocks; empty: no alerts.
    pub alert_to: Vec<Mailbox>,
}

/// How the mail leaves.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum MailTransport {
    Smtp(SmtpSettings),
    /// `POST {graph_url}/v1.0/users/{from}/sendMail` with the
    /// organization's Entra app (application permission Mail.Send).
    Graph {
        graph_url: Url,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct SmtpSettings {
    /// `smtp://host[:port]` (STARTTLS when offered; port 587 unless given)
    /// or `smtps://host[:port]` (TLS from the start; port 465).
    #[serde(rename = "smtp_url")]
    pub url: Url,
    #[serde(skip)]
    pub host: String,
    #[serde(skip)]
    pub port: u16,
    #[serde(skip)]
    pub tls: SmtpTls,
    #[serde(rename = "smtp_username")]
    pub username: Option<String>,
    #[serde(
        rename = "smtp_password",
        serialize_with = "super::redact::optional_secret"
    )]
    pub password: Option<SecretString>,
    #[serde(rename = "smtp_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM certificates trusted for this server beside the system's: a
    /// relay inside the company, signed by the company's own CA.
    #[serde(rename = "smtp_ca_file")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip)]
    pub ca_certificates: Vec<CertificateDer<'static>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`.
    Wrapper,
    /// `smtp://` with credentials: STARTTLS or nothing is sent, so a
    /// downgrade cannot expose the password.
    Required,
    /// `smtp://` without credentials (or `allow_http`): STARTTLS when the
    /// server offers it.
    Opportunistic,
}

impl EmailSettings {
    /// Whether the transport needs the organization's Entra app.
    pub fn uses_graph(&self) -> Option<&Url> {
        match &self.transport {
            MailTransport::Graph { graph_url } => Some(graph_url),
            MailTransport::Smtp(_) => None,
        }
    }
}

impl RawEmail {
    /// The Graph URL a Graph transport will use, before full validation:
    /// an email-only organization's token scope follows from it.
    pub(super) fn graph_url(&self) -> Option<Url> {
        if self.transport.as_deref().map(str::trim) != Some("graph") {
            return None;
        }
        Url::parse(self.graph_url.as_deref().unwrap_or(DEFAULT_GRAPH_URL)).ok()
    }

    pub(super) fn validate(
        self,
        allow_http: bool,
        issue: &mut impl FnMut(&str, String),
    ) -> Option<EmailSettings> {
        let transport = match self.transport.as_deref().map(str::trim) {
            None | Some("smtp") => self.smtp(allow_http, issue),
            Some("graph") => {
                for (key, set) in [
                    ("smtp_url", self.smtp_url.is_some()),
                    ("smtp_username", self.smtp_username.is_some()),
                    ("smtp_ca_file", self.smtp_ca_file.is_some()),
                    (
                        "smtp_password",
                        self.smtp_password.is_some() || self.smtp_password_file.is_some(),
                    ),
                ] {
                    if set {
                        issue(
                            &format!("email.{key}"),
                            "is for transport = \"smtp\"; this one is \"graph\"".into(),
                        );
                    }
                }
                graph_url(self.graph_url.as_deref(), allow_http, issue)
                    .map(|graph_url| MailTransport::Graph { graph_url })
            }
            Some(other) => {
                issue(
                    "email.transport",
                    format!("unknown transport {other:?}: expected \"smtp\" or \"graph\""),
                );
                None
            }
        };
        let mut ok = true;
        let mut list = |key: &str, values: Vec<String>, required: bool| -> Vec<Mailbox> {
            if required && values.is_empty() {
                issue(
                    &format!("email.{key}"),
                    "missing: one or more addresses".into(),
                );
                ok = false;
            }
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match mailbox(v) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        issue(&format!("email.{key}[{i}]"), e);
                        ok = false;
                        None
                    }
                })
                .collect()
        };
        let to = list("to", self.to.0, true);
        let cc = list("cc", self.cc.0, false);
        let alert_to = list("alert_to", self.alert_to.0, false);
        let from = match self.from.as_deref().map(mailbox) {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                issue("email.from", e);
                None
            }
            None => {
                issue(
                    "email.from",
                    "missing: the sender, e.g. leads@contoso.com".into(),
                );
                None
            }
        };

        let mut template = |key: &str, text: &Option<String>| -> Option<TextTemplate> {
            let text = text.as_deref()?;
            match TextTemplate::parse(text) {
                Ok(t) => Some(t),
                Err(e) => {
                    issue(&format!("email.{key}"), e);
                    ok = false;
                    None
                }
            }
        };
        let templates = Templates {
            subject: template("subject", &self.subject),
            text: template("text_body", &self.text_body),
            html: template("html_body", &self.html_body),
        };

        let settings = EmailSettings {
            recipients: Recipients {
                from: from?,
                to,
                cc,
            },
            transport: transport?,
            subject: self.subject,
            text_body: self.text_body,
            html_body: self.html_body,
            templates,
            alert_to,
        };
        ok.then_some(settings)
    }

    fn smtp(
        &self,
        allow_http: bool,
        issue: &mut impl FnMut(&str, String),
    ) -> Option<MailTransport> {
        if self.graph_url.is_some() {
            issue(
                "email.graph_url",
                "is for transport = \"graph\"; this one is \"smtp\"".into(),
            );
        }
        let Some(raw) = self.smtp_url.as_deref() else {
            issue(
                "email.smtp_url",
                "missing: smtp://host:587 (STARTTLS) or smtps://host:465, or transport = \"graph\""
                    .into(),
            );
            return None;
        };
        let url = match Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some() => u,
            _ => {
                issue(
                    "email.smtp_url",
                    "must be smtp://host[:port] (STARTTLS when offered) or smtps://host[:port]"
                        .into(),
                );
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            issue(
                "email.smtp_url",
                "must not carry credentials: use smtp_username and smtp_password_file".into(),
            );
            return None;
        }
        let password = match (&self.smtp_password, &self.smtp_password_file) {
            (Some(_), Some(_)) => {
                issue(
                    "email.smtp_password",
                    "give smtp_password or smtp_password_file, not both".into(),
                );
                return None;
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(p) => Some(p.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => {
                    issue(
                        "email.smtp_password_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            },
            (None, None) => None,
        };
        let username = self
            .smtp_username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        if username.is_some() != password.is_some() {
            issue(
                "email.smtp_username",
                "smtp_username and smtp_password (or smtp_password_file) go together".into(),
            );
            return None;
        }
        let wrapper = url.scheme() == "smtps";
        let tls = if wrapper {
            SmtpTls::Wrapper
        } else if username.is_some() && !allow_http {
            SmtpTls::Required
        } else {
            SmtpTls::Opportunistic
        };
        let timeout = self.smtp_timeout.unwrap_or(DEFAULT_SMTP_TIMEOUT);
        if timeout.is_zero() {
            issue("email.smtp_timeout", "must be > 0".into());
            return None;
        }
        let ca_certificates = match &self.smtp_ca_file {
            None => Vec::new(),
            Some(path) => match read_certificates(path) {
                Ok(certs) => certs,
                Err(why) => {
                    issue("email.smtp_ca_file", why);
                    return None;
                }
            },
        };
        Some(MailTransport::Smtp(SmtpSettings {
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port().unwrap_or(if wrapper { 465 } else { 587 }),
            url,
            tls,
            username,
            password: password.map(SecretString::from),
            timeout,
            ca_file: self.smtp_ca_file.clone(),
            ca_certificates,
        }))
    }
}

/// Every certificate of a PEM file; a file without one is a mistake (a key,
/// a DER file, the wrong path in a Secret).
fn read_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

fn graph_url(
    raw: Option<&str>,
    allow_http: bool,
    issue: &mut impl FnMut(&str, String),
) -> Option<Url> {
    match Url::parse(raw.unwrap_or(DEFAULT_GRAPH_URL)) {
        Ok(u) if u.scheme() == "https" || (allow_http && u.scheme() == "http") => {
            if u.host_str().is_some() {
                return Some(u);
            }
        }
        Ok(_) => {
            issue(
                "email.graph_url",
                "must be https:// (allow_http = true is for local fakes only)".into(),
            );
            return None;
        }
        Err(_) => {}
    }
    issue(
        "email.graph_url",
        format!("must be Microsoft Graph's URL, e.g. {DEFAULT_GRAPH_URL}"),
    );
    None
}

/// `leads@contoso.com` or `Contoso Leads <leads@contoso.com>`, parsed by
/// lettre's RFC 5322 parser; the name may not carry line breaks.
fn mailbox(raw: &str) -> Result<Mailbox, String> {
    if raw.chars().any(char::is_control) {
        return Err(format!(
            "{raw:?} is not an e-mail address (control characters)"
        ));
    }
    let parsed = lettre::message::Mailbox::from_str(raw.trim())
        .map_err(|e| format!("{raw:?} is not an e-mail address: {e}"))?;
    Ok(Mailbox {
        name: parsed.name.filter(|n| !n.trim().is_empty()),
        address: parsed.email.to_string(),
    })
}
