//! One delivery attempt as a straight line of typed stages:
//!
//! [`prepare`] (read the stored lead, render the record) → [`authorize`]
//! (a token, unless dry run) → [`send`] (fit the record to the columns,
//! wait for the request budget, create; one fresh token after a 401; a
//! duplicate of our key verified by reading the record back) →
//! [`classify`] (what the answer means for the delivery). [`run`] chains
//! the first three; the worker observes the [`Completed`] attempt, classifies
//! it and records the outcome.
//!
//! Every failure on the way is an [`AttemptError`] whose [`ErrorKind`] was
//! decided by whoever saw it (the Dataverse client, the token provider, or
//! this module for local problems); [`classify`] decides on the kind alone.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::Deps;
use super::org::OrgRuntime;
use super::retry::{Next, RetryPolicy};
use crate::auth::{AccessToken, Credentials};
use crate::dataverse::{CreateRequest, Created};
use crate::lead::{Lead, OrgName, Redactor};
use crate::mapping::{Mapping, Record, RenderContext};
use crate::outbound::{ErrorKind, RemoteError};
use crate::store::{AttemptOutcome, ClaimedDelivery, Destination};

/// A 429 without `Retry-After` (Dataverse always sends one) still pauses this long.
pub(super) const DEFAULT_PAUSE: Duration = Duration::from_secs(5);

/// Why an attempt did not get through.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// What Entra ID or Dataverse answered, already classified.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("organization {0} is no longer configured; add it back and replay")]
    OrgGone(OrgName),
    #[error("organization {0} no longer delivers to {1}; configure it again and replay")]
    NoDestination(OrgName, Destination),
    #[error("no credentials configured for a live organization")]
    NoCredentials,
    #[error("stored lead cannot be read: {0}")]
    UnreadableLead(String),
    /// The shared pause could not be read: sending could break another
    /// replica's Retry-After.
    #[error("cannot read the organization's pause from the store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Dataverse refused the create as a duplicate, but our record is not
    /// there: the duplicate is of something else (a plugin, an alternate key).
    #[error("{0}; but record {1} does not exist, so the lead is not delivered")]
    DuplicateOfAnother(RemoteError, String),
}

impl AttemptError {
    pub(super) fn kind(&self) -> ErrorKind {
        match self {
            AttemptError::Remote(e) => e.kind,
            AttemptError::NoCredentials => ErrorKind::OrganizationWide,
            // Nothing left to block or probe: replayed once it is back.
            AttemptError::OrgGone(_)
            | AttemptError::NoDestination(..)
            | AttemptError::UnreadableLead(_) => ErrorKind::Permanent,
            AttemptError::DuplicateOfAnother(..) | AttemptError::Store(_) => {
                ErrorKind::Transient { retry_after: None }
            }
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Remote(e) | AttemptError::DuplicateOfAnother(e, _) => e.status,
            _ => None,
        }
    }
}

/// Stage 1: the lead read back and rendered; nothing sent yet.
pub(super) struct Prepared<'a> {
    org: &'a OrgRuntime,
    org_url: &'a url::Url,
    mapping: &'a Mapping,
    delivery: &'a ClaimedDelivery,
    redactor: Redactor,
    record: Record,
}

impl Prepared<'_> {
    /// Ends the attempt before anything was sent.
    fn fail(self, e: AttemptError) -> Completed {
        Completed {
            redactor: self.redactor,
            result: Err(e),
        }
    }
}

/// Stage 2: who the request goes out as.
pub(super) enum Target<'a> {
    /// `dry_run = true`: render and log, never call Microsoft.
    DryRun,
    Live {
        creds: &'a Credentials,
        token: AccessToken,
    },
}

/// Stage 3: what came back.
#[derive(Debug)]
pub(super) enum Sent {
    Created(Created),
    /// Refused as a duplicate of our own key, and the record is there: an
    /// earlier attempt got through. `status` is the duplicate-key answer's.
    AlreadyExisted {
        entity_ref: String,
        status: Option<u16>,
    },
    /// Logged, not sent; the record's address had it been created.
    DryRun {
        entity_ref: String,
    },
    /// The notification mail went out; `status` is Graph's HTTP status.
    Mailed {
        message_id: String,
        status: Option<u16>,
    },
    /// The organization got paused after the claim; nothing went out.
    Paused(OffsetDateTime),
}

/// Stage 3's result with what [`classify`] needs to read it.
pub(super) struct Completed {
    /// Masks the lead's personal data in error messages.
    pub(super) redactor: Redactor,
    pub(super) result: Result<Sent, AttemptError>,
}

impl Completed {
    pub(super) fn failed(e: AttemptError) -> Self {
        Self {
            redactor: Redactor::disabled(),
            result: Err(e),
        }
    }
}

