//! A [`Cluster`] of canned values: for unit tests of the pages, the in-process browser
//! tests, and the synthetic topology of [`FakeCluster::synthetic`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt as _;

use super::{Answer, Cluster, MetricsKind};
use crate::model::{
    BackendMetrics, CertState, CertStatus, Component, ControlPlane, EdgeMetrics, Golden, Kind,
    NamespaceInfo, PodCount, PodInfo, ResourceMetrics, SaRef, ServiceInfo, SmiObjects,
    TargetMetrics, TrafficSplit, TrafficTarget, WorkloadInfo, WorkloadRef,
};
use crate::{Error, Result};

/// Everything a [`FakeCluster`] answers.
#[derive(Clone, Debug, Default)]
pub struct Data {
    /// The control plane.
    pub control_plane: ControlPlane,
    /// Namespaces.
    pub namespaces: Vec<NamespaceInfo>,
    /// Workloads.
    pub workloads: Vec<WorkloadInfo>,
    /// Pods by namespace and workload name (the selector of the fake is `app=<name>`).
    pub pods: BTreeMap<(String, String), Vec<PodInfo>>,
    /// Services.
    pub services: Vec<ServiceInfo>,
    /// SMI objects.
    pub smi: SmiObjects,
    /// Resource metrics of every kind (`kind` is `Namespace`, `Pod`, `Deployment`, ...).
    pub metrics: Vec<ResourceMetrics>,
    /// Edges.
    pub edges: Vec<EdgeMetrics>,
    /// TrafficSplit backends.
    pub backends: Vec<BackendMetrics>,
    /// TrafficTarget allow/deny counts.
    pub target_metrics: Vec<TargetMetrics>,
    /// When set, every metrics request fails with this message.
    pub metrics_error: Option<String>,
}

/// Canned answers; [`FakeCluster::update`] changes them (for live-update tests).
#[derive(Debug, Default)]
pub struct FakeCluster {
    data: Mutex<Data>,
}

fn in_ns(namespace: Option<&str>, ns: &str) -> bool {
    namespace.is_none_or(|n| n == ns)
}

fn golden(rps: f64, success_rate: f64, p99: f64) -> Golden {
    let total = rps * 30.0;
    Golden {
        success: (total * success_rate).round(),
        failure: (total * (1.0 - success_rate)).round(),
        p50: Some(p99 / 4.0),
        p90: Some(p99 / 2.0),
        p95: Some(p99 * 0.8),
        p99: Some(p99),
        tcp_open: (rps / 10.0).ceil(),
    }
}

fn pod(name: &str, meshed: bool) -> PodInfo {
    PodInfo {
        name: name.into(),
        phase: "Running".into(),
        ready: true,
        meshed,
        ip: "10.244.0.10".into(),
        restarts: 0,
        service_account: name.split('-').next().unwrap_or(name).into(),
    }
}

impl FakeCluster {
    /// A cluster answering `data`.
    pub fn new(data: Data) -> Self {
        Self {
            data: Mutex::new(data),
        }
    }

    /// Changes the answers.
    pub fn update(&self, f: impl FnOnce(&mut Data)) {
        f(&mut self.data.lock().expect("fake lock"));
    }

    /// A copy of the answers.
    pub fn snapshot(&self) -> Data {
        self.read(Data::clone)
    }

