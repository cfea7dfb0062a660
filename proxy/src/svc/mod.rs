//! The HTTP request path as a stack of tower layers, one concern each.
//!
//! Outbound, per route: [`ErrorResponseLayer`] → [`SplitRouter`] (TrafficSplit: the apex
//! or a backend by weight) → per backend service: [`FailFastLayer`] (bounded in-flight
//! requests, no queue) → [`crate::balance::Balance`] (p2c over peak-EWMA) → per endpoint:
//! [`RecordHttpLayer`] (request/response metrics) → [`ErrorResponseLayer`] →
//! [`ResponseTimeoutLayer`] → [`OrigProtoLayer`] (HTTP/1 carried as HTTP/2 between proxies)
//! → [`crate::client::EndpointClient`].
//!
//! Inbound, per connection: [`MeshHeadersLayer`] (trusted per-request headers from the
//! client proxy, client identity) → [`RecordHttpLayer`] → [`AuthorizeLayer`] (SMI Traffic
//! Access: `403` unless the policy admits the request) → [`ErrorResponseLayer`] →
//! [`RequestBodyLimitLayer`] (`413` past `TULLE_PROXY_MAX_REQUEST_BODY_BYTES`) →
//! [`ResponseTimeoutLayer`] → [`DowngradeLayer`] (the client's
//! original HTTP version restored) → [`crate::client::AppClient`].
//!
//! Services are cheap to clone (handles to shared state): hyper clones the connection's
//! stack for each request.

mod authorize;
mod errors;
mod limits;
mod mesh_headers;
mod orig_proto;
mod record;
mod split;

pub use authorize::{Authorize, AuthorizeLayer, AuthzConn, authz_labels, denied};
pub use errors::{ErrorResponse, ErrorResponseLayer};
pub use limits::{
    FailFast, FailFastLayer, ProxyErrors, RequestBodyLimit, RequestBodyLimitLayer, ResponseTimeout,
    ResponseTimeoutLayer,
};
pub use mesh_headers::{AppTarget, InboundConn, MeshHeaders, MeshHeadersLayer};
pub use orig_proto::{Downgrade, DowngradeLayer, OrigProto, OrigProtoLayer};
pub use record::{PickMetrics, RecordHttp, RecordHttpLayer};
pub use split::{BackendService, BackendSlot, SplitRouter, SplitState};

/// A boxed response future of the proxy's services.
pub type BoxResponse<E> =
    futures::future::BoxFuture<'static, Result<http::Response<crate::body::Body>, E>>;
