//! Traffic Split: the upstream scenario (11 steps) and stricter cases — ratios within
//! tolerance bands over hundreds of requests, weight 0, all-zero weights, the apex as a
//! backend, a missing backend Service, a backend without the apex's port, `matches` with
//! fallback to the apex, and v1alpha1–v1alpha3 objects served through conversion. Run with
//! access control open.

use super::{Cx, crd_serves, share_within};
use crate::app::{self, App};
use crate::case::{Api, Case, Mode, step};
use crate::context::{Burst, Ctx, PROPAGATION};
use crate::{Result, ensure};

const CRD: &str = "trafficsplits.split.smi-spec.io";
/// Requests per ratio measurement.
const SAMPLE: u32 = 400;
/// The band a measured share must fall in around its weight (3.7 standard deviations of a
/// 75/25 split over 400 requests).
const TOLERANCE: f64 = 0.08;

/// The upstream apps: `app-a` (the client), `app-b` and `app-c` (labelled `tier: backend`),
/// Services `app-b`, `app-c` and the apex `app-svc` selecting both.
async fn deploy(cx: Cx) -> Result<()> {
    let apps = [
        App::new("app-a"),
        App::new("app-b").label("tier", "backend"),
        App::new("app-c").label("tier", "backend"),
    ];
    let services = [
        app::service("app-b", &[("app", "app-b")], true),
        app::service("app-c", &[("app", "app-c")], true),
        app::service("app-svc", &[("tier", "backend")], true),
    ];
    cx.deploy(&apps, &services).await
}

/// A TrafficSplit `app-svc` of `version` with `backends` (`(service, weight as YAML)`).
fn split(version: &str, backends: &[(&str, &str)], extra: &str) -> String {
    let backends: Vec<String> = backends
        .iter()
        .map(|(s, w)| format!("{{service: {s}, weight: {w}}}"))
        .collect();
    format!(
        "apiVersion: split.smi-spec.io/{version}\nkind: TrafficSplit\nmetadata: {{name: server-split}}\nspec:\n  service: app-svc\n  backends: [{}]\n{extra}",
        backends.join(", ")
    )
}

/// Requests from app-a to the apex.
async fn to_apex(cx: &Ctx, n: u32, extra: &[&str]) -> Result<Burst> {
    cx.http("app-a", &cx.url("app-svc", "/echo"), n, extra)
        .await
}

/// Once the mesh applied the split, `n` requests all go to `only`.
async fn all_to(cx: &Ctx, only: &str, n: u32) -> Result<()> {
    cx.eventually(
        &format!("all of {n} requests answered by {only}"),
        PROPAGATION,
        || to_apex(cx, n, &[]),
        |b| b.from(only) == u64::from(n),
    )
    .await
    .map(drop)
}

/// Once the mesh applied the split, [`SAMPLE`] requests give `app` a share of `want`.
async fn ratio(cx: &Ctx, app: &str, want: f64) -> Result<()> {
    let what = format!(
        "{app} answering {:.0} % ± {:.0}",
        want * 100.0,
        TOLERANCE * 100.0
    );
    let b = cx
        .eventually(
            &what,
            PROPAGATION,
            || to_apex(cx, SAMPLE, &[]),
            |b| share_within(b, app, want, TOLERANCE).is_ok(),
        )
        .await?;
    eprintln!(
        "[{}] {app}: {:.1} % of {} ({:?})",
        cx.ns,
        b.share(app) * 100.0,
        b.ok + b.failed,
        b.by_app
    );
    Ok(())
}

/// The upstream traffic-split scenario, with strict counts and tolerance bands for ratios.
pub fn upstream() -> Case {
    Case {
        name: "split",
        api: Api::TrafficSplit,
        version: "v1alpha4",
        mode: Mode::Allow,
        upstream: true,
        about: "upstream traffic-split: the apex alone reaches both backends; weights 1/0, 0/1, 75/25, 25/75 send exactly or within ±8 % what they say",
        steps: vec![
            step("crd", |cx: Cx| async move {
                crd_serves(&cx, CRD, "v1alpha4").await
            }),
            step("deploy", deploy),
            step("trafficDefault", |cx: Cx| async move {
                // Meshes balance the apex's endpoints by latency: both must answer within a
                // bounded time, not necessarily within the first 50 requests.
                let start = std::time::Instant::now();
                let (mut b_seen, mut c_seen, mut sent) = (false, false, 0);
                while !(b_seen && c_seen) && start.elapsed() < PROPAGATION {
                    let b = to_apex(&cx, 50, &[]).await?;
                    ensure(b.failed == 0, || format!("the apex without a split: {b:?}"))?;
                    (b_seen, c_seen, sent) = (
                        b_seen || b.from("app-b") > 0,
                        c_seen || b.from("app-c") > 0,
                        sent + 50,
                    );
                }
                ensure(b_seen && c_seen, || {
                    format!(
                        "without a split, {sent} requests to the apex reached app-b: {b_seen}, app-c: {c_seen}"
                    )
                })
            }),
            step("install 1/0", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "1"), ("app-c", "0")], ""))
                    .await
            }),
            step("trafficAllB", |cx: Cx| async move {
                all_to(&cx, "app-b", 50).await
            }),
            step("update 0/1", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "0"), ("app-c", "1")], ""))
                    .await
            }),
            step("trafficAllC", |cx: Cx| async move {
                all_to(&cx, "app-c", 50).await
            }),
            step("update 75/25", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "75"), ("app-c", "25")], ""))
                    .await
            }),
            step("trafficMoreB", |cx: Cx| async move {
                ratio(&cx, "app-b", 0.75).await
            }),
            step("update 25/75", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "25"), ("app-c", "75")], ""))
                    .await
            }),
            step("trafficMoreC", |cx: Cx| async move {
                ratio(&cx, "app-c", 0.75).await
            }),
        ],
    }
}

