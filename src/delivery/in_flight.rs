//! The attempts a worker has running, each with its claimed delivery: one
//! cut off at shutdown is handed back to the queue, and one that panicked is
//! recorded as a failed attempt. Without that record a delivery that panics
//! every time would be retried for ever, each time after its lease ran out;
//! with it, it is retried with backoff and dead-lettered, with the panic
//! message, after [`PANICS_BEFORE_DEAD`] panics in a row.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::task::{self, JoinError, JoinSet};
use tracing::Instrument;

use super::attempt::Decision;
use super::retry::Next;
use super::{Deps, delivery_span, record};
use crate::lead::{Lead, Redactor};
use crate::store::{AttemptOutcome, ClaimedDelivery, Store};

/// A panic is a bug, not a Dataverse hiccup: a few tries tell a rare one
/// from one that happens every time, and waiting the whole `retry_for`
/// would only hide it.
pub(super) const PANICS_BEFORE_DEAD: usize = 3;

/// How a panicked attempt's error starts, in the store and the logs.
const PANICKED: &str = "panicked: ";

struct Running {
    delivery: ClaimedDelivery,
    started: Instant,
}

#[derive(Default)]
pub(super) struct InFlight {
    tasks: JoinSet<()>,
    running: HashMap<task::Id, Running>,
}

impl InFlight {
    pub(super) fn len(&self) -> usize {
        self.tasks.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Runs `attempt`, the attempt of `delivery`, in a task of its own.
    pub(super) fn spawn(
        &mut self,
        delivery: ClaimedDelivery,
        attempt: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self
            .tasks
            .spawn(attempt.instrument(delivery_span(&delivery)));
        self.running.insert(
            handle.id(),
            Running {
                delivery,
                started: Instant::now(),
            },
        );
    }

    /// The next attempt to end; `None` when none runs. Cancel-safe (for
    /// `select!`); pass what it returns to [`InFlight::settle`].
    pub(super) async fn next_done(&mut self) -> Option<Result<(task::Id, ()), JoinError>> {
        self.tasks.join_next_with_id().await
    }

    /// An attempt that has already ended, if any, without waiting.
    pub(super) fn done_now(&mut self) -> Option<Result<(task::Id, ()), JoinError>> {
        self.tasks.try_join_next_with_id()
    }

    /// Forgets a finished attempt (it recorded its outcome); records a
    /// panicked one. An aborted one stays, for [`InFlight::release_cut_off`].
    pub(super) async fn settle(&mut self, deps: &Deps, done: Result<(task::Id, ()), JoinError>) {
        match done {
            Ok((id, ())) => {
                self.running.remove(&id);
            }
            Err(e) if e.is_panic() => {
                let Some(running) = self.running.remove(&e.id()) else {
                    return;
                };
                let message = panic_message(e.into_panic());
                let d = &running.delivery;
                panicked(deps, d, &message, running.started.elapsed())
                    .instrument(delivery_span(d))
                    .await;
            }
            Err(_) => {}
        }
    }

    /// Stops every attempt; [`InFlight::next_done`] then yields them.
    pub(super) fn abort_all(&mut self) {
        self.tasks.abort_all();
    }

    /// Hands the deliveries of attempts cut off mid-way back to the queue
    /// now, rather than when their lease would expire. A create that did
    /// reach Dataverse is caught by the record id. Returns how many.
    pub(super) async fn release_cut_off(&mut self, store: &dyn Store) -> usize {
        let cut_off: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        for r in &cut_off {
            let d = &r.delivery;
            if let Err(e) = store.release(d, None).await {
                tracing::warn!(delivery_id = %d.id, error = %e, "cannot release; its lease will expire");
            }
        }
        cut_off.len()
    }
}

/// Records a panicked attempt: a retry with backoff, or dead after
/// [`PANICS_BEFORE_DEAD`] panics in a row in this retry run (or when the
/// retry schedule is used up).
async fn panicked(deps: &Deps, d: &ClaimedDelivery, message: &str, took: Duration) {
    let message = redactor(deps, d).redact(message);
    tracing::error!(panic = %message, "delivery attempt panicked");
    let in_a_row = panics_in_a_row(deps.store.as_ref(), d)
        .await
        .saturating_add(1);
    let error = format!("{PANICKED}{message}");
    let outcome = if in_a_row >= PANICS_BEFORE_DEAD {
        AttemptOutcome::Dead {
            error: format!("{error} ({in_a_row} times in a row)"),
            http_status: None,
        }
    } else {
        let made = d.retry_attempts.saturating_add(1);
        let now = OffsetDateTime::now_utc();
        match deps
            .policy(d.destination)
            .next(made, d.retry_started_at, now, None)
        {
            Next::RetryAt(at) => AttemptOutcome::Retry {
                error,
                http_status: None,
                next_attempt_at: at,
            },
            Next::GiveUp => AttemptOutcome::Dead {
                error: format!("gave up after {made} attempts; last error: {error}"),
                http_status: None,
            },
        }
    };
    record(deps, d, Decision::Record(outcome), took).await;
}

/// The latest attempts of the current retry run that panicked, in a row.
/// A replay starts a new run, and so a new count. When the history cannot
/// be read, this one counts alone: the delivery is retried.
async fn panics_in_a_row(store: &dyn Store, d: &ClaimedDelivery) -> usize {
    match store.attempts(d.id).await {
        Ok(history) => history
            .iter()
            .rev()
            .take_while(|a| {
                a.at >= d.retry_started_at
                    && a.error.as_deref().is_some_and(|e| e.starts_with(PANICKED))
            })
            .count(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the attempt history");
            0
        }
    }
}

/// A panic message may quote the lead: masked like every other error.
fn redactor(deps: &Deps, d: &ClaimedDelivery) -> Redactor {
    if deps.log_pii {
        return Redactor::disabled();
    }
    match Lead::parse_json(d.payload.as_bytes()) {
        Ok((lead, _)) => Redactor::for_lead(&lead),
        Err(_) => Redactor::disabled(),
    }
}

/// What a panic said, when it said it with a string.
pub(super) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests;
