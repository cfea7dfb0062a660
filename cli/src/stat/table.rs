//! Rows from the API's `TrafficMetrics` items, and their kubectl-style tables and JSON.
//!
//! The shapes read (see controller/src/metrics_api/objects.rs): `metadata.{name,namespace}`,
//! `window` (a Go duration), `resource` (`{kind, namespace, name}`), `pods.{meshed,total}`,
//! `metrics[] = {name, unit?, value?}` with Kubernetes quantities (`12500m` = 12.5), `edge`
//! (`direction` `to`/`from`, the peer `resource`, `clientId`, `serverId`, `secured`) and, for
//! TrafficSplits, `backend.{apex,name,weight}`.

use serde::Serialize;
use serde_json::Value;

/// Parses a Kubernetes quantity (`12`, `12500m`, `1.5k`, `2Ki`, `1e3`).
pub fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    // Fractions divide, so that `3308m` is 3.308 and not 3.3080000000000003.
    let divide = match suffix {
        "n" => 1e9,
        "u" => 1e6,
        "m" => 1e3,
        _ => 1.0,
    };
    let scale = match suffix {
        "" | "n" | "u" | "m" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * scale / divide)
}

/// The golden metrics of one item.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Golden {
    /// Success rate, 0 to 1; `None` without requests.
    pub success: Option<f64>,
    /// Requests per second over the window.
    pub rps: f64,
    /// Latency quantiles in ms (absent without requests).
    pub latency_ms_p50: Option<f64>,
    /// p90.
    pub latency_ms_p90: Option<f64>,
    /// p95.
    pub latency_ms_p95: Option<f64>,
    /// p99.
    pub latency_ms_p99: Option<f64>,
    /// Open TCP connections.
    pub tcp_open_connections: f64,
    /// Successful responses in the window.
    pub success_count: f64,
    /// Failed responses in the window.
    pub failure_count: f64,
    /// The window, in seconds.
    pub window_seconds: f64,
}

impl Golden {
    /// Reads `metrics` and `window` of an item.
    pub fn of(item: &Value) -> Self {
        let metric = |name: &str| {
            item["metrics"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["name"] == name))
                .and_then(|m| m["value"].as_str())
                .and_then(quantity)
        };
        let window_seconds = item["window"]
            .as_str()
            .and_then(|w| crate::args::parse_duration(w).ok())
            .map(|d| d.as_secs_f64())
            .filter(|s| *s > 0.0)
            .unwrap_or(30.0);
        let success_count = metric("success_count").unwrap_or(0.0);
        let failure_count = metric("failure_count").unwrap_or(0.0);
        let total = success_count + failure_count;
        Golden {
            success: (total > 0.0).then(|| success_count / total),
            rps: total / window_seconds,
            latency_ms_p50: metric("p50_response_latency"),
            latency_ms_p90: metric("p90_response_latency"),
            latency_ms_p95: metric("p95_response_latency"),
            latency_ms_p99: metric("p99_response_latency"),
            tcp_open_connections: metric("tcp_open_connections").unwrap_or(0.0),
            success_count,
            failure_count,
            window_seconds,
        }
    }

    /// Whether any request was seen.
    pub fn has_traffic(&self) -> bool {
        self.success_count + self.failure_count > 0.0
    }
}

/// `98.50%`, `-` without requests.
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0))
}

/// `1.5rps` (two decimals below 0.1), `-` without requests.
pub fn rps(g: &Golden) -> String {
    if !g.has_traffic() {
        "-".into()
    } else if g.rps < 0.1 {
        format!("{:.2}rps", g.rps)
    } else {
        format!("{:.1}rps", g.rps)
    }
}

/// `12ms`, `2.5ms` below 10 ms, `-` when absent.
pub fn latency(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 10.0 && (v - v.round()).abs() >= 0.05 => format!("{v:.1}ms"),
        Some(v) => format!("{}ms", v.round() as u64),
    }
}

/// A count: an integer, or one decimal when the API extrapolated a fraction.
pub fn count(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{}", v.round() as u64)
    } else {
        format!("{v:.1}")
    }
}

