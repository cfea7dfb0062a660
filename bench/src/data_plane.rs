//! The `data-plane` benchmark: every path at every load, in one run, then the report.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{DataPlaneArgs, PathKind};
use crate::loadgen::{self, LoadSpec};
use crate::paths::{self, Ctx};
use crate::procs::{self, Proc};
use crate::report::{self, Results, Row};
use crate::signals::{self, Interrupted};
use crate::{certs, configs, tools};

/// Runs the benchmark and writes the results.
pub fn run(args: &DataPlaneArgs) -> anyhow::Result<()> {
    signals::install()?;
    let warmup = args.warmup.unwrap_or(if args.quick { 1.5 } else { 3.0 });
    let duration = args.duration.unwrap_or(if args.quick { 7.0 } else { 20.0 });
    let load_average_start = loadavg();
    let (nginx, haproxy) = tools::ensure_nginx_haproxy()?;
    let kinds: Vec<PathKind> = if args.paths.is_empty() {
        PathKind::ALL.to_vec()
    } else {
        args.paths.clone()
    };
    let mut notes = Vec::new();
    let tulle = if kinds.iter().any(|k| {
        matches!(
            k,
            PathKind::Tulle | PathKind::TulleSplit | PathKind::TulleAuthz
        )
    }) {
        match args
            .proxy_bin
            .clone()
            .map(Ok)
            .unwrap_or_else(tools::build_tulle_proxy)
        {
            Ok(b) => Some(b),
            Err(e) => {
                notes.push(format!("tulle path not measured: {e:#}"));
                None
            }
        }
    } else {
        None
    };

    let tmp = tempfile::Builder::new().prefix("tulle-bench-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let certs = certs::generate(&dir)?;
    let (mut backend, backend_addr) = paths::start_backend(&dir, &nginx)?;
    let ctx = Ctx {
        dir: dir.clone(),
        certs,
        backend: backend_addr,
        nginx,
        haproxy,
        tulle,
        tulle_threads: args.proxy_threads,
    };
    let secs = |s: f64| Duration::from_secs_f64(s);
    let mut rounds: Vec<Vec<Row>> = Vec::new();
    for round in 1..=args.rounds {
        let mut rows = Vec::new();
        for &kind in &kinds {
            signals::check()?;
            eprintln!(
                "tulle-bench: path {} (round {round}/{})",
                kind.name(),
                args.rounds
            );
            match measure_path(kind, &ctx, &mut backend, args, secs(warmup), secs(duration)) {
                Ok(r) => rows.extend(r),
                Err(e) if e.is::<Interrupted>() => return Err(e),
                Err(e) => {
                    eprintln!("tulle-bench: {} path failed: {e:#}", kind.name());
                    notes.push(format!(
                        "{} path not measured in round {round}: {e:#}",
                        kind.name()
                    ));
                }
            }
        }
        rounds.push(rows);
    }
    drop(backend);
    let rows = report::median_rows(&rounds);
    if args.rounds > 1 {
        notes.push(format!(
            "{} interleaved rounds; every figure is the median over the rounds (errors: the sum).",
            args.rounds
        ));
    }
    notes.push(format!(
        "Load generator: built in (one thread, timerfd-paced, {} connections for fixed rates, {} for max); backend: nginx `return 200`, 1 worker; every proxy: 1 worker (tulle: TULLE_PROXY_WORKER_THREADS={}); no CPU pinning.",
        args.connections, args.max_connections, args.proxy_threads
    ));
    notes.push("nginx pair: HTTP/1.1 over mTLS between the proxies (pooled keep-alive upstream); haproxy pair and tulle: HTTP/2 over mTLS between the proxies.".into());
    let results = Results {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: machine(),
        load_average_start,
        load_average_end: loadavg(),
        quick: args.quick,
        warmup_s: warmup,
        duration_s: duration,
        rows,
        notes,
    };
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| tools::workspace_root().join("bench").join("results"));
    report::write(&out_dir, &results)?;
    println!("{}", report::markdown(&results));
    eprintln!(
        "tulle-bench: wrote {0}/data-plane.json and {0}/data-plane.md",
        out_dir.display()
    );
    if args.keep_temp {
        let kept: PathBuf = tmp.keep();
        eprintln!("tulle-bench: kept {}", kept.display());
    }
    Ok(())
}