/// Stages 1 to 3. `org` is `None` when the organization was removed from the
/// configuration after the lead was accepted.
#[tracing::instrument(name = "attempt", skip_all)]
pub(super) async fn run(deps: &Deps, org: Option<&OrgRuntime>, d: &ClaimedDelivery) -> Completed {
    let Some(org) = org else {
        return Completed::failed(AttemptError::OrgGone(d.org.clone()));
    };
    if d.destination == Destination::Email {
        return super::email::run(deps, org, d).await;
    }
    let prepared = match prepare(deps, org, d) {
        Ok(p) => p,
        Err(e) => return Completed::failed(e),
    };
    match authorize(deps, &prepared).await {
        Ok(target) => send(deps, prepared, target).await,
        Err(e) => prepared.fail(e),
    }
}

/// What the worker does with the delivery.
#[derive(Debug)]
pub(super) enum Decision {
    Record(AttemptOutcome),
    /// Nothing was sent: hand the delivery back, due at this time, without
    /// counting an attempt.
    Postpone(OffsetDateTime),
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) fn prepare<'a>(
    deps: &Deps,
    org: &'a OrgRuntime,
    d: &'a ClaimedDelivery,
) -> Result<Prepared<'a>, AttemptError> {
    let (Some(org_url), Some(mapping)) = (org.config.url.as_ref(), org.mapping.as_deref()) else {
        return Err(AttemptError::NoDestination(d.org.clone(), d.destination));
    };
    let (lead, redactor) = read_lead(deps, d)?;
    let record = mapping
        .render(&render_context(&lead, d))
        .with_primary_key(d.record_id);
    Ok(Prepared {
        org,
        org_url,
        mapping,
        delivery: d,
        redactor,
        record,
    })
}

/// The stored lead, and what masks its personal data in logs and errors.
pub(super) fn read_lead(
    deps: &Deps,
    d: &ClaimedDelivery,
) -> Result<(Lead, Redactor), AttemptError> {
    let lead = serde_json::from_str::<Value>(&d.payload)
        .map_err(|e| e.to_string())
        .and_then(|v| Lead::parse(&v).map_err(|e| e.to_string()))
        .map_err(AttemptError::UnreadableLead)?;
    let redactor = if deps.log_pii {
        Redactor::disabled()
    } else {
        Redactor::for_lead(&lead)
    };
    Ok((lead, redactor))
}

pub(super) fn render_context<'a>(lead: &'a Lead, d: &'a ClaimedDelivery) -> RenderContext<'a> {
    RenderContext {
        lead,
        lead_id: d.lead_id,
        org: &d.org,
        received_at: d.received_at,
    }
}

/// One token per attempt serves the metadata read and the create.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn authorize<'a>(
    deps: &Deps,
    prepared: &Prepared<'a>,
) -> Result<Target<'a>, AttemptError> {
    let org: &'a OrgRuntime = prepared.org;
    if org.config.dry_run {
        return Ok(Target::DryRun);
    }
    let creds = org
        .config
        .auth
        .as_ref()
        .ok_or(AttemptError::NoCredentials)?;
    let token = deps.tokens.token(creds).await?;
    Ok(Target::Live { creds, token })
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn send(deps: &Deps, mut prepared: Prepared<'_>, target: Target<'_>) -> Completed {
    let org = prepared.org;
    let d = prepared.delivery;
    if let Target::Live { token, .. } = &target {
        super::fit::to_columns(
            deps,
            org,
            (prepared.org_url, prepared.mapping),
            token,
            &mut prepared.record,
        )
        .await;
    }
    let request = CreateRequest {
        org_url: prepared.org_url,
        entity_set: &prepared.record.entity_set,
        record_id: d.record_id,
        body: &prepared.record.body,
    };
    let entity_ref = request.entity_ref();
    let result = match target {
        Target::DryRun => {
            tracing::info!(
                method = "POST",
                url = %request.url(),
                "dry run: not sent; the Dataverse request would be:\n{}",
                prepared.redactor.redact(&request.preview("<token>")),
            );
            Ok(Sent::DryRun {
                entity_ref: entity_ref.clone(),
            })
        }
        Target::Live { creds, token } => {
            let (result, token) = match create(deps, org, d, &request, &token).await {
                Err(AttemptError::Remote(e)) if e.kind == ErrorKind::Unauthorized => {
                    // Tokens can be revoked or rotated before they expire: one
                    // fresh token, one more try.
                    tracing::info!("Dataverse refused the token; fetching a new one");
                    deps.tokens.invalidate(creds, &token).await;
                    match deps.tokens.token(creds).await {
                        Ok(token) => (
                            create(deps, org, d, &request, &token)
                                .await
                                .map_err(refused_fresh_token),
                            token,
                        ),
                        Err(e) => (Err(e.into()), token),
                    }
                }
                other => (other, token),
            };
            match result {
                Err(AttemptError::Remote(e)) if e.kind == ErrorKind::DuplicateKey => {
                    verify_duplicate(deps, &request, &prepared.record.primary_key, &token, e).await
                }
                other => other,
            }
        }
    };
    Completed {
        redactor: prepared.redactor,
        result,
    }
}

/// A 401 for a token Entra has just issued is no stale token: the
/// application user is missing or disabled in the environment, for every lead.
pub(super) fn refused_fresh_token(e: AttemptError) -> AttemptError {
    match e {
        AttemptError::Remote(mut e) if e.kind == ErrorKind::Unauthorized => {
            e.kind = ErrorKind::OrganizationWide;
            e.message = format!(
                "{}; a freshly issued token was refused too: is the application user \
                 set up (and enabled) in this environment?",
                e.message
            );
            AttemptError::Remote(e)
        }
        other => other,
    }
}

