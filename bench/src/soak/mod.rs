//! The `soak` benchmark: the tulle proxy pair (client proxy → mTLS → server proxy, static mode
//! as in `data-plane`) under a steady mixed load (HTTP/1.1, HTTP/2, opaque TCP) for a long time,
//! sampling every 10 s the RSS (`VmRSS` of `/proc/<pid>/status`) and the open file descriptors
//! (entries of `/proc/<pid>/fd`) of both proxies, and the achieved rate and errors. The verdict
//! ([`verdict`]) judges RSS growth from minute 5 to the end and whether the fd count stays flat.
pub mod load;
pub mod verdict;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::cli::{PathKind, SoakArgs};
use crate::data_plane::{command_output, loadavg, machine};
use crate::paths::{self, Ctx};
use crate::procs;
use crate::signals::{self, Interrupted};
use crate::{certs, configs, tools};
use load::{Counters, MixSpec, PROTOCOLS};
use verdict::{Sample, Verdict};

const NAMES: [&str; 2] = ["tulle-out", "tulle-in"];

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: String,
    load_average_start: String,
    load_average_end: String,
    minutes: f64,
    rps_target: f64,
    interval_s: f64,
    proxy_threads: usize,
    mix: Vec<String>,
    /// Connections the load generator opened, per protocol.
    connections_opened: [u64; 3],
    verdict: Option<Verdict>,
    notes: Vec<String>,
    samples: Vec<Sample>,
}

