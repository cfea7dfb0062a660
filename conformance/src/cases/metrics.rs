//! Traffic Metrics v1alpha1, which no earlier suite covered: the APIService is available,
//! discovery lists the resources, N requests are counted (success and failure), `/edges`
//! shows the caller, the window parameter is honoured, and RBAC applies. Access open.

use std::time::Duration;

use serde_json::Value;

use super::{Cx, fail};
use crate::app::{self, App};
use crate::case::{Api, Case, Mode, step};
use crate::context::Ctx;
use crate::{Result, ensure};

const GROUP: &str = "metrics.smi-spec.io";
const APISERVICE: &str = "v1alpha1.metrics.smi-spec.io";
/// How long a mesh may take to show traffic in the API (scrape intervals are ~10–30 s).
const VISIBLE: Duration = Duration::from_secs(90);
/// Requests per measurement; the server fails [`FAIL_PERCENT`] of every hundred.
const REQUESTS: u32 = 100;
const FAIL_PERCENT: u32 = 10;

fn base(cx: &Ctx) -> String {
    format!("/apis/{GROUP}/v1alpha1/namespaces/{}", cx.ns)
}

async fn raw(cx: &Ctx, path: &str) -> Result<Value> {
    cx.shared.kubectl.json(&["get", "--raw", path]).await
}

/// A metric of a TrafficMetrics item as a number (quantities like `12` or `12500m`).
fn metric(item: &Value, name: &str) -> Option<f64> {
    let m = item["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?;
    let v = m["value"].as_str()?;
    match v.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|x| x / 1000.0),
        None => v.parse().ok(),
    }
}

/// `(success_count, failure_count)` of an item (0 when absent).
fn counts(item: &Value) -> (f64, f64) {
    let get = |n| metric(item, n).unwrap_or(0.0);
    (get("success_count"), get("failure_count"))
}

async fn app_b_counts(cx: &Ctx) -> Result<(f64, f64)> {
    let item = raw(cx, &format!("{}/deployments/app-b?t=10m", base(cx))).await?;
    Ok(counts(&item))
}

/// The Traffic Metrics case.
pub fn case() -> Case {
    Case {
        name: "metrics",
        api: Api::TrafficMetrics,
        version: "v1alpha1",
        mode: Mode::Allow,
        upstream: false,
        about: "the APIService is available and discoverable; 100 requests counted as 90 successes and 10 failures; /edges names the caller; ?t= sets the window; callers without RBAC are refused",
        steps: vec![
            step("apiservice available", |cx: Cx| async move {
                let s = cx
                    .shared
                    .kubectl
                    .json(&["get", "apiservice", APISERVICE, "-o", "json"])
                    .await?;
                let available = s["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Available" && c["status"] == "True");
                ensure(available, || {
                    format!("APIService {APISERVICE} is not Available: {}", s["status"])
                })
            }),
            step("discovery", |cx: Cx| async move {
                let list = raw(&cx, &format!("/apis/{GROUP}/v1alpha1")).await?;
                let names: Vec<&str> = list["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["name"].as_str())
                    .collect();
                for want in [
                    "namespaces",
                    "pods",
                    "deployments",
                    "pods/edges",
                    "deployments/edges",
                ] {
                    ensure(names.contains(&want), || {
                        format!("discovery of {GROUP}/v1alpha1 lacks {want}: {names:?}")
                    })?;
                }
                Ok(())
            }),
            step("deploy", |cx: Cx| async move {
                let apps = [
                    App::new("app-a").tcp_probe(),
                    App::new("app-b")
                        .tcp_probe()
                        .env("FAIL_PERCENT", &FAIL_PERCENT.to_string()),
                ];
                cx.deploy(&apps, &[app::service("app-b", &[("app", "app-b")], false)])
                    .await
            }),
            step("requests counted", |cx: Cx| async move {
                let url = cx.url("app-b", "/");
                // Traffic until the mesh shows some of app-b's (a mesh may count from its
                // first scrape of a pod), then a measured burst.
                let warm = || async {
                    cx.http("app-a", &url, 10, &[]).await?;
                    app_b_counts(&cx).await
                };
                cx.eventually(
                    "app-b's traffic in the metrics API",
                    VISIBLE,
                    warm,
                    |(s, f)| s + f > 0.0,
                )
                .await?;
                // Two scrapes later the counts are settled.
                tokio::time::sleep(Duration::from_secs(25)).await;
                let (s0, f0) = app_b_counts(&cx).await?;
                let b = cx.http("app-a", &url, REQUESTS, &[]).await?;
                let want_f = u64::from(REQUESTS * FAIL_PERCENT / 100);
                ensure(
                    b.failed == want_f && b.ok == u64::from(REQUESTS) - want_f,
                    || format!("app-b answered {b:?}, want {want_f} failures"),
                )?;
                let (ws, wf) = (b.ok as f64, b.failed as f64);
                let close = |(s, f): &(f64, f64)| {
                    ((s - s0) - ws).abs() <= ws * 0.05 && ((f - f0) - wf).abs() <= 1.0
                };
                let got = cx
                    .eventually(
                        "success_count and failure_count growing by the burst",
                        VISIBLE,
                        || app_b_counts(&cx),
                        close,
                    )
                    .await?;
                eprintln!(
                    "[metrics] app-b: +{} successes, +{} failures for {ws}/{wf}",
                    got.0 - s0,
                    got.1 - f0
                );
                Ok(())
            }),
            step("edges name the caller", |cx: Cx| async move {
                let edges =
                    raw(&cx, &format!("{}/deployments/app-b/edges?t=10m", base(&cx))).await?;
                let from_a = edges["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["edge"]["resource"]["name"] == "app-a");
                match from_a {
                    Some(e) => ensure(
                        e["edge"]["direction"] == "from" && counts(e).0 > 0.0,
                        || format!("the edge from app-a: {e}"),
                    ),
                    None => fail(format!("no edge from app-a to app-b: {edges}")),
                }
            }),
            step("window parameter", |cx: Cx| async move {
                for (t, want) in [
                    ("30s", ["30s", "30s0", "0m30s"]),
                    ("2m", ["2m0s", "2m", "120s"]),
                ] {
                    let item = raw(&cx, &format!("{}/deployments/app-b?t={t}", base(&cx))).await?;
                    let w = item["window"].as_str().unwrap_or_default();
                    ensure(want.contains(&w), || {
                        format!("?t={t} answered window {w:?}")
                    })?;
                }
                Ok(())
            }),
            step("rbac applies", |cx: Cx| async move {
                let path = format!("{}/deployments/app-b", base(&cx));
                let sa = format!("system:serviceaccount:{}:service-nobody", cx.ns);
                for user in ["nobody", sa.as_str()] {
                    match cx
                        .shared
                        .kubectl
                        .run(&["get", "--raw", &path, "--as", user], None)
                        .await
                    {
                        Ok(out) => return fail(format!("{user} without RBAC read {path}: {out}")),
                        Err(e) => ensure(e.to_string().contains("orbidden"), || {
                            format!("{user}: want Forbidden, got {e}")
                        })?,
                    }
                }
                Ok(())
            }),
        ],
    }
}
