//! The soak's samples and its verdict against the targets (pure functions, unit-tested).
//!
//! - **RSS growth**: `(RSS at the end − RSS at the baseline) ÷ RSS at the baseline`, per proxy,
//!   from the single samples at the baseline (minute 5) and the last sample; target < 5 %.
//! - **fd count flat**: per proxy, the mean of the samples of the last minute exceeds the mean of
//!   the minute that starts at the baseline by at most [`FD_SLACK`] descriptors. A minute's mean
//!   smooths the connections the load opens and closes all the time (a few per second); a leak
//!   of one descriptor per 3,000 connections over 25 minutes would exceed it.
use serde::Serialize;

/// RSS growth target, percent.
pub const RSS_GROWTH_MAX_PCT: f64 = 5.0;
/// How far the last minute's mean fd count may exceed the baseline minute's.
pub const FD_SLACK: f64 = 4.0;
/// Share of the target rate the run must achieve to say it reached it.
pub const RATE_REACHED: f64 = 0.95;

/// One sample (every 10 s). Per-proxy vectors: outbound (client) proxy first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    pub rss_kb: Vec<u64>,
    pub fds: Vec<u64>,
    /// Achieved rate over the interval since the previous sample, per protocol
    /// (http1, http2, tcp), successful requests or exchanges per second.
    pub rps: [f64; 3],
    /// Errors over that interval, per protocol.
    pub errors: [u64; 3],
    /// Tickets the load could not send in time over that interval, per protocol.
    pub missed: [u64; 3],
}

/// The verdict for one proxy.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProxyVerdict {
    pub name: String,
    pub rss_kb_baseline: u64,
    pub rss_kb_end: u64,
    pub rss_kb_max: u64,
    pub rss_growth_pct: f64,
    pub rss_ok: bool,
    pub fds_baseline_mean: f64,
    pub fds_end_mean: f64,
    pub fds_min: u64,
    pub fds_max: u64,
    pub fds_ok: bool,
}

/// The verdict of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// The baseline sample's time (minute 5, or a quarter of a shorter run).
    pub baseline_t_s: f64,
    pub end_t_s: f64,
    /// Samples per mean window (one minute).
    pub window_samples: usize,
    pub proxies: Vec<ProxyVerdict>,
    /// Mean achieved rate over the whole run (all protocols).
    pub rps_mean: f64,
    /// Lowest 10 s interval.
    pub rps_min_interval: f64,
    pub rps_target: f64,
    pub rate_reached: bool,
    pub errors: [u64; 3],
    pub missed: [u64; 3],
    /// RSS and fd targets met by both proxies.
    pub pass: bool,
}

/// The baseline time: minute 5, or a quarter of runs shorter than 20 minutes.
pub fn baseline_s(duration_s: f64) -> f64 {
    (duration_s / 4.0).min(300.0)
}

/// Judges `samples` (in time order, `names` per proxy) against the targets; `None` without a
/// sample at or after the baseline.
pub fn verdict(
    samples: &[Sample],
    names: &[&str],
    baseline_s: f64,
    interval_s: f64,
    rps_target: f64,
) -> Option<Verdict> {
    let base = samples.iter().position(|s| s.t_s >= baseline_s - 1e-6)?;
    let last = samples.len() - 1;
    let after = &samples[base..];
    let window = ((60.0 / interval_s).round() as usize).clamp(1, after.len().div_ceil(2).max(1));
    let mean =
        |xs: &[Sample], i: usize| xs.iter().map(|s| s.fds[i] as f64).sum::<f64>() / xs.len() as f64;
    let proxies = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let rss_base = samples[base].rss_kb[i];
            let rss_end = samples[last].rss_kb[i];
            let growth = if rss_base == 0 {
                0.0
            } else {
                (rss_end as f64 - rss_base as f64) * 100.0 / rss_base as f64
            };
            let fds_base = mean(&after[..window], i);
            let fds_end = mean(&after[after.len() - window..], i);
            ProxyVerdict {
                name: (*name).to_string(),
                rss_kb_baseline: rss_base,
                rss_kb_end: rss_end,
                rss_kb_max: after.iter().map(|s| s.rss_kb[i]).max().unwrap_or(0),
                rss_growth_pct: (growth * 100.0).round() / 100.0,
                rss_ok: growth < RSS_GROWTH_MAX_PCT,
                fds_baseline_mean: (fds_base * 10.0).round() / 10.0,
                fds_end_mean: (fds_end * 10.0).round() / 10.0,
                fds_min: after.iter().map(|s| s.fds[i]).min().unwrap_or(0),
                fds_max: after.iter().map(|s| s.fds[i]).max().unwrap_or(0),
                fds_ok: fds_end - fds_base <= FD_SLACK,
            }
        })
        .collect::<Vec<_>>();
    let total = |s: &Sample| s.rps.iter().sum::<f64>();
    // The first sample's interval includes the start; every interval has the same length.
    let rps_mean = samples.iter().map(total).sum::<f64>() / samples.len() as f64;
    let rps_min = samples.iter().map(total).fold(f64::INFINITY, f64::min);
    let sum3 = |f: fn(&Sample) -> [u64; 3]| {
        samples
            .iter()
            .map(f)
            .fold([0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]])
    };
    let pass = proxies.iter().all(|p| p.rss_ok && p.fds_ok);
    Some(Verdict {
        baseline_t_s: samples[base].t_s,
        end_t_s: samples[last].t_s,
        window_samples: window,
        proxies,
        rps_mean: rps_mean.round(),
        rps_min_interval: rps_min.round(),
        rps_target,
        rate_reached: rps_mean >= RATE_REACHED * rps_target,
        errors: sum3(|s| s.errors),
        missed: sum3(|s| s.missed),
        pass,
    })
}

