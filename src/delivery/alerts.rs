//! Mail to an organization's operators (`email.alert_to`) when one of its
//! leads dead-letters, and when the organization becomes blocked or
//! unblocked. Events of one organization are gathered for
//! `delivery.alert_window` from the first one and go out as one mail, so an
//! outage sends one alert per window, not one per lead; a mail lists at
//! most [`MAX_LISTED`] events and counts the rest.
//!
//! Alerts say which lead (its id), which organization, the error and a
//! hint, and never a lead's personal data: every error is masked with the
//! lead's own values whatever `log.pii` says. They are best effort, kept in
//! memory and sent by the organization's own transport, apart from the
//! queue: a mail server that is down costs an alert, never a delivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::email::transmit;
use super::org::Organizations;
use crate::auth::TokenProvider;
use crate::email::Alert;
use crate::ids::{DeliveryId, LeadId};
use crate::lead::{Lead, OrgName, Redactor};
use crate::mail::GraphMailer;
use crate::store::{ClaimedDelivery, Destination};

/// Events waiting to be sent, over all organizations; more are dropped
/// (and logged) rather than held in memory without bound.
const QUEUE: usize = 4096;
/// Events one mail lists; the rest are counted.
const MAX_LISTED: usize = 50;

#[derive(Debug, Clone)]
enum Event {
    DeadLetter {
        lead_id: LeadId,
        delivery_id: DeliveryId,
        destination: Destination,
        error: String,
        at: OffsetDateTime,
    },
    Blocked {
        destination: Destination,
        reason: String,
        at: OffsetDateTime,
    },
    Unblocked {
        destination: Destination,
        at: OffsetDateTime,
    },
}

/// Where the worker reports what operators must hear of.
#[derive(Clone)]
pub(crate) struct Alerts {
    tx: mpsc::Sender<(OrgName, Event)>,
    organizations: Arc<Organizations>,
}

impl Alerts {
    /// Starts the sender task; it flushes what it holds and ends once every
    /// `Alerts` is dropped.
    pub(crate) fn spawn(
        organizations: Arc<Organizations>,
        tokens: Arc<TokenProvider>,
        graph: GraphMailer,
        window: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sender = Sender {
            organizations: Arc::clone(&organizations),
            tokens,
            graph,
            window,
        };
        tokio::spawn(sender.run(rx));
        Self { tx, organizations }
    }

    pub(crate) fn dead_letter(&self, d: &ClaimedDelivery, error: &str) {
        self.push(
            &d.org,
            Event::DeadLetter {
                lead_id: d.lead_id,
                delivery_id: d.id,
                destination: d.destination,
                error: mask(d, error),
                at: OffsetDateTime::now_utc(),
            },
        );
    }

    pub(crate) fn blocked(&self, d: &ClaimedDelivery, reason: &str) {
        self.push(
            &d.org,
            Event::Blocked {
                destination: d.destination,
                reason: mask(d, reason),
                at: OffsetDateTime::now_utc(),
            },
        );
    }

    pub(crate) fn unblocked(&self, d: &ClaimedDelivery) {
        self.push(
            &d.org,
            Event::Unblocked {
                destination: d.destination,
                at: OffsetDateTime::now_utc(),
            },
        );
    }

    fn push(&self, org: &OrgName, event: Event) {
        let wanted = self
            .organizations
            .get(org)
            .and_then(|o| o.config.email.as_ref().map(|e| !e.alert_to.is_empty()))
            .unwrap_or(false);
        if wanted && self.tx.try_send((org.clone(), event)).is_err() {
            tracing::warn!(%org, "too many alerts waiting; this one is dropped");
        }
    }
}

/// The delivery's error with the lead's personal values masked, always.
fn mask(d: &ClaimedDelivery, text: &str) -> String {
    serde_json::from_str(&d.payload)
        .ok()
        .and_then(|v| Lead::parse(&v).ok())
        .map_or_else(
            || text.to_owned(),
            |lead| Redactor::for_lead(&lead).redact(text),
        )
}

struct Sender {
    organizations: Arc<Organizations>,
    tokens: Arc<TokenProvider>,
    graph: GraphMailer,
    window: Duration,
}

