//! Zero-touch PKI generation and validation of user-supplied PKI files.

mod support;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};
use support::*;
use tulle_cli::pki::{self, Pki, PkiError, PkiFiles};

const YEAR: Duration = Duration::from_secs(365 * 86_400);

fn names() -> PkiFiles {
    PkiFiles {
        trust_anchors: "anchors.pem".into(),
        issuer_cert: "issuer.crt".into(),
        issuer_key: "issuer.key".into(),
    }
}

fn x509(pem: &str) -> (bool, String, String, i64) {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    (
        c.is_ca(),
        c.subject().to_string(),
        c.issuer().to_string(),
        c.validity().not_after.timestamp() - c.validity().not_before.timestamp(),
    )
}

#[test]
fn generated_pki_chains_and_validates() {
    let now = SystemTime::now();
    let p = pki::generate("cluster.local", YEAR, now).unwrap();
    pki::validate(&p, &names(), now).unwrap();
    identity_accepts(&p);
    let (root_ca, root_subject, root_issuer, root_life) = x509(&p.trust_anchors_pem);
    let (iss_ca, _, iss_issuer, iss_life) = x509(&p.issuer_cert_pem);
    assert!(root_ca && iss_ca);
    assert_eq!(root_subject, root_issuer, "the root is self-signed");
    assert_eq!(iss_issuer, root_subject, "the issuer is signed by the root");
    assert!(
        (root_life - (10 * 365 * 86_400 + 300)).abs() <= 1,
        "the root: 10 years (+5 min backdating)"
    );
    assert!(
        (iss_life - (365 * 86_400 + 300)).abs() <= 1,
        "the issuer: 1 year (+5 min backdating)"
    );
    assert!(p.issuer_key_pem.contains("BEGIN PRIVATE KEY"));
    let key = KeyPair::from_pem(&p.issuer_key_pem).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    // two runs never share keys
    let q = pki::generate("cluster.local", YEAR, now).unwrap();
    assert_ne!(p.issuer_key_pem, q.issuer_key_pem);
    // and the issuer of one does not chain to the anchor of the other
    let mixed = Pki {
        trust_anchors_pem: q.trust_anchors_pem,
        ..p
    };
    assert!(matches!(
        pki::validate(&mixed, &names(), now),
        Err(PkiError::Chain { .. })
    ));
}

#[test]
fn generated_pki_expires_after_its_validity() {
    let now = SystemTime::now();
    let p = pki::generate("cluster.local", YEAR, now).unwrap();
    let e = pki::validate(&p, &names(), now + YEAR + Duration::from_secs(60)).unwrap_err();
    assert!(matches!(e, PkiError::Expired { .. }), "{e}");
}

/// The Secret and ConfigMap carry the user's files byte for byte.
#[test]
fn user_pki_is_used_verbatim() {
    let [a, c, k] = fixture_files();
    let objs = docs(&install_fixed(&[]));
    let secret = objs.iter().find(|o| o["kind"] == "Secret").unwrap();
    assert_eq!(secret["metadata"]["name"], "tulle-identity-issuer");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let b64 = |s: &serde_json::Value| decode_b64(s.as_str().unwrap());
    assert_eq!(b64(&secret["data"]["tls.crt"]), std::fs::read(&c).unwrap());
    assert_eq!(b64(&secret["data"]["tls.key"]), std::fs::read(&k).unwrap());
    let cm = objs.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["name"], "tulle-trust-anchors");
    assert_eq!(
        cm["data"]["trust-anchors.pem"],
        std::fs::read_to_string(&a).unwrap()
    );
}

fn decode_b64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for ch in s.bytes().filter(|c| *c != b'=') {
        buf = (buf << 6) | A.iter().position(|x| *x == ch).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// A generated install's Secret and ConfigMap hold a valid, chaining PKI.
#[test]
fn generated_install_pki_is_consistent() {
    let objs = docs(&install(&[]).unwrap());
    let secret = objs.iter().find(|o| o["kind"] == "Secret").unwrap();
    let cm = objs.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let s = |k: &str| String::from_utf8(decode_b64(secret["data"][k].as_str().unwrap())).unwrap();
    let p = Pki {
        trust_anchors_pem: cm["data"]["trust-anchors.pem"]
            .as_str()
            .unwrap()
            .to_string(),
        issuer_cert_pem: s("tls.crt"),
        issuer_key_pem: s("tls.key"),
    };
    pki::validate(&p, &names(), SystemTime::now()).unwrap();
    identity_accepts(&p);
}

struct Bad {
    dir: tempfile::TempDir,
}

impl Bad {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let [a, c, k] = fixture_files();
        for (src, name) in [(a, "anchors.pem"), (c, "issuer.crt"), (k, "issuer.key")] {
            std::fs::copy(src, dir.path().join(name)).unwrap();
        }
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }
    fn install(&self) -> String {
        let p = |n: &str| self.path(n).to_str().unwrap().to_string();
        let e = install(&[
            "--identity-trust-anchors-file",
            &p("anchors.pem"),
            "--identity-issuer-certificate-file",
            &p("issuer.crt"),
            "--identity-issuer-key-file",
            &p("issuer.key"),
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), tulle_cli::exit::CONFIG, "{e}");
        e.to_string()
    }
}

fn cert(
    cn: &str,
    ca: bool,
    not_after: SystemTime,
    signer: Option<&rcgen::Issuer<'_, KeyPair>>,
) -> (String, KeyPair, CertificateParams) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p.not_before = (SystemTime::now() - 2 * YEAR).into();
    p.not_after = not_after.into();
    let pem = match signer {
        Some(s) => p.signed_by(&key, s).unwrap().pem(),
        None => p.self_signed(&key).unwrap().pem(),
    };
    (pem, key, p)
}

