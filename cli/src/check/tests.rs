//! The runner (exit codes, fatal stops, `--wait` retries) against fake categories; the table
//! and JSON rendering against golden files; API-based checks against a scripted API server.

use super::*;
use crate::check::test_api::{expect, pair, reply, status};
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A category that returns `runs[i]` on its i-th run (the last one from then on).
struct Fake {
    name: &'static str,
    runs: Vec<Vec<CheckResult>>,
    calls: AtomicUsize,
}

impl Fake {
    fn boxed(name: &'static str, runs: Vec<Vec<CheckResult>>) -> Box<dyn Category> {
        Box::new(Fake {
            name,
            runs,
            calls: AtomicUsize::new(0),
        })
    }
}

impl Category for Fake {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run<'a>(&'a self, _ctx: &'a mut Ctx) -> CheckFuture<'a> {
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        let r = self.runs[i.min(self.runs.len() - 1)].clone();
        Box::pin(async move { r })
    }
}

fn ctx() -> Ctx {
    Ctx::new(GlobalArgs::default(), 30)
}

async fn run(cats: &[Box<dyn Category>], wait: Duration) -> (Report, Vec<String>) {
    let mut events = Vec::new();
    let report = run_categories(cats, &mut ctx(), wait, Duration::from_millis(5), &mut |e| {
        events.push(match e {
            Event::Start(c) => format!("start {c}"),
            Event::Waiting {
                category, check, ..
            } => format!("wait {category}: {}", check.name),
            Event::Done(c) => format!("done {}", c.name),
        })
    })
    .await;
    (report, events)
}

fn ok(n: &str) -> CheckResult {
    CheckResult::ok(n, "")
}

fn fail(n: &str) -> CheckResult {
    CheckResult::fail(n, "broken", "fix it")
}

#[tokio::test]
async fn a_failure_exits_1_and_later_categories_still_run() {
    let cats = [
        Fake::boxed("a", vec![vec![ok("a1"), fail("a2")]]),
        Fake::boxed("b", vec![vec![ok("b1")]]),
    ];
    let (r, events) = run(&cats, Duration::ZERO).await;
    assert!(!r.success);
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.categories.len(), 2);
    assert_eq!(events, ["start a", "done a", "start b", "done b"]);
}

#[tokio::test]
async fn warnings_exit_0() {
    let cats = [Fake::boxed(
        "a",
        vec![vec![ok("a1"), CheckResult::warn("a2", "old", "upgrade")]],
    )];
    let (r, _) = run(&cats, Duration::ZERO).await;
    assert!(r.success);
    assert_eq!(r.exit_code(), 0);
}

#[tokio::test]
async fn a_fatal_failure_stops_the_run() {
    let cats = [
        Fake::boxed("a", vec![vec![fail("a1").fatal()]]),
        Fake::boxed("b", vec![vec![ok("b1")]]),
    ];
    let (r, _) = run(&cats, Duration::ZERO).await;
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.categories.len(), 1);
}

#[tokio::test]
async fn wait_retries_a_failing_category_until_it_passes() {
    let cats = [Fake::boxed(
        "a",
        vec![vec![fail("a1")], vec![fail("a1")], vec![ok("a1")]],
    )];
    let (r, events) = run(&cats, Duration::from_secs(10)).await;
    assert!(r.success, "{r:?}");
    assert_eq!(
        events,
        ["start a", "wait a: a1", "wait a: a1", "done a"],
        "two retries, then the final result"
    );
}

#[tokio::test]
async fn wait_gives_up_when_the_time_runs_out() {
    let cats = [Fake::boxed("a", vec![vec![fail("a1")]])];
    let (r, events) = run(&cats, Duration::from_millis(30)).await;
    assert_eq!(r.exit_code(), 1);
    let waits = events.iter().filter(|e| e.starts_with("wait")).count();
    assert!((1..=6).contains(&waits), "{events:?}");
    // Without --wait there is no retry.
    let cats = [Fake::boxed("a", vec![vec![fail("a1")], vec![ok("a1")]])];
    let (r, _) = run(&cats, Duration::ZERO).await;
    assert_eq!(r.exit_code(), 1);
}

/// A report with every kind of line.
fn sample() -> Report {
    Report {
        success: false,
        categories: vec![
            CategoryReport {
                name: "kubernetes-api".into(),
                checks: vec![
                    ok("can initialize the client"),
                    ok("can query the Kubernetes API"),
                ],
            },
            CategoryReport {
                name: "tulle-identity".into(),
                checks: vec![
                    CheckResult::ok(
                        "trust anchors are valid for more than 30 days",
                        "expires in 364 days at the earliest",
                    ),
                    CheckResult::fail(
                        "issuer certificate is valid for more than 30 days",
                        "\"CN=issuer\" expires in 3 days (on 2027-01-18T08:00:00Z), within the 30-day threshold",
                        "issue a new issuer certificate",
                    ),
                ],
            },
            CategoryReport {
                name: "tulle-version".into(),
                checks: vec![CheckResult::warn(
                    "control plane is at the CLI's version",
                    "the control plane is 0.0.9, this CLI is 0.1.0",
                    "upgrade the control plane",
                )],
            },
        ],
    }
}

