//! `/namespaces/{ns}/{kind}/{name}`: one workload: its golden metrics with charts, its
//! pods, its inbound and outbound edges with the client and server identities and the mTLS
//! state, and the TrafficSplits and TrafficTargets it takes part in.

use askama::Template;

use super::cells::{Charts, MetricCells};
use super::{Ctx, Rendered, fragment, or_error};
use crate::format;
use crate::history;
use crate::model::{
    BackendMetrics, EdgeMetrics, ResourceMetrics, ServiceInfo, SmiObjects, TargetMetrics,
    WorkloadInfo, WorkloadRef,
};
use crate::source::MetricsKind;
use crate::{Error, Result};

/// The summary fragment.
#[derive(Template)]
#[template(path = "workload_summary.html")]
pub struct SummaryView {
    /// `Deployment`.
    pub kind: &'static str,
    /// `ready/desired`.
    pub replicas: String,
    /// `meshed/total`.
    pub pods: String,
    /// ServiceAccount.
    pub service_account: String,
    /// The inject annotation of the pod template.
    pub inject: String,
    /// Metrics.
    pub m: MetricCells,
    /// Charts.
    pub charts: Charts,
    /// Why the metrics are missing.
    pub metrics_error: Option<String>,
}

/// A pod row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRow {
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: String,
    /// Ready.
    pub ready: bool,
    /// Meshed.
    pub meshed: bool,
    /// Restarts.
    pub restarts: i32,
    /// IP.
    pub ip: String,
    /// Metrics.
    pub m: MetricCells,
}

/// The pods fragment.
#[derive(Template)]
#[template(path = "workload_pods.html")]
pub struct PodsView {
    /// Rows.
    pub rows: Vec<PodRow>,
}

/// An edge row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeRow {
    /// The other workload.
    pub peer: String,
    /// Its page.
    pub href: String,
    /// Client identity.
    pub client_id: String,
    /// Server identity.
    pub server_id: String,
    /// mTLS.
    pub secured: bool,
    /// Metrics.
    pub m: MetricCells,
}

/// The edges fragment.
#[derive(Template)]
#[template(path = "workload_edges.html")]
pub struct EdgesView {
    /// Traffic to this workload.
    pub inbound: Vec<EdgeRow>,
    /// Traffic from it.
    pub outbound: Vec<EdgeRow>,
}

/// A TrafficSplit or TrafficTarget the workload takes part in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmiRow {
    /// `TrafficSplit`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Where it is shown.
    pub href: String,
    /// The workload's part in it.
    pub role: String,
    /// Problems (reason: message).
    pub problems: Vec<String>,
}

/// The SMI fragment.
#[derive(Template)]
#[template(path = "workload_smi.html")]
pub struct SmiView {
    /// Rows.
    pub rows: Vec<SmiRow>,
}

