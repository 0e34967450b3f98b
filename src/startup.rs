//! Wires the parts together: `Application::build` for `serve` and for tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::{Settings, redact_url_password};
use crate::delivery::{self, Deps, Organizations, Worker, WorkerHealth};
use crate::housekeeping::{self, Retention};
use crate::intake::{self, AuthFailures, EndpointSecrets, Intake};
use crate::mapping::MappingError;
use crate::mapping_watch;
use crate::outbound;
use crate::store::{self, GroupCommit, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Mappings(Vec<MappingError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// The service stopped because its delivery worker did: what
/// [`Application::run_until_stopped`] returns then, so that `serve` exits
/// non-zero and gets restarted.
#[derive(Debug, thiserror::Error)]
#[error("the delivery worker stopped: {reason}")]
pub struct WorkerStopped {
    pub reason: String,
}

/// Transactions intake commits at once on PostgreSQL (SQLite has one writer).
const POSTGRES_COMMITTERS: usize = 4;

/// Who drives the delivery worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMode {
    /// Its own task, woken by intake and by due retries (`serve`).
    Background,
    /// Only [`Application::run_worker_once`] runs it: tests decide when
    /// deliveries are attempted instead of waiting for them.
    Manual,
}

/// A running leadbridge: public listener, admin listener and delivery worker.
pub struct Application {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    organizations: Arc<Organizations>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Set in [`WorkerMode::Manual`].
    worker: Option<Worker>,
    worker_health: WorkerHealth,
}

impl Application {
    /// Loads mappings, opens the store, binds both listeners and starts the
    /// worker. Port 0 in `server.listen` / `admin.listen` picks a free port (tests).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, WorkerMode::Background).await
    }

    pub async fn build_with(settings: Settings, mode: WorkerMode) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let organizations =
            Arc::new(Organizations::load(&settings).map_err(StartupError::Mappings)?);
        let metrics = crate::metrics::install();
        for (name, org) in &settings.organizations {
            let destinations: Vec<&'static str> = org
                .destinations()
                .into_iter()
                .map(store::Destination::as_str)
                .collect();
            crate::metrics::register_org(name.as_str(), &destinations);
        }
        let store = store::connect(&settings.store.url).await?;
        // A restart is how a configuration change arrives: the cause of a
        // block may be gone, so probe at once rather than at the next interval.
        store
            .probe_blocks_now(time::OffsetDateTime::now_utc())
            .await?;
        if store::single_process(&settings.store.url) {
            // One process per SQLite file: a claim found now was left by a
            // process that died, so its deliveries are due at once instead of
            // when the lease runs out. (On PostgreSQL other replicas hold live
            // claims; a dead one's expire after `delivery.lease`.)
            let released = store.release_all_claims().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "handed back the deliveries a previous process had claimed"
                );
            }
        }
        let http = outbound::build(settings.delivery.request_timeout)?;
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let worker_health = WorkerHealth::default();

        let worker = Worker::new(
            Deps::new(
                Arc::clone(&store),
                &settings,
                Arc::clone(&organizations),
                http,
            ),
            Arc::clone(&wake),
        );
        let intake = Arc::new(Intake {
            leads: GroupCommit::start(
                Arc::clone(&store),
                dedupe_window(&settings),
                if store::single_process(&settings.store.url) {
                    1
                } else {
                    POSTGRES_COMMITTERS
                },
            ),
            secrets: EndpointSecrets::new(settings.organizations.values()),
            destinations: settings
                .organizations
                .iter()
                .map(|(name, org)| (name.clone(), org.destinations()))
                .collect(),
            max_body_bytes: settings.server.max_body_bytes,
            body_read_timeout: settings.server.body_read_timeout,
            wake,
            auth_failures: AuthFailures::new(settings.server.auth_failures_per_minute),
        });
        let admin_state = Arc::new(AdminState {
            settings: Arc::clone(&settings),
            store: Arc::clone(&store),
            organizations: Arc::clone(&organizations),
            metrics: metrics.clone(),
            worker: worker_health.clone(),
        });

        let (listener, addr) = bind(settings.server.listen).await?;
        let (admin_listener, admin_addr) = bind(settings.admin.listen).await?;
        let mut tasks = vec![
            // First: `run_until_stopped` ends with the public listener.
            tokio::spawn(intake::listener::serve(
                listener,
                intake::routes(intake),
                intake::listener::Limits {
                    header_read_timeout: settings.server.header_read_timeout,
                    idle_timeout: settings.server.idle_timeout,
                    max_connections: settings.server.max_connections,
                    shutdown_grace: settings.delivery.shutdown_grace,
                },
                shutdown.clone(),
            )),
            tokio::spawn(
                warp::serve(admin::routes(admin_state))
                    .incoming(admin_listener)
                    .graceful(shutdown.clone().cancelled_owned())
                    .run(),
            ),
            tokio::spawn(housekeeping::metrics_upkeep(metrics, shutdown.clone())),
            tokio::spawn(housekeeping::purge_periodically(
                Arc::clone(&store),
                Retention {
                    leads: settings.store.retention,
                    fingerprints: dedupe_window(&settings).unwrap_or_default(),
                },
                shutdown.clone(),
            )),
        ];
        let worker = match mode {
            WorkerMode::Background => {
                let running = tokio::spawn(worker.run(shutdown.clone()));
                tasks.push(tokio::spawn(delivery::supervise(
                    running,
                    worker_health.clone(),
                    shutdown.clone(),
                )));
                None
            }
            WorkerMode::Manual => Some(worker),
        };
        // Without a watch the service still works, on the mappings loaded at start.
        match mapping_watch::spawn(
            Arc::clone(&organizations),
            mapping_watch::DEFAULT_DEBOUNCE,
            shutdown.clone(),
        ) {
            Ok(task) => tasks.push(task),
            Err(e) => {
                tracing::error!(error = %e, "mapping files will not be reloaded when they change")
            }
        }
        tracing::info!(
            %addr,
            %admin_addr,
            admin_api = settings.admin.token.is_some(),
            store = %redact_url_password(&settings.store.url),
            "leadbridge listening"
        );
        Ok(Self {
            addr,
            admin_addr,
            settings,
            store,
            organizations,
            shutdown,
            tasks,
            worker,
            worker_health,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/readyz`, `/metrics` and `/admin/...` are served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The organizations and their mappings in force;
    /// [`Organizations::generation`] tells reloads.
    pub fn organizations(&self) -> Arc<Organizations> {
        Arc::clone(&self.organizations)
    }

    /// One pass of the delivery worker ([`crate::delivery::Worker::run_once`]):
    /// the number of deliveries it claimed and attempted. Zero in [`WorkerMode::Background`],
    /// where the worker's own task does the work.
    pub async fn run_worker_once(&self) -> usize {
        match &self.worker {
            Some(worker) => worker.run_once().await,
            None => 0,
        }
    }

    /// Cancelling it stops the listener, then lets deliveries in flight finish.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until a shutdown (the token, or the delivery worker stopping on
    /// its own); `Err` when the worker stopped.
    pub async fn run_until_stopped(self) -> Result<(), WorkerStopped> {
        wait_for_tasks(self.tasks, &self.shutdown, &self.worker_health).await
    }

    /// Stops the service and waits for it. A worker that had stopped on
    /// its own before was logged by its supervisor; `serve` learns it from
    /// [`Application::run_until_stopped`].
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.run_until_stopped().await;
    }
}

/// Waits for the public listener (the first task), which ends on a
/// shutdown; then cancels `shutdown` for the rest and waits for them.
async fn wait_for_tasks(
    tasks: Vec<JoinHandle<()>>,
    shutdown: &CancellationToken,
    worker: &WorkerHealth,
) -> Result<(), WorkerStopped> {
    let mut tasks = tasks.into_iter();
    if let Some(server) = tasks.next() {
        let _ = server.await;
    }
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    match worker.failure() {
        None => Ok(()),
        Some(reason) => Err(WorkerStopped { reason }),
    }
}

fn dedupe_window(settings: &Settings) -> Option<Duration> {
    Some(settings.server.dedupe_window).filter(|w| !w.is_zero())
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartupError> {
    let err = |source| StartupError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that dies takes the whole service down, with its reason.
    #[tokio::test]
    async fn a_dying_worker_stops_the_service_with_an_error() {
        let shutdown = CancellationToken::new();
        let health = WorkerHealth::default();
        let listener = tokio::spawn(shutdown.clone().cancelled_owned());
        let worker = tokio::spawn(async { panic!("out of memory for leads") });
        let tasks = vec![
            listener,
            tokio::spawn(delivery::supervise(
                worker,
                health.clone(),
                shutdown.clone(),
            )),
        ];
        let stopped = wait_for_tasks(tasks, &shutdown, &health).await;
        assert_eq!(
            stopped.map_err(|e| e.to_string()),
            Err("the delivery worker stopped: panicked: out of memory for leads".to_owned())
        );
    }

    #[tokio::test]
    async fn a_shutdown_is_no_error() {
        let shutdown = CancellationToken::new();
        let health = WorkerHealth::default();
        let token = shutdown.clone();
        let worker = tokio::spawn(async move { token.cancelled().await });
        let tasks = vec![
            tokio::spawn(shutdown.clone().cancelled_owned()),
            tokio::spawn(delivery::supervise(
                worker,
                health.clone(),
                shutdown.clone(),
            )),
        ];
        shutdown.cancel();
        assert!(wait_for_tasks(tasks, &shutdown, &health).await.is_ok());
    }
}
