//! Property-based fuzzing (issue 15) of what the identity service parses from clients and
//! files: CSRs (arbitrary DER, valid CSRs truncated or with bytes changed), the username
//! of a token review, and issuer PEM. Each gives a value or an error, never a panic.
//! Cases: `TULLE_FUZZ_CASES` (default 256); see docs/fuzzing.md.

use std::sync::LazyLock;
use std::time::SystemTime;

use proptest::prelude::*;
use tulle_api::ServiceAccountIdentity;
use tulle_identity::csr::validate;
use tulle_identity::issuer::Issuer;
use tulle_identity::token::parse_username;

fn config() -> ProptestConfig {
    let cases = std::env::var("TULLE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn id() -> ServiceAccountIdentity {
    ServiceAccountIdentity::new("web", "prod", "cluster.local")
}

/// A valid CSR for [`id`], made once.
static CSR: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let id = id();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![id.dns_name()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(id.spiffe_uri().try_into().unwrap()));
    params.serialize_request(&key).unwrap().der().to_vec()
});

/// A self-signed CA as PEM (certificate, key), made once.
static CA: LazyLock<(String, String)> = LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
});

/// `base` with some bytes changed, then cut.
fn mutated(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(edits, cut, truncate)| {
            let mut b = base.to_vec();
            for (at, v) in edits {
                let i = at.index(b.len());
                b[i] = v;
            }
            if truncate {
                b.truncate(cut.index(b.len() + 1));
            }
            b
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_csr_bytes_are_refused_without_panics(
        der in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            prop::collection::vec(any::<u8>(), 4000..4200),
            mutated(&CSR),
        ]
    ) {
        // An unchanged valid CSR is the only input expected to pass, but none may panic.
        let r = validate(&der, &id());
        if der == *CSR {
            prop_assert!(r.is_ok(), "{r:?}");
        }
    }

    #[test]
    fn the_valid_csr_passes(_x in 0..1u8) {
        prop_assert!(validate(&CSR, &id()).is_ok());
        prop_assert!(validate(&CSR, &ServiceAccountIdentity::new("db", "prod", "cluster.local")).is_err());
    }

    #[test]
    fn arbitrary_usernames_parse_or_fail(
        name in prop_oneof![
            any::<String>(),
            "system:serviceaccount:[a-z:]{0,12}",
            "system:[a-z:]{0,20}",
        ]
    ) {
        if let Ok(s) = parse_username(&name) {
            prop_assert_eq!(
                format!("system:serviceaccount:{}:{}", s.namespace, s.service_account),
                name
            );
            prop_assert!(!s.namespace.is_empty() && !s.service_account.is_empty());
            prop_assert!(!s.service_account.contains(':'));
        }
    }

    #[test]
    fn arbitrary_issuer_pem_is_refused_without_panics(
        cert in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            mutated(CA.0.as_bytes()),
            "-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{0,300}\n-----END CERTIFICATE-----\n"
                .prop_map(String::into_bytes),
        ],
        key in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            mutated(CA.1.as_bytes()),
            Just(CA.1.as_bytes().to_vec()),
        ],
    ) {
        let r = Issuer::from_pem(&cert, &key, SystemTime::now());
        if cert == CA.0.as_bytes() && key == CA.1.as_bytes() {
            prop_assert!(r.is_ok());
        }
    }
}
