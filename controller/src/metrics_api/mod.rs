//! The SMI Traffic Metrics API (`metrics.smi-spec.io/v1alpha1`): an aggregated API server
//! that the Kubernetes API server forwards `/apis/metrics.smi-spec.io/v1alpha1/...` to.
//!
//! - [`path`]: the URL space and the `?t=` / `labelSelector` parameters;
//! - [`objects`]: the JSON shapes (`TrafficMetrics`, `TrafficMetricsList`, discovery, `Status`);
//! - [`handler`]: one request → the golden-metrics queries of `tulle-metrics` → objects,
//!   after authorizing the caller (a SubjectAccessReview through [`Authorizer`]);
//! - [`server`]: HTTPS with the controller's serving certificate, authenticating the API
//!   server's front-proxy client certificate and taking the user from its headers.
//!
//! Kubernetes itself is reached only through the [`Authorizer`] and [`Catalog`] traits
//! (implemented in `crate::k8s::metrics_api`), so this module has no kube types.

pub mod handler;
pub mod objects;
pub mod path;
pub mod server;
#[cfg(test)]
mod tests;

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use tulle_metrics::golden::{Kind, ResourceRef};

/// Who is asking: the user the API server authenticated (from the front-proxy headers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// User name.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request does, for the SubjectAccessReview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// `get` or `list`.
    pub verb: &'static str,
    /// The resource (`deployments`).
    pub resource: &'static str,
    /// `edges` for the edges sub-resource.
    pub subresource: Option<&'static str>,
    /// The namespace (none for cluster-wide lists and namespaces).
    pub namespace: Option<String>,
    /// The name of a single item.
    pub name: Option<String>,
}

/// Decides whether a caller may do something.
pub trait Authorizer: Send + Sync {
    /// `Ok(Err(reason))` when denied; `Err` when no decision could be had.
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Result<(), String>, String>>;
}

/// The resources that exist.
pub trait Catalog: Send + Sync {
    /// The resources of `kind` (in `namespace`, or all) matching the label selector.
    fn list<'a>(
        &'a self,
        kind: Kind,
        namespace: Option<&'a str>,
        label_selector: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ResourceRef>, String>>;
}
