//! SMTP through lettre: one pooled transport per organization (connections
//! are reused), STARTTLS or TLS from the start, AUTH with the configured
//! password. The envelope is the message's To and Cc, which come from the
//! configuration only.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox as LettreMailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters, TlsParametersBuilder};
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{SmtpSettings, SmtpTls};
use crate::email::{Mailbox, Message};
use crate::outbound::{ErrorKind, RemoteError, causes, is_certificate_failure};

/// Connections kept open to one organization's server.
const POOL_SIZE: u32 = 4;
/// An idle pooled connection is closed after this (servers drop idle
/// clients after a minute or so anyway).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Build and drop it inside a Tokio runtime: lettre's pool spawns its
/// housekeeping when it is built and its shutdown when it is dropped.
/// Dropped outside one (at process exit), the pool is let go unclosed
/// rather than panic.
pub struct SmtpMailer {
    /// Always `Some` but in `drop`.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// `host:port`, for messages.
    server: String,
}

impl Drop for SmtpMailer {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err()
            && let Some(transport) = self.transport.take()
        {
            std::mem::forget(transport);
        }
    }
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The server's answer to a message that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub code: u16,
    /// The first line of the server's answer (usually its queue id).
    pub reply: String,
}

impl SmtpMailer {
    /// Builds the (lazy) transport; nothing connects yet.
    pub fn new(settings: &SmtpSettings) -> Result<Self, RemoteError> {
        let tls = |host: &str| {
            settings
                .ca_certificates
                .iter()
                .try_fold(TlsParameters::builder(host.to_owned()), |b, der| {
                    Certificate::from_der(der.to_vec()).map(|c| b.add_root_certificate(c))
                })
                .and_then(TlsParametersBuilder::build_rustls)
                .map_err(|e| {
                    RemoteError::new(
                        ErrorKind::OrganizationWide,
                        format!("SMTP: cannot set up TLS for {host}: {e}"),
                    )
                })
        };
        let tls = match settings.tls {
            SmtpTls::Wrapper => Tls::Wrapper(tls(&settings.host)?),
            SmtpTls::Required => Tls::Required(tls(&settings.host)?),
            SmtpTls::Opportunistic => Tls::Opportunistic(tls(&settings.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(POOL_SIZE)
                    .idle_timeout(POOL_IDLE),
            );
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(SmtpCredentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: Some(builder.build()),
            server: format!("{}:{}", settings.host, settings.port),
        })
    }

    pub async fn send(&self, message: &Message) -> Result<Accepted, RemoteError> {
        let mail = build(message)?;
        let response = self
            .transport()?
            .send(mail)
            .await
            .map_err(|e| classify(&self.server, &e))?;
        Ok(Accepted {
            code: u16::from(response.code()),
            reply: response.first_line().unwrap_or_default().to_owned(),
        })
    }

    /// Connects, says EHLO, starts TLS and authenticates as a delivery
    /// would, then quits: what `check --live` asks of the server.
    pub async fn check(&self) -> Result<(), RemoteError> {
        match self.transport()?.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(RemoteError::new(
                ErrorKind::Transient { retry_after: None },
                format!("SMTP {}: the server did not answer NOOP", self.server),
            )),
            Err(e) => Err(classify(&self.server, &e)),
        }
    }
}

impl SmtpMailer {
    fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>, RemoteError> {
        self.transport.as_ref().ok_or_else(|| {
            RemoteError::new(
                ErrorKind::Transient { retry_after: None },
                "SMTP transport closed",
            )
        })
    }
}

fn mailbox(m: &Mailbox) -> Result<LettreMailbox, RemoteError> {
    let address = m.address.parse().map_err(|e| {
        RemoteError::new(
            ErrorKind::Permanent,
            format!("not an e-mail address {:?}: {e}", m.address),
        )
    })?;
    Ok(LettreMailbox::new(m.name.clone(), address))
}

/// The MIME message: multipart/alternative, plain text then HTML. lettre
/// encodes every header value (RFC 2047 where needed) and every body
/// (quoted-printable or base64), so long lines and stray CR/LF in a lead's
/// values stay inside their part.
pub fn build(message: &Message) -> Result<lettre::Message, RemoteError> {
    let r = &message.recipients;
    let mut builder = lettre::Message::builder()
        .from(mailbox(&r.from)?)
        .subject(message.subject.clone())
        .message_id(Some(message.message_id.clone()));
    for to in &r.to {
        builder = builder.to(mailbox(to)?);
    }
    for cc in &r.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(message.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(message.html.clone()),
                ),
        )
        .map_err(|e| RemoteError::new(ErrorKind::Permanent, format!("cannot build the mail: {e}")))
}

/// 4xx and network failures are worth another try; a refused login is the
/// same for every lead (the organization is blocked until it is fixed);
/// other 5xx answers refuse this message.
fn classify(server: &str, e: &SmtpError) -> RemoteError {
    let code = e.status().map(u16::from);
    let detail = std::iter::once(e.to_string())
        .chain(causes(e))
        .collect::<Vec<_>>()
        .join(": ");
    let message = match code {
        Some(c) => format!("SMTP {server} answered {c}: {detail}"),
        None => format!("SMTP {server}: {detail}"),
    };
    let kind = match code {
        // 530 authentication required, 534/535 credentials refused, 538
        // encryption required for the mechanism.
        Some(530 | 534 | 535 | 538) => ErrorKind::OrganizationWide,
        // "No compatible authentication mechanism", STARTTLS not offered
        // though a password must go over it, TLS refused, a certificate no
        // trusted CA signed: the server's setup, for every lead.
        None if e.is_client() || e.is_tls() || is_certificate_failure(e) => {
            ErrorKind::OrganizationWide
        }
        _ if e.is_permanent() => ErrorKind::Permanent,
        _ => ErrorKind::Transient { retry_after: None },
    };
    RemoteError {
        kind,
        status: None,
        code: code.map(|c| c.to_string()),
        message,
    }
}
