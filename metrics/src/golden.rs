//! Golden metrics (success and failure counts, latency quantiles, open TCP connections) per
//! resource, per edge and per TrafficSplit backend, and the authorization decisions behind
//! the TrafficTargets ([`authz`]), built from the [`Source`] primitives: one aggregate query
//! per question (a fixed handful of primitives run together), never one per workload.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::query::{
    HTTP_AUTHZ_ALLOW_TOTAL, HTTP_AUTHZ_DENY_TOTAL, Labels, Matcher, QueryError,
    RESPONSE_LATENCY_MS, RESPONSE_TOTAL, Row, Select, Source, TCP_AUTHZ_ALLOW_TOTAL,
    TCP_AUTHZ_DENY_TOTAL, TCP_OPEN_CONNECTIONS,
};

/// The latency quantiles every answer carries: p50, p90, p95, p99.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// A kind of resource metrics are grouped by (its lower-case name is the series label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Cluster-scoped: all pods of the namespace.
    Namespace,
    /// One pod.
    Pod,
    /// The pods of a Deployment.
    Deployment,
    /// The pods of a DaemonSet.
    DaemonSet,
    /// The pods of a StatefulSet.
    StatefulSet,
    /// The pods of a Job.
    Job,
}

impl Kind {
    /// All kinds, in API discovery order.
    pub const ALL: [Kind; 6] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Deployment,
        Kind::DaemonSet,
        Kind::StatefulSet,
        Kind::Job,
    ];

    /// The series label naming a resource of this kind (`deployment`, `pod`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Pod => "pod",
            Kind::Deployment => "deployment",
            Kind::DaemonSet => "daemonset",
            Kind::StatefulSet => "statefulset",
            Kind::Job => "job",
        }
    }

    /// The API resource name (`deployments`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::Deployment => "deployments",
            Kind::DaemonSet => "daemonsets",
            Kind::StatefulSet => "statefulsets",
            Kind::Job => "jobs",
        }
    }

    /// The Kubernetes kind (`Deployment`).
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::Job => "Job",
        }
    }

    /// Parses a plural, singular, kind or short name (`deploy`, `po`, `ns`, `ds`, `sts`).
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            s == k.label()
                || s == k.plural()
                || matches!(
                    (k, s.as_str()),
                    (Kind::Namespace, "ns")
                        | (Kind::Pod, "po")
                        | (Kind::Deployment, "deploy")
                        | (Kind::DaemonSet, "ds")
                        | (Kind::StatefulSet, "sts")
                )
        })
    }

    /// The series label naming the destination resource of outbound traffic (`dst_deployment`).
    fn dst_label(self) -> String {
        format!("dst_{}", self.label())
    }
}

/// A resource (for [`Kind::Namespace`], `namespace` is the name too).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceRef {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Which resources a question is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The kind.
    pub kind: Kind,
    /// Only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Only this resource (all when `None`).
    pub name: Option<String>,
}

/// Latency quantiles in milliseconds (`None` when the window holds no response).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latencies {
    /// p50.
    pub p50: Option<f64>,
    /// p90.
    pub p90: Option<f64>,
    /// p95.
    pub p95: Option<f64>,
    /// p99.
    pub p99: Option<f64>,
}

impl Latencies {
    fn from_slice(v: &[Option<f64>]) -> Self {
        let at = |i: usize| v.get(i).copied().flatten();
        Self {
            p50: at(0),
            p90: at(1),
            p95: at(2),
            p99: at(3),
        }
    }
}

/// The golden metrics of one thing over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Golden {
    /// Successful responses (not 5xx; gRPC status OK for gRPC).
    pub success: f64,
    /// Failed responses.
    pub failure: f64,
    /// Response latency quantiles.
    pub latency: Latencies,
    /// Open TCP connections now.
    pub tcp_open: f64,
}

impl Golden {
    /// Responses per second over `window`.
    pub fn rps(&self, window: Duration) -> f64 {
        let secs = window.as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            (self.success + self.failure) / secs
        }
    }

    /// Success rate in [0, 1] (`None` without responses).
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.success + self.failure;
        (total > 0.0).then(|| self.success / total)
    }
}

/// One edge: traffic `src` sent to `dst`, as `src`'s proxy measured it.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// The client.
    pub src: ResourceRef,
    /// The server.
    pub dst: ResourceRef,
    /// The server's mesh identity when the traffic was mTLS.
    pub server_id: Option<String>,
    /// Whether all of it was mTLS.
    pub secured: bool,
    /// Its golden metrics.
    pub golden: Golden,
}

