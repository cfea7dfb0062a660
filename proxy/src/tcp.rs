//! Opaque TCP forwarding: bytes copied both ways (half-close aware) until both sides are
//! done or the connection is idle too long. To a meshed endpoint the connection is mTLS
//! with ALPN `tulle.tcp` and starts with the transport header naming the original port.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Either;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::{EitherIo, MeshTls};
use crate::conn::{CountingIo, PrefixedIo};
use crate::detect::{FirstSpeaker, Protocol, first_speaker};
use crate::error::ProxyError;
use crate::metrics::{TcpGuard, TcpMetrics};

/// Where an opaque connection goes.
#[derive(Debug, Clone)]
pub struct TcpTarget {
    pub addr: SocketAddr,
    /// Mesh mTLS (ALPN `tulle.tcp`) to a meshed endpoint.
    pub mesh: Option<MeshTls>,
    /// `tcp_*` metrics of the connection to the target (`peer="dst"`).
    pub metrics: Option<TcpMetrics>,
}

/// An open connection to a [`TcpTarget`] (counted in its metrics while open).
pub struct Upstream {
    io: CountingIo<EitherIo<TlsStream<TcpStream>, TcpStream>>,
    _open: Option<TcpGuard>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// Connects to `target`: TCP, and for a meshed target the mTLS handshake and the transport
/// header.
pub async fn connect(target: &TcpTarget, timeout: Duration) -> Result<Upstream, ProxyError> {
    let open = target.metrics.as_ref().map(TcpMetrics::open);
    let tcp = crate::conn::connect(target.addr, timeout).await?;
    let io = match &target.mesh {
        None => Either::Right(tcp),
        Some(tls) => Either::Left(
            tls.handshake_with_header(target.addr, tcp, timeout, target.addr.port())
                .await?,
        ),
    };
    // Unregistered counters when the target has no metrics (outside the mesh).
    let (read, write) = match &target.metrics {
        Some(m) => (m.read.clone(), m.write.clone()),
        None => Default::default(),
    };
    Ok(Upstream {
        io: CountingIo::new(EitherIo(io), read, write),
        _open: open,
    })
}

/// Copies bytes between `client` and `upstream` until both are done, or until nothing
/// moved for `idle`.
pub async fn splice<I>(client: &mut I, mut upstream: Upstream, idle: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = crate::conn::splice(client, &mut upstream.io, idle).await {
        tracing::debug!("opaque connection ended: {e}");
    }
}

/// For a client silent through detection, with `upstream` already open: waits for the
/// first side to speak. An HTTP client is handed back (with its bytes to replay) and the
/// upstream connection closed; anything else is spliced here until done.
pub async fn splice_unless_http<I>(
    mut client: I,
    mut upstream: Upstream,
    detect_timeout: Duration,
    idle: Duration,
) -> Option<(Protocol, PrefixedIo<I>)>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let first = first_speaker(&mut client, &mut upstream.io, detect_timeout, false);
    let first = match tokio::time::timeout(idle, first).await {
        Ok(Ok(first)) => first,
        Ok(Err(e)) => {
            tracing::debug!("reading: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!("idle connection closed: neither side spoke");
            return None;
        }
    };
    let sent = match first {
        FirstSpeaker::Client(p @ (Protocol::Http1 | Protocol::Http2), bytes) => {
            return Some((p, PrefixedIo::new(bytes, client)));
        }
        FirstSpeaker::Client(_, bytes) => upstream.io.write_all(&bytes).await,
        FirstSpeaker::Server(bytes) => client.write_all(&bytes).await,
    };
    if sent.is_ok() {
        splice(&mut client, upstream, idle).await;
    }
    None
}

/// Connects to `target` and splices. Fails only when the connection cannot be set up.
pub async fn forward<I>(
    client: &mut I,
    target: &TcpTarget,
    connect_timeout: Duration,
    idle: Duration,
) -> Result<(), ProxyError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let upstream = connect(target, connect_timeout).await?;
    splice(client, upstream, idle).await;
    Ok(())
}
