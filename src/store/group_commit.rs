//! Group commit for intake: leads that arrive while a commit is on its way
//! to disk wait for the next one and share it. Every lead is still answered
//! only after its own transaction is durable, but 32 concurrent requests
//! cost one fsync, not 32 in a row (SQLite has one writer; each commit is
//! an fsync of the WAL).
//!
//! No lead waits for a batch to fill: a committer takes whatever is queued
//! the moment its previous commit ends. If a batch fails, its leads are
//! tried one by one, so that one bad lead cannot cost the others theirs.
//!
//! SQLite has one writer, so one committer; PostgreSQL takes several
//! transactions at once, and there each batch's statements are round trips,
//! so several committers share the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Inserted, NewLead, Store, StoreError};

/// Requests queued at most before intake waits for room.
const QUEUE: usize = 1024;
/// Leads in one transaction at most.
const MAX_BATCH: usize = 256;

struct Pending {
    lead: NewLead,
    done: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The handle intake stores leads through; the committer runs as long as
/// one handle exists.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts `committers` committer tasks (at least one) on the current runtime.
    pub fn start(
        store: Arc<dyn Store>,
        dedupe_window: Option<Duration>,
        committers: usize,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_batches(
                Arc::clone(&store),
                dedupe_window,
                Arc::clone(&rx),
            ));
        }
        Self { queue }
    }

    /// Stores the lead (see [`Store::insert_leads`]); returns once it is durable.
    pub async fn insert(&self, lead: NewLead) -> Result<Inserted, StoreError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { lead, done })
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn commit_batches(
    store: Arc<dyn Store>,
    dedupe_window: Option<Duration>,
    rx: Arc<Mutex<mpsc::Receiver<Pending>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // The queue is held only while taking a batch, not while committing it.
        let taken = rx.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        let leads: Vec<NewLead> = batch.iter().map(|p| p.lead.clone()).collect();
        match store.insert_leads(&leads, dedupe_window).await {
            Ok(results) if results.len() == batch.len() => {
                for (p, r) in batch.drain(..).zip(results) {
                    let _ = p.done.send(Ok(r));
                }
            }
            _ if batch.len() > 1 => {
                for p in batch.drain(..) {
                    let r = store.insert_lead(&p.lead, dedupe_window).await;
                    let _ = p.done.send(r);
                }
            }
            Ok(_) => {
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(StoreError::Corrupt(
                        "the store returned no result for a lead".into(),
                    )));
                }
            }
            Err(e) => {
                // A batch of one: its own error.
                if let Some(p) = batch.pop() {
                    let _ = p.done.send(Err(e));
                }
                batch.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::ids::LeadId;
    use crate::lead::OrgName;
    use crate::store::Destination;

    fn lead(fingerprint: &str) -> NewLead {
        NewLead {
            id: LeadId::generate(),
            org: OrgName::parse("contoso").unwrap(),
            received_at: OffsetDateTime::now_utc(),
            request_id: "req".into(),
            is_test: false,
            payload: "{}".into(),
            fingerprint: fingerprint.into(),
            destinations: vec![Destination::Dataverse],
        }
    }

    #[tokio::test]
    async fn concurrent_leads_are_each_answered_after_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lb.db").display());
        let store = crate::store::connect(&url).await.unwrap();
        let commits = GroupCommit::start(Arc::clone(&store), Some(Duration::from_secs(60)), 1);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..100 {
            let commits = commits.clone();
            // Every tenth is a twin of the one before: one of the pair is the duplicate.
            let fp = format!("f{}", n - usize::from(n % 10 == 9));
            tasks.spawn(async move { commits.insert(lead(&fp)).await });
        }
        let mut new = 0;
        let mut duplicates = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap().unwrap() {
                Inserted::New => new += 1,
                Inserted::Duplicate { .. } => duplicates += 1,
            }
        }
        assert_eq!((new, duplicates), (90, 10));
        let stats = store.queue_stats().await.unwrap();
        assert_eq!(stats.waiting, 90, "every accepted lead is in the store");
    }
}
