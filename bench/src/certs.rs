//! One ECDSA P-256 CA, a server and a client certificate, written as PEM files usable by tulle,
//! nginx (OpenSSL) and haproxy alike.
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// Identity (DNS SAN) of the server side: the inbound proxy of every pair.
pub const SERVER_NAME: &str = "web.bench.serviceaccount.identity.tulle.cluster.local";
/// Identity (DNS SAN) of the client side: the outbound proxy of every pair.
pub const CLIENT_NAME: &str = "client.bench.serviceaccount.identity.tulle.cluster.local";

/// Paths of the written PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Certificate followed by key, as haproxy's `crt` wants it.
    pub server_combined: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_combined: PathBuf,
}

/// Generates the CA and both leaves into `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<CertFiles> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tulle-bench root CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let leaf = |name: &str| -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(SERVER_NAME)?;
    let (client_cert, client_key) = leaf(CLIENT_NAME)?;

    let files = CertFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        server_combined: dir.join("server.pem"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        client_combined: dir.join("client.pem"),
    };
    let write = |p: &Path, s: &str| {
        std::fs::write(p, s).with_context(|| format!("writing {}", p.display()))
    };
    write(&files.ca, &ca.pem())?;
    write(&files.server_cert, &server_cert)?;
    write(&files.server_key, &server_key)?;
    write(
        &files.server_combined,
        &format!("{server_cert}{server_key}"),
    )?;
    write(&files.client_cert, &client_cert)?;
    write(&files.client_key, &client_key)?;
    write(
        &files.client_combined,
        &format!("{client_cert}{client_key}"),
    )?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let server = std::fs::read_to_string(&files.server_combined).unwrap();
        assert!(server.contains("BEGIN CERTIFICATE") && server.contains("PRIVATE KEY"));
        assert!(
            std::fs::read_to_string(&files.ca)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
    }
}