/// A window as a short duration: `30s`, `5m`, `1h`, `90s`.
pub fn window(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// One row of `tulle stat <kind>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatRow {
    /// The namespace (absent for namespaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Deployment`, `Namespace`, ...
    pub kind: String,
    /// The name.
    pub name: String,
    /// Meshed pods.
    pub meshed: u64,
    /// All pods.
    pub total: u64,
    /// The metrics.
    #[serde(flatten)]
    pub golden: Golden,
}

impl StatRow {
    /// From a resource item.
    pub fn of(item: &Value) -> Self {
        let r = &item["resource"];
        let kind = r["kind"].as_str().unwrap_or_default().to_string();
        let namespace = if kind == "Namespace" {
            None
        } else {
            r["namespace"]
                .as_str()
                .or(item["metadata"]["namespace"].as_str())
                .map(str::to_string)
        };
        StatRow {
            namespace,
            name: r["name"]
                .as_str()
                .or(item["metadata"]["name"].as_str())
                .unwrap_or_default()
                .to_string(),
            kind,
            meshed: item["pods"]["meshed"].as_u64().unwrap_or(0),
            total: item["pods"]["total"].as_u64().unwrap_or(0),
            golden: Golden::of(item),
        }
    }
}

/// One row of `tulle stat trafficsplit`: one backend of a split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitRow {
    /// The namespace.
    pub namespace: String,
    /// The TrafficSplit.
    pub name: String,
    /// Its apex Service.
    pub apex: String,
    /// This backend Service.
    pub leaf: String,
    /// Its weight.
    pub weight: u64,
    /// The metrics of the traffic sent to it.
    #[serde(flatten)]
    pub golden: Golden,
}

impl SplitRow {
    /// From a TrafficSplit backend item.
    pub fn of(item: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        SplitRow {
            namespace: s(&item["metadata"]["namespace"]),
            name: s(&item["metadata"]["name"]),
            apex: s(&item["backend"]["apex"]),
            leaf: s(&item["backend"]["name"]),
            weight: item["backend"]["weight"].as_u64().unwrap_or(0),
            golden: Golden::of(item),
        }
    }
}

/// One edge: traffic from `src` to `dst`, measured at the client.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeRow {
    /// The kind of both ends.
    pub kind: String,
    /// The client.
    pub src: String,
    /// The client's namespace.
    pub src_ns: String,
    /// The server.
    pub dst: String,
    /// The server's namespace.
    pub dst_ns: String,
    /// The client's mesh identities (comma-separated), if meshed.
    pub client_id: Option<String>,
    /// The server's mesh identity.
    pub server_id: Option<String>,
    /// All of it was mTLS.
    pub secured: bool,
    /// The metrics of the edge.
    #[serde(flatten)]
    pub golden: Golden,
}

fn end(r: &Value) -> (String, String) {
    let name = r["name"].as_str().unwrap_or_default().to_string();
    let ns = if r["kind"] == "Namespace" {
        name.clone()
    } else {
        r["namespace"].as_str().unwrap_or_default().to_string()
    };
    (name, ns)
}

impl EdgeRow {
    /// From an edge item (`None` when it has no peer).
    pub fn of(item: &Value) -> Option<Self> {
        let e = &item["edge"];
        let peer = &e["resource"];
        if !peer.is_object() {
            return None;
        }
        let (of, peer_end) = (end(&item["resource"]), end(peer));
        let ((src, src_ns), (dst, dst_ns)) = if e["direction"] == "to" {
            (of, peer_end)
        } else {
            (peer_end, of)
        };
        let id = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        Some(EdgeRow {
            kind: item["resource"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            src,
            src_ns,
            dst,
            dst_ns,
            client_id: id(&e["clientId"]),
            server_id: id(&e["serverId"]),
            secured: e["secured"].as_bool().unwrap_or(false),
            golden: Golden::of(item),
        })
    }

    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.src_ns, &self.src, &self.dst_ns, &self.dst)
    }
}

