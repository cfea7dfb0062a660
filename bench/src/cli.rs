//! Command-line options.
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Benchmarks of the tulle data plane.
#[derive(Debug, Parser)]
#[command(name = "tulle-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP/1.1 through direct, tulle, nginx and haproxy paths (mTLS between the proxies) at
    /// 1,000 and 10,000 req/s (open loop) and at maximum throughput (closed loop).
    DataPlane(DataPlaneArgs),
    /// EndpointSlice changes through the real API server of the local cluster to every Get
    /// stream of the real tulle-controller: propagation latency and controller memory.
    ControlPlane(ControlPlaneArgs),
    /// The embedded metrics store: 1,000 simulated pods × 20 series scraped every 10 s for 1 h
    /// (simulated time): RSS, bytes per series, CPU per scrape round, golden-metrics query
    /// latency for a namespace of 200 deployments.
    Metrics(MetricsArgs),
    /// The destination index and gRPC fan-out in process (no API server): how long a change
    /// to a Service with many endpoints takes to reach many watchers.
    DestinationScale(DestinationScaleArgs),
    /// The tulle proxy pair under a steady mixed load (HTTP/1.1, HTTP/2, opaque TCP) for a long
    /// time: RSS and open file descriptors of both proxies every 10 s, verdict on RSS growth
    /// from minute 5 and on a flat fd count.
    Soak(SoakArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Length of the run, in minutes.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Total rate, requests (or TCP exchanges) per second: 50 % HTTP/1.1, 30 % HTTP/2, 20 % TCP.
    #[arg(long, default_value_t = 2000.0)]
    pub rps: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    /// Use this tulle-proxy binary instead of building it with `cargo build --release -p tulle-proxy`.
    #[arg(long)]
    pub proxy_bin: Option<PathBuf>,
    /// Worker threads of each tulle proxy (`TULLE_PROXY_WORKER_THREADS`).
    #[arg(long, default_value_t = 1)]
    pub proxy_threads: usize,
    /// Directory for soak.md, soak.json and soak.csv (default: bench/results).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Keep the temporary directory (certificates, proxy logs) for inspection.
    #[arg(long)]
    pub keep_temp: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DestinationScaleArgs {
    /// Endpoints behind the Service.
    #[arg(long, default_value_t = 5000)]
    pub endpoints: usize,
    /// Concurrent Get streams.
    #[arg(long, default_value_t = 500)]
    pub watchers: usize,
    /// Changes to time.
    #[arg(long, default_value_t = 20)]
    pub changes: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// A short run (60 scrape rounds, 10 min of simulated history, instead of 360).
    #[arg(long)]
    pub quick: bool,
    /// Simulated pods (5 per deployment, 200 deployments).
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Scrape rounds, 10 s of simulated time each (default 360, or 60 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Timed queries per window (default 30, or 10 with --quick).
    #[arg(long)]
    pub queries: Option<usize>,
    /// Directory for metrics.json and metrics.md (default: bench/results).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ControlPlaneArgs {
    /// A short run (under 3 minutes): fewer changes.
    #[arg(long)]
    pub quick: bool,
    /// Synthetic endpoints behind the Service (EndpointSlices of 100).
    #[arg(long, default_value_t = 5000)]
    pub endpoints: usize,
    /// Concurrent Get streams watching the Service.
    #[arg(long, default_value_t = 500)]
    pub watchers: usize,
    /// Changes to time (default 40, or 10 with --quick).
    #[arg(long)]
    pub changes: Option<usize>,
    /// Directory for control-plane.json (default: bench/results).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// One measured path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PathKind {
    Direct,
    Tulle,
    /// The tulle pair with a 50/50 TrafficSplit between two backend services in force.
    TulleSplit,
    /// The tulle pair with an inbound policy in force: one TrafficTarget with 20 HTTP route
    /// rules, the bench client allowed by the last one.
    TulleAuthz,
    Nginx,
    Haproxy,
}

impl PathKind {
    pub const ALL: [PathKind; 6] = [
        PathKind::Direct,
        PathKind::Haproxy,
        PathKind::Nginx,
        PathKind::Tulle,
        PathKind::TulleSplit,
        PathKind::TulleAuthz,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Tulle => "tulle",
            PathKind::TulleSplit => "tulle-split",
            PathKind::TulleAuthz => "tulle-authz",
            PathKind::Nginx => "nginx",
            PathKind::Haproxy => "haproxy",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataPlaneArgs {
    /// A short run (under 3 minutes): shorter warm-up and measurement windows.
    #[arg(long)]
    pub quick: bool,
    /// Paths to measure (comma-separated); default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub paths: Vec<PathKind>,
    /// Measurement window per load, in seconds (default 20, or 7 with --quick).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before each measurement window, in seconds (default 3, or 1.5 with --quick).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Client connections for the fixed-rate loads.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Client connections for the closed-loop maximum-throughput load.
    #[arg(long, default_value_t = 32)]
    pub max_connections: usize,
    /// Fixed rates to measure, in requests per second.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u64, 10000])]
    pub rates: Vec<u64>,
    /// Rounds: every path is measured this many times, interleaved (round 1 of every path,
    /// then round 2...), and each figure is the median over the rounds. Use 3 or more on a
    /// noisy machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub rounds: u32,
    /// Use this tulle-proxy binary instead of building it with `cargo build --release -p tulle-proxy`.
    #[arg(long)]
    pub proxy_bin: Option<PathBuf>,
    /// Worker threads of each tulle proxy (`TULLE_PROXY_WORKER_THREADS`); the nginx and haproxy
    /// proxies run one worker each.
    #[arg(long, default_value_t = 1)]
    pub proxy_threads: usize,
    /// Directory for data-plane.json and data-plane.md (default: bench/results).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Keep the temporary directory (configs, certificates, process logs) for inspection.
    #[arg(long)]
    pub keep_temp: bool,
}
