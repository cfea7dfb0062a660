//! `/smi`: TrafficSplits as canary views (apex, backends with their weights as written and
//! as applied, the share of traffic each got, and per-backend success rate and latency),
//! TrafficTargets with the requests and connections each admitted and those its destination
//! refused in the window, HTTPRouteGroups and TCPRoutes, with the objects the controller flagged
//! (its Warning Events) or that cannot be read, and why.

use askama::Template;

use super::cells::MetricCells;
use super::{Ctx, Rendered, fragment, or_error};
use crate::Result;
use crate::format;
use crate::model::{BackendMetrics, Problem, SmiObjects, TargetMetrics};

/// Width of a weight bar, in pixels.
const BAR_W: f64 = 120.0;

/// One backend of a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendRow {
    /// Service.
    pub service: String,
    /// Weight as written.
    pub weight: u32,
    /// Its share of the written weights, `90%`.
    pub share: String,
    /// The bar of the share (SVG).
    pub bar: String,
    /// Weight the controller applies (`—` if not known).
    pub applied: String,
    /// Share of the requests it got in the window.
    pub observed: String,
    /// Metrics.
    pub m: MetricCells,
}

/// A split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitCard {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Apex Service.
    pub apex: String,
    /// `HTTPRouteGroup/x` it is limited to.
    pub matches: String,
    /// Backends.
    pub backends: Vec<BackendRow>,
    /// Problems: reason, message, time.
    pub problems: Vec<(String, String, String)>,
    /// The controller does not apply it (no backends in the metrics answer).
    pub not_applied: bool,
}

/// The splits fragment.
#[derive(Template)]
#[template(path = "smi_splits.html")]
pub struct SplitsView {
    /// Splits.
    pub splits: Vec<SplitCard>,
    /// Why the metrics are missing.
    pub metrics_error: Option<String>,
}

/// A TrafficTarget row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `ns/sa`.
    pub destination: String,
    /// Sources.
    pub sources: Vec<String>,
    /// Rules.
    pub rules: Vec<String>,
    /// Requests and connections it admitted in the window (`—` without metrics).
    pub allowed: String,
    /// Requests and connections its destination refused in the window (`—` without metrics).
    pub denied: String,
    /// Problems.
    pub problems: Vec<(String, String, String)>,
}

/// An HTTPRouteGroup row: namespace, name, matches, problems.
pub type GroupRow = (String, String, Vec<String>, Problems);

/// The other SMI objects.
#[derive(Template)]
#[template(path = "smi_access.html")]
pub struct AccessView {
    /// TrafficTargets.
    pub targets: Vec<TargetRow>,
    /// The window of the allow/deny counts (`30s`).
    pub window: String,
    /// Why the allow/deny counts are missing.
    pub metrics_error: Option<String>,
    /// HTTPRouteGroups: namespace, name, matches, problems.
    pub groups: Vec<GroupRow>,
    /// TCPRoutes: namespace, name, ports.
    pub tcp: Vec<(String, String, String)>,
}

/// Every problem.
#[derive(Template)]
#[template(path = "smi_problems.html")]
pub struct ProblemsView {
    /// Problems.
    pub problems: Vec<Problem>,
}

