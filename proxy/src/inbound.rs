//! The inbound side: connections from other pods (meshed or not) to the local application.
//!
//! Pipeline per connection: original port → detection (TLS ClientHello, HTTP/2, HTTP/1,
//! opaque) → mesh mTLS termination with client identity (ALPN `tulle.h2`: HTTP/2 with
//! per-request original port/protocol headers; `tulle.tcp`/`tulle.h1`: transport header) →
//! authorization against the pod's inbound policy (per HTTP request in
//! [`crate::svc::Authorize`], per opaque connection here; connections a policy update no
//! longer admits are closed) → HTTP restored to the client's original version, or opaque
//! bytes → the application.
//!
//! The application is reached at the connection's original destination IP (the pod's own IP),
//! never at loopback for a client that did not itself connect to loopback: a listener the
//! application bound to 127.0.0.1 stays private to the pod (see [`app_ip`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower::ServiceBuilder;

use crate::client::AppClient;
use crate::conn::{CountingIo, PrefixedIo, original_dst, read_header};
use crate::detect::{Protocol, client_hello_sni, detect};
use crate::error::ProxyError;
use crate::metrics::{AuthzKind, Direction, HttpMetrics, TlsStatus, labels};
use crate::policy::{Policy, PolicyRx};
use crate::runtime::Runtime;
use crate::server::{ConnLimit, serve_until};
use crate::svc::{
    AppTarget, AuthorizeLayer, AuthzConn, DowngradeLayer, ErrorResponseLayer, InboundConn,
    MeshHeadersLayer, PickMetrics, RecordHttpLayer, RequestBodyLimitLayer, ResponseTimeoutLayer,
    authz_labels,
};
use crate::tcp::{self, TcpTarget};
use crate::tls::{ALPN_H1, ALPN_H2, ALPN_TCP, peer_identity};

const MAX_LABEL_SETS: usize = 10_000;
const NO_TLS_FROM_REMOTE: &str = "no_tls_from_remote";
/// TLS whose server name is not this proxy's identity: the application's own TLS.
const NO_TLS_NOT_MESH: &str = "tls_not_for_mesh";

/// The inbound proxy.
pub struct Inbound {
    rt: Arc<Runtime>,
    app: AppClient,
    metrics: RwLock<MetricsCache>,
    limit: ConnLimit,
}