/// The stricter Traffic Split cases.
pub fn stricter() -> Vec<Case> {
    vec![
        weights(),
        backends(),
        matches(),
        older(
            "v1alpha1",
            &["\"1\"", "\"0\""],
            &["\"0\"", "\"1\""],
            &["\"750m\"", "\"250m\""],
        ),
        older("v1alpha2", &["1", "0"], &["0", "1"], &["75", "25"]),
        older("v1alpha3", &["1", "0"], &["0", "1"], &["75", "25"]),
    ]
}

fn weights() -> Case {
    Case {
        name: "split-weights",
        api: Api::TrafficSplit,
        version: "v1alpha4",
        mode: Mode::Allow,
        upstream: false,
        about: "weights are relative: 50/50 and 900/100 within ±8 % over 400 requests; weight 0 gets nothing; all-zero weights answer errors, never a backend",
        steps: vec![
            step("deploy", deploy),
            step("50/50", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "50"), ("app-c", "50")], ""))
                    .await?;
                ratio(&cx, "app-b", 0.5).await
            }),
            step("900/100", |cx: Cx| async move {
                cx.apply(&split(
                    "v1alpha4",
                    &[("app-b", "900"), ("app-c", "100")],
                    "",
                ))
                .await?;
                ratio(&cx, "app-b", 0.9).await
            }),
            step("weight 0 gets nothing", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "0"), ("app-c", "100")], ""))
                    .await?;
                all_to(&cx, "app-c", 200).await
            }),
            step("all-zero weights answer errors", |cx: Cx| async move {
                cx.apply(&split("v1alpha4", &[("app-b", "0"), ("app-c", "0")], ""))
                    .await?;
                let b = cx
                    .eventually(
                        "all-zero weights refusing",
                        PROPAGATION,
                        || to_apex(&cx, 20, &[]),
                        |b| b.ok == 0,
                    )
                    .await?;
                ensure(b.errors.keys().all(|k| k.starts_with('5')), || {
                    format!("all-zero weights: want 5xx answers: {b:?}")
                })
            }),
        ],
    }
}

fn backends() -> Case {
    Case {
        name: "split-backends",
        api: Api::TrafficSplit,
        version: "v1alpha4",
        mode: Mode::Allow,
        upstream: false,
        about: "the apex as a backend means its own endpoints; a backend Service that does not exist gets nothing until it is created; a backend without the apex's port is left out",
        steps: vec![
            step("deploy", |cx: Cx| async move {
                deploy(cx.clone()).await?;
                cx.deploy(&[App::new("app-d")], &[]).await
            }),
            step("apex as a backend", |cx: Cx| async move {
                cx.apply(&split(
                    "v1alpha4",
                    &[("app-svc", "50"), ("app-d", "50")],
                    "",
                ))
                .await?;
                // app-d has no Service yet: everything goes to the apex's endpoints.
                let b = cx
                    .eventually(
                        "the apex backend answering all",
                        PROPAGATION,
                        || to_apex(&cx, 100, &[]),
                        |b| b.from("app-b") + b.from("app-c") == 100,
                    )
                    .await?;
                ensure(b.failed == 0, || format!("{b:?}"))
            }),
            step("missing backend created later", |cx: Cx| async move {
                cx.apply(&app::service("app-d", &[("app", "app-d")], true).to_string())
                    .await?;
                cx.eventually(
                    "app-d answering once its Service exists",
                    PROPAGATION,
                    || to_apex(&cx, 20, &[]),
                    |b| b.from("app-d") > 0,
                )
                .await?;
                ratio(&cx, "app-d", 0.5).await
            }),
            step("backend without the apex's port", |cx: Cx| async move {
                let other_port = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app-e"},
                    "spec": {"selector": {"app": "app-d"}, "ports": [{"name": "http", "port": 8081, "targetPort": app::APP_PORT}]}});
                cx.apply(&other_port.to_string()).await?;
                cx.apply(&split("v1alpha4", &[("app-b", "50"), ("app-e", "50")], ""))
                    .await?;
                all_to(&cx, "app-b", 100).await
            }),
        ],
    }
}

