//! Table cells shared by the pages: golden metrics formatted, with their health class, and
//! the small charts of a resource's recent samples.

use std::time::Duration;

use crate::format;
use crate::history::{History, sparkline};
use crate::model::Golden;
use crate::topology::Health;

/// Golden metrics as table cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricCells {
    /// Success rate.
    pub success: String,
    /// Requests per second.
    pub rps: String,
    /// p50.
    pub p50: String,
    /// p95.
    pub p95: String,
    /// p99.
    pub p99: String,
    /// Open TCP connections.
    pub tcp: String,
    /// `ok`, `warn`, `fail` or `idle`.
    pub health: &'static str,
}

impl MetricCells {
    /// The cells of `g` (all `—` when there is none).
    pub fn of(g: Option<&Golden>, window: Duration) -> Self {
        match g {
            None => Self {
                success: format::NONE.into(),
                rps: format::NONE.into(),
                p50: format::NONE.into(),
                p95: format::NONE.into(),
                p99: format::NONE.into(),
                tcp: format::NONE.into(),
                health: Health::Idle.class(),
            },
            Some(g) => Self {
                success: format::pct(g.success_rate()),
                rps: format::rps(g.rps(window)),
                p50: format::ms(g.p50),
                p95: format::ms(g.p95),
                p99: format::ms(g.p99),
                tcp: format::count(g.tcp_open),
                health: Health::of(g.success_rate()).class(),
            },
        }
    }
}

/// The small charts of one resource (empty strings until two samples exist).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Charts {
    /// Requests per second.
    pub rps: String,
    /// Success rate.
    pub success: String,
    /// p99.
    pub p99: String,
}

impl Charts {
    /// The charts of `key` in `history`, `w`×`h` pixels each.
    pub fn of(history: &History, key: &str, w: f64, h: f64) -> Self {
        let s = history.series(key);
        let rps: Vec<Option<f64>> = s.iter().map(|x| Some(x.rps)).collect();
        let success: Vec<Option<f64>> = s.iter().map(|x| x.success).collect();
        let p99: Vec<Option<f64>> = s.iter().map(|x| x.p99).collect();
        Self {
            rps: sparkline(&rps, w, h, "rps", None),
            success: sparkline(&success, w, h, "success", Some(1.0)),
            p99: sparkline(&p99, w, h, "latency", None),
        }
    }
}
