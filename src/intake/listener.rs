//! The public listener's connections: warp's routes served through hyper
//! with the limits the internet needs, which `warp::serve` lacks (it runs
//! hyper without a timer, so nothing ever times out):
//!
//! - a connection must send each request's headers within
//!   `server.header_read_timeout` (hyper's own timer), and a kept-alive one
//!   with nothing moving either way is closed after `server.idle_timeout`;
//!   the body's deadline is the handler's (`server.body_read_timeout`);
//! - at most `server.max_connections` are open; the next waits in the
//!   kernel's listen backlog until one closes, so a burst is slowed, never
//!   refused;
//! - on shutdown, requests in flight finish (within `delivery.shutdown_grace`),
//!   idle and stalled connections are closed at once.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::reply::Response;

/// The client's address, put into each request's extensions for the
/// routes (`warp::addr::remote()` only works under `warp::serve`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// How long requests in flight may take to finish after shutdown.
    pub shutdown_grace: Duration,
}

/// Serves `routes` on `listener` until `shutdown`, then winds down.
pub async fn serve<F>(listener: TcpListener, routes: F, limits: Limits, shutdown: CancellationToken)
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let hard_stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, addr)) => {
                let routes = routes.clone();
                let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
                connections.spawn(async move {
                    connection(stream, addr, routes, limits, shutdown, hard_stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors, or a connection reset before accept:
                // wait a little rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = &mut grace => {
                hard_stop.cancel();
                break;
            }
            next = connections.join_next() => if next.is_none() { break },
        }
    }
    while connections.join_next().await.is_some() {}
}

async fn connection<F>(
    stream: TcpStream,
    addr: SocketAddr,
    routes: F,
    limits: Limits,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let routes = Arc::new(TowerToHyperService::new(warp::service(routes)));
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(addr));
        let routes = Arc::clone(&routes);
        let activity = Arc::clone(&requests);
        activity.request_started();
        async move {
            let response = routes.call(req).await;
            activity.request_finished();
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut winding_down = false;
    loop {
        let idle_deadline = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %addr, error = %e, "connection ended");
                }
                return;
            }
            _ = shutdown.cancelled(), if !winding_down => {
                // Finishes the request in flight, closes an idle connection.
                winding_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = hard_stop.cancelled() => return,
            _ = tokio::time::sleep_until(idle_deadline) => {
                if activity.is_idle(limits.idle_timeout) {
                    tracing::debug!(client = %addr, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// What a connection last did: when bytes last moved, and whether a
/// request is being handled (its body has a deadline of its own).
struct Activity {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    last_progress: Instant,
    in_flight: usize,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                last_progress: Instant::now(),
                in_flight: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ActivityState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn progressed(&self) {
        self.with(|s| s.last_progress = Instant::now());
    }

    fn request_started(&self) {
        self.with(|s| {
            s.in_flight = s.in_flight.saturating_add(1);
            s.last_progress = Instant::now();
        });
    }

    fn request_finished(&self) {
        self.with(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.last_progress = Instant::now();
        });
    }

    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.with(|s| s.last_progress + idle)
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.with(|s| s.in_flight == 0 && s.last_progress.elapsed() >= idle)
    }
}

/// A TCP stream that records every read and write that moved bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.progressed();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.progressed();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
