//! Trust-anchor rotation without restarts: a proxy whose anchors file gains a new root
//! accepts peers certified under it on the next handshake; a file that does not parse keeps
//! the current anchors.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tulle_proxy::devcerts::DevCa;
use tulle_proxy::tls::{ALPN_TCP, Credentials, Tls, server_name};
use tulle_proxy::trust::watch_file;

const WEB: &str = "web.default.serviceaccount.identity.tulle.cluster.local";
const CLIENT: &str = "client.default.serviceaccount.identity.tulle.cluster.local";

fn roots(cas: &[&DevCa]) -> RootCertStore {
    let mut r = RootCertStore::empty();
    for ca in cas {
        r.add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap())
            .unwrap();
    }
    r
}

fn tls(ca: &DevCa, name: &str, anchors: &[&DevCa]) -> Tls {
    let leaf = ca.leaf(name).unwrap();
    Tls::new(Credentials {
        name: name.into(),
        chain: vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
        key: PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        roots: roots(anchors),
    })
    .unwrap()
}

/// A mutual-TLS handshake of `client` to `server` (named WEB) over an in-memory pipe.
async fn handshake(client: &Tls, server: &Tls) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(client.client(ALPN_TCP));
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server.clone());
    let (c, s) = tokio::join!(
        connector.connect(server_name(WEB).unwrap(), a),
        acceptor.accept(b)
    );
    c.map(drop).map_err(|e| format!("client: {e}"))?;
    s.map(drop).map_err(|e| format!("server: {e}"))
}

#[tokio::test]
async fn a_new_root_in_the_anchors_file_is_trusted_without_a_restart() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (old, new) = (DevCa::new().unwrap(), DevCa::new().unwrap());
    // The server already moved to the new root and trusts both; the client knows only the old.
    let server = tls(&new, WEB, &[&old, &new]);
    let client = tls(&old, CLIENT, &[&old]);
    let err = handshake(&client, &server).await.unwrap_err();
    assert!(
        err.contains("client"),
        "the old anchors refuse the new root: {err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trust-anchors.pem");
    std::fs::write(&file, old.ca_pem()).unwrap();
    let watcher = tokio::spawn(watch_file(
        file.clone(),
        Arc::clone(&client.anchors),
        Duration::from_millis(20),
    ));
    // The bundle gains the new root, as in step 1 of a rotation.
    std::fs::write(&file, format!("{}{}", old.ca_pem(), new.ca_pem())).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.anchors.count() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the anchors were not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handshake(&client, &server)
        .await
        .expect("the reloaded anchors trust the new root");

    // A broken file keeps the anchors that work.
    std::fs::write(&file, "not PEM").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.anchors.count(), 2);
    handshake(&client, &server).await.expect("still trusted");

    // The old root removed (the last step): a peer still under it is refused.
    std::fs::write(&file, new.ca_pem()).unwrap();
    while client.anchors.count() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the anchors were not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let old_server = tls(&old, WEB, &[&old, &new]);
    assert!(handshake(&client, &old_server).await.is_err());
    handshake(&client, &server)
        .await
        .expect("the new root only");
    watcher.abort();
}