fn edge_rows(
    edges: &[EdgeMetrics],
    of: &WorkloadRef,
    inbound: bool,
    window: std::time::Duration,
) -> Vec<EdgeRow> {
    let mut rows: Vec<EdgeRow> = edges
        .iter()
        .filter(|e| if inbound { &e.dst == of } else { &e.src == of })
        .map(|e| {
            let peer = if inbound { &e.src } else { &e.dst };
            EdgeRow {
                peer: if peer.namespace == of.namespace {
                    peer.name.clone()
                } else {
                    format!("{}/{}", peer.namespace, peer.name)
                },
                href: peer.href(),
                client_id: e.client_id.clone().unwrap_or_else(|| format::NONE.into()),
                server_id: e.server_id.clone().unwrap_or_else(|| format::NONE.into()),
                secured: e.secured,
                m: MetricCells::of(Some(&e.golden), window),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.peer.cmp(&b.peer));
    rows
}

/// The TrafficSplits (through the Services that select its pods) and TrafficTargets
/// (through its ServiceAccount, with what each admitted and its destination refused in the
/// window) of a workload.
pub fn smi_rows(
    w: &WorkloadInfo,
    services: &[ServiceInfo],
    smi: &SmiObjects,
    backends: &[BackendMetrics],
    (targets, window): (&[TargetMetrics], std::time::Duration),
) -> Vec<SmiRow> {
    let selects = |svc: &str| {
        services
            .iter()
            .any(|s| s.name == svc && s.selects(&w.pod_labels))
    };
    let ns = &w.id.namespace;
    let problems = |kind: &str, name: &str, uid: &str| {
        smi.problems_of(kind, ns, name, uid)
            .iter()
            .map(|p| format!("{}: {}", p.reason, p.message))
            .collect::<Vec<_>>()
    };
    let mut rows = Vec::new();
    for s in smi.splits.iter().filter(|s| &s.namespace == ns) {
        let mut roles = Vec::new();
        if selects(&s.service) {
            roles.push(format!("apex Service {} selects it", s.service));
        }
        for (b, weight) in &s.backends {
            if selects(b) {
                let applied = backends
                    .iter()
                    .find(|m| m.split == s.name && &m.backend == b)
                    .map(|m| format!(", {} applied", m.weight))
                    .unwrap_or_default();
                roles.push(format!("backend {b} (weight {weight}{applied})"));
            }
        }
        if !roles.is_empty() {
            rows.push(SmiRow {
                kind: "TrafficSplit",
                name: s.name.clone(),
                href: format!("/smi?namespace={ns}#split-{}", s.name),
                role: roles.join("; "),
                problems: problems("TrafficSplit", &s.name, &s.uid),
            });
        }
    }
    let is_me = |sa: &crate::model::SaRef| sa.name == w.service_account && &sa.namespace == ns;
    for t in &smi.targets {
        let mut roles = Vec::new();
        if is_me(&t.destination) {
            roles.push(format!("destination (allows {} sources)", t.sources.len()));
            if let Some(m) = targets
                .iter()
                .find(|m| m.namespace == t.namespace && m.name == t.name)
            {
                roles.push(format!(
                    "{} allowed, {} denied in the last {}s",
                    format::count(m.allowed),
                    format::count(m.denied),
                    window.as_secs()
                ));
            }
        }
        if t.sources.iter().any(is_me) {
            roles.push(format!(
                "source allowed to reach {}/{}",
                t.destination.namespace, t.destination.name
            ));
        }
        if !roles.is_empty() {
            rows.push(SmiRow {
                kind: "TrafficTarget",
                name: t.name.clone(),
                href: format!("/smi?namespace={}#target-{}", t.namespace, t.name),
                role: roles.join("; "),
                problems: problems("TrafficTarget", &t.name, &t.uid),
            });
        }
    }
    rows
}

/// Renders a workload page.
pub async fn render(ctx: Ctx<'_>, id: &WorkloadRef) -> Result<Rendered> {
    let c = ctx.cluster;
    let ns = id.namespace.as_str();
    let window = c.window();
    let w = c
        .workloads(Some(ns))
        .await?
        .into_iter()
        .find(|w| &w.id == id)
        .ok_or_else(|| Error::NotFound(format!("{} {ns}/{} not found", id.kind.name(), id.name)))?;
    let (metrics, pods, pod_metrics, edges, services, smi, backends, targets) = futures::join!(
        c.metrics(MetricsKind::Workload(id.kind), Some(ns), None),
        c.pods(ns, &w.selector),
        c.metrics(MetricsKind::Pods, Some(ns), Some(&w.selector)),
        c.edges(id),
        c.services(Some(ns)),
        c.smi(Some(ns)),
        c.split_metrics(Some(ns)),
        c.target_metrics(Some(ns)),
    );
    let mine: Result<Option<ResourceMetrics>> = metrics.map(|ms| {
        ms.into_iter()
            .find(|m| m.name == id.name && m.kind == id.kind.name())
    });
    let key = history::key(id.kind.name(), ns, &id.name);
    if let Ok(Some(m)) = &mine {
        ctx.history.record(&key, ctx.now, &m.golden, window);
    }
    let (golden, pods_count, metrics_error) = match &mine {
        Ok(m) => (
            m.as_ref().map(|m| m.golden),
            m.as_ref().map(|m| m.pods),
            None,
        ),
        Err(e) => (None, None, Some(e.to_string())),
    };
    let summary = SummaryView {
        kind: id.kind.name(),
        replicas: format!("{}/{}", w.ready, w.desired),
        pods: pods_count.map_or(format::NONE.into(), |p| format!("{}/{}", p.meshed, p.total)),
        service_account: w.service_account.clone(),
        inject: w.inject.clone().unwrap_or_default(),
        m: MetricCells::of(golden.as_ref(), window),
        charts: Charts::of(ctx.history, &key, 220.0, 40.0),
        metrics_error,
    };
    let pod_metrics = pod_metrics.unwrap_or_default();
    let pods = pods.map(|ps| PodsView {
        rows: ps
            .into_iter()
            .map(|p| PodRow {
                m: MetricCells::of(
                    pod_metrics
                        .iter()
                        .find(|m| m.name == p.name)
                        .map(|m| &m.golden),
                    window,
                ),
                name: p.name,
                phase: p.phase,
                ready: p.ready,
                meshed: p.meshed,
                restarts: p.restarts,
                ip: p.ip,
            })
            .collect(),
    });
    let edges = edges.map(|es| EdgesView {
        inbound: edge_rows(&es, id, true, window),
        outbound: edge_rows(&es, id, false, window),
    });
    let smi_view = match (services, smi) {
        (Ok(s), Ok(o)) => Ok(SmiView {
            rows: smi_rows(
                &w,
                &s,
                &o,
                &backends.unwrap_or_default(),
                (&targets.unwrap_or_default(), window),
            ),
        }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    Ok(Rendered {
        title: format!("{} {}", id.kind.name(), id.name),
        crumbs: vec![
            ("Overview".into(), "/".into()),
            (format!("namespace {ns}"), format!("/namespaces/{ns}")),
        ],
        fragments: vec![
            fragment("summary", &summary)?,
            or_error("pods", "the pods", pods.and_then(|v| fragment("pods", &v)))?,
            or_error(
                "edges",
                "the edges",
                edges.and_then(|v| fragment("edges", &v)),
            )?,
            or_error(
                "smi",
                "the SMI objects",
                smi_view.and_then(|v| fragment("smi", &v)),
            )?,
        ],
    })
}
