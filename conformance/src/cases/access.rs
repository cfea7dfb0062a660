//! Traffic Access: the upstream scenario (7 steps) and stricter cases — sources by identity
//! (another namespace, an unlisted meshed client, a client outside the mesh), revocation
//! timing, TCPRoute port restrictions, and v1alpha2 objects served through conversion. All
//! run with the namespace's default set to deny.

use std::time::{Duration, Instant};

use super::{
    Cx, allowed_from, crd_serves, denied, denied_from, received_nothing_from, steady_allowed,
    target,
};
use crate::app::{self, App};
use crate::case::{Api, Case, Mode, step};
use crate::ensure;

const CRD: &str = "traffictargets.access.smi-spec.io";

/// The upstream apps: `app-a|b|c` running as `service-a|b|c`, each with its Service.
pub(crate) fn abc() -> (Vec<App>, Vec<serde_json::Value>) {
    let apps = ["a", "b", "c"]
        .iter()
        .map(|x| App::new(&format!("app-{x}")).sa(&format!("service-{x}")))
        .collect();
    let services = ["a", "b", "c"]
        .iter()
        .map(|x| {
            let name = format!("app-{x}");
            app::service(&name, &[("app", &name)], true)
        })
        .collect();
    (apps, services)
}

/// Deploys [`abc`] in the case's namespace.
pub(crate) async fn deploy_abc(cx: Cx) -> crate::Result<()> {
    let (apps, services) = abc();
    cx.deploy(&apps, &services).await
}

const TCP_ROUTE_ALL: &str = "apiVersion: specs.smi-spec.io/v1alpha4\nkind: TCPRoute\nmetadata: {name: service-tcp-route}\nspec: {matches: {ports: []}}\n";

/// The upstream traffic-access scenario: denied by default, allowed by a TrafficTarget with a
/// TCPRoute, denied again once it is deleted.
pub fn upstream() -> Case {
    Case {
        name: "access",
        api: Api::TrafficAccess,
        version: "v1alpha3",
        mode: Mode::Deny,
        upstream: true,
        about: "upstream traffic-access: default deny, allowed by a TrafficTarget with a TCPRoute, denied again after its deletion",
        steps: vec![
            step("crd", |cx: Cx| async move {
                crd_serves(&cx, CRD, "v1alpha3").await
            }),
            step("deploy", deploy_abc),
            step("trafficDefault", |cx: Cx| async move {
                let url = cx.url("app-b", "/echo");
                denied(&cx, "app-a", &url, &[]).await?;
                received_nothing_from(&cx, "app-b", "app-a").await
            }),
            step("install", |cx: Cx| async move {
                let tt = target(
                    "v1alpha3",
                    "service-targets",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a")],
                    "[{kind: TCPRoute, name: service-tcp-route}]",
                    None,
                );
                cx.apply(&format!("{TCP_ROUTE_ALL}---\n{tt}")).await
            }),
            step("trafficAllowed", |cx: Cx| async move {
                let url = cx.url("app-b", "/echo");
                steady_allowed(&cx, "app-a", "app-b", &url, "GET /echo 200", 5).await?;
                let r = cx.received("app-b").await?;
                ensure(r.keys().all(|k| k == "app-a"), || {
                    format!("app-b received from others than app-a: {r:?}")
                })
            }),
            step("delete", |cx: Cx| async move {
                cx.delete("traffictarget", "service-targets").await?;
                cx.delete("tcproute", "service-tcp-route").await?;
                let left = cx
                    .kubectl(&["get", "traffictargets,tcproutes", "-o", "name"])
                    .await?;
                ensure(left.trim().is_empty(), || format!("still there: {left}"))
            }),
            step("trafficBlocked", |cx: Cx| async move {
                denied(&cx, "app-a", &cx.url("app-b", "/echo"), &[])
                    .await
                    .map(drop)
            }),
        ],
    }
}

/// The stricter Traffic Access cases.
pub fn stricter() -> Vec<Case> {
    vec![sources(), tcp_ports(), v1alpha2()]
}

