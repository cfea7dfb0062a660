//! The handler with fakes: authorization, not found, empty windows, edges and splits.

use super::handler::{Api, Reply};
use super::{Access, Authorizer, Caller, Catalog};
use crate::core::{Index, Naming};
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use tulle_metrics::golden::{Kind, ResourceRef};
use tulle_metrics::query::{Labels, QueryError, Row, Select, Source};

/// Answers every query with the rows given for its metric: `counts` for `response_total`,
/// `other` for the rest (by metric name), filtered by the query's matchers.
#[derive(Default)]
struct FakeSource {
    counts: Vec<Row<f64>>,
    other: Vec<(&'static str, Row<f64>)>,
}

impl Source for FakeSource {
    fn sum_increase<'a>(
        &'a self,
        q: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        let rows = (self.counts.iter())
            .filter(|_| q.metric == tulle_metrics::query::RESPONSE_TOTAL)
            .chain(
                self.other
                    .iter()
                    .filter(|(m, _)| *m == q.metric)
                    .map(|(_, r)| r),
            )
            .filter(|r| {
                q.matchers
                    .iter()
                    .all(|m| m.matches(|l| r.labels.get(l).map(String::as_str)))
            })
            .cloned()
            .collect();
        Box::pin(async move { Ok(rows) })
    }
    fn quantiles<'a>(
        &'a self,
        _: &'a Select,
        _: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<Row<Vec<Option<f64>>>>, QueryError>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn sum_gauge<'a>(&'a self, _: &'a Select) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(async { Ok(vec![]) })
    }
}

struct Only(&'static str, Mutex<Vec<Access>>);

impl Authorizer for Only {
    fn authorize<'a>(
        &'a self,
        c: &'a Caller,
        a: &'a Access,
    ) -> BoxFuture<'a, Result<Result<(), String>, String>> {
        self.1.lock().unwrap().push(a.clone());
        let ok = c.user == self.0;
        Box::pin(async move { Ok(if ok { Ok(()) } else { Err("no RBAC".into()) }) })
    }
}

struct Deployments(Vec<&'static str>);

impl Catalog for Deployments {
    fn list<'a>(
        &'a self,
        kind: Kind,
        _: Option<&'a str>,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ResourceRef>, String>> {
        let v = self
            .0
            .iter()
            .map(|n| ResourceRef {
                kind,
                namespace: "demo".into(),
                name: n.to_string(),
            })
            .collect();
        Box::pin(async move { Ok(v) })
    }
}

fn row(pairs: &[(&str, &str)], v: f64) -> Row<f64> {
    let labels: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Row { labels, value: v }
}

fn api(source: FakeSource) -> (Api, Arc<Only>) {
    let auth = Arc::new(Only("alice", Mutex::default()));
    let api = Api {
        source: Arc::new(source),
        index: Arc::new(Index::new(Naming {
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
        })),
        catalog: Arc::new(Deployments(vec!["web", "client"])),
        authorizer: auth.clone(),
        now: Arc::new(|| "2026-12-01T00:00:00Z".into()),
    };
    (api, auth)
}

fn caller(user: &str) -> Caller {
    Caller {
        user: user.into(),
        ..Caller::default()
    }
}

const WEB: &str = "/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/deployments/web";

