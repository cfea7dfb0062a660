//! A layered layout (after Sugiyama): layers by the longest path from the callers (cycles
//! broken by depth-first search), one horizontal band per namespace, nodes ordered within a
//! layer by the barycenter of their neighbours, and placed on a grid: a layer of a band
//! holds at most [`MAX_ROWS`] rows and wraps into sub-columns beyond, so no two node boxes
//! can overlap. Edge labels go in the gap right of the client's layer and are spread
//! vertically so that they do not overlap each other either.

use std::collections::BTreeMap;

use super::Graph;

/// Node box width.
pub const NODE_W: f64 = 190.0;
/// Node box height.
pub const NODE_H: f64 = 40.0;
/// Vertical distance between node rows.
pub const ROW_H: f64 = 56.0;
/// The gap between layers, where edge labels go.
pub const GAP: f64 = 150.0;
/// The gap between sub-columns of one layer.
pub const SUB_GAP: f64 = 24.0;
/// Rows of a layer in one band before it wraps.
pub const MAX_ROWS: usize = 12;
/// The band header (namespace name).
pub const BAND_HEAD: f64 = 28.0;
/// The space below a band.
pub const BAND_PAD: f64 = 16.0;
/// Edge label size.
pub const LABEL_W: f64 = 116.0;
/// Edge label height (two lines).
pub const LABEL_H: f64 = 28.0;
/// Outer margin.
pub const MARGIN: f64 = 12.0;

/// A rectangle.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Rect {
    /// Whether two rectangles share any area.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// A namespace band.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// The namespace.
    pub namespace: String,
    /// Its area.
    pub rect: Rect,
}

/// Where an edge goes: its curve's end points and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeGeom {
    /// Start (right side of the client).
    pub from: (f64, f64),
    /// End (left side of the server).
    pub to: (f64, f64),
    /// The point of the curve the label belongs to.
    pub anchor: (f64, f64),
    /// The label box.
    pub label: Rect,
}

/// The layout of a [`Graph`]: one rectangle per node (same order), one geometry per link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// Node boxes.
    pub nodes: Vec<Rect>,
    /// Edges.
    pub edges: Vec<EdgeGeom>,
    /// Namespace bands.
    pub bands: Vec<Band>,
    /// Total width.
    pub width: f64,
    /// Total height.
    pub height: f64,
}

/// Layers by longest path over the edges that are not back edges of a DFS.
fn layers(g: &Graph) -> Vec<usize> {
    let n = g.nodes.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for l in &g.links {
        if l.src != l.dst {
            out[l.src].push(l.dst);
        }
    }
    // Iterative DFS: 0 = new, 1 = on the stack, 2 = done; forward edges in topological order.
    let mut state = vec![0u8; n];
    let mut order = Vec::with_capacity(n);
    let mut forward: Vec<Vec<usize>> = vec![Vec::new(); n];
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some((v, i)) = stack.pop() {
            if i < out[v].len() {
                stack.push((v, i + 1));
                let w = out[v][i];
                match state[w] {
                    0 => {
                        forward[v].push(w);
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    2 => forward[v].push(w),
                    _ => {} // a back edge: ignored for layering
                }
            } else {
                state[v] = 2;
                order.push(v);
            }
        }
    }
    let mut layer = vec![0usize; n];
    for &v in order.iter().rev() {
        for &w in &forward[v] {
            layer[w] = layer[w].max(layer[v] + 1);
        }
    }
    layer
}

