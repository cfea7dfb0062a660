//! `stat` and `edges` against a scripted API server (tower-test): the requests made, the
//! hints, and each error message with its exit code.

use super::tests::{deployments, edge_item, list, metrics, resource_item, scope};
use super::*;
use crate::args::parse_target;
use crate::check::test_api::{expect, pair, reply};
use http::{Method, StatusCode};
use serde_json::json;

const P: &str = "/apis/metrics.smi-spec.io/v1alpha1";

fn deploy_query() -> Query {
    Query::new(
        &parse_target("deploy").unwrap(),
        None,
        &scope(TableOutput::Table),
        "demo",
    )
    .unwrap()
}

#[tokio::test]
async fn stat_reads_the_api_and_hints_without_traffic() {
    let (client, mut h) = pair();
    let server = tokio::spawn(async move {
        let (_, query, send) = expect(
            &mut h,
            Method::GET,
            &format!("{P}/namespaces/demo/deployments"),
        )
        .await;
        assert_eq!(query, "");
        reply(send, StatusCode::OK, deployments());
        let (_, _, send) = expect(
            &mut h,
            Method::GET,
            &format!("{P}/namespaces/demo/deployments"),
        )
        .await;
        let quiet = list(vec![resource_item(
            "Deployment",
            "demo",
            "web",
            (2, 2),
            metrics("0", "0", None, "0"),
        )]);
        reply(send, StatusCode::OK, quiet);
        let (_, _, send) = expect(
            &mut h,
            Method::GET,
            &format!("{P}/namespaces/demo/deployments"),
        )
        .await;
        reply(send, StatusCode::OK, list(vec![]));
    });
    let q = deploy_query();
    let out = stat(&client, &q, TableOutput::Table).await.unwrap();
    assert!(
        out.stdout.contains("web      2/2      97.78%"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty());
    let out = stat(&client, &q, TableOutput::Table).await.unwrap();
    assert!(out.stdout.starts_with("NAME"));
    assert!(out.stdout.contains("web    2/2      -"), "{}", out.stdout);
    assert_eq!(out.stderr.len(), 1);
    assert!(
        out.stderr[0].starts_with("no traffic in the last 30s"),
        "{:?}",
        out.stderr
    );
    let out = stat(&client, &q, TableOutput::Table).await.unwrap();
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, ["No deployments found in namespace demo."]);
    server.await.unwrap();
}

#[tokio::test]
async fn edges_of_every_resource_of_a_kind() {
    let (client, mut h) = pair();
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(
            &mut h,
            Method::GET,
            &format!("{P}/namespaces/demo/deployments"),
        )
        .await;
        reply(send, StatusCode::OK, deployments());
        // client, legacy, web, answered in whatever order they come; legacy's 404 makes
        // the CLI ask whether the group is served at all (it is).
        for _ in 0..4 {
            let mut h2 = std::pin::pin!(&mut h);
            let (req, send) = h2.next_request().await.unwrap();
            let path = req.uri().path().to_string();
            if path == P {
                reply(send, StatusCode::OK, json!({"kind": "APIResourceList"}));
                continue;
            }
            let answer = match path.rsplit('/').nth(1).unwrap() {
                "client" => list(vec![edge_item(
                    ("demo", "client"),
                    "to",
                    ("demo", "web"),
                    true,
                )]),
                "web" => list(vec![edge_item(
                    ("demo", "web"),
                    "from",
                    ("demo", "client"),
                    true,
                )]),
                "legacy" => {
                    reply(
                        send,
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "code": 404, "message": "deployments \"legacy\" not found"}),
                    );
                    continue;
                }
                other => panic!("{other}"),
            };
            assert!(path.ends_with("/edges"), "{path}");
            reply(send, StatusCode::OK, answer);
        }
    });
    let out = edges(&client, &deploy_query(), TableOutput::Table)
        .await
        .unwrap();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(out.stdout.contains("client   web   demo"), "{}", out.stdout);
    server.await.unwrap();
}

