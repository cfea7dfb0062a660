//! On the real cluster (`cluster/`): tulle-identity and tulle-controller run as pods from
//! locally built images; Certify is called with a real projected-style ServiceAccount token
//! (TokenRequest, audience `identity.tulle.io`) and checked by a real TokenReview; a
//! destination watch follows a real Deployment as it scales; the controller serves it over
//! mTLS with a certificate it obtained from identity with its own projected token.
//!
//! Run: `cluster/e2e control_plane` (cluster up; builds and loads the images).

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::RootCertStore;
use std::{sync::Arc, time::Duration};
use tokio_stream::StreamExt;
use tonic::Code;
use tulle_api::{
    ServiceAccountIdentity,
    destination::{GetDestination, destination_client::DestinationClient, update::Update as U},
    identity::{CertifyRequest, identity_client::IdentityClient},
};
use tulle_e2e::{
    TestNamespace, kubectl,
    mesh::{self, TestCa},
    wait,
};

const STEP: Duration = Duration::from_secs(120);

fn manifests(ns: &str, ca: &TestCa) -> String {
    format!(
        r#"{control_plane}---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web, tulle.io/proxy-version: e2e}}}}
    spec:
      serviceAccountName: web
      containers:
      - name: app
        image: {testapp}
        imagePullPolicy: Never
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#,
        control_plane = mesh::control_plane(ns, ca),
        testapp = tulle_e2e::testapp_image(),
    )
}

/// A CSR for `id` and its key.
fn csr_and_key(id: &ServiceAccountIdentity) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![
        SanType::DnsName(id.dns_name().try_into().unwrap()),
        SanType::URI(id.spiffe_uri().try_into().unwrap()),
    ];
    (p.serialize_request(&key).unwrap().der().to_vec(), key)
}

fn csr(id: &ServiceAccountIdentity) -> Vec<u8> {
    csr_and_key(id).0
}

