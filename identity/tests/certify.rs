//! In-process tests of Certify: the happy path, every refusal, issuer reload, and a gRPC
//! round trip over TLS on 127.0.0.1. Token review and Events use fakes.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tonic::{Code, Request};
use tulle_api::{
    ServiceAccountIdentity,
    identity::{CertifyRequest, identity_client::IdentityClient, identity_server::Identity},
};
use tulle_identity::{
    events::EventSink,
    issuer::{Issuer, Reloader},
    metrics::Metrics,
    service::{Certify, CertifyConfig},
    token::{TokenError, TokenReviewer, TokenSubject},
};

const AUD: &str = "identity.tulle.io";
const TD: &str = "cluster.local";
const LIMIT: Duration = Duration::from_secs(20);

fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

// === fakes ===

/// Tokens: "good-<ns>-<sa>" (right audience), "aud-<ns>-<sa>" (other audience),
/// "expired", "down" (API unavailable), "user" (not a ServiceAccount).
#[derive(Default)]
struct FakeReviewer;

impl TokenReviewer for FakeReviewer {
    async fn review(&self, token: &str, audience: &str) -> Result<TokenSubject, TokenError> {
        let parts: Vec<&str> = token.split('-').collect();
        match parts.as_slice() {
            ["good", ns, sa] if audience == AUD => Ok(TokenSubject {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            }),
            ["aud", ..] | ["good", ..] => Err(TokenError::Unauthenticated(
                "token audiences do not match".into(),
            )),
            ["expired"] => Err(TokenError::Unauthenticated("token has expired".into())),
            ["down"] => Err(TokenError::Unavailable("connection refused".into())),
            ["user"] => Err(TokenError::NotServiceAccount("alice".into())),
            _ => Err(TokenError::Unauthenticated("invalid bearer token".into())),
        }
    }
}

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(String, String, String)>>>);

impl EventSink for Recorded {
    fn issuing_failed(&self, namespace: &str, service_account: &str, reason: &str, _note: &str) {
        self.0
            .lock()
            .unwrap()
            .push((namespace.into(), service_account.into(), reason.into()));
    }
}

// === CA fixtures ===

struct Ca {
    root_der: CertificateDer<'static>,
    issuer_pem: String,
    issuer_key_pem: String,
}

fn make_ca(name: &str) -> Ca {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    root_params
        .distinguished_name
        .push(DnType::CommonName, format!("root.{name}"));
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root_params, root_key);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("identity.{name}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
    params.not_after = (SystemTime::now() + Duration::from_secs(365 * 86400)).into();
    let cert = params.signed_by(&key, &root_issuer).unwrap();
    Ca {
        root_der: root_cert.der().clone(),
        issuer_pem: cert.pem(),
        issuer_key_pem: key.serialize_pem(),
    }
}

fn write_issuer(dir: &Path, ca: &Ca) {
    // Write to temporary names and rename, as a Secret volume update is atomic.
    std::fs::write(dir.join("tls.crt.tmp"), &ca.issuer_pem).unwrap();
    std::fs::write(dir.join("tls.key.tmp"), &ca.issuer_key_pem).unwrap();
    std::fs::rename(dir.join("tls.crt.tmp"), dir.join("tls.crt")).unwrap();
    std::fs::rename(dir.join("tls.key.tmp"), dir.join("tls.key")).unwrap();
}

fn id(ns: &str, sa: &str) -> ServiceAccountIdentity {
    ServiceAccountIdentity::new(sa, ns, TD)
}

fn csr_with(key: &KeyPair, sans: Vec<SanType>) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.serialize_request(key).unwrap().der().to_vec()
}

fn good_csr(id: &ServiceAccountIdentity) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    csr_with(&key, sans(id))
}

fn sans(id: &ServiceAccountIdentity) -> Vec<SanType> {
    vec![
        SanType::DnsName(id.dns_name().try_into().unwrap()),
        SanType::URI(id.spiffe_uri().try_into().unwrap()),
    ]
}

fn config() -> CertifyConfig {
    CertifyConfig {
        trust_domain: TD.into(),
        audience: AUD.into(),
        lifetime: Duration::from_secs(24 * 3600),
        clock_skew: Duration::from_secs(60),
    }
}

