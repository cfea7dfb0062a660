//! Serving one HTTP connection (HTTP/2, or HTTP/1.1 with upgrades) with a tower service, with
//! limits and graceful shutdown: shared by the inbound and outbound listeners. Also the
//! listeners' global connection limit ([`ConnLimit`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::Service;

use crate::body::Body;
use crate::config::{Config, H2_CONNECTION_WINDOW, H2_STREAM_WINDOW};
use crate::runtime::Drain;

/// How long in-flight requests of a connection whose authorization was revoked may take
/// before the connection is dropped.
pub const REVOKE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves one HTTP connection (`h2` or HTTP/1.1 with upgrades) with a tower service
/// (cloned for each request) until it ends, or until shutdown begins, then closes it
/// gracefully.
pub async fn serve<I, S>(io: I, h2: bool, config: &Config, drain: &Drain, svc: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    serve_until(io, h2, config, drain, svc, std::future::pending()).await
}

/// [`serve`], and when `revoke` resolves (the client is no longer authorized) the
/// connection is shut down gracefully (HTTP/2 GOAWAY) and dropped after [`REVOKE_GRACE`].
pub async fn serve_until<I, S, R>(
    io: I,
    h2: bool,
    config: &Config,
    drain: &Drain,
    svc: S,
    revoke: R,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    R: std::future::Future<Output = ()>,
{
    let io = TokioIo::new(io);
    let mut signal = drain.signal();
    tokio::pin!(revoke);
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(config.h2_max_concurrent_streams)
            .max_header_list_size(config.max_header_bytes as u32)
            .max_pending_accept_reset_streams(50)
            .max_local_error_reset_streams(Some(1024))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_send_buf_size(256 * 1024)
            .keep_alive_interval(Some(std::time::Duration::from_secs(20)))
            .keep_alive_timeout(std::time::Duration::from_secs(20));
        let activity = Activity::default();
        let svc = TowerToHyperService::new(Track {
            inner: svc,
            activity: activity.clone(),
        });
        let conn = b.serve_connection(io, svc);
        tokio::pin!(conn);
        let revoked = tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("h2 connection: {e}") } return }
            _ = signal.changed() => false,
            _ = &mut revoke => true,
            _ = activity.idle(config.h2_idle_timeout) => {
                tracing::debug!("closing an idle HTTP/2 connection (TULLE_PROXY_H2_IDLE_TIMEOUT)");
                false
            }
        };
        conn.as_mut().graceful_shutdown();
        finish(conn, revoked).await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_headers(128);
        let conn = b
            .serve_connection(io, TowerToHyperService::new(svc))
            .with_upgrades();
        tokio::pin!(conn);
        let revoked = tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("http/1 connection: {e}") } return }
            _ = signal.changed() => false,
            _ = &mut revoke => true,
        };
        conn.as_mut().graceful_shutdown();
        finish(conn, revoked).await;
    }
}

/// Waits for a connection shutting down; a revoked one at most [`REVOKE_GRACE`].
async fn finish<F: std::future::Future>(conn: F, revoked: bool) {
    if revoked {
        tracing::info!("closing a connection: its client is no longer authorized");
        let _ = tokio::time::timeout(REVOKE_GRACE, conn).await;
    } else {
        let _ = conn.await;
    }
}

/// When a connection's requests were last active, and how many wait for their response.
#[derive(Debug, Clone)]
struct Activity(Arc<ActivityState>);

#[derive(Debug)]
struct ActivityState {
    waiting: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(ActivityState {
            waiting: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }))
    }
}

impl Activity {
    fn touch(&self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Resolves once no request has waited for its response for `timeout`. A response
    /// body still streaming does not count (a graceful shutdown lets it finish).
    async fn idle(&self, timeout: Duration) {
        loop {
            let wait = if self.0.waiting.load(Ordering::Acquire) > 0 {
                timeout
            } else {
                let last = *self.0.last.lock().unwrap_or_else(|e| e.into_inner());
                timeout.saturating_sub(last.elapsed())
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counts a request as waiting until its response (or its cancellation).
struct Waiting(Activity);

impl Waiting {
    fn new(a: &Activity) -> Self {
        a.0.waiting.fetch_add(1, Ordering::AcqRel);
        a.touch();
        Waiting(a.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.touch();
        self.0.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service recording its connection's [`Activity`].
#[derive(Clone)]
struct Track<S> {
    inner: S,
    activity: Activity,
}

impl<S, R> Service<R> for Track<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let waiting = Waiting::new(&self.activity);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(waiting);
            r
        })
    }
}

/// A listener's limit on connections open at once; past it new connections are reset at
/// once (the client sees the connection reset, as when refused), counted and logged (at
/// most once a second).
#[derive(Debug)]
pub struct ConnLimit {
    what: &'static str,
    env: &'static str,
    permits: Arc<Semaphore>,
    max: usize,
    last_warning: AtomicU64,
    refused: prometheus_client::metrics::counter::Counter,
}

impl ConnLimit {
    /// At most `max` connections of the `what` listener, set by `env`; refusals counted in
    /// `refused`.
    pub fn new(
        what: &'static str,
        env: &'static str,
        max: usize,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        ConnLimit {
            what,
            env,
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            last_warning: AtomicU64::new(0),
            refused,
        }
    }

    /// A permit for `sock` held for the connection's life, or `None`: `sock` was reset.
    pub fn admit(&self, sock: &tokio::net::TcpStream) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        self.refused.inc();
        // A reset (RST) instead of an orderly close: the client learns at once, and the
        // proxy keeps no TIME_WAIT state for it.
        let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                "{} connection refused: {} connections open, the limit ({})",
                self.what,
                self.max,
                self.env
            );
        }
        None
    }
}