async fn next_update(s: &mut tonic::Streaming<tulle_api::destination::Update>) -> U {
    tokio::time::timeout(STEP, s.next())
        .await
        .expect("no destination update in time")
        .expect("stream ended")
        .expect("stream error")
        .update
        .expect("empty update")
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn identity_and_destination_on_the_cluster() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ns = TestNamespace::new("idd").await.expect("namespace");
    let n = ns.name.clone();
    let ca = TestCa::new();
    let _rbac = mesh::ClusterRbac(n.clone());
    ns.apply(&manifests(&n, &ca)).expect("apply manifests");

    for app in ["tulle-identity", "tulle-controller"] {
        wait::pods_ready(&ns.client, &n, &format!("app={app}"), 1, STEP)
            .await
            .expect(app);
    }
    wait::pods_ready(&ns.client, &n, "app=web", 2, STEP)
        .await
        .expect("web pods");

    // === identity ===
    let pf = kubectl::PortForward::start(&n, "deploy/tulle-identity", 8080)
        .expect("port-forward identity");
    let mut roots = RootCertStore::empty();
    roots.add(ca.root_der.clone().into()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server = ServiceAccountIdentity::new("tulle-identity", &n, "cluster.local");
    let channel =
        tulle_api::tls::channel(&pf.local.to_string(), &server.dns_name(), Arc::new(cfg)).unwrap();
    let mut identity = IdentityClient::new(channel);
    let web = ServiceAccountIdentity::new("web", &n, "cluster.local");
    let token = kubectl::run(&[
        "create",
        "token",
        "web",
        "-n",
        &n,
        "--audience",
        "identity.tulle.io",
    ])
    .expect("token");
    let (web_csr, web_key) = csr_and_key(&web);
    let rsp = tokio::time::timeout(
        STEP,
        identity.certify(CertifyRequest {
            identity: web.dns_name(),
            token: token.trim().as_bytes().to_vec(),
            certificate_signing_request: web_csr,
        }),
    )
    .await
    .unwrap()
    .expect("Certify with a valid token")
    .into_inner();
    let (_, leaf) = x509_parser::parse_x509_certificate(&rsp.leaf_certificate).unwrap();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert!(
        sans.contains(&format!("DNSName({})", web.dns_name())),
        "{sans:?}"
    );

    // A token for another audience is refused by the real TokenReview.
    let wrong = kubectl::run(&[
        "create",
        "token",
        "web",
        "-n",
        &n,
        "--audience",
        "https://kubernetes.default.svc",
    ])
    .unwrap();
    let err = identity
        .certify(CertifyRequest {
            identity: web.dns_name(),
            token: wrong.trim().as_bytes().to_vec(),
            certificate_signing_request: csr(&web),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // A valid token asking for another ServiceAccount's identity is refused.
    let other = ServiceAccountIdentity::new("tulle-controller", &n, "cluster.local");
    let err = identity
        .certify(CertifyRequest {
            identity: other.dns_name(),
            token: token.trim().as_bytes().to_vec(),
            certificate_signing_request: csr(&other),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // The refusals are Events on the ServiceAccount, and the metrics count them.
    let events = wait::until(
        "an IssuingFailed Event on ServiceAccount web",
        STEP,
        || {
            let n = n.clone();
            async move {
                let out = kubectl::run(&[
                    "get",
                    "events",
                    "-n",
                    &n,
                    "--field-selector",
                    "reason=IssuingFailed",
                    "-o",
                    "name",
                ])
                .ok()?;
                (!out.trim().is_empty()).then_some(out)
            }
        },
        || async { String::new() },
    )
    .await
    .expect("IssuingFailed Event");
    assert!(!events.is_empty());
    let admin =
        kubectl::PortForward::start(&n, "deploy/tulle-identity", 9990).expect("port-forward admin");
    let (code, body) = kubectl::http_get(admin.local, "/metrics")
        .await
        .expect("identity /metrics");
    assert_eq!(code, 200);
    // One certificate for this test's own Certify call, one (or more, if its pod restarted) for
    // the controller, which gets its serving certificate from identity.
    let issued: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("identity_certificates_issued_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no identity_certificates_issued_total in:\n{body}"));
    assert!(
        issued >= 2,
        "expected at least 2 certificates issued:\n{body}"
    );
    assert!(
        body.contains("identity_refusals_total{reason=\"token_invalid\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("identity_refusals_total{reason=\"name_mismatch\"} 1"),
        "{body}"
    );
    assert!(body.contains("identity_issuer_expiry_seconds"), "{body}");

    // === destination ===
    let pf = kubectl::PortForward::start(&n, "deploy/tulle-controller", 8086)
        .expect("port-forward controller");
    // The controller serves over mTLS with the certificate it got from identity with its
    // own projected token: a client without a certificate is refused; one with the mesh
    // certificate just issued for `web` is served.
    let controller = ServiceAccountIdentity::new("tulle-controller", &n, "cluster.local");
    let roots = || {
        let mut roots = RootCertStore::empty();
        roots.add(ca.root_der.clone().into()).unwrap();
        roots
    };
    let anonymous = tulle_api::certify::client_config(roots()).unwrap();
    let channel =
        tulle_api::tls::channel(&pf.local.to_string(), &controller.dns_name(), anonymous).unwrap();
    let refused = DestinationClient::new(channel)
        .get(GetDestination {
            scheme: "k8s".into(),
            path: format!("web.{n}.svc.cluster.local:80"),
            context_token: String::new(),
        })
        .await;
    let refused = match refused {
        Err(e) => e.to_string(),
        Ok(mut s) => match tokio::time::timeout(STEP, s.get_mut().next()).await {
            Ok(Some(Err(e))) => e.to_string(),
            other => panic!("a client without a certificate was served: {other:?}"),
        },
    };
    eprintln!("without a client certificate: {refused}");
    let chain = std::iter::once(rsp.leaf_certificate.clone())
        .chain(rsp.intermediate_certificates.iter().cloned())
        .map(rustls_pki_types::CertificateDer::from)
        .collect::<Vec<_>>();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(web_key.serialize_der().into());
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots())
        .with_client_auth_cert(chain, key)
        .unwrap(),
    );
    // kubectl port-forward gives up after a connection the pod reset (the refused handshake):
    // a fresh one for the authenticated client.
    drop(pf);
    let pf = kubectl::PortForward::start(&n, "deploy/tulle-controller", 8086)
        .expect("port-forward controller");
    let channel =
        tulle_api::tls::channel(&pf.local.to_string(), &controller.dns_name(), cfg).unwrap();
    let mut dst = DestinationClient::new(channel);
    let get = |path: String| GetDestination {
        scheme: "k8s".into(),
        path,
        context_token: String::new(),
    };
    let mut unknown = dst
        .get(get(format!("nope.{n}.svc.cluster.local:80")))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(next_update(&mut unknown).await, U::NoEndpoints(x) if !x.exists));

    let mut s = dst
        .get(get(format!("web.{n}.svc.cluster.local:80")))
        .await
        .unwrap()
        .into_inner();
    // The two ready pods arrive (possibly over several updates), meshed, with labels.
    let mut addrs = std::collections::BTreeSet::new();
    while addrs.len() < 2 {
        match next_update(&mut s).await {
            U::Add(set) => {
                for a in set.addrs {
                    assert_eq!(
                        a.tls_identity.as_ref().map(|t| t.name.clone()),
                        Some(web.dns_name())
                    );
                    assert_eq!(
                        a.metric_labels.get("deployment").map(String::as_str),
                        Some("web")
                    );
                    assert_eq!(
                        a.metric_labels.get("serviceaccount").map(String::as_str),
                        Some("web")
                    );
                    let sa = std::net::SocketAddr::try_from(a.addr.as_ref().unwrap()).unwrap();
                    assert_eq!(sa.port(), 8080);
                    addrs.insert(sa);
                }
            }
            U::Remove(set) => {
                for a in set.addrs {
                    addrs.remove(&std::net::SocketAddr::try_from(&a).unwrap());
                }
            }
            U::NoEndpoints(x) => assert!(x.exists),
        }
    }
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=3"]).unwrap();
    let mut seen_add = false;
    while !seen_add {
        if let U::Add(set) = next_update(&mut s).await {
            seen_add = !set.addrs.is_empty();
        }
    }
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=1"]).unwrap();
    let mut seen_remove = false;
    while !seen_remove {
        if let U::Remove(set) = next_update(&mut s).await {
            seen_remove = !set.addrs.is_empty();
        }
    }
}
