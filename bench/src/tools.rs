//! External programs the bench needs: nginx and haproxy from Debian (installed when missing,
//! without starting their system services) and the tulle-proxy release binary.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Finds `name` in the usual binary directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
}

/// Returns the paths of nginx and haproxy, installing the Debian packages if one is missing.
/// A temporary `policy-rc.d` keeps the packages from starting system daemons.
pub fn ensure_nginx_haproxy() -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(n), Some(h)) = (find_binary("nginx"), find_binary("haproxy")) {
        return Ok((n, h));
    }
    eprintln!("tulle-bench: installing nginx and haproxy (apt-get, no services started)");
    let created_policy = !Path::new(POLICY_RC_D).exists();
    if created_policy {
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# written by tulle-bench: no daemons from package installs\nexit 101\n",
        )
        .context("writing /usr/sbin/policy-rc.d (run the bench as root)")?;
        set_executable(Path::new(POLICY_RC_D))?;
    }
    let result = (|| {
        run(Command::new("timeout").args(["300", "apt-get", "update", "-q"]))?;
        run(Command::new("timeout")
            .args([
                "600",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "nginx",
                "haproxy",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    })();
    if created_policy {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    result?;
    match (find_binary("nginx"), find_binary("haproxy")) {
        (Some(n), Some(h)) => Ok((n, h)),
        _ => bail!("nginx or haproxy still missing after apt-get install; install them by hand"),
    }
}

fn set_executable(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds `tulle-proxy` in release mode (a no-op when up to date) and returns the binary path.
pub fn build_tulle_proxy() -> anyhow::Result<PathBuf> {
    build_release("tulle-proxy").context("pass --proxy-bin to use another binary")
}

/// Builds the binary of workspace package `package` (named like it) in release mode (a no-op
/// when up to date) and returns its path.
pub fn build_release(package: &str) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("tulle-bench: cargo build --release -p {package}");
    run(Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", package]))
    .with_context(|| format!("building {package}; fix the build"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join(package);
    if !bin.is_file() {
        bail!("{} not found after the build", bin.display());
    }
    Ok(bin)
}
