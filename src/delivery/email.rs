//! One attempt of an `email` delivery: the stored lead composed into the
//! organization's notification ([`crate::email`]), then sent by its
//! transport: SMTP, or Microsoft Graph with a token for Graph's scope (one
//! fresh token after a 401, the shared pause checked first, like a
//! Dataverse create). Every failure is an [`AttemptError`] of the same
//! kinds, so retries, pauses, blocks and dead letters work as for Dynamics,
//! on the email queue of their own.

use time::OffsetDateTime;

use super::Deps;
use super::attempt::{
    AttemptError, Completed, Sent, read_lead, refused_fresh_token, render_context,
};
use super::org::OrgRuntime;
use crate::auth::TokenProvider;
use crate::config::{EmailSettings, MailTransport};
use crate::email::{self, Message};
use crate::lead::Redactor;
use crate::mail::GraphMailer;
use crate::outbound::ErrorKind;
use crate::store::{ClaimedDelivery, Destination};

pub(super) async fn run(deps: &Deps, org: &OrgRuntime, d: &ClaimedDelivery) -> Completed {
    let Some(settings) = org.config.email.as_ref() else {
        return Completed::failed(AttemptError::NoDestination(d.org.clone(), d.destination));
    };
    let (lead, redactor) = match read_lead(deps, d) {
        Ok(read) => read,
        Err(e) => return Completed::failed(e),
    };
    let message = email::compose(
        &settings.templates,
        &settings.recipients,
        &render_context(&lead, d),
        d.record_id,
    );
    let result = send(deps, org, settings, d, &message, &redactor).await;
    Completed { redactor, result }
}

async fn send(
    deps: &Deps,
    org: &OrgRuntime,
    settings: &EmailSettings,
    d: &ClaimedDelivery,
    message: &Message,
    redactor: &Redactor,
) -> Result<Sent, AttemptError> {
    if org.config.dry_run {
        tracing::info!(
            "dry run: not sent; the notification would be:\n{}",
            redactor.redact(&message.preview())
        );
        return Ok(Sent::DryRun {
            entity_ref: format!("email:{}", message.message_id),
        });
    }
    // Nothing may go to Graph before a Retry-After another replica saw.
    if settings.uses_graph().is_some() {
        let now = OffsetDateTime::now_utc();
        if let Some(until) = deps.store.paused_until(&d.org, d.destination, now).await? {
            return Ok(Sent::Paused(until));
        }
    }
    let status = transmit(&deps.tokens, &deps.graph, org, message).await?;
    Ok(Sent::Mailed {
        message_id: message.message_id.clone(),
        status,
    })
}

/// Sends by the organization's transport; Graph's HTTP status, if Graph.
/// Shared with the operators' alerts.
pub(super) async fn transmit(
    tokens: &TokenProvider,
    graph: &GraphMailer,
    org: &OrgRuntime,
    message: &Message,
) -> Result<Option<u16>, AttemptError> {
    let Some(settings) = org.config.email.as_ref() else {
        return Err(AttemptError::NoDestination(
            org.name().clone(),
            Destination::Email,
        ));
    };
    match &settings.transport {
        MailTransport::Smtp(_) => {
            let accepted = org.state.smtp()?.send(message).await?;
            tracing::debug!(code = accepted.code, reply = %accepted.reply, "SMTP server took the mail");
            Ok(None)
        }
        MailTransport::Graph { graph_url } => {
            let creds = org
                .state
                .graph_credentials()
                .ok_or(AttemptError::NoCredentials)?;
            let token = tokens.token(creds).await?;
            let status = match graph.send(graph_url, message, &token).await {
                Err(e) if e.kind == ErrorKind::Unauthorized => {
                    tracing::info!("Microsoft Graph refused the token; fetching a new one");
                    tokens.invalidate(creds, &token).await;
                    let token = tokens.token(creds).await?;
                    graph
                        .send(graph_url, message, &token)
                        .await
                        .map_err(|e| refused_fresh_token(e.into()))?
                }
                other => other?,
            };
            Ok(Some(status))
        }
    }
}
