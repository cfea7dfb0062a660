use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn names() -> Vec<String> {
    service_dns_names("tulle-controller", "tulle-system", "cluster.local")
}

fn count_certs(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

#[test]
fn rotation_decisions() {
    let t0 = SystemTime::now();
    assert_eq!(plan(None, &names(), t0), Plan::NewCa);
    let tls = rotate(None, Plan::NewCa, &names(), t0).unwrap();
    assert_eq!(count_certs(&tls.ca_bundle), 1);
    assert_eq!(plan(Some(&tls), &names(), t0), Plan::Keep);

    let not_after = cert_not_after(&tls).unwrap();
    let lifetime = not_after.duration_since(t0).unwrap();
    assert!(
        lifetime > CERT_VALIDITY - DAY && lifetime <= CERT_VALIDITY,
        "{lifetime:?}"
    );
    let info = Info::parse(&tls.cert, "serving").unwrap();
    assert_eq!(info.dns_names, names());

    // 31 days before expiry: keep; 29 days before: renew the serving certificate only.
    assert_eq!(plan(Some(&tls), &names(), not_after - 31 * DAY), Plan::Keep);
    let t1 = not_after - 29 * DAY;
    assert_eq!(plan(Some(&tls), &names(), t1), Plan::RenewCert);
    let renewed = rotate(Some(&tls), Plan::RenewCert, &names(), t1).unwrap();
    assert_eq!(renewed.ca_bundle, tls.ca_bundle);
    assert_eq!(renewed.ca_key, tls.ca_key);
    assert_ne!(renewed.cert, tls.cert);
    assert_eq!(plan(Some(&renewed), &names(), t1), Plan::Keep);

    // Another Service name (or namespace): re-issue.
    let other = service_dns_names("tulle-ctl", "mesh", "cluster.local");
    assert_eq!(plan(Some(&tls), &other, t0), Plan::RenewCert);

    // The CA itself close to expiry: a new CA, the old one kept in the bundle.
    let t2 = t0 + CA_VALIDITY - 29 * DAY;
    assert_eq!(plan(Some(&renewed), &names(), t2), Plan::NewCa);
    let new_ca = rotate(Some(&renewed), Plan::NewCa, &names(), t2).unwrap();
    assert_eq!(count_certs(&new_ca.ca_bundle), 2);
    assert!(
        new_ca
            .ca_bundle
            .ends_with(&format!("{}\n", first_cert(&tls.ca_bundle)))
    );
    assert_ne!(first_cert(&new_ca.ca_bundle), first_cert(&tls.ca_bundle));
    assert_eq!(plan(Some(&new_ca), &names(), t2), Plan::Keep);
    // Past the old CA's expiry, the next new CA drops it.
    let t3 = t2 + CA_VALIDITY - 29 * DAY;
    let newer = rotate(Some(&new_ca), Plan::NewCa, &names(), t3).unwrap();
    assert_eq!(count_certs(&newer.ca_bundle), 2);
    assert!(!newer.ca_bundle.contains(first_cert(&tls.ca_bundle)));
}

#[test]
fn serving_cert_never_outlives_its_ca() {
    let t0 = SystemTime::now();
    let tls = rotate(None, Plan::NewCa, &names(), t0).unwrap();
    let ca_end = Info::parse(&tls.ca_bundle, "CA").unwrap().not_after;
    let late = ca_end - 100 * DAY;
    let r = rotate(Some(&tls), Plan::RenewCert, &names(), late).unwrap();
    assert_eq!(cert_not_after(&r).unwrap(), ca_end);
}

#[test]
fn unusable_material_means_a_new_ca() {
    let t0 = SystemTime::now();
    let tls = rotate(None, Plan::NewCa, &names(), t0).unwrap();
    let broken = WebhookTls {
        ca_bundle: "garbage".into(),
        ..tls.clone()
    };
    assert_eq!(plan(Some(&broken), &names(), t0), Plan::NewCa);
    let broken = WebhookTls {
        ca_key: "garbage".into(),
        ..tls.clone()
    };
    assert_eq!(plan(Some(&broken), &names(), t0), Plan::NewCa);
    let broken = WebhookTls {
        key: "garbage".into(),
        ..tls
    };
    assert_eq!(plan(Some(&broken), &names(), t0), Plan::RenewCert);
    assert!(matches!(
        cert_not_after(&WebhookTls {
            cert: "x".into(),
            ..broken
        }),
        Err(CertError::Parse {
            what: "serving",
            ..
        })
    ));
}

/// Several replicas (install --ha): a replica still holding the bundle from before another
/// replica's CA rotation does not put it back (issue 15, high availability).
#[test]
fn a_rotated_bundle_supersedes_the_previous_one() {
    let t0 = SystemTime::now();
    let old = rotate(None, Plan::NewCa, &names(), t0).unwrap();
    let new = rotate(Some(&old), Plan::NewCa, &names(), t0 + DAY).unwrap();
    assert_eq!(
        count_certs(&new.ca_bundle),
        2,
        "the previous CA stays trusted"
    );
    assert!(supersedes(new.ca_bundle.as_bytes(), &old.ca_bundle));
    assert!(!supersedes(old.ca_bundle.as_bytes(), &new.ca_bundle));
    assert!(!supersedes(new.ca_bundle.as_bytes(), &new.ca_bundle));
    // Unreadable on either side: the object is repaired as before.
    assert!(!supersedes(b"ABC", &old.ca_bundle));
    assert!(!supersedes(new.ca_bundle.as_bytes(), "XYZ"));
}