/// Runs the soak and writes `soak.md`, `soak.json` and `soak.csv`.
pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    signals::install()?;
    let load_average_start = loadavg();
    let bin = match args.proxy_bin.clone() {
        Some(b) => b,
        None => tools::build_tulle_proxy()?,
    };
    let tmp = tempfile::Builder::new().prefix("tulle-soak-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let backend = load::spawn_backend()?;
    let ctx = Ctx {
        dir: dir.clone(),
        certs: certs::generate(&dir)?,
        backend,
        nginx: PathBuf::new(),
        haproxy: PathBuf::new(),
        tulle: Some(bin),
        tulle_threads: args.proxy_threads,
    };
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| tools::workspace_root().join("bench").join("results"));
    std::fs::create_dir_all(&out_dir)?;
    let mut path = paths::start(PathKind::Tulle, &ctx)?;
    let pids: Vec<u32> = path.proxies.iter().map(procs::Proc::pid).collect();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let interval = Duration::from_secs_f64(args.interval);
    eprintln!(
        "tulle-bench: soak for {} min at {} req/s (http1 {:.0} %, http2 {:.0} %, tcp {:.0} %), sampling every {:?}; proxies {pids:?}",
        args.minutes,
        args.rps,
        load::SHARES[0] * 100.0,
        load::SHARES[1] * 100.0,
        load::SHARES[2] * 100.0,
        interval,
    );
    let counters = Arc::new(Counters::default());
    let generator = load::spawn(
        MixSpec {
            addr: path.entry,
            authority: configs::AUTHORITY.into(),
            rps: args.rps,
            duration: duration + Duration::from_secs(5),
        },
        counters.clone(),
    )?;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut notes = Vec::new();
    let mut prev = counters.snapshot();
    let mut prev_t = start;
    let csv_path = out_dir.join("soak.csv");
    let sampled = (|| -> anyhow::Result<()> {
        for i in 1.. {
            let at = start + interval * i;
            if at > start + duration {
                return Ok(());
            }
            signals::sleep_until(at)?;
            let now = Instant::now();
            let snap = counters.snapshot();
            let mut rss_kb = Vec::new();
            let mut fds = Vec::new();
            for p in path.proxies.iter_mut() {
                p.check_alive()?;
                rss_kb.push(procs::rss_kb(p.pid())?);
                fds.push(fd_count(p.pid())?);
            }
            let secs = (now - prev_t).as_secs_f64();
            let delta = |k: usize, p: usize| snap[k][p] - prev[k][p];
            let s = Sample {
                t_s: ((now - start).as_secs_f64() * 10.0).round() / 10.0,
                rss_kb,
                fds,
                rps: [0, 1, 2].map(|p| (delta(0, p) as f64 / secs * 10.0).round() / 10.0),
                errors: [0, 1, 2].map(|p| delta(1, p)),
                missed: [0, 1, 2].map(|p| delta(2, p)),
            };
            eprintln!(
                "tulle-bench:   t={:>6.0}s rss kB {:?} fds {:?} rps {:.0} (h1 {:.0} h2 {:.0} tcp {:.0}) errors {:?} missed {:?}",
                s.t_s,
                s.rss_kb,
                s.fds,
                s.rps.iter().sum::<f64>(),
                s.rps[0],
                s.rps[1],
                s.rps[2],
                s.errors,
                s.missed
            );
            samples.push(s);
            prev = snap;
            prev_t = now;
            std::fs::write(&csv_path, verdict::csv(&samples, &NAMES))?;
        }
        Ok(())
    })();
    counters.stop();
    let _ = generator.join();
    match sampled {
        Ok(()) => {}
        Err(e) if e.is::<Interrupted>() => return Err(e),
        Err(e) => {
            eprintln!("tulle-bench: soak stopped early: {e:#}");
            notes.push(format!("The run stopped early: {e:#}"));
        }
    }
    let errors = counters
        .error_samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !errors.is_empty() {
        notes.push(format!("First errors: {errors:?}"));
    }
    let connections_opened =
        [0, 1, 2].map(|p| counters.connections[p].load(std::sync::atomic::Ordering::Relaxed));
    let verdict = verdict::verdict(
        &samples,
        &NAMES,
        verdict::baseline_s(args.minutes * 60.0),
        args.interval,
        args.rps,
    );
    let report = Report {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: machine(),
        load_average_start,
        load_average_end: loadavg(),
        minutes: args.minutes,
        rps_target: args.rps,
        interval_s: args.interval,
        proxy_threads: args.proxy_threads,
        mix: (0..3)
            .map(|p| {
                format!(
                    "{} {:.0} % ({} {})",
                    PROTOCOLS[p],
                    load::SHARES[p] * 100.0,
                    load::WORKERS[p],
                    if p == 1 {
                        "request loops"
                    } else {
                        "connections"
                    }
                )
            })
            .collect(),
        connections_opened,
        verdict,
        notes,
        samples,
    };
    drop(path);
    std::fs::write(
        out_dir.join("soak.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let md = markdown(&report);
    std::fs::write(out_dir.join("soak.md"), &md)?;
    println!("{md}");
    eprintln!(
        "tulle-bench: wrote {0}/soak.md, soak.json and soak.csv",
        out_dir.display()
    );
    if args.keep_temp {
        let kept = tmp.keep();
        eprintln!("tulle-bench: kept {}", kept.display());
    }
    Ok(())
}

/// Open file descriptors of `pid`: the entries of `/proc/<pid>/fd`.
pub fn fd_count(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("reading {dir} (run as root or as the proxies' user)"))?
        .count() as u64)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# tulle soak\n");
    let _ = writeln!(
        md,
        "`cargo run --release -p tulle-bench -- soak --minutes {} --rps {}` on {} ({}); load average {} at start, {} at end.\n",
        r.minutes, r.rps_target, r.date, r.machine, r.load_average_start, r.load_average_end
    );
    let _ = writeln!(
        md,
        "Client → outbound tulle-proxy → mTLS (HTTP/2 / opaque) → inbound tulle-proxy → backend (in the bench process: HTTP/1.1, HTTP/2, echo). Mix: {}. Each proxy {} worker thread(s). Connections opened by the load: http1 {}, http2 {}, tcp {}.\n",
        r.mix.join(", "),
        r.proxy_threads,
        r.connections_opened[0],
        r.connections_opened[1],
        r.connections_opened[2],
    );
    match &r.verdict {
        None => {
            let _ = writeln!(
                md,
                "No verdict: the run ended before the baseline sample.\n"
            );
        }
        Some(v) => {
            let _ = writeln!(
                md,
                "**Verdict: {}** (baseline: the sample at {:.0} s; end: {:.0} s; fd means over {} samples = {:.0} s).\n",
                if v.pass { "pass" } else { "FAIL" },
                v.baseline_t_s,
                v.end_t_s,
                v.window_samples,
                v.window_samples as f64 * r.interval_s,
            );
            let _ = writeln!(
                md,
                "| proxy | RSS at baseline | RSS at end | max | growth | < {} % | fds baseline mean | fds end mean | min–max | flat (≤ +{}) |",
                verdict::RSS_GROWTH_MAX_PCT,
                verdict::FD_SLACK
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
            for p in &v.proxies {
                let _ = writeln!(
                    md,
                    "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.2} % | {} | {:.1} | {:.1} | {}–{} | {} |",
                    p.name,
                    p.rss_kb_baseline as f64 / 1024.0,
                    p.rss_kb_end as f64 / 1024.0,
                    p.rss_kb_max as f64 / 1024.0,
                    p.rss_growth_pct,
                    met(p.rss_ok),
                    p.fds_baseline_mean,
                    p.fds_end_mean,
                    p.fds_min,
                    p.fds_max,
                    met(p.fds_ok),
                );
            }
            let _ = writeln!(
                md,
                "\nAchieved rate: mean {:.0} req/s of {:.0} ({}), lowest 10 s interval {:.0} req/s. Errors (http1, http2, tcp): {:?}; tickets not sent in time (load behind by > 2 s): {:?}.\n",
                v.rps_mean,
                v.rps_target,
                if v.rate_reached {
                    "reached"
                } else {
                    "**not reached**"
                },
                v.rps_min_interval,
                v.errors,
                v.missed,
            );
        }
    }
    let _ = writeln!(
        md,
        "Targets: RSS growth between the baseline (minute 5; a quarter of runs under 20 min) and the last sample < {} %; fd count flat: the mean of the last minute's samples at most {} above the mean of the minute from the baseline (a minute's mean smooths the connections opened and closed every second). Rate reached: mean ≥ {:.0} % of the target.\n",
        verdict::RSS_GROWTH_MAX_PCT,
        verdict::FD_SLACK,
        verdict::RATE_REACHED * 100.0
    );
    let _ = writeln!(
        md,
        "## Samples (every minute; all in soak.csv / soak.json)\n"
    );
    let _ = writeln!(
        md,
        "| t (s) | RSS out (kB) | RSS in (kB) | fds out | fds in | req/s | errors |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let per_minute = ((60.0 / r.interval_s).round() as usize).max(1);
    for (i, s) in r.samples.iter().enumerate() {
        if (i + 1) % per_minute != 0 && i + 1 != r.samples.len() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {:.0} | {} | {} | {} | {} | {:.0} | {} |",
            s.t_s,
            s.rss_kb[0],
            s.rss_kb[1],
            s.fds[0],
            s.fds[1],
            s.rps.iter().sum::<f64>(),
            s.errors.iter().sum::<u64>()
        );
    }
    if !r.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}
