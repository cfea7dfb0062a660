//! The inbound policy gRPC server over mTLS on 127.0.0.1, wired as the controller wires it:
//! the pod's own identity gets its policy (at once, then on change), another mesh identity
//! gets PERMISSION_DENIED, an unknown pod NOT_FOUND, and a client without a certificate (or
//! with one from another CA) is refused by the TLS handshake. The destination server uses
//! the same server config, so the same refusals hold for it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{sync::Arc, time::Duration};
use tokio_stream::StreamExt;
use tonic::Code;
use tulle_api::{
    destination::{GetDestination, destination_client::DestinationClient},
    policy::{self as pb, WorkloadRef, inbound_policies_client::InboundPoliciesClient},
};
use tulle_controller::{
    core::{AccessRule, Index, Naming, PodInfo, Subject, TcpRouteInfo, TrafficTargetInfo},
    grpc::{CallerCheck, DestinationService, GrpcMetrics, PolicyService},
};

const LIMIT: Duration = Duration::from_secs(10);
const CONTROLLER: &str =
    "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local";
const API: &str = "api.shop.serviceaccount.identity.tulle.cluster.local";
const WEB: &str = "web.shop.serviceaccount.identity.tulle.cluster.local";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut r = rustls::RootCertStore::empty();
        r.add(self.der.clone()).unwrap();
        r
    }

    /// A leaf with `name` as DNS SAN, as tulle-identity issues them.
    fn leaf(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The controller's mTLS server config: a client certificate from the mesh CA is required.
fn server_config(ca: &Ca) -> Arc<rustls::ServerConfig> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(ca.roots()),
        provider(),
    )
    .build()
    .unwrap();
    let (chain, key) = ca.leaf(CONTROLLER);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// A proxy's client config: trusts `ca`, presents `leaf` (None: no certificate).
fn client(
    ca: &Ca,
    leaf: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    addr: std::net::SocketAddr,
) -> tonic::transport::Channel {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots());
    let cfg = match leaf {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        None => b.with_no_client_auth(),
    };
    tulle_api::tls::channel(&addr.to_string(), CONTROLLER, Arc::new(cfg)).unwrap()
}

fn index() -> Arc<Index> {
    let ix = Arc::new(Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    }));
    ix.apply_pod(
        "shop",
        "api-1",
        PodInfo {
            ips: vec!["10.1.0.5".parse().unwrap()],
            service_account: "api".into(),
            meshed: true,
            owner: None,
        },
    );
    ix
}

async fn serve(ix: Arc<Index>, ca: &Ca) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(|| true) as Arc<dyn Fn() -> bool + Send + Sync>;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                PolicyService::new(ix.clone(), CallerCheck::MeshIdentity, ready).into_server(),
            )
            .add_service(DestinationService::new(ix, GrpcMetrics::default()).into_server())
            .serve_with_incoming(tulle_api::tls::incoming(listener, server_config(ca))),
    );
    addr
}

/// The TLS handshake refused the client: with TLS 1.3 the client learns it from the server's
/// alert on the first read (a transport error), with TLS 1.2 while connecting.
fn assert_refused(e: &tonic::Status) {
    let text = format!("{e:?}");
    assert!(
        matches!(e.code(), Code::Unavailable | Code::Unknown)
            && (text.contains("CertificateRequired")
                || text.contains("alert")
                || text.contains("transport error")),
        "{text}"
    );
}

fn pod(name: &str) -> WorkloadRef {
    WorkloadRef {
        namespace: "shop".into(),
        pod: name.into(),
    }
}