/// Who may call: a listed source, a listed source in another namespace; not an unlisted
/// meshed client, not a client outside the mesh; revocation within seconds.
fn sources() -> Case {
    Case {
        name: "access-sources",
        api: Api::TrafficAccess,
        version: "v1alpha3",
        mode: Mode::Deny,
        upstream: false,
        about: "identity decides: a listed source in another namespace allowed; an unlisted meshed client and an unauthenticated one denied; revocation timed",
        steps: vec![
            step("deploy", |cx: Cx| async move {
                let (mut apps, services) = abc();
                apps.push(App::new("outside").pod(&cx.shared.profile.outside));
                cx.deploy(&apps, &services).await?;
                let remote = cx.extra_namespace("remote", Mode::Deny).await?;
                cx.deploy_in(&remote, &[App::new("remote")], &[]).await
            }),
            step("allow a and remote", |cx: Cx| async move {
                let remote = format!("{}-remote", cx.ns);
                let tt = target(
                    "v1alpha3",
                    "b",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a"), (&remote, "remote")],
                    "[{kind: TCPRoute, name: service-tcp-route}]",
                    None,
                );
                cx.apply(&format!("{TCP_ROUTE_ALL}---\n{tt}")).await
            }),
            step("listed source allowed", |cx: Cx| async move {
                steady_allowed(
                    &cx,
                    "app-a",
                    "app-b",
                    &cx.url("app-b", "/"),
                    "GET / 200",
                    20,
                )
                .await
            }),
            step("cross-namespace source allowed", |cx: Cx| async move {
                let remote = format!("{}-remote", cx.ns);
                allowed_from(&cx, &remote, "remote", &cx.url("app-b", "/"), &[]).await?;
                let b = cx
                    .http_from(&remote, "remote", &cx.url("app-b", "/"), 20, &[])
                    .await?;
                ensure(b.ok == 20, || format!("remote → app-b: {b:?}"))
            }),
            step("unlisted meshed client denied", |cx: Cx| async move {
                let b = cx.http("app-c", &cx.url("app-b", "/"), 20, &[]).await?;
                ensure(b.ok == 0 && b.failed == 20, || {
                    format!("app-c (not a source) → app-b: {b:?}")
                })?;
                received_nothing_from(&cx, "app-b", "app-c").await
            }),
            step("unauthenticated client denied", |cx: Cx| async move {
                let b = cx.http("outside", &cx.url("app-b", "/"), 20, &[]).await?;
                ensure(b.ok == 0 && b.failed == 20, || {
                    format!("outside the mesh → app-b: {b:?}")
                })?;
                received_nothing_from(&cx, "app-b", "outside").await
            }),
            step("revocation within 10 s", |cx: Cx| async move {
                let start = Instant::now();
                cx.delete("traffictarget", "b").await?;
                let url = cx.url("app-b", "/");
                denied(&cx, "app-a", &url, &[]).await?;
                let took = start.elapsed();
                eprintln!(
                    "[access-sources]   revoked {:.1} s after the deletion was sent",
                    took.as_secs_f64()
                );
                ensure(took <= Duration::from_secs(10), || {
                    format!(
                        "the deleted TrafficTarget still allowed app-a for {:.1} s",
                        took.as_secs_f64()
                    )
                })?;
                let remote = format!("{}-remote", cx.ns);
                denied_from(&cx, &remote, "remote", &url, &[])
                    .await
                    .map(drop)
            }),
        ],
    }
}

/// A TCPRoute naming one port allows that port only.
fn tcp_ports() -> Case {
    Case {
        name: "access-tcp-ports",
        api: Api::TrafficAccess,
        version: "v1alpha3",
        mode: Mode::Deny,
        upstream: false,
        about: "a TCPRoute with ports allows those ports only: opaque TCP on the listed port, HTTP on another port denied",
        steps: vec![
            step("deploy", deploy_abc),
            step("allow one port", |cx: Cx| async move {
                let route = format!(
                    "apiVersion: specs.smi-spec.io/v1alpha4\nkind: TCPRoute\nmetadata: {{name: tcp-only}}\nspec: {{matches: {{ports: [{}]}}}}\n",
                    app::APP_TCP_PORT
                );
                let tt = target(
                    "v1alpha3",
                    "tcp-only",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a")],
                    "[{kind: TCPRoute, name: tcp-only}]",
                    None,
                );
                cx.apply(&format!("{route}---\n{tt}")).await
            }),
            step("listed port allowed", |cx: Cx| async move {
                let b = cx
                    .eventually(
                        "app-a → app-b TCP allowed",
                        crate::context::PROPAGATION,
                        || cx.tcp("app-a", "app-b", 1),
                        |b| b.ok == 1,
                    )
                    .await?;
                drop(b);
                let b = cx.tcp("app-a", "app-b", 10).await?;
                ensure(b.ok == 10 && b.from("app-b") == 10, || {
                    format!("app-a → app-b TCP: {b:?}")
                })
            }),
            step("other port denied", |cx: Cx| async move {
                let b = cx.http("app-a", &cx.url("app-b", "/"), 10, &[]).await?;
                ensure(b.ok == 0 && b.failed == 10, || {
                    format!("app-a → app-b HTTP on a port the TCPRoute does not list: {b:?}")
                })?;
                received_nothing_from(&cx, "app-b", "app-a").await
            }),
        ],
    }
}

/// v1alpha2 TrafficTargets (with `destination.port`), served through conversion.
fn v1alpha2() -> Case {
    Case {
        name: "access-v1alpha2",
        api: Api::TrafficAccess,
        version: "v1alpha2",
        mode: Mode::Deny,
        upstream: false,
        about: "a v1alpha2 TrafficTarget (served through conversion) allows its source, on its destination.port only, and is revoked on deletion",
        steps: vec![
            step("crd", |cx: Cx| async move {
                crd_serves(&cx, CRD, "v1alpha2").await
            }),
            step("deploy", deploy_abc),
            step("install", |cx: Cx| async move {
                let tt = target(
                    "v1alpha2",
                    "b",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a")],
                    "[{kind: TCPRoute, name: service-tcp-route}]",
                    Some(app::APP_PORT),
                );
                cx.apply(&format!("{TCP_ROUTE_ALL}---\n{tt}")).await
            }),
            step("allowed on its port", |cx: Cx| async move {
                steady_allowed(
                    &cx,
                    "app-a",
                    "app-b",
                    &cx.url("app-b", "/"),
                    "GET / 200",
                    10,
                )
                .await
            }),
            step("denied on another port", |cx: Cx| async move {
                let b = cx.tcp("app-a", "app-b", 5).await?;
                ensure(b.ok == 0, || {
                    format!("app-a → app-b TCP on a port destination.port does not name: {b:?}")
                })
            }),
            step("revoked", |cx: Cx| async move {
                cx.delete("traffictarget", "b").await?;
                denied(&cx, "app-a", &cx.url("app-b", "/"), &[])
                    .await
                    .map(drop)
            }),
        ],
    }
}
