//! One value per organization holding everything an attempt needs of it:
//! its settings, the mapping in force, and the delivery state that must be
//! shared by all of its attempts (concurrency limit, request rate, column
//! metadata; pauses live in the store, shared by every replica). Built at start; a mapping reload builds a new value
//! around the same state, so an attempt that took one keeps a consistent
//! view from start to end.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::concurrency::AdaptiveLimit;
use super::metadata::MetadataCache;
use crate::config::{DeliverySettings, Organization, Settings};
use crate::lead::OrgName;
use crate::mapping::{Mapping, MappingError};

/// An organization as the delivery worker sees it.
pub struct OrgRuntime {
    pub config: Arc<Organization>,
    pub mapping: Arc<Mapping>,
    pub(super) state: Arc<OrgState>,
}

/// What outlives a mapping reload.
pub(super) struct OrgState {
    pub(super) mapping_file: PathBuf,
    pub(super) limit: Arc<AdaptiveLimit>,
    /// The optional fixed request budget (`delivery.org_requests_per_minute`).
    pub(super) rate: DefaultDirectRateLimiter,
    pub(super) metadata: MetadataCache,
}

impl OrgRuntime {
    pub fn name(&self) -> &OrgName {
        &self.config.name
    }

    pub(crate) fn mapping_file(&self) -> &std::path::Path {
        &self.state.mapping_file
    }
}

impl OrgState {
    fn new(mapping_file: PathBuf, delivery: &DeliverySettings) -> Self {
        let per_minute =
            NonZeroU32::new(delivery.org_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = u32::try_from(delivery.org_concurrency)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        Self {
            mapping_file,
            limit: Arc::new(AdaptiveLimit::new(delivery.org_concurrency)),
            rate: RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)),
            metadata: MetadataCache::default(),
        }
    }
}

/// Every configured organization, by name.
pub struct Organizations {
    orgs: RwLock<BTreeMap<OrgName, Arc<OrgRuntime>>>,
    /// Counts reloads that put a different mapping in force, so callers (and
    /// tests) can tell that a change on disk has been taken up.
    generation: AtomicU64,
    /// Counts reloads refused because the file was unreadable or invalid.
    rejected: AtomicU64,
}

impl Organizations {
    /// Loads every organization's mapping; all failures are reported together.
    pub fn load(settings: &Settings) -> Result<Self, Vec<MappingError>> {
        let mut orgs = BTreeMap::new();
        let mut errors = Vec::new();
        for org in settings.organizations.values() {
            match Mapping::load(&org.mapping) {
                Ok(mapping) => {
                    let runtime = OrgRuntime {
                        config: Arc::new(org.clone()),
                        mapping: Arc::new(mapping),
                        state: Arc::new(OrgState::new(org.mapping.clone(), &settings.delivery)),
                    };
                    orgs.insert(org.name.clone(), Arc::new(runtime));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            orgs: RwLock::new(orgs),
            generation: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn get(&self, name: &OrgName) -> Option<Arc<OrgRuntime>> {
        self.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<OrgRuntime>> {
        self.read().values().cloned().collect()
    }

    /// How many reloads have changed a mapping so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many reloads have been refused (the old mapping stayed in force).
    pub fn rejected_reloads(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// Re-reads one organization's mapping file; on error the old mapping
    /// stays in force. `Ok(true)` when the mapping in force changed.
    pub(crate) fn reload_mapping(&self, name: &OrgName) -> Result<bool, MappingError> {
        let Some(current) = self.get(name) else {
            return Ok(false);
        };
        let fresh = match Mapping::load(current.mapping_file()) {
            Ok(m) => m,
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        let mut orgs = self.orgs.write().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = orgs.get_mut(name) else {
            return Ok(false);
        };
        if *entry.mapping == fresh {
            return Ok(false);
        }
        *entry = Arc::new(OrgRuntime {
            config: Arc::clone(&entry.config),
            mapping: Arc::new(fresh),
            state: Arc::clone(&entry.state),
        });
        // Bumped under the write lock: whoever sees the new generation also
        // sees the new mapping.
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<OrgName, Arc<OrgRuntime>>> {
        // Writers swap whole entries, so a poisoned lock is still consistent.
        self.orgs.read().unwrap_or_else(PoisonError::into_inner)
    }
}
