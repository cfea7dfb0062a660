//! tulle-conformance: the SMI conformance suite, run against any mesh on a real cluster.
//!
//! The suite creates one namespace per case (meshed the way the [`profile::Profile`] says,
//! with the access mode the case needs), deploys its own test app (`tulle-testapp`, which
//! records per caller what it received: [`app`]), runs the case's steps in order, deletes the
//! namespace and writes a report ([`report`]: JSON, Markdown and JUnit XML). Cases run
//! concurrently ([`runner`]); a case stops at its first failing step and names it.
//!
//! - [`case`]: what a case and a step are; [`cases`]: the cases, one module per SMI API.
//! - [`context`]: what a step can do in its namespace (apply, send traffic, read counts).
//! - [`kubectl`]: the one way the suite talks to the cluster (`kubectl`, with `--kubeconfig`).

pub mod app;
pub mod case;
pub mod cases;
pub mod context;
pub mod kubectl;
pub mod profile;
pub mod report;
pub mod runner;

/// What went wrong in a step or around it; the message says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `kubectl` failed or could not be started.
    #[error("kubectl {args}: {message}")]
    Kubectl { args: String, message: String },
    /// An answer that is not the JSON expected.
    #[error("{what}: not the JSON expected ({source}): {text}")]
    Json {
        what: String,
        text: String,
        source: serde_json::Error,
    },
    /// A check of a step that did not hold.
    #[error("{0}")]
    Check(String),
    /// A condition that did not come true in time.
    #[error("{what} did not happen within {secs} s{last}")]
    Timeout {
        what: String,
        secs: u64,
        /// What was seen last (`: ...`), or empty.
        last: String,
    },
    /// A mesh profile that cannot be read.
    #[error("mesh profile {path}: {message}")]
    Profile { path: String, message: String },
}

/// A step's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails the step with `msg` unless `cond` holds.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Check(msg()))
    }
}
