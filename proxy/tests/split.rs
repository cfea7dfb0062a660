//! TrafficSplit in the outbound proxy, in process: a client proxy with static discovery in
//! front of three test apps (the apex `web` and the backends `web-v1`, `web-v2`): weighted
//! shares, a weight change applied to the next requests with no failure, all-zero weights
//! as a 503, HTTPRouteGroup matches with fallback to the apex, the apex as a backend, the
//! backend labelled in the metrics, and opaque TCP split per connection.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tulle_proxy::app::Proxy;
use tulle_proxy::discovery::StaticDiscovery;

use support::*;

const APEX: &str = "web.test.svc.cluster.local:80";
const V1: &str = "web-v1.test.svc.cluster.local:80";
const V2: &str = "web-v2.test.svc.cluster.local:80";

struct Apps {
    apex: SocketAddr,
    v1: SocketAddr,
    v2: SocketAddr,
}

fn destinations(apps: &Apps) -> Vec<serde_json::Value> {
    vec![
        json!({"authority": APEX, "addrs": [VIRTUAL], "endpoints": [{"addr": apps.apex.to_string()}]}),
        json!({"authority": V1, "endpoints": [{"addr": apps.v1.to_string()}]}),
        json!({"authority": V2, "endpoints": [{"addr": apps.v2.to_string()}]}),
    ]
}

fn file(apps: &Apps, splits: serde_json::Value) -> tulle_proxy::discovery::StaticFile {
    static_file(&json!({"destinations": destinations(apps), "splits": splits}).to_string())
}

fn split(v1: u32, v2: u32, matches: serde_json::Value) -> serde_json::Value {
    json!([{"authority": APEX, "addrs": [VIRTUAL], "name": "test/canary",
        "backends": [{"authority": V1, "weight": v1}, {"authority": V2, "weight": v2}],
        "matches": matches}])
}

async fn client(discovery: Arc<StaticDiscovery>) -> Proxy {
    Proxy::start(
        config(
            CLIENT_ID,
            &[(
                "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
                VIRTUAL.to_string(),
            )],
        ),
        Pki::new().tls(CLIENT_ID),
        discovery,
    )
    .await
    .unwrap()
}

/// Sends `n` requests over one HTTP/1 connection (HTTP/2 with `h2`); counts the answers by
/// the app's name (`<status> <reason>` for proxy errors).
async fn shares(
    proxy: SocketAddr,
    n: usize,
    h2: bool,
    req: impl Fn() -> http::request::Builder,
) -> HashMap<String, usize> {
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
    let mut out = HashMap::new();
    let mut count = |status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]| {
        let key = if status.is_success() {
            String::from_utf8_lossy(body)
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        } else {
            let reason = headers
                .get("tulle-proxy-error")
                .map_or("-", |v| v.to_str().unwrap());
            format!("{} {reason}", status.as_u16())
        };
        *out.entry(key).or_insert(0) += 1;
    };
    if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..n {
            let mut r = req().body(Full::new(Bytes::new())).unwrap();
            *r.uri_mut() = format!("http://{APEX}{}", r.uri().path()).parse().unwrap();
            *r.version_mut() = http::Version::HTTP_2;
            let r = send.send_request(r).await.unwrap();
            let (parts, body) = r.into_parts();
            count(
                parts.status,
                &parts.headers,
                &body.collect().await.unwrap().to_bytes(),
            );
        }
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..n {
            let r = send
                .send_request(
                    req()
                        .header("host", APEX)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
                .unwrap();
            let (parts, body) = r.into_parts();
            count(
                parts.status,
                &parts.headers,
                &body.collect().await.unwrap().to_bytes(),
            );
        }
    }
    out
}

/// Waits until a request answers with `key`: a profile change is applied by a task, so
/// the request right after `replace` may still see the previous split.
async fn settled(proxy: SocketAddr, key: &str, req: impl Fn() -> http::request::Builder) {
    for _ in 0..200 {
        if shares(proxy, 1, false, &req).await.contains_key(key) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no answer from {key} after 200 tries");
}

fn share(s: &HashMap<String, usize>, key: &str) -> f64 {
    let total: usize = s.values().sum();
    s.get(key).copied().unwrap_or(0) as f64 / total as f64
}

fn get(path: &str) -> impl Fn() -> http::request::Builder + '_ {
    move || Request::get(path)
}

