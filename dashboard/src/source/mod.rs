//! Where the data comes from: the [`Cluster`] trait, read-only, answered by the Kubernetes
//! API ([`kube::KubeCluster`]: objects, and the golden metrics through the aggregated SMI
//! Traffic Metrics API) or by canned values ([`fake::FakeCluster`], for tests and the
//! synthetic topology).
//!
//! - [`parse`]: the JSON of the Traffic Metrics API and of the SMI objects → [`crate::model`];
//! - [`objects`]: Kubernetes objects (k8s-openapi types) → [`crate::model`];
//! - [`certs`]: PEM certificates → their validity;
//! - [`identity`]: the issuer's expiry from tulle-identity's `/metrics` (not its Secret).

pub mod certs;
pub mod fake;
pub mod identity;
pub mod kube;
pub mod objects;
pub mod parse;

use futures::future::BoxFuture;

use crate::Result;
use crate::model::{
    BackendMetrics, ControlPlane, EdgeMetrics, NamespaceInfo, PodInfo, ResourceMetrics,
    ServiceInfo, SmiObjects, TargetMetrics, WorkloadInfo, WorkloadRef,
};

/// A future of the cluster's answer.
pub type Answer<'a, T> = BoxFuture<'a, Result<T>>;

/// What the metrics API is asked for: a list of one resource kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsKind {
    /// `namespaces`.
    Namespaces,
    /// `pods`.
    Pods,
    /// A workload kind.
    Workload(crate::model::Kind),
}

impl MetricsKind {
    /// The resource name in the API.
    pub fn plural(self) -> &'static str {
        match self {
            MetricsKind::Namespaces => "namespaces",
            MetricsKind::Pods => "pods",
            MetricsKind::Workload(k) => k.plural(),
        }
    }
}

/// Everything the pages read. Read-only; each method is one request (or one cached answer),
/// [`Cluster::edges_among`] one per namespace and kind it covers.
pub trait Cluster: Send + Sync {
    /// The control plane: its Deployments, certificates, webhook and metrics APIService.
    fn control_plane(&self) -> Answer<'_, ControlPlane>;

    /// All namespaces.
    fn namespaces(&self) -> Answer<'_, Vec<NamespaceInfo>>;

    /// The workloads (Deployments, StatefulSets, DaemonSets) of `namespace`, or of all.
    fn workloads<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<WorkloadInfo>>;

    /// The pods of `namespace` matching a label selector.
    fn pods<'a>(&'a self, namespace: &'a str, selector: &'a str) -> Answer<'a, Vec<PodInfo>>;

    /// The Services of `namespace`, or of all.
    fn services<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<ServiceInfo>>;

    /// The SMI objects of `namespace` (or all) and the controller's Warning Events on them.
    fn smi<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, SmiObjects>;

    /// One list of the Traffic Metrics API: every resource of `kind` in `namespace` (or all),
    /// optionally with a label selector.
    fn metrics<'a>(
        &'a self,
        kind: MetricsKind,
        namespace: Option<&'a str>,
        selector: Option<&'a str>,
    ) -> Answer<'a, Vec<ResourceMetrics>>;

    /// The edges of one workload (both ways).
    fn edges<'a>(&'a self, of: &'a WorkloadRef) -> Answer<'a, Vec<EdgeMetrics>>;

    /// Every edge touching `workloads` (the topology): one aggregate request per namespace
    /// and kind (`?edges=true` on the metrics list), each edge once.
    fn edges_among<'a>(&'a self, workloads: &'a [WorkloadRef]) -> Answer<'a, Vec<EdgeMetrics>>;

    /// The TrafficSplit backends the controller applies, with their traffic.
    fn split_metrics<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<BackendMetrics>>;

    /// The allow/deny counts of the TrafficTargets of `namespace` (or all): one list of the
    /// metrics API's `traffictargets`.
    fn target_metrics<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<TargetMetrics>>;

    /// The metrics window, for rates.
    fn window(&self) -> std::time::Duration;
}
