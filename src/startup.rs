//! Wires the parts together: `Application::build` for `serve` and for tests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenProvider;
use crate::config::Settings;
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

/// A running leadbridge: public listener plus delivery worker.
pub struct Application {
    addr: SocketAddr,
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    mappings: Arc<MappingRegistry>,
    /// Mapping hot reload; `None` if the directories could not be watched.
    mapping_watch: Option<JoinHandle<()>>,
}

impl Application {
    /// Loads mappings, opens the store, binds the listener and starts the
    /// worker. Port 0 in `server.listen` picks a free port (tests).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let mappings = Arc::new(
            MappingRegistry::load(
                settings
                    .organizations
                    .values()
                    .map(|o| (&o.name, o.mapping.as_path())),
            )
            .map_err(StartupError::Mappings)?,
        );
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
        });
        let listener = tokio::net::TcpListener::bind(settings.server.listen)
            .await
            .map_err(|source| StartupError::Bind {
                addr: settings.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.server.listen,
            source,
        })?;
        let server = tokio::spawn(
            warp::serve(intake::routes(intake))
                .incoming(listener)
                .graceful(shutdown.clone().cancelled_owned())
                .run(),
        );
        let worker = tokio::spawn(worker.run(shutdown.clone()));
        tokio::spawn(purge_periodically(
            Arc::clone(&store),
            Arc::clone(&settings),
            shutdown.clone(),
        ));
        let mapping_watch = start_mapping_watch(&mappings, &shutdown);
        tracing::info!(%addr, store = %redact_url(&settings.store.url), "leadbridge listening");
        Ok(Self {
            addr,
            settings,
            store,
            shutdown,
            server,
            worker,
            mappings,
            mapping_watch,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

/// Store URLs may carry a password (PostgreSQL); logs get the scheme and host only.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