#[tokio::test]
async fn only_the_pods_own_identity_gets_its_policy() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = Ca::new("root.test");
    let ix = index();
    let addr = serve(ix.clone(), &ca).await;

    // The pod's own identity: the policy at once, then on change.
    let mut api = InboundPoliciesClient::new(client(&ca, Some(ca.leaf(API)), addr));
    let mut s = tokio::time::timeout(LIMIT, api.watch(pod("api-1")))
        .await
        .unwrap()
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.default_policy, pb::DefaultPolicy::Allow as i32);
    assert!(!first.targeted);
    ix.apply_smi(
        "shop",
        "p8080",
        Ok(TcpRouteInfo {
            ports: vec![8080],
            meta: Default::default(),
        }),
    );
    ix.apply_smi(
        "shop",
        "allow-web",
        Ok(TrafficTargetInfo {
            destination: Subject {
                kind: "ServiceAccount".into(),
                name: "api".into(),
                namespace: None,
            },
            rules: vec![AccessRule::TcpRoute("p8080".into())],
            sources: vec![Subject {
                kind: "ServiceAccount".into(),
                name: "web".into(),
                namespace: None,
            }],
            port: None,
            meta: Default::default(),
        }),
    );
    let next = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.targeted);
    assert_eq!(
        next.authorizations,
        vec![pb::Authorization {
            traffic_target: "shop/allow-web".into(),
            identities: vec![WEB.into()],
            ports: vec![8080],
            http_routes: vec![],
        }]
    );

    // Another mesh identity: PERMISSION_DENIED.
    let mut web = InboundPoliciesClient::new(client(&ca, Some(ca.leaf(WEB)), addr));
    let e = tokio::time::timeout(LIMIT, web.watch(pod("api-1")))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    // An unknown pod: NOT_FOUND (the proxy retries).
    let e = api.watch(pod("nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");

    // No client certificate, or one from another CA: the handshake fails, for the policy
    // API and for the destination API alike.
    let other = Ca::new("other.test");
    for ch in [
        client(&ca, None, addr),
        client(&ca, Some(other.leaf(API)), addr),
    ] {
        let e = tokio::time::timeout(
            LIMIT,
            InboundPoliciesClient::new(ch.clone()).watch(pod("api-1")),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert_refused(&e);
        let e = tokio::time::timeout(
            LIMIT,
            DestinationClient::new(ch).get(GetDestination {
                scheme: "k8s".into(),
                path: "web.shop.svc.cluster.local:80".into(),
                context_token: String::new(),
            }),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert_refused(&e);
    }
    // ... while any mesh identity may resolve destinations.
    let mut dst = DestinationClient::new(client(&ca, Some(ca.leaf(WEB)), addr));
    let mut s = dst
        .get(GetDestination {
            scheme: "k8s".into(),
            path: "web.shop.svc.cluster.local:80".into(),
            context_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        tokio::time::timeout(LIMIT, s.next())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn not_ready_is_unavailable_and_a_deleted_pod_ends_the_stream() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = Ca::new("root.test");
    let ix = index();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ready.clone();
    let check = Arc::new(move || r.load(std::sync::atomic::Ordering::Relaxed))
        as Arc<dyn Fn() -> bool + Send + Sync>;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                PolicyService::new(ix.clone(), CallerCheck::MeshIdentity, check).into_server(),
            )
            .serve_with_incoming(tulle_api::tls::incoming(listener, server_config(&ca))),
    );
    let mut api = InboundPoliciesClient::new(client(&ca, Some(ca.leaf(API)), addr));
    let e = tokio::time::timeout(LIMIT, api.watch(pod("api-1")))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut s = api.watch(pod("api-1")).await.unwrap().into_inner();
    assert!(s.next().await.unwrap().is_ok());
    ix.delete_pod("shop", "api-1");
    let end = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.unwrap_err().code(), Code::NotFound);

    // Re-created under the same name with another ServiceAccount: the open stream ends.
    let pod_as = |sa: &str| PodInfo {
        ips: vec![],
        service_account: sa.into(),
        meshed: true,
        owner: None,
    };
    ix.apply_pod("shop", "api-1", pod_as("api"));
    let mut s = api.watch(pod("api-1")).await.unwrap().into_inner();
    assert!(s.next().await.unwrap().is_ok());
    ix.apply_pod("shop", "api-1", pod_as("web"));
    let end = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.unwrap_err().code(), Code::PermissionDenied);
}
