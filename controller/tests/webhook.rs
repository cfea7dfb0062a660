//! The injector webhook over a real TLS connection on 127.0.0.1: AdmissionReview JSON in, the
//! returned JSON patch applied to the pod; bad requests; fail-open; certificate swap.
//! The cluster (namespaces, Events) is a fake here; the real one is covered by the cluster test.

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};
use tulle_api::certify::SwappableCert;
use tulle_controller::{
    inject::{self, Namespace as NamespaceInfo, Skip},
    webhook::{
        AnchorsFile, Injector, Metrics,
        certs::{self, Plan, WebhookTls},
        cluster::{Cluster, event_target},
        server, store,
    },
};

const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const SERVER_NAME: &str = "tulle-controller.tulle-system.svc";

#[derive(Default)]
struct FakeCluster {
    events: Mutex<Vec<(String, String, String)>>,
}

impl Cluster for FakeCluster {
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<NamespaceInfo, String>> {
        Box::pin(async move {
            let annotations = match name {
                "shop" => BTreeMap::from([("tulle.io/inject".into(), "enabled".into())]),
                "plain" => BTreeMap::new(),
                _ => return Err(format!("cannot get namespace {name}: forbidden")),
            };
            Ok(NamespaceInfo {
                name: name.into(),
                uid: Some(format!("uid-{name}")),
                annotations,
                labels: BTreeMap::new(),
            })
        })
    }

    fn record_skip(&self, pod: &Pod, ns: &NamespaceInfo, reason: &Skip) {
        let target = event_target(pod, ns);
        self.events.lock().unwrap().push((
            target.kind.unwrap_or_default(),
            target.name.unwrap_or_default(),
            reason.code().into(),
        ));
    }
}

fn config() -> inject::Config {
    inject::Config {
        proxy_image: "localhost/tulle/proxy:0.1.0".into(),
        allowed_images: vec![],
        ipv6: false,
        proxy_version: "0.1.0".into(),
        trust_domain: "cluster.local".into(),
        identity_addr: "tulle-identity.tulle-system.svc.cluster.local:8080".into(),
        identity_name: "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local"
            .into(),
        destination_addr: "tulle-controller.tulle-system.svc.cluster.local:8086".into(),
        destination_name:
            "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local".into(),
        policy_addr: "tulle-controller.tulle-system.svc.cluster.local:8090".into(),
        policy_name: "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local"
            .into(),
        log_level: "info".into(),
        resources: inject::Resources::default(),
    }
}

struct Server {
    addr: SocketAddr,
    cert: Arc<SwappableCert>,
    cluster: Arc<FakeCluster>,
    tls: WebhookTls,
    _dir: tempfile::TempDir,
}

fn material(now: SystemTime) -> WebhookTls {
    let names = certs::service_dns_names("tulle-controller", "tulle-system", "cluster.local");
    certs::rotate(None, Plan::NewCa, &names, now).unwrap()
}

async fn start() -> Server {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("trust-anchors.pem");
    std::fs::write(&anchors, ANCHORS).unwrap();
    let tls = material(SystemTime::now());
    let cert = Arc::new(SwappableCert::default());
    store::install(&cert, &tls).unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let injector = Arc::new(Injector {
        config: config(),
        anchors: AnchorsFile::new(anchors),
        cluster: cluster.clone(),
        metrics: Metrics::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = server::server_config(cert.clone()).unwrap();
    tokio::spawn(server::serve(listener, cfg, injector));
    Server {
        addr,
        cert,
        cluster,
        tls,
        _dir: dir,
    }
}

/// One HTTP/1.1 request over a fresh TLS connection that trusts only `ca_bundle`.
async fn send(
    addr: SocketAddr,
    ca_bundle: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), String> {
    let roots = tulle_api::certify::roots_from_pem(ca_bundle.as_bytes())?;
    let cfg = tulle_api::certify::client_config(roots).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(SERVER_NAME.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", SERVER_NAME)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let rsp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, body))
}

fn review(namespace: &str, pod: Value, dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
            "object": pod,
            "oldObject": null,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .unwrap()
}

fn web_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5d4f8-", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8", "uid": "rs-uid", "controller": true}]},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "web:1"}]}
    })
}

/// The response of a 200 answer, with its patch applied to `pod`.
fn response(body: &Bytes, pod: &Value) -> (Value, Value) {
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let rsp = v["response"].clone();
    assert_eq!(rsp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(rsp["allowed"], true);
    let mut out = pod.clone();
    if let Some(p) = rsp.get("patch") {
        assert_eq!(rsp["patchType"], "JSONPatch");
        // base64 text, as the API server expects for []byte.
        let bytes: k8s_openapi::ByteString = serde_json::from_value(p.clone()).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes.0).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
    }
    (rsp, out)
}

