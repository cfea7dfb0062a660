//! The outbound side: connections from the local application to other services.
//!
//! Pipeline per connection: original destination → protocol detection (skipped for opaque
//! ports) → HTTP: route by authority (or original destination) → balancer → endpoint
//! (mesh h2 over mTLS, or plain) with in-flight limit and response timeout; opaque: route
//! by original destination → endpoint (mesh mTLS with a transport header, or plain).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::balance::{Balanced, Balancer, MakeEndpoint, PeakEwma};
use crate::client::{H2Client, MeshTls, upgrade};
use crate::detect::{Protocol, detect};
use crate::discovery::{Endpoint, Resolution, Target, normalize_authority};
use crate::error::{Body, ProxyError, count_response, proxied};
use crate::http::{ORIG_PORT, ORIG_PROTO, is_upgrade, serve, strip_hop_by_hop};
use crate::identity::{ALPN_H2, ALPN_TCP, server_name};
use crate::io::{CountingIo, PrefixedIo, connect, original_dst, write_header};
use crate::metrics::{Direction, HttpMetrics, TcpMetrics, TlsStatus, labels};
use crate::routes::{Cached, RouteCache};
use crate::runtime::Runtime;

const MAX_ROUTES: usize = 10_000;
/// How long a route forwarding to the original destination is kept before the target is
/// resolved again (a service created later, or a controller unreachable at first use).
pub const PASSTHROUGH_TTL: std::time::Duration = std::time::Duration::from_secs(10);
const NO_TLS_PLAIN: &str = "not_provided_by_service_discovery";

/// Per-endpoint state: connection, load, metrics.
#[derive(Debug)]
pub struct OutEndpoint {
    ewma: Arc<PeakEwma>,
    h2: H2Client,
    tls: Option<MeshTls>,
    http: Arc<HttpMetrics>,
    tcp: TcpMetrics,
    /// `tulle-orig-port` value, computed once.
    port_header: HeaderValue,
}

impl Balanced for OutEndpoint {
    fn load(&self) -> &Arc<PeakEwma> {
        &self.ewma
    }
}

#[allow(clippy::large_enum_variant)]
enum RouteKind {
    Balanced(Balancer<OutEndpoint>),
    Passthrough {
        addr: SocketAddr,
        h2: H2Client,
        http: Arc<HttpMetrics>,
    },
}

struct Route {
    kind: RouteKind,
    in_flight: AtomicUsize,
}

/// The outbound proxy.
pub struct Outbound {
    rt: Arc<Runtime>,
    routes: RouteCache<Route>,
    h1: Client<HttpConnector, Incoming>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl Outbound {
    pub fn new(rt: Arc<Runtime>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(rt.config.connect_timeout));
        let h1 = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Arc::new(Outbound {
            routes: RouteCache::new(MAX_ROUTES, rt.config.route_idle_timeout),
            rt,
            h1,
        })
    }

