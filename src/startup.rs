//! Wires the parts together: `Application::build` for `serve` and for tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::{Settings, redact_url_password};
use crate::delivery::{Deps, Organizations, Worker};
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
        for org in settings.organizations.keys() {
            crate::metrics::register_org(org.as_str(), &[store::Destination::Dataverse.as_str()]);
        }
        let store = store::connect(&settings.store.url).await?;
        // A restart is how a configuration change arrives: the cause of a
        // block may be gone, so probe at once rather than at the next interval.
        store
            .probe_blocks_now(time::OffsetDateTime::now_utc())
            .await?;
        let http = outbound::build(settings.delivery.request_timeout)?;
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();

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
            leads: GroupCommit::start(Arc::clone(&store), dedupe_window(&settings)),
            secrets: EndpointSecrets::new(settings.organizations.values()),
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
                tasks.push(tokio::spawn(worker.run(shutdown.clone())));
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

    pub async fn run_until_stopped(self) {
        let mut tasks = self.tasks.into_iter();
        if let Some(server) = tasks.next() {
            let _ = server.await;
        }
        self.shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.run_until_stopped().await;
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
