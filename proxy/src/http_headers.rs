//! HTTP headers and messages as the proxy sees them: the mesh's own headers between proxies,
//! upgrades, hop-by-hop headers (removed when changing HTTP versions) and the failure
//! classification of a response at its headers.

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Version};

/// Header between proxies: the client's original HTTP version when it was not HTTP/2.
pub const ORIG_PROTO: HeaderName = HeaderName::from_static("tulle-orig-proto");
/// Header between proxies: the original destination port.
pub const ORIG_PORT: HeaderName = HeaderName::from_static("tulle-orig-port");
/// Header added by the inbound proxy: the client's mesh identity.
pub const CLIENT_ID: HeaderName = HeaderName::from_static("tulle-client-id");

/// Is this an HTTP/1.1 upgrade (WebSocket, ...) or CONNECT request?
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    if req.version() == Version::HTTP_2 {
        return false;
    }
    if req.method() == http::Method::CONNECT {
        return true;
    }
    req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes connection-specific headers (RFC 9110 §7.6.1) before changing HTTP versions.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(conn) = h.get(header::CONNECTION).cloned()
        && let Ok(s) = conn.to_str()
    {
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !name.eq_ignore_ascii_case("trailers") {
                h.remove(name);
            }
        }
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(name);
    }
    if h.get(header::TE).is_some_and(|v| v != "trailers") {
        h.remove(header::TE);
    }
}

/// Classifies a response (at its headers): 5xx, or a gRPC error status in the headers.
pub fn is_failure(status: http::StatusCode, headers: &HeaderMap) -> bool {
    status.is_server_error()
        || headers
            .get("grpc-status")
            .is_some_and(|v| v.as_bytes() != b"0")
}
