//! The mappings in force, one per organization, found by organization name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{Mapping, MappingError};
use crate::lead::OrgName;

/// Holds the current mapping of every organization. Readers get an `Arc`, so
/// swapping in a new mapping never disturbs a render in progress.
#[derive(Debug, Default)]
pub struct MappingRegistry {
    entries: RwLock<HashMap<OrgName, Entry>>,
    /// Counts reloads that put a different mapping in force, so callers (and
    /// tests) can tell that a change on disk has been taken up.
    generation: AtomicU64,
    /// Counts reloads refused because the file was unreadable or invalid.
    rejected: AtomicU64,
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    mapping: Arc<Mapping>,
}

impl MappingRegistry {
    /// Loads every organization's file; all failures are reported together.
    pub fn load<'a>(
        files: impl IntoIterator<Item = (&'a OrgName, &'a Path)>,
    ) -> Result<Self, Vec<MappingError>> {
        let mut entries = HashMap::new();
        let mut errors = Vec::new();
        for (org, path) in files {
            match Mapping::load(path) {
                Ok(m) => {
                    entries.insert(
                        org.clone(),
                        Entry {
                            path: path.to_owned(),
                            mapping: Arc::new(m),
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                entries: RwLock::new(entries),
                ..Self::default()
            })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, org: &OrgName) -> Option<Arc<Mapping>> {
        self.read().get(org).map(|e| Arc::clone(&e.mapping))
    }

    pub fn path(&self, org: &OrgName) -> Option<PathBuf> {
        self.read().get(org).map(|e| e.path.clone())
    }

    /// Every organization and its mapping file.
    pub fn files(&self) -> Vec<(OrgName, PathBuf)> {
        self.read()
            .iter()
            .map(|(org, e)| (org.clone(), e.path.clone()))
            .collect()
    }

    /// How many reloads have changed a mapping so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many reloads have been refused (the old mapping stayed in force).
    pub fn rejected_reloads(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// Re-reads one organization's file; on error the old mapping stays in
    /// force. `Ok(true)` when the mapping in force changed.
    pub fn reload(&self, org: &OrgName) -> Result<bool, MappingError> {
        let Some(path) = self.path(org) else {
            return Ok(false);
        };
        let fresh = match Mapping::load(&path) {
            Ok(m) => m,
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = entries.get(org).is_none_or(|e| *e.mapping != fresh);
        if changed {
            entries.insert(
                org.clone(),
                Entry {
                    path,
                    mapping: Arc::new(fresh),
                },
            );
            // Bumped under the write lock: whoever sees the new generation
            // also sees the new mapping.
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(changed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<OrgName, Entry>> {
        // A panic while holding the lock cannot leave the map half-written
        // (inserts are single operations), so a poisoned lock is still usable.
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
