//! Conversions from Kubernetes objects to the core index inputs.

use crate::core::{
    DefaultPolicy, NamespaceInfo, PodAccess, PodInfo, ProbeInfo, ServiceInfo, ServicePort,
    SliceEndpoint, SliceInfo, access::DEFAULT_POLICY_ANNOTATION,
};
use k8s_openapi::{
    api::{
        core::v1::{Container, Namespace, Pod, Probe, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Label or annotation that marks a pod as meshed (set by injection).
pub const PROXY_VERSION: &str = "tulle.io/proxy-version";
/// Name of the proxy container.
pub const PROXY_CONTAINER: &str = "tulle-proxy";
/// Service annotation listing opaque ports, e.g. `"3306,5432"`.
pub const OPAQUE_PORTS: &str = "config.tulle.io/opaque-ports";

/// A Service as the index sees it.
pub fn service(svc: &Service) -> ServiceInfo {
    let spec = svc.spec.clone().unwrap_or_default();
    let opaque: Vec<u16> = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OPAQUE_PORTS))
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut ips: Vec<String> = spec.cluster_ips.unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = spec.cluster_ip
    {
        ips.push(ip);
    }
    ServiceInfo {
        cluster_ips: ips.iter().filter_map(|s| s.parse().ok()).collect(),
        ports: spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                Some(ServicePort {
                    name: p.name.unwrap_or_default(),
                    port,
                    opaque: opaque.contains(&port),
                })
            })
            .collect(),
    }
}

/// An EndpointSlice as the index sees it; None when it belongs to no Service or holds
/// FQDN addresses.
pub fn slice(es: &EndpointSlice) -> Option<SliceInfo> {
    let service = es
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    if es.address_type != "IPv4" && es.address_type != "IPv6" {
        return None;
    }
    Some(SliceInfo {
        service,
        ports: es
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    u16::try_from(p.port?).ok()?,
                ))
            })
            .collect(),
        endpoints: es
            .endpoints
            .iter()
            .map(|e| SliceEndpoint {
                addrs: e
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .collect(),
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                pod: e
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone()),
            })
            .collect(),
    })
}

/// A Pod as the index sees it.
pub fn pod(pod: &Pod) -> PodInfo {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    let ips = if spec.host_network == Some(true) || finished {
        vec![]
    } else {
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if ips.is_empty()
            && let Some(ip) = status.pod_ip.as_ref().and_then(|s| s.parse().ok())
        {
            ips.push(ip);
        }
        ips
    };
    let md = &pod.metadata;
    let marked = md
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(PROXY_VERSION))
        || md
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(PROXY_VERSION));
    let has_proxy = spec.containers.iter().any(|c| c.name == PROXY_CONTAINER)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == PROXY_CONTAINER);
    PodInfo {
        ips,
        service_account: spec
            .service_account_name
            .unwrap_or_else(|| "default".into()),
        meshed: marked || has_proxy,
        owner: owner(pod),
    }
}

/// A Pod with what its inbound policy needs (probes, default-policy annotation).
pub fn pod_with_access(p: &Pod) -> (PodInfo, PodAccess) {
    let spec = p.spec.as_ref();
    let mut probes: Vec<ProbeInfo> = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.name != PROXY_CONTAINER)
        .flat_map(|c| {
            [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
                .into_iter()
                .flatten()
                .filter_map(move |pr| probe(c, pr))
        })
        .collect();
    probes.sort();
    probes.dedup();
    let access = PodAccess {
        default_policy: default_policy(
            p.metadata.annotations.as_ref(),
            "pod",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default(),
        ),
        probes,
    };
    (pod(p), access)
}

/// A Namespace as the policy index sees it.
pub fn namespace(ns: &Namespace) -> NamespaceInfo {
    NamespaceInfo {
        default_policy: default_policy(
            ns.metadata.annotations.as_ref(),
            "namespace",
            "",
            ns.metadata.name.as_deref().unwrap_or_default(),
        ),
    }
}

/// The `config.tulle.io/default-inbound-policy` annotation; an invalid value fails closed to
/// `deny` (logged at warn).
fn default_policy(
    annotations: Option<&BTreeMap<String, String>>,
    what: &str,
    ns: &str,
    name: &str,
) -> Option<DefaultPolicy> {
    let v = annotations?.get(DEFAULT_POLICY_ANNOTATION)?;
    Some(DefaultPolicy::parse(v).unwrap_or_else(|e| {
        tracing::warn!(kind = what, namespace = ns, name, annotation = DEFAULT_POLICY_ANNOTATION, error = %e, "invalid annotation: the inbound policy fails closed to deny until it is fixed");
        DefaultPolicy::Deny
    }))
}