#[tokio::test]
async fn weights_changes_zero_weights_matches_and_metrics() {
    init();
    bounded(async {
        let apps = Apps {
            apex: app("apex").await.0,
            v1: app("v1").await.0,
            v2: app("v2").await.0,
        };
        // No split: everything to the apex.
        let discovery = Arc::new(StaticDiscovery::new(file(&apps, json!([]))).unwrap());
        let proxy = client(discovery.clone()).await;
        let out = proxy.outbound_addr;
        assert_eq!(shares(out, 20, false, get("/")).await["apex"], 20);

        // 90/10, then 50/50 and 0/100 on the same route: each applies to the next requests,
        // with no failure in between.
        for (v1, v2) in [(900, 100), (50, 50), (0, 100), (100, 0)] {
            discovery.replace(file(&apps, split(v1, v2, json!([])))).unwrap();
            settled(out, if v1 > v2 { "v1" } else { "v2" }, get("/")).await;
            // 1,500 requests: at 50/50 the ±6 point band is 4.6 standard deviations wide.
            let s = shares(out, 1500, false, get("/")).await;
            let want = f64::from(v2) / f64::from(v1 + v2);
            assert!(
                (share(&s, "v2") - want).abs() < 0.06,
                "{v1}/{v2}: got {s:?}"
            );
            assert_eq!(
                s.get("v1").copied().unwrap_or(0) + s.get("v2").copied().unwrap_or(0),
                1500,
                "{v1}/{v2}: every request answered by a backend: {s:?}"
            );
        }

        // All weights 0: a 503 that says why, never a silent fallback to the apex.
        discovery.replace(file(&apps, split(0, 0, json!([])))).unwrap();
        settled(out, "503 no traffic split backend", get("/")).await;
        let s = shares(out, 5, false, get("/")).await;
        assert_eq!(s["503 no traffic split backend"], 5, "{s:?}");

        // Matches: a header rule and a path rule; the rest goes to the apex, over HTTP/1
        // and HTTP/2.
        let matches = json!([{"headers": {"x-canary": "true"}}, {"path_regex": "/v2/", "methods": ["GET"]}]);
        discovery.replace(file(&apps, split(0, 100, matches))).unwrap();
        settled(out, "apex", get("/other")).await;
        for h2 in [false, true] {
            let canary = || Request::get("/").header("x-canary", "true");
            assert_eq!(shares(out, 10, h2, canary).await["v2"], 10, "h2={h2}");
            assert_eq!(shares(out, 10, h2, get("/v2/x")).await["v2"], 10, "h2={h2}");
            assert_eq!(shares(out, 10, h2, get("/other")).await["apex"], 10, "h2={h2}");
            let post = || Request::post("/v2/x");
            assert_eq!(shares(out, 10, h2, post).await["apex"], 10, "h2={h2}");
        }

        // The apex named as a backend means the apex's own endpoints (no recursion).
        let apex_split = json!([{"authority": APEX, "addrs": [VIRTUAL], "name": "test/self",
            "backends": [{"authority": APEX, "weight": 50}, {"authority": V2, "weight": 50}]}]);
        discovery.replace(file(&apps, apex_split)).unwrap();
        settled(out, "v2", get("/")).await;
        let s = shares(out, 1500, false, get("/")).await;
        assert!((share(&s, "apex") - 0.5).abs() < 0.08, "{s:?}");
        assert!((share(&s, "v2") - 0.5).abs() < 0.08, "{s:?}");

        // A backend that is not a known service gets nothing.
        let ghost = json!([{"authority": APEX, "addrs": [VIRTUAL], "name": "test/ghost",
            "backends": [{"authority": "ghost.test.svc.cluster.local:80", "weight": 50}, {"authority": V1, "weight": 50}]}]);
        discovery.replace(file(&apps, ghost)).unwrap();
        settled(out, "v1", get("/")).await;
        assert_eq!(shares(out, 30, false, get("/")).await["v1"], 30);

        // Per-backend metrics under the apex authority.
        let m = metrics(&proxy).await;
        let v2_line = m.lines().find(|l| {
            l.starts_with("response_total{")
                && l.contains(&format!("authority=\"{APEX}\""))
                && l.contains("dst_service=\"web-v2\"")
        });
        assert!(v2_line.is_some(), "no per-backend series for web-v2:\n{m}");
    })
    .await;
}

#[tokio::test]
async fn opaque_tcp_is_split_per_connection() {
    init();
    bounded(async {
        let apps = Apps {
            apex: tcp_named("apex").await,
            v1: tcp_named("v1").await,
            v2: tcp_named("v2").await,
        };
        let discovery =
            Arc::new(StaticDiscovery::new(file(&apps, split(25, 75, json!([])))).unwrap());
        let proxy = Proxy::start(
            config(
                CLIENT_ID,
                &[
                    (
                        "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
                        VIRTUAL.to_string(),
                    ),
                    ("TULLE_PROXY_OPAQUE_PORTS", "80".to_string()),
                ],
            ),
            Pki::new().tls(CLIENT_ID),
            discovery.clone(),
        )
        .await
        .unwrap();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..200 {
            let mut s = tokio::net::TcpStream::connect(proxy.outbound_addr)
                .await
                .unwrap();
            let mut name = String::new();
            s.read_to_string(&mut name).await.unwrap();
            *counts.entry(name).or_default() += 1;
        }
        let v2 = counts.get("v2").copied().unwrap_or(0) as f64 / 200.0;
        assert!((v2 - 0.75).abs() < 0.12, "{counts:?}");
        assert!(!counts.contains_key("apex"), "{counts:?}");

        // All weights 0: the connection is closed without reaching anything.
        discovery
            .replace(file(&apps, split(0, 0, json!([]))))
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(proxy.outbound_addr)
            .await
            .unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got).await;
        assert_eq!(got, "", "closed without an answer");
    })
    .await;
}

/// A TCP server that writes its name and closes (server speaks first).
async fn tcp_named(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    addr
}
