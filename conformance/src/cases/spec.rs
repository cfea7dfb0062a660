//! Traffic Specs: the upstream scenario (6 steps: path and method rules of an HTTPRouteGroup
//! in a TrafficTarget) and stricter cases — header rules in both forms, and v1alpha3 route
//! groups served through conversion. Run with the namespace's default set to deny.

use super::access::deploy_abc;
use super::{Cx, allowed, crd_serves, denied, target};
use crate::case::{Api, Case, Mode, step};
use crate::ensure;

const CRD: &str = "httproutegroups.specs.smi-spec.io";

fn route_group(version: &str, name: &str, matches: &str) -> String {
    format!(
        "apiVersion: specs.smi-spec.io/{version}\nkind: HTTPRouteGroup\nmetadata: {{name: {name}}}\nspec:\n  matches: {matches}\n"
    )
}

/// The upstream traffic-spec scenario, with its route group in the v1alpha4 shape (the
/// upstream file put `matches` at the top level, where a structural CRD prunes it).
pub fn upstream() -> Case {
    Case {
        name: "spec",
        api: Api::TrafficSpecs,
        version: "v1alpha4",
        mode: Mode::Deny,
        upstream: true,
        about: "upstream traffic-spec: an HTTPRouteGroup's path rule, then its method rule, decide what a TrafficTarget allows",
        steps: vec![
            step("crd", |cx: Cx| async move {
                crd_serves(&cx, CRD, "v1alpha4").await
            }),
            step("deploy", deploy_abc),
            step("install", |cx: Cx| async move {
                let rg = route_group(
                    "v1alpha4",
                    "http-rg",
                    "[{name: testMatch, pathRegex: /metrics, methods: [\"*\"]}]",
                );
                let tt = target(
                    "v1alpha3",
                    "service-targets",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a")],
                    "[{kind: HTTPRouteGroup, name: http-rg, matches: [testMatch]}]",
                    None,
                );
                cx.apply(&format!("{rg}---\n{tt}")).await?;
                // The intent of the upstream assert: the route group kept its rule.
                let got = cx
                    .kubectl(&[
                        "get",
                        "httproutegroup",
                        "http-rg",
                        "-o",
                        "jsonpath={.spec.matches[0].pathRegex}",
                    ])
                    .await?;
                ensure(got == "/metrics", || {
                    format!("the HTTPRouteGroup's pathRegex reads back as {got:?}")
                })
            }),
            step("trafficPath", |cx: Cx| async move {
                allowed(&cx, "app-a", &cx.url("app-b", "/metrics"), &[]).await?;
                let b = cx.http("app-a", &cx.url("app-b", "/echo"), 1, &[]).await?;
                ensure(b.ok == 0 && b.failed == 1, || {
                    format!("GET /echo is not in the route group and was answered: {b:?}")
                })
            }),
            step("update", |cx: Cx| async move {
                cx.apply(&route_group(
                    "v1alpha4",
                    "http-rg",
                    "[{name: testMatch, pathRegex: \".*\", methods: [GET]}]",
                ))
                .await
            }),
            step("trafficMethod", |cx: Cx| async move {
                allowed(&cx, "app-a", &cx.url("app-b", "/echo"), &[]).await?;
                let b = cx
                    .http("app-a", &cx.url("app-b", "/echo"), 1, &["-X", "POST"])
                    .await?;
                ensure(b.ok == 0 && b.failed == 1, || {
                    format!("POST /echo is not in the route group and was answered: {b:?}")
                })?;
                let r = cx.received("app-b").await?;
                let from_a = r.get("app-a").cloned().unwrap_or_default();
                ensure(from_a.keys().all(|k| k.starts_with("GET ")), || {
                    format!("app-b received a request the rules deny: {from_a:?}")
                })
            }),
        ],
    }
}

/// The stricter Traffic Specs cases.
pub fn stricter() -> Vec<Case> {
    vec![headers(), v1alpha3()]
}

