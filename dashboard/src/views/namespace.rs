//! `/namespaces/{ns}`: the workloads table (meshed pods, success rate, RPS, p50/p95/p99,
//! TCP connections, a chart of recent RPS), sortable by any column with plain links, and
//! the namespace's topology.

use askama::Template;
use std::cmp::Ordering;

use super::cells::{Charts, MetricCells};
use super::{Ctx, Rendered, fragment, or_error, topology};
use crate::history::{self, History};
use crate::model::{Golden, Kind, PodCount, ResourceMetrics, WorkloadRef};
use crate::source::MetricsKind;
use crate::{Error, Result};

/// A column to sort by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Kind and name.
    Name,
    /// Meshed pods.
    Meshed,
    /// Success rate.
    Success,
    /// Requests per second.
    Rps,
    /// p50.
    P50,
    /// p95.
    P95,
    /// p99.
    P99,
    /// TCP connections.
    Tcp,
}

impl SortKey {
    const ALL: [(SortKey, &'static str, &'static str); 8] = [
        (SortKey::Name, "name", "workload"),
        (SortKey::Meshed, "meshed", "meshed pods"),
        (SortKey::Success, "success", "success"),
        (SortKey::Rps, "rps", "RPS"),
        (SortKey::P50, "p50", "p50"),
        (SortKey::P95, "p95", "p95"),
        (SortKey::P99, "p99", "p99"),
        (SortKey::Tcp, "tcp", "TCP"),
    ];

    fn name(self) -> &'static str {
        SortKey::ALL
            .iter()
            .find(|k| k.0 == self)
            .map_or("name", |k| k.1)
    }
}

/// The table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    /// The column.
    pub key: SortKey,
    /// Descending.
    pub desc: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            key: SortKey::Name,
            desc: false,
        }
    }
}

impl Sort {
    /// From `?sort=rps&dir=desc` (default: by name, ascending).
    pub fn parse(query: Option<&str>) -> Result<Sort> {
        let mut s = Sort::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "sort" => {
                    s.key = SortKey::ALL
                        .iter()
                        .find(|c| c.1 == v)
                        .map(|c| c.0)
                        .ok_or_else(|| Error::BadRequest(format!("sort={v:?}: not a column")))?;
                }
                "dir" => {
                    s.desc = match v.as_ref() {
                        "desc" => true,
                        "asc" => false,
                        _ => return Err(Error::BadRequest(format!("dir={v:?}: asc or desc"))),
                    }
                }
                _ => {}
            }
        }
        Ok(s)
    }

    /// The query string (`""` for the default order).
    pub fn query(&self) -> String {
        if *self == Sort::default() {
            String::new()
        } else {
            format!(
                "?sort={}&dir={}",
                self.key.name(),
                if self.desc { "desc" } else { "asc" }
            )
        }
    }
}

/// A workload row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Which.
    pub id: WorkloadRef,
    /// Pods.
    pub pods: PodCount,
    /// Numbers, when the metrics API answered.
    pub golden: Option<Golden>,
}

/// A row as cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowView {
    /// `deploy`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Link.
    pub href: String,
    /// `1/1`.
    pub pods: String,
    /// All pods meshed.
    pub all_meshed: bool,
    /// Metrics.
    pub m: MetricCells,
    /// The RPS chart.
    pub chart: String,
}

/// A column header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Label.
    pub label: &'static str,
    /// Link that sorts by it (toggling the direction when it is the current column).
    pub href: String,
    /// `ascending`, `descending` or `none` (aria-sort).
    pub aria: &'static str,
    /// Numeric column.
    pub num: bool,
}

/// The workloads fragment.
#[derive(Template)]
#[template(path = "namespace_workloads.html")]
pub struct WorkloadsView {
    /// Headers.
    pub headers: Vec<Header>,
    /// Rows.
    pub rows: Vec<RowView>,
    /// Why the metrics are missing.
    pub metrics_error: Option<String>,
}

fn metric(r: &Row, key: SortKey, window: std::time::Duration) -> Option<f64> {
    let g = r.golden?;
    match key {
        SortKey::Name => None,
        SortKey::Meshed => Some(f64::from(r.pods.meshed)),
        SortKey::Success => g.success_rate(),
        SortKey::Rps => Some(g.rps(window)),
        SortKey::P50 => g.p50,
        SortKey::P95 => g.p95,
        SortKey::P99 => g.p99,
        SortKey::Tcp => Some(g.tcp_open),
    }
}

