//! The cases, one module per SMI API, and what they share: CRD checks, the access checks
//! (allowed / denied, waiting for the mesh to apply a change) and object builders.

mod access;
mod metrics;
mod spec;
mod split;

use std::sync::Arc;

use crate::case::Case;
use crate::context::{Burst, Ctx, PROPAGATION};
use crate::{Error, Result, ensure};

/// Every case, upstream scenarios first.
pub fn all() -> Vec<Case> {
    let mut cases = vec![access::upstream(), spec::upstream(), split::upstream()];
    cases.extend(access::stricter());
    cases.extend(spec::stricter());
    cases.extend(split::stricter());
    cases.push(metrics::case());
    cases
}

/// The CRD `name` exists (through `apiextensions.k8s.io/v1`) and serves `version`.
pub(crate) async fn crd_serves(cx: &Ctx, name: &str, version: &str) -> Result<()> {
    let crd = cx
        .shared
        .kubectl
        .json(&["get", "crd", name, "-o", "json"])
        .await?;
    let served = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["name"] == version && v["served"] == true);
    ensure(served, || {
        format!(
            "CRD {name} does not serve {version}: {}",
            crd["spec"]["versions"]
        )
    })
}

/// One request from `from` (in `ns`) to `url`, repeated until `outcome` says the mesh applied
/// the last change (for [`PROPAGATION`]).
async fn settled(
    cx: &Ctx,
    (ns, from, url, extra): (&str, &str, &str, &[&str]),
    outcome: &str,
    done: fn(&Burst) -> bool,
) -> Result<Burst> {
    cx.eventually(
        &format!("{from} → {url} {} {outcome}", extra.join(" ")),
        PROPAGATION,
        || cx.http_from(ns, from, url, 1, extra),
        done,
    )
    .await
}

/// A request from `from` (in `ns`) to `url` is answered 2xx, once the mesh applied the last
/// change (polled for [`PROPAGATION`]).
pub(crate) async fn allowed_from(
    cx: &Ctx,
    ns: &str,
    from: &str,
    url: &str,
    extra: &[&str],
) -> Result<Burst> {
    settled(cx, (ns, from, url, extra), "allowed", |b| b.ok == 1).await
}

/// [`allowed_from`] in the case's namespace.
pub(crate) async fn allowed(cx: &Ctx, from: &str, url: &str, extra: &[&str]) -> Result<Burst> {
    allowed_from(cx, &cx.ns, from, url, extra).await
}

/// A request from `from` (in `ns`) to `url` is refused (an error status or a refused
/// connection, never the app's answer), once the mesh applied the last change.
pub(crate) async fn denied_from(
    cx: &Ctx,
    ns: &str,
    from: &str,
    url: &str,
    extra: &[&str],
) -> Result<Burst> {
    settled(cx, (ns, from, url, extra), "denied", |b| {
        b.ok == 0 && b.failed == 1
    })
    .await
}

/// [`denied_from`] in the case's namespace.
pub(crate) async fn denied(cx: &Ctx, from: &str, url: &str, extra: &[&str]) -> Result<Burst> {
    denied_from(cx, &cx.ns, from, url, extra).await
}

/// Once allowed, `n` more requests all answered and all denied ones never reached the app:
/// `to` received from `from` exactly the answered requests.
pub(crate) async fn steady_allowed(
    cx: &Ctx,
    from: &str,
    to: &str,
    url: &str,
    path_key: &str,
    n: u32,
) -> Result<()> {
    allowed(cx, from, url, &[]).await?;
    let before = cx.received(to).await?;
    let b = cx.http(from, url, n, &[]).await?;
    ensure(b.ok == u64::from(n), || {
        format!("{from} → {url}: {b:?}, want {n} answered")
    })?;
    let after = cx.received(to).await?;
    let count = |r: &crate::context::Received| {
        r.get(from)
            .and_then(|m| m.get(path_key))
            .copied()
            .unwrap_or(0)
    };
    ensure(count(&after) - count(&before) == u64::from(n), || {
        format!(
            "{to} received {} × {path_key:?} from {from} for {n} answered requests: {after:?}",
            count(&after) - count(&before)
        )
    })
}

/// `to` received nothing at all from `from`: the denied requests never reached the app.
pub(crate) async fn received_nothing_from(cx: &Ctx, to: &str, from: &str) -> Result<()> {
    let r = cx.received(to).await?;
    ensure(!r.contains_key(from), || {
        format!(
            "{to} received requests from {from} that were to be denied: {:?}",
            r[from]
        )
    })
}

/// A TrafficTarget of `version` to ServiceAccount `dest` of the case's namespace from
/// `sources` (`(namespace, serviceaccount)`) with `rules` (a YAML flow list).
pub(crate) fn target(
    version: &str,
    name: &str,
    ns: &str,
    dest: &str,
    sources: &[(&str, &str)],
    rules: &str,
    dest_port: Option<u16>,
) -> String {
    let sources: Vec<String> = sources
        .iter()
        .map(|(n, sa)| format!("{{kind: ServiceAccount, name: {sa}, namespace: {n}}}"))
        .collect();
    let port = dest_port.map_or(String::new(), |p| format!(", port: {p}"));
    format!(
        "apiVersion: access.smi-spec.io/{version}\nkind: TrafficTarget\nmetadata: {{name: {name}}}\nspec:\n  destination: {{kind: ServiceAccount, name: {dest}, namespace: {ns}{port}}}\n  rules: {rules}\n  sources: [{}]\n",
        sources.join(", ")
    )
}

/// Fails with what was seen unless `b`'s share of `app` is `want` ± `tolerance`.
pub(crate) fn share_within(b: &Burst, app: &str, want: f64, tolerance: f64) -> Result<()> {
    let got = b.share(app);
    ensure((got - want).abs() <= tolerance && b.failed == 0, || {
        format!(
            "{app} answered {:.1} % of {} requests, want {:.0} % ± {:.0}: {b:?}",
            got * 100.0,
            b.ok + b.failed,
            want * 100.0,
            tolerance * 100.0
        )
    })
}

/// Runs `f` on the context; the shape every step closure has.
pub(crate) type Cx = Arc<Ctx>;

/// An error for a check that does not hold.
pub(crate) fn fail<T>(msg: String) -> Result<T> {
    Err(Error::Check(msg))
}
