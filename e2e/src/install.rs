//! The installed mesh, for the suites that need one: the `tulle` CLI and helm binaries
//! (`$TULLE_BIN`, `$TULLE_HELM`, provided by `cluster/e2e`), `tulle check`, install and
//! uninstall, and waiting for the control plane.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{kubectl, wait};

const STEP: Duration = Duration::from_secs(180);
/// The control-plane namespace.
pub const CP: &str = "tulle-system";

pub fn bin(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("${var} is not set: run the e2e tests with cluster/e2e"))
}

/// Runs a command, returns its stdout; panics with its stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    run_stdin(cmd, args, "")
}

/// Runs a command with `input` on stdin, returns its stdout; panics with its stderr on failure.
pub fn run_stdin(cmd: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tulle(args: &[&str]) -> String {
    run(&bin("TULLE_BIN"), args)
}

pub fn helm(args: &[&str]) -> String {
    run(&bin("TULLE_HELM"), args)
}

/// `tulle check [args] -o json`: whether it passed, and the document (for the failure message).
pub fn check(args: &[&str]) -> (bool, String) {
    let mut argv = vec!["check"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["-o", "json"]);
    let out = Command::new(bin("TULLE_BIN"))
        .args(&argv)
        .stdin(Stdio::null())
        .output()
        .expect("running tulle check");
    let doc = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&doc)
        .unwrap_or_else(|e| panic!("tulle check -o json is not JSON ({e}): {doc}"));
    assert_eq!(
        out.status.success(),
        v["success"] == serde_json::Value::Bool(true),
        "exit code and success disagree: {doc}"
    );
    (out.status.success(), doc)
}

/// What `tulle uninstall` names and must be gone afterwards: the namespace, CRDs, cluster
/// RBAC and the webhook configuration.
pub fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    for (kind, filter) in [
        ("namespace", CP),
        ("crd", "smi-spec.io"),
        ("clusterrole", "tulle-"),
        ("clusterrolebinding", "tulle-"),
        ("mutatingwebhookconfiguration", "tulle-"),
    ] {
        let out = kubectl::run(&["get", kind, "-o", "name"]).unwrap_or_default();
        left.extend(out.lines().filter(|l| l.contains(filter)).map(String::from));
    }
    left
}

/// Where the tests that install or use the mesh serialize (several test processes may share
/// one cluster: a developer's and an agent's, or two test binaries).
const MESH_LOCK: &str = "/tmp/tulle-e2e-mesh.lock";

