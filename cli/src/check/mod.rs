//! `tulle check`: health checks of the cluster (`--pre`, before install) and of an installed
//! mesh, in the style of `linkerd check`.
//!
//! Checks are grouped in categories ([`Category`]), one file per category; each run yields
//! [`CheckResult`]s with a status (ok, warn, fail), a message and, for a problem, a hint that
//! says what to do. The runner ([`run_categories`]) runs the categories in order, retries a
//! category with failures while `--wait` lasts, and stops after a failed *fatal* check (for
//! example an unreachable API server: nothing after it could pass). [`render`] prints the
//! table or the JSON document; the exit code is 1 when any check failed, else 0.

pub mod certs;
mod data_plane;
mod existence;
mod identity;
mod kubernetes;
mod pre;
pub mod render;
pub mod smi;
mod version;
mod webhook;

#[cfg(test)]
pub(crate) mod test_api;

use crate::args::{CheckArgs, GlobalArgs};
use serde::Serialize;
use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant, SystemTime},
};

/// The status of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed.
    Ok,
    /// Passed with a warning (does not change the exit code).
    Warn,
    /// Failed (exit code 1).
    Fail,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// What is checked, e.g. `tulle-identity Deployment is ready`.
    pub name: String,
    /// ok, warn or fail.
    pub status: Status,
    /// Detail: what was found (empty when there is nothing to add).
    pub message: String,
    /// What to do about a warning or failure (absent for ok).
    pub hint: Option<String>,
    /// A failure that makes every later category pointless (not in the JSON).
    #[serde(skip)]
    pub fatal: bool,
}

impl CheckResult {
    /// A passed check.
    pub fn ok(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            message: message.into(),
            hint: None,
            fatal: false,
        }
    }

    /// A warning with a hint.
    pub fn warn(
        name: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Warn,
            hint: Some(hint.into()),
            ..Self::ok(name, message)
        }
    }

    /// A failure with a hint.
    pub fn fail(
        name: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Fail,
            hint: Some(hint.into()),
            ..Self::ok(name, message)
        }
    }

    /// Marks a failure as fatal: the runner stops after this category.
    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }
}

/// The results of one category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CategoryReport {
    /// The category's name, e.g. `tulle-identity`.
    pub name: String,
    /// Its checks, in order.
    pub checks: Vec<CheckResult>,
}

impl CategoryReport {
    fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

/// The whole run: the JSON document of `-o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no check failed (warnings allowed).
    pub success: bool,
    /// The categories that ran, in order.
    pub categories: Vec<CategoryReport>,
}

impl Report {
    /// 0 when no check failed, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.success {
            crate::exit::OK
        } else {
            crate::exit::FAILURE
        }
    }
}

/// What the checks share: the flags, the client (set by `kubernetes-api`), and facts that a
/// category finds for later ones.
pub struct Ctx {
    /// Global flags (kubeconfig, context).
    pub global: GlobalArgs,
    /// The client, once `kubernetes-api` could build one.
    pub client: Option<kube::Client>,
    /// Certificates expiring within this are failures.
    pub expiry_threshold: Duration,
    /// The CLI's version.
    pub cli_version: String,
    /// The control plane's version (`app.kubernetes.io/version` of tulle-controller), once
    /// `tulle-existence` has read it.
    pub control_plane_version: Option<String>,
    /// Timeout of one API request.
    pub request_timeout: Duration,
}

impl Ctx {
    /// A context with no client yet.
    pub fn new(global: GlobalArgs, expiry_warning_days: u32) -> Self {
        Self {
            global,
            client: None,
            expiry_threshold: Duration::from_secs(u64::from(expiry_warning_days) * 86_400),
            cli_version: env!("CARGO_PKG_VERSION").to_string(),
            control_plane_version: None,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The client; categories after `kubernetes-api` only run when it exists.
    pub fn client(&self) -> kube::Client {
        self.client
            .clone()
            .expect("kubernetes-api is fatal when no client can be built")
    }
}

/// A boxed future borrowing the context.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Vec<CheckResult>> + Send + 'a>>;

/// A category of checks.
pub trait Category: Send + Sync {
    /// Its name, e.g. `kubernetes-api`.
    fn name(&self) -> &'static str;
    /// Runs its checks (again, when retried).
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a>;
}

/// The categories of `tulle check --pre`.
pub fn pre_categories() -> Vec<Box<dyn Category>> {
    vec![
        Box::new(kubernetes::Api),
        Box::new(kubernetes::Version),
        Box::new(pre::Setup),
    ]
}

/// The categories of `tulle check`.
pub fn categories() -> Vec<Box<dyn Category>> {
    vec![
        Box::new(kubernetes::Api),
        Box::new(kubernetes::Version),
        Box::new(existence::Existence),
        Box::new(identity::Identity),
        Box::new(webhook::Webhook),
        Box::new(data_plane::DataPlane),
        Box::new(smi::Smi),
        Box::new(version::ControlPlaneVersion),
    ]
}

/// Progress while running, for the spinner or plain lines.
#[derive(Debug)]
pub enum Event<'a> {
    /// A category is starting.
    Start(&'static str),
    /// A category has failures and will be retried; the first failure and the time left.
    Waiting {
        /// The category.
        category: &'static str,
        /// Its first failed check.
        check: &'a CheckResult,
        /// Time left of `--wait`.
        left: Duration,
    },
    /// A category is done (final results).
    Done(&'a CategoryReport),
}

/// Runs `categories` in order. A category with a failed check is re-run every `retry_every`
/// until it passes or `wait` (measured from the start) runs out; after a category with a
/// failed fatal check the run stops.
pub async fn run_categories(
    categories: &[Box<dyn Category>],
    ctx: &mut Ctx,
    wait: Duration,
    retry_every: Duration,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Report {
    let deadline = Instant::now() + wait;
    let mut done = Vec::new();
    for category in categories {
        on_event(Event::Start(category.name()));
        let report = loop {
            let report = CategoryReport {
                name: category.name().to_string(),
                checks: category.run(ctx).await,
            };
            let now = Instant::now();
            let first_failure = report.checks.iter().find(|c| c.status == Status::Fail);
            match first_failure {
                Some(check) if now + retry_every <= deadline => {
                    on_event(Event::Waiting {
                        category: category.name(),
                        check,
                        left: deadline - now,
                    });
                    tokio::time::sleep(retry_every).await;
                }
                _ => break report,
            }
        };
        on_event(Event::Done(&report));
        let stop = report
            .checks
            .iter()
            .any(|c| c.status == Status::Fail && c.fatal);
        done.push(report);
        if stop {
            break;
        }
    }
    Report {
        success: !done.iter().any(CategoryReport::failed),
        categories: done,
    }
}

/// `tulle check`: runs the checks, prints the table (streamed) or the JSON document, and
/// returns the exit code.
pub async fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<u8, crate::Error> {
    let mut ctx = Ctx::new(global.clone(), args.expiry_warning_days);
    let categories = if args.pre {
        pre_categories()
    } else {
        categories()
    };
    let mut out = render::Output::new(args.output);
    let report = run_categories(
        &categories,
        &mut ctx,
        args.wait.unwrap_or_default(),
        Duration::from_secs(2),
        &mut |e| out.event(e),
    )
    .await;
    out.finish(&report)?;
    Ok(report.exit_code())
}

/// The time now (one place, so that a run uses one clock).
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

pub(crate) use crate::error::error_chain;

/// A kube error as a short message (`NotFound: ...` for API statuses).
pub(crate) fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({}): {}", s.reason, s.code, s.message),
        other => error_chain(other),
    }
}

#[cfg(test)]
mod tests;
