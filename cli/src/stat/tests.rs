//! Tables and JSON from canned API answers (the shapes of controller/src/metrics_api/
//! objects.rs), the arguments and the URL space; the canned answers are shared with
//! `tests_api`.

use super::*;
use crate::{Cli, args::Command, args::parse_target};
use clap::Parser;
use serde_json::json;

/// The metrics array: (success, failure, p50, p95, p99 in milli-ms, tcp).
pub(super) fn metrics(ok: &str, fail: &str, lat: Option<[&str; 4]>, tcp: &str) -> Value {
    let l = |name: &str, i: usize| match lat {
        Some(v) => json!({"name": name, "unit": "ms", "value": v[i]}),
        None => json!({"name": name, "unit": "ms"}),
    };
    json!([
        l("p99_response_latency", 3),
        l("p90_response_latency", 1),
        l("p50_response_latency", 0),
        {"name": "success_count", "value": ok},
        {"name": "failure_count", "value": fail},
        l("p95_response_latency", 2),
        {"name": "tcp_open_connections", "value": tcp},
    ])
}

pub(super) fn resource_item(kind: &str, ns: &str, name: &str, pods: (u64, u64), m: Value) -> Value {
    let resource = if kind == "Namespace" {
        json!({"kind": kind, "name": name})
    } else {
        json!({"kind": kind, "namespace": ns, "name": name})
    };
    json!({"kind": "TrafficMetrics", "apiVersion": "metrics.smi-spec.io/v1alpha1",
           "metadata": {"name": name, "namespace": ns, "selfLink": "x",
                        "creationTimestamp": "2025-01-01T00:00:00Z"},
           "timestamp": "2025-01-01T00:00:00Z", "window": "30s",
           "resource": resource,
           "edge": {"direction": "from", "side": "server", "resource": null},
           "pods": {"meshed": pods.0, "total": pods.1}, "metrics": m})
}

pub(super) fn list(items: Vec<Value>) -> Value {
    json!({"kind": "TrafficMetricsList", "apiVersion": "metrics.smi-spec.io/v1alpha1",
           "metadata": {"selfLink": "x"}, "resource": {"kind": "Deployment"}, "items": items})
}

pub(super) fn deployments() -> Value {
    list(vec![
        resource_item(
            "Deployment",
            "demo",
            "web",
            (2, 2),
            metrics("44", "1", Some(["12500m", "20", "48", "97600m"]), "3"),
        ),
        resource_item(
            "Deployment",
            "demo",
            "client",
            (1, 1),
            metrics("0", "0", None, "0"),
        ),
        resource_item(
            "Deployment",
            "demo",
            "legacy",
            (0, 1),
            metrics("3", "0", Some(["2500m", "3", "4", "5"]), "0"),
        ),
    ])
}

pub(super) fn edge_item(of: (&str, &str), dir: &str, peer: (&str, &str), secured: bool) -> Value {
    let id = |n: &str, ns: &str| format!("{n}.{ns}.serviceaccount.identity.tulle.cluster.local");
    let (client, server) = if dir == "to" { (of, peer) } else { (peer, of) };
    json!({"kind": "TrafficMetrics", "metadata": {"name": of.1, "namespace": of.0},
           "window": "30s",
           "resource": {"kind": "Deployment", "namespace": of.0, "name": of.1},
           "edge": {"direction": dir, "side": "client",
                    "resource": {"kind": "Deployment", "namespace": peer.0, "name": peer.1},
                    "clientId": if client.1 == "curl" { Value::Null } else { json!(id(client.1, client.0)) },
                    "serverId": id(server.1, server.0), "secured": secured},
           "metrics": metrics("10", "0", Some(["1", "2", "3", "4"]), "1")})
}

fn split_list() -> Value {
    let backend = |leaf: &str, weight: u64, m: Value| {
        json!({"kind": "TrafficMetrics", "window": "1m0s",
               "metadata": {"name": "web", "namespace": "demo"},
               "resource": {"kind": "TrafficSplit", "namespace": "demo", "name": "web"},
               "edge": {"direction": "from", "side": "client", "resource": null},
               "backend": {"apex": "web", "name": leaf, "weight": weight}, "metrics": m})
    };
    list(vec![
        backend(
            "web-v1",
            900,
            metrics("540", "0", Some(["10", "18", "20", "25"]), "0"),
        ),
        backend(
            "web-v2",
            100,
            metrics("57", "3", Some(["11", "30", "45", "60"]), "0"),
        ),
    ])
}

pub(super) fn scope(output: TableOutput) -> ScopeArgs {
    ScopeArgs {
        all_namespaces: false,
        time_window: None,
        selector: None,
        output,
    }
}

