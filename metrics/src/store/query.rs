//! Answering the [`crate::Source`] primitives from the pods' records: pick the matching series
//! pod by pod (the pod-label matchers first, so other namespaces cost one comparison per pod),
//! give each a group (`by`), then add up the records of the window into one accumulator.

use std::collections::HashMap;

use super::Inner;
use super::codec::{self, SKIP, Target};
use super::pod::{Layout, Pod, Sym};
use crate::parse::Family;
use crate::query::{Labels, Matcher, POD_LABELS, Row, Select, histogram_quantile};

/// The labels of one series: the pod's win over the series' own.
fn get<'a>(pod: &'a [(Sym, Sym)], series: &'a [(Sym, Sym)], name: &str) -> Option<&'a str> {
    let find = |l: &'a [(Sym, Sym)]| l.iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v);
    find(pod).or_else(|| find(series))
}

/// The matchers and grouping of a query, split by what they look at.
struct Plan<'q> {
    on_pod: Vec<&'q Matcher>,
    on_series: Vec<&'q Matcher>,
    by: &'q [String],
    groups: HashMap<String, u32>,
    labels: Vec<Labels>,
    key: String,
}

impl<'q> Plan<'q> {
    fn new(q: &'q Select) -> Self {
        let (on_pod, on_series) = q.matchers.iter().partition(|m| {
            let (Matcher::Eq(l, _) | Matcher::Ne(l, _)) = m;
            POD_LABELS.contains(&l.as_str())
        });
        Self {
            on_pod,
            on_series,
            by: &q.by,
            groups: HashMap::new(),
            labels: Vec::new(),
            key: String::new(),
        }
    }

    fn pod_matches(&self, pod: &Pod) -> bool {
        self.on_pod
            .iter()
            .all(|m| m.matches(|l| get(&pod.labels, &[], l)))
    }

    /// The group of a series, or `None` when it does not match.
    fn group(&mut self, pod: &Pod, series: &[(Sym, Sym)]) -> Option<u32> {
        if !(self.on_series.iter()).all(|m| m.matches(|l| get(&pod.labels, series, l))) {
            return None;
        }
        self.key.clear();
        for b in self.by {
            self.key.push_str(get(&pod.labels, series, b).unwrap_or(""));
            self.key.push('\u{0}');
        }
        if let Some(g) = self.groups.get(self.key.as_str()) {
            return Some(*g);
        }
        let labels: Labels = (self.by.iter())
            .filter_map(|b| {
                let v = get(&pod.labels, series, b).filter(|v| !v.is_empty())?;
                Some((b.clone(), v.to_string()))
            })
            .collect();
        let g = self.labels.len() as u32;
        self.labels.push(labels);
        self.groups.insert(self.key.clone(), g);
        Some(g)
    }

    fn rows<T>(self, value: impl Fn(usize) -> T) -> Vec<Row<T>> {
        let mut rows: Vec<Row<T>> = (self.labels.into_iter().enumerate())
            .map(|(g, labels)| Row {
                labels,
                value: value(g),
            })
            .collect();
        rows.sort_by(|a, b| a.labels.cmp(&b.labels));
        rows
    }
}

/// Whether the pod has a record in `(t0, now]`.
fn in_window(pod: &Pod, t0: i64, now: i64) -> bool {
    pod.ring.chunks().any(|c| c.last() > t0 && c.first() <= now)
}

/// Adds the records of `(t0, now]` (a whole sealed chunk by its summary).
fn scan(pod: &Pod, t0: i64, now: i64, targets: &[Target], acc: &mut [f64]) {
    for c in pod.ring.chunks() {
        if c.last() <= t0 || c.first() > now {
            continue;
        }
        if !c.summary.is_empty() && c.first() > t0 && c.last() <= now {
            codec::accumulate(&c.summary, targets, acc);
            continue;
        }
        for (at, r) in c.records() {
            if at > t0 && at <= now {
                codec::accumulate(r, targets, acc);
            }
        }
    }
}

