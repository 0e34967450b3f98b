//! The email part of `check --live`: what a notification's transport needs
//! works, without sending a mail. SMTP: connect, EHLO, STARTTLS or TLS,
//! AUTH, NOOP, QUIT. Graph: a token for Graph's scope (Mail.Send itself
//! shows only when a mail is sent).

use serde::Serialize;

use leadbridge::auth::TokenProvider;
use leadbridge::config::{MailTransport, Organization};
use leadbridge::mail::{GraphMailer, SmtpMailer};

/// The offline summary of `[organizations.<org>.email]`.
#[derive(Debug, Clone, Serialize)]
pub struct EmailReport {
    pub transport: &'static str,
    /// `smtp://host:port` or the Graph URL.
    pub server: String,
    pub to: usize,
    pub alerts: bool,
    /// `None` for an offline check.
    pub live: Option<EmailCheck>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EmailCheck {
    Skipped { reason: String },
    Failed { error: String },
    Checked { detail: String },
}

impl EmailReport {
    pub fn offline(org: &Organization) -> Option<Self> {
        let email = org.email.as_ref()?;
        let (transport, server) = match &email.transport {
            MailTransport::Smtp(s) => ("smtp", s.url.to_string()),
            MailTransport::Graph { graph_url } => ("graph", graph_url.to_string()),
        };
        Some(Self {
            transport,
            server,
            to: email.recipients.to.len(),
            alerts: !email.alert_to.is_empty(),
            live: None,
        })
    }
}

pub async fn check(org: &Organization, tokens: &TokenProvider) -> Option<EmailCheck> {
    let email = org.email.as_ref()?;
    if org.dry_run {
        return Some(EmailCheck::Skipped {
            reason: "dry run: leadbridge only logs this organization's mail".into(),
        });
    }
    Some(match &email.transport {
        MailTransport::Smtp(settings) => match SmtpMailer::new(settings) {
            Ok(mailer) => match mailer.check().await {
                Ok(()) => EmailCheck::Checked {
                    detail: format!(
                        "SMTP {}: connected, EHLO{} accepted",
                        settings.url,
                        if settings.username.is_some() {
                            " and AUTH"
                        } else {
                            ""
                        }
                    ),
                },
                Err(e) => EmailCheck::Failed {
                    error: e.to_string(),
                },
            },
            Err(e) => EmailCheck::Failed {
                error: e.to_string(),
            },
        },
        MailTransport::Graph { graph_url } => match &org.auth {
            None => EmailCheck::Failed {
                error: "no credentials: Graph needs the organization's [auth] Entra app".into(),
            },
            Some(creds) => {
                let scope = GraphMailer::scope(graph_url);
                match tokens.token(&creds.for_scope(&scope)).await {
                    Ok(_) => EmailCheck::Checked {
                        detail: format!(
                            "token for {scope} issued (the app needs the application permission Mail.Send)"
                        ),
                    },
                    Err(e) => EmailCheck::Failed {
                        error: e.to_string(),
                    },
                }
            }
        },
    })
}
