//! The outbound side: connections from the local application to other services.
//!
//! Pipeline per connection: original destination → protocol detection (skipped for opaque
//! ports) → HTTP: route by authority (or original destination) → TrafficSplit (the apex or
//! a backend service by weight, module `split`) → balancer → endpoint (mesh h2 over mTLS, or
//! plain) with in-flight limit and response timeout; opaque: route by original destination
//! → TrafficSplit per connection → endpoint (mesh mTLS with a transport header, or plain).

mod endpoint;
mod split;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};

use crate::balance::{Balance, Balancer, Pending};
use crate::body::{Body, RequestBody};
use crate::client::PlainH1;
use crate::conn::{CountingIo, PrefixedIo, original_dst};
use crate::detect::{Protocol, detect};
use crate::discovery::{Destination, DiscoveredEndpoint, Lookup, Target, normalize_authority};
use crate::error::ProxyError;
use crate::metrics::{Direction, TlsStatus, labels};
use crate::routes::{Cached, RouteCache};
use crate::runtime::Runtime;
use crate::server::{ConnLimit, serve};
use crate::svc::{
    BoxResponse, ErrorResponse, ErrorResponseLayer, FailFast, FailFastLayer, SplitRouter,
    SplitState,
};
use crate::tcp::{self, TcpTarget};
use endpoint::{HttpEndpoints, OutEndpoint, TcpEndpoints};
use split::{Concrete, Logical};

const MAX_ROUTES: usize = 10_000;
/// How long a route forwarding to the original destination is kept before the target is
/// resolved again (a service created later, or a controller unreachable at first use).
pub const PASSTHROUGH_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a route that failed closed (discovery unavailable) answers 503 before the
/// target is resolved again.
pub const FAIL_CLOSED_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The request stack of one route (a service, or an original destination outside the mesh):
/// the split between the apex and its backends, each a [`BackendStack`].
type RouteStack = ErrorResponse<SplitRouter<BackendStack>>;

/// The request stack of one backend service: fail-fast, then the balancer over its
/// endpoints.
#[derive(Clone, Debug)]
pub struct BackendStack {
    balancer: Arc<Balancer<OutEndpoint>>,
    svc: FailFast<Balance<OutEndpoint>>,
}

impl Service<Request<RequestBody>> for BackendStack {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = <FailFast<Balance<OutEndpoint>> as Service<Request<RequestBody>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.svc.poll_ready(cx)
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        self.svc.call(req)
    }
}

/// A cached route.
struct Route {
    stack: RouteKind,
}

/// What a route does with requests.
enum RouteKind {
    /// Through the split, balancers and endpoints.
    Stack(RouteStack),
    /// Discovery did not answer for an address inside the mesh networks: every request is
    /// answered 503 until the route expires and is resolved again.
    FailClosed(SocketAddr),
}

