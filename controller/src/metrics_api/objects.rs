//! The JSON objects of the API: discovery documents, `TrafficMetrics`,
//! `TrafficMetricsList` and `Status`.
//!
//! Metric values are Kubernetes quantities: integers as such, fractions (Prometheus'
//! extrapolated counts, latencies) in milli-units (`12500m` ms = 12.5 ms). tulle adds, beside
//! the five SMI metrics, `p95_response_latency` and `tcp_open_connections`, the pod counts of
//! the resource (`pods`) and on edges the mesh identities and mTLS state (`edge.clientId`,
//! `edge.serverId`, `edge.secured`); SMI clients read metrics by name and ignore the rest.
//! A list with `?edges=true` answers every edge among its resources in one query (each edge
//! once, from its client: `direction: to`).
//!
//! `traffictargets` is a tulle extension (SMI Traffic Metrics has no access resource): one
//! item per TrafficTarget with its `destination` ServiceAccount and two metrics measured by
//! the destination's (inbound) proxies: `allow_count`, the requests and connections it
//! admitted, and `deny_count`, those its destination's pods refused because no TrafficTarget
//! admitted them. A refusal names no TrafficTarget (none matched), so `deny_count` belongs to
//! the destination ServiceAccount and is the same for every TrafficTarget of that destination.

use serde_json::{Value, json};
use std::time::Duration;
use tulle_metrics::golden::{Golden, Kind, ResourceRef};

use super::path::{GROUP, PREFIX, Resource, VERSION, format_window};
use crate::core::PodCount;

const API_VERSION: &str = "metrics.smi-spec.io/v1alpha1";

/// `/apis`: the group list.
pub fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]})
}

/// `/apis/metrics.smi-spec.io`: the group.
pub fn group() -> Value {
    let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
           "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis/metrics.smi-spec.io/v1alpha1`: the resource list (what `kubectl api-resources` shows).
pub fn resource_list() -> Value {
    let mut resources = Vec::new();
    for r in Resource::all() {
        let namespaced = r != Resource::Kind(Kind::Namespace);
        let verbs = json!(["get", "list"]);
        resources.push(
            json!({"name": r.plural(), "singularName": "", "namespaced": namespaced,
                              "kind": "TrafficMetrics", "verbs": verbs}),
        );
        if let Resource::Kind(_) = r {
            resources.push(
                json!({"name": format!("{}/edges", r.plural()), "singularName": "",
                                  "namespaced": namespaced, "kind": "TrafficMetricsList",
                                  "verbs": ["get"]}),
            );
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
           "resources": resources})
}

/// A Kubernetes quantity for a metric value.
pub fn quantity(v: f64) -> String {
    let v = if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let rounded = v.round();
    if (v - rounded).abs() < 1e-6 {
        format!("{}", rounded as u64)
    } else {
        format!("{}m", (v * 1000.0).round() as u64)
    }
}

/// The metrics array of one item.
pub fn metrics(g: &Golden) -> Value {
    let latency = |name: &str, v: Option<f64>| match v {
        Some(v) => json!({"name": name, "unit": "ms", "value": quantity(v)}),
        None => json!({"name": name, "unit": "ms"}),
    };
    json!([
        latency("p99_response_latency", g.latency.p99),
        latency("p90_response_latency", g.latency.p90),
        latency("p50_response_latency", g.latency.p50),
        {"name": "success_count", "value": quantity(g.success)},
        {"name": "failure_count", "value": quantity(g.failure)},
        latency("p95_response_latency", g.latency.p95),
        {"name": "tcp_open_connections", "value": quantity(g.tcp_open)},
    ])
}

/// An object reference for a resource.
pub fn object_ref(r: &ResourceRef) -> Value {
    if r.kind == Kind::Namespace {
        json!({"kind": "Namespace", "name": r.name})
    } else {
        json!({"kind": r.kind.kind_name(), "namespace": r.namespace, "name": r.name})
    }
}

/// The self link of a resource item.
pub fn self_link(r: &ResourceRef) -> String {
    if r.kind == Kind::Namespace {
        format!("{PREFIX}/namespaces/{}", r.name)
    } else {
        format!(
            "{PREFIX}/namespaces/{}/{}/{}",
            r.namespace,
            r.kind.plural(),
            r.name
        )
    }
}

/// What every item shares: the time and window.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// RFC 3339 time of the answer.
    pub now: String,
    /// The window.
    pub window: Duration,
}

fn item(stamp: &Stamp, name: &str, namespace: Option<&str>, link: String) -> Value {
    let mut meta = json!({"name": name, "selfLink": link, "creationTimestamp": stamp.now});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    json!({"kind": "TrafficMetrics", "apiVersion": API_VERSION, "metadata": meta,
           "timestamp": stamp.now, "window": format_window(stamp.window)})
}

/// The `TrafficMetrics` of a resource: all traffic it received.
pub fn resource_item(stamp: &Stamp, r: &ResourceRef, g: &Golden, pods: PodCount) -> Value {
    let ns = (r.kind != Kind::Namespace).then_some(r.namespace.as_str());
    let mut v = item(stamp, &r.name, ns, self_link(r));
    v["resource"] = object_ref(r);
    v["edge"] = json!({"direction": "from", "side": "server", "resource": null});
    v["pods"] = json!({"meshed": pods.meshed, "total": pods.total});
    v["metrics"] = metrics(g);
    v
}

