//! `kubernetes-api` (a client can be built and the API answers) and `kubernetes-version`
//! (>= 1.29, for native sidecars).

use super::{Category, CheckFuture, CheckResult, Ctx, error_chain, kube_error};
use crate::kubeconfig;

/// The oldest Kubernetes minor version tulle supports (native sidecars are on by default
/// from 1.29).
pub const MIN_MINOR: u32 = 29;

/// `kubernetes-api`.
pub struct Api;

impl Category for Api {
    fn name(&self) -> &'static str {
        "kubernetes-api"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let client = match kubeconfig::client(&ctx.global, ctx.request_timeout).await {
                Ok(c) => c,
                Err(e) => {
                    return vec![
                        CheckResult::fail(
                            "can initialize the client",
                            error_chain(&e),
                            "pass a valid --kubeconfig FILE (or set KUBECONFIG) and --context NAME; \
                             `kubectl config get-contexts` lists the contexts",
                        )
                        .fatal(),
                    ];
                }
            };
            let mut out = vec![CheckResult::ok("can initialize the client", "")];
            match client.apiserver_version().await {
                Ok(_) => {
                    out.push(CheckResult::ok("can query the Kubernetes API", ""));
                    ctx.client = Some(client);
                }
                Err(e) => out.push(
                    CheckResult::fail(
                        "can query the Kubernetes API",
                        kube_error(&e),
                        "check that the cluster is up and reachable: `kubectl version` \
                         must show a server version",
                    )
                    .fatal(),
                ),
            }
            out
        })
    }
}

/// `kubernetes-version`.
pub struct Version;

impl Category for Version {
    fn name(&self) -> &'static str {
        "kubernetes-version"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let name = format!("is running the minimum Kubernetes version (1.{MIN_MINOR})");
            match ctx.client().apiserver_version().await {
                Ok(info) => vec![version_check(&name, &info.major, &info.minor)],
                Err(e) => vec![CheckResult::fail(
                    name,
                    kube_error(&e),
                    "check that the cluster is reachable: `kubectl version`",
                )],
            }
        })
    }
}

/// Checks `major.minor` (the minor may carry a suffix such as `29+`).
pub fn version_check(name: &str, major: &str, minor: &str) -> CheckResult {
    let digits = |s: &str| {
        s.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .ok()
    };
    let found = format!("the API server is {major}.{minor}");
    match (digits(major), digits(minor)) {
        (Some(1), Some(m)) if m >= MIN_MINOR => CheckResult::ok(name, found),
        (Some(ma), Some(_)) if ma > 1 => CheckResult::ok(name, found),
        (Some(_), Some(_)) => CheckResult::fail(
            name,
            format!("{found}; tulle needs 1.{MIN_MINOR} or newer (native sidecar containers)"),
            format!("upgrade the cluster to Kubernetes 1.{MIN_MINOR} or newer"),
        ),
        _ => CheckResult::warn(
            name,
            format!("cannot parse the API server version {major:?}.{minor:?}"),
            format!(
                "make sure the cluster runs Kubernetes 1.{MIN_MINOR} or newer: `kubectl version`"
            ),
        ),
    }
}