/// Header rules in the list form and the map form, and a method rule with a path.
fn headers() -> Case {
    Case {
        name: "spec-headers",
        api: Api::TrafficSpecs,
        version: "v1alpha4",
        mode: Mode::Deny,
        upstream: false,
        about: "header rules in both forms (list of maps, map) with regex values, and a method+path rule, each allowing only what it matches",
        steps: vec![
            step("deploy", deploy_abc),
            step("install", |cx: Cx| async move {
                let rg = route_group(
                    "v1alpha4",
                    "rules",
                    "[{name: list, headers: [{x-team: blue}]}, {name: map, headers: {x-env: \"pr.d\"}}, {name: write, pathRegex: \"/api/.*\", methods: [PUT]}]",
                );
                let tt = target(
                    "v1alpha3",
                    "rules",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a")],
                    "[{kind: HTTPRouteGroup, name: rules, matches: [list, map, write]}]",
                    None,
                );
                cx.apply(&format!("{rg}---\n{tt}")).await
            }),
            step("header list form", |cx: Cx| async move {
                allowed(&cx, "app-a", &cx.url("app-b", "/"), &["-H", "x-team:blue"]).await?;
                let b = cx
                    .http("app-a", &cx.url("app-b", "/"), 1, &["-H", "x-team:red"])
                    .await?;
                ensure(b.ok == 0, || {
                    format!("x-team: red matched x-team: blue: {b:?}")
                })
            }),
            step("header map form (regex)", |cx: Cx| async move {
                allowed(&cx, "app-a", &cx.url("app-b", "/"), &["-H", "x-env:prod"]).await?;
                let b = cx
                    .http("app-a", &cx.url("app-b", "/"), 1, &["-H", "x-env:staging"])
                    .await?;
                ensure(b.ok == 0, || format!("x-env: staging matched pr.d: {b:?}"))
            }),
            step("method and path", |cx: Cx| async move {
                allowed(&cx, "app-a", &cx.url("app-b", "/api/items"), &["-X", "PUT"]).await?;
                for (method, path) in [("GET", "/api/items"), ("PUT", "/other")] {
                    let b = cx
                        .http("app-a", &cx.url("app-b", path), 1, &["-X", method])
                        .await?;
                    ensure(b.ok == 0, || {
                        format!("{method} {path} matched PUT /api/.*: {b:?}")
                    })?;
                }
                Ok(())
            }),
            step("no rule matched: denied", |cx: Cx| async move {
                denied(&cx, "app-a", &cx.url("app-b", "/"), &[])
                    .await
                    .map(drop)
            }),
        ],
    }
}

/// A v1alpha3 HTTPRouteGroup, served through conversion, in a TrafficTarget.
fn v1alpha3() -> Case {
    Case {
        name: "spec-v1alpha3",
        api: Api::TrafficSpecs,
        version: "v1alpha3",
        mode: Mode::Deny,
        upstream: false,
        about: "a v1alpha3 HTTPRouteGroup (served through conversion) allows the path and method it names and nothing else",
        steps: vec![
            step("crd", |cx: Cx| async move {
                crd_serves(&cx, CRD, "v1alpha3").await
            }),
            step("deploy", deploy_abc),
            step("install", |cx: Cx| async move {
                let rg = route_group(
                    "v1alpha3",
                    "rg",
                    "[{name: metrics, pathRegex: /metrics, methods: [GET]}]",
                );
                let tt = target(
                    "v1alpha3",
                    "rg",
                    &cx.ns,
                    "service-b",
                    &[(&cx.ns, "service-a")],
                    "[{kind: HTTPRouteGroup, name: rg, matches: [metrics]}]",
                    None,
                );
                cx.apply(&format!("{rg}---\n{tt}")).await
            }),
            step("path and method", |cx: Cx| async move {
                allowed(&cx, "app-a", &cx.url("app-b", "/metrics"), &[]).await?;
                for (method, path) in [("GET", "/echo"), ("POST", "/metrics")] {
                    let b = cx
                        .http("app-a", &cx.url("app-b", path), 1, &["-X", method])
                        .await?;
                    ensure(b.ok == 0, || {
                        format!("{method} {path} matched GET /metrics: {b:?}")
                    })?;
                }
                Ok(())
            }),
        ],
    }
}
