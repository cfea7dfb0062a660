//! HTTP/1 between proxies rides HTTP/2: [`OrigProto`] (outbound) rewrites an HTTP/1.1
//! request to HTTP/2 with the `tulle-orig-proto` and `tulle-orig-port` headers;
//! [`Downgrade`] (inbound) restores HTTP/1.1 for the application and strips the HTTP/2
//! hop-by-hop headers from its response.

use std::task::{Context, Poll};

use futures::TryFutureExt;
use futures::future::{Either, MapOk, Ready, ready};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::ProxyError;
use crate::http_headers::{ORIG_PORT, ORIG_PROTO, is_upgrade, strip_hop_by_hop};
use crate::svc::AppTarget;

/// Layer of [`OrigProto`] for an endpoint reached over mesh mTLS on `port`.
#[derive(Debug, Clone)]
pub struct OrigProtoLayer {
    /// `tulle-orig-port`; `None` for endpoints outside the mesh (nothing to rewrite).
    port: Option<HeaderValue>,
}

impl OrigProtoLayer {
    /// For an endpoint on `port`, meshed or not.
    pub fn new(port: u16, meshed: bool) -> Self {
        OrigProtoLayer {
            port: meshed.then(|| HeaderValue::from(port)),
        }
    }
}

impl<S> Layer<S> for OrigProtoLayer {
    type Service = OrigProto<S>;
    fn layer(&self, inner: S) -> OrigProto<S> {
        OrigProto {
            inner,
            port: self.port.clone(),
        }
    }
}

/// Carries HTTP/1.1 requests to a meshed endpoint as HTTP/2 (upgrades excepted: they get a
/// connection of their own).
#[derive(Debug, Clone)]
pub struct OrigProto<S> {
    inner: S,
    port: Option<HeaderValue>,
}

impl<S, B> Service<Request<B>> for OrigProto<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<Ready<Result<Response<Body>, ProxyError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(port) = &self.port
            && !is_upgrade(&req)
        {
            if req.version() != Version::HTTP_2 {
                if let Err(e) = absolute_uri(&mut req) {
                    return Either::Left(ready(Err(e)));
                }
                req.headers_mut()
                    .insert(ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
                strip_hop_by_hop(req.headers_mut());
                *req.version_mut() = Version::HTTP_2;
            }
            req.headers_mut().insert(ORIG_PORT, port.clone());
        }
        Either::Right(self.inner.call(req))
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

/// Layer of [`Downgrade`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DowngradeLayer;

impl<S> Layer<S> for DowngradeLayer {
    type Service = Downgrade<S>;
    fn layer(&self, inner: S) -> Downgrade<S> {
        Downgrade { inner }
    }
}

/// Restores HTTP/1.1 on requests that the client proxy carried as HTTP/2
/// ([`AppTarget::downgrade`]).
#[derive(Debug, Clone)]
pub struct Downgrade<S> {
    inner: S,
}

type StripFn = fn(Response<Body>) -> Response<Body>;

fn strip_response(mut resp: Response<Body>) -> Response<Body> {
    strip_hop_by_hop(resp.headers_mut());
    resp
}

impl<S, B> Service<Request<B>> for Downgrade<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<MapOk<S::Future, StripFn>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let downgrade = req
            .extensions()
            .get::<AppTarget>()
            .is_some_and(|t| t.downgrade);
        if !downgrade {
            return Either::Right(self.inner.call(req));
        }
        *req.version_mut() = Version::HTTP_11;
        Either::Left(self.inner.call(req).map_ok(strip_response as StripFn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uri_needs_a_host() {
        let mut req = Request::get("/p?q")
            .header("host", "web:8080")
            .body(())
            .unwrap();
        absolute_uri(&mut req).unwrap();
        assert_eq!(req.uri(), "http://web:8080/p?q");
        let mut req = Request::get("/p").body(()).unwrap();
        assert!(matches!(
            absolute_uri(&mut req),
            Err(ProxyError::BadRequest(_))
        ));
    }
}