/// The port (and HTTP path) a probe reaches; named ports resolved against `c`'s ports.
fn probe(c: &Container, p: &Probe) -> Option<ProbeInfo> {
    let resolve = |port: &IntOrString| match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok()),
    };
    if let Some(h) = &p.http_get {
        let path = h.path.as_deref().unwrap_or("/");
        let path = path.split('?').next().unwrap_or_default();
        return Some(ProbeInfo {
            port: resolve(&h.port)?,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        });
    }
    if let Some(t) = &p.tcp_socket {
        return Some(ProbeInfo {
            port: resolve(&t.port)?,
            path: String::new(),
        });
    }
    let g = p.grpc.as_ref()?;
    Some(ProbeInfo {
        port: u16::try_from(g.port).ok()?,
        path: String::new(),
    })
}

/// The pod's owner as (lower-case kind, name): a ReplicaSet created by a Deployment
/// becomes ("deployment", name without the pod-template-hash suffix).
fn owner(pod: &Pod) -> Option<(String, String)> {
    let r = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))?;
    if r.kind == "ReplicaSet"
        && let Some(hash) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
        && let Some(dep) = r.name.strip_suffix(&format!("-{hash}"))
    {
        return Some(("deployment".into(), dep.to_string()));
    }
    Some((r.kind.to_ascii_lowercase(), r.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_identity_and_owner() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-5d9c-abcde", "namespace": "shop",
                "labels": {"pod-template-hash": "5d9c"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c",
                    "uid": "u", "controller": true}]},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "app"}, {"name": "tulle-proxy"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}
        }))
        .unwrap();
        let info = pod(&p);
        assert!(info.meshed);
        assert_eq!(info.service_account, "web");
        assert_eq!(info.owner, Some(("deployment".into(), "web".into())));
        assert_eq!(info.ips, vec!["10.1.0.5".parse::<IpAddr>().unwrap()]);

        let plain: Pod = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                    "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "db"}], "hostNetwork": false},
            "status": {"phase": "Running", "podIP": "10.1.0.6"}
        }))
        .unwrap();
        let info = pod(&plain);
        assert!(!info.meshed);
        assert_eq!(info.service_account, "default");
        assert_eq!(info.owner, Some(("statefulset".into(), "db".into())));
        assert_eq!(info.ips.len(), 1);
    }

    #[test]
    fn probes_and_default_policy() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop",
                "annotations": {DEFAULT_POLICY_ANNOTATION: "Deny"}},
            "spec": {"containers": [
                {"name": "app", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9000}],
                 "livenessProbe": {"httpGet": {"port": "http", "path": "/live?full=1"}},
                 "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}},
                 "startupProbe": {"tcpSocket": {"port": 9000}}},
                {"name": "grpc", "readinessProbe": {"grpc": {"port": 9090}},
                 "livenessProbe": {"httpGet": {"port": "nope"}}},
                {"name": "tulle-proxy", "readinessProbe": {"httpGet": {"port": 4191, "path": "/ready"}}}
            ]}
        }))
        .unwrap();
        let (_, access) = pod_with_access(&p);
        assert_eq!(access.default_policy, Some(DefaultPolicy::Deny));
        let probes: Vec<(u16, &str)> = access
            .probes
            .iter()
            .map(|p| (p.port, p.path.as_str()))
            .collect();
        assert_eq!(
            probes,
            [(8080, "/live"), (8080, "/ready"), (9000, ""), (9090, "")]
        );

        let invalid: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "shop", "annotations": {DEFAULT_POLICY_ANNOTATION: "allow-all"}}
        }))
        .unwrap();
        assert_eq!(
            namespace(&invalid).default_policy,
            Some(DefaultPolicy::Deny)
        );
        let plain: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap();
        assert_eq!(namespace(&plain).default_policy, None);
        let ok: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "shop", "annotations": {DEFAULT_POLICY_ANNOTATION: "authenticated"}}
        }))
        .unwrap();
        assert_eq!(
            namespace(&ok).default_policy,
            Some(DefaultPolicy::Authenticated)
        );
    }

    #[test]
    fn slice_and_service() {
        let es: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "web-1"}},
                {"addresses": ["10.1.0.7"], "conditions": {"ready": false}}
            ]
        }))
        .unwrap();
        let s = slice(&es).unwrap();
        assert_eq!(s.service, "web");
        assert_eq!(s.ports, vec![("http".to_string(), 8080)]);
        assert!(s.endpoints[0].ready && !s.endpoints[1].ready);
        assert_eq!(s.endpoints[0].pod.as_deref(), Some("web-1"));

        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {OPAQUE_PORTS: "5432"}},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "pg", "port": 5432}]}
        }))
        .unwrap();
        let info = service(&svc);
        assert_eq!(
            info.cluster_ips,
            vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
        assert!(!info.ports[0].opaque && info.ports[1].opaque);
    }
}
