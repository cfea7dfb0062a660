//! JSON → [`crate::model`]: `TrafficMetricsList` answers of `metrics.smi-spec.io/v1alpha1`
//! (with tulle's extra fields: `pods`, `p95_response_latency`, `tcp_open_connections`,
//! `edge.clientId/serverId/secured`, `backend`, the `traffictargets` list with `allow_count`
//! and `deny_count`) and the SMI objects (read as JSON so that an
//! object the dashboard cannot read is shown with the reason instead of failing the page).

use serde_json::Value;

use crate::model::{
    BackendMetrics, EdgeMetrics, Golden, HttpRouteGroup, Kind, PodCount, Problem, ResourceMetrics,
    SaRef, TargetMetrics, TcpRoute, TrafficSplit, TrafficTarget, WorkloadRef,
};

/// A Kubernetes quantity (`12`, `12500m`, `1.5`) as a number.
pub fn quantity(s: &str) -> Option<f64> {
    let v = match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => s.parse::<f64>().ok()?,
    };
    v.is_finite().then_some(v)
}

/// The golden metrics of a `TrafficMetrics` item (`metrics: [{name, value}]`).
pub fn golden(item: &Value) -> Golden {
    let mut g = Golden::default();
    let Some(ms) = item["metrics"].as_array() else {
        return g;
    };
    for m in ms {
        let Some(v) = m["value"].as_str().and_then(quantity) else {
            continue;
        };
        match m["name"].as_str().unwrap_or_default() {
            "success_count" => g.success = v,
            "failure_count" => g.failure = v,
            "p50_response_latency" => g.p50 = Some(v),
            "p90_response_latency" => g.p90 = Some(v),
            "p95_response_latency" => g.p95 = Some(v),
            "p99_response_latency" => g.p99 = Some(v),
            "tcp_open_connections" => g.tcp_open = v,
            _ => {}
        }
    }
    g
}

fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The items of a resource list (`/namespaces/{ns}/deployments`, `/namespaces`, `/pods`).
pub fn resources(list: &Value) -> Vec<ResourceMetrics> {
    items(list)
        .iter()
        .filter_map(|i| {
            let r = &i["resource"];
            let name = str_of(r, "name");
            if name.is_empty() {
                return None;
            }
            let kind = str_of(r, "kind").to_string();
            let namespace = if kind == "Namespace" {
                name
            } else {
                str_of(r, "namespace")
            };
            let count = |k: &str| i["pods"][k].as_u64().unwrap_or(0) as u32;
            Some(ResourceMetrics {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                pods: PodCount {
                    meshed: count("meshed"),
                    total: count("total"),
                },
                golden: golden(i),
            })
        })
        .collect()
}

fn workload(r: &Value) -> Option<WorkloadRef> {
    let kind = Kind::parse(str_of(r, "kind"))?;
    let (ns, name) = (str_of(r, "namespace"), str_of(r, "name"));
    (!ns.is_empty() && !name.is_empty()).then(|| WorkloadRef::new(kind, ns, name))
}

fn id(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

/// The items of an `/edges` answer, as client → server edges.
pub fn edges(list: &Value) -> Vec<EdgeMetrics> {
    items(list)
        .iter()
        .filter_map(|i| {
            let of = workload(&i["resource"])?;
            let e = &i["edge"];
            let peer = workload(&e["resource"])?;
            let (src, dst) = match str_of(e, "direction") {
                "to" => (of, peer),
                "from" => (peer, of),
                _ => return None,
            };
            Some(EdgeMetrics {
                src,
                dst,
                client_id: id(&e["clientId"]),
                server_id: id(&e["serverId"]),
                secured: e["secured"].as_bool().unwrap_or(false),
                golden: golden(i),
            })
        })
        .collect()
}

/// The items of a `trafficsplits` answer: one per backend.
pub fn backends(list: &Value) -> Vec<BackendMetrics> {
    items(list)
        .iter()
        .filter_map(|i| {
            let b = &i["backend"];
            let backend = str_of(b, "name");
            if backend.is_empty() {
                return None;
            }
            Some(BackendMetrics {
                namespace: str_of(&i["resource"], "namespace").to_string(),
                split: str_of(&i["resource"], "name").to_string(),
                apex: str_of(b, "apex").to_string(),
                backend: backend.to_string(),
                weight: b["weight"].as_u64().unwrap_or(0) as u32,
                golden: golden(i),
            })
        })
        .collect()
}

/// The items of a `traffictargets` answer: one per TrafficTarget.
pub fn targets(list: &Value) -> Vec<TargetMetrics> {
    items(list)
        .iter()
        .filter_map(|i| {
            let r = &i["resource"];
            let name = str_of(r, "name");
            if name.is_empty() {
                return None;
            }
            let mut t = TargetMetrics {
                namespace: str_of(r, "namespace").to_string(),
                name: name.to_string(),
                ..TargetMetrics::default()
            };
            for m in i["metrics"].as_array().into_iter().flatten() {
                let v = m["value"].as_str().and_then(quantity).unwrap_or(0.0);
                match m["name"].as_str().unwrap_or_default() {
                    "allow_count" => t.allowed = v,
                    "deny_count" => t.denied = v,
                    _ => {}
                }
            }
            Some(t)
        })
        .collect()
}

/// Namespace, name and UID of an object.
pub fn meta(obj: &Value) -> (String, String, String) {
    let m = &obj["metadata"];
    (
        str_of(m, "namespace").to_string(),
        str_of(m, "name").to_string(),
        str_of(m, "uid").to_string(),
    )
}

/// An object the dashboard cannot read, as a problem to show.
pub fn unreadable(kind: &str, obj: &Value, why: String) -> Problem {
    let (namespace, name, uid) = meta(obj);
    Problem {
        kind: kind.to_string(),
        namespace,
        name,
        uid,
        reason: "Unreadable".into(),
        message: why,
        time: String::new(),
    }
}

fn weight(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => quantity(s).filter(|q| *q >= 0.0).map(|q| q.round() as u32),
        _ => None,
    }
}

