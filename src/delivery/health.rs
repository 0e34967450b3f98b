//! Whether the delivery worker still runs. The worker is one task; if it
//! ended while the service kept answering, leads would be accepted and never
//! delivered, and nothing would show it. So its end is watched: `/readyz`
//! fails with the reason and the service stops, exiting non-zero, so that
//! whatever runs it (Kubernetes) starts it again.

use std::sync::{Arc, OnceLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::in_flight::panic_message;

/// Why the worker stopped, once it did without being asked to; shared by
/// the supervisor, `/readyz` and the exit status.
#[derive(Debug, Clone, Default)]
pub struct WorkerHealth(Arc<OnceLock<String>>);

impl WorkerHealth {
    /// `None` while the worker runs (or was stopped by a shutdown).
    pub fn failure(&self) -> Option<String> {
        self.0.get().cloned()
    }

    fn fail(&self, reason: String) {
        // Only the first reason counts: the worker ends once.
        let _ = self.0.set(reason);
    }
}

/// Waits for the worker's task to end. An end before `shutdown` was
/// cancelled, or a panic at any time, is recorded in `health` and logged,
/// and `shutdown` is cancelled so that the whole service stops.
pub async fn supervise(worker: JoinHandle<()>, health: WorkerHealth, shutdown: CancellationToken) {
    let reason = match worker.await {
        Ok(()) if shutdown.is_cancelled() => return,
        Ok(()) => "ended without a shutdown".to_owned(),
        Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
        Err(e) => e.to_string(),
    };
    tracing::error!(
        reason = %reason,
        "the delivery worker stopped: stopping the service, which exits with an error"
    );
    health.fail(reason);
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_worker_fails_health_and_stops_the_service() {
        let health = WorkerHealth::default();
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(async { panic!("claim loop broke") });
        supervise(worker, health.clone(), shutdown.clone()).await;
        assert_eq!(
            health.failure().as_deref(),
            Some("panicked: claim loop broke")
        );
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn a_worker_that_returns_on_its_own_fails_health() {
        let health = WorkerHealth::default();
        let shutdown = CancellationToken::new();
        supervise(tokio::spawn(async {}), health.clone(), shutdown.clone()).await;
        assert_eq!(
            health.failure().as_deref(),
            Some("ended without a shutdown")
        );
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn a_worker_stopped_by_a_shutdown_is_healthy() {
        let health = WorkerHealth::default();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let worker = tokio::spawn(async move { token.cancelled().await });
        let supervisor = tokio::spawn(supervise(worker, health.clone(), shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(health.failure(), None, "running");
        shutdown.cancel();
        supervisor.await.unwrap();
        assert_eq!(health.failure(), None, "stopped when asked");
    }
}