#[tokio::test]
async fn injects_over_tls() {
    let s = start().await;
    let (status, body) = send(
        s.addr,
        &s.tls.ca_bundle,
        "POST",
        "/inject",
        review("shop", web_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (rsp, out) = response(&body, &web_pod());
    assert!(rsp.get("warnings").is_none(), "{rsp}");
    let inits: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["tulle-init", "tulle-proxy"]);
    let env = out["spec"]["initContainers"][1]["env"].as_array().unwrap();
    let get = |n: &str| env.iter().find(|e| e["name"] == n).unwrap()["value"].clone();
    assert_eq!(
        get("TULLE_PROXY_IDENTITY_NAME"),
        "web.shop.serviceaccount.identity.tulle.cluster.local"
    );
    assert_eq!(get("TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM"), ANCHORS);
    assert_eq!(out["metadata"]["annotations"]["tulle.io/injected"], "true");
    let _: Pod = serde_json::from_value(out.clone()).unwrap();

    // A second pass (reinvocation) over the mutated pod changes nothing.
    let (status, body) = send(
        s.addr,
        &s.tls.ca_bundle,
        "POST",
        "/inject",
        review("shop", out.clone(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (rsp, again) = response(&body, &out);
    assert!(rsp.get("patch").is_none());
    assert_eq!(again, out);
    assert!(s.cluster.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn skips_are_recorded_and_failures_fail_open() {
    let s = start().await;
    let ca = &s.tls.ca_bundle;
    // Not enabled: untouched, nothing recorded.
    let (_, body) = send(
        s.addr,
        ca,
        "POST",
        "/inject",
        review("plain", web_pod(), false),
    )
    .await
    .unwrap();
    let (rsp, out) = response(&body, &web_pod());
    assert!(
        rsp.get("patch").is_none() && rsp.get("warnings").is_none(),
        "{rsp}"
    );
    assert_eq!(out, web_pod());

    // hostNetwork: annotated, a warning, an Event on the owning ReplicaSet.
    let mut pod = web_pod();
    pod["spec"]["hostNetwork"] = json!(true);
    let (_, body) = send(
        s.addr,
        ca,
        "POST",
        "/inject",
        review("shop", pod.clone(), false),
    )
    .await
    .unwrap();
    let (rsp, out) = response(&body, &pod);
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "host-network"
    );
    assert!(
        rsp["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("tulle: proxy not injected (host-network): the pod uses hostNetwork"),
        "{rsp}"
    );
    assert_eq!(
        *s.cluster.events.lock().unwrap(),
        [(
            "ReplicaSet".to_string(),
            "web-5d4f8".to_string(),
            "host-network".to_string()
        )]
    );
    // A dry run records no Event.
    send(s.addr, ca, "POST", "/inject", review("shop", pod, true))
        .await
        .unwrap();
    assert_eq!(s.cluster.events.lock().unwrap().len(), 1);

    // The namespace cannot be read: allowed, unchanged, with a warning.
    let (status, body) = send(
        s.addr,
        ca,
        "POST",
        "/inject",
        review("secret", web_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (rsp, out) = response(&body, &web_pod());
    assert_eq!(out, web_pod());
    assert!(
        rsp["warnings"][0]
            .as_str()
            .unwrap()
            .contains("cannot get namespace secret"),
        "{rsp}"
    );
}

/// The TrafficSplit conversion webhook on the same server: v1alpha1 Quantity weights come back
/// in milli-units, a bad weight is a Failure result (not an HTTP error).
#[tokio::test]
async fn converts_traffic_splits_over_tls() {
    let s = start().await;
    let ca = &s.tls.ca_bundle;
    let review = |weight: &str| {
        serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "c-1", "desiredAPIVersion": "split.smi-spec.io/v1alpha4", "objects": [{
                "apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"service": "web", "backends": [
                    {"service": "web-v1", "weight": "750m"}, {"service": "web-v2", "weight": weight}]}}]}
        }))
        .unwrap()
    };
    let (status, body) = send(s.addr, ca, "POST", "/convert", review("1"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["response"]["uid"], "c-1");
    assert_eq!(out["response"]["result"]["status"], "Success");
    let obj = &out["response"]["convertedObjects"][0];
    assert_eq!(obj["apiVersion"], "split.smi-spec.io/v1alpha4");
    assert_eq!(obj["spec"]["backends"][0]["weight"], 750);
    assert_eq!(obj["spec"]["backends"][1]["weight"], 1000);
    let (status, body) = send(s.addr, ca, "POST", "/convert", review("x"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["response"]["result"]["status"], "Failure");
    let (status, _) = send(s.addr, ca, "POST", "/convert", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_requests() {
    let s = start().await;
    let ca = &s.tls.ca_bundle;
    let (status, body) = send(s.addr, ca, "POST", "/inject", b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("cannot decode the AdmissionReview"));
    let no_request = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec();
    let (status, _) = send(s.addr, ca, "POST", "/inject", no_request)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(s.addr, ca, "GET", "/inject", vec![]).await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = send(s.addr, ca, "POST", "/mutate", vec![]).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let huge = vec![b' '; server::MAX_BODY + 1];
    let (status, _) = send(s.addr, ca, "POST", "/inject", huge).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // The server is still fine.
    let (status, _) = send(
        s.addr,
        ca,
        "POST",
        "/inject",
        review("plain", web_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// The API server may negotiate HTTP/2 (ALPN h2).
#[tokio::test]
async fn http2() {
    let s = start().await;
    let roots = tulle_api::certify::roots_from_pem(s.tls.ca_bundle.as_bytes()).unwrap();
    let mut cfg = (*tulle_api::certify::client_config(roots).unwrap()).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(SERVER_NAME.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = Request::builder()
            .method("POST")
            .uri(format!("https://{SERVER_NAME}/inject"))
            .body(Full::new(Bytes::from(review("shop", web_pod(), false))))
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), StatusCode::OK);
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        let (_, out) = response(&body, &web_pod());
        assert_eq!(out["spec"]["initContainers"][1]["name"], "tulle-proxy");
    }
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart() {
    let s = start().await;
    let (status, _) = send(
        s.addr,
        &s.tls.ca_bundle,
        "POST",
        "/inject",
        review("plain", web_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    // A new CA and certificate (as after a CA rotation by another replica).
    let next = material(SystemTime::now());
    store::install(&s.cert, &next).unwrap();
    let err = send(s.addr, &s.tls.ca_bundle, "POST", "/inject", vec![])
        .await
        .unwrap_err();
    assert!(err.starts_with("TLS:"), "{err}");
    let (status, _) = send(
        s.addr,
        &next.ca_bundle,
        "POST",
        "/inject",
        review("plain", web_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
}
