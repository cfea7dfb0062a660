//! Domain types of destination discovery and inbound policy, free of Kubernetes types:
//! targets, endpoints, resolutions, profiles, pod policies, and the [`Index`] that computes
//! them from cluster state.

pub mod access;
mod index;
mod policy;
#[cfg(test)]
mod policy_tests;
mod problems;
pub mod quantity;
mod smi;
mod state;
mod target;
#[cfg(test)]
mod tests;

pub use access::{
    AccessRule, Authorization, DefaultPolicy, NamespaceInfo, PodAccess, PodPolicy, ProbeInfo,
    Subject, TrafficTargetInfo, UdpRouteInfo,
};
pub use index::{Index, IndexMetrics, MeshedPod, PodCount, PolicyWatch, SplitView, TargetView};
pub use problems::{ObjectKey, Problem, ProblemSet, Problems, reason};
pub use smi::{
    HttpRule, Invalid, ObjectMeta, RouteGroupInfo, RouteRef, SmiKind, SmiObject, SplitInfo,
    TcpRouteInfo,
};
pub use state::{Naming, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo};
pub use target::{Target, TargetError};

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

/// The protocol an endpoint is known to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolHint {
    /// Meshed: mTLS and HTTP/2 between proxies.
    H2,
    /// Forward the bytes as they are.
    Opaque,
    /// Not meshed, nothing known.
    Unknown,
}

/// One endpoint of a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative weight (10000 by default, as in linkerd).
    pub weight: u32,
    /// The identity the endpoint's proxy presents, when it is meshed.
    pub identity: Option<String>,
    /// Protocol hint.
    pub hint: ProtocolHint,
    /// Metric labels: namespace, pod, owner kind = name, serviceaccount.
    pub labels: BTreeMap<String, String>,
}

/// The default endpoint weight.
pub const DEFAULT_WEIGHT: u32 = 10_000;

/// What a target resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The name or address is not known: forward to the original destination.
    Unknown,
    /// The destination exists; its current endpoints (possibly none).
    Endpoints(Arc<BTreeMap<SocketAddr, Endpoint>>),
}

/// A TrafficSplit backend with its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedBackend {
    /// `svc.ns.svc.<cluster-domain>:port`.
    pub authority: String,
    /// Relative weight.
    pub weight: u32,
}

/// Routing information for a target beyond its endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// `svc.ns.svc.<cluster-domain>` when the target is a service.
    pub fully_qualified_name: Option<String>,
    /// TrafficSplit backends of the service and port, in spec order; empty when no split
    /// applies. A backend that is missing or lacks the port has weight 0.
    pub backends: Vec<WeightedBackend>,
    /// The split's route rules (ORed); empty: the split applies to every request.
    pub split_matches: Vec<HttpRule>,
    /// The TrafficSplit in force, `namespace/name`.
    pub traffic_split: Option<String>,
}

/// What the gRPC layer needs from discovery: watches on targets.
pub trait Discover: Send + Sync + 'static {
    /// Parses a destination path.
    fn parse(&self, path: &str) -> Result<Target, TargetError>;
    /// The current and future endpoints of `target`.
    fn watch(&self, target: &Target) -> tokio::sync::watch::Receiver<Resolution>;
    /// The current and future profile of `target`.
    fn watch_profile(&self, target: &Target) -> tokio::sync::watch::Receiver<Profile>;
}

impl Discover for Index {
    fn parse(&self, path: &str) -> Result<Target, TargetError> {
        Target::parse(path, &self.naming().cluster_domain)
    }

    fn watch(&self, target: &Target) -> tokio::sync::watch::Receiver<Resolution> {
        Index::watch(self, target)
    }

    fn watch_profile(&self, target: &Target) -> tokio::sync::watch::Receiver<Profile> {
        Index::watch_profile(self, target)
    }
}

/// What the policy gRPC layer needs: watches on pods' inbound policies.
pub trait Policies: Send + Sync + 'static {
    /// The policy of pod `name` of `namespace` (current and future; None once the pod is
    /// gone), with the identity the pod's proxy holds; None when the pod is not known.
    fn watch_policy(&self, namespace: &str, name: &str) -> Option<PolicyWatch>;
}

impl Policies for Index {
    fn watch_policy(&self, namespace: &str, name: &str) -> Option<PolicyWatch> {
        Index::watch_policy(self, namespace, name)
    }
}