fn measure_path(
    kind: PathKind,
    ctx: &Ctx,
    backend: &mut Proc,
    args: &DataPlaneArgs,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Vec<Row>> {
    let mut path = paths::start(kind, ctx)?;
    signals::sleep(Duration::from_secs(1))?;
    let idle: Vec<u64> = path
        .proxies
        .iter()
        .map(|p| procs::rss_kb(p.pid()))
        .collect::<Result<_, _>>()?;
    let mut loads: Vec<Option<u64>> = args.rates.iter().map(|r| Some(*r)).collect();
    loads.push(None);
    let mut rows = Vec::new();
    for rate in loads {
        let spec = LoadSpec {
            addr: path.entry,
            host: configs::AUTHORITY.into(),
            connections: if rate.is_some() {
                args.connections
            } else {
                args.max_connections
            },
            rate,
            start: Instant::now() + Duration::from_millis(200),
            warmup,
            duration,
        };
        let m = measure_load(&spec, &mut path.proxies, backend)?;
        let load = rate.map(|r| r.to_string()).unwrap_or_else(|| "max".into());
        let row = m.row(kind, &load, &spec, &idle);
        eprintln!(
            "tulle-bench:   {:>7} {:>5}: p50 {:>7} µs  p99 {:>7} µs  {:>8.0} rps  errors {}  cpu/req/proxy {:?}",
            kind.name(),
            load,
            row.p50_us.unwrap_or(0.0),
            row.p99_us.unwrap_or(0.0),
            row.rps.unwrap_or(0.0),
            m.outcome.errors,
            row.cpu_us_per_req_each,
        );
        if !m.outcome.error_samples.is_empty() {
            eprintln!(
                "tulle-bench:     first errors: {:?}",
                m.outcome.error_samples
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

struct Measured {
    outcome: loadgen::LoadOutcome,
    cpu_s_proxies: Vec<f64>,
    rss_max: Vec<u64>,
    cpu_s_backend: f64,
    cpu_s_client: f64,
}

fn measure_load(
    spec: &LoadSpec,
    proxies: &mut [Proc],
    backend: &mut Proc,
) -> anyhow::Result<Measured> {
    let generator = loadgen::spawn(spec.clone());
    let me = std::process::id();
    let ticks = |pids: &[u32]| -> std::io::Result<Vec<u64>> {
        pids.iter().map(|p| procs::cpu_ticks(*p)).collect()
    };
    let mut pids: Vec<u32> = proxies.iter().map(Proc::pid).collect();
    pids.push(backend.pid());
    pids.push(me);
    let sampled = (|| -> anyhow::Result<(Vec<u64>, Vec<u64>, Vec<u64>)> {
        signals::sleep_until(spec.window_start())?;
        let before = ticks(&pids)?;
        let mut rss_max = vec![0u64; proxies.len()];
        while Instant::now() < spec.window_end() {
            for (i, p) in proxies.iter().enumerate() {
                rss_max[i] = rss_max[i].max(procs::rss_kb(p.pid())?);
            }
            signals::sleep_until(
                (Instant::now() + Duration::from_millis(250)).min(spec.window_end()),
            )?;
        }
        Ok((before, ticks(&pids)?, rss_max))
    })();
    let outcome = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
    let (before, after, rss_max) = sampled?;
    for p in proxies.iter_mut() {
        p.check_alive()?;
    }
    backend.check_alive()?;
    let hz = procs::clock_ticks_per_sec() as f64;
    let secs: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / hz)
        .collect();
    let n = proxies.len();
    Ok(Measured {
        outcome,
        cpu_s_proxies: secs[..n].to_vec(),
        rss_max,
        cpu_s_backend: secs[n],
        cpu_s_client: secs[n + 1],
    })
}

impl Measured {
    fn row(&self, kind: PathKind, load: &str, spec: &LoadSpec, idle: &[u64]) -> Row {
        let o = &self.outcome;
        let q =
            |p: f64| (!o.latency_us.is_empty()).then(|| o.latency_us.value_at_quantile(p) as f64);
        let per_req = |s: f64| (o.completed > 0).then(|| s * 1e6 / o.completed as f64);
        let each: Vec<f64> = self
            .cpu_s_proxies
            .iter()
            .filter_map(|s| per_req(*s))
            .map(round1)
            .collect();
        let mean =
            |v: &[f64]| (!v.is_empty()).then(|| round1(v.iter().sum::<f64>() / v.len() as f64));
        let rss: Vec<f64> = self.rss_max.iter().map(|v| *v as f64).collect();
        let idle_f: Vec<f64> = idle.iter().map(|v| *v as f64).collect();
        Row {
            path: kind.name().into(),
            load: load.into(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            rps: Some(o.rps().round()),
            cpu_us_per_req_per_proxy: mean(&each),
            rss_kb_per_proxy: mean(&rss),
            rss_kb_idle_per_proxy: mean(&idle_f),
            p999_us: q(0.999),
            max_us: (!o.latency_us.is_empty()).then(|| o.latency_us.max() as f64),
            errors: Some(o.errors),
            connections: spec.connections,
            cpu_us_per_req_each: each,
            rss_kb_each: self.rss_max.clone(),
            client_cpu_us_per_req: per_req(self.cpu_s_client).map(round1),
            backend_cpu_us_per_req: per_req(self.cpu_s_backend).map(round1),
            send_lag_p99_us: (spec.rate.is_some() && !o.send_lag_us.is_empty())
                .then(|| o.send_lag_us.value_at_quantile(0.99) as f64),
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub(crate) fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .context("running date")
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let debian = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    format!(
        "{cores} × {cpu}, Linux {}, Debian {}",
        kernel.trim(),
        debian.trim()
    )
}
