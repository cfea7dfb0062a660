//! Two meshed workloads on the real cluster, each with a hand-written proxy sidecar (the
//! iptables init step, then tulle-proxy as a native sidecar), and tulle-identity plus
//! tulle-controller running as pods: each proxy gets a certificate for its own ServiceAccount,
//! the client → server traffic is mTLS with the right identities (from the proxies' metrics),
//! scaling the server changes the balancing set with no failed request, and deleting the
//! controller pod mid-traffic fails no request.
//!
//! Needs the images of `cluster/load-tulle` and `cluster/image testapp` (cluster/e2e builds them).

use std::time::Duration;

use tulle_e2e::mesh::{self, ClusterRbac, TestCa, identity_name};
use tulle_e2e::traffic::{
    Load, WEB_SERVICE, has_mtls_request, load, load_env, pods, proxy_metrics, until_answering,
    workload,
};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);

/// The server: Deployment `web` (2 replicas, hand-written sidecars) behind Service `web`.
fn server(ns: &str, ca: &TestCa) -> String {
    format!(
        "{}{WEB_SERVICE}",
        workload("web", 2, &mesh::sidecar("web", ns, ns, ca), "")
    )
}

/// The client: a steady 20 requests/s to `http://web.<ns>.svc.cluster.local/`.
fn client(ns: &str, ca: &TestCa) -> String {
    workload(
        "client",
        1,
        &mesh::sidecar("client", ns, ns, ca),
        &load_env(ns),
    )
}

fn assert_no_failures(l: &Load, when: &str) {
    assert_eq!(l.failed, 0, "failed requests {when}: {}", l.raw);
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn meshed_pair_mtls_scaling_and_controller_loss() {
    let ns = TestNamespace::new("mesh").await.expect("namespace");
    let n = ns.name.clone();
    let ca = TestCa::new();
    let _rbac = ClusterRbac(n.clone());
    ns.apply(&format!(
        "{}{}",
        mesh::control_plane(&n, &ca),
        server(&n, &ca)
    ))
    .expect("apply");
    for (app, count) in [("tulle-identity", 1), ("tulle-controller", 1), ("web", 2)] {
        wait::pods_ready(&ns.client, &n, &format!("app={app}"), count, STEP)
            .await
            .expect(app);
    }
    // The client starts once the servers are ready (before, "no endpoints" is the right answer).
    ns.apply(&client(&n, &ca)).expect("apply the client");
    wait::pods_ready(&ns.client, &n, "app=client", 1, STEP)
        .await
        .expect("client");
    let client = pods(&n, "app=client").remove(0);

    // Traffic flows to both servers, with no failure.
    let (set, took) = until_answering(&n, &client, 2, STEP).await;
    eprintln!("both web pods answer ({set:?}) after {took:?}");
    let l = load(&n, &client);
    assert!(l.ok > 0);
    assert_no_failures(&l, "at start");

    // mTLS with the right identities, both ways: the client's proxy checked the servers'
    // certificates (server_id), the servers' proxies learnt the client's (client_id).
    let (client_id, web_id) = (identity_name("client", &n), identity_name("web", &n));
    let m = proxy_metrics(&n, &client);
    assert!(
        has_mtls_request(&m, "outbound", &web_id),
        "no outbound mTLS request to {web_id} in the client proxy's metrics:\n{m}"
    );
    for web in pods(&n, "app=web") {
        let m = proxy_metrics(&n, &web);
        assert!(
            has_mtls_request(&m, "inbound", &client_id),
            "no inbound mTLS request from {client_id} in {web}'s proxy metrics:\n{m}"
        );
    }

    // Scale up: the new pod joins the balancing set; scale down: the removed pods leave it;
    // no request fails either way.
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=3"]).unwrap();
    wait::pods_ready(&ns.client, &n, "app=web", 3, STEP)
        .await
        .expect("3 web pods");
    let (set, took) = until_answering(&n, &client, 3, STEP).await;
    eprintln!("scaled to 3: {set:?} answer, {took:?} after the third pod was ready");
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=1"]).unwrap();
    let (set, took) = until_answering(&n, &client, 1, STEP).await;
    eprintln!("scaled to 1: only {set:?} answers after {took:?}");
    wait::until(
        "web scaled down to one pod",
        STEP,
        || {
            let n = &n;
            async move { (pods(n, "app=web").len() == 1).then_some(()) }
        },
        || async { String::new() },
    )
    .await
    .expect("terminated web pods gone");
    assert_no_failures(&load(&n, &client), "while scaling 2 → 3 → 1");

    // Delete the controller pod mid-traffic: proxies keep their last endpoints, then follow
    // the new controller.
    let before = load(&n, &client);
    kubectl::run(&[
        "delete",
        "pod",
        "-n",
        &n,
        "-l",
        "app=tulle-controller",
        "--wait=false",
    ])
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait::pods_ready(&ns.client, &n, "app=tulle-controller", 1, STEP)
        .await
        .expect("a new controller pod");
    let during = load(&n, &client);
    assert!(
        during.ok > before.ok + 20,
        "traffic stalled while the controller was away: {} → {}",
        before.raw,
        during.raw
    );
    assert_no_failures(&during, "while the controller pod was replaced");
    // None of it went in plaintext: the servers' proxies saw no request for web without
    // mTLS (the client proxy fails closed rather than skip mTLS when discovery does not
    // answer; kubelet's probes, plaintext by nature, name the pod IP, not web).
    for web in pods(&n, "app=web") {
        let m = proxy_metrics(&n, &web);
        let plain: Vec<&str> = m
            .lines()
            .filter(|l| {
                l.starts_with("request_total{direction=\"inbound\"")
                    && l.contains("tls=\"no_identity\"")
                    && l.contains(&format!("authority=\"web.{n}"))
            })
            .collect();
        assert!(
            plain.is_empty(),
            "plaintext requests reached {web}: {plain:?}"
        );
    }
    // The proxies resolve through the new controller: a new server pod gets traffic.
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=2"]).unwrap();
    let (set, took) = until_answering(&n, &client, 2, STEP).await;
    eprintln!("after the controller restart, scaled to 2: {set:?} after {took:?}");
    assert_no_failures(&load(&n, &client), "at the end");
}