/// The outbound proxy.
pub struct Outbound {
    rt: Arc<Runtime>,
    routes: RouteCache<Route>,
    h1: PlainH1,
    limit: ConnLimit,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

/// The HTTP service of one outbound connection: routes each request by its authority (or
/// the connection's original destination) to its route's stack.
#[derive(Debug, Clone)]
struct OutboundHttp {
    outbound: Arc<Outbound>,
    orig: SocketAddr,
}

impl Service<Request<Incoming>> for OutboundHttp {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxResponse<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        // No request-body limit on the way out: it is the destination's policy.
        let req = req.map(RequestBody::new);
        let this = self.clone();
        Box::pin(async move {
            let raw = match req.version() {
                Version::HTTP_2 => req.uri().authority().map(Authority::as_str),
                _ => req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok()),
            }
            .unwrap_or("");
            let route = this.outbound.clone().route(raw, this.orig).await;
            match &route.stack {
                RouteKind::Stack(stack) => stack.clone().oneshot(req).await,
                RouteKind::FailClosed(orig) => {
                    Ok(ProxyError::DiscoveryUnavailable(*orig).to_response())
                }
            }
        })
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
            limit: ConnLimit::new(
                "outbound",
                crate::config::ENV_OUTBOUND_MAX_CONNECTIONS,
                rt.config.outbound_max_connections,
                rt.metrics.connections_refused(Direction::Outbound),
            ),
            rt,
            h1,
        })
    }

    /// Handles one accepted connection.
    pub async fn accept(self: Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        let Some(_permit) = self.limit.admit(&sock) else {
            return;
        };
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
        let opaque_port = cfg.opaque_ports.contains(&orig.port());
        let (proto, buf) = if opaque_port {
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
        let silent = proto == Protocol::Opaque && buf.is_empty() && !opaque_port;
        let io = PrefixedIo::new(buf, io);
        match proto {
            Protocol::Http1 | Protocol::Http2 => self.http(io, proto, orig).await,
            _ if silent => self.silent(io, orig).await,
            _ => self.opaque(io, orig).await,
        }
    }

    async fn http<I>(self: &Arc<Self>, io: I, proto: Protocol, orig: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = OutboundHttp {
            outbound: self.clone(),
            orig,
        };
        let h2 = proto == Protocol::Http2;
        serve(io, h2, &self.rt.config, &self.rt.drain, svc).await;
    }

    /// Where an opaque connection to `orig` goes; the endpoint's load counts the connection
    /// while the returned guard lives. `None`: a service without endpoints.
    async fn tcp_target(&self, orig: SocketAddr) -> Option<(TcpTarget, Option<Pending>)> {
        let mut res = self.rt.discovery.resolve(Target::Addr(orig)).await;
        if let Lookup::Found(_) = res {
            let profile = self.rt.discovery.profile(Target::Addr(orig)).await;
            let profile = profile.borrow().clone();
            res = split::tcp_backend(self, &profile, res).await?;
        }
        match res {
            Lookup::Found(rx) => {
                let Some(ep) = Balancer::new(
                    rx,
                    Box::new(TcpEndpoints {
                        rt: self.rt.clone(),
                    }),
                )
                .pick() else {
                    tracing::info!(%orig, "no endpoints; closing");
                    return None;
                };
                Some((ep.target.clone(), Some(ep.ewma.start())))
            }
            Lookup::Unavailable if self.in_mesh_networks(orig) => {
                tracing::warn!(%orig, "{}; closing", ProxyError::DiscoveryUnavailable(orig));
                None
            }
            // Outside the mesh: to the original destination as is.
            Lookup::NotFound | Lookup::Unavailable => {
                let target = TcpTarget {
                    addr: orig,
                    mesh: None,
                    metrics: None,
                };
                Some((target, None))
            }
        }
    }

    async fn opaque<I>(&self, mut io: I, orig: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = &self.rt.config;
        let Some((target, _pending)) = self.tcp_target(orig).await else {
            return;
        };
        let forwarded = tcp::forward(&mut io, &target, cfg.connect_timeout, cfg.idle_timeout);
        if let Err(e) = forwarded.await {
            tracing::info!(%orig, "opaque connection failed: {e}");
        }
    }

    /// A client that sent nothing within the detection timeout: a server-speaks-first
    /// protocol, or an idle pooled HTTP connection. The upstream connection is opened and
    /// whichever side speaks first decides: the server (opaque), or the client (detected
    /// on its bytes; an HTTP client gets its requests routed and balanced as usual).
    async fn silent<I>(self: &Arc<Self>, io: I, orig: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = &self.rt.config;
        let Some((target, pending)) = self.tcp_target(orig).await else {
            return;
        };
        let up = match tcp::connect(&target, cfg.connect_timeout).await {
            Ok(up) => up,
            Err(e) => return tracing::info!(%orig, "opaque connection failed: {e}"),
        };
        let http = tcp::splice_unless_http(io, up, cfg.detect_timeout, cfg.idle_timeout).await;
        if let Some((proto, io)) = http {
            drop(pending);
            self.http(io, proto, orig).await;
        }
    }

    /// The stack of one backend service over the endpoints of `rx`.
    fn backend_stack(
        &self,
        rx: watch::Receiver<Arc<Destination>>,
        label: Option<String>,
        service: Option<String>,
    ) -> BackendStack {
        let balancer = Arc::new(Balancer::new(
            rx,
            Box::new(HttpEndpoints {
                rt: self.rt.clone(),
                h1: self.h1.clone(),
                authority: label,
                service,
            }),
        ));
        let fail_fast = FailFastLayer {
            max_in_flight: self.rt.config.max_in_flight,
        };
        BackendStack {
            svc: fail_fast.layer(Balance::new(balancer.clone())),
            balancer,
        }
    }

    /// The stack of a split's concrete backend; `None` when it is not a known service.
    async fn backend(&self, c: &Concrete) -> Option<BackendStack> {
        match self
            .rt
            .discovery
            .resolve(Target::Authority(&c.authority))
            .await
        {
            Lookup::Found(rx) => {
                Some(self.backend_stack(rx, c.apex_label.clone(), c.service().map(str::to_string)))
            }
            Lookup::NotFound | Lookup::Unavailable => None,
        }
    }

    /// Whether `orig` is inside the cluster's pod and service networks, where discovery
    /// not answering must not mean plaintext.
    fn in_mesh_networks(&self, orig: SocketAddr) -> bool {
        let ip = orig.ip().to_canonical();
        self.rt.config.mesh_networks.iter().any(|n| n.contains(&ip))
    }

    async fn route(self: Arc<Self>, raw: &str, orig: SocketAddr) -> Arc<Cached<Route>> {
        if let Some(r) = self.routes.get(orig, raw) {
            return r;
        }
        let logical = Logical {
            authority: normalize_authority(raw, Some(orig.port())),
            orig,
        };
        let mut res = Lookup::NotFound;
        let mut by_authority = false;
        if let Some(a) = &logical.authority {
            res = self.rt.discovery.resolve(Target::Authority(a)).await;
            by_authority = matches!(res, Lookup::Found(_));
        }
        // Unavailable by authority: the controller is not answering; asking again by
        // address would only wait once more.
        if !by_authority && !matches!(res, Lookup::Unavailable) {
            res = self.rt.discovery.resolve(Target::Addr(orig)).await;
        }
        if matches!(res, Lookup::Unavailable) && self.in_mesh_networks(orig) {
            tracing::warn!(%orig, authority = raw, "{}", ProxyError::DiscoveryUnavailable(orig));
            let route = Route {
                stack: RouteKind::FailClosed(orig),
            };
            return self.routes.insert(orig, raw, route, Some(FAIL_CLOSED_TTL));
        }
        let route = match res {
            Lookup::Found(rx) => {
                let label = rx.borrow().authority.clone().or(logical.authority.clone());
                let service = label.as_deref().and_then(split::service_name);
                let apex = self.backend_stack(rx, label.clone(), service.map(str::to_string));
                let target = match (&logical.authority, by_authority) {
                    (Some(a), true) => Target::Authority(a),
                    _ => Target::Addr(logical.orig),
                };
                let profile = self.rt.discovery.profile(target).await;
                let state = split::follow(self.clone(), profile, label).await;
                (SplitRouter::new(apex, state), None)
            }
            // Outside the mesh: the original destination is the only endpoint, in plain text.
            Lookup::NotFound | Lookup::Unavailable => {
                let only = Destination {
                    authority: None,
                    endpoints: vec![DiscoveredEndpoint {
                        addr: orig,
                        identity: None,
                        labels: Default::default(),
                    }],
                };
                let (_, rx) = watch::channel(Arc::new(only));
                let apex = self.backend_stack(rx, logical.authority, None);
                let (_, none) = watch::channel(Arc::new(SplitState::default()));
                (SplitRouter::new(apex, none), Some(PASSTHROUGH_TTL))
            }
        };
        let (router, ttl) = route;
        let route = Route {
            stack: RouteKind::Stack(ErrorResponseLayer.layer(router)),
        };
        self.routes.insert(orig, raw, route, ttl)
    }
}
