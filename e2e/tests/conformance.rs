//! The SMI conformance suite (`conformance/`, the `tulle-conformance` binary) on the mesh
//! installed with `tulle install`: every case passes, and a deliberately broken mesh profile
//! (access control left open where a case needs deny) makes the suite fail, naming the case
//! and the step. Both runs at once. The reports go to `target/conformance/`; the table of the
//! passing run is written into `conformance/README.md`.
//!
//! Needs the images of `cluster/load-tulle`, `cluster/image testapp`, and `$TULLE_BIN` and
//! `$TULLE_CONFORMANCE_BIN`; cluster/e2e provides them.

use std::path::PathBuf;
use std::process::{Command, Output};

use tulle_e2e::install::{bin, shared_mesh};

/// A tulle profile whose "deny" leaves access open: the broken mesh configuration.
const BROKEN: &str = "name: tulle-broken\ninject: {annotations: {tulle.io/inject: enabled}}\ndeny: {annotations: {config.tulle.io/default-inbound-policy: allow}}\nallow: {annotations: {config.tulle.io/default-inbound-policy: allow}}\noutside: {annotations: {tulle.io/inject: disabled}}\n";

fn suite(args: Vec<String>) -> tokio::task::JoinHandle<Output> {
    tokio::task::spawn_blocking(move || {
        Command::new(bin("TULLE_CONFORMANCE_BIN"))
            .args(&args)
            .output()
            .expect("running tulle-conformance")
    })
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn smi_conformance_suite_passes_and_a_broken_mesh_fails_it() {
    let kube = tulle_e2e::client().await.expect("cluster");
    let _mesh = shared_mesh(&kube).await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let reports = root.join("target/conformance");
    std::fs::create_dir_all(&reports).expect("report dir");
    let profile = reports.join("broken-profile.yaml");
    std::fs::write(&profile, BROKEN).expect("profile");
    let s = |p: &std::path::Path| p.display().to_string();

    let broken = suite(vec![
        "--mesh".into(),
        s(&profile),
        "--only".into(),
        "access".into(),
        "--report-dir".into(),
        s(&reports.join("broken")),
    ]);
    let full = suite(vec![
        "--report-dir".into(),
        s(&reports.join("tulle")),
        "--readme".into(),
        s(&root.join("conformance/README.md")),
    ]);
    let (broken, full) = (
        broken.await.expect("broken run"),
        full.await.expect("full run"),
    );
    let (broken_text, full_text) = (show("broken profile", &broken), show("tulle", &full));
    eprintln!("{full_text}");
    eprintln!("{broken_text}");
    assert_eq!(
        full.status.code(),
        Some(0),
        "the suite on tulle: {full_text}"
    );
    assert_eq!(
        broken.status.code(),
        Some(1),
        "the broken profile must fail the suite: {broken_text}"
    );
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert!(
        stdout.contains("FAILED access / trafficDefault:"),
        "the failure names the case and the step: {broken_text}"
    );
    let junit = std::fs::read_to_string(reports.join("broken/junit.xml")).expect("junit.xml");
    assert!(junit.contains("<failure"), "{junit}");
}
