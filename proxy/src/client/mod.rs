//! Connections from the proxy to endpoints and applications.
//!
//! [`H2Client`] keeps ONE multiplexed HTTP/2 connection per endpoint (mesh mTLS with ALPN
//! `tulle.h2`, or plain h2 to an application), re-established on demand. [`H1Pool`] pools
//! HTTP/1.1 connections to an application port. [`upgrade`] forwards an HTTP/1.1 `Upgrade`
//! request on a dedicated connection and splices the two upgraded streams. The tower
//! services at the bottom of the stacks are [`EndpointClient`] (outbound) and [`AppClient`]
//! (inbound).

mod h1;
mod h2;
mod service;

pub use h1::H1Pool;
pub use h2::H2Client;
pub use service::{AppClient, EndpointClient, PlainH1};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::body::{Body, RequestBody};
use crate::conn::{connect, write_header};
use crate::error::ProxyError;

/// Mesh TLS settings for a connection to a meshed peer.
#[derive(Debug, Clone)]
pub struct MeshTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    pub identity: String,
}

impl MeshTls {
    /// The mesh TLS handshake with `addr` over `tcp` within `timeout`; the peer must prove
    /// the expected identity.
    pub async fn handshake(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, ProxyError> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        tokio::time::timeout(timeout, connector.connect(self.name.clone(), tcp))
            .await
            .map_err(|_| ProxyError::ConnectTimeout(addr))?
            .map_err(|source| ProxyError::Tls {
                addr,
                identity: self.identity.clone(),
                source,
            })
    }

    /// [`MeshTls::handshake`], then the transport header carrying the target `port` (the
    /// ALPNs `tulle.tcp` and `tulle.h1`).
    pub async fn handshake_with_header(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
        timeout: Duration,
        port: u16,
    ) -> Result<TlsStream<TcpStream>, ProxyError> {
        let mut io = self.handshake(addr, tcp, timeout).await?;
        write_header(&mut io, port)
            .await
            .map_err(|e| ProxyError::Connect(addr, e))?;
        Ok(io)
    }
}

/// Forwards an HTTP/1.1 upgrade request on a dedicated connection (with mesh TLS and a
/// transport header carrying `port` when `tls` is set) and splices both sides after `101`.
pub async fn upgrade(
    addr: SocketAddr,
    tls: Option<(MeshTls, u16)>,
    connect_timeout: Duration,
    mut req: Request<RequestBody>,
) -> Result<Response<Body>, ProxyError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let tcp = connect(addr, connect_timeout).await?;
    let io = match tls {
        Some((tls, port)) => Either::Left(
            tls.handshake_with_header(addr, tcp, connect_timeout, port)
                .await?,
        ),
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
    Ok(crate::body::proxied(resp))
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
