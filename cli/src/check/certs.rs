//! Certificate checks shared by `tulle-identity` and `tulle-webhook`: parse PEM bundles
//! (x509-parser), check validity periods against the expiry threshold, and check that a
//! certificate is signed by one of a set of CAs (signature verified with rustls-webpki's
//! aws-lc-rs algorithms).

use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::time::{Duration, SystemTime};
use x509_parser::certificate::X509Certificate;

/// Why a certificate or bundle is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    /// The PEM text holds no CERTIFICATE block, or a block that is not base64.
    #[error("{what}: no PEM certificate found ({reason})")]
    NoPem {
        /// Where the PEM came from.
        what: String,
        /// The parser's reason.
        reason: String,
    },
    /// A block is not an X.509 certificate.
    #[error("{what}: certificate #{index} does not parse as X.509: {reason}")]
    Parse {
        /// Where the PEM came from.
        what: String,
        /// 1-based position in the bundle.
        index: usize,
        /// The parser's reason.
        reason: String,
    },
}

/// One parsed certificate: its DER and the facts the checks need.
#[derive(Clone, Debug)]
pub struct Cert {
    /// DER bytes.
    pub der: CertificateDer<'static>,
    /// Subject DN.
    pub subject: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// basicConstraints cA.
    pub is_ca: bool,
}

/// Parses every certificate of a PEM bundle; `what` names the source in errors.
pub fn parse_bundle(pem: &[u8], what: &str) -> Result<Vec<Cert>, CertError> {
    let ders = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NoPem {
            what: what.into(),
            reason: e.to_string(),
        })?;
    if ders.is_empty() {
        return Err(CertError::NoPem {
            what: what.into(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    ders.into_iter()
        .enumerate()
        .map(|(i, der)| {
            let (_, x) =
                x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Parse {
                    what: what.into(),
                    index: i + 1,
                    reason: e.to_string(),
                })?;
            let t = |ts: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64);
            let cert = Cert {
                subject: x.subject().to_string(),
                not_before: t(x.validity().not_before.timestamp()),
                not_after: t(x.validity().not_after.timestamp()),
                is_ca: x.is_ca(),
                der: der.clone(),
            };
            Ok(cert)
        })
        .collect()
}

/// The outcome of a time check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Valid now and for longer than the threshold; days left.
    Ok(u64),
    /// Not valid yet (clock skew or a future-dated certificate).
    NotYetValid,
    /// Expired.
    Expired,
    /// Valid now, but expires within the threshold; days left (rounded down).
    ExpiresSoon(u64),
}

/// Classifies `cert` at `now` against `threshold`.
pub fn validity(cert: &Cert, now: SystemTime, threshold: Duration) -> Validity {
    if now < cert.not_before {
        return Validity::NotYetValid;
    }
    let Ok(left) = cert.not_after.duration_since(now) else {
        return Validity::Expired;
    };
    if left.is_zero() {
        return Validity::Expired;
    }
    let days = left.as_secs() / 86_400;
    if left <= threshold {
        Validity::ExpiresSoon(days)
    } else {
        Validity::Ok(days)
    }
}

/// `Ok(summary)` when every certificate is time-valid and beyond the threshold, else a
/// message naming each offending certificate (expired, not yet valid, or expiring soon).
pub fn check_times(certs: &[Cert], now: SystemTime, threshold: Duration) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut min_days = u64::MAX;
    for c in certs {
        match validity(c, now, threshold) {
            Validity::Ok(d) => min_days = min_days.min(d),
            Validity::NotYetValid => {
                problems.push(format!(
                    "{:?} is not valid before {}",
                    c.subject,
                    rfc3339(c.not_before)
                ));
            }
            Validity::Expired => {
                problems.push(format!(
                    "{:?} expired on {}",
                    c.subject,
                    rfc3339(c.not_after)
                ));
            }
            Validity::ExpiresSoon(d) => problems.push(format!(
                "{:?} expires in {d} days (on {}), within the {}-day threshold",
                c.subject,
                rfc3339(c.not_after),
                threshold.as_secs() / 86_400
            )),
        }
    }
    if problems.is_empty() {
        Ok(format!("expires in {min_days} days at the earliest"))
    } else {
        Err(problems.join("; "))
    }
}

/// Whether any of `certs` is expired or not yet valid at `now`.
pub fn any_outside_validity(certs: &[Cert], now: SystemTime) -> bool {
    certs.iter().any(|c| {
        matches!(
            validity(c, now, Duration::ZERO),
            Validity::Expired | Validity::NotYetValid
        )
    })
}

/// Whether `cert` is signed by the key of one of `issuers` (subject/issuer names must match
/// too). The signature is verified with rustls-webpki's algorithms (aws-lc-rs).
pub fn signed_by_any(cert: &Cert, issuers: &[Cert]) -> bool {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(&cert.der) else {
        return false;
    };
    issuers.iter().any(|i| {
        x509_parser::parse_x509_certificate(&i.der)
            .map(|(_, i)| signed_by(&c, &i))
            .unwrap_or(false)
    })
}

fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return false;
    }
    let key = &issuer.public_key().subject_public_key.data[..];
    let message = cert.tbs_certificate.as_ref();
    let signature = &cert.signature_value.data[..];
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .any(|alg| alg.verify_signature(key, message, signature).is_ok())
}

/// Whether `chain` (leaf first, then intermediates) links up, each certificate signed by the
/// next, and the last (or any) one is signed by an anchor.
pub fn chains_to(chain: &[Cert], anchors: &[Cert]) -> bool {
    for (i, c) in chain.iter().enumerate() {
        if signed_by_any(c, anchors) {
            return true;
        }
        match chain.get(i + 1) {
            Some(next) if signed_by_any(c, std::slice::from_ref(next)) => {}
            _ => return false,
        }
    }
    false
}

/// `2026-11-30T05:00:00Z` (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