/// Computes the layout.
pub fn layout(g: &Graph) -> Layout {
    let n = g.nodes.len();
    if n == 0 {
        return Layout::default();
    }
    let layer = layers(g);
    let nlayers = layer.iter().max().map_or(1, |m| m + 1);
    let names: Vec<String> = g
        .nodes
        .iter()
        .map(|nd| nd.id.namespace.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let band: Vec<usize> = g
        .nodes
        .iter()
        .map(|nd| names.binary_search(&nd.id.namespace).unwrap_or(0))
        .collect();
    // cells[band][layer] = nodes, ordered.
    let mut cells: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); nlayers]; names.len()];
    for v in 0..n {
        cells[band[v]][layer[v]].push(v);
    }
    // Barycenter ordering: a few sweeps, each node placed at the mean position of its
    // neighbours in the previous (down) or next (up) layers.
    let mut pos = vec![0.0f64; n];
    let set_pos = |cells: &Vec<Vec<Vec<usize>>>, pos: &mut Vec<f64>| {
        for b in cells {
            for c in b {
                for (i, &v) in c.iter().enumerate() {
                    pos[v] = i as f64;
                }
            }
        }
    };
    set_pos(&cells, &mut pos);
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for l in &g.links {
        if l.src != l.dst {
            succs[l.src].push(l.dst);
            preds[l.dst].push(l.src);
        }
    }
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        let order: Vec<usize> = if down {
            (0..nlayers).collect()
        } else {
            (0..nlayers).rev().collect()
        };
        for li in order {
            for b in cells.iter_mut() {
                let cell = &mut b[li];
                let key = |v: usize| {
                    let nb = if down { &preds[v] } else { &succs[v] };
                    if nb.is_empty() {
                        pos[v]
                    } else {
                        nb.iter().map(|&u| pos[u]).sum::<f64>() / nb.len() as f64
                    }
                };
                let mut keyed: Vec<(f64, usize)> = cell.iter().map(|&v| (key(v), v)).collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                *cell = keyed.into_iter().map(|(_, v)| v).collect();
                for (i, &v) in cell.iter().enumerate() {
                    pos[v] = i as f64;
                }
            }
        }
    }
    // Sub-columns per layer: the most any band needs.
    let subcols: Vec<usize> = (0..nlayers)
        .map(|li| {
            cells
                .iter()
                .map(|b| b[li].len().div_ceil(MAX_ROWS))
                .max()
                .unwrap_or(1)
                .max(1)
        })
        .collect();
    let mut layer_x = Vec::with_capacity(nlayers);
    let mut x = MARGIN;
    for &sc in &subcols {
        layer_x.push(x);
        x += sc as f64 * NODE_W + (sc as f64 - 1.0) * SUB_GAP + GAP;
    }
    // The last gap stays: labels of edges from the last layer (back edges) go there.
    let width = x + MARGIN;
    let layer_right = |li: usize| {
        layer_x[li] + subcols[li] as f64 * NODE_W + (subcols[li] as f64 - 1.0) * SUB_GAP
    };
    let mut nodes = vec![Rect::default(); n];
    let mut bands = Vec::with_capacity(names.len());
    let mut y = MARGIN;
    for (bi, name) in names.iter().enumerate() {
        let rows = cells[bi]
            .iter()
            .map(|c| c.len().min(MAX_ROWS))
            .max()
            .unwrap_or(1)
            .max(1);
        let h = BAND_HEAD + rows as f64 * ROW_H;
        for (li, cell) in cells[bi].iter().enumerate() {
            for (i, &v) in cell.iter().enumerate() {
                let (sc, row) = (i / MAX_ROWS, i % MAX_ROWS);
                nodes[v] = Rect {
                    x: layer_x[li] + sc as f64 * (NODE_W + SUB_GAP),
                    y: y + BAND_HEAD + row as f64 * ROW_H,
                    w: NODE_W,
                    h: NODE_H,
                };
            }
        }
        bands.push(Band {
            namespace: name.clone(),
            rect: Rect {
                x: MARGIN / 2.0,
                y: y - 4.0,
                w: width - MARGIN,
                h: h + 4.0,
            },
        });
        y += h + BAND_PAD;
    }
    let height = y - BAND_PAD + MARGIN;
    // Edges, and their labels in the gap right of the client's layer.
    let mut edges = Vec::with_capacity(g.links.len());
    let mut by_gap: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in g.links.iter().enumerate() {
        let (s, d) = (nodes[l.src], nodes[l.dst]);
        let from = (s.x + s.w, s.y + s.h / 2.0);
        let to = (d.x, d.y + d.h / 2.0);
        let gap_x = layer_right(layer[l.src]) + (GAP - LABEL_W) / 2.0;
        let t = if (to.0 - from.0).abs() < 1.0 {
            0.5
        } else {
            ((gap_x + LABEL_W / 2.0 - from.0) / (to.0 - from.0)).clamp(0.0, 1.0)
        };
        let anchor = (gap_x + LABEL_W / 2.0, from.1 + (to.1 - from.1) * t);
        edges.push(EdgeGeom {
            from,
            to,
            anchor,
            label: Rect {
                x: gap_x,
                y: anchor.1 - LABEL_H / 2.0,
                w: LABEL_W,
                h: LABEL_H,
            },
        });
        by_gap.entry(layer[l.src]).or_default().push(i);
    }
    // Spread the labels of each gap: sorted by y, each pushed down below the one before
    // (the drawing grows if the last ones go past its bottom).
    let mut height = height;
    for ids in by_gap.values_mut() {
        ids.sort_by(|a, b| edges[*a].label.y.total_cmp(&edges[*b].label.y));
        let mut next_free = f64::MIN;
        for &i in ids.iter() {
            let r = &mut edges[i].label;
            if r.y < next_free {
                r.y = next_free;
            }
            next_free = r.y + LABEL_H + 2.0;
        }
        height = height.max(next_free + MARGIN);
    }
    Layout {
        nodes,
        edges,
        bands,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::fake::FakeCluster;
    use crate::topology::Graph;

    fn synthetic(n: usize, ns: usize) -> Graph {
        let f = FakeCluster::synthetic(n, ns);
        let data = f.snapshot();
        Graph::build(&data.metrics, &data.edges)
    }

    fn assert_no_overlaps(l: &Layout) {
        for (i, a) in l.nodes.iter().enumerate() {
            for (j, b) in l.nodes.iter().enumerate().skip(i + 1) {
                assert!(!a.overlaps(b), "nodes {i} {a:?} and {j} {b:?} overlap");
            }
            for (k, e) in l.edges.iter().enumerate() {
                assert!(
                    !a.overlaps(&e.label),
                    "node {i} {a:?} and label {k} {:?}",
                    e.label
                );
            }
        }
        for (i, a) in l.edges.iter().enumerate() {
            for b in l.edges.iter().skip(i + 1) {
                assert!(
                    !a.label.overlaps(&b.label),
                    "labels {:?} {:?}",
                    a.label,
                    b.label
                );
            }
        }
    }

    #[test]
    fn callers_are_left_of_what_they_call() {
        let g = synthetic(20, 2);
        let l = layout(&g);
        for link in &g.links {
            let (s, d) = (l.nodes[link.src], l.nodes[link.dst]);
            assert!(
                s.x < d.x,
                "{:?} → {:?}",
                g.nodes[link.src].id,
                g.nodes[link.dst].id
            );
        }
        assert_no_overlaps(&l);
    }

    #[test]
    fn nothing_overlaps_at_150_workloads_and_more() {
        for (n, ns) in [(150, 5), (150, 1), (300, 7), (1, 1)] {
            let l = layout(&synthetic(n, ns));
            assert_eq!(l.nodes.len(), n);
            assert_no_overlaps(&l);
        }
    }

    #[test]
    fn cycles_and_isolated_nodes_are_laid_out() {
        use crate::model::{EdgeMetrics, Golden, Kind, WorkloadRef};
        let r = |n: &str| WorkloadRef::new(Kind::Deployment, "demo", n);
        let e = |a: &str, b: &str| EdgeMetrics {
            src: r(a),
            dst: r(b),
            client_id: None,
            server_id: None,
            secured: true,
            golden: Golden::default(),
        };
        let g = Graph::build(&[], &[e("a", "b"), e("b", "c"), e("c", "a"), e("d", "d")]);
        let l = layout(&g);
        assert_eq!(l.nodes.len(), 4);
        assert_no_overlaps(&l);
    }
}