fn golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("TULLE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (TULLE_UPDATE_GOLDEN=1 writes it)"));
    assert_eq!(
        actual, expected,
        "{path} differs (TULLE_UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[test]
fn table_golden() {
    golden("check.txt", &render::table(&sample()));
    let mut ok_report = sample();
    ok_report.categories.truncate(1);
    ok_report.success = true;
    assert!(render::table(&ok_report).ends_with("Status check results are ✔\n"));
}

#[test]
fn json_golden_and_shape() {
    let text = render::json(&sample()).unwrap();
    golden("check.json", &text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["success"], false);
    let check = &v["categories"][1]["checks"][1];
    assert_eq!(check["status"], "fail");
    assert_eq!(check["hint"], "issue a new issuer certificate");
    assert_eq!(
        v["categories"][0]["checks"][0]["hint"],
        serde_json::Value::Null
    );
    assert!(check.get("fatal").is_none());
}

#[tokio::test]
async fn can_create_asks_a_self_subject_access_review() {
    let (client, mut h) = pair();
    let server = tokio::spawn(async move {
        let (body, _, send) = expect(
            &mut h,
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        )
        .await;
        let attrs = &body["spec"]["resourceAttributes"];
        assert_eq!(attrs["verb"], "create");
        assert_eq!(attrs["resource"], "mutatingwebhookconfigurations");
        assert_eq!(attrs["group"], "admissionregistration.k8s.io");
        assert!(attrs.get("namespace").is_none());
        let mut answer = body.clone();
        answer["status"] = json!({"allowed": false, "reason": "no RBAC policy matched"});
        reply(send, StatusCode::CREATED, answer);

        let (body, _, send) = expect(
            &mut h,
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        )
        .await;
        assert_eq!(
            body["spec"]["resourceAttributes"]["namespace"],
            "tulle-system"
        );
        let mut answer = body.clone();
        answer["status"] = json!({"allowed": true});
        reply(send, StatusCode::CREATED, answer);
    });
    let denied = pre::can_create(
        &client,
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        false,
        "MutatingWebhookConfigurations",
    )
    .await;
    assert_eq!(denied.status, Status::Fail);
    assert_eq!(denied.message, "not allowed: no RBAC policy matched");
    assert!(denied.hint.unwrap().contains("kubectl auth can-i create"));
    let allowed = pre::can_create(&client, "", "secrets", true, "Secrets").await;
    assert_eq!(allowed.status, Status::Ok);
    assert_eq!(allowed.name, "can create Secrets in tulle-system");
    server.await.unwrap();
}

fn pod(name: &str, version: &str, ready: bool) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "app",
            "labels": {"tulle.io/proxied": "true"},
            "annotations": {"tulle.io/proxy-version": version}},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Running", "initContainerStatuses": [{
            "name": "tulle-proxy", "ready": ready, "restartCount": 0, "image": "i", "imageID": "",
        }]}
    })
}

#[tokio::test]
async fn data_plane_lists_meshed_pods_in_all_namespaces() {
    let (client, mut h) = pair();
    let server = tokio::spawn(async move {
        let (_, query, send) = expect(&mut h, Method::GET, "/api/v1/pods").await;
        assert!(
            query.contains("labelSelector=tulle.io%2Fproxied%3Dtrue"),
            "{query}"
        );
        reply(
            send,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                pod("web-1", "0.1.0", true),
                pod("web-2", "0.0.9", true),
                pod("db-1", "0.1.0", false),
            ]}),
        );
        let (_, _, send) = expect(&mut h, Method::GET, "/api/v1/pods").await;
        reply(send, StatusCode::FORBIDDEN, status(403, "Forbidden"));
    });
    let mut ctx = ctx();
    ctx.client = Some(client);
    ctx.control_plane_version = Some("0.1.0".into());
    let r = data_plane::DataPlane.run(&mut ctx).await;
    assert_eq!(r[0].status, Status::Fail);
    assert_eq!(
        r[0].message,
        "1 of 3 meshed pod(s) have no ready tulle-proxy: app/db-1"
    );
    assert_eq!(r[1].status, Status::Warn);
    assert_eq!(
        r[1].message,
        "1 pod(s) run a proxy other than 0.1.0: app/web-2 (0.0.9)"
    );
    let r = data_plane::DataPlane.run(&mut ctx).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, Status::Fail);
    assert!(r[0].message.starts_with("Forbidden (403)"), "{:?}", r[0]);
    server.await.unwrap();
}

#[test]
fn finished_and_terminating_pods_are_not_counted() {
    let mut done: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod("job-1", "0.0.1", false)).unwrap();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut going: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod("old-1", "0.0.1", false)).unwrap();
    going.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-11-30T06:00:00Z")).unwrap());
    let r = data_plane::data_plane_checks(&[done, going], Some("0.1.0"));
    assert_eq!(r[0].status, Status::Ok);
    assert_eq!(r[0].message, "0 meshed pod(s)");
    assert_eq!(r[1].status, Status::Ok);
}

