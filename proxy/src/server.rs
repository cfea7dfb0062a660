//! Serving one HTTP connection (HTTP/2, or HTTP/1.1 with upgrades) with a tower service, with
//! limits and graceful shutdown: shared by the inbound and outbound listeners.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
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
    let svc = TowerToHyperService::new(svc);
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
        let conn = b.serve_connection(io, svc);
        tokio::pin!(conn);
        let revoked = tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("h2 connection: {e}") } return }
            _ = signal.changed() => false,
            _ = &mut revoke => true,
        };
        conn.as_mut().graceful_shutdown();
        finish(conn, revoked).await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_headers(128);
        let conn = b.serve_connection(io, svc).with_upgrades();
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
