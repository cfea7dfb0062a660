//! TLS for tonic servers and clients over rustls (aws-lc-rs), without tonic's own TLS
//! features: the caller builds the rustls configs (and so controls certificate reload and
//! client-certificate checks).
//!
//! - [`incoming`] turns a [`TcpListener`] into a stream of TLS connections for
//!   `tonic::transport::Server::serve_with_incoming`; each connection exposes the peer
//!   address and client certificates through [`TlsConnectInfo`].
//! - [`channel`] builds a lazy tonic [`Channel`] that dials TCP, then TLS with a given
//!   server name.

use futures::Stream;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tonic::transport::{Channel, Endpoint, server::Connected};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol gRPC speaks.
pub const ALPN_H2: &[u8] = b"h2";

/// Bounds on what a TLS listener accepts (issue 15: unbounded handshakes let any client
/// that reaches the port make the server spend CPU and memory without limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TLS handshakes in progress at once; further connections wait in the listen backlog
    /// (they are not read) until a handshake finishes or times out.
    pub max_handshakes: usize,
    /// Established connections at once; while at the bound, no new connection is accepted.
    pub max_connections: usize,
    /// How long a handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    /// 64 handshakes, 10,000 connections, [`HANDSHAKE_TIMEOUT`].
    fn default() -> Self {
        Self {
            max_handshakes: 64,
            max_connections: 10_000,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// A server-side TLS connection (it holds its place in [`Limits::max_connections`] until
/// dropped).
#[derive(Debug)]
pub struct TlsConn(
    tokio_rustls::server::TlsStream<TcpStream>,
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
);

/// What a service can learn about a TLS peer from `Request::extensions()`.
#[derive(Clone, Debug)]
pub struct TlsConnectInfo {
    /// The peer's TCP address.
    pub remote_addr: Option<SocketAddr>,
    /// The client certificate chain, when the client sent one.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected for TlsConn {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let (tcp, session) = self.0.get_ref();
        TlsConnectInfo {
            remote_addr: tcp.peer_addr().ok(),
            peer_certificates: session
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Accepts TCP connections on `listener` and completes TLS handshakes concurrently, within
/// the default [`Limits`]; failed or slow handshakes are dropped (they never end the
/// stream). The stream ends when the listener fails.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = Result<TlsConn, io::Error>> + Send + 'static {
    incoming_with_limits(listener, config, Limits::default())
}

/// [`incoming`] within `limits`: at most `max_handshakes` handshakes run at once and at
/// most `max_connections` connections are open; beyond either, connections are left in the
/// listen backlog until a place frees up.
pub fn incoming_with_limits(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: Limits,
) -> impl Stream<Item = Result<TlsConn, io::Error>> + Send + 'static {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, mut rx) = mpsc::channel::<Result<TlsConn, io::Error>>(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.max_handshakes.max(1)));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            // Both places are taken before accepting, so a full server reads nothing.
            let Ok(conn_permit) = connections.clone().acquire_owned().await else {
                return;
            };
            let Ok(hs_permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conn_tx = tx.clone();
            tokio::spawn(async move {
                let r = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
                drop(hs_permit);
                if let Ok(Ok(tls)) = r {
                    let _ = conn_tx.send(Ok(TlsConn(tls, conn_permit))).await;
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A TLS channel could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address is not a valid URI authority.
    #[error("invalid control-plane address {addr:?}: {source}; expected host:port")]
    Address {
        /// The address given.
        addr: String,
        /// Why it was refused.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS server name is not a valid DNS name.
    #[error(
        "invalid TLS server name {0:?}: expected a DNS name like tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local"
    )]
    ServerName(String),
}

/// A lazy gRPC channel to `addr` (`host:port`) over TLS, verifying the server as
/// `server_name` with `config` (whose ALPN should include `h2`; it is added if empty).
/// Connections are (re)made on demand, so this never fails for an unreachable server.
pub fn channel(
    addr: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, ChannelError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ChannelError::ServerName(server_name.to_string()))?;
    let config = if config.alpn_protocols.is_empty() {
        let mut c = (*config).clone();
        c.alpn_protocols = vec![ALPN_H2.to_vec()];
        Arc::new(c)
    } else {
        config
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|source| {
        ChannelError::Address {
            addr: addr.to_string(),
            source,
        }
    })?;
    let target = addr.to_string();
    let svc = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        let name = name.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(&target).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(svc))
}

/// A lazy plaintext gRPC channel to `addr` (`host:port`).
pub fn plaintext_channel(addr: &str) -> Result<Channel, ChannelError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|source| {
        ChannelError::Address {
            addr: addr.to_string(),
            source,
        }
    })?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy())
}