fn matches() -> Case {
    Case {
        name: "split-matches",
        api: Api::TrafficSplit,
        version: "v1alpha4",
        mode: Mode::Allow,
        upstream: false,
        about: "matches: requests an HTTPRouteGroup selects (header in both forms, path) follow the split; others go to the apex; HTTP/1 and HTTP/2",
        steps: vec![
            step("deploy", deploy),
            step("install", |cx: Cx| async move {
                let rg = "apiVersion: specs.smi-spec.io/v1alpha4\nkind: HTTPRouteGroup\nmetadata: {name: canary}\nspec:\n  matches:\n  - {name: header-list, headers: [{x-canary: \"true\"}]}\n  - {name: header-map, headers: {x-beta: \"y.s\"}}\n  - {name: api, pathRegex: /api/.*, methods: [GET]}\n";
                cx.apply(&format!(
                    "{rg}---\n{}",
                    split(
                        "v1alpha4",
                        &[("app-b", "0"), ("app-c", "100")],
                        "  matches: [{kind: HTTPRouteGroup, name: canary}]\n"
                    )
                ))
                .await
            }),
            step("matching requests follow the split", |cx: Cx| async move {
                for proto in [&[][..], &["--h2"][..]] {
                    for (path, header) in [
                        ("/", "x-canary:true"),
                        ("/", "x-beta:yes"),
                        ("/api/items", "x-other:1"),
                    ] {
                        let mut extra = vec!["-H", header];
                        extra.extend_from_slice(proto);
                        let url = cx.url("app-svc", path);
                        let b = cx
                            .eventually(
                                &format!("{path} {header} {proto:?} to app-c"),
                                PROPAGATION,
                                || cx.http("app-a", &url, 20, &extra),
                                |b| b.from("app-c") == 20,
                            )
                            .await?;
                        drop(b);
                    }
                }
                Ok(())
            }),
            step("other requests go to the apex", |cx: Cx| async move {
                for proto in [&[][..], &["--h2"][..]] {
                    let mut extra = vec!["-H", "x-canary:false"];
                    extra.extend_from_slice(proto);
                    // The split gives app-b nothing: an app-b answer shows the apex served it.
                    let url = cx.url("app-svc", "/other");
                    let b = cx
                        .eventually(
                            "an unmatched request answered by the apex (app-b among its endpoints)",
                            PROPAGATION,
                            || cx.http("app-a", &url, 50, &extra),
                            |b| b.from("app-b") > 0,
                        )
                        .await?;
                    ensure(b.failed == 0, || {
                        format!("unmatched requests failed: {b:?}")
                    })?;
                }
                Ok(())
            }),
        ],
    }
}

/// A split of an older version, served through conversion: all to b, all to c, 75/25.
fn older(
    version: &'static str,
    b_only: &[&str; 2],
    c_only: &[&str; 2],
    three_to_one: &[&str; 2],
) -> Case {
    let name = match version {
        "v1alpha1" => "split-v1alpha1",
        "v1alpha2" => "split-v1alpha2",
        _ => "split-v1alpha3",
    };
    let weights = |w: &[&str; 2]| [w[0].to_string(), w[1].to_string()];
    let (b_only, c_only, ratio_w) = (weights(b_only), weights(c_only), weights(three_to_one));
    let apply = move |w: [String; 2]| {
        move |cx: Cx| {
            let w = w.clone();
            async move {
                cx.apply(&split(version, &[("app-b", &w[0]), ("app-c", &w[1])], ""))
                    .await
            }
        }
    };
    Case {
        name,
        api: Api::TrafficSplit,
        version,
        mode: Mode::Allow,
        upstream: false,
        about: "an older TrafficSplit version, served through conversion: all to one backend, all to the other, 3:1",
        steps: vec![
            step("crd", move |cx: Cx| async move {
                crd_serves(&cx, CRD, version).await
            }),
            step("deploy", deploy),
            step("all to app-b", apply(b_only)),
            step("trafficAllB", |cx: Cx| async move {
                all_to(&cx, "app-b", 50).await
            }),
            step("all to app-c", apply(c_only)),
            step("trafficAllC", |cx: Cx| async move {
                all_to(&cx, "app-c", 50).await
            }),
            step("3:1", apply(ratio_w)),
            step("trafficMoreB", |cx: Cx| async move {
                ratio(&cx, "app-b", 0.75).await
            }),
        ],
    }
}
