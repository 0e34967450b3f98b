//! One delivery attempt: render the lead, get a token, create the record, and
//! decide what the result means for the delivery.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::Deps;
use crate::auth::AuthError;
use crate::config::Organization;
use crate::dataverse::{CreateRequest, Created, DataverseError, ErrorKind};
use crate::lead::{Lead, Redactor};
use crate::mapping::RenderContext;
use crate::store::{AttemptOutcome, ClaimedDelivery};

/// Why an attempt did not deliver.
enum Failure {
    Retryable {
        error: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    Permanent {
        error: String,
        status: Option<u16>,
    },
}

impl From<DataverseError> for Failure {
    fn from(e: DataverseError) -> Self {
        let status = e.status;
        match e.kind {
            ErrorKind::Permanent => Failure::Permanent {
                error: e.to_string(),
                status,
            },
            ErrorKind::Throttled { retry_after } => Failure::Retryable {
                error: e.to_string(),
                status,
                retry_after,
            },
            ErrorKind::Unauthorized | ErrorKind::Transient => Failure::Retryable {
                error: e.to_string(),
                status,
                retry_after: None,
            },
        }
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        match &e {
            AuthError::Permanent { .. } => Failure::Permanent {
                error: e.to_string(),
                status: None,
            },
            AuthError::Transient { retry_after, .. } => Failure::Retryable {
                retry_after: *retry_after,
                error: e.to_string(),
                status: None,
            },
        }
    }
}

/// Runs one attempt and returns what to record. Never fails: every problem
/// becomes a retry or a dead letter, so a lead is never dropped.
pub(super) async fn run(deps: &Deps, d: &ClaimedDelivery) -> (AttemptOutcome, Redactor) {
    let now = OffsetDateTime::now_utc();
    let (result, redactor) = deliver(deps, d).await;
    let outcome = match result {
        Ok(created) => AttemptOutcome::Delivered {
            remote_ref: created.entity_ref,
            http_status: Some(created.status),
        },
        Err(Failure::Permanent { error, status }) => AttemptOutcome::Dead {
            error: redactor.redact(&error),
            http_status: status,
        },
        Err(Failure::Retryable {
            error,
            status,
            retry_after,
        }) => {
            let error = redactor.redact(&error);
            let made = d.attempts + 1;
            match deps.policy.next_delay(made, retry_after) {
                Some(wait) => AttemptOutcome::Retry {
                    error,
                    http_status: status,
                    next_attempt_at: now + wait,
                },
                None => AttemptOutcome::Dead {
                    error: format!("gave up after {made} attempts; last error: {error}"),
                    http_status: status,
                },
            }
        }
    };
    (outcome, redactor)
}

async fn deliver(deps: &Deps, d: &ClaimedDelivery) -> (Result<Created, Failure>, Redactor) {
    let Some(org) = deps.settings.organization(&d.org) else {
        let error = format!(
            "organization {} is no longer configured; add it back and replay",
            d.org
        );
        return (
            Err(Failure::Permanent {
                error,
                status: None,
            }),
            Redactor::disabled(),
        );
    };
    let lead = match serde_json::from_str::<Value>(&d.payload)
        .map_err(|e| e.to_string())
        .and_then(|v| Lead::parse(&v).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            let error = format!("stored lead cannot be read: {e}");
            return (
                Err(Failure::Permanent {
                    error,
                    status: None,
                }),
                Redactor::disabled(),
            );
        }
    };
    let redactor = if deps.settings.log.pii {
        Redactor::disabled()
    } else {
        Redactor::for_lead(&lead)
    };
    let result = send(deps, d, org, &lead, &redactor).await;
    (result, redactor)
}

async fn send(
    deps: &Deps,
    d: &ClaimedDelivery,
    org: &Organization,
    lead: &Lead,
    redactor: &Redactor,
) -> Result<Created, Failure> {
    let mapping = deps
        .mappings
        .get(&d.org)
        .ok_or_else(|| Failure::Permanent {
            error: format!("no mapping loaded for organization {}", d.org),
            status: None,
        })?;
    let mut record = mapping
        .render(&RenderContext {
            lead,
            lead_id: d.lead_id,
            org: &d.org,
            received_at: d.received_at,
        })
        .with_primary_key(d.record_id);
    deps.dataverse
        .fit_to_columns(org, &deps.tokens, &mapping, &mut record)
        .await?;
    let request = CreateRequest {
        org_url: &org.url,
        entity_set: &record.entity_set,
        record_id: d.record_id,
        body: &record.body,
    };

    if org.dry_run {
        log_dry_run(&request, redactor);
        return Ok(Created {
            entity_ref: format!("dry-run:{}", request.entity_ref()),
            status: 0,
            already_existed: false,
        });
    }

    let creds = org.auth.as_ref().ok_or_else(|| Failure::Permanent {
        error: "no credentials configured for a live organization".into(),
        status: None,
    })?;
    let token = deps.tokens.token(creds).await?;
    match deps.dataverse.create(&request, &token).await {
        Err(e) if e.kind == ErrorKind::Unauthorized => {
            // Tokens can be revoked or rotated before they expire: one fresh
            // token, one more try.
            tracing::info!("Dataverse refused the token; fetching a new one");
            deps.tokens.invalidate(creds, &token).await;
            let token = deps.tokens.token(creds).await?;
            Ok(deps.dataverse.create(&request, &token).await?)
        }
        other => Ok(other?),
    }
}

fn log_dry_run(request: &CreateRequest<'_>, redactor: &Redactor) {
    let headers = CreateRequest::headers()
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let body = serde_json::to_string_pretty(request.body).unwrap_or_default();
    tracing::info!(
        method = "POST",
        url = %request.url(),
        "dry run: not sent; the Dataverse request would be:\nPOST {}\nAuthorization: Bearer <token>\n{headers}\n\n{}",
        request.url(),
        redactor.redact(&body),
    );
}