fn has(msg: &str, file: &Path, what: &str) {
    assert!(
        msg.contains(file.to_str().unwrap()),
        "{msg:?} does not name {}",
        file.display()
    );
    assert!(msg.contains(what), "{msg:?} does not say {what:?}");
}

#[test]
fn missing_file_is_named() {
    let b = Bad::new();
    std::fs::remove_file(b.path("issuer.key")).unwrap();
    has(&b.install(), &b.path("issuer.key"), "cannot read");
}

#[test]
fn garbage_certificate_is_named() {
    let b = Bad::new();
    b.write("anchors.pem", "hello\n");
    has(&b.install(), &b.path("anchors.pem"), "no CERTIFICATE block");
}

#[test]
fn garbage_key_is_named() {
    let b = Bad::new();
    b.write(
        "issuer.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    has(
        &b.install(),
        &b.path("issuer.key"),
        "not a usable PEM private key",
    );
}

#[test]
fn issuer_that_is_not_a_ca_is_rejected() {
    let b = Bad::new();
    // The fixture root's key is not kept: the leaf is signed by the issuer (so it chains).
    let issuer_key =
        KeyPair::from_pem(&std::fs::read_to_string(b.path("issuer.key")).unwrap()).unwrap();
    let issuer_pem = std::fs::read_to_string(b.path("issuer.crt")).unwrap();
    let signer = rcgen::Issuer::from_ca_cert_pem(&issuer_pem, issuer_key).unwrap();
    let (leaf, leaf_key, _) = cert("leaf", false, SystemTime::now() + YEAR, Some(&signer));
    b.write("issuer.crt", &leaf);
    b.write("issuer.key", &leaf_key.serialize_pem());
    has(&b.install(), &b.path("issuer.crt"), "is not a CA");
}

#[test]
fn expired_issuer_is_rejected() {
    let b = Bad::new();
    let (root, root_key, root_params) = cert("root", true, SystemTime::now() + YEAR, None);
    let signer = rcgen::Issuer::new(root_params, root_key);
    let (issuer, issuer_key, _) = cert("issuer", true, SystemTime::now() - YEAR, Some(&signer));
    b.write("anchors.pem", &root);
    b.write("issuer.crt", &issuer);
    b.write("issuer.key", &issuer_key.serialize_pem());
    has(&b.install(), &b.path("issuer.crt"), "is not valid now");
}

#[test]
fn issuer_outliving_its_root_is_rejected() {
    let b = Bad::new();
    let (root, root_key, root_params) = cert("root", true, SystemTime::now() + YEAR, None);
    let signer = rcgen::Issuer::new(root_params, root_key);
    let (issuer, issuer_key, _) = cert("issuer", true, SystemTime::now() + 2 * YEAR, Some(&signer));
    b.write("anchors.pem", &root);
    b.write("issuer.crt", &issuer);
    b.write("issuer.key", &issuer_key.serialize_pem());
    let msg = b.install();
    has(&msg, &b.path("issuer.crt"), "after the trust anchor");
    assert!(msg.contains("expires before its root"), "{msg}");
    assert!(msg.contains(b.path("anchors.pem").to_str().unwrap()));
}

#[test]
fn issuer_of_another_root_is_rejected() {
    let b = Bad::new();
    let (other_root, _, _) = cert("other root", true, SystemTime::now() + YEAR, None);
    b.write("anchors.pem", &other_root);
    let msg = b.install();
    has(
        &msg,
        &b.path("issuer.crt"),
        "does not chain to any trust anchor",
    );
    assert!(msg.contains(b.path("anchors.pem").to_str().unwrap()));
}

#[test]
fn key_of_another_certificate_is_rejected() {
    let b = Bad::new();
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    b.write("issuer.key", &other.serialize_pem());
    has(&b.install(), &b.path("issuer.key"), "does not match");
}

#[test]
fn anchor_that_is_not_a_ca_is_rejected() {
    let b = Bad::new();
    let (leaf, _, _) = cert("not a root", false, SystemTime::now() + YEAR, None);
    b.write("anchors.pem", &leaf);
    has(&b.install(), &b.path("anchors.pem"), "is not a CA");
}

/// A PKI as a user might bring it: a root and an intermediate made elsewhere, and a bundle of
/// two anchors (an old root first).
#[test]
fn user_pki_with_two_anchors() {
    let b = Bad::new();
    let (root, root_key, root_params) = cert("root", true, SystemTime::now() + YEAR, None);
    let signer = rcgen::Issuer::new(root_params, root_key);
    let (issuer, issuer_key, _) = cert("issuer", true, SystemTime::now() + YEAR / 2, Some(&signer));
    let (other_root, _, _) = cert("old root", true, SystemTime::now() + YEAR, None);
    b.write("anchors.pem", &format!("{other_root}{root}"));
    b.write("issuer.crt", &issuer);
    b.write("issuer.key", &issuer_key.serialize_pem());
    let p = |n: &str| b.path(n).to_str().unwrap().to_string();
    let out = install(&[
        "--identity-trust-anchors-file",
        &p("anchors.pem"),
        "--identity-issuer-certificate-file",
        &p("issuer.crt"),
        "--identity-issuer-key-file",
        &p("issuer.key"),
    ])
    .unwrap();
    assert!(out.contains("tulle-identity-issuer"));
}
