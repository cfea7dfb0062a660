//! [`Cluster`] over the Kubernetes API: GET requests only, objects and the aggregated
//! `metrics.smi-spec.io/v1alpha1` API alike, each answer cached for a short time so that
//! several open pages (and their live updates) share one request.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Service};
use kube::core::ObjectList;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Answer, Cluster, MetricsKind, certs, identity, objects, parse};
use crate::model::{
    BackendMetrics, CertState, CertStatus, Component, ControlPlane, EdgeMetrics, NamespaceInfo,
    PodInfo, ResourceMetrics, ServiceInfo, SmiObjects, TargetMetrics, WorkloadInfo, WorkloadRef,
};
use crate::{Error, Result};

/// The Traffic Metrics API.
pub const METRICS_API: &str = "/apis/metrics.smi-spec.io/v1alpha1";
/// Its APIService.
pub const METRICS_APISERVICE: &str = "v1alpha1.metrics.smi-spec.io";
/// The trust anchors ConfigMap and key.
pub const TRUST_ANCHORS: (&str, &str) = ("tulle-trust-anchors", "trust-anchors.pem");
/// The injector webhook configuration.
pub const WEBHOOK_CONFIG: &str = "tulle-proxy-injector";

/// How the dashboard reads the cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The control-plane namespace.
    pub control_plane_namespace: String,
    /// The metrics window (`?t=`).
    pub window: Duration,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
    /// How long the edges of a topology are reused (the numbers change once per scrape).
    pub edges_ttl: Duration,
}

type Cached = (Instant, Arc<Value>);

/// The Kubernetes API as a [`Cluster`].
pub struct KubeCluster {
    client: kube::Client,
    settings: Settings,
    cache: Mutex<HashMap<String, Cached>>,
    issuer: Mutex<Option<(Instant, CertStatus)>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn scoped(prefix: &str, namespace: Option<&str>, plural: &str) -> String {
    match namespace {
        Some(ns) => format!("{prefix}/namespaces/{}/{plural}", enc(ns)),
        None => format!("{prefix}/{plural}"),
    }
}

impl KubeCluster {
    /// A cluster reader over `client`.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Self {
            client,
            settings,
            cache: Mutex::new(HashMap::new()),
            issuer: Mutex::new(None),
        }
    }

    /// GET `path` as JSON (cached for the TTL).
    pub async fn get(&self, path: &str) -> Result<Arc<Value>> {
        self.get_within(path, self.settings.cache_ttl).await
    }

    /// GET `path` as JSON, reusing an answer younger than `ttl`.
    pub async fn get_within(&self, path: &str, ttl: Duration) -> Result<Arc<Value>> {
        if let Some((at, v)) = self.cache.lock().expect("cache lock").get(path)
            && at.elapsed() < ttl
        {
            return Ok(v.clone());
        }
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| Error::Config(format!("bad request path {path:?}: {e}")))?;
        let v = match self.client.request::<Value>(req).await {
            Ok(v) => Arc::new(v),
            Err(kube::Error::Api(s)) => {
                return Err(Error::Api {
                    path: path.into(),
                    status: Some(s.code),
                    message: s.message.clone(),
                });
            }
            Err(e) => {
                return Err(Error::Api {
                    path: path.into(),
                    status: None,
                    message: e.to_string(),
                });
            }
        };
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() > 1024 {
            let keep = ttl.max(self.settings.edges_ttl);
            cache.retain(|_, (at, _)| at.elapsed() < keep);
        }
        cache.insert(path.to_string(), (Instant::now(), v.clone()));
        Ok(v)
    }

    async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let v = self.get(path).await?;
        T::deserialize(&*v).map_err(|e| Error::Decode {
            what: path.into(),
            message: e.to_string(),
        })
    }

    async fn list<T: DeserializeOwned + Clone>(&self, path: String) -> Result<Vec<T>> {
        Ok(self.get_as::<ObjectList<T>>(&path).await?.items)
    }

    /// A list of custom objects; a missing CRD is an empty list.
    async fn list_json(&self, path: String) -> Result<Vec<Value>> {
        match self.get(&path).await {
            Ok(v) => Ok(v["items"].as_array().cloned().unwrap_or_default()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn edges_within<'a>(
        &'a self,
        of: &'a WorkloadRef,
        ttl: Duration,
    ) -> Answer<'a, Vec<EdgeMetrics>> {
        async move {
            let path = format!(
                "{METRICS_API}/namespaces/{}/{}/{}/edges?{}",
                enc(&of.namespace),
                of.kind.plural(),
                enc(&of.name),
                self.t()
            );
            Ok(parse::edges(&*self.get_within(&path, ttl).await?))
        }
        .boxed()
    }

    fn t(&self) -> String {
        format!("t={}s", self.settings.window.as_secs().max(1))
    }

    async fn certificates(&self) -> Vec<CertStatus> {
        let cp = &self.settings.control_plane_namespace;
        let (cm, key) = TRUST_ANCHORS;
        let mut out = Vec::new();
        let path = format!("/api/v1/namespaces/{cp}/configmaps/{cm}");
        let anchors = match self.get_as::<ConfigMap>(&path).await {
            Ok(c) => match c.data.and_then(|d| d.get(key).cloned()) {
                Some(pem) => certs::read_pem(pem.as_bytes()),
                None => vec![CertState::Unknown(format!(
                    "ConfigMap {cm} has no key {key}"
                ))],
            },
            Err(e) => vec![CertState::Unknown(e.to_string())],
        };
        for state in anchors {
            out.push(CertStatus {
                name: "trust anchor".into(),
                source: format!("ConfigMap {cp}/{cm}"),
                state,
            });
        }
        out.push(self.issuer().await);
        out
    }

    /// The issuer's validity from the identity pods' `/metrics` (see [`identity`]: the
    /// dashboard may not read the issuer Secret), reused for [`identity::CACHE_TTL`].
    async fn issuer(&self) -> CertStatus {
        if let Some((at, s)) = &*self.issuer.lock().expect("issuer lock")
            && at.elapsed() < identity::CACHE_TTL
        {
            return s.clone();
        }
        let cp = &self.settings.control_plane_namespace;
        let path = format!(
            "/api/v1/namespaces/{cp}/pods?labelSelector={}",
            enc(identity::IDENTITY_SELECTOR)
        );
        let pods = self
            .list::<Pod>(path)
            .await
            .map(|ps| ps.iter().map(objects::pod).collect())
            .map_err(|e| e.to_string());
        let s = identity::issuer_status(cp, pods, identity::ADMIN_PORT).await;
        *self.issuer.lock().expect("issuer lock") = Some((Instant::now(), s.clone()));
        s
    }

    async fn webhook(&self) -> (bool, Vec<CertStatus>) {
        let path = format!(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIG}"
        );
        let source = format!("MutatingWebhookConfiguration {WEBHOOK_CONFIG} (caBundle)");
        match self.get_as::<MutatingWebhookConfiguration>(&path).await {
            Ok(w) => {
                let bundle = w
                    .webhooks
                    .iter()
                    .flatten()
                    .find_map(|h| h.client_config.ca_bundle.clone());
                let states = match bundle {
                    Some(b) if !b.0.is_empty() => certs::read_pem(&b.0),
                    _ => vec![CertState::Unknown(
                        "no caBundle yet: the controller sets it when it starts".into(),
                    )],
                };
                let certs = states
                    .into_iter()
                    .map(|state| CertStatus {
                        name: "webhook CA".into(),
                        source: source.clone(),
                        state,
                    })
                    .collect();
                (true, certs)
            }
            Err(e) => (
                false,
                vec![CertStatus {
                    name: "webhook CA".into(),
                    source,
                    state: CertState::Unknown(e.to_string()),
                }],
            ),
        }
    }

    async fn metrics_api_status(&self) -> Option<(bool, String)> {
        let path = format!("/apis/apiregistration.k8s.io/v1/apiservices/{METRICS_APISERVICE}");
        let v = match self.get(&path).await {
            Ok(v) => v,
            Err(e) => return Some((false, e.to_string())),
        };
        let cond = v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Available")?
            .clone();
        Some((
            cond["status"] == "True",
            cond["message"]
                .as_str()
                .or(cond["reason"].as_str())
                .unwrap_or_default()
                .to_string(),
        ))
    }
}