/// A TrafficSplit (split.smi-spec.io/v1alpha4).
pub fn traffic_split(obj: &Value) -> Result<TrafficSplit, String> {
    let (namespace, name, uid) = meta(obj);
    let spec = &obj["spec"];
    let service = spec["service"]
        .as_str()
        .ok_or("spec.service is missing")?
        .to_string();
    let mut backends = Vec::new();
    for (i, b) in spec["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let svc = b["service"]
            .as_str()
            .ok_or_else(|| format!("spec.backends[{i}].service is missing"))?;
        let w = weight(&b["weight"])
            .ok_or_else(|| format!("spec.backends[{i}].weight {} is not a weight", b["weight"]))?;
        backends.push((svc.to_string(), w));
    }
    let matches = spec["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{}/{}", str_of(m, "kind"), str_of(m, "name")))
        .collect();
    Ok(TrafficSplit {
        namespace,
        name,
        uid,
        service,
        backends,
        matches,
    })
}

fn sa(v: &Value, default_ns: &str) -> SaRef {
    let ns = str_of(v, "namespace");
    SaRef {
        kind: str_of(v, "kind").to_string(),
        name: str_of(v, "name").to_string(),
        namespace: if ns.is_empty() { default_ns } else { ns }.to_string(),
    }
}

/// A TrafficTarget (access.smi-spec.io/v1alpha3).
pub fn traffic_target(obj: &Value) -> Result<TrafficTarget, String> {
    let (namespace, name, uid) = meta(obj);
    let spec = &obj["spec"];
    if !spec["destination"].is_object() {
        return Err("spec.destination is missing".into());
    }
    let destination = sa(&spec["destination"], &namespace);
    let sources = spec["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| sa(s, &namespace))
        .collect();
    let rules = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let matches = r["matches"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(String::from))
                .collect();
            (
                format!("{}/{}", str_of(r, "kind"), str_of(r, "name")),
                matches,
            )
        })
        .collect();
    Ok(TrafficTarget {
        namespace,
        name,
        uid,
        destination,
        sources,
        rules,
    })
}

fn headers(v: &Value) -> Vec<String> {
    let pairs = |m: &serde_json::Map<String, Value>| -> Vec<String> {
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect()
    };
    match v {
        Value::Object(m) => pairs(m),
        Value::Array(xs) => xs
            .iter()
            .filter_map(Value::as_object)
            .flat_map(pairs)
            .collect(),
        _ => Vec::new(),
    }
}

