//! Mapping hot reload: watch the directories the mapping files live in and
//! reload the organizations whose directory changed.
//!
//! Directories, not files: a Kubernetes ConfigMap volume updates by writing a
//! new `..<timestamp>` directory and renaming a `..data_tmp` symlink over
//! `..data`, while `<org>.yaml` stays a symlink to `..data/<org>.yaml`. A watch
//! on the file itself would follow the old target and go dead after the first
//! update; a watch on the directory sees every swap (and every editor save).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::Organizations;
use crate::lead::OrgName;

/// Quiet time after the last change before reloading: one kubelet swap or
/// editor save is several events.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// A steady trickle of events must not postpone a reload for ever.
const MAX_DELAY_FACTOR: u32 = 8;

#[derive(Debug, thiserror::Error)]
#[error("cannot watch the mapping directory {dir}: {source}")]
pub struct WatchError {
    dir: PathBuf,
    #[source]
    source: notify::Error,
}

/// Starts watching every organization's mapping directory; the task ends
/// when `shutdown` is cancelled, and the watch with it.
pub fn spawn(
    registry: Arc<Organizations>,
    debounce: Duration,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, WatchError> {
    let mut dirs: HashMap<PathBuf, Vec<OrgName>> = HashMap::new();
    for org in registry.all() {
        dirs.entry(dir_of(org.mapping_file()))
            .or_default()
            .push(org.name().clone());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    // Called on notify's own thread; an unbounded send never blocks it.
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|source| WatchError {
        dir: PathBuf::new(),
        source,
    })?;
    for dir in dirs.keys() {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                dir: dir.clone(),
                source,
            })?;
        tracing::debug!(dir = %dir.display(), "watching mapping directory");
    }
    Ok(tokio::spawn(run(
        watcher, rx, dirs, registry, debounce, shutdown,
    )))
}

async fn run(
    // Owned here so that the watch lives exactly as long as this task.
    _watcher: RecommendedWatcher,
    mut events: mpsc::UnboundedReceiver<notify::Result<Event>>,
    dirs: HashMap<PathBuf, Vec<OrgName>>,
    registry: Arc<Organizations>,
    debounce: Duration,
    shutdown: CancellationToken,
) {
    let mut pending: HashSet<PathBuf> = HashSet::new();
    let mut first_at = Instant::now();
    let mut due = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                let touched = touched_dirs(event, &dirs);
                if touched.is_empty() {
                    continue;
                }
                let now = Instant::now();
                if pending.is_empty() {
                    first_at = now;
                }
                pending.extend(touched);
                due = (now + debounce).min(first_at + debounce * MAX_DELAY_FACTOR);
            }
            () = tokio::time::sleep_until(due), if !pending.is_empty() => {
                for dir in pending.drain() {
                    for org in dirs.get(&dir).into_iter().flatten() {
                        reload(&registry, org);
                    }
                }
            }
        }
    }
}

/// The watched directories an event concerns. Reads (our own included) are
/// ignored; an event whose paths match no directory counts for all of them.
fn touched_dirs(
    event: notify::Result<Event>,
    dirs: &HashMap<PathBuf, Vec<OrgName>>,
) -> Vec<PathBuf> {
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "mapping directory watch reported an error; reloading");
            return dirs.keys().cloned().collect();
        }
    };
    if matches!(event.kind, EventKind::Access(_)) {
        return Vec::new();
    }
    let matched: Vec<PathBuf> = event
        .paths
        .iter()
        .filter_map(|p| p.parent())
        .filter(|d| dirs.contains_key(*d))
        .map(Path::to_owned)
        .collect();
    if matched.is_empty() {
        dirs.keys().cloned().collect()
    } else {
        matched
    }
}

fn reload(registry: &Organizations, org: &OrgName) {
    let file = registry
        .get(org)
        .map(|o| o.mapping_file().to_owned())
        .unwrap_or_default();
    match registry.reload_mapping(org) {
        Ok(true) => {
            crate::metrics::mapping_reloaded(org.as_str(), true);
            tracing::info!(
                %org,
                file = %file.display(),
                generation = registry.generation(),
                "mapping reloaded"
            )
        }
        Ok(false) => tracing::debug!(%org, file = %file.display(), "mapping unchanged"),
        // The error names the file, the key and the reason.
        Err(e) => {
            crate::metrics::mapping_reloaded(org.as_str(), false);
            tracing::error!(
                %org,
                file = %file.display(),
                error = %e,
                "mapping file changed but cannot be used; the previous mapping stays in force"
            )
        }
    }
}

/// `mappings/contoso.yaml` → `mappings`; a bare `contoso.yaml` → `.`.
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, ModifyKind, RenameMode};

    fn dirs() -> HashMap<PathBuf, Vec<OrgName>> {
        HashMap::from([
            (
                PathBuf::from("/etc/maps"),
                vec![OrgName::parse("contoso").unwrap()],
            ),
            (
                PathBuf::from("other"),
                vec![OrgName::parse("fabrikam").unwrap()],
            ),
        ])
    }

    #[test]
    fn events_map_to_their_directory_and_reads_are_ignored() {
        let d = dirs();
        let swap = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path(PathBuf::from("/etc/maps/..data"));
        assert_eq!(touched_dirs(Ok(swap), &d), [PathBuf::from("/etc/maps")]);
        let read = Event::new(EventKind::Access(AccessKind::Any))
            .add_path(PathBuf::from("/etc/maps/contoso.yaml"));
        assert!(touched_dirs(Ok(read), &d).is_empty());
        let elsewhere = Event::new(EventKind::Create(CreateKind::Any))
            .add_path(PathBuf::from("/somewhere/else"));
        assert_eq!(touched_dirs(Ok(elsewhere), &d).len(), 2);
    }

    #[test]
    fn a_bare_file_name_lives_in_the_working_directory() {
        assert_eq!(dir_of(Path::new("contoso.yaml")), PathBuf::from("."));
        assert_eq!(
            dir_of(Path::new("mappings/contoso.yaml")),
            PathBuf::from("mappings")
        );
    }
}
