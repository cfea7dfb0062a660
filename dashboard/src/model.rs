//! What the dashboard shows, as plain data: golden metrics (from the SMI Traffic Metrics
//! API) and the Kubernetes and SMI objects they belong to. No kube types here, so views
//! can be built and tested from canned values.

use std::collections::BTreeMap;
use std::time::Duration;

/// A kind of workload the dashboard lists (the kinds the Traffic Metrics API serves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 3] = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet];

    /// The API resource name (`deployments`), also the URL segment of a workload page.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
        }
    }

    /// The Kubernetes kind (`Deployment`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    /// A short lower-case name (`deploy`, `sts`, `ds`) for compact labels.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Deployment => "deploy",
            Kind::StatefulSet => "sts",
            Kind::DaemonSet => "ds",
        }
    }

    /// From a plural (`deployments`) or a Kubernetes kind (`Deployment`).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| s == k.plural() || s == k.name())
    }
}

/// One workload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl WorkloadRef {
    /// A reference.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The dashboard page of the workload.
    pub fn href(&self) -> String {
        format!(
            "/namespaces/{}/{}/{}",
            self.namespace,
            self.kind.plural(),
            self.name
        )
    }
}

/// The golden metrics of one thing over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Golden {
    /// Successful responses.
    pub success: f64,
    /// Failed responses.
    pub failure: f64,
    /// p50 latency in ms.
    pub p50: Option<f64>,
    /// p90 latency in ms.
    pub p90: Option<f64>,
    /// p95 latency in ms.
    pub p95: Option<f64>,
    /// p99 latency in ms.
    pub p99: Option<f64>,
    /// Open TCP connections now.
    pub tcp_open: f64,
}

impl Golden {
    /// Responses in the window.
    pub fn requests(&self) -> f64 {
        self.success + self.failure
    }

    /// Responses per second over `window`.
    pub fn rps(&self, window: Duration) -> f64 {
        let secs = window.as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            self.requests() / secs
        }
    }

    /// Success rate in [0, 1] (`None` without responses).
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.requests();
        (total > 0.0).then(|| self.success / total)
    }
}

/// Pod counts of a resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCount {
    /// Pods with the proxy.
    pub meshed: u32,
    /// All pods.
    pub total: u32,
}

/// A TrafficMetrics item of a resource: what it served (its own inbound proxies measured).
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceMetrics {
    /// `Namespace`, `Pod` or a workload kind name.
    pub kind: String,
    /// Namespace (for a namespace: its name).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod counts.
    pub pods: PodCount,
    /// The numbers.
    pub golden: Golden,
}

/// One edge: traffic `src` sent to `dst`, as the client's proxy measured it.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeMetrics {
    /// The client.
    pub src: WorkloadRef,
    /// The server.
    pub dst: WorkloadRef,
    /// The client's mesh identities (comma-separated), when meshed.
    pub client_id: Option<String>,
    /// The server's mesh identity, when the traffic was mTLS.
    pub server_id: Option<String>,
    /// All of it was mTLS.
    pub secured: bool,
    /// The numbers.
    pub golden: Golden,
}

/// One backend of a TrafficSplit, as the controller resolved it, and the traffic sent to it.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendMetrics {
    /// The split's namespace.
    pub namespace: String,
    /// The split's name.
    pub split: String,
    /// The apex Service.
    pub apex: String,
    /// The backend Service.
    pub backend: String,
    /// The weight the controller applies (0 for a missing backend).
    pub weight: u32,
    /// The numbers.
    pub golden: Golden,
}

/// The authorization decisions behind one TrafficTarget over the window (the metrics API's
/// `traffictargets`, a tulle extension), as its destination's proxies made them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetMetrics {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Requests and connections it admitted.
    pub allowed: f64,
    /// Requests and connections its destination refused (no TrafficTarget admitted them;
    /// the same for every TrafficTarget of that destination).
    pub denied: f64,
}

/// A namespace object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Name.
    pub name: String,
    /// `tulle.io/inject` annotation value, if any.
    pub inject: Option<String>,
}

/// A workload object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// Which.
    pub id: WorkloadRef,
    /// Desired replicas (for a DaemonSet: desired scheduled).
    pub desired: i32,
    /// Ready replicas.
    pub ready: i32,
    /// The pods' ServiceAccount.
    pub service_account: String,
    /// The pod template's labels.
    pub pod_labels: BTreeMap<String, String>,
    /// The label selector of its pods (`a=b,c in (d)`).
    pub selector: String,
    /// `tulle.io/inject` annotation of the pod template, if any.
    pub inject: Option<String>,
}

