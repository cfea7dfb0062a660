//! CSR validation: an ECDSA P-256 key, a valid self-signature, and exactly the DNS SAN
//! and URI SAN of the requested identity (nothing else).

use rcgen::{CertificateSigningRequestParams, IsCa, SanType};
use rustls_pki_types::CertificateSigningRequestDer;
use tulle_api::ServiceAccountIdentity;
use x509_parser::prelude::FromDer;

/// The largest CSR accepted, in bytes (a P-256 CSR with two SANs is ~400 bytes).
pub const MAX_CSR_BYTES: usize = 4096;

/// OID of id-ecPublicKey.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// OID of the prime256v1 (P-256) curve.
const P256: &str = "1.2.840.10045.3.1.7";

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("CSR is {0} bytes; at most {MAX_CSR_BYTES} are accepted")]
    TooLarge(usize),
    /// Not DER PKCS#10, or a bad signature.
    #[error("CSR does not parse or its signature is invalid: {0}")]
    Malformed(String),
    /// The key is not ECDSA P-256.
    #[error("CSR key must be ECDSA P-256")]
    KeyType,
    /// The CSR asks for a CA certificate.
    #[error("CSR asks for a CA certificate")]
    Ca,
    /// The SANs are not exactly the expected two.
    #[error("CSR must ask for exactly DNS SAN {dns:?} and URI SAN {uri:?}, got {got:?}")]
    Names {
        /// Expected DNS SAN.
        dns: String,
        /// Expected URI SAN.
        uri: String,
        /// What the CSR asked for.
        got: Vec<String>,
    },
}

/// Checks `der` for `id` and returns the parsed request.
pub fn validate(
    der: &[u8],
    id: &ServiceAccountIdentity,
) -> Result<CertificateSigningRequestParams, CsrError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(der.len()));
    }
    let (_, parsed) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let spki = &parsed.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY || curve.as_deref() != Some(P256) {
        return Err(CsrError::KeyType);
    }
    let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    if matches!(csr.params.is_ca, IsCa::Ca(_)) {
        return Err(CsrError::Ca);
    }
    let dns = id.dns_name();
    let uri = id.spiffe_uri();
    let got: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .map(|s| match s {
            SanType::DnsName(n) => format!("DNS:{}", n.as_str()),
            SanType::URI(n) => format!("URI:{}", n.as_str()),
            other => format!("{other:?}"),
        })
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    let mut want = vec![format!("DNS:{dns}"), format!("URI:{uri}")];
    want.sort();
    if sorted != want {
        return Err(CsrError::Names { dns, uri, got });
    }
    Ok(csr)
}