    /// Handles one accepted connection.
    pub async fn accept(self: Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        let _token = self.rt.drain.token();
        let _ = sock.set_nodelay(true);
        let cfg = &self.rt.config;
        let Some(orig) = original_dst(&sock).or(cfg.outbound_orig_dst_fallback) else {
            tracing::warn!(%peer, "outbound connection was not redirected and TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK is unset; closing");
            return;
        };
        if orig == cfg.outbound_addr {
            tracing::warn!(%peer, "outbound connection targets the proxy itself; closing");
            return;
        }
        let src = self.rt.metrics.tcp(
            labels(
                Direction::Outbound,
                None,
                &orig.to_string(),
                &TlsStatus::NoIdentity("loopback"),
                None,
            ),
            "src",
        );
        let _guard = src.open();
        let mut io = CountingIo::new(sock, src.read.clone(), src.write.clone());
        let (proto, buf) = if cfg.opaque_ports.contains(&orig.port()) {
            (Protocol::Opaque, Default::default())
        } else {
            match detect(&mut io, cfg.detect_timeout, false).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%peer, "reading: {e}");
                    return;
                }
            }
        };
        let io = PrefixedIo::new(buf, io);
        match proto {
            Protocol::Http1 | Protocol::Http2 => {
                let this = self.clone();
                let h2 = proto == Protocol::Http2;
                serve(io, h2, cfg, &self.rt.drain, move |req| {
                    this.clone().handle(req, orig)
                })
                .await;
            }
            _ => self.opaque(io, orig).await,
        }
    }

    async fn opaque<I>(&self, mut io: I, orig: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let cfg = &self.rt.config;
        let pick = match self.rt.discovery.resolve(Target::Addr(orig)).await {
            Resolution::Found(rx) => {
                let b = Balancer::new(rx, self.make_endpoint(None));
                match b.pick() {
                    Some(p) => Some(p),
                    None => {
                        tracing::info!(%orig, "no endpoints; closing");
                        return;
                    }
                }
            }
            Resolution::NotFound => None,
        };
        let result = match pick {
            Some((ep, svc)) => {
                let _pending = svc.ewma.start();
                let _g = svc.tcp.open();
                match connect(ep.addr, cfg.connect_timeout).await {
                    Err(e) => Err(e),
                    Ok(tcp) => match &svc.tls {
                        Some(tls) => {
                            let connector =
                                tokio_rustls::TlsConnector::from(self.rt.tls.client(ALPN_TCP));
                            match connector.connect(tls.name.clone(), tcp).await {
                                Err(source) => Err(ProxyError::Tls {
                                    addr: ep.addr,
                                    identity: tls.identity.clone(),
                                    source,
                                }),
                                Ok(tls_io) => {
                                    let mut up = CountingIo::new(
                                        tls_io,
                                        svc.tcp.read.clone(),
                                        svc.tcp.write.clone(),
                                    );
                                    match write_header(&mut up, ep.addr.port()).await {
                                        Err(e) => Err(ProxyError::Connect(ep.addr, e)),
                                        Ok(()) => {
                                            let _ = crate::io::splice(
                                                &mut io,
                                                &mut up,
                                                self.rt.config.idle_timeout,
                                            )
                                            .await;
                                            Ok(())
                                        }
                                    }
                                }
                            }
                        }
                        None => {
                            let mut up =
                                CountingIo::new(tcp, svc.tcp.read.clone(), svc.tcp.write.clone());
                            let _ =
                                crate::io::splice(&mut io, &mut up, self.rt.config.idle_timeout)
                                    .await;
                            Ok(())
                        }
                    },
                }
            }
            None => match connect(orig, cfg.connect_timeout).await {
                Err(e) => Err(e),
                Ok(mut up) => {
                    let _ = crate::io::splice(&mut io, &mut up, self.rt.config.idle_timeout).await;
                    Ok(())
                }
            },
        };
        if let Err(e) = result {
            tracing::info!(%orig, "opaque connection failed: {e}");
        }
    }

    fn make_endpoint(&self, authority: Option<String>) -> MakeEndpoint<OutEndpoint> {
        let rt = self.rt.clone();
        Box::new(move |ep: &Endpoint| {
            let tls = ep.identity.as_ref().and_then(|id| {
                Some(MeshTls {
                    config: rt.tls.client(ALPN_H2),
                    name: server_name(id)?,
                    identity: id.clone(),
                })
            });
            let status = match &ep.identity {
                Some(id) => TlsStatus::Mesh(id.clone()),
                None => TlsStatus::NoIdentity(NO_TLS_PLAIN),
            };
            let l = labels(
                Direction::Outbound,
                authority.as_deref(),
                &ep.addr.to_string(),
                &status,
                Some(&ep.labels),
            );
            let tcp = rt.metrics.tcp(l.clone(), "dst");
            Arc::new(OutEndpoint {
                ewma: Arc::new(PeakEwma::new(
                    std::time::Duration::from_millis(30),
                    std::time::Duration::from_secs(10),
                )),
                h2: H2Client::new(
                    ep.addr,
                    tls.clone(),
                    rt.config.connect_timeout,
                    Some(tcp.clone()),
                ),
                tls,
                http: Arc::new(rt.metrics.http(l)),
                tcp,
                port_header: HeaderValue::from(ep.addr.port()),
            })
        })
    }

    async fn route(&self, raw: &str, orig: SocketAddr) -> Arc<Cached<Route>> {
        if let Some(r) = self.routes.get(orig, raw) {
            return r;
        }
        let authority = normalize_authority(raw, Some(orig.port()));
        let mut res = Resolution::NotFound;
        if let Some(a) = &authority {
            res = self.rt.discovery.resolve(Target::Authority(a)).await;
        }
        if matches!(res, Resolution::NotFound) {
            res = self.rt.discovery.resolve(Target::Addr(orig)).await;
        }
        let kind = match res {
            Resolution::Found(rx) => {
                let label = rx.borrow().authority.clone().or(authority);
                RouteKind::Balanced(Balancer::new(rx, self.make_endpoint(label)))
            }
            Resolution::NotFound => {
                let l = labels(
                    Direction::Outbound,
                    authority.as_deref(),
                    &orig.to_string(),
                    &TlsStatus::NoIdentity(NO_TLS_PLAIN),
                    None,
                );
                RouteKind::Passthrough {
                    addr: orig,
                    h2: H2Client::new(orig, None, self.rt.config.connect_timeout, None),
                    http: Arc::new(self.rt.metrics.http(l)),
                }
            }
        };
        let ttl = matches!(kind, RouteKind::Passthrough { .. }).then_some(PASSTHROUGH_TTL);
        let route = Route {
            kind,
            in_flight: AtomicUsize::new(0),
        };
        self.routes.insert(orig, raw, route, ttl)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, orig: SocketAddr) -> Response<Body> {
        let raw = match req.version() {
            Version::HTTP_2 => req.uri().authority().map(Authority::as_str),
            _ => req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok()),
        }
        .unwrap_or("");
        let route = self.route(raw, orig).await;
        let n = route.in_flight.fetch_add(1, Ordering::Relaxed);
        let _dec = Dec(&route.in_flight);
        if n >= self.rt.config.max_in_flight {
            return ProxyError::FailFast.to_response();
        }
        let start = Instant::now();
        let done = |http: &Arc<HttpMetrics>, resp: Result<Response<Body>, ProxyError>| {
            let mut resp = resp.unwrap_or_else(|e| {
                tracing::debug!(%orig, "request failed: {e}");
                e.to_response()
            });
            http.latency(start.elapsed());
            count_response(http, &mut resp);
            resp
        };
        match &route.kind {
            RouteKind::Balanced(b) => match b.pick() {
                None => ProxyError::NoEndpoints.to_response(),
                Some((ep, svc)) => {
                    svc.http.request();
                    let pending = svc.ewma.start();
                    let r = self.timed(self.to_endpoint(&ep, &svc, req)).await;
                    pending.complete();
                    done(&svc.http, r)
                }
            },
            RouteKind::Passthrough { addr, h2, http } => {
                http.request();
                done(http, self.timed(self.to_plain(*addr, h2, req)).await)
            }
        }
    }

    async fn timed(
        &self,
        f: impl std::future::Future<Output = Result<Response<Body>, ProxyError>>,
    ) -> Result<Response<Body>, ProxyError> {
        tokio::time::timeout(self.rt.config.response_timeout, f)
            .await
            .unwrap_or(Err(ProxyError::ResponseTimeout))
    }

    async fn to_endpoint(
        &self,
        ep: &Endpoint,
        svc: &OutEndpoint,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        let Some(tls) = &svc.tls else {
            return self.to_plain(ep.addr, &svc.h2, req).await;
        };
        if ep.identity.is_some() && is_upgrade(&req) {
            let tls = MeshTls {
                config: self.rt.tls.client(crate::identity::ALPN_H1),
                ..tls.clone()
            };
            return upgrade(
                ep.addr,
                Some((tls, ep.addr.port())),
                self.rt.config.connect_timeout,
                req,
            )
            .await;
        }
        if req.version() != Version::HTTP_2 {
            req.headers_mut()
                .insert(ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
            absolute_uri(&mut req)?;
            strip_hop_by_hop(req.headers_mut());
            *req.version_mut() = Version::HTTP_2;
        }
        req.headers_mut().insert(ORIG_PORT, svc.port_header.clone());
        Ok(proxied(svc.h2.send(req).await?))
    }

    async fn to_plain(
        &self,
        addr: SocketAddr,
        h2: &H2Client,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        if is_upgrade(&req) {
            return upgrade(addr, None, self.rt.config.connect_timeout, req).await;
        }
        if req.version() == Version::HTTP_2 {
            return Ok(proxied(h2.send(req).await?));
        }
        set_uri_addr(&mut req, addr)?;
        self.h1
            .request(req)
            .await
            .map(proxied)
            .map_err(|e| ProxyError::Client(addr, e.to_string(), e.is_connect()))
    }
}

struct Dec<'a>(&'a AtomicUsize);
impl Drop for Dec<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Makes the URI absolute (`http://host/path`) from the Host header, for HTTP/2.
fn absolute_uri<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    if req.uri().authority().is_some() {
        return Ok(());
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .ok_or(ProxyError::BadRequest("missing or invalid Host header"))?;
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(host);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    Ok(())
}

/// Points the URI at `addr` (the connection target), keeping the Host header.
pub fn set_uri_addr<B>(req: &mut Request<B>, addr: SocketAddr) -> Result<(), ProxyError> {
    if !req.headers().contains_key(http::header::HOST)
        && let Some(a) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(
        Authority::try_from(addr.to_string())
            .map_err(|_| ProxyError::BadRequest("invalid address"))?,
    );
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    Ok(())
}
