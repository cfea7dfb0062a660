//! The one-command install on the real cluster: from empty (`tulle check --pre` passes),
//! `tulle install | kubectl apply -f -` brings the control plane up and `tulle check` passes; an annotated namespace gets its pods injected automatically
//! (init step + native sidecar) and their traffic is mTLS with the right identities; a Job
//! meshed by `tulle inject --manual` in another namespace calls them over mTLS and completes; `tulle uninstall | kubectl delete -f -` leaves nothing of the
//! mesh. The Helm charts do the same.
//!
//! Needs the images of `cluster/load-tulle`, `cluster/image testapp`, the `tulle` binary
//! (`$TULLE_BIN`) and helm (`$TULLE_HELM`); cluster/e2e provides all of them.

use std::time::Duration;

use tulle_e2e::install::{
    CP, Uninstall, bin, check, control_plane_ready, helm, run_stdin, tulle, wait_gone,
};
use tulle_e2e::mesh::identity_name;
use tulle_e2e::traffic::{
    WEB_SERVICE, has_mtls_request, load, load_env, pods, proxy_metrics, until_answering, workload,
};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);

/// An annotated namespace with web + client (no sidecars in the YAML): both are injected and
/// talk mTLS with their own identities; a Job with an injected pod completes.
async fn injected_app_talks_mtls() {
    let ns = TestNamespace::new("inject").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    ns.apply(&format!("{}{WEB_SERVICE}", workload("web", 2, "", "")))
        .expect("apply web");
    wait::pods_ready(&ns.client, &n, "app=web", 2, STEP)
        .await
        .expect("web");
    ns.apply(&workload("client", 1, "", &load_env(&n)))
        .expect("apply client");
    wait::pods_ready(&ns.client, &n, "app=client", 1, STEP)
        .await
        .expect("client");

    for pod in pods(&n, "app in (web,client)") {
        let spec = kubectl::run(&[
            "get",
            "pod",
            "-n",
            &n,
            &pod,
            "-o",
            "jsonpath={.spec.initContainers[*].name} {.metadata.annotations.tulle\\.io/injected}",
        ])
        .unwrap();
        assert_eq!(spec.trim(), "tulle-init tulle-proxy true", "pod {pod}");
    }
    let client = pods(&n, "app=client").remove(0);
    let (set, took) = until_answering(&n, &client, 2, STEP).await;
    eprintln!("injected: both web pods answer ({set:?}) after {took:?}");
    let l = load(&n, &client);
    assert_eq!(l.failed, 0, "failed requests: {}", l.raw);
    let (client_id, web_id) = (identity_name("client", &n), identity_name("web", &n));
    let m = proxy_metrics(&n, &client);
    assert!(
        has_mtls_request(&m, "outbound", &web_id),
        "no outbound mTLS request to {web_id}:\n{m}"
    );
    for web in pods(&n, "app=web") {
        let m = proxy_metrics(&n, &web);
        assert!(
            has_mtls_request(&m, "inbound", &client_id),
            "no inbound mTLS request from {client_id} in {web}:\n{m}"
        );
    }

    // `tulle inject --manual` meshes a Job in a namespace without the annotation (the anchors
    // come from the installed mesh); its pod calls web across namespaces over mTLS and the Job
    // completes: the native sidecar stops after the main container.
    let other = TestNamespace::new("manual").await.expect("namespace");
    let m = other.name.clone();
    let job = format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: once}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: app
        image: {testapp}
        imagePullPolicy: Never
        args: [get, "http://web.{n}.svc.cluster.local/"]
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        testapp = tulle_e2e::testapp_image()
    );
    let meshed = run_stdin(
        &bin("TULLE_BIN"),
        &["inject", "--manual", "-n", &m, "-"],
        &job,
    );
    other
        .apply(&meshed)
        .expect("apply the manually injected Job");
    kubectl::run(&[
        "wait",
        "-n",
        &m,
        "--for=condition=complete",
        "job/once",
        "--timeout=180s",
    ])
    .unwrap_or_else(|e| {
        panic!(
            "the injected Job did not complete: {e}\n{}",
            kubectl::run(&["describe", "pod", "-n", &m, "-l", "job-name=once"]).unwrap_or_default()
        )
    });
    let job_pod = pods(&m, "job-name=once").remove(0);
    let init = kubectl::run(&[
        "get",
        "pod",
        "-n",
        &m,
        &job_pod,
        "-o",
        "jsonpath={.spec.initContainers[*].name}",
    ])
    .unwrap();
    assert_eq!(init.trim(), "tulle-init tulle-proxy");
    let logs = kubectl::logs(&m, &job_pod, Some("app")).unwrap_or_default();
    assert!(logs.starts_with("200"), "the Job's GET: {logs}");
    // The server saw the Job's identity.
    let job_id = identity_name("default", &m);
    let seen = pods(&n, "app=web")
        .iter()
        .any(|w| has_mtls_request(&proxy_metrics(&n, w), "inbound", &job_id));
    assert!(seen, "no web proxy saw an mTLS request from {job_id}");
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn install_inject_uninstall_with_the_cli() {
    let client = tulle_e2e::client().await.expect("cluster");
    let _guard = Uninstall::guard();
    Uninstall::now();
    wait_gone().await;

    let (ok, doc) = check(&["--pre"]);
    assert!(ok, "tulle check --pre fails on an empty cluster: {doc}");
    let manifests = tulle(&["install"]);
    kubectl::run_stdin(&["apply", "-f", "-"], &manifests)
        .expect("tulle install | kubectl apply -f -");
    let (ok, doc) = check(&["--wait", "3m"]);
    assert!(ok, "tulle check --wait 3m after install: {doc}");
    let (ok, doc) = check(&["--pre"]);
    assert!(
        !ok,
        "tulle check --pre passes with the mesh installed: {doc}"
    );
    control_plane_ready(&client).await;
    let version = tulle(&["version"]);
    assert!(
        version.contains(&format!("Server version: {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    injected_app_talks_mtls().await;
    let (ok, doc) = check(&[]);
    assert!(ok, "tulle check after the app ran: {doc}");

    let refs = tulle(&["uninstall"]);
    kubectl::run_stdin(&["delete", "-f", "-"], &refs)
        .expect("tulle uninstall | kubectl delete -f -");
    wait_gone().await;
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn install_inject_uninstall_with_helm() {
    let client = tulle_e2e::client().await.expect("cluster");
    let _guard = Uninstall::guard();
    Uninstall::now();
    wait_gone().await;

    let charts = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts");
    helm(&[
        "install",
        "tulle-crds",
        &format!("{charts}/tulle-crds"),
        "--wait",
    ]);
    helm(&["install", "tulle", &format!("{charts}/tulle"), "-n", CP]);
    let (ok, doc) = check(&["--wait", "3m"]);
    assert!(ok, "tulle check --wait 3m after helm install: {doc}");
    control_plane_ready(&client).await;

    injected_app_talks_mtls().await;

    helm(&["uninstall", "tulle", "-n", CP, "--wait"]);
    helm(&["uninstall", "tulle-crds", "--wait"]);
    wait_gone().await;
}

/// `tulle install --ha` (issue 15, high availability): two Ready replicas each of identity and
/// controller on the single node (the anti-affinity is only preferred), PodDisruptionBudgets
/// that allow one disruption, the injector's failurePolicy Fail; with one controller replica
/// deleted and not yet replaced, pods are still admitted and injected by the other (no
/// FailedCreate), and `tulle check` passes.
#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn install_ha_injects_with_a_controller_replica_gone() {
    let client = tulle_e2e::client().await.expect("cluster");
    let _guard = tokio::task::spawn_blocking(Uninstall::guard)
        .await
        .expect("mesh lock");
    Uninstall::now();
    wait_gone().await;
    let manifests = tulle(&["install", "--ha"]);
    kubectl::run_stdin(&["apply", "-f", "-"], &manifests)
        .expect("tulle install --ha | kubectl apply -f -");
    let (ok, doc) = check(&["--wait", "3m"]);
    assert!(ok, "tulle check --wait 3m after install --ha: {doc}");
    control_plane_ready(&client).await;
    for c in ["identity", "controller"] {
        wait::pods_ready(
            &client,
            CP,
            &format!("tulle.io/control-plane-component={c}"),
            2,
            STEP,
        )
        .await
        .expect(c);
        let pdb = format!("tulle-{c}");
        wait::until(
            &format!("PodDisruptionBudget {pdb} allows one disruption"),
            STEP,
            || async {
                let s = kubectl::run(&[
                    "get",
                    "pdb",
                    "-n",
                    CP,
                    &pdb,
                    "-o",
                    "jsonpath={.spec.minAvailable} {.status.currentHealthy} {.status.disruptionsAllowed}",
                ])
                .ok()?;
                (s.trim() == "1 2 1").then_some(())
            },
            || async {
                kubectl::run(&["get", "pdb", "-n", CP, "-o", "wide"]).unwrap_or_default()
            },
        )
        .await
        .expect("PodDisruptionBudget");
    }
    let policy = kubectl::run(&[
        "get",
        "mutatingwebhookconfiguration",
        "tulle-proxy-injector",
        "-o",
        "jsonpath={.webhooks[0].failurePolicy}",
    ])
    .unwrap();
    assert_eq!(policy.trim(), "Fail");

    // The namespace first, so that the pods are created right after the replica goes away
    // (its replacement needs seconds to become ready).
    let ns = TestNamespace::new("ha").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    let victim = pods(CP, "tulle.io/control-plane-component=controller").remove(0);
    kubectl::run(&["delete", "pod", "-n", CP, &victim, "--wait=false"]).expect("delete");
    ns.apply(&format!("{}{WEB_SERVICE}", workload("web", 2, "", "")))
        .expect("apply web");
    let ready = kubectl::run(&[
        "get",
        "pods",
        "-n",
        CP,
        "-l",
        "tulle.io/control-plane-component=controller",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}:ready={.status.containerStatuses[0].ready}:deleting={.metadata.deletionTimestamp} {end}",
    ])
    .unwrap_or_default();
    eprintln!("controller pods when web's pods were created (deleted {victim}): {ready}");
    wait::pods_ready(&ns.client, &n, "app=web", 2, STEP)
        .await
        .expect("web");
    for pod in pods(&n, "app=web") {
        let init = kubectl::run(&[
            "get",
            "pod",
            "-n",
            &n,
            &pod,
            "-o",
            "jsonpath={.spec.initContainers[*].name}",
        ])
        .unwrap();
        assert_eq!(init.trim(), "tulle-init tulle-proxy", "pod {pod}");
    }
    let refused = kubectl::run(&[
        "get",
        "events",
        "-n",
        &n,
        "--field-selector",
        "reason=FailedCreate",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ])
    .unwrap_or_default();
    assert!(
        refused.trim().is_empty(),
        "pods were refused while one controller replica was gone:\n{refused}"
    );
    let (ok, doc) = check(&["--wait", "3m"]);
    assert!(ok, "tulle check after losing a replica: {doc}");
}