fn value(item: &serde_json::Value, name: &str) -> serde_json::Value {
    item["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
        .get("value")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn every_request_is_authorized_with_its_attributes() {
    let (api, auth) = api(FakeSource::default());
    let r = api.handle(&caller("bob"), WEB, None).await;
    assert_eq!(r.status, 403, "{r:?}");
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.contains("\"bob\" cannot get resource \"deployments\"") && msg.contains("\"demo\""),
        "{msg}"
    );
    let edges = format!("{WEB}/edges");
    api.handle(&caller("bob"), &edges, None).await;
    let seen = auth.1.lock().unwrap().clone();
    assert_eq!(seen[0].name.as_deref(), Some("web"));
    assert_eq!(seen[1].subresource, Some("edges"));
    // Discovery needs no SubjectAccessReview.
    let d = api
        .handle(&caller("bob"), "/apis/metrics.smi-spec.io/v1alpha1", None)
        .await;
    assert_eq!(d.status, 200);
    assert_eq!(auth.1.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_empty_window_is_zero_not_an_error_and_a_missing_resource_is_404() {
    let (api, _) = api(FakeSource::default());
    let Reply { status, body } = api.handle(&caller("alice"), WEB, Some("t=1m")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window"], "1m0s");
    assert_eq!(value(&body, "success_count"), "0");
    assert_eq!(
        value(&body, "p99_response_latency"),
        serde_json::Value::Null
    );
    let missing = format!("{WEB}x");
    assert_eq!(
        api.handle(&caller("alice"), &missing, None).await.status,
        404
    );
    assert_eq!(
        api.handle(&caller("alice"), WEB, Some("t=1d")).await.status,
        400
    );
}

#[tokio::test]
async fn counts_come_from_inbound_series_and_edges_from_outbound_ones() {
    let inbound = [
        ("direction", "inbound"),
        ("namespace", "demo"),
        ("deployment", "web"),
    ];
    let outbound = [
        ("direction", "outbound"),
        ("namespace", "demo"),
        ("deployment", "client"),
        ("dst_namespace", "demo"),
        ("dst_deployment", "web"),
        ("tls", "true"),
        (
            "server_id",
            "web.demo.serviceaccount.identity.tulle.cluster.local",
        ),
    ];
    let with = |base: &[(&'static str, &'static str)], class: &'static str| {
        let mut v = base.to_vec();
        v.push(("classification", class));
        v
    };
    let source = FakeSource {
        counts: vec![
            row(&with(&inbound, "success"), 90.0),
            row(&with(&inbound, "failure"), 10.0),
            row(&with(&outbound, "success"), 90.0),
            row(&with(&outbound, "failure"), 10.0),
        ],
        ..FakeSource::default()
    };
    let (api, _) = api(source);
    let item = api.handle(&caller("alice"), WEB, None).await.body;
    assert_eq!(value(&item, "success_count"), "90");
    assert_eq!(value(&item, "failure_count"), "10");
    let edges = api
        .handle(&caller("alice"), &format!("{WEB}/edges"), None)
        .await
        .body;
    let e = &edges["items"][0];
    // Every edge of the namespace's deployments in one aggregate query, seen from the client.
    let all = "/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/deployments";
    let list = api
        .handle(&caller("alice"), all, Some("edges=true"))
        .await
        .body;
    let one = &list["items"][0];
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(one["resource"]["name"], "client");
    assert_eq!(one["edge"]["direction"], "to");
    assert_eq!(one["edge"]["resource"]["name"], "web");
    let bad = api.handle(&caller("alice"), WEB, Some("edges=true")).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(e["edge"]["direction"], "from");
    assert_eq!(e["edge"]["resource"]["name"], "client");
    assert_eq!(e["edge"]["secured"], true);
    assert_eq!(value(e, "failure_count"), "10");
}

#[tokio::test]
async fn traffic_targets_have_allow_and_deny_counts_from_one_aggregate_question() {
    use crate::core::{AccessRule, ObjectMeta, PodInfo, Subject, TrafficTargetInfo};
    use tulle_metrics::query::{
        HTTP_AUTHZ_ALLOW_TOTAL, HTTP_AUTHZ_DENY_TOTAL, TCP_AUTHZ_ALLOW_TOTAL, TCP_AUTHZ_DENY_TOTAL,
    };
    let pod = |ns: &'static str, name: &'static str| [("namespace", ns), ("pod", name)];
    let source = FakeSource {
        other: vec![
            (
                HTTP_AUTHZ_ALLOW_TOTAL,
                row(&[("namespace", "demo"), ("authz", "demo/web-to-api")], 40.0),
            ),
            (
                TCP_AUTHZ_ALLOW_TOTAL,
                row(&[("namespace", "demo"), ("authz", "demo/web-to-api")], 2.0),
            ),
            (
                HTTP_AUTHZ_ALLOW_TOTAL,
                row(&[("namespace", "demo"), ("authz", "probe")], 9.0),
            ),
            (HTTP_AUTHZ_DENY_TOTAL, {
                let mut r = row(&pod("demo", "api-1"), 5.0);
                r.labels.insert("authz".into(), "targeted".into());
                r
            }),
            (TCP_AUTHZ_DENY_TOTAL, {
                let mut r = row(&pod("demo", "api-2"), 1.0);
                r.labels.insert("authz".into(), "targeted".into());
                r
            }),
        ],
        ..FakeSource::default()
    };
    let (api, auth) = api(source);
    let sa = |name: &str| Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: None,
    };
    let tt = |dest: &str| TrafficTargetInfo {
        destination: sa(dest),
        rules: vec![AccessRule::TcpRoute("all".into())],
        sources: vec![sa("web")],
        port: None,
        meta: ObjectMeta::default(),
    };
    for p in ["api-1", "api-2"] {
        let info = PodInfo {
            ips: vec!["10.0.0.1".parse().unwrap()],
            service_account: "api".into(),
            meshed: true,
            owner: None,
        };
        api.index.apply_pod("demo", p, info);
    }
    api.index.apply_smi("demo", "web-to-api", Ok(tt("api")));
    api.index.apply_smi("demo", "idle", Ok(tt("db")));

    let all = "/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/traffictargets";
    let Reply { status, body } = api.handle(&caller("alice"), all, None).await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    let by = |n: &str| items.iter().find(|i| i["resource"]["name"] == n).unwrap();
    let web = by("web-to-api");
    assert_eq!(web["resource"]["kind"], "TrafficTarget");
    assert_eq!(web["destination"]["name"], "api");
    assert_eq!(value(web, "allow_count"), "42");
    // Refused at the destination's pods: no TrafficTarget admitted them.
    assert_eq!(value(web, "deny_count"), "6");
    assert_eq!(value(by("idle"), "allow_count"), "0");
    assert_eq!(value(by("idle"), "deny_count"), "0");
    let seen = auth.1.lock().unwrap().clone();
    assert_eq!((seen[0].verb, seen[0].resource), ("list", "traffictargets"));

    let one = api
        .handle(&caller("alice"), &format!("{all}/idle"), None)
        .await;
    assert_eq!(one.body["items"].as_array().unwrap().len(), 1, "{one:?}");
    let missing = api
        .handle(&caller("alice"), &format!("{all}/nope"), None)
        .await;
    assert_eq!(missing.status, 404);
    let edges = api.handle(&caller("alice"), all, Some("edges=true")).await;
    assert_eq!(edges.status, 400);
}
