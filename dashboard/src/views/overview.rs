//! `/`: control-plane health (what `tulle check` would look at: Deployments ready,
//! certificate expiry, the injector webhook, the metrics APIService) and every namespace
//! with its meshed/total pods and golden metrics.

use askama::Template;
use std::collections::BTreeMap;

use super::cells::MetricCells;
use super::{Ctx, Rendered, fragment, or_error};
use crate::Result;
use crate::format;
use crate::model::{CertState, ControlPlane, NamespaceInfo, ResourceMetrics};
use crate::source::MetricsKind;

/// Certificates expiring within this many days are a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One line of the health summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `ok`, `warn` or `fail`.
    pub state: &'static str,
    /// ✓, ! or ✗.
    pub mark: &'static str,
    /// What was checked.
    pub text: String,
    /// Details.
    pub detail: String,
}

fn check(state: &'static str, text: impl Into<String>, detail: impl Into<String>) -> Check {
    let mark = match state {
        "ok" => "✓",
        "warn" => "!",
        _ => "✗",
    };
    Check {
        state,
        mark,
        text: text.into(),
        detail: detail.into(),
    }
}

/// A certificate row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRow {
    /// What it is.
    pub name: String,
    /// Where it was read.
    pub source: String,
    /// Subject.
    pub subject: String,
    /// `2027-01-01 00:00 UTC (in 364 days)` or why unknown.
    pub expires: String,
    /// `ok`, `warn`, `fail`.
    pub state: &'static str,
}

/// The control-plane fragment.
#[derive(Template)]
#[template(path = "overview_control_plane.html")]
pub struct ControlPlaneView {
    /// Its namespace.
    pub namespace: String,
    /// The summary.
    pub checks: Vec<Check>,
    /// Deployments: name, ready/desired, state.
    pub components: Vec<(String, String, &'static str)>,
    /// Certificates.
    pub certs: Vec<CertRow>,
}

/// Builds the control-plane view.
pub fn control_plane_view(cp: &ControlPlane, now: i64) -> ControlPlaneView {
    let mut checks = Vec::new();
    let mut components = Vec::new();
    if cp.components.is_empty() {
        checks.push(check(
            "fail",
            "control-plane Deployments",
            format!("none in {}", cp.namespace),
        ));
    }
    for c in &cp.components {
        let state = if c.desired > 0 && c.ready >= c.desired {
            "ok"
        } else {
            "fail"
        };
        components.push((c.name.clone(), format!("{}/{}", c.ready, c.desired), state));
        checks.push(check(
            state,
            format!("{} is ready", c.name),
            format!("{}/{} replicas", c.ready, c.desired),
        ));
    }
    let mut certs = Vec::new();
    for c in &cp.certs {
        let (subject, expires, state) = match &c.state {
            CertState::Known { subject, not_after } => {
                let days = (not_after - now) / 86_400;
                let state = if *not_after <= now {
                    "fail"
                } else if days < EXPIRY_WARNING_DAYS {
                    "warn"
                } else {
                    "ok"
                };
                let exp = format!(
                    "{} ({})",
                    format::date(*not_after),
                    format::expiry(*not_after, now)
                );
                let left = format::expiry(*not_after, now);
                let detail = match (state, c.name.as_str()) {
                    ("fail", "issuer") => format!(
                        "{left}: tulle-identity signs no certificate until the issuer is rotated, and proxies lose their identity within 24 h; rotate it (see `tulle check`)"
                    ),
                    ("fail", _) => left,
                    ("warn", "issuer") => format!(
                        "expires {left} (less than {EXPIRY_WARNING_DAYS} days): rotate the issuer before then (see `tulle check`)"
                    ),
                    ("warn", _) => {
                        format!("expires {left} (less than {EXPIRY_WARNING_DAYS} days)")
                    }
                    _ => format!("expires {left}"),
                };
                checks.push(check(state, format!("{} is valid", c.name), detail));
                (subject.clone(), exp, state)
            }
            CertState::Unknown(why) => {
                checks.push(check("warn", format!("{} expiry", c.name), why.clone()));
                (format::NONE.to_string(), why.clone(), "warn")
            }
        };
        certs.push(CertRow {
            name: c.name.clone(),
            source: c.source.clone(),
            subject,
            expires,
            state,
        });
    }
    checks.push(if cp.webhook {
        check("ok", "the proxy injector webhook is configured", "")
    } else {
        check(
            "fail",
            "the proxy injector webhook is configured",
            "MutatingWebhookConfiguration tulle-proxy-injector not found",
        )
    });
    checks.push(match &cp.metrics_api {
        Some((true, _)) => check("ok", "the SMI Traffic Metrics API is available", ""),
        Some((false, why)) => check(
            "fail",
            "the SMI Traffic Metrics API is available",
            why.clone(),
        ),
        None => check(
            "warn",
            "the SMI Traffic Metrics API is available",
            "no Available condition yet",
        ),
    });
    ControlPlaneView {
        namespace: cp.namespace.clone(),
        checks,
        components,
        certs,
    }
}

/// A namespace row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRow {
    /// Name.
    pub name: String,
    /// The inject annotation.
    pub inject: String,
    /// `meshed/total`.
    pub pods: String,
    /// Whether all pods are meshed.
    pub all_meshed: bool,
    /// Metrics.
    pub m: MetricCells,
}