/// A duplicate-key answer counts as delivered only when our record is there.
async fn verify_duplicate(
    deps: &Deps,
    request: &CreateRequest<'_>,
    primary_key: &str,
    token: &AccessToken,
    duplicate: RemoteError,
) -> Result<Sent, AttemptError> {
    let entity_ref = request.entity_ref();
    match deps
        .dataverse
        .record_exists(request, primary_key, token)
        .await
    {
        Ok(true) => Ok(Sent::AlreadyExisted {
            entity_ref,
            status: duplicate.status,
        }),
        Ok(false) => Err(AttemptError::DuplicateOfAnother(duplicate, entity_ref)),
        Err(e) => Err(e.into()),
    }
}

/// Waits for the organization's request budget, then sends unless the
/// organization got paused meanwhile, by this replica or another: nothing may
/// go out before Retry-After. The store holds the one pause all replicas
/// share (and `deliveries unpause` clears).
async fn create(
    deps: &Deps,
    org: &OrgRuntime,
    d: &ClaimedDelivery,
    request: &CreateRequest<'_>,
    token: &AccessToken,
) -> Result<Sent, AttemptError> {
    org.state
        .before_send(&deps.dataverse, request.org_url)
        .await;
    let now = OffsetDateTime::now_utc();
    if let Some(until) = deps.store.paused_until(&d.org, d.destination, now).await? {
        return Ok(Sent::Paused(until));
    }
    match deps.dataverse.create(request, token).await {
        Ok(created) => Ok(Sent::Created(created)),
        // Held back by the client (a 429 came while this one was on its way):
        // nothing went out, so it is no attempt; the pause brings it back.
        Err(e) if e.status.is_none() && matches!(e.kind, ErrorKind::Throttled { .. }) => {
            let wait = e.kind.retry_after().unwrap_or_default();
            Ok(Sent::Paused(super::retry::later(
                OffsetDateTime::now_utc(),
                wait,
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Decides on the kind alone. Never fails: every problem becomes a retry or
/// a dead letter, so a lead is never dropped.
pub(super) fn classify(
    completed: Completed,
    d: &ClaimedDelivery,
    policy: &RetryPolicy,
    now: OffsetDateTime,
) -> Decision {
    let Completed { redactor, result } = completed;
    let error = match result {
        Ok(Sent::Created(created)) => {
            return Decision::Record(AttemptOutcome::Delivered {
                remote_ref: created.entity_ref,
                http_status: Some(created.status),
            });
        }
        Ok(Sent::DryRun { entity_ref }) => {
            return Decision::Record(AttemptOutcome::DryRun {
                remote_ref: format!("dry-run:{entity_ref}"),
            });
        }
        Ok(Sent::AlreadyExisted { entity_ref, status }) => {
            return Decision::Record(AttemptOutcome::Delivered {
                remote_ref: entity_ref,
                http_status: status,
            });
        }
        Ok(Sent::Mailed { message_id, status }) => {
            return Decision::Record(AttemptOutcome::Delivered {
                remote_ref: message_id,
                http_status: status,
            });
        }
        Ok(Sent::Paused(until)) => return Decision::Postpone(until),
        Err(e) => e,
    };
    let http_status = error.status();
    let retry_after = match error.kind() {
        ErrorKind::Permanent => {
            return Decision::Record(AttemptOutcome::Dead {
                error: redactor.redact(&error.to_string()),
                http_status,
            });
        }
        // The organization is blocked (see `observe`): the lead waits for
        // the cause to be fixed, however long that takes; the retry budget
        // is for failures of the lead, not of the organization.
        ErrorKind::OrganizationWide => {
            let made = d.retry_attempts.saturating_add(1);
            let at = match policy.next(made, d.retry_started_at, now, None) {
                Next::RetryAt(at) => at,
                Next::GiveUp => policy.after_backoff_max(now),
            };
            return Decision::Record(AttemptOutcome::Retry {
                error: format!(
                    "organization blocked: {}",
                    redactor.redact(&error.to_string())
                ),
                http_status,
                next_attempt_at: at,
            });
        }
        ErrorKind::Throttled { retry_after } => Some(retry_after.unwrap_or(DEFAULT_PAUSE)),
        ErrorKind::Transient { retry_after } => retry_after,
        // Unverified (the check itself failed): try again.
        ErrorKind::Unauthorized | ErrorKind::DuplicateKey => None,
    };
    let error = redactor.redact(&error.to_string());
    let made = d.retry_attempts.saturating_add(1);
    Decision::Record(
        match policy.next(made, d.retry_started_at, now, retry_after) {
            Next::RetryAt(at) => AttemptOutcome::Retry {
                error,
                http_status,
                next_attempt_at: at,
            },
            Next::GiveUp => AttemptOutcome::Dead {
                error: format!("gave up after {made} attempts; last error: {error}"),
                http_status,
            },
        },
    )
}