#[test]
fn kubernetes_versions() {
    use kubernetes::version_check;
    assert_eq!(version_check("n", "1", "33").status, Status::Ok);
    assert_eq!(version_check("n", "1", "29+").status, Status::Ok);
    let old = version_check("n", "1", "28");
    assert_eq!(old.status, Status::Fail);
    assert!(old.hint.unwrap().contains("1.29"));
    assert_eq!(version_check("n", "x", "y").status, Status::Warn);
}

#[test]
fn control_plane_version_mismatch_warns() {
    use version::version_check;
    assert_eq!(version_check(Some("0.1.0"), "0.1.0").status, Status::Ok);
    assert_eq!(version_check(Some("0.0.9"), "0.1.0").status, Status::Warn);
    assert_eq!(version_check(None, "0.1.0").status, Status::Warn);
}

#[test]
fn smi_crds_of_another_mesh() {
    let ours = crate::manifest::crds("0.1.0")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("trafficsplits.split.smi-spec.io"))
        .unwrap();
    // tulle's own (a previous install): fine.
    assert_eq!(pre::smi_conflict(&ours, &ours), None);
    // Another mesh's, serving a subset of tulle's versions: fine.
    let mut theirs = ours.clone();
    theirs.metadata.labels = None;
    theirs.spec.versions.retain(|v| v.name == "v1alpha2");
    assert_eq!(pre::smi_conflict(&ours, &theirs), None);
    // Another mesh's, serving and storing a version tulle does not serve: a warning.
    let mut old = theirs.clone();
    old.spec.versions[0].name = "v1beta1".into();
    old.status = Some(serde_json::from_value(json!({"storedVersions": ["v1beta1"]})).unwrap());
    let why = pre::smi_conflict(&ours, &old).unwrap();
    assert!(
        why.starts_with(
            "trafficsplits.split.smi-spec.io from another install serves or stores v1beta1"
        ),
        "{why}"
    );
}

#[test]
fn webhook_without_ca_bundle_or_secret_fails() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "tulle-proxy-injector"},
        "webhooks": [{"name": "inject.tulle.io", "clientConfig": {}, "sideEffects": "None",
                      "admissionReviewVersions": ["v1"]}]
    }))
    .unwrap();
    let now = SystemTime::now();
    let th = Duration::from_secs(30 * 86_400);
    let r = webhook::webhook_checks(Ok(Some(config)), Ok(None), now, th);
    let st: Vec<_> = r.iter().map(|c| c.status).collect();
    assert_eq!(st, [Status::Ok, Status::Fail, Status::Fail], "{r:#?}");
    assert!(
        r[1].hint
            .as_deref()
            .unwrap()
            .contains("rollout restart deploy/tulle-controller")
    );
    assert_eq!(
        r[2].message,
        "secret tulle-system/tulle-webhook-tls or its tls.crt not found"
    );
    let r = webhook::webhook_checks(Ok(None), Ok(None), now, th);
    assert_eq!(r.len(), 1);
    assert!(
        r[0].hint
            .as_deref()
            .unwrap()
            .contains("tulle install | kubectl apply -f -")
    );
}

#[test]
fn a_missing_or_terminating_namespace_is_fatal() {
    use k8s_openapi::api::core::v1::Namespace;
    let r = existence::namespace_check(Ok(None));
    assert!(r.status == Status::Fail && r.fatal);
    let mut ns = Namespace::default();
    assert_eq!(
        existence::namespace_check(Ok(Some(ns.clone()))).status,
        Status::Ok
    );
    ns.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-11-30T06:00:00Z")).unwrap());
    let r = existence::namespace_check(Ok(Some(ns)));
    assert!(r.status == Status::Fail && r.fatal);
    assert_eq!(r.message, "namespace tulle-system is being deleted");
}

#[test]
fn the_dashboard_is_checked_when_installed_and_said_not_installed_otherwise() {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployment = |ready: i32| -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "tulle-dashboard", "namespace": "tulle-system"},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"readyReplicas": ready, "updatedReplicas": 1}
        }))
        .unwrap()
    };
    let r = existence::dashboard_check(Ok(Some(deployment(1))), Ok(true));
    assert_eq!(
        (r.status, r.name.as_str(), r.message.as_str()),
        (
            Status::Ok,
            "tulle-dashboard Deployment is ready",
            "1/1 replicas ready"
        )
    );
    let r = existence::dashboard_check(Ok(Some(deployment(0))), Ok(true));
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.hint
            .as_deref()
            .unwrap()
            .contains("describe pods -l tulle.io/control-plane-component=dashboard"),
        "{r:?}"
    );
    // Left out at install: an explicit line, not a failure.
    let r = existence::dashboard_check(Ok(None), Ok(false));
    assert_eq!(
        (r.status, r.name.as_str()),
        (Status::Ok, "tulle-dashboard is not installed")
    );
    assert!(r.message.contains("--dashboard=false"), "{r:?}");
    // Installed, then its Deployment deleted.
    let r = existence::dashboard_check(Ok(None), Ok(true));
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.hint.as_deref().unwrap().contains("tulle install"),
        "{r:?}"
    );
}
