//! The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, from
//! `scripts/setup`), served in-process from canned data: every page loads without console
//! errors or failed requests, with and without JavaScript; live updates reach the open page
//! and stop while the tab is hidden; a rebound Host is refused; and the topology of 150
//! workloads has no two node boxes overlapping, measured in the browser.
//!
//! These fail (they do not skip) when chromedriver is missing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tulle_dashboard::args::DEFAULT_ENFORCED_HOST;
use tulle_dashboard::source::fake::FakeCluster;
use tulle_dashboard::web::{self, App};
use tulle_e2e::browser::{Browser, Options};

/// One browser at a time: the machine has two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PAGES: [&str; 7] = [
    "/",
    "/namespaces/demo",
    "/namespaces/demo?sort=rps&dir=desc",
    "/namespaces/demo/deployments/web",
    "/topology",
    "/topology?namespace=demo",
    "/smi",
];

async fn serve(fake: Arc<FakeCluster>) -> (App, String) {
    let app = App::new(fake, DEFAULT_ENFORCED_HOST, Duration::from_secs(2)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(web::serve(listener, app.clone()));
    (app, format!("http://127.0.0.1:{port}"))
}

async fn text(b: &Browser, css: &str) -> String {
    let script =
        format!("const e = document.querySelector({css:?}); return e ? e.textContent : null;");
    b.eval(&script)
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Polls `check` every 100 ms for up to `limit`; the time it took.
async fn within<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_loads_clean_with_and_without_javascript() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_app, base) = serve(Arc::new(FakeCluster::demo())).await;
    let b = Browser::start(Options::default()).await.unwrap();
    for p in PAGES {
        b.goto(&format!("{base}{p}")).await.unwrap();
        // The script connects the live stream: its status shows the first update.
        let live = within(Duration::from_secs(5), async || {
            text(&b, "#live-status").await.starts_with("live")
        })
        .await;
        assert!(
            live.is_some(),
            "{p}: no live update: {:?}",
            text(&b, "#live-status").await
        );
        let problems = b.problems(&base).await.unwrap();
        assert!(problems.is_empty(), "{p}: {problems:#?}");
    }
    b.close().await;

    let b = Browser::start(Options {
        javascript: false,
        ..Default::default()
    })
    .await
    .unwrap();
    for p in PAGES {
        b.goto(&format!("{base}{p}")).await.unwrap();
        let html = b.client.source().await.unwrap();
        assert!(html.contains("class=\"fragment\""), "{p}: {html}");
        let problems = b.problems(&base).await.unwrap();
        assert!(problems.is_empty(), "{p} without JavaScript: {problems:#?}");
    }
    // Complete as loaded: the topology with its edges, the split with its weights.
    b.goto(&format!("{base}/topology")).await.unwrap();
    let html = b.client.source().await.unwrap();
    assert!(html.contains("data-src=\"demo/client\" data-dst=\"demo/web\" data-secured=\"true\""));
    assert!(
        html.contains("snapshot"),
        "no live status without JavaScript"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_reach_the_open_page_only_while_it_is_visible() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fake = Arc::new(FakeCluster::demo());
    let (app, base) = serve(fake.clone()).await;
    let b = Browser::start(Options::default()).await.unwrap();
    b.goto(&format!("{base}/smi")).await.unwrap();
    b.eval("window.notReloaded = true;").await.unwrap();
    let weight = "const r = document.querySelector('tr[data-backend=\"web-v2\"]'); return r && r.dataset.weight;";
    assert_eq!(b.eval(weight).await.unwrap(), Value::from("10"));
    let open = within(Duration::from_secs(5), async || {
        app.live_streams.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(open.is_some(), "the page opened its stream");

    fake.update(|d| d.smi.splits[0].backends = vec![("web-v1".into(), 50), ("web-v2".into(), 50)]);
    let took = within(Duration::from_secs(5), async || {
        b.eval(weight).await.unwrap() == "50"
    })
    .await;
    eprintln!("weight change on the open page after {took:?}");
    assert!(took.is_some(), "the new weight did not arrive within 5 s");
    assert_eq!(
        b.eval("return window.notReloaded === true;").await.unwrap(),
        Value::Bool(true)
    );

    // Another tab in front: this one is hidden and closes its stream; back, it reopens.
    b.eval("window.visibilityChanges = []; document.addEventListener('visibilitychange', () => window.visibilityChanges.push(document.visibilityState));").await.unwrap();
    let first = b.client.window().await.unwrap();
    let other = b.client.new_window(true).await.unwrap();
    b.client.switch_to_window(other.handle).await.unwrap();
    b.goto("about:blank").await.unwrap();
    let closed = within(Duration::from_secs(5), async || {
        app.live_streams.load(Ordering::Relaxed) == 0
    })
    .await;
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(first).await.unwrap();
    let reopened = within(Duration::from_secs(5), async || {
        app.live_streams.load(Ordering::Relaxed) == 1
    })
    .await;
    eprintln!(
        "hidden tab: stream closed after {closed:?}, reopened after {reopened:?} when visible"
    );
    assert!(closed.is_some(), "the hidden tab kept its stream open");
    assert!(
        reopened.is_some(),
        "the tab did not reopen its stream when visible again"
    );
    let seen = b.eval("return window.visibilityChanges;").await.unwrap();
    assert_eq!(
        seen,
        serde_json::json!(["hidden", "visible"]),
        "the tab was hidden, then shown"
    );
    let problems = b.problems(&base).await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_app, base) = serve(Arc::new(FakeCluster::demo())).await;
    let port = base.rsplit(':').next().unwrap();
    // DNS rebinding: another site's name that resolves to the dashboard's address.
    let b = Browser::start(Options {
        host_rules: Some("MAP rebind.test 127.0.0.1".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    b.goto(&format!("http://rebind.test:{port}/"))
        .await
        .unwrap();
    let body = b.client.source().await.unwrap();
    assert!(
        body.contains("403 Forbidden") && !body.contains("Control plane"),
        "{body}"
    );
    b.goto(&format!("http://localhost:{port}/")).await.unwrap();
    assert!(b.client.source().await.unwrap().contains("Control plane"));
    b.close().await;
}

/// Node boxes (`.node rect`) and edge labels (`.elabel rect`) as the browser laid them out.
const GEOMETRY: &str = r#"
const boxes = sel => Array.from(document.querySelectorAll(sel)).map(e => {
  const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height];
});
return {nodes: boxes('svg.topology .node rect'), labels: boxes('svg.topology .elabel rect')};
"#;

fn rects(v: &Value) -> Vec<[f64; 4]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let a = r.as_array().unwrap();
            [0, 1, 2, 3].map(|i| a[i].as_f64().unwrap())
        })
        .collect()
}

fn overlap(a: &[f64; 4], b: &[f64; 4]) -> bool {
    // Shared area of more than half a pixel either way (sub-pixel rounding is not overlap).
    let e = 0.5;
    a[0] + a[2] - e > b[0]
        && b[0] + b[2] - e > a[0]
        && a[1] + a[3] - e > b[1]
        && b[1] + b[3] - e > a[1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_of_150_workloads_is_readable_in_the_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fake = FakeCluster::synthetic(150, 5);
    let data = fake.snapshot();
    // Server rendering, measured (graph, layout and SVG), best of five.
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let (svg, nodes, _) = tulle_dashboard::views::topology::draw(
            &data.metrics,
            &data.edges,
            Duration::from_secs(30),
        );
        best = best.min(t.elapsed());
        assert_eq!(nodes, 150);
        assert!(svg.len() > 1000);
    }
    eprintln!("server rendering of the 150-workload topology: {best:?} (budget 300 ms)");
    assert!(
        best < Duration::from_secs(3),
        "far over the 300 ms budget: {best:?}"
    );

    let (_app, base) = serve(Arc::new(fake)).await;
    let b = Browser::start(Options::default()).await.unwrap();
    let t = Instant::now();
    b.goto(&format!("{base}/topology")).await.unwrap();
    let load = t.elapsed();
    let g = b.eval(GEOMETRY).await.unwrap();
    let (nodes, labels) = (rects(&g["nodes"]), rects(&g["labels"]));
    assert_eq!(nodes.len(), 150);
    for (i, a) in nodes.iter().enumerate() {
        assert!(a[2] > 100.0 && a[3] > 20.0, "node {i} is drawn: {a:?}");
        for (j, o) in nodes.iter().enumerate().skip(i + 1) {
            assert!(!overlap(a, o), "nodes {i} {a:?} and {j} {o:?} overlap");
        }
        for (j, l) in labels.iter().enumerate() {
            assert!(
                !overlap(a, l),
                "node {i} {a:?} and edge label {j} {l:?} overlap"
            );
        }
    }
    for (i, a) in labels.iter().enumerate() {
        for (j, o) in labels.iter().enumerate().skip(i + 1) {
            assert!(
                !overlap(a, o),
                "edge labels {i} {a:?} and {j} {o:?} overlap"
            );
        }
    }
    let bytes = b
        .eval("return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).reduce((s, e) => s + e.transferSize, 0);")
        .await
        .unwrap();
    eprintln!(
        "browser: {} nodes and {} edge labels, none overlapping; page loaded in {load:?}, {bytes} bytes transferred",
        nodes.len(),
        labels.len()
    );
    assert!(bytes.as_f64().unwrap() <= 200.0 * 1024.0, "{bytes} bytes");
    let problems = b.problems(&base).await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    b.close().await;
}