/// Holds the cluster's mesh for one test until dropped (an exclusive file lock).
pub struct MeshLock(#[allow(dead_code)] std::fs::File);

impl MeshLock {
    /// Waits until no other test process holds the mesh.
    pub fn acquire() -> MeshLock {
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(MESH_LOCK)
            .unwrap_or_else(|e| panic!("cannot open {MESH_LOCK}: {e}"));
        if f.try_lock().is_err() {
            eprintln!("waiting for another test process to finish with the mesh ({MESH_LOCK})");
            f.lock()
                .unwrap_or_else(|e| panic!("cannot lock {MESH_LOCK}: {e}"));
        }
        MeshLock(f)
    }
}

/// Holds the mesh ([`MeshLock`]) and, unless made with [`Uninstall::keep`], removes it when
/// dropped; [`Uninstall::now`] removes any mesh left by an earlier failed run.
pub struct Uninstall {
    uninstall: bool,
    _lock: MeshLock,
}

impl Uninstall {
    /// Takes the mesh; it is uninstalled when the guard drops.
    pub fn guard() -> Self {
        Uninstall {
            uninstall: true,
            _lock: MeshLock::acquire(),
        }
    }

    /// Takes the mesh as it is installed; left installed when the guard drops.
    pub fn keep() -> Self {
        Uninstall {
            uninstall: false,
            _lock: MeshLock::acquire(),
        }
    }

    pub fn now() {
        if let Ok(yaml) = Command::new(bin("TULLE_BIN")).arg("uninstall").output() {
            let _ = kubectl::run_stdin(
                &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
                &String::from_utf8_lossy(&yaml.stdout),
            );
        }
        let _ = Command::new(bin("TULLE_HELM"))
            .args(["uninstall", "tulle", "-n", CP, "--ignore-not-found"])
            .output();
        let _ = Command::new(bin("TULLE_HELM"))
            .args(["uninstall", "tulle-crds", "--ignore-not-found"])
            .output();
    }
}

impl Drop for Uninstall {
    fn drop(&mut self) {
        if self.uninstall && std::env::var_os("TULLE_E2E_KEEP").is_none() {
            Uninstall::now();
        }
    }
}

pub async fn wait_gone() {
    wait::until(
        "nothing of the mesh left",
        STEP,
        || async { leftovers().is_empty().then_some(()) },
        || async { format!("left: {:?}", leftovers()) },
    )
    .await
    .expect("uninstall leaves nothing");
}

pub async fn control_plane_ready(client: &kube::Client) {
    for c in ["identity", "controller"] {
        wait::pods_ready(
            client,
            CP,
            &format!("tulle.io/control-plane-component={c}"),
            1,
            STEP,
        )
        .await
        .expect(c);
    }
    // The controller put its webhook CA into the configuration.
    wait::until(
        "the injector's caBundle",
        STEP,
        || async {
            let ca = kubectl::run(&[
                "get",
                "mutatingwebhookconfiguration",
                "tulle-proxy-injector",
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ])
            .ok()?;
            (!ca.trim().is_empty()).then_some(())
        },
        || async { String::new() },
    )
    .await
    .expect("caBundle");
}

/// Installs the mesh with `tulle install | kubectl apply -f -` (after removing any left by an
/// earlier run) and waits until `tulle check` passes; uninstalled when the guard drops. For the
/// tests that change the mesh (its identity settings, its trust anchors, its replicas).
pub async fn install_with_cli(client: &kube::Client) -> Uninstall {
    let guard = tokio::task::spawn_blocking(Uninstall::guard)
        .await
        .expect("mesh lock");
    install_fresh(client).await;
    guard
}

/// The label a mesh installed by [`shared_mesh`] carries on its namespace: the `tulle` binary
/// that installed it (a rebuilt CLI installs anew). Installs by [`install_with_cli`], which
/// tests then change, never carry it.
const PRISTINE_LABEL: &str = "e2e.tulle.io/pristine-install";

fn pristine_value() -> String {
    let meta = std::fs::metadata(bin("TULLE_BIN")).expect("$TULLE_BIN");
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!("{modified}-{}", meta.len())
}

/// The default mesh, for the tests that only use it: one installed by an earlier such test
/// (same `tulle` binary, `tulle check` passing) is used as it is, so that a run installs it
/// once for all of them; otherwise it is installed. Left installed when the guard drops.
pub async fn shared_mesh(client: &kube::Client) -> Uninstall {
    let keep = tokio::task::spawn_blocking(Uninstall::keep)
        .await
        .expect("mesh lock");
    let want = pristine_value();
    let label = kubectl::run(&[
        "get",
        "namespace",
        CP,
        "-o",
        &format!(
            "jsonpath={{.metadata.labels.{}}}",
            PRISTINE_LABEL.replace('.', "\\.")
        ),
    ])
    .unwrap_or_default();
    if label.trim() == want && check(&["--wait", "1m"]).0 {
        eprintln!("using the mesh an earlier test installed (tulle check passes)");
        control_plane_ready(client).await;
        return keep;
    }
    install_fresh(client).await;
    kubectl::run(&[
        "label",
        "namespace",
        CP,
        "--overwrite",
        &format!("{PRISTINE_LABEL}={want}"),
    ])
    .expect("labelling the shared install");
    keep
}

async fn install_fresh(client: &kube::Client) {
    Uninstall::now();
    wait_gone().await;
    let manifests = tulle(&["install"]);
    kubectl::run_stdin(&["apply", "-f", "-"], &manifests)
        .expect("tulle install | kubectl apply -f -");
    let (ok, doc) = check(&["--wait", "3m"]);
    assert!(ok, "tulle check --wait 3m after install: {doc}");
    control_plane_ready(client).await;
}
