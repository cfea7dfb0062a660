//! A proxy whose installed certificate has expired reports not ready on `/ready`, saying
//! why (issue 15.5): it must not look healthy while it can no longer do mTLS.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use support::{SERVER_ID, bounded, config, get, init};
use tulle_proxy::app::Proxy;
use tulle_proxy::discovery::StaticDiscovery;
use tulle_proxy::tls::{Credentials, Tls};

/// Credentials for `name` whose leaf was valid from two hours ago until an hour ago.
fn expired_credentials(name: &str) -> Credentials {
    let now = SystemTime::now();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test root");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
    leaf.not_before = (now - Duration::from_secs(7200)).into();
    leaf.not_after = (now - Duration::from_secs(3600)).into();
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    Credentials {
        name: name.into(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        roots,
    }
}

#[tokio::test]
async fn an_expired_certificate_makes_the_proxy_not_ready() {
    init();
    bounded(async {
        let tls = Tls::new(expired_credentials(SERVER_ID)).unwrap();
        let proxy = Proxy::start(
            config(SERVER_ID, &[]),
            tls.clone(),
            Arc::new(StaticDiscovery::default()),
        )
        .await
        .unwrap();
        let (status, body) = get(proxy.admin_addr, "/ready").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("expired"), "{body}");
    })
    .await;
}
