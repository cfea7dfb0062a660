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
struct Recorded(
    Arc<Mutex<Vec<(String, String, String)>>>,
    Arc<Mutex<Vec<String>>>,
);

impl EventSink for Recorded {
    fn issuing_failed(&self, namespace: &str, service_account: &str, reason: &str, _note: &str) {
        self.0
            .lock()
            .unwrap()
            .push((namespace.into(), service_account.into(), reason.into()));
    }

    fn issuer_invalid(&self, note: &str) {
        self.1.lock().unwrap().push(note.into());
    }
}

// === CA fixtures ===

struct Ca {
    root_der: CertificateDer<'static>,
    issuer_pem: String,
    issuer_key_pem: String,
}

fn make_ca(name: &str) -> Ca {
    let now = SystemTime::now();
    make_ca_valid(
        name,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(365 * 86400),
    )
}

/// A root and an issuer valid from `not_before` to `not_after`.
fn make_ca_valid(name: &str, not_before: SystemTime, not_after: SystemTime) -> Ca {
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
    params.not_before = not_before.into();
    params.not_after = not_after.into();
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
    // No Event: a token that did not authenticate must not make identity write into the
    // namespace the request names (issue 15, item 6).
    assert!(f.events.0.lock().unwrap().is_empty());
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

// === an expired issuer (issue 15.5) ===

fn leaf_validity(der: &[u8]) -> (i64, i64) {
    let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
    (
        x.validity().not_before.timestamp(),
        x.validity().not_after.timestamp(),
    )
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An issuer that was valid from two hours ago until an hour ago, loaded as if it were
/// still half an hour earlier (as a long-running identity would have loaded it).
fn expired_issuer(name: &str) -> (Ca, Issuer, SystemTime) {
    let now = SystemTime::now();
    let not_after = now - Duration::from_secs(3600);
    let ca = make_ca_valid(name, now - Duration::from_secs(7200), not_after);
    let issuer = Issuer::from_pem(
        ca.issuer_pem.as_bytes(),
        ca.issuer_key_pem.as_bytes(),
        now - Duration::from_secs(5400),
    )
    .unwrap();
    (ca, issuer, not_after)
}

#[tokio::test]
async fn an_expired_issuer_refuses_to_sign_with_failed_precondition() {
    install_provider();
    let (_ca, issuer, not_after) = expired_issuer("old");
    let (_tx, rx) = tokio::sync::watch::channel(Some(Arc::new(issuer)));
    let metrics = Metrics::default();
    let events = Recorded::default();
    let svc = Certify::new(
        config(),
        rx.clone(),
        FakeReviewer,
        events.clone(),
        metrics.clone(),
    );
    let me = id("shop", "web");
    let err = svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .expect_err("an expired issuer must not sign");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let stamp = tulle_identity::issuer::rfc3339(not_after);
    assert!(
        err.message().contains(&format!("expired at {stamp}"))
            && err.message().contains("tulle-identity-issuer"),
        "{}",
        err.message()
    );
    let refusals = metrics
        .refusals
        .get_or_create(&tulle_identity::metrics::RefusalLabels {
            reason: "issuer_invalid".into(),
        })
        .get();
    assert_eq!(refusals, 1);
    assert_eq!(metrics.issued.get(), 0);
    // Not ready, with the reason.
    let reason = tulle_identity::issuer_readiness(&rx, SystemTime::now()).unwrap_err();
    assert!(reason.contains("expired at"), "{reason}");
}

#[test]
fn sign_never_outlives_the_issuer_and_refuses_once_it_expired() {
    install_provider();
    let now = SystemTime::now();
    // An issuer expiring in an hour: a 24 h leaf is capped at its notAfter.
    let ca = make_ca_valid(
        "short",
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let issuer =
        Issuer::from_pem(ca.issuer_pem.as_bytes(), ca.issuer_key_pem.as_bytes(), now).unwrap();
    let me = id("shop", "web");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let day = Duration::from_secs(86400);
    let skew = Duration::from_secs(600);
    let signed = issuer.sign(&key, &me, now, day, skew).unwrap();
    let (nb, na) = leaf_validity(&signed.leaf);
    assert_eq!(na, unix(issuer.not_after()));
    // notBefore is backdated for skew but never before the issuer's notBefore.
    assert_eq!(nb, unix(issuer.not_before()));
    assert!(nb < na);
    assert_eq!(unix(signed.not_after), na);
    // At or after the issuer's notAfter nothing is signed (no notAfter < notBefore leaf).
    let err = issuer
        .sign(&key, &me, issuer.not_after(), day, skew)
        .unwrap_err();
    assert!(err.to_string().contains("expired at"), "{err}");
    let err = issuer
        .sign(&key, &me, now + 2 * day, day, skew)
        .unwrap_err();
    assert!(err.to_string().contains("expired at"), "{err}");
    // Before its notBefore neither.
    let err = issuer
        .sign(&key, &me, now - Duration::from_secs(3600), day, skew)
        .unwrap_err();
    assert!(err.to_string().contains("not valid before"), "{err}");
}

#[tokio::test]
async fn watch_issuer_reports_expiry_and_a_renewed_issuer_makes_it_ready_again() {
    install_provider();
    let (_ca, issuer, not_after) = expired_issuer("old");
    let (tx, rx) = tokio::sync::watch::channel(Some(Arc::new(issuer)));
    let metrics = Metrics::default();
    let events = Recorded::default();
    tokio::spawn(tulle_identity::watch_issuer(
        rx.clone(),
        metrics.clone(),
        Arc::new(events.clone()),
        Duration::from_millis(20),
    ));
    tokio::time::timeout(LIMIT, async {
        while events.1.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("an Event when the issuer is invalid");
    assert_eq!(metrics.issuer_valid.get(), 0);
    assert_eq!(
        metrics.issuer_expiry_timestamp_seconds.get(),
        unix(not_after) as f64
    );
    assert!(metrics.issuer_expiry_seconds.get() < 0.0);
    // Still invalid on later ticks: one Event per transition, not one per tick.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(events.1.lock().unwrap().len(), 1);
    assert!(events.1.lock().unwrap()[0].contains("expired at"));

    // A renewed issuer (as the reloader publishes it) makes it valid and ready again.
    let fresh = make_ca("new");
    let renewed = Issuer::from_pem(
        fresh.issuer_pem.as_bytes(),
        fresh.issuer_key_pem.as_bytes(),
        SystemTime::now(),
    )
    .unwrap();
    tx.send_replace(Some(Arc::new(renewed)));
    tokio::time::timeout(LIMIT, async {
        while metrics.issuer_valid.get() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("valid again after renewal");
    assert!(tulle_identity::issuer_readiness(&rx, SystemTime::now()).is_ok());
    let svc = Certify::new(config(), rx, FakeReviewer, events, metrics);
    let me = id("shop", "web");
    let rsp = svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .unwrap()
        .into_inner();
    verify_leaf(
        &fresh.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        &me.dns_name(),
    );
}

// === abuse bounds (issue 15, item 6) ===

#[tokio::test]
async fn refusal_events_go_only_to_the_authenticated_service_account() {
    let f = fixture().await;
    // Junk naming any namespace writes nothing there.
    let victim = id("kube-system", "default");
    for token in [
        "forged",
        "expired",
        "aud-kube-system-default",
        "down",
        "user",
    ] {
        let _ = f
            .svc
            .certify(req(&victim.dns_name(), token, good_csr(&victim)))
            .await
            .expect_err("refused");
    }
    assert!(
        f.events.0.lock().unwrap().is_empty(),
        "no Event for unauthenticated calls"
    );
    // An authenticated caller asking for another identity: the Event lands on its own
    // ServiceAccount, not on the one it named.
    let _ = f
        .svc
        .certify(req(&victim.dns_name(), "good-shop-web", good_csr(&victim)))
        .await
        .expect_err("name mismatch");
    let ev = f.events.0.lock().unwrap().clone();
    assert_eq!(
        ev,
        vec![(
            "shop".to_string(),
            "web".to_string(),
            "name_mismatch".to_string()
        )]
    );
}

/// A reviewer counting its reviews, and blocking while `gate` is closed.
#[derive(Clone, Default)]
struct Counting {
    reviews: Arc<std::sync::atomic::AtomicUsize>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl TokenReviewer for Counting {
    async fn review(&self, token: &str, audience: &str) -> Result<TokenSubject, TokenError> {
        self.reviews
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(g) = &self.gate {
            let _p = g.acquire().await;
        }
        FakeReviewer.review(token, audience).await
    }
}

/// Serves `svc` over TLS on 127.0.0.1 within `limits`; returns a client factory.
async fn serve_tls<T: TokenReviewer>(
    svc: Certify<T, Recorded>,
    rx: &tulle_identity::issuer::IssuerRx,
    ca: &Ca,
    limits: tulle_api::tls::Limits,
) -> (
    std::net::SocketAddr,
    impl Fn() -> IdentityClient<tonic::transport::Channel>,
) {
    let own = id("tulle-system", "tulle-identity");
    let serving = Arc::new(tulle_identity::serving::ServingCert::default());
    let iss = rx.borrow().clone().unwrap();
    serving.issue(&iss, &own).unwrap();
    let server_cfg = serving.server_config().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tulle_identity::server_builder()
            .add_service(svc.into_server())
            .serve_with_incoming(tulle_api::tls::incoming_with_limits(
                listener, server_cfg, limits,
            )),
    );
    let root = ca.root_der.clone();
    let client = move || {
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let channel =
            tulle_api::tls::channel(&addr.to_string(), &own.dns_name(), Arc::new(cfg)).unwrap();
        IdentityClient::new(channel)
    };
    (addr, client)
}

fn certify_req(me: &ServiceAccountIdentity, token: &str) -> CertifyRequest {
    CertifyRequest {
        identity: me.dns_name(),
        token: token.as_bytes().to_vec(),
        certificate_signing_request: good_csr(me),
    }
}

#[tokio::test]
async fn certify_is_rate_limited_per_peer_before_any_token_review() {
    let f = fixture().await;
    let reviewer = Counting::default();
    let reviews = reviewer.reviews.clone();
    let metrics = Metrics::default();
    let svc = Certify::new(
        config(),
        f.rx.clone(),
        reviewer,
        Recorded::default(),
        metrics.clone(),
    )
    .with_limits(tulle_identity::limits::CertifyLimits {
        per_peer_rate: 0.01,
        per_peer_burst: 3,
        max_in_flight: 100,
    });
    let (_, client) = serve_tls(svc, &f.rx, &f.ca, Default::default()).await;
    let mut c = client();
    let victim = id("kube-system", "default");
    // Three junk calls pass to the TokenReview (and are refused there)...
    for _ in 0..3 {
        let err = tokio::time::timeout(LIMIT, c.certify(certify_req(&victim, "forged")))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    }
    assert_eq!(reviews.load(std::sync::atomic::Ordering::SeqCst), 3);
    // ...the next ones from the same address are refused before it, with a retry hint,
    // even with a good token and over a new connection.
    for token in ["forged", "good-shop-web"] {
        let me = id("shop", "web");
        let err = tokio::time::timeout(LIMIT, client().certify(certify_req(&me, token)))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message().contains("127.0.0.1") && err.message().contains("retry in"),
            "{}",
            err.message()
        );
        let ms: u64 = err
            .metadata()
            .get(tulle_identity::limits::RETRY_PUSHBACK)
            .expect("retry pushback")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ms > 1000, "{ms}");
    }
    assert_eq!(reviews.load(std::sync::atomic::Ordering::SeqCst), 3);
    let limited = metrics
        .refusals
        .get_or_create(&tulle_identity::metrics::RefusalLabels {
            reason: "rate_limited".into(),
        })
        .get();
    assert_eq!(limited, 2);
}

#[tokio::test]
async fn certify_calls_in_flight_are_bounded() {
    let f = fixture().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let reviewer = Counting {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let svc = Arc::new(
        Certify::new(
            config(),
            f.rx.clone(),
            reviewer,
            Recorded::default(),
            Metrics::default(),
        )
        .with_limits(tulle_identity::limits::CertifyLimits {
            max_in_flight: 2,
            ..Default::default()
        }),
    );
    let me = id("shop", "web");
    let mut blocked = vec![];
    for _ in 0..2 {
        let (svc, me) = (svc.clone(), me.clone());
        blocked.push(tokio::spawn(async move {
            svc.certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = svc
        .certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .expect_err("a third call in flight is refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("busy"), "{}", err.message());
    gate.add_permits(10);
    for b in blocked {
        tokio::time::timeout(LIMIT, b)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    // Capacity is back.
    svc.certify(req(&me.dns_name(), "good-shop-web", good_csr(&me)))
        .await
        .unwrap();
}

#[tokio::test]
async fn tls_handshakes_in_progress_are_bounded() {
    let f = fixture().await;
    let svc = Certify::new(
        config(),
        f.rx.clone(),
        FakeReviewer,
        Recorded::default(),
        Metrics::default(),
    );
    let limits = tulle_api::tls::Limits {
        max_handshakes: 2,
        max_connections: 100,
        handshake_timeout: Duration::from_secs(60),
    };
    let (addr, client) = serve_tls(svc, &f.rx, &f.ca, limits).await;
    let me = id("shop", "web");
    // Two connections that never send a ClientHello take both handshake places...
    let silent = [
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a real client is not served...
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        client().certify(certify_req(&me, "good-shop-web")),
    )
    .await;
    assert!(
        r.is_err(),
        "served while the handshake places were taken: {r:?}"
    );
    // ...until they go away.
    drop(silent);
    tokio::time::timeout(LIMIT, client().certify(certify_req(&me, "good-shop-web")))
        .await
        .unwrap()
        .unwrap();
}

/// ServiceAccount names are DNS subdomains: a dotted one is certified like any other (issue
/// 15 item 8).
#[tokio::test]
async fn a_service_account_name_with_dots_is_certified() {
    let f = fixture().await;
    let me = id("shop", "web.v2");
    let rsp = f
        .svc
        .certify(req(&me.dns_name(), "good-shop-web.v2", good_csr(&me)))
        .await
        .expect("certify must succeed")
        .into_inner();
    verify_leaf(
        &f.ca.root_der,
        &rsp.leaf_certificate,
        &rsp.intermediate_certificates,
        "web.v2.shop.serviceaccount.identity.tulle.cluster.local",
    );
}
