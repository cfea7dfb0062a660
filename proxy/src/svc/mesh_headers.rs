//! Inbound: what a request carries from the client proxy. On mesh mTLS connections the
//! `tulle-orig-port` / `tulle-orig-proto` headers are trusted; from anyone else they are
//! removed. The client's identity is set in `tulle-client-id` (never taken from the
//! request). The result is the request's [`AppTarget`] extension; without one (original
//! port unknown) the application client answers 502.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request};
use tower::{Layer, Service};

use crate::http_headers::{CLIENT_ID, ORIG_PORT, ORIG_PROTO};
use crate::metrics::TlsStatus;

/// Where an inbound request goes: the application's address, and whether the client proxy
/// carried it as HTTP/2 for an HTTP/1.1 client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppTarget {
    pub addr: SocketAddr,
    pub downgrade: bool,
}

/// What the inbound side knows about a connection.
#[derive(Debug)]
pub struct InboundConn {
    pub tls: TlsStatus,
    /// The original port when known at the connection level.
    pub port: Option<u16>,
    /// Mesh mTLS: per-request port and protocol headers are trusted.
    pub mesh: bool,
    /// The `tulle-client-id` value.
    pub client_id: Option<HeaderValue>,
    /// The inbound listener's own port (never a target).
    pub own_port: u16,
    /// `TULLE_PROXY_INBOUND_PORT_FALLBACK`.
    pub port_fallback: Option<u16>,
    /// The application's host: the connection's original destination IP (the pod's own IP,
    /// never loopback unless the client itself connected to loopback).
    pub app_host: IpAddr,
}

impl InboundConn {
    /// The client identity header value from the TLS status.
    pub fn client_id(tls: &TlsStatus) -> Option<HeaderValue> {
        match tls {
            TlsStatus::Mesh(id) => HeaderValue::from_str(id).ok(),
            TlsStatus::NoIdentity(_) => None,
        }
    }
}

/// Layer of [`MeshHeaders`] for one connection.
#[derive(Debug, Clone)]
pub struct MeshHeadersLayer {
    conn: Arc<InboundConn>,
}

impl MeshHeadersLayer {
    pub fn new(conn: Arc<InboundConn>) -> Self {
        MeshHeadersLayer { conn }
    }
}

impl<S> Layer<S> for MeshHeadersLayer {
    type Service = MeshHeaders<S>;
    fn layer(&self, inner: S) -> MeshHeaders<S> {
        MeshHeaders {
            inner,
            conn: self.conn.clone(),
        }
    }
}

/// Reads and removes the headers between proxies; sets the client identity and the
/// [`AppTarget`].
#[derive(Debug, Clone)]
pub struct MeshHeaders<S> {
    inner: S,
    conn: Arc<InboundConn>,
}

impl<S, B> Service<Request<B>> for MeshHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let conn = &*self.conn;
        let h = req.headers_mut();
        let header_port = if conn.mesh {
            h.get(ORIG_PORT)
                .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
        } else {
            None
        };
        let downgrade = conn.mesh && h.contains_key(ORIG_PROTO);
        h.remove(ORIG_PORT);
        h.remove(ORIG_PROTO);
        h.remove(CLIENT_ID);
        if let Some(v) = &conn.client_id {
            h.insert(CLIENT_ID, v.clone());
        }
        let own = conn.own_port;
        let port = header_port
            .filter(|p| *p != own)
            .or(conn.port)
            .or(conn.port_fallback)
            .filter(|p| *p != own);
        if let Some(port) = port {
            req.extensions_mut().insert(AppTarget {
                addr: SocketAddr::new(conn.app_host, port),
                downgrade,
            });
        }
        self.inner.call(req)
    }
}
