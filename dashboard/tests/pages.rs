//! Every page through the router, with canned data (`FakeCluster`): status codes, content,
//! the security layer (Host allow-list, CSP, GET only), asset caching, page weight, and the
//! live-update stream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use tulle_dashboard::args::DEFAULT_ENFORCED_HOST;
use tulle_dashboard::source::fake::FakeCluster;
use tulle_dashboard::web::{App, router};

const PAGE_BUDGET: usize = 200 * 1024;

fn app(fake: FakeCluster) -> App {
    App::new(
        Arc::new(fake),
        DEFAULT_ENFORCED_HOST,
        Duration::from_secs(2),
    )
    .unwrap()
}

async fn get_with(
    app: &App,
    method: &str,
    uri: &str,
    host: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap();
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn get(app: &App, uri: &str) -> (StatusCode, String) {
    let (s, _, b) = get_with(app, "GET", uri, "localhost:50750").await;
    (s, b)
}

#[tokio::test]
async fn every_page_renders_from_canned_data() {
    let app = app(FakeCluster::demo());
    for (uri, expect) in [
        (
            "/",
            vec![
                "Control plane",
                "tulle-controller is ready",
                "trust anchor",
                "issuer is valid",
                "/namespaces/demo",
                "the SMI Traffic Metrics API is available",
            ],
        ),
        (
            "/namespaces/demo",
            vec![
                "Workloads",
                "/namespaces/demo/deployments/web",
                "99.5%",
                "<svg class=\"topology\"",
                "data-src=\"demo/client\"",
            ],
        ),
        (
            "/namespaces/demo?sort=rps&dir=desc",
            vec!["aria-sort=\"descending\""],
        ),
        (
            "/namespaces/demo/deployments/web",
            vec![
                "Deployment web",
                "web-7d9f-x1",
                "client.demo.serviceaccount.identity.tulle.cluster.local",
                "✔ mTLS",
                "TrafficSplit",
                "backend web-v1 (weight 90, 90 applied)",
            ],
        ),
        (
            "/topology",
            vec![
                "3 workloads, 2 edges",
                "data-secured=\"true\"",
                "class=\"edge plain fail\"",
            ],
        ),
        ("/topology?namespace=demo", vec!["Topology of demo"]),
        (
            "/smi",
            vec![
                "demo/web",
                "web-v1",
                "data-weight=\"90\"",
                "90%",
                "No problems reported.",
            ],
        ),
        ("/smi?namespace=demo", vec!["SMI in demo"]),
    ] {
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        for e in expect {
            assert!(body.contains(e), "{uri} lacks {e:?}:\n{body}");
        }
        assert!(body.contains("data-live=\"/live?page="), "{uri}");
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{uri}: inline script or style"
        );
        assert!(body.len() < PAGE_BUDGET, "{uri}: {} bytes", body.len());
    }
}

#[tokio::test]
async fn the_namespace_table_sorts_with_plain_links() {
    let app = app(FakeCluster::demo());
    let order = |body: &str| {
        ["client", "web", "db"]
            .iter()
            .map(|n| (body.find(&format!("data-workload=\"{n}\"")).unwrap(), *n))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .collect::<Vec<_>>()
    };
    let (_, by_name) = get(&app, "/namespaces/demo").await;
    assert_eq!(order(&by_name), ["client", "db", "web"]);
    let (_, by_p99) = get(&app, "/namespaces/demo?sort=p99&dir=desc").await;
    assert_eq!(order(&by_p99), ["web", "db", "client"], "no latency last");
    assert!(
        by_p99.contains("sort=p99&#38;dir=asc") || by_p99.contains("sort=p99&amp;dir=asc"),
        "the active column toggles: {by_p99}"
    );
}

#[tokio::test]
async fn problems_and_missing_metrics_are_shown_not_fatal() {
    let fake = FakeCluster::demo();
    fake.update(|d| {
        d.metrics_error = Some("the metrics API is down".into());
        d.smi.problems.push(tulle_dashboard::model::Problem {
            kind: "TrafficSplit".into(),
            namespace: "demo".into(),
            name: "web".into(),
            uid: "uid-split".into(),
            reason: "BackendNotFound".into(),
            message: "backend Service web-v3 does not exist".into(),
            time: "2026-01-01T00:00:00Z".into(),
        });
    });
    let app = app(fake);
    let (status, body) = get(&app, "/namespaces/demo").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Metrics unavailable") && body.contains("the metrics API is down"),
        "{body}"
    );
    assert!(
        body.contains("data-workload=\"web\""),
        "rows from the objects: {body}"
    );
    let (_, smi) = get(&app, "/smi").await;
    assert!(smi.contains("article class=\"split invalid\""), "{smi}");
    assert!(
        smi.contains("BackendNotFound") && smi.contains("web-v3"),
        "{smi}"
    );
    let (_, w) = get(&app, "/namespaces/demo/deployments/web").await;
    assert!(w.contains("BackendNotFound"), "{w}");
    // The TrafficTargets are still listed; their counts are unknown, and say why.
    assert!(
        smi.contains("id=\"target-client-to-web\"")
            && smi.contains("Allow/deny counts unavailable: ")
            && smi.contains("<td class=\"num allowed\">—</td>"),
        "{smi}"
    );
}