fn scope(f: &Filter, ns_label: &str, kind_label: &str) -> Vec<Matcher> {
    let mut m = vec![Matcher::ne(kind_label, "")];
    if let Some(ns) = &f.namespace {
        m.push(Matcher::eq(ns_label, ns));
    }
    if let Some(name) = &f.name {
        m.push(Matcher::eq(kind_label, name));
    }
    m
}

/// Collects the three queries of one grouping into golden metrics per key.
async fn collect<K: Ord + Clone>(
    src: &dyn Source,
    matchers: Vec<Matcher>,
    tcp_matchers: Vec<Matcher>,
    by: &[&str],
    window: Duration,
    key: impl Fn(&Labels) -> Option<K>,
) -> Result<BTreeMap<K, Golden>, QueryError> {
    let mut counts = Select::new(RESPONSE_TOTAL, window).by(by);
    counts.by.push("classification".into());
    counts.matchers = matchers.clone();
    let mut latency = Select::new(RESPONSE_LATENCY_MS, window).by(by);
    latency.matchers = matchers;
    let mut tcp = Select::new(TCP_OPEN_CONNECTIONS, window).by(by);
    tcp.matchers = tcp_matchers;
    let (counts, quantiles, tcp) = futures::try_join!(
        src.sum_increase(&counts),
        src.quantiles(&latency, &QUANTILES),
        src.sum_gauge(&tcp),
    )?;
    let mut out: BTreeMap<K, Golden> = BTreeMap::new();
    for Row { labels, value } in counts {
        let Some(k) = key(&labels) else { continue };
        let g = out.entry(k).or_default();
        match labels.get("classification").map(String::as_str) {
            Some("failure") => g.failure += value,
            _ => g.success += value,
        }
    }
    for Row { labels, value } in quantiles {
        let Some(k) = key(&labels) else { continue };
        out.entry(k).or_default().latency = Latencies::from_slice(&value);
    }
    for Row { labels, value } in tcp {
        let Some(k) = key(&labels) else { continue };
        out.entry(k).or_default().tcp_open += value;
    }
    Ok(out)
}

fn resource(kind: Kind, labels: &Labels, ns_label: &str, kind_label: &str) -> Option<ResourceRef> {
    let namespace = labels.get(ns_label)?.clone();
    let name = labels.get(kind_label)?.clone();
    (!namespace.is_empty() && !name.is_empty()).then_some(ResourceRef {
        kind,
        namespace,
        name,
    })
}

/// Golden metrics of each resource the filter selects that served traffic in the window, as
/// its own (inbound) proxies measured them.
pub async fn stat(
    src: &dyn Source,
    f: &Filter,
    window: Duration,
) -> Result<BTreeMap<ResourceRef, Golden>, QueryError> {
    let kl = f.kind.label();
    let mut m = scope(f, "namespace", kl);
    m.push(Matcher::eq("direction", "inbound"));
    let mut tcp = m.clone();
    tcp.push(Matcher::eq("peer", "src"));
    let by = if f.kind == Kind::Namespace {
        vec!["namespace"]
    } else {
        vec!["namespace", kl]
    };
    collect(src, m, tcp, &by, window, |l| {
        resource(f.kind, l, "namespace", kl)
    })
    .await
}

/// Edges of the selected resources, both ways (traffic they sent and traffic sent to them),
/// as the clients' (outbound) proxies measured them. Only destinations inside the mesh's
/// discovery have `dst_*` labels, so only those make edges.
pub async fn edges(
    src: &dyn Source,
    f: &Filter,
    window: Duration,
) -> Result<Vec<Edge>, QueryError> {
    let (kl, dkl) = (f.kind.label(), f.kind.dst_label());
    let by = [
        "namespace",
        kl,
        "dst_namespace",
        dkl.as_str(),
        "server_id",
        "tls",
    ];
    let by: Vec<&str> = if f.kind == Kind::Namespace {
        vec!["namespace", "dst_namespace", "server_id", "tls"]
    } else {
        by.to_vec()
    };
    let key = |l: &Labels| {
        let (s, d) = if f.kind == Kind::Namespace {
            (
                resource(f.kind, l, "namespace", "namespace")?,
                resource(f.kind, l, "dst_namespace", "dst_namespace")?,
            )
        } else {
            (
                resource(f.kind, l, "namespace", kl)?,
                resource(f.kind, l, "dst_namespace", &dkl)?,
            )
        };
        let server_id = l.get("server_id").filter(|s| !s.is_empty()).cloned();
        let secured = l.get("tls").map(String::as_str) == Some("true");
        Some((s, d, server_id, secured))
    };
    let outbound = |mut m: Vec<Matcher>| {
        m.push(Matcher::eq("direction", "outbound"));
        m.push(Matcher::ne(&dkl, ""));
        let mut tcp = m.clone();
        tcp.push(Matcher::eq("peer", "dst"));
        (m, tcp)
    };
    let (from_m, from_tcp) = outbound(scope(f, "namespace", kl));
    let (to_m, to_tcp) = outbound(scope(f, "dst_namespace", &dkl));
    let (sent, received) = futures::try_join!(
        collect(src, from_m, from_tcp, &by, window, key),
        collect(src, to_m, to_tcp, &by, window, key),
    )?;
    let mut all = sent;
    all.extend(received);
    Ok(all
        .into_iter()
        .map(|((src, dst, server_id, secured), golden)| Edge {
            src,
            dst,
            server_id,
            secured,
            golden,
        })
        .collect())
}

