//! Faults under load on the real cluster (issue 15, "Reliability, proven on the real cluster"):
//! the mesh installed with the CLI, meshed traffic at 20 requests/s (the testapp's `/load`), and
//! for each fault the count of failed requests, printed and checked:
//!
//! 1. a rolling restart of the server Deployment fails no request (graceful drain: the server
//!    pod leaves the endpoints as it starts terminating, its app keeps serving through a 5 s
//!    `preStop` sleep, as real apps do, while the clients' proxies drop it, and its proxy
//!    stops last, finishing what is in flight);
//! 2. a server pod killed (`kubectl delete pod --grace-period=0 --force`, one of 2 replicas:
//!    the object goes at once, the kubelet stops the containers with its minimum grace of 2 s
//!    and no preStop hook) fails at most the requests it had in flight, and no request sent
//!    more than 2 s after the kill fails (the endpoint is gone by then);
//! 3. an identity outage that lasts past the proxies' renewal point (identity issues 150 s
//!    leaves here, so proxies renew after 105 s) fails no request, and the proxies get new
//!    certificates once identity is back.
//!
//! The cases run concurrently, each in a namespace of its own. Run: `cluster/e2e faults`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tulle_e2e::install::{CP, install_with_cli};
use tulle_e2e::traffic::{Load, WEB_SERVICE, load, load_env, pods, until_answering, workload};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);
/// The leaf lifetime identity is configured with for this test.
const LEAF_LIFETIME_SECS: u64 = 150;
/// Where the proxy renews: 70 % of the lifetime left (`tulle_api::certify::renew_after`).
const RENEW_AT: f64 = 0.7;
/// After the kill, no failure may complete later than this: the client gives a request 10 s,
/// so a request failing later was sent more than 2 s after the kill, when the client's proxy
/// should long have dropped the killed pod's endpoint.
const QUIET_AFTER: Duration = Duration::from_secs(12);

/// An injected namespace with `web` (`replicas`, behind Service `web`) and a client sending it
/// 20 requests/s; returns the namespace and the client pod once `replicas` web pods answer.
async fn meshed_app(prefix: &str, replicas: u32) -> (TestNamespace, String) {
    let ns = TestNamespace::new(prefix).await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    ns.apply(&format!(
        "{}{WEB_SERVICE}{}",
        workload("web", replicas, "", ""),
        workload("client", 1, "", &load_env(&n))
    ))
    .expect("apply web and client");
    wait::pods_ready(&ns.client, &n, "app=web", replicas as usize, STEP)
        .await
        .expect("web");
    wait::pods_ready(&ns.client, &n, "app=client", 1, STEP)
        .await
        .expect("client");
    let client = pods(&n, "app=client").remove(0);
    let (set, took) = until_answering(&n, &client, replicas as usize, STEP).await;
    eprintln!("[{prefix}] {set:?} answer after {took:?}");
    (ns, client)
}

fn failed_since(before: &Load, after: &Load) -> u64 {
    after.failed - before.failed
}

/// Waits until `selector` in `ns` matches exactly `want` pods (terminating ones included).
async fn until_pod_count(ns: &str, selector: &str, want: usize) {
    wait::until(
        &format!("{want} pods {selector} in {ns}"),
        STEP,
        || async move { (pods(ns, selector).len() == want).then_some(()) },
        || async move { format!("pods: {:?}", pods(ns, selector)) },
    )
    .await
    .expect("pod count");
}

/// Case 1: `kubectl rollout restart` of the server; returns the failed requests.
async fn rolling_restart() -> u64 {
    let (ns, client) = meshed_app("restart", 2).await;
    let n = ns.name.clone();
    let old = pods(&n, "app=web");
    let before = load(&n, &client);
    let t0 = Instant::now();
    kubectl::run(&["rollout", "restart", "-n", &n, "deploy/web"]).unwrap();
    kubectl::run(&[
        "rollout",
        "status",
        "-n",
        &n,
        "deploy/web",
        "--timeout=180s",
    ])
    .expect("rollout");
    // Until the old pods are gone (their drain is what this case is about), then a little
    // more traffic to the new ones only.
    until_pod_count(&n, "app=web", 2).await;
    let (set, _) = until_answering(&n, &client, 2, STEP).await;
    assert!(
        set.iter().all(|p| !old.contains(p)),
        "old pods still answer: {set:?}"
    );
    let after = load(&n, &client);
    let failed = failed_since(&before, &after);
    eprintln!(
        "FAULT rolling restart: {failed} failed of {} requests over {:?} (last errors: {})",
        after.ok + after.failed - before.ok - before.failed,
        t0.elapsed(),
        errors(&before, &after)
    );
    failed
}