fn rows_of(v: Value) -> Vec<StatRow> {
    let mut rows: Vec<StatRow> = items(v).iter().map(StatRow::of).collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

#[test]
fn quantities() {
    assert_eq!(table::quantity("12"), Some(12.0));
    assert_eq!(table::quantity("12500m"), Some(12.5));
    assert_eq!(table::quantity("3308m"), Some(3.308));
    assert_eq!(table::quantity("1.5k"), Some(1500.0));
    assert_eq!(table::quantity("2Ki"), Some(2048.0));
    assert_eq!(table::quantity("1e3"), Some(1000.0));
    assert_eq!(table::quantity("x"), None);
    assert_eq!(table::quantity("1q"), None);
}

#[test]
fn stat_table_of_deployments() {
    let rows = rows_of(deployments());
    assert_eq!(
        table::stat_table(&rows, false, false),
        "\
NAME     MESHED   SUCCESS   RPS      LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
client   1/1      -         -        -             -             -             0
legacy   0/1      100.00%   0.1rps   2.5ms         4ms           5ms           0
web      2/2      97.78%    1.5rps   13ms          48ms          98ms          3
"
    );
    let wide = table::stat_table(&rows, true, true);
    let mut lines = wide.lines();
    assert_eq!(
        lines.next().unwrap(),
        "NAMESPACE   NAME     MESHED   SUCCESS   RPS      LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN   SUCCESS_COUNT   FAILURE_COUNT   LATENCY_P90"
    );
    assert_eq!(
        lines.nth(2).unwrap(),
        "demo        web      2/2      97.78%    1.5rps   13ms          48ms          98ms          3          44              1               20ms"
    );
}

#[test]
fn namespaces_have_no_namespace_column() {
    let ns = list(vec![resource_item(
        "Namespace",
        "demo",
        "demo",
        (3, 4),
        metrics("10", "0", Some(["1", "2", "3", "4"]), "2"),
    )]);
    let rows = rows_of(ns);
    assert_eq!(rows[0].namespace, None);
    assert!(table::stat_table(&rows, true, false).starts_with("NAME   MESHED"));
}

#[test]
fn stat_json_has_numbers_and_nulls() {
    let v: Value = serde_json::from_str(&table::json(&rows_of(deployments()))).unwrap();
    let web = &v[2];
    assert_eq!(web["name"], "web");
    assert_eq!(web["namespace"], "demo");
    assert_eq!(web["kind"], "Deployment");
    assert_eq!(web["meshed"], 2);
    assert_eq!(web["total"], 2);
    assert!((web["success"].as_f64().unwrap() - 44.0 / 45.0).abs() < 1e-9);
    assert_eq!(web["rps"], 1.5);
    assert_eq!(web["latency_ms_p50"], 12.5);
    assert_eq!(web["latency_ms_p99"], 97.6);
    assert_eq!(web["tcp_open_connections"], 3.0);
    assert_eq!(web["window_seconds"], 30.0);
    let client = &v[0];
    assert!(client["success"].is_null() && client["latency_ms_p95"].is_null());
    assert_eq!(client["rps"], 0.0);
}

#[test]
fn split_table_has_one_row_per_backend() {
    let rows: Vec<SplitRow> = items(split_list()).iter().map(SplitRow::of).collect();
    assert_eq!(
        table::split_table(&rows, false, false),
        "\
NAME   APEX   LEAF     WEIGHT   SUCCESS   RPS      LATENCY_P50   LATENCY_P95   LATENCY_P99
web    web    web-v1   900      100.00%   9.0rps   10ms          20ms          25ms
web    web    web-v2   100      95.00%    1.0rps   11ms          45ms          60ms
"
    );
    let v: Value = serde_json::from_str(&table::json(&rows)).unwrap();
    assert_eq!(v[1]["leaf"], "web-v2");
    assert_eq!(v[1]["weight"], 100);
    assert_eq!(v[1]["apex"], "web");
}

#[test]
fn edges_are_oriented_deduplicated_and_marked_secured() {
    let answers = [
        // client's edges, then web's: client → web seen from both ends
        list(vec![edge_item(
            ("demo", "client"),
            "to",
            ("demo", "web"),
            true,
        )]),
        list(vec![
            edge_item(("demo", "web"), "from", ("demo", "client"), true),
            edge_item(("demo", "web"), "from", ("other", "curl"), false),
            edge_item(("demo", "web"), "to", ("demo", "db"), true),
        ]),
    ];
    let rows = table::dedup_edges(
        answers
            .into_iter()
            .flat_map(items)
            .filter_map(|i| EdgeRow::of(&i))
            .collect(),
    );
    assert_eq!(
        table::edge_table(&rows, false),
        "\
SRC      DST   SRC_NS   DST_NS   CLIENT_ID     SERVER_ID   SECURED
client   web   demo     demo     client.demo   web.demo    √
web      db    demo     demo     web.demo      db.demo     √
curl     web   other    demo     -             web.demo    -
"
    );
    let wide = table::edge_table(&rows, true);
    assert!(
        wide.contains("client.demo.serviceaccount.identity.tulle.cluster.local"),
        "{wide}"
    );
    let v: Value = serde_json::from_str(&table::json(&rows)).unwrap();
    assert_eq!(v[2]["src"], "curl");
    assert_eq!(v[2]["client_id"], Value::Null);
    assert_eq!(v[2]["secured"], false);
    assert_eq!(v[0]["rps"].as_f64().unwrap(), 10.0 / 30.0);
}

#[test]
fn cli_parses_kinds_and_flags() {
    let parse = |argv: &[&str]| {
        let mut a = vec!["tulle"];
        a.extend_from_slice(argv);
        Cli::try_parse_from(a)
    };
    let cli = parse(&[
        "stat", "deploy", "-n", "demo", "-t", "1m", "-l", "app=web", "-o", "wide",
    ])
    .unwrap();
    let Command::Stat(a) = cli.command else {
        panic!("not stat")
    };
    assert_eq!(a.target.resource, Resource::Kind(Kind::Deployment));
    assert_eq!(cli.global.namespace.as_deref(), Some("demo"));
    assert_eq!(a.scope.time_window, Some(Duration::from_secs(60)));
    assert_eq!(a.scope.output, TableOutput::Wide);
    for (kind, want) in [
        ("ns", Resource::Kind(Kind::Namespace)),
        ("po", Resource::Kind(Kind::Pod)),
        ("Deployments", Resource::Kind(Kind::Deployment)),
        ("ds", Resource::Kind(Kind::DaemonSet)),
        ("statefulset", Resource::Kind(Kind::StatefulSet)),
        ("jobs", Resource::Kind(Kind::Job)),
        ("ts", Resource::TrafficSplit),
        ("trafficsplits", Resource::TrafficSplit),
    ] {
        assert_eq!(parse_target(kind).unwrap().resource, want, "{kind}");
    }
    let t = parse_target("deploy/web").unwrap();
    assert_eq!(t.name.as_deref(), Some("web"));
    for bad in [
        &["stat", "services"][..],
        &["stat", "deploy", "-t", "0s"],
        &["stat", "deploy", "-t", "2d"],
        &["edges", "ts"],
        &["stat", "deploy", "-o", "yaml"],
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad:?}");
    }
    assert!(
        parse(&["stat", "svc"])
            .unwrap_err()
            .to_string()
            .contains("deployments (deploy)")
    );
}