#[tokio::test]
async fn failures_say_what_to_do_with_their_exit_codes() {
    let (client, mut h) = pair();
    let server = tokio::spawn(async move {
        let status = |code: u16, msg: &str| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": msg});
        let list_path = format!("{P}/namespaces/demo/deployments");
        // 1. not installed: the group is unknown too
        let (_, _, send) = expect(&mut h, Method::GET, &list_path).await;
        reply(
            send,
            StatusCode::NOT_FOUND,
            status(404, "the server could not find the requested resource"),
        );
        let (_, _, send) = expect(&mut h, Method::GET, P).await;
        reply(
            send,
            StatusCode::NOT_FOUND,
            status(404, "the server could not find the requested resource"),
        );
        // 2. a resource that does not exist
        let (_, _, send) = expect(&mut h, Method::GET, &list_path).await;
        reply(
            send,
            StatusCode::NOT_FOUND,
            status(404, "deployments \"x\" not found in namespace \"demo\""),
        );
        let (_, _, send) = expect(&mut h, Method::GET, P).await;
        reply(send, StatusCode::OK, json!({"kind": "APIResourceList"}));
        // 3. 503 with the APIService not Available
        let (_, _, send) = expect(&mut h, Method::GET, &list_path).await;
        let mut rsp =
            http::Response::new(kube::client::Body::from(b"service unavailable\n".to_vec()));
        *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        send.send_response(rsp);
        let (_, _, send) = expect(
            &mut h,
            Method::GET,
            "/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.metrics.smi-spec.io",
        )
        .await;
        reply(
            send,
            StatusCode::OK,
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1alpha1.metrics.smi-spec.io"},
            "spec": {"groupPriorityMinimum": 100, "versionPriority": 100},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints",
                                       "message": "endpoints for service/tulle-controller in \"tulle-system\" have no addresses"}]}}),
        );
        // 4. forbidden
        let (_, _, send) = expect(&mut h, Method::GET, &list_path).await;
        reply(
            send,
            StatusCode::FORBIDDEN,
            status(
                403,
                "deployments.metrics.smi-spec.io is forbidden: User \"dev\" cannot list resource \"deployments\" in API group \"metrics.smi-spec.io\" in the namespace \"demo\"",
            ),
        );
    });
    let q = deploy_query();
    let e = stat(&client, &q, TableOutput::Table).await.unwrap_err();
    assert_eq!(e.exit_code(), crate::exit::UNAVAILABLE);
    assert!(e.to_string().contains("is not installed"), "{e}");
    assert!(e.to_string().contains("tulle install"), "{e}");
    let e = stat(&client, &q, TableOutput::Table).await.unwrap_err();
    assert_eq!(e.exit_code(), crate::exit::FAILURE);
    assert_eq!(
        e.to_string(),
        "deployments \"x\" not found in namespace \"demo\""
    );
    let e = stat(&client, &q, TableOutput::Table).await.unwrap_err();
    assert_eq!(e.exit_code(), crate::exit::UNAVAILABLE);
    assert!(
        e.to_string().contains("tulle-controller is not ready"),
        "{e}"
    );
    assert!(e.to_string().contains("have no addresses"), "{e}");
    let e = stat(&client, &q, TableOutput::Table).await.unwrap_err();
    assert_eq!(e.exit_code(), crate::exit::FORBIDDEN);
    assert!(e.to_string().contains("User \"dev\" cannot list"), "{e}");
    assert!(e.to_string().contains("grant get/list"), "{e}");
    server.await.unwrap();
}

#[test]
fn a_503_with_the_api_service_available_is_the_backend() {
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
        APIService, APIServiceCondition, APIServiceStatus,
    };
    let svc = APIService {
        status: Some(APIServiceStatus {
            conditions: Some(vec![APIServiceCondition {
                type_: "Available".into(),
                status: "True".into(),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    };
    let e = api::unavailable_from(Ok(Some(svc)), "prometheus: connection refused".into());
    assert!(
        e.to_string()
            .contains("cannot read its metrics: prometheus: connection refused")
    );
    assert_eq!(
        api::unavailable_from(Ok(None), String::new()),
        ApiError::NotInstalled
    );
}
