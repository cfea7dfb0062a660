//! The results: `data-plane.json` (the schema of issue 2, plus a few extra fields) and
//! `data-plane.md` (a table with ratios against `direct` and the targets).
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// A compared figure: its name, how to read it from a row, and whether higher is better.
type Figure = (&'static str, fn(&Row) -> Option<f64>, bool);

/// One path at one load.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub path: String,
    /// "1000", "10000" or "max".
    pub load: String,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub rps: Option<f64>,
    pub cpu_us_per_req_per_proxy: Option<f64>,
    pub rss_kb_per_proxy: Option<f64>,
    pub rss_kb_idle_per_proxy: Option<f64>,
    // Extras.
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub errors: Option<u64>,
    pub connections: usize,
    /// Per proxy, outbound first.
    pub cpu_us_per_req_each: Vec<f64>,
    pub rss_kb_each: Vec<u64>,
    pub client_cpu_us_per_req: Option<f64>,
    pub backend_cpu_us_per_req: Option<f64>,
    /// p99 of how late the generator sent requests (its own accuracy), µs.
    pub send_lag_p99_us: Option<f64>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub machine: String,
    pub load_average_start: String,
    pub load_average_end: String,
    pub quick: bool,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// One row per (path, load) from several rounds: each figure is the median over the rounds
/// that measured it, errors are summed, per-proxy vectors come from the median-rps round.
pub fn median_rows(rounds: &[Vec<Row>]) -> Vec<Row> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    if rounds.len() == 1 {
        return first.clone();
    }
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rounds.iter().flatten() {
        let key = (r.path.clone(), r.load.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(path, load)| {
            let same: Vec<&Row> = rounds
                .iter()
                .flatten()
                .filter(|r| r.path == path && r.load == load)
                .collect();
            let med = |f: fn(&Row) -> Option<f64>| median(same.iter().filter_map(|r| f(r)));
            let mut by_rps = same.clone();
            by_rps.sort_by(|a, b| a.rps.unwrap_or(0.0).total_cmp(&b.rps.unwrap_or(0.0)));
            let mut row = by_rps[by_rps.len() / 2].clone();
            row.p50_us = med(|r| r.p50_us);
            row.p90_us = med(|r| r.p90_us);
            row.p99_us = med(|r| r.p99_us);
            row.p999_us = med(|r| r.p999_us);
            row.max_us = med(|r| r.max_us);
            row.rps = med(|r| r.rps);
            row.cpu_us_per_req_per_proxy = med(|r| r.cpu_us_per_req_per_proxy);
            row.rss_kb_per_proxy = med(|r| r.rss_kb_per_proxy);
            row.rss_kb_idle_per_proxy = med(|r| r.rss_kb_idle_per_proxy);
            row.client_cpu_us_per_req = med(|r| r.client_cpu_us_per_req);
            row.backend_cpu_us_per_req = med(|r| r.backend_cpu_us_per_req);
            row.send_lag_p99_us = med(|r| r.send_lag_p99_us);
            row.errors = Some(same.iter().filter_map(|r| r.errors).sum());
            row
        })
        .collect()
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Writes both files into `dir`.
pub fn write(dir: &Path, results: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(dir.join("data-plane.json"), json + "\n")?;
    std::fs::write(dir.join("data-plane.md"), markdown(results))?;
    Ok(())
}

fn f(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

fn find<'a>(r: &'a Results, path: &str, load: &str) -> Option<&'a Row> {
    r.rows.iter().find(|x| x.path == path && x.load == load)
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Data plane: HTTP/1.1, mTLS between the proxies\n");
    let _ = writeln!(
        s,
        "{} · {} · {}run (warm-up {} s, window {} s per load) · load average at start `{}`, at end `{}`\n",
        r.date,
        r.machine,
        if r.quick { "quick " } else { "full " },
        r.warmup_s,
        r.duration_s,
        r.load_average_start,
        r.load_average_end
    );
    let _ = writeln!(
        s,
        "Latency in µs from the intended send time (open loop at 1000/10000 req/s; `max` is closed loop). Δ = added over `direct` at the same load. CPU and RSS are per proxy (mean of the pair; outbound/inbound in the JSON).\n"
    );
    let _ = writeln!(
        s,
        "| path | load | p50 | p90 | p99 | p99.9 | rps | errors | Δp50 | Δp99 | rps / direct | CPU µs/req/proxy | RSS kB/proxy | idle RSS kB/proxy | client CPU µs/req |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for row in &r.rows {
        let d = find(r, "direct", &row.load);
        let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let ratio = match (row.rps, d.and_then(|d| d.rps)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.path,
            row.load,
            f(row.p50_us),
            f(row.p90_us),
            f(row.p99_us),
            f(row.p999_us),
            f(row.rps),
            row.errors.map(|e| e.to_string()).unwrap_or("–".into()),
            f(delta(row.p50_us, d.and_then(|d| d.p50_us))),
            f(delta(row.p99_us, d.and_then(|d| d.p99_us))),
            ratio,
            f(row.cpu_us_per_req_per_proxy),
            f(row.rss_kb_per_proxy),
            f(row.rss_kb_idle_per_proxy),
            f(row.client_cpu_us_per_req),
        );
    }
    let _ = writeln!(s, "\n## Targets of issue 2 (tulle pair)\n");
    let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
    for (name, measured, met) in targets(r) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {name} | {measured} | {verdict} |");
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

type Target = (String, String, Option<bool>);

/// Each target of the issue: (description, measured value, met?).
pub fn targets(r: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let get = |p: &str, l: &str, f: fn(&Row) -> Option<f64>| find(r, p, l).and_then(f);
    let mut add = |name: &str, measured: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| {
        out.push((
            name.to_string(),
            measured
                .map(|v| format!("{v:.2} {unit}"))
                .unwrap_or("–".into()),
            measured.map(ok),
        ));
    };
    let delta =
        |l: &str, f: fn(&Row) -> Option<f64>| Some(get("tulle", l, f)? - get("direct", l, f)?);
    add(
        "p50 added at 1,000 req/s ≤ 150 µs",
        delta("1000", |x| x.p50_us),
        "µs",
        &|v| v <= 150.0,
    );
    add(
        "p99 added at 1,000 req/s ≤ 300 µs",
        delta("1000", |x| x.p99_us),
        "µs",
        &|v| v <= 300.0,
    );
    let ratio = get("tulle", "max", |x| x.rps)
        .zip(get("direct", "max", |x| x.rps))
        .map(|(a, b)| a / b);
    add(
        "max throughput ≥ 0.40 × direct",
        ratio,
        "× direct",
        &|v| v >= 0.40,
    );
    add(
        "CPU at saturation ≤ 12 µs/req/proxy",
        get("tulle", "max", |x| x.cpu_us_per_req_per_proxy),
        "µs",
        &|v| v <= 12.0,
    );
    let split_ratio = |l: &str, f: fn(&Row) -> Option<f64>| {
        get("tulle-split", l, f)
            .zip(get("tulle", l, f))
            .map(|(a, b)| a / b)
    };
    add(
        "tulle-split max throughput ≥ 0.95 × tulle",
        split_ratio("max", |x| x.rps),
        "× tulle",
        &|v| v >= 0.95,
    );
    add(
        "tulle-split p50 at 1,000 req/s ≤ 1.05 × tulle",
        split_ratio("1000", |x| x.p50_us),
        "× tulle",
        &|v| v <= 1.05,
    );
    let authz_ratio = |l: &str, f: fn(&Row) -> Option<f64>| {
        get("tulle-authz", l, f)
            .zip(get("tulle", l, f))
            .map(|(a, b)| a / b)
    };
    add(
        "tulle-authz max throughput ≥ 0.95 × tulle",
        authz_ratio("max", |x| x.rps),
        "× tulle",
        &|v| v >= 0.95,
    );
    add(
        "tulle-authz p50 at 1,000 req/s ≤ 1.05 × tulle",
        authz_ratio("1000", |x| x.p50_us),
        "× tulle",
        &|v| v <= 1.05,
    );
    add(
        "idle RSS ≤ 10 MiB/proxy",
        get("tulle", "1000", |x| x.rss_kb_idle_per_proxy),
        "kB",
        &|v| v <= 10240.0,
    );
    add(
        "RSS at 10,000 req/s ≤ 20 MiB/proxy",
        get("tulle", "10000", |x| x.rss_kb_per_proxy),
        "kB",
        &|v| v <= 20480.0,
    );
    // Beat the haproxy pair on every figure (lower is better except rps).
    for load in ["1000", "10000", "max"] {
        let figures: [Figure; 6] = [
            ("p50", |x| x.p50_us, false),
            ("p90", |x| x.p90_us, false),
            ("p99", |x| x.p99_us, false),
            ("rps", |x| x.rps, true),
            ("CPU µs/req/proxy", |x| x.cpu_us_per_req_per_proxy, false),
            ("RSS kB/proxy", |x| x.rss_kb_per_proxy, false),
        ];
        for (fname, fx, higher_better) in figures {
            if fname == "rps" && load != "max" {
                continue;
            }
            let (t, h) = (get("tulle", load, fx), get("haproxy", load, fx));
            let met = t
                .zip(h)
                .map(|(t, h)| if higher_better { t > h } else { t < h });
            out.push((
                format!("beats haproxy: {fname} at {load}"),
                format!("tulle {} vs haproxy {}", f(t), f(h)),
                met,
            ));
        }
    }
    let (t, h) = (
        get("tulle", "1000", |x| x.rss_kb_idle_per_proxy),
        get("haproxy", "1000", |x| x.rss_kb_idle_per_proxy),
    );
    out.push((
        "beats haproxy: idle RSS".into(),
        format!("tulle {} vs haproxy {}", f(t), f(h)),
        t.zip(h).map(|(t, h)| t < h),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, load: &str, p50: f64, rps: f64, errors: u64) -> Row {
        Row {
            path: path.into(),
            load: load.into(),
            p50_us: Some(p50),
            p90_us: None,
            p99_us: Some(p50 * 2.0),
            rps: Some(rps),
            cpu_us_per_req_per_proxy: None,
            rss_kb_per_proxy: None,
            rss_kb_idle_per_proxy: None,
            p999_us: None,
            max_us: None,
            errors: Some(errors),
            connections: 16,
            cpu_us_per_req_each: vec![rps],
            rss_kb_each: vec![],
            client_cpu_us_per_req: None,
            backend_cpu_us_per_req: None,
            send_lag_p99_us: None,
        }
    }

    #[test]
    fn rounds_merge_into_medians_per_path_and_load() {
        let rounds = vec![
            vec![
                row("tulle", "max", 300.0, 10.0, 1),
                row("direct", "max", 100.0, 50.0, 0),
            ],
            vec![
                row("tulle", "max", 100.0, 30.0, 0),
                row("direct", "max", 120.0, 40.0, 0),
            ],
            vec![row("tulle", "max", 200.0, 20.0, 2)],
        ];
        let rows = median_rows(&rounds);
        assert_eq!(rows.len(), 2);
        let tulle = &rows[0];
        assert_eq!(
            (tulle.path.as_str(), tulle.p50_us, tulle.p99_us),
            ("tulle", Some(200.0), Some(400.0))
        );
        assert_eq!((tulle.rps, tulle.errors), (Some(20.0), Some(3)));
        // Per-proxy vectors come from the median-rps round.
        assert_eq!(tulle.cpu_us_per_req_each, vec![20.0]);
        // Two rounds: the mean of the middle two.
        assert_eq!(rows[1].p50_us, Some(110.0));
        assert_eq!(median_rows(&rounds[..1]).len(), 2);
    }
}
