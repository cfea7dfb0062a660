//! Certificate checks against rcgen-made certificates: fresh, near expiry, expired, not yet
//! valid, wrong chain, intermediates, garbage.

use super::*;
use crate::check::{Status, identity, webhook};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

const DAY: Duration = Duration::from_secs(86_400);
const THRESHOLD: Duration = Duration::from_secs(30 * 86_400);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A certificate and the issuer that can sign with its key.
struct Made {
    pem: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

fn params(cn: &str, ca: bool, valid_days: i64) -> CertificateParams {
    let mut p = CertificateParams::new(if ca {
        vec![]
    } else {
        vec!["tulle-controller.tulle-system.svc".to_string()]
    })
    .unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    // Valid from 400 days ago (so that "expired" certificates can be made) to now + days.
    p.not_before = (now() - 400 * DAY).into();
    p.not_after = if valid_days >= 0 {
        (now() + valid_days as u32 * DAY).into()
    } else {
        (now() - (-valid_days) as u32 * DAY).into()
    };
    p
}

fn root(cn: &str, valid_days: i64) -> Made {
    let key = KeyPair::generate().unwrap();
    let p = params(cn, true, valid_days);
    let pem = p.self_signed(&key).unwrap().pem();
    Made {
        pem,
        issuer: rcgen::Issuer::new(p, key),
    }
}

fn signed(cn: &str, ca: bool, valid_days: i64, by: &Made) -> Made {
    let key = KeyPair::generate().unwrap();
    let p = params(cn, ca, valid_days);
    let pem = p.signed_by(&key, &by.issuer).unwrap().pem();
    Made {
        pem,
        issuer: rcgen::Issuer::new(p, key),
    }
}

fn bundle(pem: &str) -> Vec<Cert> {
    parse_bundle(pem.as_bytes(), "test").unwrap()
}

fn statuses(r: &[crate::check::CheckResult]) -> Vec<Status> {
    r.iter().map(|c| c.status).collect()
}

#[test]
fn validity_classes() {
    let c = |days| bundle(&root("r", days).pem).remove(0);
    assert_eq!(validity(&c(365), now(), THRESHOLD), Validity::Ok(365));
    assert_eq!(validity(&c(31), now(), THRESHOLD), Validity::Ok(31));
    assert_eq!(
        validity(&c(30), now(), THRESHOLD),
        Validity::ExpiresSoon(30)
    );
    assert_eq!(validity(&c(1), now(), THRESHOLD), Validity::ExpiresSoon(1));
    assert_eq!(validity(&c(-1), now(), THRESHOLD), Validity::Expired);
    let early = now() - 500 * DAY;
    assert_eq!(validity(&c(365), early, THRESHOLD), Validity::NotYetValid);
    // A zero threshold only fails expired certificates.
    assert_eq!(validity(&c(1), now(), Duration::ZERO), Validity::Ok(1));
}

#[test]
fn fresh_anchor_and_issuer_pass() {
    let r = root("root", 365);
    let i = signed("issuer", true, 300, &r);
    let (checks, anchors) = identity::anchor_checks(r.pem.as_bytes(), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok], "{checks:#?}");
    assert_eq!(checks[1].message, "expires in 365 days at the earliest");
    let checks = identity::issuer_checks(i.pem.as_bytes(), anchors.as_deref(), now(), THRESHOLD);
    assert_eq!(
        statuses(&checks),
        [Status::Ok, Status::Ok, Status::Ok],
        "{checks:#?}"
    );
}

#[test]
fn issuer_near_expiry_warns_with_the_days_left() {
    let r = root("root", 365);
    let i = signed("issuer", true, 10, &r);
    let anchors = bundle(&r.pem);
    let checks = identity::issuer_checks(i.pem.as_bytes(), Some(&anchors), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Warn]);
    let c = &checks[2];
    assert_eq!(c.name, "issuer certificate is valid for more than 30 days");
    assert!(
        c.message.contains("expires in 10 days")
            && c.message.contains("within the 30-day threshold"),
        "{c:?}"
    );
    assert!(
        c.hint.as_deref().unwrap().contains("tulle install"),
        "{c:?}"
    );
    // A smaller threshold accepts it.
    let checks = identity::issuer_checks(i.pem.as_bytes(), Some(&anchors), now(), 5 * DAY);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Ok]);
}

