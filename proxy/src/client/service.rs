//! The clients as tower services, at the bottom of the request stacks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::Service;

use super::{H1Pool, H2Client, MeshTls, upgrade};
use crate::body::{Body, RequestBody, proxied};
use crate::error::ProxyError;
use crate::http_headers::is_upgrade;
use crate::svc::{AppTarget, BoxResponse};

/// A pooled HTTP/1.1 client to services outside the mesh.
pub type PlainH1 = Client<HttpConnector, RequestBody>;

/// Reaches one endpoint: HTTP/2 on its shared connection (every request to a meshed
/// endpoint is HTTP/2 by now), HTTP/1.1 through the pool to a plain endpoint, upgrades on a
/// dedicated connection (mesh mTLS with a transport header when meshed).
#[derive(Debug, Clone)]
pub struct EndpointClient {
    inner: Arc<EndpointInner>,
}

#[derive(Debug)]
struct EndpointInner {
    addr: SocketAddr,
    h2: H2Client,
    /// Mesh TLS for upgrade connections (ALPN `tulle.h1`), when meshed.
    upgrade_tls: Option<MeshTls>,
    h1: PlainH1,
    connect_timeout: Duration,
}

impl EndpointClient {
    pub fn new(
        addr: SocketAddr,
        h2: H2Client,
        upgrade_tls: Option<MeshTls>,
        h1: PlainH1,
        connect_timeout: Duration,
    ) -> Self {
        EndpointClient {
            inner: Arc::new(EndpointInner {
                addr,
                h2,
                upgrade_tls,
                h1,
                connect_timeout,
            }),
        }
    }
}

impl EndpointInner {
    async fn send(&self, mut req: Request<RequestBody>) -> Result<Response<Body>, ProxyError> {
        if is_upgrade(&req) {
            let tls = self.upgrade_tls.clone().map(|t| (t, self.addr.port()));
            return upgrade(self.addr, tls, self.connect_timeout, req).await;
        }
        if req.version() == Version::HTTP_2 {
            return Ok(proxied(self.h2.send(req).await?));
        }
        set_uri_addr(&mut req, self.addr)?;
        self.h1
            .request(req)
            .await
            .map(proxied)
            .map_err(|source| ProxyError::Client {
                addr: self.addr,
                source,
            })
    }
}

impl Service<Request<RequestBody>> for EndpointClient {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxResponse<ProxyError>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(req).await })
    }
}

/// Reaches the local application at the request's [`AppTarget`]: HTTP/2 on one shared
/// connection per port, HTTP/1.1 through a pool per port, upgrades on their own connection.
#[derive(Debug, Clone)]
pub struct AppClient {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    h1: Mutex<HashMap<u16, Arc<H1Pool>>>,
    h2: Mutex<HashMap<u16, Arc<H2Client>>>,
    connect_timeout: Duration,
}

impl AppClient {
    pub fn new(connect_timeout: Duration) -> Self {
        AppClient {
            inner: Arc::new(AppInner {
                h1: Mutex::default(),
                h2: Mutex::default(),
                connect_timeout,
            }),
        }
    }
}

impl AppInner {
    async fn send(&self, mut req: Request<RequestBody>) -> Result<Response<Body>, ProxyError> {
        let addr = req
            .extensions()
            .get::<AppTarget>()
            .ok_or(ProxyError::NoOrigPort)?
            .addr;
        let timeout = self.connect_timeout;
        if is_upgrade(&req) {
            return upgrade(addr, None, timeout, req).await;
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
        pool.send(req).await
    }
}

impl Service<Request<RequestBody>> for AppClient {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxResponse<ProxyError>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(req).await })
    }
}

/// Points the URI at `addr` (the connection target), keeping the Host header.
fn set_uri_addr<B>(req: &mut Request<B>, addr: SocketAddr) -> Result<(), ProxyError> {
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
        *req.uri_mut() = Uri::from(pq);
    }
    Ok(())
}