fn bar(share: f64) -> String {
    let w = (share.clamp(0.0, 1.0) * BAR_W).round();
    format!(
        r#"<svg class="bar" width="{BAR_W:.0}" height="10" aria-hidden="true"><rect class="track" width="{BAR_W:.0}" height="10" rx="2"/><rect class="fill" width="{w:.0}" height="10" rx="2"/></svg>"#
    )
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Problems of an object: reason, message, time.
pub type Problems = Vec<(String, String, String)>;

fn problem_list(smi: &SmiObjects, kind: &str, ns: &str, name: &str, uid: &str) -> Problems {
    smi.problems_of(kind, ns, name, uid)
        .into_iter()
        .map(|p| (p.reason.clone(), p.message.clone(), p.time.clone()))
        .collect()
}

/// Builds the split cards.
pub fn splits_view(
    smi: &SmiObjects,
    backends: std::result::Result<&[BackendMetrics], String>,
    window: std::time::Duration,
) -> SplitsView {
    let applied = backends.as_ref().ok();
    let splits = smi
        .splits
        .iter()
        .map(|s| {
            let total: u32 = s.backends.iter().map(|b| b.1).sum();
            let mine: Vec<&BackendMetrics> = applied
                .map(|bs| {
                    bs.iter()
                        .filter(|b| b.namespace == s.namespace && b.split == s.name)
                        .collect()
                })
                .unwrap_or_default();
            let requests: f64 = mine.iter().map(|b| b.golden.requests()).sum();
            let backends = s
                .backends
                .iter()
                .map(|(svc, weight)| {
                    let share = if total > 0 {
                        f64::from(*weight) / f64::from(total)
                    } else {
                        0.0
                    };
                    let m = mine.iter().find(|b| &b.backend == svc);
                    BackendRow {
                        service: svc.clone(),
                        weight: *weight,
                        share: pct(share),
                        bar: bar(share),
                        applied: m.map_or("—".into(), |b| b.weight.to_string()),
                        observed: match m {
                            Some(b) if requests > 0.0 => pct(b.golden.requests() / requests),
                            _ => "—".into(),
                        },
                        m: MetricCells::of(m.map(|b| &b.golden), window),
                    }
                })
                .collect();
            SplitCard {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                apex: s.service.clone(),
                matches: s.matches.join(", "),
                backends,
                problems: problem_list(smi, "TrafficSplit", &s.namespace, &s.name, &s.uid),
                not_applied: applied.is_some() && mine.is_empty(),
            }
        })
        .collect();
    SplitsView {
        splits,
        metrics_error: backends.err(),
    }
}

/// The allow/deny cells of a TrafficTarget: counts in the window, `—` when not known.
pub fn target_counts(
    counts: std::result::Result<&[TargetMetrics], &String>,
    namespace: &str,
    name: &str,
) -> (String, String) {
    match counts {
        Ok(all) => {
            let t = all
                .iter()
                .find(|t| t.namespace == namespace && t.name == name);
            (
                format::count(t.map_or(0.0, |t| t.allowed)),
                format::count(t.map_or(0.0, |t| t.denied)),
            )
        }
        Err(_) => (format::NONE.into(), format::NONE.into()),
    }
}

/// Builds the access view.
pub fn access_view(
    smi: &SmiObjects,
    counts: std::result::Result<&[TargetMetrics], String>,
    window: std::time::Duration,
) -> AccessView {
    let sa = |s: &crate::model::SaRef| {
        let kind = if s.kind.is_empty() || s.kind == "ServiceAccount" {
            String::new()
        } else {
            format!("{} ", s.kind)
        };
        format!("{kind}{}/{}", s.namespace, s.name)
    };
    AccessView {
        targets: smi
            .targets
            .iter()
            .map(|t| TargetRow {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                destination: sa(&t.destination),
                sources: t.sources.iter().map(sa).collect(),
                rules: t
                    .rules
                    .iter()
                    .map(|(r, m)| {
                        if m.is_empty() {
                            r.clone()
                        } else {
                            format!("{r} [{}]", m.join(", "))
                        }
                    })
                    .collect(),
                allowed: target_counts(counts.as_deref(), &t.namespace, &t.name).0,
                denied: target_counts(counts.as_deref(), &t.namespace, &t.name).1,
                problems: problem_list(smi, "TrafficTarget", &t.namespace, &t.name, &t.uid),
            })
            .collect(),
        window: format!("{}s", window.as_secs()),
        metrics_error: counts.as_ref().err().cloned(),
        groups: smi
            .route_groups
            .iter()
            .map(|g| {
                let p = problem_list(smi, "HTTPRouteGroup", &g.namespace, &g.name, &g.uid);
                (g.namespace.clone(), g.name.clone(), g.matches.clone(), p)
            })
            .collect(),
        tcp: smi
            .tcp_routes
            .iter()
            .map(|t| {
                let ports = if t.ports.is_empty() {
                    "all".to_string()
                } else {
                    t.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                (t.namespace.clone(), t.name.clone(), ports)
            })
            .collect(),
    }
}

/// Renders the SMI page.
pub async fn render(ctx: Ctx<'_>, namespace: Option<&str>) -> Result<Rendered> {
    let c = ctx.cluster;
    let (smi, backends, counts) = futures::join!(
        c.smi(namespace),
        c.split_metrics(namespace),
        c.target_metrics(namespace)
    );
    let title = match namespace {
        Some(n) => format!("SMI in {n}"),
        None => "SMI".to_string(),
    };
    let crumbs = vec![("Overview".into(), "/".into())];
    let smi = match smi {
        Ok(s) => s,
        Err(e) => {
            return Ok(Rendered {
                title,
                crumbs,
                fragments: vec![or_error("splits", "the SMI objects", Err(e))?],
            });
        }
    };
    let backends = backends.map_err(|e| e.to_string());
    let counts = counts.map_err(|e| e.to_string());
    let mut problems: Vec<Problem> = smi.unreadable.clone();
    problems.extend(smi.problems.iter().cloned());
    Ok(Rendered {
        title,
        crumbs,
        fragments: vec![
            fragment(
                "splits",
                &splits_view(&smi, backends.as_deref().map_err(Clone::clone), c.window()),
            )?,
            fragment(
                "access",
                &access_view(&smi, counts.as_deref().map_err(Clone::clone), c.window()),
            )?,
            fragment("problems", &ProblemsView { problems })?,
        ],
    })
}
