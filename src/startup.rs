//! Wires the parts together: `Application::build` for `serve` and for tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::auth::TokenProvider;
use crate::config::{Settings, redact_url_password};
use crate::dataverse::DataverseClient;
use crate::delivery::{Deps, Worker};
use crate::http_client;
use crate::intake::{self, EndpointSecrets, Intake};
use crate::mapping::{MappingError, MappingRegistry, watch};
use crate::store::{self, Store, StoreError};

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

/// How often the metrics recorder is tidied (histogram buckets drained).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// A running leadbridge: public listener, admin listener and delivery worker.
pub struct Application {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    admin: JoinHandle<()>,
    worker: JoinHandle<()>,
    mappings: Arc<MappingRegistry>,
    /// Mapping hot reload; `None` if the directories could not be watched.
    mapping_watch: Option<JoinHandle<()>>,
}

impl Application {
    /// Loads mappings, opens the store, binds both listeners and starts the
    /// worker. Port 0 in `server.listen` / `admin.listen` picks a free port (tests).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let mappings = MappingRegistry::load(
            settings
                .organizations
                .values()
                .map(|o| (&o.name, o.mapping.as_path())),
        )
        .map_err(StartupError::Mappings)?;
        let mappings = Arc::new(mappings);
        let metrics = crate::metrics::install();
        settings
            .organizations
            .keys()
            .for_each(crate::metrics::register_org);
        let store = store::connect(&settings.store.url).await?;
        let http = http_client::build(settings.delivery.request_timeout)?;
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();

        let worker = Worker::new(
            Deps::new(
                Arc::clone(&store),
                Arc::clone(&settings),
                Arc::clone(&mappings),
                Arc::new(TokenProvider::new(http.clone())),
                DataverseClient::new(http),
            ),
            Arc::clone(&wake),
        );

        let intake = Arc::new(Intake {
            store: Arc::clone(&store),
            secrets: EndpointSecrets::new(settings.organizations.values()),
            max_body_bytes: settings.server.max_body_bytes,
            dedupe_window: dedupe_window(&settings),
            wake,
            auth_failures: Intake::auth_failure_limiter(settings.server.auth_failures_per_minute),
        });
        let (listener, addr) = bind(settings.server.listen).await?;
        let (admin_listener, admin_addr) = bind(settings.admin.listen).await?;
        let server = tokio::spawn(
            warp::serve(intake::routes(intake))
                .incoming(listener)
                .graceful(shutdown.clone().cancelled_owned())
                .run(),
        );
        let admin_state = Arc::new(AdminState {
            settings: Arc::clone(&settings),
            store: Arc::clone(&store),
            mappings: Arc::clone(&mappings),
            metrics: metrics.clone(),
        });
        let admin = tokio::spawn(
            warp::serve(admin::routes(admin_state))
                .incoming(admin_listener)
                .graceful(shutdown.clone().cancelled_owned())
                .run(),
        );
        tokio::spawn(upkeep(metrics, shutdown.clone()));
        let worker = tokio::spawn(worker.run(shutdown.clone()));
        tokio::spawn(purge_periodically(
            Arc::clone(&store),
            Arc::clone(&settings),
            shutdown.clone(),
        ));
        let mapping_watch = start_mapping_watch(&mappings, &shutdown);
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
            shutdown,
            server,
            admin,
            worker,
            mappings,
            mapping_watch,
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

    /// The mappings in force; [`MappingRegistry::generation`] tells reloads.
    pub fn mappings(&self) -> Arc<MappingRegistry> {
        Arc::clone(&self.mappings)
    }

    /// Cancelling it stops the listener, then lets deliveries in flight finish.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(self) {
        let _ = self.server.await;
        self.shutdown.cancel();
        let _ = self.admin.await;
        let _ = self.worker.await;
        if let Some(watch) = self.mapping_watch {
            let _ = watch.await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.run_until_stopped().await;
    }
}

fn dedupe_window(settings: &Settings) -> Option<std::time::Duration> {
    Some(settings.server.dedupe_window).filter(|w| !w.is_zero())
}

/// Deletes old leads (personal data) and expired fingerprints, hourly.
async fn purge_periodically(
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = time::OffsetDateTime::now_utc();
        let window = dedupe_window(&settings).unwrap_or_default();
        match store
            .purge(now - settings.store.retention, now - window)
            .await
        {
            Ok(p) if p.leads > 0 || p.fingerprints > 0 => {
                tracing::info!(
                    leads = p.leads,
                    fingerprints = p.fingerprints,
                    "purged expired data"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed; will try again"),
        }
    }
}

/// Without a watch the service still works, on the mappings loaded at start.
fn start_mapping_watch(
    mappings: &Arc<MappingRegistry>,
    shutdown: &CancellationToken,
) -> Option<JoinHandle<()>> {
    match watch::spawn(
        Arc::clone(mappings),
        watch::DEFAULT_DEBOUNCE,
        shutdown.clone(),
    ) {
        Ok(task) => Some(task),
        Err(e) => {
            tracing::error!(error = %e, "mapping files will not be reloaded when they change");
            None
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartupError> {
    let err = |source| StartupError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// The Prometheus recorder needs a periodic tidy-up, or histograms grow.
async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}