/// One organization's events and when they go out.
struct Batch {
    due: Instant,
    events: Vec<Event>,
    dropped: usize,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<(OrgName, Event)>) {
        let mut batches: BTreeMap<OrgName, Batch> = BTreeMap::new();
        loop {
            let next_due = batches.values().map(|b| b.due).min();
            tokio::select! {
                received = rx.recv() => match received {
                    Some((org, event)) => {
                        let batch = batches.entry(org).or_insert_with(|| Batch {
                            due: Instant::now() + self.window,
                            events: Vec::new(),
                            dropped: 0,
                        });
                        if batch.events.len() < MAX_LISTED {
                            batch.events.push(event);
                        } else {
                            batch.dropped = batch.dropped.saturating_add(1);
                        }
                    }
                    None => break,
                },
                () = sleep_until(next_due) => {
                    let now = Instant::now();
                    let due: Vec<OrgName> = batches
                        .iter()
                        .filter(|(_, b)| b.due <= now)
                        .map(|(org, _)| org.clone())
                        .collect();
                    for org in due {
                        if let Some(batch) = batches.remove(&org) {
                            self.send(&org, batch).await;
                        }
                    }
                }
            }
        }
        // Shutting down: what was gathered goes now.
        for (org, batch) in std::mem::take(&mut batches) {
            self.send(&org, batch).await;
        }
    }

    async fn send(&self, org: &OrgName, batch: Batch) {
        let Some(runtime) = self.organizations.get(org) else {
            return;
        };
        let Some(email) = runtime
            .config
            .email
            .as_ref()
            .filter(|e| !e.alert_to.is_empty())
        else {
            return;
        };
        let alert = compose(org, &batch.events, batch.dropped);
        let key = format!(
            "{}-{}",
            org,
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        );
        let message = alert.into_message(&email.recipients.from, &email.alert_to, &key);
        let events = batch.events.len().saturating_add(batch.dropped);
        match transmit(&self.tokens, &self.graph, &runtime, &message).await {
            Ok(_) => tracing::info!(%org, events, "alert sent to the organization's operators"),
            Err(e) => tracing::error!(%org, events, error = %e, "cannot send the alert mail"),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// One mail for a window's events of one organization.
fn compose(org: &OrgName, events: &[Event], dropped: usize) -> Alert {
    let mut dead = Vec::new();
    let mut blocks = Vec::new();
    for e in events {
        match e {
            Event::DeadLetter {
                lead_id,
                delivery_id,
                destination,
                error,
                at,
            } => dead.push(format!(
                "- lead {lead_id}, delivery {delivery_id} ({destination}), {}:\n  {error}",
                time(*at)
            )),
            Event::Blocked {
                destination,
                reason,
                at,
            } => blocks.push(format!(
                "- {destination}: BLOCKED since {}: {reason}",
                time(*at)
            )),
            Event::Unblocked { destination, at } => blocks.push(format!(
                "- {destination}: unblocked at {}; its waiting deliveries go out now",
                time(*at)
            )),
        }
    }
    let dead_count = dead.len().saturating_add(dropped);
    let mut parts = Vec::new();
    if dead_count > 0 {
        parts.push(if dead_count == 1 {
            "1 lead dead-lettered".to_owned()
        } else {
            format!("{dead_count} leads dead-lettered")
        });
    }
    let blocked_now = events.iter().rev().find_map(|e| match e {
        Event::Blocked { .. } => Some(true),
        Event::Unblocked { .. } => Some(false),
        Event::DeadLetter { .. } => None,
    });
    match blocked_now {
        Some(true) => parts.push("delivery blocked".into()),
        Some(false) => parts.push("delivery unblocked".into()),
        None => {}
    }
    let subject = format!("[leadbridge] {org}: {}", parts.join(", "));

    let mut text = format!("leadbridge alert for organization {org}\n\n");
    if !dead.is_empty() {
        text.push_str(&format!("Dead letters ({dead_count}):\n"));
        for line in &dead {
            text.push_str(line);
            text.push('\n');
        }
        if dropped > 0 {
            text.push_str(&format!("- and {dropped} more in this window\n"));
        }
        text.push_str(&format!(
            "\nThese leads will not be tried again by themselves. Fix the cause, then replay:\n  \
             leadbridge deliveries retry <delivery id>\n  \
             leadbridge deliveries retry --all-dead --org {org}\n\n"
        ));
    }
    if !blocks.is_empty() {
        text.push_str("Organization status:\n");
        for line in &blocks {
            text.push_str(line);
            text.push('\n');
        }
        if blocked_now == Some(true) {
            text.push_str(&format!(
                "\nEvery delivery of this destination would fail alike, so they wait: none is \
                 dead-lettered for this. Once the cause is fixed, a probe resumes delivery by \
                 itself; `leadbridge deliveries unpause --org {org}` tries at once.\n"
            ));
        }
    }
    Alert { subject, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(n: u8) -> Event {
        Event::DeadLetter {
            lead_id: LeadId::generate(),
            delivery_id: DeliveryId::generate(),
            destination: Destination::Dataverse,
            error: format!("Dataverse 400: bad value {n}"),
            at: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn a_batch_counts_and_lists_its_dead_letters() {
        let org = OrgName::parse("contoso").unwrap();
        let events: Vec<Event> = (0..3).map(dead).collect();
        let alert = compose(&org, &events, 2);
        assert_eq!(alert.subject, "[leadbridge] contoso: 5 leads dead-lettered");
        assert!(alert.text.contains("Dead letters (5):"), "{}", alert.text);
        assert!(alert.text.contains("bad value 2"), "{}", alert.text);
        assert!(alert.text.contains("and 2 more"), "{}", alert.text);
        assert!(
            alert.text.contains("--all-dead --org contoso"),
            "{}",
            alert.text
        );
    }

    #[test]
    fn the_last_block_event_names_the_state() {
        let org = OrgName::parse("contoso").unwrap();
        let at = OffsetDateTime::now_utc();
        let events = vec![
            Event::Blocked {
                destination: Destination::Email,
                reason: "SMTP answered 535".into(),
                at,
            },
            Event::Unblocked {
                destination: Destination::Email,
                at,
            },
        ];
        let alert = compose(&org, &events, 0);
        assert_eq!(alert.subject, "[leadbridge] contoso: delivery unblocked");
        assert!(
            alert.text.contains("email: BLOCKED since"),
            "{}",
            alert.text
        );
        let alert = compose(&org, &events[..1], 0);
        assert_eq!(alert.subject, "[leadbridge] contoso: delivery blocked");
        assert!(alert.text.contains("a probe resumes"), "{}", alert.text);
    }
}
