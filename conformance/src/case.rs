//! A case: steps run in order in a namespace of its own, for one SMI API and version, in the
//! access mode it needs.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::Result;
use crate::context::Ctx;

/// The SMI APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Api {
    #[serde(rename = "Traffic Access")]
    TrafficAccess,
    #[serde(rename = "Traffic Specs")]
    TrafficSpecs,
    #[serde(rename = "Traffic Split")]
    TrafficSplit,
    #[serde(rename = "Traffic Metrics")]
    TrafficMetrics,
}

impl Api {
    /// The name SMI gives it.
    pub fn title(self) -> &'static str {
        match self {
            Api::TrafficAccess => "Traffic Access",
            Api::TrafficSpecs => "Traffic Specs",
            Api::TrafficSplit => "Traffic Split",
            Api::TrafficMetrics => "Traffic Metrics",
        }
    }
}

/// The namespace's default access mode a case needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inbound traffic is denied unless a TrafficTarget allows it.
    Deny,
    /// Access control open: every caller is let in.
    Allow,
}

/// A step: a name (what a failure report says) and what it does.
pub struct Step {
    pub name: &'static str,
    pub run: Box<dyn Fn(Arc<Ctx>) -> BoxFuture<'static, Result<()>> + Send + Sync>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step").field("name", &self.name).finish()
    }
}

/// A step named `name` that runs `f` with the case's context.
pub fn step<F, Fut>(name: &'static str, f: F) -> Step
where
    F: Fn(Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Step {
        name,
        run: Box::new(move |cx| Box::pin(f(cx))),
    }
}

/// A case of the suite.
#[derive(Debug)]
pub struct Case {
    /// Unique, short, used in the namespace name (`smi-<name>-<random>`) and in reports.
    pub name: &'static str,
    pub api: Api,
    pub version: &'static str,
    pub mode: Mode,
    /// One of the upstream (Meshery) scenarios, with its intent kept.
    pub upstream: bool,
    /// What the case shows, in one sentence.
    pub about: &'static str,
    pub steps: Vec<Step>,
}