#[test]
fn query_paths() {
    let q = |t: &str, name: Option<&str>, all: bool| {
        let mut s = scope(TableOutput::Table);
        s.all_namespaces = all;
        s.time_window = Some(Duration::from_secs(300));
        s.selector = Some("app=web,tier!=db".into());
        Query::new(
            &parse_target(t).unwrap(),
            name.map(str::to_string).as_ref(),
            &s,
            "demo",
        )
    };
    let path = |t, name, all| q(t, name, all).unwrap().path();
    assert_eq!(path("deploy", None, false), "/namespaces/demo/deployments");
    assert_eq!(
        path("deploy", Some("web"), false),
        "/namespaces/demo/deployments/web"
    );
    assert_eq!(
        path("deploy/web", None, false),
        "/namespaces/demo/deployments/web"
    );
    assert_eq!(path("deploy", None, true), "/deployments");
    assert_eq!(path("ns", None, false), "/namespaces");
    assert_eq!(path("ns", Some("demo"), false), "/namespaces/demo");
    assert_eq!(path("ts", None, false), "/namespaces/demo/trafficsplits");
    assert_eq!(path("ts", None, true), "/trafficsplits");
    assert_eq!(
        q("po", None, false).unwrap().params(true),
        "?t=300s&labelSelector=app%3Dweb%2Ctier%21%3Ddb"
    );
    assert_eq!(q("po", None, false).unwrap().params(false), "?t=300s");
    let e = q("deploy", Some("web"), true).unwrap_err();
    assert_eq!(e.exit_code(), crate::exit::CONFIG);
    assert!(q("deploy/web", Some("web"), false).is_err());
}