struct Fixture {
    svc: Certify<FakeReviewer, Recorded>,
    events: Recorded,
    metrics: Metrics,
    ca: Ca,
    rx: tulle_identity::issuer::IssuerRx,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("a");
    write_issuer(dir.path(), &ca);
    let (reloader, mut rx) = Reloader::new(dir.path().to_path_buf(), Duration::from_millis(50));
    tokio::spawn(reloader.run(tracing_free_log));
    tokio::time::timeout(LIMIT, rx.wait_for(|i| i.is_some()))
        .await
        .unwrap()
        .unwrap();
    let events = Recorded::default();
    let metrics = Metrics::default();
    let svc = Certify::new(
        config(),
        rx.clone(),
        FakeReviewer,
        events.clone(),
        metrics.clone(),
    );
    Fixture {
        svc,
        rx,
        events,
        metrics,
        ca,
        _dir: dir,
    }
}

fn tracing_free_log(e: &tulle_identity::issuer::IssuerError) {
    eprintln!("issuer load failed (expected in reload tests): {e}");
}

fn req(identity: &str, token: &str, csr: Vec<u8>) -> Request<CertifyRequest> {
    Request::new(CertifyRequest {
        identity: identity.into(),
        token: token.as_bytes().to_vec(),
        certificate_signing_request: csr,
    })
}

fn verify_leaf(root: &CertificateDer<'static>, leaf: &[u8], chain: &[Vec<u8>], name: &str) {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let inter: Vec<CertificateDer<'_>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf),
            &inter,
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .expect("leaf must chain to the trust anchor for its identity");
}

// === tests ===

#[tokio::test]
async fn issues_a_leaf_for_the_token_service_account() {
    let f = fixture().await;
    let me = id("shop", "web");
    let rsp = f
        .svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .expect("certify must succeed")
        .into_inner();
    verify_leaf(
        &f.ca.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        &me.dns_name(),
    );

    let (_, leaf) = x509_parser::parse_x509_certificate(&rsp.leaf_certificate).unwrap();
    let mut names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("DNSName({})", me.dns_name()),
            format!("URI({})", me.spiffe_uri())
        ]
    );
    assert!(!leaf.is_ca());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    assert!(
        nb <= now - 50 && nb >= now - 120,
        "notBefore is backdated ~60s for skew"
    );
    assert!((na - now - 86400).abs() < 120, "24h lifetime by default");
    let until = rsp.valid_until.unwrap();
    assert_eq!(until.seconds, na);
    assert_eq!(f.metrics.issued.get(), 1);
    assert!(f.events.0.lock().unwrap().is_empty());
}

async fn refused(f: &Fixture, r: Request<CertifyRequest>, code: Code, reason: &str, needle: &str) {
    let before = f
        .metrics
        .refusals
        .get_or_create(&tulle_identity::metrics::RefusalLabels {
            reason: reason.into(),
        })
        .get();
    let err = f.svc.certify(r).await.expect_err("must be refused");
    assert_eq!(err.code(), code, "{err:?}");
    assert!(
        err.message().contains(needle),
        "message {:?} should mention {needle:?}",
        err.message()
    );
    let after = f
        .metrics
        .refusals
        .get_or_create(&tulle_identity::metrics::RefusalLabels {
            reason: reason.into(),
        })
        .get();
    assert_eq!(after, before + 1, "refusal counted under {reason}");
    assert_eq!(f.metrics.issued.get(), 0);
}

#[tokio::test]
async fn refuses_bad_tokens() {
    let f = fixture().await;
    let me = id("shop", "web");
    let n = me.dns_name();
    refused(
        &f,
        req(&n, "aud-shop-web", good_csr(&me)),
        Code::Unauthenticated,
        "token_invalid",
        "audience",
    )
    .await;
    refused(
        &f,
        req(&n, "expired", good_csr(&me)),
        Code::Unauthenticated,
        "token_invalid",
        "expired",
    )
    .await;
    refused(
        &f,
        req(&n, "forged", good_csr(&me)),
        Code::Unauthenticated,
        "token_invalid",
        "invalid",
    )
    .await;
    refused(
        &f,
        req(&n, "user", good_csr(&me)),
        Code::Unauthenticated,
        "token_invalid",
        "ServiceAccount",
    )
    .await;
    refused(
        &f,
        req(&n, "down", good_csr(&me)),
        Code::Unavailable,
        "token_review_unavailable",
        "TokenReview",
    )
    .await;
    // An Event is published on the requested ServiceAccount for each failure.
    let ev = f.events.0.lock().unwrap().clone();
    assert_eq!(ev.len(), 5);
    assert!(ev.iter().all(|(ns, sa, _)| ns == "shop" && sa == "web"));
}

