//! Inbound authorization of HTTP requests (SMI Traffic Access): each request is decided
//! against the pod's current [`Policy`] (read per request, so an update applies to the next
//! request) by its target port, the client's mesh identity, method, path and headers.
//! A denied request gets `403` with `tulle-proxy-error: unauthorized` (gRPC: `200` with
//! `grpc-status: 7`), and never reaches the application. Every decision is counted in
//! `inbound_http_authz_{allow,deny}_total`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{Either, Ready, ready};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either as BodyEither, Full};
use prometheus_client::metrics::counter::Counter;
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::ERROR_HEADER;
use crate::metrics::{AuthzKind, Labels, Metrics};
use crate::policy::{Decision, Policy, PolicyRx};
use crate::svc::AppTarget;

/// Metric handles cached per connection (a connection has one client; few ports and routes).
const MAX_CACHED: usize = 64;

/// Policy generation, target port and decision.
type CacheKey = (u64, u16, Decision);

/// The authorization state of one inbound connection.
pub struct AuthzConn {
    policy: PolicyRx,
    /// The client's mesh identity (`None`: no mesh identity).
    client: Option<Box<str>>,
    metrics: Arc<Metrics>,
    cache: Mutex<Vec<(CacheKey, Counter)>>,
}

impl std::fmt::Debug for AuthzConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzConn")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl AuthzConn {
    pub fn new(policy: PolicyRx, client: Option<&str>, metrics: Arc<Metrics>) -> Self {
        AuthzConn {
            policy,
            client: client.filter(|c| !c.is_empty()).map(Into::into),
            metrics,
            cache: Mutex::default(),
        }
    }

    /// Counts a decision (cached handle; labels are built once per connection and key).
    fn count(&self, policy: &Policy, port: u16, d: &Decision) {
        let key = (policy.generation(), port, *d);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
            c.inc();
            return;
        }
        cache.retain(|((g, _, _), _)| *g == key.0);
        let c = self.metrics.authz(
            AuthzKind::Http,
            d.allowed,
            &authz_labels(&self.metrics, policy, port, d, self.client.as_deref(), true),
        );
        c.inc();
        if cache.len() < MAX_CACHED {
            cache.push((key, c));
        }
    }
}

/// The label set of an authorization decision: `target_port`, `authz`, `route` (HTTP
/// only), `client_id` (empty without a mesh identity, so unauthenticated traffic cannot
/// create unbounded series).
pub fn authz_labels(
    metrics: &Metrics,
    policy: &Policy,
    port: u16,
    d: &Decision,
    client: Option<&str>,
    http: bool,
) -> Labels {
    let mut l: Labels = Vec::with_capacity(4);
    // Bounded: a port scan adds one `other` series, not one per port.
    l.push(("target_port".into(), metrics.target_port_label(port)));
    l.push(("authz".into(), policy.authz_label(d).to_string()));
    if http {
        l.push(("route".into(), policy.route_label(d).to_string()));
    }
    l.push(("client_id".into(), client.unwrap_or("").to_string()));
    l
}

/// Layer of [`Authorize`] for one connection.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    conn: Arc<AuthzConn>,
}

impl AuthorizeLayer {
    pub fn new(conn: Arc<AuthzConn>) -> Self {
        AuthorizeLayer { conn }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            conn: self.conn.clone(),
        }
    }
}

/// Admits or refuses each request; needs the request's [`AppTarget`] (set by
/// [`crate::svc::MeshHeaders`]). A request without one (port unknown) passes on to be
/// answered `502` by the application client.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    conn: Arc<AuthzConn>,
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(port) = req.extensions().get::<AppTarget>().map(|t| t.addr.port()) else {
            return Either::Right(self.inner.call(req));
        };
        let policy = self.conn.policy.borrow().clone();
        let client = self.conn.client.as_deref();
        let d = policy.check_http(port, client, req.method(), req.uri().path(), req.headers());
        self.conn.count(&policy, port, &d);
        if d.allowed {
            return Either::Right(self.inner.call(req));
        }
        let reason = policy.deny_reason(&d);
        // Debug only: denials are counted, and a denied client must not flood the log.
        tracing::debug!(
            client = client.unwrap_or("-"),
            port,
            method = %req.method(),
            path = req.uri().path(),
            "request denied: {reason}"
        );
        Either::Left(ready(Ok(denied(&req, client, port, reason))))
    }
}

/// The answer to a denied request: `403` (gRPC: `grpc-status: 7` PERMISSION_DENIED).
pub fn denied<B>(
    req: &Request<B>,
    client: Option<&str>,
    port: u16,
    reason: &str,
) -> Response<Body> {
    let msg = format!(
        "unauthorized: client {} may not reach port {port}: {reason}",
        client.unwrap_or("with no mesh identity")
    );
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut r = if grpc {
        let mut r = Response::new(BodyEither::Right(Full::new(Bytes::new())));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from_static("7"));
        if let Ok(v) = HeaderValue::from_str(&grpc_encode(&msg)) {
            h.insert("grpc-message", v);
        }
        r
    } else {
        let mut r = Response::new(BodyEither::Right(Full::new(Bytes::from(msg + "\n"))));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    };
    r.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static("unauthorized"));
    r
}

/// Percent-encodes a `grpc-message` (bytes outside printable ASCII, and `%`).
fn grpc_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DefaultPolicy, fixed};
    use std::net::SocketAddr;

    fn req(grpc: bool) -> Request<()> {
        let mut r = Request::get("/x").body(()).unwrap();
        if grpc {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/grpc+proto".parse().unwrap(),
            );
        }
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        r.extensions_mut().insert(AppTarget {
            addr,
            downgrade: false,
        });
        r
    }

    #[tokio::test]
    async fn denies_with_403_or_grpc_status_and_counts() {
        use tower::ServiceExt;
        let metrics = Arc::new(Metrics::new());
        let conn = Arc::new(AuthzConn::new(
            fixed(Policy::default_only(DefaultPolicy::Authenticated)),
            None,
            metrics.clone(),
        ));
        let app = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(crate::body::simple(StatusCode::OK, "ok"))
        });
        let svc = AuthorizeLayer::new(conn).layer(app);
        let r = svc.clone().oneshot(req(false)).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[ERROR_HEADER], "unauthorized");
        let r = svc.clone().oneshot(req(true)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        let m = r.headers()["grpc-message"].to_str().unwrap();
        assert!(m.contains("no mesh identity") && m.contains("8080"), "{m}");
        let text = metrics.encode();
        assert!(
            text.contains(
                "inbound_http_authz_deny_total{target_port=\"8080\",authz=\"default:authenticated\",route=\"\",client_id=\"\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_encode("a b%é"), "a b%25%C3%A9");
    }
}