/// Golden metrics of traffic sent to each of `services` in `namespace` (the backends of a
/// TrafficSplit), as the clients' proxies measured it.
pub async fn backends(
    src: &dyn Source,
    namespace: &str,
    services: &[String],
    window: Duration,
) -> Result<BTreeMap<String, Golden>, QueryError> {
    let m = vec![
        Matcher::eq("direction", "outbound"),
        Matcher::eq("dst_namespace", namespace),
        Matcher::ne("dst_service", ""),
    ];
    let mut tcp = m.clone();
    tcp.push(Matcher::eq("peer", "dst"));
    let mut out = collect(src, m, tcp, &["dst_service"], window, |l| {
        l.get("dst_service").cloned()
    })
    .await?;
    out.retain(|k, _| services.contains(k));
    for s in services {
        out.entry(s.clone()).or_default();
    }
    Ok(out)
}

/// The pod-side `authz` value of a denial no TrafficTarget could admit at a pod that
/// TrafficTargets target (the proxy's `Rule::Targeted`).
pub const AUTHZ_TARGETED: &str = "targeted";

/// The inbound authorization decisions of a window, HTTP requests and TCP connections
/// together ([`authz`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthzCounts {
    /// Admitted, per `authz` value: a TrafficTarget's `namespace/name` (or `default:<policy>`,
    /// `probe`).
    pub allowed: BTreeMap<String, f64>,
    /// Denied at targeted pods because no TrafficTarget admitted the client, per pod
    /// `(namespace, name)`. A denial names no TrafficTarget (none matched), so it belongs to
    /// the pod's ServiceAccount: the destination of the TrafficTargets that could have
    /// admitted it.
    pub denied: BTreeMap<(String, String), f64>,
}

/// The authorization decisions of the inbound proxies of `namespace` (all when `None`) over
/// `window`: admissions per TrafficTarget and denials per targeted pod. One aggregate
/// question (four counter increases run together: HTTP and TCP, allow and deny), whatever the
/// number of TrafficTargets or pods.
pub async fn authz(
    src: &dyn Source,
    namespace: Option<&str>,
    window: Duration,
) -> Result<AuthzCounts, QueryError> {
    let select = |metric: &'static str, by: &[&str], extra: Option<Matcher>| {
        let mut q = Select::new(metric, window).by(by);
        if let Some(ns) = namespace {
            q.matchers.push(Matcher::eq("namespace", ns));
        }
        q.matchers
            .push(extra.unwrap_or_else(|| Matcher::ne("authz", "")));
        q
    };
    let targeted = || Some(Matcher::eq("authz", AUTHZ_TARGETED));
    let (http_allow, tcp_allow) = (
        select(HTTP_AUTHZ_ALLOW_TOTAL, &["authz"], None),
        select(TCP_AUTHZ_ALLOW_TOTAL, &["authz"], None),
    );
    let by_pod = ["namespace", "pod"];
    let (http_deny, tcp_deny) = (
        select(HTTP_AUTHZ_DENY_TOTAL, &by_pod, targeted()),
        select(TCP_AUTHZ_DENY_TOTAL, &by_pod, targeted()),
    );
    let (ha, ta, hd, td) = futures::try_join!(
        src.sum_increase(&http_allow),
        src.sum_increase(&tcp_allow),
        src.sum_increase(&http_deny),
        src.sum_increase(&tcp_deny),
    )?;
    let mut out = AuthzCounts::default();
    for Row { labels, value } in ha.into_iter().chain(ta) {
        if let Some(a) = labels.get("authz") {
            *out.allowed.entry(a.clone()).or_default() += value;
        }
    }
    for Row { labels, value } in hd.into_iter().chain(td) {
        if let (Some(ns), Some(pod)) = (labels.get("namespace"), labels.get("pod")) {
            *out.denied.entry((ns.clone(), pod.clone())).or_default() += value;
        }
    }
    Ok(out)
}