/// `sum by (by) (increase(counter[window]))`.
pub(super) fn increase(
    inner: &Inner,
    q: &Select,
    family: Family,
    t0: i64,
    now: i64,
) -> Vec<Row<f64>> {
    let mut plan = Plan::new(q);
    let mut acc: Vec<f64> = Vec::new();
    let mut targets = Vec::new();
    for pod in inner.pods.values() {
        if !plan.pod_matches(pod) || !in_window(pod, t0, now) {
            continue;
        }
        targets.clear();
        let mut any = false;
        for s in &pod.series {
            let g = (s.family == family)
                .then(|| plan.group(pod, &s.labels))
                .flatten();
            if let Some(g) = g {
                any = true;
                if acc.len() <= g as usize {
                    acc.resize(g as usize + 1, 0.0);
                }
            }
            targets.push(Target {
                kind: s.kind(),
                at: g.unwrap_or(SKIP),
            });
        }
        if any {
            scan(pod, t0, now, &targets, &mut acc);
        }
    }
    plan.rows(|g| acc.get(g).copied().unwrap_or(0.0))
}

/// `histogram_quantile(q, sum by (le, by) (increase(bucket[window])))` for each q.
pub(super) fn quantiles(
    inner: &Inner,
    q: &Select,
    family: Family,
    qs: &[f64],
    t0: i64,
    now: i64,
) -> Vec<Row<Vec<Option<f64>>>> {
    let mut plan = Plan::new(q);
    let mut acc: Vec<f64> = Vec::new();
    // (group, layout) → offset of its buckets in `acc`.
    let mut blocks: HashMap<(u32, usize), u32> = HashMap::new();
    let mut layouts: Vec<(u32, Layout, usize)> = Vec::new();
    let mut targets = Vec::new();
    for pod in inner.pods.values() {
        if !plan.pod_matches(pod) || !in_window(pod, t0, now) {
            continue;
        }
        targets.clear();
        let mut any = false;
        for s in &pod.series {
            let mut at = SKIP;
            if s.family == family
                && let super::pod::Last::Hist { layout, .. } = &s.last
                && let Some(g) = plan.group(pod, &s.labels)
            {
                any = true;
                let id = (g, layout.as_ptr() as usize);
                at = *blocks.entry(id).or_insert_with(|| {
                    layouts.push((g, layout.clone(), acc.len()));
                    acc.resize(acc.len() + layout.len(), 0.0);
                    (acc.len() - layout.len()) as u32
                });
            }
            targets.push(Target { kind: s.kind(), at });
        }
        if any {
            scan(pod, t0, now, &targets, &mut acc);
        }
    }
    let mut per_group: Vec<Vec<(f64, f64)>> = vec![Vec::new(); plan.labels.len()];
    for (g, layout, off) in &layouts {
        let mut cumulative = 0.0;
        for (i, le) in layout.iter().enumerate() {
            cumulative += acc[off + i];
            per_group[*g as usize].push((*le, cumulative));
        }
    }
    for b in &mut per_group {
        // Series of several layouts: `sum by (le)` adds the buckets of equal bounds.
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b.dedup_by(|next, kept| {
            let same = next.0.to_bits() == kept.0.to_bits();
            if same {
                kept.1 += next.1;
            }
            same
        });
    }
    plan.rows(|g| {
        qs.iter()
            .map(|q| histogram_quantile(*q, &per_group[g]))
            .collect()
    })
}

/// `sum by (by) (gauge)`: the latest values of the pods scraped since `fresh`.
pub(super) fn gauge(inner: &Inner, q: &Select, fresh: i64) -> Vec<Row<f64>> {
    let mut plan = Plan::new(q);
    let mut acc: Vec<f64> = Vec::new();
    for pod in inner.pods.values() {
        if pod.last_at < fresh || !plan.pod_matches(pod) {
            continue;
        }
        for g in pod.gauges.iter().filter(|g| g.seen == pod.scrapes) {
            if let Some(i) = plan.group(pod, &g.labels) {
                if acc.len() <= i as usize {
                    acc.resize(i as usize + 1, 0.0);
                }
                acc[i as usize] += g.value;
            }
        }
    }
    plan.rows(|g| acc.get(g).copied().unwrap_or(0.0))
}
