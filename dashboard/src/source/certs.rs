//! The validity of PEM certificates (trust anchors, the webhook CA bundle).

use x509_parser::pem::Pem;

use crate::model::CertState;

/// Every certificate of a PEM bundle: its subject and notAfter, or why it cannot be read.
pub fn read_pem(pem: &[u8]) -> Vec<CertState> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let state = match block {
            Err(e) => CertState::Unknown(format!("not PEM: {e}")),
            Ok(p) => match p.parse_x509() {
                Ok(c) => CertState::Known {
                    subject: c.subject().to_string(),
                    not_after: c.validity().not_after.timestamp(),
                },
                Err(e) => CertState::Unknown(format!("not an X.509 certificate: {e}")),
            },
        };
        out.push(state);
    }
    if out.is_empty() {
        out.push(CertState::Unknown("no certificate in the PEM".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_certificate_of_a_bundle() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "root.test");
        let pem = p.self_signed(&key).unwrap().pem();
        let both = format!("{pem}{pem}");
        let states = read_pem(both.as_bytes());
        assert_eq!(states.len(), 2);
        assert!(matches!(&states[0], CertState::Known { subject, not_after }
            if subject.contains("root.test") && *not_after > 0));
        assert!(matches!(&read_pem(b"junk")[0], CertState::Unknown(_)));
    }
}
