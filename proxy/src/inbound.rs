//! The inbound side: connections from other pods (meshed or not) to the local application.
//!
//! Pipeline per connection: original port → detection (TLS ClientHello, HTTP/2, HTTP/1,
//! opaque) → mesh mTLS termination with client identity (ALPN `tulle.h2`: HTTP/2 with
//! per-request original port/protocol headers; `tulle.tcp`/`tulle.h1`: transport header) →
//! HTTP restored to the client's original version, or opaque bytes → the application.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower::ServiceBuilder;

use crate::client::AppClient;
use crate::detect::{Protocol, client_hello_sni, detect};
use crate::error::ProxyError;
use crate::http::serve;
use crate::identity::{ALPN_H1, ALPN_H2, ALPN_TCP, peer_identity};
use crate::io::{CountingIo, PrefixedIo, original_dst, read_header};
use crate::metrics::{Direction, HttpMetrics, TlsStatus, labels};
use crate::runtime::Runtime;
use crate::svc::{
    AppTarget, DowngradeLayer, ErrorResponseLayer, InboundConn, MeshHeadersLayer, PickMetrics,
    RecordHttpLayer, ResponseTimeoutLayer,
};
use crate::tcp::{self, TcpTarget};

const MAX_LABEL_SETS: usize = 10_000;
const NO_TLS_FROM_REMOTE: &str = "no_tls_from_remote";
/// TLS whose server name is not this proxy's identity: the application's own TLS.
const NO_TLS_NOT_MESH: &str = "tls_not_for_mesh";

/// The inbound proxy.
pub struct Inbound {
    rt: Arc<Runtime>,
    app: AppClient,
    metrics: RwLock<MetricsCache>,
}

type TlsKey = Option<Box<str>>;
/// The metric handles of a connection's last (authority, port).
type LastMetrics = (Box<str>, Option<u16>, Arc<HttpMetrics>);
/// Metric handles by (authority, port, client identity).
type MetricsCache = HashMap<(Box<str>, Option<u16>, TlsKey), Arc<HttpMetrics>>;

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

/// Picks an inbound request's metrics by authority, target port and client identity,
/// remembering the connection's last choice (most connections carry one authority).
#[derive(Debug, Clone)]
struct PickInbound {
    inbound: Arc<Inbound>,
    conn: Arc<InboundConn>,
    last: Arc<Mutex<Option<LastMetrics>>>,
}

impl<B> PickMetrics<B> for PickInbound {
    fn pick(&self, req: &Request<B>) -> Arc<HttpMetrics> {
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req
                .headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        };
        let port = req.extensions().get::<AppTarget>().map(|t| t.addr.port());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((a, p, m)) if &**a == authority && *p == port => m.clone(),
            _ => {
                let m = self.inbound.metrics(authority, port, &self.conn.tls);
                *last = Some((authority.into(), port, m.clone()));
                m
            }
        }
    }
}

