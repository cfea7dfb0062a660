//! Connections from the proxy to endpoints and applications.
//!
//! [`H2Client`] keeps ONE multiplexed HTTP/2 connection per endpoint (mesh mTLS with ALPN
//! `tulle.h2`, or plain h2 to an application), re-established on demand. [`upgrade`]
//! forwards an HTTP/1.1 `Upgrade` request on a dedicated connection and splices the two
//! upgraded streams.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Body, ProxyError, proxied};
use crate::io::{CountingIo, connect, write_header};
use crate::metrics::TcpMetrics;

/// Mesh TLS settings for a connection to a meshed peer.
#[derive(Debug, Clone)]
pub struct MeshTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    pub identity: String,
}

/// One HTTP/2 connection to an endpoint, shared by all requests to it.
#[derive(Debug)]
pub struct H2Client {
    addr: SocketAddr,
    tls: Option<MeshTls>,
    connect_timeout: Duration,
    metrics: Option<TcpMetrics>,
    send: Mutex<Option<SendRequest<Incoming>>>,
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

    fn cached(&self) -> Option<SendRequest<Incoming>> {
        let guard = self.send.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|s| s.is_ready()).cloned()
    }

    async fn sender(&self) -> Result<SendRequest<Incoming>, ProxyError> {
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

    async fn connect(&self) -> Result<SendRequest<Incoming>, ProxyError> {
        let tcp = connect(self.addr, self.connect_timeout).await?;
        match &self.tls {
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let io = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(tls.name.clone(), tcp),
                )
                .await
                .map_err(|_| ProxyError::ConnectTimeout(self.addr))?
                .map_err(|source| ProxyError::Tls {
                    addr: self.addr,
                    identity: tls.identity.clone(),
                    source,
                })?;
                self.handshake(io).await
            }
            None => self.handshake(tcp).await,
        }
    }

    async fn handshake<I>(&self, io: I) -> Result<SendRequest<Incoming>, ProxyError>
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
            .initial_stream_window_size(256 * 1024)
            .initial_connection_window_size(1024 * 1024)
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
    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, ProxyError> {
        let mut s = self.sender().await?;
        s.send_request(req)
            .await
            .map_err(|e| ProxyError::Upstream(self.addr, e))
    }
}

/// Forwards an HTTP/1.1 upgrade request on a dedicated connection (with mesh TLS and a
/// transport header carrying `port` when `tls` is set) and splices both sides after `101`.
pub async fn upgrade(
    addr: SocketAddr,
    tls: Option<(MeshTls, u16)>,
    connect_timeout: Duration,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let tcp = connect(addr, connect_timeout).await?;
    let io = match tls {
        Some((tls, port)) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let mut io = connector
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|source| ProxyError::Tls {
                    addr,
                    identity: tls.identity.clone(),
                    source,
                })?;
            write_header(&mut io, port)
                .await
                .map_err(|e| ProxyError::Connect(addr, e))?;
            Either::Left(io)
        }
        None => Either::Right(tcp),
    };
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(EitherIo(io)))
        .await
        .map_err(|e| ProxyError::Handshake(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, "upgrade connection ended: {e}");
        }
    });
    let mut resp = send
        .send_request(req)
        .await
        .map_err(|e| ProxyError::Upstream(addr, e))?;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((c, s)) => {
                    let mut c = TokioIo::new(c);
                    let mut s = TokioIo::new(s);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                }
                Err(e) => tracing::debug!(%addr, "upgrade failed: {e}"),
            }
        });
    }
    Ok(crate::error::proxied(resp))
}

/// Either of two IO types (hyper's and http-body-util's `Either` are not IO).
#[derive(Debug)]
pub struct EitherIo<A, B>(pub Either<A, B>);

impl<A: AsyncRead + Unpin, B: AsyncRead + Unpin> AsyncRead for EitherIo<A, B> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.0 {
            Either::Left(a) => std::pin::Pin::new(a).poll_read(cx, buf),
            Either::Right(b) => std::pin::Pin::new(b).poll_read(cx, buf),
        }
    }
}

impl<A: AsyncWrite + Unpin, B: AsyncWrite + Unpin> AsyncWrite for EitherIo<A, B> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.0 {
            Either::Left(a) => std::pin::Pin::new(a).poll_write(cx, buf),
            Either::Right(b) => std::pin::Pin::new(b).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.0 {
            Either::Left(a) => std::pin::Pin::new(a).poll_flush(cx),
            Either::Right(b) => std::pin::Pin::new(b).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.0 {
            Either::Left(a) => std::pin::Pin::new(a).poll_shutdown(cx),
            Either::Right(b) => std::pin::Pin::new(b).poll_shutdown(cx),
        }
    }
}

/// A pool of HTTP/1.1 connections to one application port (inbound side). A connection goes
/// back to the pool when its response body is done (or dropped).
#[derive(Debug)]
pub struct H1Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: Mutex<Vec<hyper::client::conn::http1::SendRequest<Incoming>>>,
}

const MAX_IDLE_H1: usize = 256;

impl H1Pool {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(H1Pool {
            addr,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn put(&self, send: hyper::client::conn::http1::SendRequest<Incoming>) {
        if send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_H1 {
            idle.push(send);
        }
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, ProxyError> {
        let tcp = connect(self.addr, self.connect_timeout).await?;
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ProxyError::Handshake(self.addr, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn checkout(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, ProxyError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                Some(_) => {}
                None => {
                    let mut s = self.connect().await?;
                    s.ready()
                        .await
                        .map_err(|e| ProxyError::Upstream(self.addr, e))?;
                    return Ok(s);
                }
            }
        }
    }

    /// Sends a request (origin-form URI, Host header set by the caller).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        let mut s = self.checkout().await?;
        let resp = s
            .send_request(req)
            .await
            .map_err(|e| ProxyError::Upstream(self.addr, e))?;
        let mut resp = proxied(resp);
        if let Either::Left(body) = resp.body_mut() {
            body.release = Some((self.clone(), s));
        }
        Ok(resp)
    }
}
