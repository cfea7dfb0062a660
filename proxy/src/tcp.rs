//! Opaque TCP forwarding: bytes copied both ways (half-close aware) until both sides are
//! done or the connection is idle too long. To a meshed endpoint the connection is mTLS
//! with ALPN `tulle.tcp` and starts with the transport header naming the original port.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Either;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::{EitherIo, MeshTls};
use crate::error::ProxyError;
use crate::io::{CountingIo, connect, splice, write_header};
use crate::metrics::TcpMetrics;

/// Where an opaque connection goes.
#[derive(Debug, Clone)]
pub struct TcpTarget {
    pub addr: SocketAddr,
    /// Mesh mTLS (ALPN `tulle.tcp`) to a meshed endpoint.
    pub mesh: Option<MeshTls>,
    /// `tcp_*` metrics of the connection to the target (`peer="dst"`).
    pub metrics: Option<TcpMetrics>,
}

/// Connects to `target` and copies bytes between it and `client` until both are done, or
/// until nothing moved for `idle`. Fails only when the connection cannot be set up.
pub async fn forward<I>(
    client: &mut I,
    target: &TcpTarget,
    connect_timeout: Duration,
    idle: Duration,
) -> Result<(), ProxyError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let _open = target.metrics.as_ref().map(TcpMetrics::open);
    let tcp = connect(target.addr, connect_timeout).await?;
    let io = match &target.mesh {
        None => Either::Right(tcp),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let handshake = connector.connect(tls.name.clone(), tcp);
            let mut io = tokio::time::timeout(connect_timeout, handshake)
                .await
                .map_err(|_| ProxyError::ConnectTimeout(target.addr))?
                .map_err(|source| ProxyError::Tls {
                    addr: target.addr,
                    identity: tls.identity.clone(),
                    source,
                })?;
            write_header(&mut io, target.addr.port())
                .await
                .map_err(|e| ProxyError::Connect(target.addr, e))?;
            Either::Left(io)
        }
    };
    let mut io = EitherIo(io);
    let result = match &target.metrics {
        Some(m) => {
            let mut up = CountingIo::new(io, m.read.clone(), m.write.clone());
            splice(client, &mut up, idle).await
        }
        None => splice(client, &mut io, idle).await,
    };
    if let Err(e) = result {
        tracing::debug!(addr = %target.addr, "opaque connection ended: {e}");
    }
    Ok(())
}