impl Cluster for KubeCluster {
    fn control_plane(&self) -> Answer<'_, ControlPlane> {
        async move {
            let cp = self.settings.control_plane_namespace.clone();
            let deployments =
                self.list::<Deployment>(format!("/apis/apps/v1/namespaces/{cp}/deployments"));
            let (deployments, mut certs, (webhook, wcerts), metrics_api) = futures::join!(
                deployments,
                self.certificates(),
                self.webhook(),
                self.metrics_api_status()
            );
            let components = deployments?
                .iter()
                .map(|d| Component {
                    name: d.metadata.name.clone().unwrap_or_default(),
                    desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ready: d
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0),
                })
                .collect();
            certs.extend(wcerts);
            Ok(ControlPlane {
                namespace: cp,
                components,
                certs,
                webhook,
                metrics_api,
            })
        }
        .boxed()
    }

    fn namespaces(&self) -> Answer<'_, Vec<NamespaceInfo>> {
        async move {
            let ns = self.list::<Namespace>("/api/v1/namespaces".into()).await?;
            Ok(ns.iter().map(objects::namespace).collect())
        }
        .boxed()
    }

    fn workloads<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<WorkloadInfo>> {
        async move {
            let p = |plural| scoped("/apis/apps/v1", namespace, plural);
            let (d, s, ds) = futures::try_join!(
                self.list::<Deployment>(p("deployments")),
                self.list::<StatefulSet>(p("statefulsets")),
                self.list::<DaemonSet>(p("daemonsets")),
            )?;
            let mut out: Vec<WorkloadInfo> = d.iter().filter_map(objects::deployment).collect();
            out.extend(s.iter().filter_map(objects::stateful_set));
            out.extend(ds.iter().filter_map(objects::daemon_set));
            Ok(out)
        }
        .boxed()
    }

    fn pods<'a>(&'a self, namespace: &'a str, selector: &'a str) -> Answer<'a, Vec<PodInfo>> {
        async move {
            let path = format!(
                "/api/v1/namespaces/{}/pods?labelSelector={}",
                enc(namespace),
                enc(selector)
            );
            Ok(self
                .list::<Pod>(path)
                .await?
                .iter()
                .map(objects::pod)
                .collect())
        }
        .boxed()
    }

    fn services<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<ServiceInfo>> {
        async move {
            let path = scoped("/api/v1", namespace, "services");
            Ok(self
                .list::<Service>(path)
                .await?
                .iter()
                .map(objects::service)
                .collect())
        }
        .boxed()
    }

    fn smi<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, SmiObjects> {
        async move {
            let p = |prefix, plural| scoped(prefix, namespace, plural);
            let events = format!(
                "{}?fieldSelector={}",
                p("/api/v1", "events"),
                enc("type=Warning")
            );
            let (splits, targets, groups, tcp, events) = futures::try_join!(
                self.list_json(p("/apis/split.smi-spec.io/v1alpha4", "trafficsplits")),
                self.list_json(p("/apis/access.smi-spec.io/v1alpha3", "traffictargets")),
                self.list_json(p("/apis/specs.smi-spec.io/v1alpha4", "httproutegroups")),
                self.list_json(p("/apis/specs.smi-spec.io/v1alpha4", "tcproutes")),
                self.list::<Event>(events),
            )?;
            let mut out = SmiObjects::default();
            let mut unreadable = Vec::new();
            for o in &splits {
                match parse::traffic_split(o) {
                    Ok(s) => out.splits.push(s),
                    Err(why) => unreadable.push(parse::unreadable("TrafficSplit", o, why)),
                }
            }
            for o in &targets {
                match parse::traffic_target(o) {
                    Ok(t) => out.targets.push(t),
                    Err(why) => unreadable.push(parse::unreadable("TrafficTarget", o, why)),
                }
            }
            for o in &groups {
                match parse::route_group(o) {
                    Ok(g) => out.route_groups.push(g),
                    Err(why) => unreadable.push(parse::unreadable("HTTPRouteGroup", o, why)),
                }
            }
            for o in &tcp {
                match parse::tcp_route(o) {
                    Ok(t) => out.tcp_routes.push(t),
                    Err(why) => unreadable.push(parse::unreadable("TCPRoute", o, why)),
                }
            }
            out.unreadable = unreadable;
            out.problems =
                objects::latest_problems(events.iter().filter_map(objects::problem).collect());
            Ok(out)
        }
        .boxed()
    }

    fn metrics<'a>(
        &'a self,
        kind: MetricsKind,
        namespace: Option<&'a str>,
        selector: Option<&'a str>,
    ) -> Answer<'a, Vec<ResourceMetrics>> {
        async move {
            let base = match kind {
                MetricsKind::Namespaces => format!("{METRICS_API}/namespaces"),
                k => scoped(METRICS_API, namespace, k.plural()),
            };
            let mut path = format!("{base}?{}", self.t());
            if let Some(s) = selector.filter(|s| !s.is_empty()) {
                path.push_str(&format!("&labelSelector={}", enc(s)));
            }
            Ok(parse::resources(&*self.get(&path).await?))
        }
        .boxed()
    }

    fn edges<'a>(&'a self, of: &'a WorkloadRef) -> Answer<'a, Vec<EdgeMetrics>> {
        self.edges_within(of, self.settings.cache_ttl)
    }

    fn edges_among<'a>(&'a self, workloads: &'a [WorkloadRef]) -> Answer<'a, Vec<EdgeMetrics>> {
        async move {
            // One aggregate request per (namespace, kind): `?edges=true` on the list answers
            // every edge among its resources, each once, from its client.
            let groups: BTreeSet<(String, &'static str)> = workloads
                .iter()
                .map(|w| (w.namespace.clone(), w.kind.plural()))
                .collect();
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            for (ns, plural) in groups {
                let path = format!(
                    "{}?edges=true&{}",
                    scoped(METRICS_API, Some(&ns), plural),
                    self.t()
                );
                let list = self.get_within(&path, self.settings.edges_ttl).await?;
                for e in parse::edges(&list) {
                    let wanted = workloads.contains(&e.src) || workloads.contains(&e.dst);
                    let key = (e.src.clone(), e.dst.clone(), e.server_id.clone(), e.secured);
                    if wanted && seen.insert(key) {
                        out.push(e);
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn split_metrics<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<BackendMetrics>> {
        async move {
            let path = format!(
                "{}?{}",
                scoped(METRICS_API, namespace, "trafficsplits"),
                self.t()
            );
            Ok(parse::backends(&*self.get(&path).await?))
        }
        .boxed()
    }

    fn target_metrics<'a>(&'a self, namespace: Option<&'a str>) -> Answer<'a, Vec<TargetMetrics>> {
        async move {
            let path = format!(
                "{}?{}",
                scoped(METRICS_API, namespace, "traffictargets"),
                self.t()
            );
            Ok(parse::targets(&*self.get(&path).await?))
        }
        .boxed()
    }

    fn window(&self) -> Duration {
        self.settings.window
    }
}