#[tokio::test]
async fn refuses_name_mismatch() {
    let f = fixture().await;
    let other = id("shop", "admin");
    refused(
        &f,
        req(&other.dns_name(), "good-shop-web", good_csr(&other)),
        Code::PermissionDenied,
        "name_mismatch",
        "shop/web",
    )
    .await;
    let td = ServiceAccountIdentity::new("web", "shop", "evil.example");
    refused(
        &f,
        req(&td.dns_name(), "good-shop-web", good_csr(&td)),
        Code::InvalidArgument,
        "bad_identity",
        "trust domain",
    )
    .await;
    refused(
        &f,
        req(
            "web.shop.svc",
            "good-shop-web",
            good_csr(&id("shop", "web")),
        ),
        Code::InvalidArgument,
        "bad_identity",
        "identity name",
    )
    .await;
}

#[tokio::test]
async fn refuses_bad_csrs() {
    let f = fixture().await;
    let me = id("shop", "web");
    let n = me.dns_name();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();

    let mut extra = sans(&me);
    extra.push(SanType::DnsName("evil.example.com".try_into().unwrap()));
    refused(
        &f,
        req(&n, "good-shop-web", csr_with(&key, extra)),
        Code::InvalidArgument,
        "bad_csr",
        "exactly",
    )
    .await;

    let only_dns = vec![SanType::DnsName(n.clone().try_into().unwrap())];
    refused(
        &f,
        req(&n, "good-shop-web", csr_with(&key, only_dns)),
        Code::InvalidArgument,
        "bad_csr",
        "exactly",
    )
    .await;

    // The CSR names another identity than the one requested (and authorized).
    refused(
        &f,
        req(&n, "good-shop-web", good_csr(&id("shop", "admin"))),
        Code::InvalidArgument,
        "bad_csr",
        "exactly",
    )
    .await;

    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    refused(
        &f,
        req(&n, "good-shop-web", csr_with(&p384, sans(&me))),
        Code::InvalidArgument,
        "bad_csr",
        "P-256",
    )
    .await;

    let mut tampered = good_csr(&me);
    let last = tampered.len() - 3;
    tampered[last] ^= 0xff;
    refused(
        &f,
        req(&n, "good-shop-web", tampered),
        Code::InvalidArgument,
        "bad_csr",
        "signature",
    )
    .await;
    refused(
        &f,
        req(&n, "good-shop-web", b"not a csr".to_vec()),
        Code::InvalidArgument,
        "bad_csr",
        "parse",
    )
    .await;
}

#[tokio::test]
async fn refuses_oversized_requests() {
    let f = fixture().await;
    let me = id("shop", "web");
    let big_token = "x".repeat(9000);
    refused(
        &f,
        req(&me.dns_name(), &big_token, good_csr(&me)),
        Code::InvalidArgument,
        "oversized",
        "too large",
    )
    .await;
    let mut big_csr = good_csr(&me);
    big_csr.resize(5000, 0);
    refused(
        &f,
        req(&me.dns_name(), "good-shop-web", big_csr),
        Code::InvalidArgument,
        "oversized",
        "4096",
    )
    .await;
}

