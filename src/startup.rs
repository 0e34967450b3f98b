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
use crate::delivery::{Deps, RetryPolicy, Worker};
use crate::http_client;
use crate::intake::{self, EndpointSecrets, Intake};
use crate::mapping::{MappingError, MappingRegistry};
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
            Deps {
                store: Arc::clone(&store),
                settings: Arc::clone(&settings),
                mappings: Arc::clone(&mappings),
                tokens: Arc::new(TokenProvider::new(http.clone())),
                dataverse: DataverseClient::new(http),
                policy: RetryPolicy::from(&settings.delivery),
            },
            Arc::clone(&wake),
        );

        let intake = Arc::new(Intake {
            store: Arc::clone(&store),
            secrets: EndpointSecrets::new(settings.organizations.values()),
            max_body_bytes: settings.server.max_body_bytes,
            wake,
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
            mappings,
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

    /// Cancelling it stops the listener, then lets deliveries in flight finish.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(self) {
        let _ = self.server.await;
        self.shutdown.cancel();
        let _ = self.admin.await;
        let _ = self.worker.await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.run_until_stopped().await;
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
