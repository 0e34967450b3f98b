//! One delivery attempt: render the lead, get a token, create the record, and
//! decide what the result means for the delivery.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::Deps;
use super::retry::Next;
use crate::auth::AuthError;
use crate::config::Organization;
use crate::dataverse::{CreateRequest, Created, DataverseError, ErrorKind};
use crate::lead::{Lead, Redactor};
use crate::mapping::RenderContext;
use crate::store::{AttemptOutcome, ClaimedDelivery};

/// A 429 without `Retry-After` (Dataverse always sends one) still pauses this long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);

/// What the worker does with the delivery.
#[derive(Debug)]
pub(super) enum Decision {
    Record(AttemptOutcome),
    /// The organization is paused (throttled) and nothing was sent: hand the
    /// delivery back, due at this time, without counting an attempt.
    Postpone(OffsetDateTime),
}

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
    Paused(OffsetDateTime),
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
                retry_after: Some(retry_after.unwrap_or(DEFAULT_PAUSE)),
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

/// Runs one attempt and decides. Never fails: every problem becomes a retry
/// or a dead letter, so a lead is never dropped.
pub(super) async fn run(deps: &Deps, d: &ClaimedDelivery) -> Decision {
    let (result, redactor) = deliver(deps, d).await;
    let now = OffsetDateTime::now_utc();
    match result {
        Ok(created) => Decision::Record(AttemptOutcome::Delivered {
            remote_ref: created.entity_ref,
            http_status: (created.status != 0).then_some(created.status),
        }),
        Err(Failure::Paused(until)) => Decision::Postpone(until),
        Err(Failure::Permanent { error, status }) => Decision::Record(AttemptOutcome::Dead {
            error: redactor.redact(&error),
            http_status: status,
        }),
        Err(Failure::Retryable {
            error,
            status,
            retry_after,
        }) => {
            let error = redactor.redact(&error);
            let made = d.retry_attempts + 1;
            let policy = deps.policy(d.destination);
            Decision::Record(
                match policy.next(made, d.retry_started_at, now, retry_after) {
                    Next::RetryAt(at) => AttemptOutcome::Retry {
                        error,
                        http_status: status,
                        next_attempt_at: at,
                    },
                    Next::GiveUp => AttemptOutcome::Dead {
                        error: format!("gave up after {made} attempts; last error: {error}"),
                        http_status: status,
                    },
                },
            )
        }
    }
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
    // One token per attempt serves the metadata read and the create.
    let live = if org.dry_run {
        None
    } else {
        let creds = org.auth.as_ref().ok_or_else(|| Failure::Permanent {
            error: "no credentials configured for a live organization".into(),
            status: None,
        })?;
        Some((creds, deps.tokens.token(creds).await?))
    };
    deps.dataverse
        .fit_to_columns(org, live.as_ref().map(|(_, t)| t), &mapping, &mut record)
        .await;
    let request = CreateRequest {
        org_url: &org.url,
        entity_set: &record.entity_set,
        record_id: d.record_id,
        body: &record.body,
    };

    let Some((creds, token)) = live else {
        log_dry_run(&request, redactor);
        return Ok(Created {
            entity_ref: format!("dry-run:{}", request.entity_ref()),
            status: 0,
            already_existed: false,
            dop_hint: None,
        });
    };
    let result = match create(deps, d, &request, &token).await {
        Err(Failure::Retryable {
            status: Some(401), ..
        }) => {
            // Tokens can be revoked or rotated before they expire: one fresh
            // token, one more try.
            tracing::info!("Dataverse refused the token; fetching a new one");
            deps.tokens.invalidate(creds, &token).await;
            let token = deps.tokens.token(creds).await?;
            create(deps, d, &request, &token).await
        }
        other => other,
    };
    match &result {
        Ok(created) => deps.limits.on_success(&d.org, created.dop_hint),
        Err(Failure::Retryable {
            status: Some(429),
            retry_after,
            ..
        }) => {
            let until = OffsetDateTime::now_utc() + retry_after.unwrap_or(DEFAULT_PAUSE);
            deps.limits.on_throttled(&d.org);
            deps.pauses.pause(&d.org, d.destination, until);
            if let Err(e) = deps.store.pause(&d.org, d.destination, until).await {
                tracing::warn!(error = %e, "cannot share the pause with other replicas");
            }
            tracing::warn!(until = %until, limit = deps.limits.limit(&d.org), "Dataverse throttled; organization paused");
        }
        Err(_) => {}
    }
    result
}

/// Waits for the organization's request budget, then sends unless the
/// organization got paused meanwhile (nothing may go out before Retry-After).
async fn create(
    deps: &Deps,
    d: &ClaimedDelivery,
    request: &CreateRequest<'_>,
    token: &crate::auth::AccessToken,
) -> Result<Created, Failure> {
    deps.rate.until_key_ready(&d.org).await;
    if let Some(until) = deps.pauses.paused_until(&d.org, d.destination) {
        return Err(Failure::Paused(until));
    }
    Ok(deps.dataverse.create(request, token).await?)
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
