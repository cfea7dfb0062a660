//! tulle-bench: benchmarks of the tulle control plane (propagation through the real API server,
//! the embedded metrics store)
//! and of the data plane against a direct baseline and peer proxies
//! (an nginx pair and an haproxy pair), measured in one run on the same machine and reported as
//! ratios to `direct`.
//!
//! Modules, one concern each:
//! - [`cli`]: command-line options;
//! - [`loadgen`]: the open-loop (fixed-rate, latency measured from the intended send time) and
//!   closed-loop HTTP/1.1 load generator;
//! - [`certs`]: the ECDSA P-256 CA and leaf certificates shared by every proxy pair;
//! - [`procs`]: child processes that die with the bench, and their CPU/RSS from `/proc`;
//! - [`tools`]: installing nginx/haproxy and building `tulle-proxy` when missing;
//! - [`configs`]: configuration files of the backend and of each proxy pair;
//! - [`paths`]: starting one measured path (direct, tulle, nginx, haproxy);
//! - [`report`]: the JSON and Markdown results;
//! - [`data_plane`]: the `data-plane` benchmark itself;
//! - [`control_plane`]: the `control-plane` benchmark (real API server, real controller);
//! - [`metrics`]: the `metrics` benchmark (the embedded metrics store under 1,000 simulated pods);
//! - [`soak`]: the `soak` benchmark (the proxy pair under a steady mixed load for 30 minutes:
//!   RSS and open fds every 10 s, verdict on growth);
//! - [`signals`]: Ctrl-C / SIGTERM turn into an orderly stop that kills every child.

pub mod certs;
pub mod cli;
pub mod configs;
pub mod control_plane;
pub mod data_plane;
pub mod destination_scale;
pub mod loadgen;
pub mod metrics;
pub mod paths;
pub mod procs;
pub mod report;
pub mod signals;
pub mod soak;
pub mod tools;

/// Runs the subcommand chosen on the command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::DataPlane(args) => data_plane::run(&args),
        cli::Command::ControlPlane(args) => control_plane::run(&args),
        cli::Command::Metrics(args) => metrics::run(&args),
        cli::Command::DestinationScale(args) => destination_scale::run(&args),
        cli::Command::Soak(args) => soak::run(&args),
    }
}
