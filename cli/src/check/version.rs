//! `tulle-version`: the control plane runs the CLI's version (a warning otherwise).

use super::{Category, CheckFuture, CheckResult, Ctx};

/// `tulle-version`.
pub struct ControlPlaneVersion;

impl Category for ControlPlaneVersion {
    fn name(&self) -> &'static str {
        "tulle-version"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            vec![version_check(
                ctx.control_plane_version.as_deref(),
                &ctx.cli_version,
            )]
        })
    }
}

/// Compares the control plane's version with the CLI's.
pub fn version_check(control_plane: Option<&str>, cli: &str) -> CheckResult {
    let name = "control plane is at the CLI's version";
    match control_plane {
        Some(v) if v == cli => CheckResult::ok(name, v.to_string()),
        Some(v) => CheckResult::warn(
            name,
            format!("the control plane is {v}, this CLI is {cli}"),
            format!(
                "upgrade the control plane with this CLI (`tulle install | kubectl apply -f -` \
                 with the PKI files in use), or use a tulle CLI of version {v}"
            ),
        ),
        None => CheckResult::warn(
            name,
            "the control plane's version is unknown",
            "check that tulle-controller exists: `kubectl -n tulle-system get deploy tulle-controller --show-labels`",
        ),
    }
}