/// The last errors of the client's load, if any request failed since `before`.
fn errors(before: &Load, after: &Load) -> String {
    if after.failed > before.failed {
        after.raw["errors"].to_string()
    } else {
        "none".into()
    }
}

/// Case 2: one of two server pods force-deleted; returns (failed requests, when the last
/// failure was seen after the kill, failed requests completed after [`QUIET_AFTER`]).
async fn sigkill() -> (u64, Duration, u64) {
    let (ns, client) = meshed_app("sigkill", 2).await;
    let n = ns.name.clone();
    let victim = pods(&n, "app=web").remove(0);
    let before = load(&n, &client);
    let t0 = Instant::now();
    kubectl::run(&[
        "delete",
        "pod",
        "-n",
        &n,
        &victim,
        "--grace-period=0",
        "--force",
    ])
    .unwrap();
    let mut last_failure = Duration::ZERO;
    let mut seen = 0;
    // (when the read began, failed requests so far)
    let mut samples = Vec::new();
    let mut last = before.clone();
    while t0.elapsed() < QUIET_AFTER + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let at = t0.elapsed();
        last = load(&n, &client);
        let f = failed_since(&before, &last);
        if f > seen {
            seen = f;
            last_failure = t0.elapsed();
        }
        samples.push((at.as_secs(), f));
    }
    let quiet_from = samples
        .iter()
        .rev()
        .find(|(t, _)| *t <= QUIET_AFTER.as_secs())
        .map_or(0, |(_, f)| *f);
    let failed = failed_since(&before, &last);
    eprintln!(
        "FAULT SIGKILL of {victim}: {failed} failed of {} requests, the last failure seen {last_failure:?} after the kill (failed by second: {samples:?}; last errors: {})",
        last.ok + last.failed - before.ok - before.failed,
        errors(&before, &last)
    );
    let survivors: Vec<String> = pods(&n, "app=web")
        .into_iter()
        .filter(|p| *p != victim)
        .collect();
    assert!(
        survivors
            .iter()
            .any(|p| last.by_pod.get(p) > before.by_pod.get(p)),
        "no other web pod answered after the kill: {}",
        last.raw
    );
    (failed, last_failure, failed - quiet_from)
}

