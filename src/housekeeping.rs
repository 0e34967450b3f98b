//! Periodic upkeep that `serve` runs beside the listeners and the worker:
//! the retention purge and the metrics recorder's tidy-up.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often old data is purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the metrics recorder is tidied (histogram buckets drained).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// What the purge keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished leads (personal data) are deleted after this long.
    pub leads: Duration,
    /// Fingerprints are needed for the de-duplication window only.
    pub fingerprints: Duration,
}

/// Deletes old leads and expired fingerprints, hourly, until `shutdown`.
pub async fn purge_periodically(
    store: Arc<dyn Store>,
    retention: Retention,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = OffsetDateTime::now_utc();
        match store
            .purge(now - retention.leads, now - retention.fingerprints)
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

/// The Prometheus recorder needs a periodic tidy-up, or histograms grow.
pub async fn metrics_upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}