/// Sorts edges and keeps one per (src, dst): listing every resource's edges sees each edge
/// from both ends.
pub fn dedup_edges(mut rows: Vec<EdgeRow>) -> Vec<EdgeRow> {
    rows.sort_by(|a, b| a.key().cmp(&b.key()));
    rows.dedup_by(|a, b| a.key() == b.key());
    rows
}

/// `web.demo` from `web.demo.serviceaccount.identity.tulle.cluster.local` (each of a
/// comma-separated list); other names unchanged.
pub fn short_id(id: &str) -> String {
    id.split(',')
        .map(|one| match one.find(".serviceaccount.") {
            Some(i) => &one[..i],
            None => one,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A kubectl-style table: upper-case headers, columns left-aligned and three spaces apart,
/// no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w - c.chars().count() + 3));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Pretty JSON with a trailing newline.
pub fn json<T: Serialize>(rows: &T) -> String {
    serde_json::to_string_pretty(rows).expect("rows serialize") + "\n"
}

/// The columns every metrics table ends with.
fn golden_cells(g: &Golden) -> Vec<String> {
    vec![
        percent(g.success),
        rps(g),
        latency(g.latency_ms_p50),
        latency(g.latency_ms_p95),
        latency(g.latency_ms_p99),
    ]
}

/// The table of `tulle stat <kind>`: NAMESPACE with `all_namespaces`, wide adds the counts
/// and p90.
pub fn stat_table(rows: &[StatRow], all_namespaces: bool, wide: bool) -> String {
    let mut headers = vec!["NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50"];
    headers.extend(["LATENCY_P95", "LATENCY_P99", "TCP_CONN"]);
    if wide {
        headers.extend(["SUCCESS_COUNT", "FAILURE_COUNT", "LATENCY_P90"]);
    }
    let ns_column = all_namespaces && rows.iter().any(|r| r.namespace.is_some());
    if ns_column {
        headers.insert(0, "NAMESPACE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let g = &r.golden;
            let mut c = vec![r.name.clone(), format!("{}/{}", r.meshed, r.total)];
            c.extend(golden_cells(g));
            c.push(count(g.tcp_open_connections));
            if wide {
                c.push(count(g.success_count));
                c.push(count(g.failure_count));
                c.push(latency(g.latency_ms_p90));
            }
            if ns_column {
                c.insert(0, r.namespace.clone().unwrap_or_default());
            }
            c
        })
        .collect();
    render(&headers, &cells)
}

/// The table of `tulle stat trafficsplit`; wide adds the counts.
pub fn split_table(rows: &[SplitRow], all_namespaces: bool, wide: bool) -> String {
    let mut headers = vec!["NAME", "APEX", "LEAF", "WEIGHT", "SUCCESS", "RPS"];
    headers.extend(["LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]);
    if wide {
        headers.extend(["SUCCESS_COUNT", "FAILURE_COUNT"]);
    }
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.name.clone(),
                r.apex.clone(),
                r.leaf.clone(),
                r.weight.to_string(),
            ];
            c.extend(golden_cells(&r.golden));
            if wide {
                c.push(count(r.golden.success_count));
                c.push(count(r.golden.failure_count));
            }
            if all_namespaces {
                c.insert(0, r.namespace.clone());
            }
            c
        })
        .collect();
    render(&headers, &cells)
}

/// The table of `tulle edges`: mesh identities short (`sa.ns`), in full with `wide`; SECURED
/// is `√` when all of the edge's traffic was mTLS.
pub fn edge_table(rows: &[EdgeRow], wide: bool) -> String {
    let headers = [
        "SRC",
        "DST",
        "SRC_NS",
        "DST_NS",
        "CLIENT_ID",
        "SERVER_ID",
        "SECURED",
    ];
    let id = |v: &Option<String>| match v {
        None => "-".to_string(),
        Some(s) if wide => s.clone(),
        Some(s) => short_id(s),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.src.clone(),
                r.dst.clone(),
                r.src_ns.clone(),
                r.dst_ns.clone(),
                id(&r.client_id),
                id(&r.server_id),
                if r.secured { "√" } else { "-" }.to_string(),
            ]
        })
        .collect();
    render(&headers, &cells)
}
