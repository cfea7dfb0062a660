//! On the real cluster (`cluster/`): tulle-identity and tulle-controller run as pods from
//! locally built images; Certify is called with a real projected-style ServiceAccount token
//! (TokenRequest, audience `identity.tulle.io`) and checked by a real TokenReview; a
//! destination watch follows a real Deployment as it scales; the controller serves it over
//! TLS with a certificate it obtained from identity with its own projected token.
//!
//! Run (cluster up, KUBECONFIG set by `source /var/lib/tulle-cluster/env`):
//!   cargo build -p tulle-identity -p tulle-controller
//!   cargo test -p tulle-controller --test cluster_e2e -- --ignored --test-threads=1

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::RootCertStore;
use std::{path::PathBuf, process::Command, sync::Arc, time::Duration};
use tokio_stream::StreamExt;
use tonic::Code;
use tulle_api::{
    ServiceAccountIdentity,
    destination::{GetDestination, destination_client::DestinationClient, update::Update as U},
    identity::{CertifyRequest, identity_client::IdentityClient},
};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(120);

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tulle-controller"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pack(image: &str, bin: &str) {
    let path = bin_dir().join(bin);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p {bin}` first",
        path.display()
    );
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = Command::new(repo.join("cluster/image"))
        .args([
            "pack",
            image,
            "--file",
            &format!("{}:/usr/local/bin/{bin}", path.display()),
            "--entrypoint",
            &format!("/usr/local/bin/{bin}"),
            "--user",
            "65532",
        ])
        .output()
        .expect("running cluster/image");
    assert!(
        out.status.success(),
        "cluster/image pack {image} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Ca {
    root: rustls_pki_types::CertificateDer<'static>,
    root_pem: String,
    issuer_pem: String,
    issuer_key_pem: String,
}

fn make_ca() -> Ca {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    rp.distinguished_name.push(DnType::CommonName, "root.e2e");
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = rp.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(rp, root_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ip = CertificateParams::new(Vec::<String>::new()).unwrap();
    ip.distinguished_name
        .push(DnType::CommonName, "identity.e2e");
    ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ip.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = ip.signed_by(&key, &root_issuer).unwrap();
    Ca {
        root: root.der().clone(),
        root_pem: root.pem(),
        issuer_pem: cert.pem(),
        issuer_key_pem: key.serialize_pem(),
    }
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

fn manifests(ns: &str, ca: &Ca) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: tulle-identity-issuer}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{crt}  tls.key: |
{key}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: tulle-trust-anchors}}
data:
  trust-anchors.pem: |
{roots}---
apiVersion: v1
kind: Service
metadata: {{name: tulle-identity}}
spec:
  selector: {{app: tulle-identity}}
  ports: [{{name: grpc, port: 8080}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: tulle-identity}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: tulle-controller}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: web}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-identity}}
rules:
- {{apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}}
- {{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-identity}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-identity}}
subjects: [{{kind: ServiceAccount, name: tulle-identity, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-controller}}
rules:
- {{apiGroups: [""], resources: [services, pods], verbs: [list, watch]}}
- {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}}
- {{apiGroups: [split.smi-spec.io], resources: [trafficsplits], verbs: [list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-controller}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-controller}}
subjects: [{{kind: ServiceAccount, name: tulle-controller, namespace: {ns}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tulle-identity}}
spec:
  selector: {{matchLabels: {{app: tulle-identity}}}}
  template:
    metadata: {{labels: {{app: tulle-identity}}}}
    spec:
      serviceAccountName: tulle-identity
      containers:
      - name: identity
        image: localhost/tulle/identity:e2e
        imagePullPolicy: Never
        env:
        - {{name: TULLE_IDENTITY_NAMESPACE, value: {ns}}}
        - {{name: TULLE_IDENTITY_ISSUER_DIR, value: /var/run/tulle/issuer}}
        - {{name: TULLE_IDENTITY_POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        volumeMounts: [{{name: issuer, mountPath: /var/run/tulle/issuer, readOnly: true}}]
        readinessProbe: {{httpGet: {{path: /ready, port: 9990}}, periodSeconds: 1}}
      volumes: [{{name: issuer, secret: {{secretName: tulle-identity-issuer}}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tulle-controller}}
spec:
  selector: {{matchLabels: {{app: tulle-controller}}}}
  template:
    metadata: {{labels: {{app: tulle-controller}}}}
    spec:
      serviceAccountName: tulle-controller
      containers:
      - name: controller
        image: localhost/tulle/controller:e2e
        imagePullPolicy: Never
        env:
        - {{name: TULLE_CONTROLLER_NAMESPACE, value: {ns}}}
        - {{name: TULLE_CONTROLLER_IDENTITY_ADDR, value: "tulle-identity.{ns}.svc.cluster.local:8080"}}
        - {{name: TULLE_CONTROLLER_IDENTITY_SERVER_NAME, value: "tulle-identity.{ns}.serviceaccount.identity.tulle.cluster.local"}}
        - {{name: TULLE_CONTROLLER_TRUST_ANCHORS, value: /var/run/tulle/identity/trust-anchors.pem}}
        - {{name: TULLE_CONTROLLER_TOKEN_FILE, value: /var/run/secrets/tulle.io/serviceaccount/token}}
        volumeMounts:
        - {{name: anchors, mountPath: /var/run/tulle/identity, readOnly: true}}
        - {{name: token, mountPath: /var/run/secrets/tulle.io/serviceaccount, readOnly: true}}
        readinessProbe: {{httpGet: {{path: /ready, port: 9990}}, periodSeconds: 1}}
      volumes:
      - {{name: anchors, configMap: {{name: tulle-trust-anchors}}}}
      - name: token
        projected:
          sources: [{{serviceAccountToken: {{path: token, audience: identity.tulle.io, expirationSeconds: 86400}}}}]
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
        crt = indent(&ca.issuer_pem, 4),
        key = indent(&ca.issuer_key_pem, 4),
        roots = indent(&ca.root_pem, 4),
        testapp = tulle_e2e::testapp_image(),
    )
}

fn csr(id: &ServiceAccountIdentity) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![
        SanType::DnsName(id.dns_name().try_into().unwrap()),
        SanType::URI(id.spiffe_uri().try_into().unwrap()),
    ];
    p.serialize_request(&key).unwrap().der().to_vec()
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
#[ignore = "needs the cluster: cargo build -p tulle-identity -p tulle-controller, then run with --ignored"]
async fn identity_and_destination_on_the_cluster() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    pack("localhost/tulle/identity:e2e", "tulle-identity");
    pack("localhost/tulle/controller:e2e", "tulle-controller");
    let ns = TestNamespace::new("idd").await.expect("namespace");
    let n = ns.name.clone();
    let ca = make_ca();
    ns.apply(&manifests(&n, &ca)).expect("apply manifests");
    let cleanup = scopeguard(n.clone());

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
    roots.add(ca.root.clone()).unwrap();
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
    let rsp = tokio::time::timeout(
        STEP,
        identity.certify(CertifyRequest {
            identity: web.dns_name(),
            token: token.trim().as_bytes().to_vec(),
            certificate_signing_request: csr(&web),
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
    // The controller serves over TLS with the certificate it got from identity with its
    // own projected token.
    let controller = ServiceAccountIdentity::new("tulle-controller", &n, "cluster.local");
    let mut roots = RootCertStore::empty();
    roots.add(ca.root.clone()).unwrap();
    let cfg = tulle_api::certify::client_config(roots).unwrap();
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
    drop(cleanup);
}

/// Deletes the test's cluster-scoped RBAC objects when dropped.
struct Cleanup(String);

fn scopeguard(ns: String) -> Cleanup {
    Cleanup(ns)
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for kind in ["clusterrole", "clusterrolebinding"] {
            for suffix in ["identity", "controller"] {
                let _ = kubectl::run(&[
                    "delete",
                    kind,
                    &format!("{}-{suffix}", self.0),
                    "--ignore-not-found",
                ]);
            }
        }
    }
}