/// The proxy's certificates so far in `pod`: the `valid_until_unix` of each "certificate
/// installed" line of its log, and how many renewals failed.
fn certificates(ns: &str, pod: &str) -> (Vec<u64>, usize) {
    let logs = kubectl::logs(ns, pod, Some("tulle-proxy")).unwrap_or_default();
    let logs = strip_ansi(&logs);
    let until = logs
        .lines()
        .filter(|l| l.contains("certificate installed"))
        .filter_map(|l| {
            let v = l.split("valid_until_unix=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect();
    let failures = logs
        .lines()
        .filter(|l| l.contains("getting a certificate failed"))
        .count();
    (until, failures)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn sleep_until_unix(t: f64) {
    let d = t - now_unix();
    if d > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(d)).await;
    }
}

fn scale_identity(replicas: u32) {
    kubectl::run(&[
        "scale",
        "-n",
        CP,
        "deploy/tulle-identity",
        &format!("--replicas={replicas}"),
    ])
    .expect("scaling identity");
}

/// Case 3: identity away across the renewal point of the proxies' certificates; returns the
/// failed requests.
async fn identity_outage(client_api: kube::Client) -> u64 {
    let (ns, client) = meshed_app("identity", 1).await;
    let n = ns.name.clone();
    let meshed = [pods(&n, "app=web").remove(0), client.clone()];
    let certs: Vec<(Vec<u64>, usize)> = meshed.iter().map(|p| certificates(&n, p)).collect();
    let valid_until: Vec<f64> = certs
        .iter()
        .zip(&meshed)
        .map(|((c, _), p)| {
            *c.last()
                .unwrap_or_else(|| panic!("no certificate installed in {p}'s proxy log"))
                as f64
        })
        .collect();
    // Each renews at 70 % of what was left when its certificate was installed (right after it
    // was issued, valid for LEAF_LIFETIME_SECS).
    let renew: Vec<f64> = valid_until
        .iter()
        .map(|u| u - (1.0 - RENEW_AT) * LEAF_LIFETIME_SECS as f64)
        .collect();
    let first = renew.iter().cloned().fold(f64::MAX, f64::min);
    let last = renew.iter().cloned().fold(0.0, f64::max);
    let expiry = valid_until.iter().cloned().fold(f64::MAX, f64::min);
    // Scaling down starts early enough for a pod that lingers for its whole grace period (30
    // s); the outage counts from when the pod is gone.
    let (start, end) = (first - 40.0, last + 5.0);
    eprintln!(
        "[identity] renewal points in {:.0} s and {:.0} s, expiry in {:.0} s: identity away from {:.0} s to {:.0} s",
        first - now_unix(),
        last - now_unix(),
        expiry - now_unix(),
        start - now_unix(),
        end - now_unix()
    );
    assert!(
        end + 20.0 < expiry,
        "the renewal points are too far apart for one outage before expiry: {renew:?} {valid_until:?}"
    );
    sleep_until_unix(start).await;
    let before = load(&n, &client);
    let t0 = Instant::now();
    scale_identity(0);
    // Away means its pod is gone: a terminating pod still answers on open connections.
    until_pod_count(CP, "tulle.io/control-plane-component=identity", 0).await;
    let gone = t0.elapsed();
    assert!(
        now_unix() < first - 2.0,
        "identity's pod took {gone:?} to go: the outage began after the renewal point"
    );
    sleep_until_unix(end).await;
    let during = load(&n, &client);
    let away = t0.elapsed() - gone;
    // Every proxy tried to renew while identity was away, and failed.
    for (p, (_, failures_before)) in meshed.iter().zip(&certs) {
        let (c, failures) = certificates(&n, p);
        assert!(
            failures > *failures_before,
            "{p}'s proxy did not try to renew while identity was away ({failures} failures, certificates {c:?})"
        );
    }
    scale_identity(1);
    wait::pods_ready(
        &client_api,
        CP,
        "tulle.io/control-plane-component=identity",
        1,
        STEP,
    )
    .await
    .expect("identity back");
    // Renewal recovers: each proxy installs a new certificate, before the old one expires.
    for (p, (old, _)) in meshed.iter().zip(&certs) {
        let n = &n;
        let renewed = wait::until(
            &format!("a new certificate in {p}'s proxy"),
            Duration::from_secs(60),
            || async move {
                let (c, _) = certificates(n, p);
                (c.len() > old.len()).then(|| *c.last().unwrap())
            },
            || async move { format!("{:?}", certificates(n, p)) },
        )
        .await
        .expect("renewal after identity returned");
        eprintln!(
            "[identity] {p}: new certificate valid for {:.0} s more, {:.0} s before the old one expired",
            renewed as f64 - now_unix(),
            expiry - now_unix()
        );
    }
    let after = load(&n, &client);
    assert!(
        during.ok > before.ok + 10 * away.as_secs(),
        "traffic stalled while identity was away: {} → {}",
        before.raw,
        during.raw
    );
    let failed = failed_since(&before, &after);
    eprintln!(
        "FAULT identity outage of {away:?} (its pod gone {gone:?} after the scale-down) across the renewal point: {failed} failed of {} requests ({} while identity was away; last errors: {})",
        after.ok + after.failed - before.ok - before.failed,
        failed_since(&before, &during),
        errors(&before, &after)
    );
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn faults_under_load() {
    let t0 = Instant::now();
    let client = tulle_e2e::client().await.expect("cluster");
    let _mesh = install_with_cli(&client).await;
    eprintln!("mesh installed after {:?}", t0.elapsed());
    // Short leaves, for the identity outage to cross a renewal point within the test.
    kubectl::run(&[
        "set",
        "env",
        "-n",
        CP,
        "deploy/tulle-identity",
        &format!("TULLE_IDENTITY_CERT_LIFETIME_SECS={LEAF_LIFETIME_SECS}"),
    ])
    .expect("short leaf lifetime");
    kubectl::run(&[
        "rollout",
        "status",
        "-n",
        CP,
        "deploy/tulle-identity",
        "--timeout=180s",
    ])
    .expect("identity rolled out");

    let restart = tokio::spawn(rolling_restart());
    let kill = tokio::spawn(sigkill());
    let outage = tokio::spawn(identity_outage(client.clone()));
    let restart = restart.await.expect("rolling restart case");
    let (killed, last_failure, late) = kill.await.expect("SIGKILL case");
    let outage = outage.await.expect("identity outage case");
    eprintln!(
        "FAULTS after {:?}: rolling restart {restart} failed, SIGKILL {killed} failed (last {last_failure:?} after the kill), identity outage {outage} failed",
        t0.elapsed()
    );
    assert_eq!(restart, 0, "requests failed during the rolling restart");
    assert_eq!(
        late, 0,
        "requests still failed {QUIET_AFTER:?} after the kill (the last {last_failure:?} after it)"
    );
    assert_eq!(outage, 0, "requests failed during the identity outage");
}