#[tokio::test]
async fn unavailable_until_the_issuer_is_loaded() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let (reloader, rx) = Reloader::new(dir.path().to_path_buf(), Duration::from_millis(50));
    let failures = Arc::new(Mutex::new(0u32));
    let fc = failures.clone();
    tokio::spawn(reloader.run(move |_| *fc.lock().unwrap() += 1));
    let metrics = Metrics::default();
    let svc = Certify::new(
        config(),
        rx.clone(),
        FakeReviewer,
        Recorded::default(),
        metrics,
    );
    let me = id("shop", "web");
    let err = svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .expect_err("no issuer yet");
    assert_eq!(err.code(), Code::Unavailable);
    // The missing files are reported by the reloader.
    tokio::time::timeout(LIMIT, async {
        while *failures.lock().unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("missing issuer files must be reported");

    // Once the Secret files appear, the issuer loads without a restart.
    let ca = make_ca("late");
    write_issuer(dir.path(), &ca);
    let mut rx2 = rx.clone();
    tokio::time::timeout(LIMIT, rx2.wait_for(|i| i.is_some()))
        .await
        .unwrap()
        .unwrap();
    let rsp = svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .unwrap()
        .into_inner();
    verify_leaf(
        &ca.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        &me.dns_name(),
    );
}

#[tokio::test]
async fn issuer_is_hot_reloaded_and_bad_updates_are_skipped() {
    let f = fixture().await;
    let dir = f._dir.path();
    let me = id("shop", "web");
    let b = make_ca("b");
    let mut rx = f.rx.clone();
    // A broken update keeps the previous issuer.
    std::fs::write(
        dir.join("tls.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rsp = f
        .svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .unwrap()
        .into_inner();
    verify_leaf(
        &f.ca.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        &me.dns_name(),
    );
    // A good update is picked up.
    rx.borrow_and_update();
    write_issuer(dir, &b);
    tokio::time::timeout(LIMIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    let rsp = f
        .svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .unwrap()
        .into_inner();
    verify_leaf(
        &b.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        &me.dns_name(),
    );
}

#[test]
fn issuer_validation() {
    install_provider();
    let a = make_ca("a");
    let b = make_ca("b");
    let now = SystemTime::now();
    assert!(Issuer::from_pem(a.issuer_pem.as_bytes(), a.issuer_key_pem.as_bytes(), now).is_ok());
    let mismatch =
        Issuer::from_pem(a.issuer_pem.as_bytes(), b.issuer_key_pem.as_bytes(), now).unwrap_err();
    assert!(
        mismatch.to_string().contains("does not match"),
        "{mismatch}"
    );
    let later = now + Duration::from_secs(400 * 86400);
    let expired =
        Issuer::from_pem(a.issuer_pem.as_bytes(), a.issuer_key_pem.as_bytes(), later).unwrap_err();
    assert!(expired.to_string().contains("validity"), "{expired}");
    // A leaf (non-CA) cannot be an issuer.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["x.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let not_ca =
        Issuer::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes(), now).unwrap_err();
    assert!(not_ca.to_string().contains("not a CA"), "{not_ca}");
}

#[tokio::test]
async fn grpc_round_trip_over_tls() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("rt");
    write_issuer(dir.path(), &ca);
    let (reloader, mut rx) = Reloader::new(dir.path().to_path_buf(), Duration::from_millis(50));
    tokio::spawn(reloader.run(|_| {}));
    tokio::time::timeout(LIMIT, rx.wait_for(|i| i.is_some()))
        .await
        .unwrap()
        .unwrap();

    let own = id("tulle-system", "tulle-identity");
    let serving = Arc::new(tulle_identity::serving::ServingCert::default());
    let iss = rx.borrow().clone().unwrap();
    serving.issue(&iss, &own).unwrap();
    let server_cfg = serving.server_config().unwrap();
    let svc = Certify::new(
        config(),
        rx.clone(),
        FakeReviewer,
        Recorded::default(),
        Metrics::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc.into_server())
            .serve_with_incoming(tulle_api::tls::incoming(listener, server_cfg)),
    );

    let mut roots = RootCertStore::empty();
    roots.add(ca.root_der.clone()).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let channel =
        tulle_api::tls::channel(&addr.to_string(), &own.dns_name(), Arc::new(client_cfg)).unwrap();
    let mut client = IdentityClient::new(channel);
    let me = id("shop", "web");
    let rsp = tokio::time::timeout(
        LIMIT,
        client.certify(CertifyRequest {
            identity: me.dns_name(),
            token: b"good-shop-web".to_vec(),
            certificate_signing_request: good_csr(&me),
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    verify_leaf(
        &ca.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        &me.dns_name(),
    );

    // A request over the size limit is refused by the server before decoding.
    let err = tokio::time::timeout(
        LIMIT,
        client.certify(CertifyRequest {
            identity: me.dns_name(),
            token: vec![b'x'; 64 * 1024],
            certificate_signing_request: good_csr(&me),
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    // A client that expects another server identity refuses the connection.
    let mut roots = RootCertStore::empty();
    roots.add(ca.root_der.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let wrong = tulle_api::tls::channel(
        &addr.to_string(),
        &id("shop", "web").dns_name(),
        Arc::new(cfg),
    )
    .unwrap();
    let err = tokio::time::timeout(
        LIMIT,
        IdentityClient::new(wrong).certify(CertifyRequest::default()),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}
