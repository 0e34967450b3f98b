//! Column metadata as the delivery worker keeps it: one copy per
//! organization and entity set, fetched on first use and refreshed daily,
//! used to cut rendered values to the real MaxLength. Delivery never waits on
//! it for more than one bounded fetch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::entity::EntityMetadata;
use crate::lead::OrgName;

/// A cached copy is used for this long, then fetched again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// After a failed fetch, deliveries go on without metadata for this long
/// before the next try, so an outage does not add a fetch to every attempt.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5 * 60);
/// The most a delivery waits for a metadata fetch.
const FETCH_BUDGET: Duration = Duration::from_secs(10);

/// One organization's copies of [`EntityMetadata`], by entity set.
#[derive(Default)]
pub struct MetadataCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held by the one caller that fetches; the others do not wait for it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
struct SlotState {
    metadata: Option<Arc<EntityMetadata>>,
    fetched_at: Option<Instant>,
    failed_at: Option<Instant>,
}

impl SlotState {
    fn needs_fetch(&self, now: Instant) -> bool {
        let fresh = self
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < REFRESH_AFTER);
        let failed_recently = self
            .failed_at
            .is_some_and(|t| now.duration_since(t) < RETRY_FAILED_AFTER);
        !fresh && !failed_recently
    }
}

impl MetadataCache {
    /// The cached metadata, fetched first when missing or a day old. Only one
    /// caller fetches at a time; the others go on with what is cached (maybe
    /// nothing). A failed or slow fetch yields what was cached before.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        org: &OrgName,
        entity_set: &str,
        fetch: F,
    ) -> Option<Arc<EntityMetadata>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EntityMetadata, String>>,
    {
        let slot = self.slot(entity_set);
        let current = lock(&slot.state).clone();
        if !current.needs_fetch(Instant::now()) {
            return current.metadata;
        }
        let Ok(_guard) = slot.fetching.try_lock() else {
            return current.metadata;
        };
        // Someone may have finished a fetch between the read and the lock.
        let current = lock(&slot.state).clone();
        if !current.needs_fetch(Instant::now()) {
            return current.metadata;
        }
        let result = tokio::time::timeout(FETCH_BUDGET, fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_BUDGET:?}")));
        let mut state = lock(&slot.state);
        match result {
            Ok(meta) => {
                tracing::info!(
                    org = %org,
                    entity = %meta.logical_name,
                    columns = meta.attributes.len(),
                    "fetched Dataverse column metadata"
                );
                crate::metrics::metadata_fetched(org.as_str(), true);
                state.metadata = Some(Arc::new(meta));
                state.fetched_at = Some(Instant::now());
                state.failed_at = None;
            }
            Err(error) => {
                tracing::warn!(
                    org = %org,
                    entity_set,
                    error = %error,
                    "cannot fetch Dataverse column metadata; delivering without MaxLength checks"
                );
                crate::metrics::metadata_fetched(org.as_str(), false);
                state.failed_at = Some(Instant::now());
            }
        }
        state.metadata.clone()
    }

    /// Whether [`MetadataCache::get_or_fetch`] would fetch now (so the
    /// caller knows to get a token first).
    #[cfg(test)]
    fn wants_fetch(&self, entity_set: &str) -> bool {
        lock(&self.slot(entity_set).state).needs_fetch(Instant::now())
    }

    fn slot(&self, entity_set: &str) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        Arc::clone(slots.entry(entity_set.to_owned()).or_default())
    }
}

/// The guarded data is replaced in single assignments, so a poisoned lock
/// still holds a consistent value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn sample() -> EntityMetadata {
        EntityMetadata {
            logical_name: "lead".into(),
            attributes: Default::default(),
        }
    }

    #[tokio::test]
    async fn fetches_once_then_serves_the_cache_and_backs_off_after_failures() {
        let cache = MetadataCache::default();
        let org = OrgName::parse("contoso").unwrap();
        let calls = AtomicU32::new(0);
        let ok = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(sample())
        };
        assert!(cache.wants_fetch("leads"));
        assert!(cache.get_or_fetch(&org, "leads", ok).await.is_some());
        assert!(!cache.wants_fetch("leads"));
        assert!(cache.get_or_fetch(&org, "leads", ok).await.is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "second call is cached");

        let cache = MetadataCache::default();
        let other = OrgName::parse("fabrikam").unwrap();
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<EntityMetadata, _>("HTTP 503".to_owned())
        };
        assert!(cache.get_or_fetch(&other, "leads", failing).await.is_none());
        assert!(!cache.wants_fetch("leads"));
        assert!(cache.get_or_fetch(&other, "leads", failing).await.is_none());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a failure is not retried at once"
        );
    }

    #[tokio::test]
    async fn callers_do_not_wait_for_a_fetch_in_progress() {
        let cache = Arc::new(MetadataCache::default());
        let org = OrgName::parse("contoso").unwrap();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let cache = Arc::clone(&cache);
            let org = org.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&org, "leads", || async move {
                        let _ = wait.await;
                        Ok(sample())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Waiting for the slow fetch would never end: it is released below.
        let meanwhile = tokio::time::timeout(
            Duration::from_secs(5),
            cache.get_or_fetch(&org, "leads", || async { Ok(sample()) }),
        )
        .await
        .expect("a second caller does not wait for the fetch in progress");
        assert!(meanwhile.is_none(), "nothing cached yet");
        let _ = release.send(());
        assert!(slow.await.unwrap().is_some());
        assert!(
            cache
                .get_or_fetch(&org, "leads", || async { Err("unused".to_owned()) })
                .await
                .is_some()
        );
    }
}
