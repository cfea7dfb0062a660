//! The inbound side: connections from other pods (meshed or not) to the local application.
//!
//! Pipeline per connection: original port → detection (TLS ClientHello, HTTP/2, HTTP/1,
//! opaque) → mesh mTLS termination with client identity (ALPN `tulle.h2`: HTTP/2 with
//! per-request original port/protocol headers; `tulle.tcp`/`tulle.h1`: transport header) →
//! HTTP restored to the client's original version, or opaque bytes → the application.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::client::{H1Pool, H2Client, upgrade};
use crate::detect::{Protocol, detect};
use crate::error::{Body, ProxyError, count_response, proxied};
use crate::http::{CLIENT_ID, ORIG_PORT, ORIG_PROTO, is_upgrade, serve, strip_hop_by_hop};
use crate::identity::{ALPN_H1, ALPN_H2, ALPN_TCP, peer_identity};
use crate::io::{CountingIo, PrefixedIo, connect, original_dst, read_header};
use crate::metrics::{Direction, HttpMetrics, TlsStatus, labels};
use crate::runtime::Runtime;

const MAX_LABEL_SETS: usize = 10_000;
const NO_TLS_FROM_REMOTE: &str = "no_tls_from_remote";

/// The inbound proxy.
pub struct Inbound {
    rt: Arc<Runtime>,
    h1: Mutex<HashMap<u16, Arc<H1Pool>>>,
    h2: Mutex<HashMap<u16, Arc<H2Client>>>,
    metrics: RwLock<MetricsCache>,
}

type TlsKey = Option<Box<str>>;
/// The metric handles of a connection's last (authority, port).
type LastMetrics = (Box<str>, u16, Arc<HttpMetrics>);
/// Metric handles by (authority, port, client identity).
type MetricsCache = HashMap<(Box<str>, u16, TlsKey), Arc<HttpMetrics>>;

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

/// What the inbound side knows about a connection.
#[derive(Debug)]
struct Conn {
    tls: TlsStatus,
    /// The original port when known at the connection level.
    port: Option<u16>,
    /// Whether per-request port headers are trusted (mesh mTLS only).
    mesh: bool,
    /// The `tulle-client-id` value, computed once.
    client_id: Option<HeaderValue>,
    /// The metric handles of the last request (most connections carry one authority).
    last: Mutex<Option<LastMetrics>>,
}

impl Conn {
    fn new(tls: TlsStatus, port: Option<u16>, mesh: bool) -> Arc<Self> {
        let client_id = match &tls {
            TlsStatus::Mesh(id) => HeaderValue::from_str(id).ok(),
            TlsStatus::NoIdentity(_) => None,
        };
        Arc::new(Conn {
            tls,
            port,
            mesh,
            client_id,
            last: Mutex::new(None),
        })
    }
}

