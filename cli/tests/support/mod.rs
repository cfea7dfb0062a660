//! Shared test helpers: the fixed PKI fixtures, running `install` in-process, parsing YAML.
#![allow(dead_code)]

use clap::Parser;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};
use tulle_cli::args::Command;

/// `cli/tests`.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether golden files should be rewritten.
pub fn update_golden() -> bool {
    std::env::var_os("TULLE_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// The committed PKI fixture files (a root and an issuer valid until 2125); generated
/// when missing.
pub fn fixture_files() -> [PathBuf; 3] {
    let dir = tests_dir().join("fixtures");
    let files = [
        dir.join("trust-anchors.pem"),
        dir.join("issuer.crt"),
        dir.join("issuer.key"),
    ];
    if !files.iter().all(|f| f.exists()) {
        let pki = tulle_cli::pki::generate(
            "cluster.local",
            std::time::Duration::from_secs(100 * 365 * 86_400),
            SystemTime::now(),
        )
        .unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&files[0], pki.trust_anchors_pem).unwrap();
        std::fs::write(&files[1], pki.issuer_cert_pem).unwrap();
        std::fs::write(&files[2], pki.issuer_key_pem).unwrap();
    }
    files
}

/// Parses a `tulle` command line.
pub fn cli(args: &[&str]) -> tulle_cli::Cli {
    let mut argv = vec!["tulle"];
    argv.extend_from_slice(args);
    tulle_cli::Cli::try_parse_from(argv).unwrap()
}

/// Runs `tulle install <args>` in-process.
pub fn install(args: &[&str]) -> Result<String, tulle_cli::Error> {
    let mut argv = vec!["install"];
    argv.extend_from_slice(args);
    let Command::Install(a) = cli(&argv).command else {
        unreachable!()
    };
    tulle_cli::manifest::install(&a, SystemTime::now())
}

/// `install` with the fixture PKI and extra flags.
pub fn install_fixed(extra: &[&str]) -> String {
    let [a, c, k] = fixture_files();
    let (a, c, k) = (
        a.to_str().unwrap().to_string(),
        c.to_str().unwrap().to_string(),
        k.to_str().unwrap().to_string(),
    );
    let mut args = vec![
        "--identity-trust-anchors-file",
        &a,
        "--identity-issuer-certificate-file",
        &c,
        "--identity-issuer-key-file",
        &k,
    ];
    args.extend_from_slice(extra);
    install(&args).unwrap()
}

/// Parses multi-document YAML into JSON values (documents that are empty are dropped).
pub fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// (kind, namespace, name) of an object.
pub fn key(v: &Value) -> (String, String, String) {
    let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
    (
        s(&v["kind"]),
        s(&v["metadata"]["namespace"]),
        s(&v["metadata"]["name"]),
    )
}

/// Compares `actual` with the golden file `name`, or rewrites it under TULLE_UPDATE_GOLDEN=1.
pub fn golden(name: &str, actual: &str) {
    let path = tests_dir().join("golden").join(name);
    if update_golden() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run TULLE_UPDATE_GOLDEN=1 cargo test -p tulle-cli",
            path.display()
        )
    });
    if expected != actual {
        let diff_line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or(expected.lines().count().min(actual.lines().count()) + 1);
        panic!(
            "{} differs from the output (first difference at line {diff_line}); \
             if the change is intended, run TULLE_UPDATE_GOLDEN=1 cargo test -p tulle-cli and review the diff",
            path.display()
        );
    }
}

/// tulle-identity's own issuer loader accepts `pki`, signs a leaf with it, and the leaf
/// verifies against the anchors through the issuer chain (as a peer proxy verifies it).
pub fn identity_accepts(pki: &tulle_cli::pki::Pki) {
    use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject};
    let now = SystemTime::now();
    let issuer = tulle_identity::issuer::Issuer::from_pem(
        pki.issuer_cert_pem.as_bytes(),
        pki.issuer_key_pem.as_bytes(),
        now,
    )
    .expect("tulle-identity rejects the issuer");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let id = tulle_api::ServiceAccountIdentity::new("web", "default", "cluster.local");
    let signed = issuer
        .sign(
            &key,
            &id,
            now,
            std::time::Duration::from_secs(86_400),
            std::time::Duration::from_secs(60),
        )
        .expect("tulle-identity cannot sign with the issuer");
    let anchors: Vec<_> = CertificateDer::pem_slice_iter(pki.trust_anchors_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let trust: Vec<_> = anchors
        .iter()
        .map(|a| webpki::anchor_from_trusted_cert(a).unwrap().to_owned())
        .collect();
    let ee = webpki::EndEntityCert::try_from(&signed.leaf).unwrap();
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust,
        &signed.chain,
        UnixTime::since_unix_epoch(secs),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("a leaf from tulle-identity does not verify against the anchors");
}