/// One edge of `of`, seen from `of`: `to` a server it called or `from` a client that called it.
#[derive(Clone, Debug)]
pub struct EdgeView<'a> {
    /// The resource whose edges these are.
    pub of: &'a ResourceRef,
    /// The other end.
    pub peer: &'a ResourceRef,
    /// `to` (of → peer) or `from` (peer → of).
    pub outgoing: bool,
    /// The client's mesh identities (comma-separated), if meshed.
    pub client_id: Option<String>,
    /// The server's mesh identity.
    pub server_id: Option<String>,
    /// All of it was mTLS.
    pub secured: bool,
}

/// The `TrafficMetrics` of one edge (measured at the client: `side: client`).
pub fn edge_item(stamp: &Stamp, e: &EdgeView<'_>, g: &Golden) -> Value {
    let ns = (e.of.kind != Kind::Namespace).then_some(e.of.namespace.as_str());
    let mut v = item(stamp, &e.of.name, ns, format!("{}/edges", self_link(e.of)));
    v["resource"] = object_ref(e.of);
    v["edge"] = json!({
        "direction": if e.outgoing { "to" } else { "from" },
        "side": "client",
        "resource": object_ref(e.peer),
        "clientId": e.client_id,
        "serverId": e.server_id,
        "secured": e.secured,
    });
    v["metrics"] = metrics(g);
    v
}

/// One backend of a TrafficSplit: the traffic sent to that backend Service.
pub fn backend_item(
    stamp: &Stamp,
    namespace: &str,
    split: &str,
    apex: &str,
    (backend, weight): (&str, u32),
    g: &Golden,
) -> Value {
    let link = format!("{PREFIX}/namespaces/{namespace}/trafficsplits/{split}");
    let mut v = item(stamp, split, Some(namespace), link);
    v["resource"] = json!({"kind": "TrafficSplit", "namespace": namespace, "name": split});
    v["edge"] = json!({"direction": "from", "side": "client", "resource": null});
    v["backend"] = json!({"apex": apex, "name": backend, "weight": weight});
    v["metrics"] = metrics(g);
    v
}

/// The counts of one TrafficTarget ([`traffic_target_item`]).
#[derive(Clone, Debug)]
pub struct TargetCounts<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its destination ServiceAccount `(namespace, name)`.
    pub destination: Option<&'a (String, String)>,
    /// Requests and connections it admitted.
    pub allowed: f64,
    /// Requests and connections its destination refused.
    pub denied: f64,
}

/// The `TrafficMetrics` of one TrafficTarget (measured at the server: `side: server`).
pub fn traffic_target_item(stamp: &Stamp, t: &TargetCounts<'_>) -> Value {
    let link = format!(
        "{PREFIX}/namespaces/{}/traffictargets/{}",
        t.namespace, t.name
    );
    let mut v = item(stamp, t.name, Some(t.namespace), link);
    v["resource"] = json!({"kind": "TrafficTarget", "namespace": t.namespace, "name": t.name});
    v["edge"] = json!({"direction": "from", "side": "server", "resource": null});
    v["destination"] = match t.destination {
        Some((ns, sa)) => json!({"kind": "ServiceAccount", "namespace": ns, "name": sa}),
        None => Value::Null,
    };
    v["metrics"] = json!([
        {"name": "allow_count", "value": quantity(t.allowed)},
        {"name": "deny_count", "value": quantity(t.denied)},
    ]);
    v
}

/// A list.
pub fn list(link: String, resource: Value, items: Vec<Value>) -> Value {
    json!({"kind": "TrafficMetricsList", "apiVersion": API_VERSION,
           "metadata": {"selfLink": link}, "resource": resource, "items": items})
}

/// A `Status` error body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_integers_or_milli_units() {
        assert_eq!(quantity(100.0), "100");
        assert_eq!(quantity(0.0), "0");
        assert_eq!(quantity(12.5), "12500m");
        assert_eq!(quantity(99.9999999), "100");
        assert_eq!(quantity(f64::NAN), "0");
        assert_eq!(quantity(-3.0), "0");
    }

    #[test]
    fn an_empty_window_has_zero_counts_and_no_latency_values() {
        let m = metrics(&Golden::default());
        let by_name = |n: &str| {
            m.as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == n)
                .unwrap()
                .clone()
        };
        assert_eq!(by_name("success_count")["value"], "0");
        assert_eq!(by_name("failure_count")["value"], "0");
        assert!(by_name("p99_response_latency").get("value").is_none());
        assert_eq!(by_name("p50_response_latency")["unit"], "ms");
    }

    #[test]
    fn discovery_lists_every_resource_and_its_edges() {
        let names: Vec<String> = resource_list()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        for n in [
            "namespaces",
            "pods",
            "deployments",
            "daemonsets",
            "statefulsets",
            "jobs",
            "trafficsplits",
            "traffictargets",
            "deployments/edges",
            "namespaces/edges",
        ] {
            assert!(names.contains(&n.to_string()), "{n} in {names:?}");
        }
        assert!(!names.contains(&"trafficsplits/edges".to_string()));
        assert!(!names.contains(&"traffictargets/edges".to_string()));
    }
}
