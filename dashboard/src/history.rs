//! Recent golden metrics of each resource, for the small time-series charts: a bounded
//! ring of samples per resource, fed whenever the dashboard reads a metrics list (and by a
//! background sampler), drawn as inline SVG sparklines.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::Golden;

/// One sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When (Unix seconds).
    pub at: i64,
    /// Requests per second.
    pub rps: f64,
    /// Success rate.
    pub success: Option<f64>,
    /// p99 latency (ms).
    pub p99: Option<f64>,
}

/// The samples of every resource.
#[derive(Debug)]
pub struct History {
    series: Mutex<HashMap<String, VecDeque<Sample>>>,
    /// Samples kept per resource.
    pub capacity: usize,
    /// Samples closer together than this are not kept.
    pub spacing: i64,
}

impl Default for History {
    fn default() -> Self {
        Self::new(90, 10)
    }
}

/// The key of a resource (`Deployment/demo/web`).
pub fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

impl History {
    /// Keeps `capacity` samples at least `spacing` seconds apart per resource.
    pub fn new(capacity: usize, spacing: i64) -> Self {
        Self {
            series: Mutex::new(HashMap::new()),
            capacity,
            spacing,
        }
    }

    /// Records a sample of `key` at `now` (ignored if the last one is more recent than the spacing).
    pub fn record(&self, key: &str, now: i64, g: &Golden, window: Duration) {
        let mut all = self.series.lock().expect("history lock");
        let s = all.entry(key.to_string()).or_default();
        if s.back().is_some_and(|last| now - last.at < self.spacing) {
            return;
        }
        s.push_back(Sample {
            at: now,
            rps: g.rps(window),
            success: g.success_rate(),
            p99: g.p99,
        });
        while s.len() > self.capacity {
            s.pop_front();
        }
    }

    /// The samples of `key`, oldest first.
    pub fn series(&self, key: &str) -> Vec<Sample> {
        self.series
            .lock()
            .expect("history lock")
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// A sparkline of `values` (gaps where `None`) as inline SVG, `w`×`h` pixels, scaled from 0
/// (or from `floor`) to the maximum. Empty when there are fewer than two values.
pub fn sparkline(
    values: &[Option<f64>],
    w: f64,
    h: f64,
    class: &str,
    floor: Option<f64>,
) -> String {
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    if values.len() < 2 || known.is_empty() {
        return String::new();
    }
    let max = known.iter().copied().fold(f64::MIN, f64::max);
    let min = floor
        .unwrap_or(0.0)
        .min(known.iter().copied().fold(f64::MAX, f64::min));
    let span = if max - min > 1e-9 { max - min } else { 1.0 };
    let step = w / (values.len() - 1) as f64;
    let mut s = format!(
        r#"<svg class="spark {class}" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" aria-hidden="true">"#
    );
    let mut pen = false;
    let mut d = String::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = i as f64 * step;
                let y = h - 1.0 - (v - min) / span * (h - 2.0);
                let _ = write!(d, "{}{x:.1},{y:.1} ", if pen { "L" } else { "M" });
                pen = true;
            }
            None => pen = false,
        }
    }
    let _ = write!(s, r#"<path d="{}"/></svg>"#, d.trim_end());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spaced_bounded_samples() {
        let h = History::new(3, 10);
        let g = Golden {
            success: 30.0,
            ..Default::default()
        };
        for t in [0, 5, 10, 20, 30, 40] {
            h.record("k", t, &g, Duration::from_secs(30));
        }
        let s = h.series("k");
        assert_eq!(s.iter().map(|s| s.at).collect::<Vec<_>>(), vec![20, 30, 40]);
        assert_eq!(s[0].rps, 1.0);
    }

    #[test]
    fn sparklines() {
        assert_eq!(sparkline(&[Some(1.0)], 60.0, 16.0, "rps", None), "");
        let svg = sparkline(
            &[Some(0.0), None, Some(2.0), Some(1.0)],
            60.0,
            16.0,
            "rps",
            None,
        );
        assert!(svg.contains("M0.0,15.0 M40.0,1.0 L60.0,8.0"), "{svg}");
    }
}