type TlsKey = Option<Box<str>>;
/// The metric handles of a connection's last (authority, port).
type LastMetrics = (Box<str>, Option<SocketAddr>, Arc<HttpMetrics>);
/// Metric handles by (authority, target address, client identity).
type MetricsCache = HashMap<(Box<str>, Option<SocketAddr>, TlsKey), Arc<HttpMetrics>>;

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
        let port = req.extensions().get::<AppTarget>().map(|t| t.addr);
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
            limit: ConnLimit::new(
                "inbound",
                crate::config::ENV_INBOUND_MAX_CONNECTIONS,
                rt.config.inbound_max_connections,
                rt.metrics.connections_refused(Direction::Inbound),
            ),
            rt,
            metrics: RwLock::default(),
        })
    }

    fn conn(&self, tls: TlsStatus, app: IpAddr, port: Option<u16>, mesh: bool) -> Arc<InboundConn> {
        let cfg = &self.rt.config;
        Arc::new(InboundConn {
            client_id: InboundConn::client_id(&tls),
            tls,
            port,
            mesh,
            own_port: cfg.inbound_addr.port(),
            port_fallback: cfg.inbound_port_fallback,
            app_host: app,
        })
    }

    /// Handles one accepted connection.
    pub async fn accept(self: Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        let Some(_permit) = self.limit.admit(&sock) else {
            return;
        };
        let _token = self.rt.drain.token();
        let _ = sock.set_nodelay(true);
        let cfg = self.rt.config.clone();
        let orig = original_dst(&sock);
        let app = match sock.local_addr() {
            Ok(local) => app_ip(orig, local, cfg.inbound_app_host),
            Err(e) => Err(format!("no local address: {e}")),
        };
        let app = match app {
            Ok(ip) => ip,
            Err(e) => return tracing::info!(%peer, "inbound connection refused: {e}"),
        };
        let orig_port = orig
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
                labels(
                    Direction::Inbound,
                    None,
                    &self.target(app, port),
                    &status,
                    None,
                ),
                "src",
            );
            let _g = m.open();
            let mut io = CountingIo::new(tls, m.read.clone(), m.write.clone());
            match alpn.as_deref() {
                Some(ALPN_H2) => {
                    let conn = self.conn(status, app, port, true);
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
                        let client = mesh_client(&status).map(str::to_string);
                        self.opaque(io, app, p, client.as_deref()).await
                    } else {
                        let conn = self.conn(status, app, p, true);
                        self.http(io, false, conn).await
                    }
                }
                _ => tracing::info!(%peer, "mesh TLS without a known ALPN; closing"),
            }
            return;
        }
        let status = TlsStatus::NoIdentity(no_tls);
        let m = self.rt.metrics.tcp(
            labels(
                Direction::Inbound,
                None,
                &self.target(app, port),
                &status,
                None,
            ),
            "src",
        );
        let _g = m.open();
        let io = CountingIo::new(io, m.read.clone(), m.write.clone());
        match proto {
            Protocol::Http1 | Protocol::Http2 if !opaque_port => {
                let conn = self.conn(status, app, port, false);
                self.http(io, proto == Protocol::Http2, conn).await
            }
            _ if silent && !opaque_port => self.silent(io, app, port, status).await,
            _ => self.opaque(io, app, port, None).await,
        }
    }

    /// The `target_addr` label of a connection to the application (bounded ports: a port
    /// scan makes one more series, not one per port).
    fn target(&self, app: IpAddr, port: Option<u16>) -> String {
        match port {
            Some(p) => self.rt.metrics.target_addr_label(SocketAddr::new(app, p)),
            None => self.rt.config.inbound_addr.to_string(),
        }
    }

    fn app_target(&self, app: IpAddr, port: Option<u16>) -> Option<TcpTarget> {
        let cfg = &self.rt.config;
        let Some(port) = port.filter(|p| *p != cfg.inbound_addr.port()) else {
            tracing::info!("{}", ProxyError::NoOrigPort);
            return None;
        };
        Some(TcpTarget {
            addr: SocketAddr::new(app, port),
            mesh: None,
            metrics: None,
        })
    }

    /// An opaque connection from `client` (its mesh identity, if any): authorized, then
    /// forwarded until it ends or a policy update no longer admits it.
    async fn opaque<I>(&self, mut io: I, app: IpAddr, port: Option<u16>, client: Option<&str>)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(target) = self.app_target(app, port) else {
            return;
        };
        let port = target.addr.port();
        let mut rx = self.rt.policy.clone();
        if !self.authorize_tcp(&mut rx, port, client) {
            return;
        }
        let cfg = &self.rt.config;
        let forwarded = tcp::forward(&mut io, &target, cfg.connect_timeout, cfg.idle_timeout);
        let revoke = revoked(rx, |p| p.check_tcp(port, client).allowed);
        tokio::select! {
            r = forwarded => if let Err(e) = r {
                tracing::info!("inbound opaque: {e}");
            },
            _ = revoke => tracing::info!(
                client = client.unwrap_or("-"),
                port,
                "closing an opaque connection: its client is no longer authorized"
            ),
        }
    }

    /// Decides (and counts) an opaque connection by the current policy of `rx` (marked
    /// seen: later changes are revocation checks).
    fn authorize_tcp(&self, rx: &mut PolicyRx, port: u16, client: Option<&str>) -> bool {
        let policy = rx.borrow_and_update().clone();
        let d = policy.check_tcp(port, client);
        let labels = authz_labels(&self.rt.metrics, &policy, port, &d, client, false);
        self.rt
            .metrics
            .authz(AuthzKind::Tcp, d.allowed, &labels)
            .inc();
        if !d.allowed {
            tracing::debug!(
                client = client.unwrap_or("-"),
                port,
                "connection denied: {}",
                policy.deny_reason(&d)
            );
        }
        d.allowed
    }

    /// A plaintext client silent through detection: as on the outbound side, whichever of
    /// it and the application speaks first decides between opaque and HTTP.
    async fn silent<I>(self: &Arc<Self>, io: I, app: IpAddr, port: Option<u16>, status: TlsStatus)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(target) = self.app_target(app, port) else {
            return;
        };
        if !self.authorize_tcp(&mut self.rt.policy.clone(), target.addr.port(), None) {
            return;
        }
        let cfg = &self.rt.config;
        let up = match tcp::connect(&target, cfg.connect_timeout).await {
            Ok(up) => up,
            Err(e) => return tracing::info!("inbound opaque: {e}"),
        };
        let http = tcp::splice_unless_http(io, up, cfg.detect_timeout, cfg.idle_timeout).await;
        if let Some((proto, io)) = http {
            let conn = self.conn(status, app, port, false);
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
        let client = mesh_client(&conn.tls).map(str::to_string);
        let authz = AuthzConn::new(
            self.rt.policy.clone(),
            client.as_deref(),
            self.rt.metrics.clone(),
        );
        // A mesh connection carries requests for any port (per-request headers).
        let port = if conn.mesh { None } else { conn.port };
        let stack = ServiceBuilder::new()
            .layer(MeshHeadersLayer::new(conn))
            .layer(RecordHttpLayer::new(pick))
            .layer(AuthorizeLayer::new(Arc::new(authz)))
            .layer(ErrorResponseLayer)
            .layer(RequestBodyLimitLayer {
                max: cfg.max_request_body_bytes,
            })
            .layer(ResponseTimeoutLayer {
                timeout: cfg.response_timeout,
            })
            .layer(DowngradeLayer)
            .service(self.app.clone());
        // Requests are checked one by one; only later policy updates close the connection.
        let mut rx = self.rt.policy.clone();
        rx.mark_unchanged();
        let revoke = revoked(rx, |p| p.may_admit(port, client.as_deref()));
        serve_until(io, h2, cfg, &self.rt.drain, stack, revoke).await
    }

    fn metrics(
        &self,
        authority: &str,
        addr: Option<SocketAddr>,
        tls: &TlsStatus,
    ) -> Arc<HttpMetrics> {
        let tls_key: TlsKey = match tls {
            TlsStatus::Mesh(id) => Some(id.as_str().into()),
            TlsStatus::NoIdentity(_) => None,
        };
        // Ports past the bound share one key (port 0) and one `ip:other` label.
        let addr = addr.map(|a| match self.rt.metrics.target_port(a.port()) {
            Some(_) => a,
            None => SocketAddr::new(a.ip(), 0),
        });
        let key = (Box::<str>::from(authority), addr, tls_key);
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
        let addr = match addr {
            Some(a) if a.port() == 0 => crate::metrics::other_port_addr(a.ip()),
            Some(a) => a.to_string(),
            None => self.rt.config.inbound_addr.to_string(),
        };
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

/// The client's mesh identity, if it has one.
fn mesh_client(tls: &TlsStatus) -> Option<&str> {
    match tls {
        TlsStatus::Mesh(id) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// Resolves when a policy update after the last one `rx` has seen makes `admits` false
/// (never when the policy source is gone: the last policy stays in force).
async fn revoked(mut rx: PolicyRx, admits: impl Fn(&Policy) -> bool) {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !admits(&rx.borrow_and_update()) {
            return;
        }
    }
}

/// The IP the application is reached at for an inbound connection: the IP the client
/// addressed, i.e. the original destination of a connection iptables redirected, or else
/// the address it connected to (the pod's IP for a peer proxy dialling the inbound port
/// directly; localhost for a client on loopback). `TULLE_PROXY_INBOUND_APP_HOST` replaces
/// the latter, for running without iptables. Loopback is refused unless the client itself connected to loopback: forwarding
/// network clients to 127.0.0.1 would expose the application's localhost-only listeners.
pub fn app_ip(
    orig_dst: Option<SocketAddr>,
    local: SocketAddr,
    app_host: Option<IpAddr>,
) -> Result<IpAddr, String> {
    let dst = orig_dst.unwrap_or(local).ip();
    let ip = match (orig_dst, app_host) {
        (None, Some(host)) => host,
        // A local client of the proxy (tests, demos): the application's localhost.
        (None, None) if dst.is_loopback() => match dst {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        },
        _ => dst,
    };
    if ip.is_loopback() && !dst.is_loopback() {
        return Err(format!(
            "the client connected to {dst}, which is not loopback, and TULLE_PROXY_INBOUND_APP_HOST \
             is {ip}: forwarding it there would expose localhost-only listeners; unset \
             TULLE_PROXY_INBOUND_APP_HOST (the application is reached at the address the client \
             connected to)"
        ));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn app_is_reached_at_the_original_destination_never_loopback_for_the_network() {
        let local = a("10.0.0.5:4143");
        // Redirected by iptables: the pod IP of the original destination, even with an
        // app host configured.
        assert_eq!(
            app_ip(Some(a("10.0.0.5:8080")), local, None),
            Ok("10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            app_ip(Some(a("10.0.0.5:8080")), local, Some([127, 0, 0, 1].into())),
            Ok("10.0.0.5".parse().unwrap())
        );
        // A peer dialling the inbound port directly (mesh transport header chooses the
        // port): the pod IP it dialled, not 127.0.0.1.
        assert_eq!(app_ip(None, local, None), Ok("10.0.0.5".parse().unwrap()));
        // Loopback only for a client that connected to loopback itself.
        let e = app_ip(None, local, Some([127, 0, 0, 1].into())).unwrap_err();
        assert!(e.contains("TULLE_PROXY_INBOUND_APP_HOST"), "{e}");
        assert_eq!(
            app_ip(None, a("127.0.0.2:4143"), None),
            Ok([127, 0, 0, 1].into())
        );
        assert_eq!(
            app_ip(None, a("[::1]:4143"), None),
            Ok(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            app_ip(None, a("127.0.0.1:4143"), Some([127, 0, 0, 2].into())),
            Ok([127, 0, 0, 2].into())
        );
        // A non-loopback app host for clients of a non-loopback address is the user's choice.
        assert_eq!(
            app_ip(None, local, Some([10, 0, 0, 9].into())),
            Ok([10, 0, 0, 9].into())
        );
    }
}