    fn read<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        f(&self.data.lock().expect("fake lock"))
    }

    /// A small mesh: namespace `demo` with `client` → `web` (mTLS, 20 rps) → `db`, a
    /// TrafficSplit `web` → `web-v1` 90 / `web-v2` 10, and a healthy control plane.
    pub fn demo() -> Self {
        let ns = "demo";
        let w = |name: &str| WorkloadInfo {
            id: WorkloadRef::new(Kind::Deployment, ns, name),
            desired: 1,
            ready: 1,
            service_account: name.into(),
            pod_labels: BTreeMap::from([("app".into(), name.into())]),
            selector: format!("app={name}"),
            inject: None,
        };
        let m = |kind: &str, name: &str, g: Golden| ResourceMetrics {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            pods: PodCount {
                meshed: 1,
                total: 1,
            },
            golden: g,
        };
        let id = |sa: &str| format!("{sa}.{ns}.serviceaccount.identity.tulle.cluster.local");
        let edge = |src: &str, dst: &str, g: Golden, secured: bool| EdgeMetrics {
            src: WorkloadRef::new(Kind::Deployment, ns, src),
            dst: WorkloadRef::new(Kind::Deployment, ns, dst),
            client_id: Some(id(src)),
            server_id: secured.then(|| id(dst)),
            secured,
            golden: g,
        };
        let names = ["client", "web", "db"];
        let sa = |name: &str| SaRef {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: ns.into(),
        };
        let data = Data {
            control_plane: ControlPlane {
                namespace: "tulle-system".into(),
                components: ["tulle-controller", "tulle-identity", "tulle-dashboard"]
                    .iter()
                    .map(|n| Component {
                        name: n.to_string(),
                        desired: 1,
                        ready: 1,
                    })
                    .collect(),
                certs: vec![
                    CertStatus {
                        name: "trust anchor".into(),
                        source: "ConfigMap tulle-system/tulle-trust-anchors".into(),
                        state: CertState::Known {
                            subject: "CN=root.tulle.cluster.local".into(),
                            not_after: 4_102_444_800,
                        },
                    },
                    CertStatus {
                        name: "issuer".into(),
                        source:
                            "tulle-identity /metrics (identity_issuer_expiry_timestamp_seconds)"
                                .into(),
                        state: CertState::Known {
                            subject: "the issuer tulle-identity loaded".into(),
                            not_after: 4_102_444_800,
                        },
                    },
                ],
                webhook: true,
                metrics_api: Some((true, "all checks passed".into())),
            },
            namespaces: vec![
                NamespaceInfo {
                    name: ns.into(),
                    inject: Some("enabled".into()),
                },
                NamespaceInfo {
                    name: "tulle-system".into(),
                    inject: None,
                },
            ],
            workloads: names.iter().map(|n| w(n)).collect(),
            pods: names
                .iter()
                .map(|n| {
                    (
                        (ns.to_string(), n.to_string()),
                        vec![pod(&format!("{n}-7d9f-x1"), true)],
                    )
                })
                .collect(),
            services: ["web", "web-v1", "web-v2", "db"]
                .iter()
                .map(|s| ServiceInfo {
                    namespace: ns.into(),
                    name: s.to_string(),
                    selector: BTreeMap::from([(
                        "app".into(),
                        if s.starts_with("web") { "web" } else { s }.to_string(),
                    )]),
                })
                .collect(),
            smi: SmiObjects {
                splits: vec![TrafficSplit {
                    namespace: ns.into(),
                    name: "web".into(),
                    uid: "uid-split".into(),
                    service: "web".into(),
                    backends: vec![("web-v1".into(), 90), ("web-v2".into(), 10)],
                    matches: vec![],
                }],
                targets: vec![TrafficTarget {
                    namespace: ns.into(),
                    name: "client-to-web".into(),
                    uid: "uid-target".into(),
                    destination: sa("web"),
                    sources: vec![sa("client")],
                    rules: vec![("HTTPRouteGroup/web-routes".into(), vec![])],
                }],
                ..Default::default()
            },
            target_metrics: vec![TargetMetrics {
                namespace: ns.into(),
                name: "client-to-web".into(),
                allowed: 600.0,
                denied: 7.0,
            }],
            metrics: vec![
                m("Deployment", "client", Golden::default()),
                m("Deployment", "web", golden(20.0, 0.995, 12.0)),
                m("Deployment", "db", golden(20.0, 1.0, 3.0)),
                m("Pod", "web-7d9f-x1", golden(20.0, 0.995, 12.0)),
                ResourceMetrics {
                    kind: "Namespace".into(),
                    namespace: ns.into(),
                    name: ns.into(),
                    pods: PodCount {
                        meshed: 3,
                        total: 3,
                    },
                    golden: golden(40.0, 0.997, 12.0),
                },
            ],
            edges: vec![
                edge("client", "web", golden(20.0, 0.995, 12.0), true),
                edge("web", "db", golden(20.0, 0.5, 3.0), false),
            ],
            backends: vec![
                BackendMetrics {
                    namespace: ns.into(),
                    split: "web".into(),
                    apex: "web".into(),
                    backend: "web-v1".into(),
                    weight: 90,
                    golden: golden(18.0, 1.0, 10.0),
                },
                BackendMetrics {
                    namespace: ns.into(),
                    split: "web".into(),
                    apex: "web".into(),
                    backend: "web-v2".into(),
                    weight: 10,
                    golden: golden(2.0, 0.9, 30.0),
                },
            ],
            metrics_error: None,
        };
        Self::new(data)
    }

    /// `n` synthetic workloads in `namespaces` namespaces, in call chains of 5 (a layered
    /// graph with calls across namespaces, no cycles), for the topology's readability test.
    pub fn synthetic(n: usize, namespaces: usize) -> Self {
        let namespaces = namespaces.max(1);
        let mut data = Data::default();
        let refs: Vec<WorkloadRef> = (0..n)
            .map(|i| {
                let ns = format!("team-{}", i % namespaces);
                WorkloadRef::new(Kind::Deployment, &ns, &format!("service-{i:03}-backend"))
            })
            .collect();
        for (i, r) in refs.iter().enumerate() {
            data.metrics.push(ResourceMetrics {
                kind: "Deployment".into(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                pods: PodCount {
                    meshed: 2,
                    total: 2,
                },
                golden: golden(5.0 + i as f64, if i % 17 == 0 { 0.8 } else { 0.999 }, 20.0),
            });
            // Chains of five: i → i+namespaces (the next one of the same chain).
            let next = i + namespaces;
            if (i / namespaces) % 5 != 4 && next < n {
                data.edges.push(EdgeMetrics {
                    src: r.clone(),
                    dst: refs[next].clone(),
                    client_id: None,
                    server_id: None,
                    secured: i % 3 != 0,
                    golden: golden(5.0, if i % 11 == 0 { 0.7 } else { 1.0 }, 15.0),
                });
            }
            // And some calls across namespaces, always to a later workload (no cycles).
            let far = i + 2 * namespaces + 1;
            if i % 7 == 3 && far < n {
                data.edges.push(EdgeMetrics {
                    src: r.clone(),
                    dst: refs[far].clone(),
                    client_id: None,
                    server_id: None,
                    secured: true,
                    golden: golden(1.0, 1.0, 5.0),
                });
            }
        }
        for ns in 0..namespaces {
            data.namespaces.push(NamespaceInfo {
                name: format!("team-{ns}"),
                inject: Some("enabled".into()),
            });
        }
        Self::new(data)
    }

    /// `v`, or the scripted metrics API error.
    fn metrics_answer<T: Send + 'static>(&self, v: T) -> Answer<'_, T> {
        async move { self.metrics_ok().map(|()| v) }.boxed()
    }

    fn metrics_ok(&self) -> Result<()> {
        match self.read(|d| d.metrics_error.clone()) {
            Some(m) => Err(Error::Api {
                path: "/apis/metrics.smi-spec.io/v1alpha1".into(),
                status: Some(503),
                message: m,
            }),
            None => Ok(()),
        }
    }
}

