//! Development certificates: a throwaway trust anchor and leaf certificates for identity
//! names, for tests, benchmarks and the loopback demo (`tulle-proxy dev-certs <dir> <names>`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("generating a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A development certificate authority.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevCa")
    }
}

impl DevCa {
    /// A fresh self-signed root.
    pub fn new() -> Result<Self, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "tulle dev trust anchor");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer })
    }

    /// The trust anchor, PEM.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate whose DNS SAN is `name`.
    pub fn leaf(&self, name: &str) -> Result<Leaf, DevCertError> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem` and, per name, `<name>.crt` and `<name>.key` into `dir`.
    pub fn write(&self, dir: &Path, names: &[String]) -> Result<(), DevCertError> {
        let write = |file: String, data: &str| {
            let path = dir.join(file);
            std::fs::write(&path, data).map_err(|source| DevCertError::Write { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
            path: dir.into(),
            source,
        })?;
        write("ca.pem".into(), &self.ca_pem())?;
        for name in names {
            let leaf = self.leaf(name)?;
            write(format!("{name}.crt"), &leaf.cert_pem)?;
            write(format!("{name}.key"), &leaf.key_pem)?;
        }
        Ok(())
    }
}