#[tokio::test]
async fn traffic_targets_show_their_allow_and_deny_counts() {
    let demo = app(FakeCluster::demo());
    let (status, smi) = get(&demo, "/smi?namespace=demo").await;
    assert_eq!(status, StatusCode::OK);
    assert!(smi.contains("allowed and denied in the last 30s"), "{smi}");
    assert!(
        smi.contains("<td class=\"num allowed\">600</td><td class=\"num denied warn\">7</td>"),
        "{smi}"
    );
    // The workload page: web is the destination of client-to-web.
    let (_, w) = get(&demo, "/namespaces/demo/deployments/web").await;
    assert!(
        w.contains("destination (allows 1 sources); 600 allowed, 7 denied in the last 30s"),
        "{w}"
    );
    // A TrafficTarget the metrics API does not know yet (no decisions): zeros, not warned.
    let fake = FakeCluster::demo();
    fake.update(|d| d.target_metrics.clear());
    let (_, smi) = get(&app(fake), "/smi").await;
    assert!(
        smi.contains("<td class=\"num allowed\">0</td><td class=\"num denied\">0</td>"),
        "{smi}"
    );
}

#[tokio::test]
async fn unknown_pages_and_objects_are_404_and_bad_queries_400() {
    let app = app(FakeCluster::demo());
    for uri in [
        "/nope",
        "/namespaces/demo/deployments/missing",
        "/namespaces/demo/pods/x",
        "/assets/old.css",
    ] {
        assert_eq!(get(&app, uri).await.0, StatusCode::NOT_FOUND, "{uri}");
    }
    assert_eq!(
        get(&app, "/namespaces/demo?sort=x").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn security_host_allow_list_csp_and_get_only() {
    let app = app(FakeCluster::demo());
    let (status, headers, body) = get_with(&app, "GET", "/", "evil.example:50750").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("--enforced-host"));
    assert!(headers.contains_key("content-security-policy"));
    let (status, _, _) = get_with(&app, "GET", "/ready", "10.244.0.7:8084").await;
    assert_eq!(status, StatusCode::OK, "probes pass whatever the Host");
    let (status, headers, _) = get_with(&app, "GET", "/", "127.0.0.1:8084").await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, _, _) = get_with(&app, method, "/namespaces/demo", "localhost").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn assets_are_cached_for_a_year_by_content_hash() {
    let app = app(FakeCluster::demo());
    let (_, page) = get(&app, "/").await;
    for url in [
        &app.assets.css.url,
        &app.assets.js.url,
        &app.assets.icon.url,
    ] {
        assert!(page.contains(url.as_str()), "{url} linked");
        let (status, headers, body) = get_with(&app, "GET", url, "localhost").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(!body.is_empty());
    }
}

#[tokio::test]
async fn the_topology_of_150_workloads_fits_the_page_budget() {
    let app = app(FakeCluster::synthetic(150, 5));
    let started = std::time::Instant::now();
    let (status, body) = get(&app, "/topology").await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("150 workloads"),
        "{}",
        &body[..2000.min(body.len())]
    );
    let total = body.len()
        + app.assets.css.body.len()
        + app.assets.js.body.len()
        + app.assets.icon.body.len();
    eprintln!(
        "topology of 150 workloads: page {} bytes, with assets {total} bytes, served in {elapsed:?}",
        body.len()
    );
    assert!(total < PAGE_BUDGET, "{total} bytes");
}

#[tokio::test]
async fn the_live_stream_sends_changed_fragments() {
    let fake = Arc::new(FakeCluster::demo());
    let app = App::new(fake.clone(), DEFAULT_ENFORCED_HOST, Duration::from_secs(2)).unwrap();
    let req = Request::builder()
        .uri("/live?page=%2Fsmi&known=")
        .header(header::HOST, "localhost")
        .body(Body::empty())
        .unwrap();
    let res = router(app.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body();
    let mut text = String::new();
    let mut next = async || {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(f.data_ref().unwrap()).into_owned()
    };
    while !text.contains("event: tick") {
        text.push_str(&next().await);
    }
    assert!(text.contains("event: fragment\ndata: splits "), "{text}");
    fake.update(|d| d.smi.splits[0].backends[1].1 = 50);
    let mut more = String::new();
    while !more.contains("event: tick") {
        more.push_str(&next().await);
    }
    assert!(more.contains("data-weight=\"50\""), "{more}");
    assert!(
        !more.contains("data: problems "),
        "unchanged fragments are not sent again: {more}"
    );
}

#[tokio::test]
async fn the_issuer_expiry_warns_within_30_days_and_fails_once_expired() {
    use tulle_dashboard::model::CertState;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let with_issuer = |not_after: i64| {
        let fake = FakeCluster::demo();
        fake.update(|d| {
            let c = (d.control_plane.certs.iter_mut())
                .find(|c| c.name == "issuer")
                .unwrap();
            c.state = CertState::Known {
                subject: "the issuer tulle-identity loaded".into(),
                not_after,
            };
        });
        app(fake)
    };
    let (_, ok) = get(&with_issuer(now + 200 * 86_400), "/").await;
    assert!(
        ok.contains("<li class=\"check ok\"><span class=\"mark\">✓</span> issuer is valid"),
        "{ok}"
    );
    let (_, soon) = get(&with_issuer(now + 10 * 86_400 + 3600), "/").await;
    assert!(
        soon.contains("<li class=\"check warn\"><span class=\"mark\">!</span> issuer is valid")
            && soon.contains("expires in 10 days (less than 30 days): rotate the issuer"),
        "{soon}"
    );
    let (_, gone) = get(&with_issuer(now - 3 * 86_400 - 3600), "/").await;
    assert!(
        gone.contains("<li class=\"check fail\"><span class=\"mark\">✗</span> issuer is valid")
            && gone.contains("expired 3 days ago: tulle-identity signs no certificate"),
        "{gone}"
    );
    assert!(
        gone.contains("<tr class=\"fail\"><td>issuer</td>"),
        "{gone}"
    );
}
