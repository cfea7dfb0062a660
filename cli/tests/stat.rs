//! `tulle stat` / `tulle edges` as a binary, against a scripted HTTP API server: the table on
//! stdout, the hints on stderr, and the exit codes scripts rely on (0, 1, 2, 64, 69, 77).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Serves `answer(path_and_query) -> (status, body)` on 127.0.0.1 until the test ends; returns
/// a kubeconfig pointing at it and the request log.
fn server(
    dir: &tempfile::TempDir,
    answer: fn(&str) -> (u16, Value),
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            seen.lock().unwrap().push(target.clone());
            let (status, body) = answer(&target);
            let body = body.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: k, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k, user: u, namespace: ctxns}}}}]\n"
        ),
    )
    .unwrap();
    (kc.to_str().unwrap().to_string(), log)
}

fn tulle(kc: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tulle"))
        .args(args)
        .args(["--kubeconfig", kc])
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn status(code: u16, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message}),
    )
}

fn item(name: &str, ok: &str, p50: &str) -> Value {
    json!({"kind": "TrafficMetrics", "window": "1m0s",
           "metadata": {"name": name, "namespace": "demo"},
           "resource": {"kind": "Deployment", "namespace": "demo", "name": name},
           "edge": {"direction": "from", "side": "server", "resource": null},
           "pods": {"meshed": 1, "total": 1},
           "metrics": [{"name": "p99_response_latency", "unit": "ms", "value": "30"},
                       {"name": "p90_response_latency", "unit": "ms", "value": "20"},
                       {"name": "p50_response_latency", "unit": "ms", "value": p50},
                       {"name": "success_count", "value": ok},
                       {"name": "failure_count", "value": "0"},
                       {"name": "p95_response_latency", "unit": "ms", "value": "25"},
                       {"name": "tcp_open_connections", "value": "1"}]})
}

fn healthy(path: &str) -> (u16, Value) {
    match path {
        "/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/deployments?t=60s" => (
            200,
            json!({"kind": "TrafficMetricsList", "items": [item("web", "120", "5")]}),
        ),
        "/apis/metrics.smi-spec.io/v1alpha1/namespaces/ctxns/deployments" => {
            (200, json!({"kind": "TrafficMetricsList", "items": []}))
        }
        _ => status(404, "the server could not find the requested resource"),
    }
}

#[test]
fn stat_prints_a_table_with_the_window_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (kc, log) = server(&dir, healthy);
    let out = tulle(&kc, &["stat", "deploy", "-n", "demo", "-t", "1m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
NAME   MESHED   SUCCESS   RPS      LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
web    1/1      100.00%   2.0rps   5ms           25ms          30ms          1
"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // without -n: the context's namespace
    let out = tulle(&kc, &["stat", "deployments"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "No deployments found in namespace ctxns.\n"
    );
    assert_eq!(log.lock().unwrap().len(), 2);
    let out = tulle(
        &kc,
        &["stat", "deploy", "-n", "demo", "-t", "1m", "-o", "json"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["rps"], 2.0);
    assert_eq!(v[0]["success"], 1.0);
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let dir = tempfile::tempdir().unwrap();
    let (kc, _) = server(&dir, |_| {
        status(404, "the server could not find the requested resource")
    });
    let out = tulle(&kc, &["stat", "po", "-n", "demo"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("tulle: error: the SMI Traffic Metrics API"),
        "{err}"
    );
    assert!(err.contains("tulle install"), "{err}");
    assert!(out.stdout.is_empty());

    let (kc, _) = server(&dir, |_| {
        status(
            403,
            "pods.metrics.smi-spec.io is forbidden: User \"dev\" cannot list resource \"pods\" in API group \"metrics.smi-spec.io\" in the namespace \"demo\"",
        )
    });
    let out = tulle(&kc, &["edges", "po", "-n", "demo"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("User \"dev\" cannot list"));

    let (kc, _) = server(&dir, |_| status(400, "t=\"90000s\" is not a duration"));
    let out = tulle(&kc, &["stat", "ns"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));

    let out = tulle(&kc, &["stat", "services"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("deployments (deploy)"));
    let out = tulle(&kc, &["stat", "deploy", "web", "-A"]);
    assert_eq!(out.status.code(), Some(64));
}