/// Sorts rows: by the column (missing values last in either direction), then by name.
pub fn sort_rows(rows: &mut [Row], sort: Sort, window: std::time::Duration) {
    rows.sort_by(|a, b| {
        let by_name = (a.id.kind, &a.id.name).cmp(&(b.id.kind, &b.id.name));
        let ord = if sort.key == SortKey::Name {
            by_name
        } else if sort.key == SortKey::Meshed {
            a.pods.meshed.cmp(&b.pods.meshed)
        } else {
            match (metric(a, sort.key, window), metric(b, sort.key, window)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        };
        let ord = if sort.desc { ord.reverse() } else { ord };
        ord.then(by_name)
    });
}

/// Builds the workloads table.
pub fn workloads_view(
    namespace: &str,
    mut rows: Vec<Row>,
    sort: Sort,
    metrics_error: Option<String>,
    history: &History,
    window: std::time::Duration,
) -> WorkloadsView {
    sort_rows(&mut rows, sort, window);
    let headers = SortKey::ALL
        .iter()
        .map(|(key, _, label)| {
            let active = sort.key == *key;
            let next = Sort {
                key: *key,
                desc: if active {
                    !sort.desc
                } else {
                    *key != SortKey::Name
                },
            };
            Header {
                label,
                href: format!("/namespaces/{namespace}{}", next.query()),
                aria: match (active, sort.desc) {
                    (false, _) => "none",
                    (true, false) => "ascending",
                    (true, true) => "descending",
                },
                num: *key != SortKey::Name,
            }
        })
        .collect();
    let rows = rows
        .iter()
        .map(|r| RowView {
            kind: r.id.kind.short(),
            name: r.id.name.clone(),
            href: r.id.href(),
            pods: format!("{}/{}", r.pods.meshed, r.pods.total),
            all_meshed: r.pods.total > 0 && r.pods.meshed == r.pods.total,
            m: MetricCells::of(r.golden.as_ref(), window),
            chart: Charts::of(
                history,
                &history::key(r.id.kind.name(), &r.id.namespace, &r.id.name),
                80.0,
                18.0,
            )
            .rps,
        })
        .collect();
    WorkloadsView {
        headers,
        rows,
        metrics_error,
    }
}

/// The metrics of every workload kind of `namespace` (or all): one list request per kind.
pub async fn workload_metrics(
    ctx: Ctx<'_>,
    namespace: Option<&str>,
) -> Result<Vec<ResourceMetrics>> {
    let c = ctx.cluster;
    let lists = futures::future::join_all(
        Kind::ALL
            .iter()
            .map(|k| c.metrics(MetricsKind::Workload(*k), namespace, None)),
    )
    .await;
    let mut out = Vec::new();
    for l in lists {
        out.extend(l?);
    }
    for m in &out {
        ctx.history.record(
            &history::key(&m.kind, &m.namespace, &m.name),
            ctx.now,
            &m.golden,
            c.window(),
        );
    }
    Ok(out)
}

/// Rows from the metrics lists, or (when the metrics API fails) from the objects.
async fn rows(
    ctx: Ctx<'_>,
    namespace: &str,
) -> Result<(Vec<Row>, Vec<ResourceMetrics>, Option<String>)> {
    match workload_metrics(ctx, Some(namespace)).await {
        Ok(ms) => {
            let rows = ms
                .iter()
                .filter_map(|m| {
                    Some(Row {
                        id: WorkloadRef::new(Kind::parse(&m.kind)?, &m.namespace, &m.name),
                        pods: m.pods,
                        golden: Some(m.golden),
                    })
                })
                .collect();
            Ok((rows, ms, None))
        }
        Err(e) => {
            let objects = ctx.cluster.workloads(Some(namespace)).await?;
            let rows = objects
                .into_iter()
                .map(|w| Row {
                    id: w.id,
                    pods: PodCount {
                        meshed: 0,
                        total: w.ready.max(0) as u32,
                    },
                    golden: None,
                })
                .collect();
            Ok((rows, Vec::new(), Some(e.to_string())))
        }
    }
}

/// Renders the namespace page.
pub async fn render(ctx: Ctx<'_>, namespace: &str, sort: Sort) -> Result<Rendered> {
    let (rows, metrics, metrics_error) = rows(ctx, namespace).await?;
    let table = fragment(
        "workloads",
        &workloads_view(
            namespace,
            rows,
            sort,
            metrics_error,
            ctx.history,
            ctx.cluster.window(),
        ),
    )?;
    let topo = or_error(
        "topology",
        "the topology",
        topology::fragment_for(ctx, &metrics).await,
    )?;
    Ok(Rendered {
        title: format!("Namespace {namespace}"),
        crumbs: vec![("Overview".into(), "/".into())],
        fragments: vec![table, topo],
    })
}
