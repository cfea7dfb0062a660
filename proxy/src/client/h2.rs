//! One multiplexed HTTP/2 connection per endpoint, shared by all requests to it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{EitherIo, MeshTls};
use crate::body::RequestBody;
use crate::config::{H2_CONNECTION_WINDOW, H2_STREAM_WINDOW};
use crate::conn::{CountingIo, connect};
use crate::error::ProxyError;
use crate::metrics::TcpMetrics;

/// One HTTP/2 connection to an endpoint, shared by all requests to it.
#[derive(Debug)]
pub struct H2Client {
    addr: SocketAddr,
    tls: Option<MeshTls>,
    connect_timeout: Duration,
    metrics: Option<TcpMetrics>,
    send: Mutex<Option<SendRequest<RequestBody>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Client {
    pub fn new(
        addr: SocketAddr,
        tls: Option<MeshTls>,
        connect_timeout: Duration,
        metrics: Option<TcpMetrics>,
    ) -> Self {
        H2Client {
            addr,
            tls,
            connect_timeout,
            metrics,
            send: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<SendRequest<RequestBody>> {
        let guard = self.send.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|s| s.is_ready()).cloned()
    }

    async fn sender(&self) -> Result<SendRequest<RequestBody>, ProxyError> {
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        let _one = self.connecting.lock().await;
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        let s = self.connect().await?;
        *self.send.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        Ok(s)
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, ProxyError> {
        let tcp = connect(self.addr, self.connect_timeout).await?;
        match &self.tls {
            Some(tls) => {
                let io = tls.handshake(self.addr, tcp, self.connect_timeout).await?;
                self.handshake(io).await
            }
            None => self.handshake(tcp).await,
        }
    }

    async fn handshake<I>(&self, io: I) -> Result<SendRequest<RequestBody>, ProxyError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (io, guard) = match &self.metrics {
            Some(m) => (
                Either::Left(CountingIo::new(io, m.read.clone(), m.write.clone())),
                Some(m.open()),
            ),
            None => (Either::Right(io), None),
        };
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .handshake(TokioIo::new(EitherIo(io)))
            .await
            .map_err(|e| ProxyError::Handshake(self.addr, e))?;
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, "h2 connection ended: {e}");
            }
            drop(guard);
        });
        Ok(send)
    }

    /// Sends a request on the shared connection.
    pub async fn send(&self, req: Request<RequestBody>) -> Result<Response<Incoming>, ProxyError> {
        let mut s = self.sender().await?;
        s.send_request(req)
            .await
            .map_err(|e| ProxyError::Upstream(self.addr, e))
    }
}