/// The raw samples as CSV: one line per sample, per proxy its RSS (kB) and fd count.
pub fn csv(samples: &[Sample], names: &[&str]) -> String {
    let mut out = String::from("t_s");
    for n in names {
        out.push_str(&format!(",{n}_rss_kb,{n}_fds"));
    }
    for p in super::load::PROTOCOLS {
        out.push_str(&format!(",{p}_rps,{p}_errors,{p}_missed"));
    }
    out.push('\n');
    for s in samples {
        out.push_str(&format!("{:.1}", s.t_s));
        for i in 0..names.len() {
            out.push_str(&format!(",{},{}", s.rss_kb[i], s.fds[i]));
        }
        for p in 0..3 {
            out.push_str(&format!(",{:.1},{},{}", s.rps[p], s.errors[p], s.missed[p]));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss: [u64; 2], fds: [u64; 2]) -> Sample {
        Sample {
            t_s: t,
            rss_kb: rss.to_vec(),
            fds: fds.to_vec(),
            rps: [1000.0, 600.0, 400.0],
            errors: [0, 0, 0],
            missed: [0, 0, 0],
        }
    }

    /// 30 minutes at 10 s: RSS and fds from `f(minute)`.
    fn run(f: impl Fn(f64) -> ([u64; 2], [u64; 2])) -> Vec<Sample> {
        (1..=180)
            .map(|i| {
                let t = i as f64 * 10.0;
                let (rss, fds) = f(t / 60.0);
                sample(t, rss, fds)
            })
            .collect()
    }

    const NAMES: [&str; 2] = ["tulle-out", "tulle-in"];

    #[test]
    fn steady_run_passes() {
        // Warm-up growth before minute 5 does not count; fds jitter by ±3.
        let samples = run(|m| {
            let rss = if m < 5.0 {
                10_000 + (m * 1000.0) as u64
            } else {
                15_000
            };
            let jitter = ((m * 6.0) as u64 * 3) % 7;
            ([rss, rss + 100], [40 + jitter, 30 + jitter])
        });
        let v = verdict(&samples, &NAMES, baseline_s(1800.0), 10.0, 2000.0).unwrap();
        assert_eq!(v.baseline_t_s, 300.0);
        assert_eq!(v.end_t_s, 1800.0);
        assert_eq!(v.window_samples, 6);
        assert!(v.pass, "{v:?}");
        assert_eq!(v.proxies[0].rss_growth_pct, 0.0);
        assert!(v.rate_reached);
        assert_eq!(v.rps_mean, 2000.0);
    }

    #[test]
    fn rss_growth_of_five_percent_fails() {
        let samples = run(|m| {
            let rss = if m < 5.0 {
                10_000
            } else {
                10_000 + ((m - 5.0) * 20.0) as u64
            };
            ([10_000, rss], [40, 30])
        });
        let v = verdict(&samples, &NAMES, 300.0, 10.0, 2000.0).unwrap();
        assert!(v.proxies[0].rss_ok);
        assert_eq!(v.proxies[1].rss_kb_end, 10_500);
        assert_eq!(v.proxies[1].rss_growth_pct, 5.0);
        assert!(!v.proxies[1].rss_ok);
        assert!(!v.pass);
    }

    #[test]
    fn slow_fd_leak_fails_and_spikes_alone_do_not() {
        // One fd every 3 minutes: +8 by the end.
        let leak = run(|m| ([10_000, 10_000], [40 + (m / 3.0) as u64, 30]));
        let v = verdict(&leak, &NAMES, 300.0, 10.0, 2000.0).unwrap();
        assert!(!v.proxies[0].fds_ok, "{:?}", v.proxies[0]);
        assert!(v.proxies[1].fds_ok);
        // A single sample 20 fds up in the last minute moves its mean by 3.3.
        let spike = run(|m| {
            let fds = if (29.8..29.9).contains(&m) { 60 } else { 40 };
            ([10_000, 10_000], [fds, 30])
        });
        let v = verdict(&spike, &NAMES, 300.0, 10.0, 2000.0).unwrap();
        assert!(v.pass, "{:?}", v.proxies[0]);
        assert_eq!(v.proxies[0].fds_max, 60);
    }

    #[test]
    fn short_runs_and_rate() {
        // A 2-minute run: the baseline is at 30 s, the windows shrink to fit.
        let mut samples: Vec<Sample> = (1..=12)
            .map(|i| sample(i as f64 * 10.0, [10_000, 10_000], [40, 30]))
            .collect();
        samples[3].rps = [500.0, 300.0, 200.0];
        samples[4].errors = [1, 0, 2];
        let v = verdict(&samples, &NAMES, baseline_s(120.0), 10.0, 2000.0).unwrap();
        assert_eq!(v.baseline_t_s, 30.0);
        assert!(v.window_samples <= 5);
        assert_eq!(v.rps_min_interval, 1000.0);
        assert_eq!(v.errors, [1, 0, 2]);
        assert!(v.rate_reached);
        assert!(verdict(&samples[..2], &NAMES, 30.0, 10.0, 2000.0).is_none());
        let csv = csv(&samples, &NAMES);
        assert!(csv.starts_with("t_s,tulle-out_rss_kb,tulle-out_fds,tulle-in_rss_kb"));
        assert_eq!(csv.lines().count(), 13);
    }
}