#[test]
fn expired_issuer_fails() {
    let r = root("root", 365);
    let i = signed("issuer", true, -2, &r);
    let anchors = bundle(&r.pem);
    let checks = identity::issuer_checks(i.pem.as_bytes(), Some(&anchors), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Fail]);
    let c = &checks[2];
    assert!(
        c.message.contains("\"CN=issuer\" expired on") && c.message.contains("refuses to sign"),
        "{c:?}"
    );
    assert!(
        c.hint.as_deref().unwrap().contains("tulle install"),
        "{c:?}"
    );
}

#[test]
fn expired_anchor_fails() {
    let r = root("old root", -2);
    let (checks, _) = identity::anchor_checks(r.pem.as_bytes(), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Fail]);
    assert!(
        checks[1]
            .message
            .contains("\"CN=old root\" expired on 2027-01-13T08:00:00Z"),
        "{:?}",
        checks[1]
    );
}

#[test]
fn issuer_from_another_root_fails_the_chain_check() {
    let ours = root("ours", 365);
    let theirs = root("theirs", 365);
    let i = signed("issuer", true, 300, &theirs);
    let checks =
        identity::issuer_checks(i.pem.as_bytes(), Some(&bundle(&ours.pem)), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Fail, Status::Ok]);
    assert!(checks[1].message.contains("not signed by any trust anchor"));

    // Same subject name, other key: the signature decides.
    let impostor = root("theirs", 365);
    assert!(!chains_to(&bundle(&i.pem), &bundle(&impostor.pem)));
    assert!(chains_to(&bundle(&i.pem), &bundle(&theirs.pem)));
}

#[test]
fn intermediates_are_followed() {
    let r = root("root", 365);
    let mid = signed("intermediate", true, 300, &r);
    let i = signed("issuer", true, 200, &mid);
    let anchors = bundle(&r.pem);
    assert!(!chains_to(&bundle(&i.pem), &anchors));
    let chain = format!("{}{}", i.pem, mid.pem);
    assert!(chains_to(&bundle(&chain), &anchors));
    // The validity of the whole chain counts.
    let short_mid = signed("intermediate", true, 3, &r);
    let i2 = signed("issuer", true, 200, &short_mid);
    let chain = format!("{}{}", i2.pem, short_mid.pem);
    let checks = identity::issuer_checks(chain.as_bytes(), Some(&anchors), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Warn]);
    assert!(checks[2].message.contains("CN=intermediate"));
}

#[test]
fn not_a_ca_and_garbage_fail() {
    let r = root("root", 365);
    let leaf = signed("leaf", false, 100, &r);
    let (checks, _) = identity::anchor_checks(leaf.pem.as_bytes(), now(), THRESHOLD);
    assert_eq!(checks[0].status, Status::Fail);
    assert!(checks[0].message.contains("is not a CA"));
    let (checks, anchors) = identity::anchor_checks(b"hello", now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Fail]);
    assert!(anchors.is_none());
    assert!(
        checks[0]
            .message
            .contains("tulle-trust-anchors[trust-anchors.pem]: no PEM certificate found"),
        "{:?}",
        checks[0]
    );
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let e = parse_bundle(bad.as_bytes(), "x").unwrap_err();
    assert!(matches!(e, CertError::Parse { index: 1, .. }), "{e:?}");
}

#[test]
fn webhook_serving_certificate() {
    let ca = root("webhook ca", 3650);
    let good = signed("tulle-controller.tulle-system.svc", false, 365, &ca);
    let cas = bundle(&ca.pem);
    let checks = webhook::serving_checks(good.pem.as_bytes(), Some(&cas), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Ok]);

    let other = root("webhook ca", 3650);
    let foreign = signed("tulle-controller.tulle-system.svc", false, 365, &other);
    let checks = webhook::serving_checks(foreign.pem.as_bytes(), Some(&cas), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Fail, Status::Ok]);

    let soon = signed("tulle-controller.tulle-system.svc", false, 20, &ca);
    let checks = webhook::serving_checks(soon.pem.as_bytes(), Some(&cas), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Fail]);
    assert!(
        checks[2]
            .hint
            .as_deref()
            .unwrap()
            .contains("rollout restart")
    );

    // The old and the new CA in the bundle: either signs.
    let two = bundle(&format!("{}{}", other.pem, ca.pem));
    let checks = webhook::serving_checks(good.pem.as_bytes(), Some(&two), now(), THRESHOLD);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Ok]);
}

#[test]
fn rfc3339_dates() {
    let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(t(1_800_000_000)), "2027-01-15T08:00:00Z");
}
