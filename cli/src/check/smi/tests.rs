use super::*;
use crate::check::{
    Status,
    test_api::{expect, pair, reply, status},
};
use http::{Method, StatusCode};

fn ours(name: &str) -> CustomResourceDefinition {
    manifest::crds("0.1.0")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap()
}

#[test]
fn crds_must_serve_our_versions() {
    let all = || {
        manifest::crds("0.1.0")
            .into_iter()
            .map(|c| (c.clone(), Ok(Some(c))))
            .collect::<Vec<_>>()
    };
    assert_eq!(crd_check(all()).status, Status::Ok);
    let mut found = all();
    // Another install's trafficsplits without v1alpha1; tcproutes missing.
    if let Ok(Some(c)) = &mut found[0].1 {
        c.spec.versions.retain(|v| v.name != "v1alpha1");
    }
    for f in &mut found {
        if f.0.metadata.name.as_deref() == Some("tcproutes.specs.smi-spec.io") {
            f.1 = Ok(None);
        }
    }
    let r = crd_check(found);
    assert_eq!(r.status, Status::Fail);
    assert_eq!(
        r.message,
        "trafficsplits.split.smi-spec.io does not serve v1alpha1; tcproutes.specs.smi-spec.io not found"
    );
    assert!(r.hint.unwrap().contains("tulle install"));
}

#[test]
fn the_conversion_webhook_needs_a_ca_bundle() {
    let mut crd = ours(TRAFFIC_SPLITS);
    let r = ca_bundle_check(Some(&crd));
    assert_eq!(r.status, Status::Fail);
    assert!(r.message.contains("no caBundle yet"), "{}", r.message);
    crd.spec
        .conversion
        .as_mut()
        .unwrap()
        .webhook
        .as_mut()
        .unwrap()
        .client_config
        .as_mut()
        .unwrap()
        .ca_bundle = Some(k8s_openapi::ByteString(b"PEM".to_vec()));
    assert_eq!(ca_bundle_check(Some(&crd)).status, Status::Ok);
    crd.spec.conversion = None;
    assert!(
        ca_bundle_check(Some(&crd))
            .message
            .contains("has no conversion webhook")
    );
    assert_eq!(ca_bundle_check(None).status, Status::Fail);
}

#[tokio::test]
async fn dry_run_goes_through_the_webhook() {
    let (client, mut h) = pair();
    let server = tokio::spawn(async move {
        let path = "/apis/split.smi-spec.io/v1alpha1/namespaces/tulle-system/trafficsplits";
        let (body, query, send) = expect(&mut h, Method::POST, path).await;
        assert!(query.contains("dryRun=All"), "{query}");
        assert_eq!(body["apiVersion"], "split.smi-spec.io/v1alpha1");
        assert_eq!(body["metadata"]["generateName"], "tulle-check-");
        let mut answer = body.clone();
        answer["metadata"]["name"] = json!("tulle-check-x1");
        assert_eq!(body["spec"]["backends"][1]["weight"], "1000m");
        answer["spec"]["backends"][1]["weight"] = json!("1");
        reply(send, StatusCode::CREATED, answer);
        let (_, _, send) = expect(&mut h, Method::POST, path).await;
        let mut s = status(500, "InternalError");
        s["message"] = json!(
            "conversion webhook for split.smi-spec.io/v1alpha4, Kind=TrafficSplit failed: x509: certificate signed by unknown authority"
        );
        reply(send, StatusCode::INTERNAL_SERVER_ERROR, s);
    });
    assert_eq!(dry_run_check(dry_run(&client).await).status, Status::Ok);
    let r = dry_run_check(dry_run(&client).await);
    assert_eq!(r.status, Status::Fail);
    assert!(r.message.contains("x509"), "{}", r.message);
    server.await.unwrap();
    // Weights not converted back.
    let mut o = probe();
    o.data["spec"]["backends"][1]["weight"] = json!(1000);
    let r = dry_run_check(Ok(o));
    assert!(r.message.contains("expected 500m and 1"), "{}", r.message);
}

fn event(kind: &str, name: &str, uid: &str, reason: &str, at: &str, by: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.{reason}"), "namespace": "shop"},
        "involvedObject": {"kind": kind, "name": name, "namespace": "shop", "uid": uid},
        "reason": reason, "message": format!("{reason} on {name}"), "type": "Warning",
        "reportingComponent": by, "lastTimestamp": at
    }))
    .unwrap()
}

#[test]
fn warning_events_are_listed_as_warnings() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_547_200); // 2025-12-01T00:00:00Z
    let events = vec![
        event(
            "TrafficSplit",
            "web",
            "u1",
            "BackendNotFound",
            "2025-11-30T23:50:00Z",
            CONTROLLER,
        ),
        event(
            "TrafficSplit",
            "web",
            "u1",
            "BackendNotFound",
            "2025-11-30T23:58:00Z",
            CONTROLLER,
        ),
        event(
            "TrafficSplit",
            "gone",
            "u9",
            "AllWeightsZero",
            "2025-11-30T23:58:00Z",
            CONTROLLER,
        ),
        event(
            "HTTPRouteGroup",
            "rg",
            "u2",
            "InvalidObject",
            "2025-11-30T23:59:30Z",
            CONTROLLER,
        ),
        event(
            "Pod",
            "web-1",
            "u3",
            "BackOff",
            "2025-11-30T23:59:30Z",
            "kubelet",
        ),
        event(
            "TrafficSplit",
            "web",
            "u1",
            "Other",
            "2025-11-30T23:59:30Z",
            "someone-else",
        ),
    ];
    let live = Some(HashSet::from(["u1".to_string(), "u2".to_string()]));
    let r = warning_checks(Ok(events.clone()), live, now);
    assert_eq!(r.len(), 2, "{r:#?}");
    assert!(r.iter().all(|c| c.status == Status::Warn));
    assert_eq!(r[0].name, "HTTPRouteGroup shop/rg: InvalidObject");
    assert_eq!(r[1].name, "TrafficSplit shop/web: BackendNotFound");
    assert_eq!(r[1].message, "BackendNotFound on web (2m ago)");
    assert_eq!(
        r[1].hint.as_deref(),
        Some("kubectl -n shop describe trafficsplit web")
    );
    // Objects unknown: all of tulle-controller's.
    assert_eq!(warning_checks(Ok(events), None, now).len(), 3);
    let ok = warning_checks(Ok(vec![]), None, now);
    assert_eq!(ok[0].status, Status::Ok);
    let err = warning_checks(
        Err(kube::Error::Api(
            serde_json::from_value(status(403, "Forbidden")).unwrap(),
        )),
        None,
        now,
    );
    assert_eq!(err[0].status, Status::Warn);
}

#[test]
fn traffic_target_warnings_and_udp_routes() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_100);
    let events = vec![event(
        "TrafficTarget",
        "allow-web",
        "u1",
        "RouteNotFound",
        "2023-11-14T22:13:20Z",
        CONTROLLER,
    )];
    let r = warning_checks(Ok(events), None, now);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, Status::Warn);
    assert!(
        r[0].name
            .contains("TrafficTarget shop/allow-web: RouteNotFound"),
        "{}",
        r[0].name
    );

    let none = udp_check(Some(0));
    assert_eq!(none.status, Status::Ok);
    let some = udp_check(Some(2));
    assert_eq!(some.status, Status::Warn);
    assert!(
        some.message.contains("2 UDPRoute") && some.message.contains("does not carry UDP"),
        "{}",
        some.message
    );
}