impl Inbound {
    pub fn new(rt: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Inbound {
            rt,
            h1: Mutex::default(),
            h2: Mutex::default(),
            metrics: RwLock::default(),
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
        let (proto, buf) = match detect(&mut sock, cfg.detect_timeout, true).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%peer, "reading: {e}");
                return;
            }
        };
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
                    let conn = Conn::new(status, port, true);
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
                        let conn = Conn::new(status, p, true);
                        self.http(io, false, conn).await
                    }
                }
                _ => tracing::info!(%peer, "mesh TLS without a known ALPN; closing"),
            }
            return;
        }
        let status = TlsStatus::NoIdentity(NO_TLS_FROM_REMOTE);
        let m = self.rt.metrics.tcp(
            labels(Direction::Inbound, None, &target(&cfg, port), &status, None),
            "src",
        );
        let _g = m.open();
        let io = CountingIo::new(io, m.read.clone(), m.write.clone());
        match proto {
            Protocol::Http1 | Protocol::Http2 if !opaque_port => {
                let conn = Conn::new(status, port, false);
                self.http(io, proto == Protocol::Http2, conn).await
            }
            _ => self.opaque(io, port).await,
        }
    }

    async fn opaque<I: AsyncRead + AsyncWrite + Unpin>(&self, mut io: I, port: Option<u16>) {
        let Some(port) = port.filter(|p| *p != self.rt.config.inbound_addr.port()) else {
            tracing::info!("{}", ProxyError::NoOrigPort);
            return;
        };
        let addr = SocketAddr::new(self.rt.config.inbound_app_host, port);
        match connect(addr, self.rt.config.connect_timeout).await {
            Ok(mut up) => {
                let _ = crate::io::splice(&mut io, &mut up, self.rt.config.idle_timeout).await;
            }
            Err(e) => tracing::info!("inbound opaque: {e}"),
        }
    }

    async fn http<I>(self: &Arc<Self>, io: I, h2: bool, conn: Arc<Conn>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        serve(
            io,
            h2,
            &self.rt.config.clone(),
            &self.rt.drain,
            move |req| this.clone().handle(req, conn.clone()),
        )
        .await
    }

    fn metrics(&self, authority: &str, port: u16, tls: &TlsStatus) -> Arc<HttpMetrics> {
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
        let addr = SocketAddr::new(self.rt.config.inbound_app_host, port).to_string();
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

    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        conn: Arc<Conn>,
    ) -> Response<Body> {
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
        let own = self.rt.config.inbound_addr.port();
        let port = header_port
            .filter(|p| *p != own)
            .or(conn.port)
            .or(self.rt.config.inbound_port_fallback);
        let Some(port) = port.filter(|p| *p != own) else {
            return ProxyError::NoOrigPort.to_response();
        };
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req
                .headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        };
        let metrics = {
            let mut last = conn.last.lock().unwrap_or_else(|e| e.into_inner());
            match &*last {
                Some((a, p, m)) if &**a == authority && *p == port => m.clone(),
                _ => {
                    let m = self.metrics(authority, port, &conn.tls);
                    *last = Some((authority.into(), port, m.clone()));
                    m
                }
            }
        };
        metrics.request();
        let start = Instant::now();
        let addr = SocketAddr::new(self.rt.config.inbound_app_host, port);
        let fut = self.forward(req, addr, downgrade);
        let mut resp = tokio::time::timeout(self.rt.config.response_timeout, fut)
            .await
            .unwrap_or(Err(ProxyError::ResponseTimeout))
            .unwrap_or_else(|e| {
                tracing::debug!(%addr, "inbound request failed: {e}");
                e.to_response()
            });
        metrics.latency(start.elapsed());
        count_response(&metrics, &mut resp);
        resp
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        addr: SocketAddr,
        downgrade: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let timeout = self.rt.config.connect_timeout;
        if is_upgrade(&req) {
            return upgrade(addr, None, timeout, req).await;
        }
        if downgrade {
            *req.version_mut() = Version::HTTP_11;
        }
        if req.version() == Version::HTTP_2 {
            let client = {
                let mut map = self.h2.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(addr.port())
                    .or_insert_with(|| Arc::new(H2Client::new(addr, None, timeout, None)))
                    .clone()
            };
            return Ok(proxied(client.send(req).await?));
        }
        origin_form(&mut req)?;
        let pool = {
            let mut map = self.h1.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(addr.port())
                .or_insert_with(|| H1Pool::new(addr, timeout))
                .clone()
        };
        let mut resp = pool.send(req).await?;
        if downgrade {
            strip_hop_by_hop(resp.headers_mut());
        }
        Ok(resp)
    }
}

fn target(cfg: &crate::config::Config, port: Option<u16>) -> String {
    match port {
        Some(p) => SocketAddr::new(cfg.inbound_app_host, p).to_string(),
        None => cfg.inbound_addr.to_string(),
    }
}

/// HTTP/1 origin-form: `Host` from the authority (when missing), URI reduced to path and query.
fn origin_form<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    if let Some(a) = req.uri().authority() {
        if !req.headers().contains_key(http::header::HOST) {
            let v = HeaderValue::from_str(a.as_str())
                .map_err(|_| ProxyError::BadRequest("invalid authority"))?;
            req.headers_mut().insert(http::header::HOST, v);
        }
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = http::Uri::from(pq);
    }
    Ok(())
}