/// The namespaces fragment.
#[derive(Template)]
#[template(path = "overview_namespaces.html")]
pub struct NamespacesView {
    /// Rows.
    pub rows: Vec<NamespaceRow>,
    /// Why the metrics are missing, if they are.
    pub metrics_error: Option<String>,
}

/// Builds the namespaces view from the objects and the metrics list (either may be missing).
pub fn namespaces_view(
    objects: &[NamespaceInfo],
    metrics: Result<&[ResourceMetrics], String>,
    window: std::time::Duration,
) -> NamespacesView {
    let by_name: BTreeMap<&str, &ResourceMetrics> = metrics
        .as_ref()
        .map(|ms| ms.iter().map(|m| (m.name.as_str(), m)).collect())
        .unwrap_or_default();
    let mut names: Vec<&str> = objects.iter().map(|n| n.name.as_str()).collect();
    names.extend(by_name.keys());
    names.sort_unstable();
    names.dedup();
    let rows = names
        .into_iter()
        .map(|name| {
            let m = by_name.get(name);
            let pods = m.map(|m| m.pods).unwrap_or_default();
            NamespaceRow {
                name: name.to_string(),
                inject: objects
                    .iter()
                    .find(|o| o.name == name)
                    .and_then(|o| o.inject.clone())
                    .unwrap_or_default(),
                pods: format!("{}/{}", pods.meshed, pods.total),
                all_meshed: pods.total > 0 && pods.meshed == pods.total,
                m: MetricCells::of(m.map(|m| &m.golden), window),
            }
        })
        .collect();
    NamespacesView {
        rows,
        metrics_error: metrics.err(),
    }
}

/// Renders the overview.
pub async fn render(ctx: Ctx<'_>) -> Result<Rendered> {
    let c = ctx.cluster;
    let (cp, objects, metrics) = futures::join!(
        c.control_plane(),
        c.namespaces(),
        c.metrics(MetricsKind::Namespaces, None, None)
    );
    let cp = or_error(
        "control-plane",
        "the control plane",
        cp.and_then(|cp| fragment("control-plane", &control_plane_view(&cp, ctx.now))),
    )?;
    let objects = objects.unwrap_or_default();
    let metrics = metrics.map_err(|e| e.to_string());
    let ns = fragment(
        "namespaces",
        &namespaces_view(
            &objects,
            metrics.as_deref().map_err(Clone::clone),
            c.window(),
        ),
    )?;
    Ok(Rendered {
        title: "Overview".into(),
        crumbs: Vec::new(),
        fragments: vec![cp, ns],
    })
}
