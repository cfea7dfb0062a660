//! The topology: workloads as nodes, traffic as edges, laid out on the server in layers
//! ([`layout`]: callers left of the services they call, one horizontal band per namespace,
//! nodes on a grid so that no two overlap, edge labels in the gaps between layers) and
//! drawn as SVG ([`svg`]), so the page needs no JavaScript and stays readable with
//! hundreds of workloads.

pub mod layout;
pub mod svg;

use std::collections::BTreeMap;

use crate::model::{EdgeMetrics, Golden, PodCount, ResourceMetrics, WorkloadRef};

/// A workload in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Which.
    pub id: WorkloadRef,
    /// Its pods.
    pub pods: PodCount,
    /// What it served (none when the metrics API did not list it).
    pub golden: Option<Golden>,
}

/// Traffic from one workload to another (all the edges between them merged).
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// Index of the client node.
    pub src: usize,
    /// Index of the server node.
    pub dst: usize,
    /// The numbers (counts summed; latency the worst of the merged edges).
    pub golden: Golden,
    /// All of it was mTLS.
    pub secured: bool,
    /// The server's identity (when mTLS).
    pub server_id: Option<String>,
}

/// The graph, nodes sorted by namespace and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Workloads.
    pub nodes: Vec<Node>,
    /// Edges.
    pub links: Vec<Link>,
}

fn worst(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl Graph {
    /// The graph of `workloads` (kind `Deployment`, ... items of the metrics API) and the
    /// edges among them; an edge's other end that is not listed becomes a node too.
    pub fn build(workloads: &[ResourceMetrics], edges: &[EdgeMetrics]) -> Graph {
        let mut nodes: BTreeMap<WorkloadRef, Node> = BTreeMap::new();
        for w in workloads {
            let Some(kind) = crate::model::Kind::parse(&w.kind) else {
                continue;
            };
            let id = WorkloadRef::new(kind, &w.namespace, &w.name);
            nodes.insert(
                id.clone(),
                Node {
                    id,
                    pods: w.pods,
                    golden: Some(w.golden),
                },
            );
        }
        for e in edges {
            for r in [&e.src, &e.dst] {
                nodes.entry(r.clone()).or_insert_with(|| Node {
                    id: r.clone(),
                    pods: PodCount::default(),
                    golden: None,
                });
            }
        }
        let index: BTreeMap<WorkloadRef, usize> = nodes
            .keys()
            .enumerate()
            .map(|(i, r)| (r.clone(), i))
            .collect();
        let mut links: BTreeMap<(usize, usize), Link> = BTreeMap::new();
        for e in edges {
            let (src, dst) = (index[&e.src], index[&e.dst]);
            let l = links.entry((src, dst)).or_insert_with(|| Link {
                src,
                dst,
                golden: Golden::default(),
                secured: true,
                server_id: None,
            });
            l.golden.success += e.golden.success;
            l.golden.failure += e.golden.failure;
            l.golden.tcp_open += e.golden.tcp_open;
            l.golden.p50 = worst(l.golden.p50, e.golden.p50);
            l.golden.p90 = worst(l.golden.p90, e.golden.p90);
            l.golden.p95 = worst(l.golden.p95, e.golden.p95);
            l.golden.p99 = worst(l.golden.p99, e.golden.p99);
            l.secured &= e.secured;
            if l.server_id.is_none() {
                l.server_id = e.server_id.clone();
            }
        }
        Graph {
            nodes: nodes.into_values().collect(),
            links: links.into_values().collect(),
        }
    }
}

/// How an edge or node is doing, for its style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No responses in the window.
    Idle,
    /// At least 99 % successful.
    Ok,
    /// At least 90 %.
    Warn,
    /// Below 90 %: failing.
    Fail,
}

impl Health {
    /// The health of a success rate.
    pub fn of(rate: Option<f64>) -> Health {
        match rate {
            None => Health::Idle,
            Some(r) if r >= 0.99 => Health::Ok,
            Some(r) if r >= 0.9 => Health::Warn,
            Some(_) => Health::Fail,
        }
    }

    /// The CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Health::Idle => "idle",
            Health::Ok => "ok",
            Health::Warn => "warn",
            Health::Fail => "fail",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn edges_between_the_same_workloads_are_merged() {
        let r = |n: &str| WorkloadRef::new(Kind::Deployment, "demo", n);
        let g = |s: f64, p99: f64| Golden {
            success: s,
            p99: Some(p99),
            ..Default::default()
        };
        let e = |secured: bool, gold: Golden| EdgeMetrics {
            src: r("a"),
            dst: r("b"),
            client_id: None,
            server_id: None,
            secured,
            golden: gold,
        };
        let graph = Graph::build(&[], &[e(true, g(10.0, 5.0)), e(false, g(5.0, 9.0))]);
        assert_eq!(graph.nodes.len(), 2);
        assert_eq!(graph.links.len(), 1);
        let l = &graph.links[0];
        assert_eq!(
            (l.golden.success, l.golden.p99, l.secured),
            (15.0, Some(9.0), false)
        );
        assert_eq!(Health::of(Some(0.5)), Health::Fail);
        assert_eq!(Health::of(None), Health::Idle);
    }
}