/// An HTTPRouteGroup (specs.smi-spec.io/v1alpha4).
pub fn route_group(obj: &Value) -> Result<HttpRouteGroup, String> {
    let (namespace, name, uid) = meta(obj);
    let matches = obj["spec"]["matches"]
        .as_array()
        .ok_or("spec.matches is missing")?
        .iter()
        .map(|m| {
            let methods: Vec<&str> = m["methods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut line = format!("{}:", str_of(m, "name"));
            if !methods.is_empty() {
                line.push_str(&format!(" {}", methods.join(",")));
            }
            if let Some(p) = m["pathRegex"].as_str() {
                line.push_str(&format!(" {p}"));
            }
            let h = headers(&m["headers"]);
            if !h.is_empty() {
                line.push_str(&format!(" [{}]", h.join(", ")));
            }
            line
        })
        .collect();
    Ok(HttpRouteGroup {
        namespace,
        name,
        uid,
        matches,
    })
}

/// A TCPRoute (specs.smi-spec.io/v1alpha4).
pub fn tcp_route(obj: &Value) -> Result<TcpRoute, String> {
    let (namespace, name, uid) = meta(obj);
    let mut ports = Vec::new();
    for p in obj["spec"]["matches"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let port = p
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("spec.matches.ports: {p} is not a port"))?;
        ports.push(port);
    }
    Ok(TcpRoute {
        namespace,
        name,
        uid,
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics(success: &str, failure: &str, p99: Option<&str>) -> Value {
        let mut p = json!({"name": "p99_response_latency", "unit": "ms"});
        if let Some(v) = p99 {
            p["value"] = json!(v);
        }
        json!([
            p,
            {"name": "success_count", "value": success},
            {"name": "failure_count", "value": failure},
            {"name": "tcp_open_connections", "value": "3"},
        ])
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("12"), Some(12.0));
        assert_eq!(quantity("12500m"), Some(12.5));
        assert_eq!(quantity("x"), None);
    }

    #[test]
    fn resource_lists_carry_pods_and_golden_metrics() {
        let list = json!({"kind": "TrafficMetricsList", "items": [
            {"resource": {"kind": "Deployment", "namespace": "demo", "name": "web"},
             "pods": {"meshed": 2, "total": 3}, "metrics": metrics("90", "10", Some("12500m"))},
            {"resource": {"kind": "Namespace", "name": "demo"}, "metrics": metrics("0", "0", None)},
        ]});
        let r = resources(&list);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].pods,
            PodCount {
                meshed: 2,
                total: 3
            }
        );
        assert_eq!(r[0].golden.success_rate(), Some(0.9));
        assert_eq!(r[0].golden.p99, Some(12.5));
        assert_eq!(r[0].golden.tcp_open, 3.0);
        assert_eq!((r[1].namespace.as_str(), r[1].golden.p99), ("demo", None));
    }

    #[test]
    fn edges_are_client_to_server() {
        let item = |dir: &str, peer: &str| {
            json!({"resource": {"kind": "Deployment", "namespace": "demo", "name": "web"},
                   "edge": {"direction": dir, "side": "client",
                            "resource": {"kind": "Deployment", "namespace": "demo", "name": peer},
                            "clientId": "c.id", "serverId": "s.id", "secured": true},
                   "metrics": metrics("5", "0", Some("3"))})
        };
        let e = edges(&json!({"items": [item("from", "client"), item("to", "db")]}));
        assert_eq!(
            (e[0].src.name.as_str(), e[0].dst.name.as_str()),
            ("client", "web")
        );
        assert_eq!(
            (e[1].src.name.as_str(), e[1].dst.name.as_str()),
            ("web", "db")
        );
        assert!(e[0].secured);
        assert_eq!(e[0].server_id.as_deref(), Some("s.id"));
    }

    #[test]
    fn split_backends() {
        let list = json!({"items": [{
            "resource": {"kind": "TrafficSplit", "namespace": "demo", "name": "web-split"},
            "backend": {"apex": "web", "name": "web-canary", "weight": 20},
            "metrics": metrics("4", "1", None)}]});
        let b = backends(&list);
        assert_eq!(b[0].weight, 20);
        assert_eq!(b[0].apex, "web");
        assert_eq!(b[0].golden.requests(), 5.0);
    }

    #[test]
    fn traffic_target_counts() {
        // As the controller answers `traffictargets`.
        let list = json!({"items": [{
            "resource": {"kind": "TrafficTarget", "namespace": "demo", "name": "client-to-web"},
            "destination": {"kind": "ServiceAccount", "namespace": "demo", "name": "web"},
            "metrics": [{"name": "allow_count", "value": "42"}, {"name": "deny_count", "value": "1500m"}]},
            {"resource": {}}]});
        let t = targets(&list);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].name.as_str(), t[0].allowed, t[0].denied),
            ("client-to-web", 42.0, 1.5)
        );
    }

    #[test]
    fn smi_objects_read_tolerantly() {
        let split = json!({"metadata": {"namespace": "demo", "name": "s", "uid": "u1"},
            "spec": {"service": "web", "backends": [{"service": "a", "weight": 90}, {"service": "b", "weight": "10"}]}});
        let s = traffic_split(&split).unwrap();
        assert_eq!(s.backends, vec![("a".into(), 90), ("b".into(), 10)]);
        let bad = json!({"metadata": {"name": "x"}, "spec": {"service": "web", "backends": [{"service": "a", "weight": "lots"}]}});
        assert!(traffic_split(&bad).unwrap_err().contains("weight"));
        let hrg = json!({"metadata": {"name": "r"}, "spec": {"matches": [
            {"name": "metrics", "methods": ["GET"], "pathRegex": "/metrics", "headers": [{"x-a": "1"}]}]}});
        assert_eq!(
            route_group(&hrg).unwrap().matches,
            vec!["metrics: GET /metrics [x-a=1]"]
        );
        let tt = json!({"metadata": {"namespace": "demo", "name": "t"}, "spec": {
            "destination": {"kind": "ServiceAccount", "name": "web"},
            "sources": [{"kind": "ServiceAccount", "name": "client", "namespace": "other"}],
            "rules": [{"kind": "HTTPRouteGroup", "name": "r", "matches": ["metrics"]}]}});
        let t = traffic_target(&tt).unwrap();
        assert_eq!(t.destination.namespace, "demo");
        assert_eq!(t.sources[0].namespace, "other");
        assert_eq!(
            t.rules[0],
            ("HTTPRouteGroup/r".into(), vec!["metrics".into()])
        );
        let tcp = json!({"metadata": {"name": "t"}, "spec": {"matches": {"ports": [5432]}}});
        assert_eq!(tcp_route(&tcp).unwrap().ports, vec![5432]);
    }
}