/// A pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// Name.
    pub name: String,
    /// Phase (`Running`).
    pub phase: String,
    /// All containers ready.
    pub ready: bool,
    /// It has the tulle proxy.
    pub meshed: bool,
    /// Pod IP.
    pub ip: String,
    /// Container restarts, summed.
    pub restarts: i32,
    /// ServiceAccount.
    pub service_account: String,
}

/// A Service (only what SMI needs: its selector).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its selector (empty: selects no pods).
    pub selector: BTreeMap<String, String>,
}

impl ServiceInfo {
    /// Whether the Service selects pods with these labels.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty() && self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// A TrafficSplit as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSplit {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The apex Service.
    pub service: String,
    /// Backends and their weights as written.
    pub backends: Vec<(String, u32)>,
    /// `matches` (kind/name).
    pub matches: Vec<String>,
}

/// A ServiceAccount reference of a TrafficTarget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaRef {
    /// Kind (`ServiceAccount` unless the object is wrong).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

/// A TrafficTarget as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficTarget {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The destination.
    pub destination: SaRef,
    /// The allowed sources.
    pub sources: Vec<SaRef>,
    /// Rules: kind/name and the match names (empty: all).
    pub rules: Vec<(String, Vec<String>)>,
}

/// An HTTPRouteGroup as written: its matches, one line each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRouteGroup {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `name: METHODS pathRegex headers`.
    pub matches: Vec<String>,
}

/// A TCPRoute as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpRoute {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Ports (empty: all).
    pub ports: Vec<u16>,
}

/// A Warning Event the controller published on an SMI object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problem {
    /// The object's kind (`TrafficSplit`).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object's UID the Event names (empty when none).
    pub uid: String,
    /// The Event reason (`BackendNotFound`).
    pub reason: String,
    /// The Event note: what is wrong and what to do.
    pub message: String,
    /// When it was last reported (RFC 3339).
    pub time: String,
}

/// The SMI objects of a namespace (or all), with the controller's Warning Events on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmiObjects {
    /// TrafficSplits.
    pub splits: Vec<TrafficSplit>,
    /// TrafficTargets.
    pub targets: Vec<TrafficTarget>,
    /// HTTPRouteGroups.
    pub route_groups: Vec<HttpRouteGroup>,
    /// TCPRoutes.
    pub tcp_routes: Vec<TcpRoute>,
    /// Objects that could not be read at all (kind, namespace/name, why).
    pub unreadable: Vec<Problem>,
    /// The controller's Warning Events on SMI objects.
    pub problems: Vec<Problem>,
}

impl SmiObjects {
    /// The problems of one object (matching its UID when the Event names one).
    pub fn problems_of(&self, kind: &str, namespace: &str, name: &str, uid: &str) -> Vec<&Problem> {
        self.problems
            .iter()
            .chain(&self.unreadable)
            .filter(|p| {
                p.kind == kind
                    && p.namespace == namespace
                    && p.name == name
                    && (p.uid.is_empty() || uid.is_empty() || p.uid == uid)
            })
            .collect()
    }
}

/// A control-plane Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Component {
    /// Deployment name.
    pub name: String,
    /// Desired replicas.
    pub desired: i32,
    /// Ready replicas.
    pub ready: i32,
}

/// The validity of a certificate, or why it is not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Read: its subject and end of validity (seconds since the epoch).
    Known {
        /// Subject (or common name).
        subject: String,
        /// notAfter, Unix seconds.
        not_after: i64,
    },
    /// Not known, and why.
    Unknown(String),
}

/// A certificate of the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertStatus {
    /// What it is (`trust anchor`, `issuer`, `webhook CA`).
    pub name: String,
    /// Where it was read from.
    pub source: String,
    /// What is known.
    pub state: CertState,
}

/// The control plane as the Kubernetes API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlPlane {
    /// Its namespace.
    pub namespace: String,
    /// Its Deployments.
    pub components: Vec<Component>,
    /// Trust anchors, issuer, webhook CA.
    pub certs: Vec<CertStatus>,
    /// The injector webhook configuration exists.
    pub webhook: bool,
    /// The Traffic Metrics APIService's Available condition: (available, message).
    pub metrics_api: Option<(bool, String)>,
}