impl Inbound {
    pub fn new(rt: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Inbound {
            app: AppClient::new(rt.config.connect_timeout),
            rt,
            metrics: RwLock::default(),
        })
    }

    fn conn(&self, tls: TlsStatus, port: Option<u16>, mesh: bool) -> Arc<InboundConn> {
        let cfg = &self.rt.config;
        Arc::new(InboundConn {
            client_id: InboundConn::client_id(&tls),
            tls,
            port,
            mesh,
            own_port: cfg.inbound_addr.port(),
            port_fallback: cfg.inbound_port_fallback,
            app_host: cfg.inbound_app_host,
        })
    }

    /// Handles one accepted connection.
    pub async fn accept(self: Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        let _token = self.rt.drain.token();
        let _ = sock.set_nodelay(true);
        let cfg = self.rt.config.clone();
        let orig_port = original_dst(&sock)
            .map(|a| a.port())
            .filter(|p| *p != cfg.inbound_addr.port());
        let port = orig_port.or(cfg.inbound_port_fallback);
        let mut sock = sock;
        let opaque_port =
            port.is_some_and(|p| cfg.opaque_ports.contains(&p)) && orig_port.is_some();
        let (mut proto, mut buf) = match detect(&mut sock, cfg.detect_timeout, true).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%peer, "reading: {e}");
                return;
            }
        };
        let mut no_tls = NO_TLS_FROM_REMOTE;
        if proto == Protocol::Tls {
            // Mesh TLS names this proxy's identity; other TLS (the application's own, from
            // outside the mesh) passes through to the application untouched.
            let sni = client_hello_sni(&mut sock, &mut buf, cfg.header_read_timeout).await;
            let own = self.rt.tls.store.name();
            if !sni
                .ok()
                .flatten()
                .is_some_and(|n| n.eq_ignore_ascii_case(own))
            {
                proto = Protocol::Opaque;
                no_tls = NO_TLS_NOT_MESH;
            }
        }
        let silent = proto == Protocol::Opaque && buf.is_empty();
        let io = PrefixedIo::new(buf, sock);
        if proto == Protocol::Tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(self.rt.tls.server.clone());
            let tls = match tokio::time::timeout(cfg.header_read_timeout, acceptor.accept(io)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, "mesh TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let (_, session) = tls.get_ref();
            let client_id = peer_identity(session.peer_certificates()).unwrap_or_default();
            let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
            let status = TlsStatus::Mesh(client_id);
            let m = self.rt.metrics.tcp(
                labels(Direction::Inbound, None, &target(&cfg, port), &status, None),
                "src",
            );
            let _g = m.open();
            let mut io = CountingIo::new(tls, m.read.clone(), m.write.clone());
            match alpn.as_deref() {
                Some(ALPN_H2) => {
                    let conn = self.conn(status, port, true);
                    self.http(io, true, conn).await
                }
                Some(a @ (ALPN_TCP | ALPN_H1)) => {
                    let hdr =
                        tokio::time::timeout(cfg.header_read_timeout, read_header(&mut io)).await;
                    let Ok(Ok(p)) = hdr else {
                        tracing::info!(%peer, "bad or missing transport header; closing");
                        return;
                    };
                    let p = Some(p).filter(|p| *p != cfg.inbound_addr.port()).or(port);
                    if a == ALPN_TCP {
                        self.opaque(io, p).await
                    } else {
                        let conn = self.conn(status, p, true);
                        self.http(io, false, conn).await
                    }
                }
                _ => tracing::info!(%peer, "mesh TLS without a known ALPN; closing"),
            }
            return;
        }
        let status = TlsStatus::NoIdentity(no_tls);
        let m = self.rt.metrics.tcp(
            labels(Direction::Inbound, None, &target(&cfg, port), &status, None),
            "src",
        );
        let _g = m.open();
        let io = CountingIo::new(io, m.read.clone(), m.write.clone());
        match proto {
            Protocol::Http1 | Protocol::Http2 if !opaque_port => {
                let conn = self.conn(status, port, false);
                self.http(io, proto == Protocol::Http2, conn).await
            }
            _ if silent && !opaque_port => self.silent(io, port, status).await,
            _ => self.opaque(io, port).await,
        }
    }

    fn app_target(&self, port: Option<u16>) -> Option<TcpTarget> {
        let cfg = &self.rt.config;
        let Some(port) = port.filter(|p| *p != cfg.inbound_addr.port()) else {
            tracing::info!("{}", ProxyError::NoOrigPort);
            return None;
        };
        Some(TcpTarget {
            addr: SocketAddr::new(cfg.inbound_app_host, port),
            mesh: None,
            metrics: None,
        })
    }

    async fn opaque<I: AsyncRead + AsyncWrite + Unpin>(&self, mut io: I, port: Option<u16>) {
        let Some(target) = self.app_target(port) else {
            return;
        };
        let cfg = &self.rt.config;
        let forwarded = tcp::forward(&mut io, &target, cfg.connect_timeout, cfg.idle_timeout);
        if let Err(e) = forwarded.await {
            tracing::info!("inbound opaque: {e}");
        }
    }

    /// A plaintext client silent through detection: as on the outbound side, whichever of
    /// it and the application speaks first decides between opaque and HTTP.
    async fn silent<I>(self: &Arc<Self>, io: I, port: Option<u16>, status: TlsStatus)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(target) = self.app_target(port) else {
            return;
        };
        let cfg = &self.rt.config;
        let up = match tcp::connect(&target, cfg.connect_timeout).await {
            Ok(up) => up,
            Err(e) => return tracing::info!("inbound opaque: {e}"),
        };
        let http = tcp::splice_unless_http(io, up, cfg.detect_timeout, cfg.idle_timeout).await;
        if let Some((proto, io)) = http {
            let conn = self.conn(status, port, false);
            self.http(io, proto == Protocol::Http2, conn).await;
        }
    }

    async fn http<I>(self: &Arc<Self>, io: I, h2: bool, conn: Arc<InboundConn>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = &self.rt.config;
        let pick = PickInbound {
            inbound: self.clone(),
            conn: conn.clone(),
            last: Arc::default(),
        };
        let stack = ServiceBuilder::new()
            .layer(MeshHeadersLayer::new(conn))
            .layer(RecordHttpLayer::new(pick))
            .layer(ErrorResponseLayer)
            .layer(ResponseTimeoutLayer {
                timeout: cfg.response_timeout,
            })
            .layer(DowngradeLayer)
            .service(self.app.clone());
        serve(io, h2, cfg, &self.rt.drain, stack).await
    }

    fn metrics(&self, authority: &str, port: Option<u16>, tls: &TlsStatus) -> Arc<HttpMetrics> {
        let tls_key: TlsKey = match tls {
            TlsStatus::Mesh(id) => Some(id.as_str().into()),
            TlsStatus::NoIdentity(_) => None,
        };
        let key = (Box::<str>::from(authority), port, tls_key);
        if let Some(m) = self
            .metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return m.clone();
        }
        let mut map = self.metrics.write().unwrap_or_else(|e| e.into_inner());
        let over = map.len() >= MAX_LABEL_SETS;
        let authority = if over || authority.is_empty() {
            None
        } else {
            Some(authority)
        };
        let addr = target(&self.rt.config, port);
        let m =
            Arc::new(
                self.rt
                    .metrics
                    .http(labels(Direction::Inbound, authority, &addr, tls, None)),
            );
        if !over {
            map.insert(key, m.clone());
        }
        m
    }
}

fn target(cfg: &crate::config::Config, port: Option<u16>) -> String {
    match port {
        Some(p) => SocketAddr::new(cfg.inbound_app_host, p).to_string(),
        None => cfg.inbound_addr.to_string(),
    }
}
