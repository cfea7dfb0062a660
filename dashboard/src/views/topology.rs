//! `/topology`: the layered graph of the mesh's workloads (or one namespace's), drawn on
//! the server ([`crate::topology`]).

use askama::Template;
use std::time::{Duration, Instant};

use super::{Ctx, Fragment, Rendered, fragment, namespace::workload_metrics, or_error};
use crate::Result;
use crate::model::{EdgeMetrics, Kind, ResourceMetrics, WorkloadRef};
use crate::topology::{Graph, layout::layout, svg};

/// The topology fragment.
#[derive(Template)]
#[template(path = "topology.html")]
pub struct TopologyView {
    /// The SVG.
    pub svg: String,
    /// Workloads drawn.
    pub nodes: usize,
    /// Edges drawn.
    pub edges: usize,
    /// Namespace filter links: (label, href, active).
    pub filters: Vec<(String, String, bool)>,
}

/// Draws `workloads` and `edges`: the SVG and the node and edge counts.
pub fn draw(
    workloads: &[ResourceMetrics],
    edges: &[EdgeMetrics],
    window: Duration,
) -> (String, usize, usize) {
    let g = Graph::build(workloads, edges);
    let l = layout(&g);
    (svg::render(&g, &l, window), g.nodes.len(), g.links.len())
}

/// The topology of `workloads` (the metrics items of a namespace or of all): their edges,
/// asked for the workloads that have meshed pods.
pub async fn graph_fragment(
    ctx: Ctx<'_>,
    workloads: &[ResourceMetrics],
    filters: Vec<(String, String, bool)>,
) -> Result<Fragment> {
    let meshed: Vec<WorkloadRef> = workloads
        .iter()
        .filter(|m| m.pods.meshed > 0)
        .filter_map(|m| {
            Some(WorkloadRef::new(
                Kind::parse(&m.kind)?,
                &m.namespace,
                &m.name,
            ))
        })
        .collect();
    let edges = ctx.cluster.edges_among(&meshed).await?;
    let started = Instant::now();
    let (svg, nodes, edges) = draw(workloads, &edges, ctx.cluster.window());
    tracing::debug!(nodes, edges, elapsed = ?started.elapsed(), "topology drawn");
    fragment(
        "topology",
        &TopologyView {
            svg,
            nodes,
            edges,
            filters,
        },
    )
}

/// The topology fragment of a namespace page (all its workloads, meshed or not).
pub async fn fragment_for(ctx: Ctx<'_>, workloads: &[ResourceMetrics]) -> Result<Fragment> {
    graph_fragment(ctx, workloads, Vec::new()).await
}

/// Renders the topology page.
pub async fn render(ctx: Ctx<'_>, namespace: Option<&str>) -> Result<Rendered> {
    let (metrics, names) =
        futures::join!(workload_metrics(ctx, namespace), ctx.cluster.namespaces());
    let mut filters = vec![(
        "all namespaces".to_string(),
        "/topology".to_string(),
        namespace.is_none(),
    )];
    let metrics = metrics.map(|mut ms| {
        // The whole mesh: meshed workloads only (unmeshed ones have no edges to draw).
        if namespace.is_none() {
            ms.retain(|m| m.pods.meshed > 0);
        }
        ms
    });
    let mut with_meshed: Vec<String> = metrics
        .as_ref()
        .map(|ms| {
            ms.iter()
                .filter(|m| m.pods.meshed > 0)
                .map(|m| m.namespace.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(ns) = names {
        with_meshed.retain(|n| ns.iter().any(|o| &o.name == n));
    }
    with_meshed.sort();
    with_meshed.dedup();
    for n in with_meshed {
        let active = namespace == Some(n.as_str());
        filters.push((n.clone(), format!("/topology?namespace={n}"), active));
    }
    let frag = match metrics {
        Ok(ms) => graph_fragment(ctx, &ms, filters).await,
        Err(e) => Err(e),
    };
    let title = match namespace {
        Some(n) => format!("Topology of {n}"),
        None => "Topology".to_string(),
    };
    Ok(Rendered {
        title,
        crumbs: vec![("Overview".into(), "/".into())],
        fragments: vec![or_error("topology", "the topology", frag)?],
    })
}
