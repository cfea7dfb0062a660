//! The PromQL text, the parsing of canned Prometheus answers and the errors, against a tiny
//! in-process HTTP server.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::golden::{self, Filter, Kind, ResourceRef};
use crate::query::{RESPONSE_LATENCY_MS, RESPONSE_TOTAL, TCP_OPEN_CONNECTIONS};

type Handler = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// A fake Prometheus: answers `GET /api/v1/query` with `handler(promql)` and records the
/// decoded queries (and the raw request targets).
struct Fake {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
    targets: Arc<Mutex<Vec<String>>>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() + 1 => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl Fake {
    async fn start(handler: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::start_with(Arc::new(handler), "").await
    }

    async fn start_with(handler: Handler, prefix: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{prefix}", listener.local_addr().unwrap());
        let queries = Arc::new(Mutex::new(Vec::new()));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (q, t) = (queries.clone(), targets.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let (handler, q, t) = (handler.clone(), q.clone(), t.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let target = head.split_whitespace().nth(1).unwrap().to_string();
                    t.lock().unwrap().push(target.clone());
                    let query = target
                        .split_once('?')
                        .map(|(_, qs)| qs)
                        .unwrap_or("")
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("query="))
                        .map(decode)
                        .unwrap_or_default();
                    q.lock().unwrap().push(query.clone());
                    let (status, body) = handler(&query);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Fake {
            url,
            queries,
            targets,
        }
    }

    fn prometheus(&self) -> Prometheus {
        Prometheus::new(&self.url).unwrap()
    }

    fn queries(&self) -> Vec<String> {
        let mut q = self.queries.lock().unwrap().clone();
        q.sort();
        q
    }
}

fn vector(samples: &[(serde_json::Value, &str)]) -> String {
    let result: Vec<serde_json::Value> = samples
        .iter()
        .map(|(m, v)| serde_json::json!({"metric": m, "value": [1764560000.123, v]}))
        .collect();
    serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
        .to_string()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn inbound_web(metric: &'static str) -> Select {
    Select::new(metric, Duration::from_secs(30))
        .with(Matcher::eq("direction", "inbound"))
        .with(Matcher::ne("deployment", ""))
        .by(&["namespace", "deployment"])
}

#[tokio::test]
async fn sum_increase_is_one_instant_query() {
    let fake = Fake::start(|_| {
        (
            200,
            vector(&[
                (
                    serde_json::json!({"namespace": "shop", "deployment": "web"}),
                    "41.25",
                ),
                (
                    serde_json::json!({"namespace": "shop", "deployment": "db"}),
                    "0",
                ),
            ]),
        )
    })
    .await;
    let rows = fake
        .prometheus()
        .sum_increase(&inbound_web(RESPONSE_TOTAL))
        .await
        .unwrap();
    assert_eq!(
        fake.queries(),
        [
            r#"sum by (namespace, deployment) (increase(response_total{direction="inbound",deployment!=""}[30s]))"#
        ]
    );
    // Not rounded.
    assert_eq!(
        rows,
        vec![
            Row {
                labels: labels(&[("namespace", "shop"), ("deployment", "web")]),
                value: 41.25
            },
            Row {
                labels: labels(&[("namespace", "shop"), ("deployment", "db")]),
                value: 0.0
            },
        ]
    );
    // The request: GET /api/v1/query, every reserved character of the PromQL percent-encoded,
    // and Prometheus' own timeout inside ours.
    let target = fake.targets.lock().unwrap()[0].clone();
    assert!(
        target.starts_with("/api/v1/query?query=sum%20by%20%28namespace%2C%20deployment%29"),
        "{target}"
    );
    assert!(target.ends_with("&timeout=9.000"), "{target}");
    assert!(!target.contains('"') && !target.contains('{'), "{target}");
}

#[tokio::test]
async fn quantiles_one_query_each_nan_is_none() {
    let fake = Fake::start(|q| {
        let web = serde_json::json!({"namespace": "shop", "deployment": "web"});
        let db = serde_json::json!({"namespace": "shop", "deployment": "db"});
        let body = if q.starts_with("histogram_quantile(0.5,") {
            vector(&[(web, "12.5"), (db, "NaN")])
        } else if q.starts_with("histogram_quantile(0.99,") {
            // db has no p99 row at all; web's is the highest finite bound.
            vector(&[(web, "+Inf")])
        } else {
            vector(&[(web, "30"), (db, "NaN")])
        };
        (200, body)
    })
    .await;
    let rows = fake
        .prometheus()
        .quantiles(&inbound_web(RESPONSE_LATENCY_MS), &[0.5, 0.9, 0.99])
        .await
        .unwrap();
    assert_eq!(
        fake.queries(),
        [0.5, 0.9, 0.99].map(|q| format!(
            r#"histogram_quantile({q}, sum by (le, namespace, deployment) (rate(response_latency_ms_bucket{{direction="inbound",deployment!=""}}[30s])))"#
        ))
    );
    let by = |d: &str| {
        rows.iter()
            .find(|r| r.labels["deployment"] == d)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(by("web"), vec![Some(12.5), Some(30.0), None]);
    assert_eq!(by("db"), vec![None, None, None]);
}

#[tokio::test]
async fn sum_gauge_without_grouping() {
    let fake = Fake::start(|_| (200, vector(&[(serde_json::json!({}), "3")]))).await;
    let q =
        Select::new(TCP_OPEN_CONNECTIONS, Duration::from_secs(30)).with(Matcher::eq("peer", "src"));
    let rows = fake.prometheus().sum_gauge(&q).await.unwrap();
    assert_eq!(fake.queries(), [r#"sum(tcp_open_connections{peer="src"})"#]);
    assert_eq!(
        rows,
        vec![Row {
            labels: Labels::new(),
            value: 3.0
        }]
    );
    // No matchers: the bare metric name; windows below a second in milliseconds.
    let q = Select::new(RESPONSE_TOTAL, Duration::from_millis(1500));
    assert_eq!(
        increase_query(&q).unwrap(),
        "sum(increase(response_total[1500ms]))"
    );
}

#[test]
fn label_values_are_escaped_and_names_checked() {
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(60))
        .with(Matcher::eq("authority", "a\"b\\c\nd"))
        .with(Matcher::ne("pod", "} or vector(1) #"));
    assert_eq!(
        increase_query(&q).unwrap(),
        r#"sum(increase(response_total{authority="a\"b\\c\nd",pod!="} or vector(1) #"}[60s]))"#
    );
    let bad =
        Select::new(RESPONSE_TOTAL, Duration::from_secs(60)).with(Matcher::eq("a\"}or{b", "x"));
    assert!(matches!(
        increase_query(&bad),
        Err(QueryError::Unsupported(_))
    ));
    let bad = Select::new(RESPONSE_TOTAL, Duration::from_secs(60)).by(&["1abc"]);
    assert!(matches!(
        increase_query(&bad),
        Err(QueryError::Unsupported(_))
    ));
    let empty = Select::new(RESPONSE_TOTAL, Duration::ZERO);
    assert!(matches!(
        increase_query(&empty),
        Err(QueryError::Unsupported(_))
    ));
    assert!(matches!(
        quantile_query(&inbound_web(RESPONSE_LATENCY_MS), 1.5),
        Err(QueryError::Unsupported(_))
    ));
    assert_eq!(quote("plain"), "\"plain\"");
    assert_eq!(quote("tab\there"), "\"tab\\there\"");
}

#[tokio::test]
async fn the_kubernetes_job_is_k8s_job_in_prometheus() {
    let fake = Fake::start(|_| {
        (
            200,
            vector(&[(
                serde_json::json!({"namespace": "batch", "k8s_job": "migrate"}),
                "7",
            )]),
        )
    })
    .await;
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(30))
        .with(Matcher::ne("job", ""))
        .with(Matcher::eq("dst_job", "x"))
        .by(&["namespace", "job"]);
    let rows = fake.prometheus().sum_increase(&q).await.unwrap();
    assert_eq!(
        fake.queries(),
        [r#"sum by (namespace, k8s_job) (increase(response_total{k8s_job!="",dst_job="x"}[30s]))"#]
    );
    assert_eq!(
        rows[0].labels,
        labels(&[("namespace", "batch"), ("job", "migrate")])
    );
}

#[tokio::test]
async fn golden_stat_through_prometheus() {
    // The three queries of golden::stat, answered as Prometheus would for one Deployment.
    let fake = Fake::start(|q| {
        let web = |extra: &[(&str, &str)]| {
            let mut m = serde_json::json!({"namespace": "shop", "deployment": "web"});
            for (k, v) in extra {
                m[*k] = serde_json::json!(v);
            }
            m
        };
        let body = if q.starts_with("sum by (namespace, deployment, classification) (increase(") {
            vector(&[
                (web(&[("classification", "success")]), "95"),
                (web(&[("classification", "failure")]), "5"),
            ])
        } else if q.starts_with("histogram_quantile(") {
            vector(&[(web(&[]), "10")])
        } else if q.starts_with("sum by (namespace, deployment) (tcp_open_connections{") {
            vector(&[(web(&[]), "2")])
        } else {
            return (400, format!("unexpected query {q}"));
        };
        (200, body)
    })
    .await;
    let prom = fake.prometheus();
    let f = Filter {
        kind: Kind::Deployment,
        namespace: Some("shop".into()),
        name: None,
    };
    let stat = golden::stat(&prom, &f, Duration::from_secs(30))
        .await
        .unwrap();
    let web = &stat[&ResourceRef {
        kind: Kind::Deployment,
        namespace: "shop".into(),
        name: "web".into(),
    }];
    assert_eq!((web.success, web.failure, web.tcp_open), (95.0, 5.0, 2.0));
    assert_eq!(web.latency.p99, Some(10.0));
    let q = fake.queries();
    assert!(
        q.contains(&r#"sum by (namespace, deployment, classification) (increase(response_total{deployment!="",namespace="shop",direction="inbound"}[30s]))"#.to_string()),
        "{q:#?}"
    );
    assert!(
        q.contains(&r#"sum by (namespace, deployment) (tcp_open_connections{deployment!="",namespace="shop",direction="inbound",peer="src"})"#.to_string()),
        "{q:#?}"
    );
}

#[tokio::test]
async fn a_path_prefix_is_kept() {
    let fake = Fake::start_with(Arc::new(|_| (200, vector(&[]))), "/prometheus/").await;
    let prom = fake.prometheus();
    assert!(prom.url().ends_with("/prometheus"), "{}", prom.url());
    prom.query("up").await.unwrap();
    let target = fake.targets.lock().unwrap()[0].clone();
    assert!(
        target.starts_with("/prometheus/api/v1/query?query=up&"),
        "{target}"
    );
}

fn reason(e: QueryError) -> String {
    match e {
        QueryError::Prometheus { reason, .. } => reason,
        other => panic!("expected a Prometheus error, got {other:?}"),
    }
}

#[tokio::test]
async fn errors_say_what_went_wrong() {
    // Prometheus' own error answer.
    let fake = Fake::start(|_| {
        (
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#.into(),
        )
    })
    .await;
    let e = fake.prometheus().query("sum(").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("check --prometheus-url"), "{text}");
    let r = reason(e);
    assert!(
        r.contains("HTTP 400") && r.contains("bad_data") && r.contains("parse error"),
        "{r}"
    );

    // Something that is not Prometheus (a proxy's error page, a wrong path).
    let fake = Fake::start(|_| (502, "<html>Bad Gateway</html>".into())).await;
    let r = reason(fake.prometheus().query("up").await.unwrap_err());
    assert!(
        r.contains("HTTP 502") && r.contains("Bad Gateway") && r.contains("path prefix"),
        "{r}"
    );

    // A matrix where a vector was expected.
    let fake = Fake::start(|_| {
        (
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into(),
        )
    })
    .await;
    let r = reason(fake.prometheus().query("up[5m]").await.unwrap_err());
    assert!(r.contains("matrix"), "{r}");

    // Nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let prom = Prometheus::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let r = reason(prom.query("up").await.unwrap_err());
    assert!(r.contains("cannot reach it"), "{r}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let prom = Prometheus::new(&format!("http://{addr}"))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let r = reason(prom.query("up").await.unwrap_err());
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(r.contains("no answer within 300ms"), "{r}");
}

#[test]
fn urls_are_checked_up_front() {
    for bad in [
        "",
        "prometheus:9090/x y",
        "https://prom:9090",
        "ftp://prom",
        "http://prom:9090/?x=1",
    ] {
        assert!(Prometheus::new(bad).is_err(), "{bad:?} accepted");
    }
    let p = Prometheus::new(" http://prometheus.monitoring.svc:9090/ ").unwrap();
    assert_eq!(p.url(), "http://prometheus.monitoring.svc:9090");
    let r = reason(Prometheus::new("https://prom:9090").unwrap_err());
    assert!(r.contains("plain-HTTP"), "{r}");
}

#[test]
fn values_and_encoding() {
    assert_eq!(parse_value("1e3"), Some(1000.0));
    assert!(parse_value("NaN").unwrap().is_nan());
    assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
    assert_eq!(parse_value("x"), None);
    assert_eq!(encode("a b+c&d=é"), "a%20b%2Bc%26d%3D%C3%A9");
    assert_eq!(decode(&encode("{x=\"1\"}[30s]")), "{x=\"1\"}[30s]");
}

#[tokio::test]
async fn golden_authz_through_prometheus() {
    // The four increases of golden::authz, answered as Prometheus would.
    let fake = Fake::start(|q| {
        let body = if q.starts_with("sum by (authz) (increase(inbound_http_authz_allow_total{") {
            vector(&[(serde_json::json!({"authz": "shop/web-to-api"}), "12")])
        } else if q.starts_with("sum by (authz) (increase(inbound_tcp_authz_allow_total{") {
            vector(&[(serde_json::json!({"authz": "shop/web-to-api"}), "3")])
        } else if q.starts_with("sum by (namespace, pod) (increase(inbound_") {
            let pod = serde_json::json!({"namespace": "shop", "pod": "api-1"});
            vector(&[(pod, "2")])
        } else {
            return (400, format!("unexpected query {q}"));
        };
        (200, body)
    })
    .await;
    let a = golden::authz(&fake.prometheus(), Some("shop"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(a.allowed["shop/web-to-api"], 15.0);
    assert_eq!(a.denied[&("shop".to_string(), "api-1".to_string())], 4.0);
    let q = fake.queries();
    assert_eq!(q.len(), 4, "{q:#?}");
    assert!(
        q.contains(&r#"sum by (namespace, pod) (increase(inbound_http_authz_deny_total{namespace="shop",authz="targeted"}[30s]))"#.to_string()),
        "{q:#?}"
    );
}