impl Cluster for FakeCluster {
    fn control_plane(&self) -> Answer<'_, ControlPlane> {
        let cp = self.read(|d| d.control_plane.clone());
        async move { Ok(cp) }.boxed()
    }

    fn namespaces(&self) -> Answer<'_, Vec<NamespaceInfo>> {
        let v = self.read(|d| d.namespaces.clone());
        async move { Ok(v) }.boxed()
    }

    fn workloads<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<WorkloadInfo>> {
        let v = self.read(|d| {
            d.workloads
                .iter()
                .filter(|w| in_ns(namespace, &w.id.namespace))
                .cloned()
                .collect()
        });
        async move { Ok(v) }.boxed()
    }

    fn pods<'a>(&'a self, namespace: &'a str, selector: &'a str) -> Answer<'a, Vec<PodInfo>> {
        let name = selector
            .strip_prefix("app=")
            .unwrap_or(selector)
            .to_string();
        let v = self.read(|d| {
            d.pods
                .get(&(namespace.to_string(), name))
                .cloned()
                .unwrap_or_default()
        });
        async move { Ok(v) }.boxed()
    }

    fn services<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<ServiceInfo>> {
        let v = self.read(|d| {
            d.services
                .iter()
                .filter(|s| in_ns(namespace, &s.namespace))
                .cloned()
                .collect()
        });
        async move { Ok(v) }.boxed()
    }

    fn smi<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, SmiObjects> {
        let mut s = self.read(|d| d.smi.clone());
        s.splits.retain(|x| in_ns(namespace, &x.namespace));
        s.targets.retain(|x| in_ns(namespace, &x.namespace));
        s.route_groups.retain(|x| in_ns(namespace, &x.namespace));
        s.tcp_routes.retain(|x| in_ns(namespace, &x.namespace));
        s.problems.retain(|x| in_ns(namespace, &x.namespace));
        s.unreadable.retain(|x| in_ns(namespace, &x.namespace));
        async move { Ok(s) }.boxed()
    }

    fn metrics<'a>(
        &'a self,
        kind: MetricsKind,
        namespace: Option<&'a str>,
        _selector: Option<&'a str>,
    ) -> Answer<'a, Vec<ResourceMetrics>> {
        let kind_name = match kind {
            MetricsKind::Namespaces => "Namespace",
            MetricsKind::Pods => "Pod",
            MetricsKind::Workload(k) => k.name(),
        };
        let v: Vec<ResourceMetrics> = self.read(|d| {
            d.metrics
                .iter()
                .filter(|m| m.kind == kind_name && in_ns(namespace, &m.namespace))
                .cloned()
                .collect()
        });
        self.metrics_answer(v)
    }

    fn edges<'a>(&'a self, of: &'a WorkloadRef) -> Answer<'a, Vec<EdgeMetrics>> {
        let v = self.read(|d| {
            d.edges
                .iter()
                .filter(|e| &e.src == of || &e.dst == of)
                .cloned()
                .collect()
        });
        self.metrics_answer(v)
    }

    fn edges_among<'a>(&'a self, workloads: &'a [WorkloadRef]) -> Answer<'a, Vec<EdgeMetrics>> {
        let v = self.read(|d| {
            d.edges
                .iter()
                .filter(|e| workloads.contains(&e.src) || workloads.contains(&e.dst))
                .cloned()
                .collect()
        });
        self.metrics_answer(v)
    }

    fn split_metrics<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<BackendMetrics>> {
        let v = self.read(|d| {
            d.backends
                .iter()
                .filter(|b| in_ns(namespace, &b.namespace))
                .cloned()
                .collect()
        });
        self.metrics_answer(v)
    }

    fn target_metrics<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<TargetMetrics>> {
        let v = self.read(|d| {
            (d.target_metrics.iter())
                .filter(|t| in_ns(namespace, &t.namespace))
                .cloned()
                .collect()
        });
        self.metrics_answer(v)
    }

    fn window(&self) -> Duration {
        Duration::from_secs(30)
    }
}
