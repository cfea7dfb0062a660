//! `tulle-identity`: the trust anchors (ConfigMap `tulle-trust-anchors`) and the issuer
//! (Secret `tulle-identity-issuer`) are valid CAs, the issuer chains to an anchor, and none
//! expires within the threshold (`--expiry-warning-days`: within it is a failure for the
//! anchors, a warning for the issuer, which fails once expired or not yet valid).

use super::{
    Category, CheckFuture, CheckResult, Ctx,
    certs::{self, Cert},
    kube_error,
};
use crate::manifest::{ISSUER_SECRET, NAMESPACE, TRUST_ANCHORS_CONFIGMAP, TRUST_ANCHORS_KEY};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use std::time::{Duration, SystemTime};

const ROTATE_ANCHORS: &str = "rotate the trust anchor and the issuer: make new ones and apply them \
    with `tulle install --identity-trust-anchors-file ANCHORS.pem \
    --identity-issuer-certificate-file ISSUER.crt --identity-issuer-key-file ISSUER.key | \
    kubectl apply -f -` (keep the old anchor in ANCHORS.pem until every proxy has a new \
    certificate), then restart the meshed workloads";
const ROTATE_ISSUER: &str = "issue a new issuer certificate from a trust anchor and apply it with \
    `tulle install --identity-trust-anchors-file ANCHORS.pem --identity-issuer-certificate-file \
    ISSUER.crt --identity-issuer-key-file ISSUER.key | kubectl apply -f -` (tulle-identity \
    reloads it)";

/// `tulle-identity`.
pub struct Identity;

impl Category for Identity {
    fn name(&self) -> &'static str {
        "tulle-identity"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let client = ctx.client();
            let now = super::now();
            let anchors_pem = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
                .get_opt(TRUST_ANCHORS_CONFIGMAP)
                .await
                .map(|cm| {
                    cm.map(|cm| {
                        cm.data
                            .and_then(|mut d| d.remove(TRUST_ANCHORS_KEY))
                            .unwrap_or_default()
                    })
                });
            let issuer_pem = Api::<Secret>::namespaced(client, NAMESPACE)
                .get_opt(ISSUER_SECRET)
                .await
                .map(|s| {
                    s.map(|s| {
                        s.data
                            .and_then(|mut d| d.remove("tls.crt"))
                            .map(|b| b.0)
                            .unwrap_or_default()
                    })
                });
            let (mut out, anchors) = match anchors_pem {
                Ok(Some(pem)) => anchor_checks(pem.as_bytes(), now, ctx.expiry_threshold),
                Ok(None) => (vec![missing_anchors("not found")], None),
                Err(e) => (vec![missing_anchors(&kube_error(&e))], None),
            };
            match issuer_pem {
                Ok(Some(pem)) => out.extend(issuer_checks(
                    &pem,
                    anchors.as_deref(),
                    now,
                    ctx.expiry_threshold,
                )),
                Ok(None) => out.push(missing_issuer("not found")),
                Err(e) => out.push(missing_issuer(&kube_error(&e))),
            }
            out
        })
    }
}

fn anchors_name() -> String {
    format!("trust anchors ConfigMap {TRUST_ANCHORS_CONFIGMAP} holds valid CA certificates")
}

fn issuer_name() -> String {
    format!("issuer Secret {ISSUER_SECRET} holds a valid CA certificate")
}

fn missing_anchors(why: &str) -> CheckResult {
    CheckResult::fail(
        anchors_name(),
        format!("configmap {NAMESPACE}/{TRUST_ANCHORS_CONFIGMAP}: {why}"),
        "re-apply the install: `tulle install | kubectl apply -f -` with the PKI files in use \
         (a plain `tulle install` generates a new PKI)",
    )
}

fn missing_issuer(why: &str) -> CheckResult {
    CheckResult::fail(
        issuer_name(),
        format!("secret {NAMESPACE}/{ISSUER_SECRET}: {why}"),
        ROTATE_ISSUER,
    )
}

fn validity_name(what: &str, threshold: Duration) -> String {
    format!(
        "{what} valid for more than {} days",
        threshold.as_secs() / 86_400
    )
}

/// The checks of the trust anchors PEM; returns the anchors when they parse.
pub fn anchor_checks(
    pem: &[u8],
    now: SystemTime,
    threshold: Duration,
) -> (Vec<CheckResult>, Option<Vec<Cert>>) {
    let source = format!("{TRUST_ANCHORS_CONFIGMAP}[{TRUST_ANCHORS_KEY}]");
    let anchors = match certs::parse_bundle(pem, &source) {
        Ok(a) => a,
        Err(e) => {
            return (
                vec![CheckResult::fail(
                    anchors_name(),
                    e.to_string(),
                    ROTATE_ANCHORS,
                )],
                None,
            );
        }
    };
    let mut out = Vec::new();
    let not_ca: Vec<_> = anchors
        .iter()
        .filter(|a| !a.is_ca)
        .map(|a| format!("{:?} is not a CA", a.subject))
        .collect();
    out.push(if not_ca.is_empty() {
        CheckResult::ok(anchors_name(), format!("{} anchor(s)", anchors.len()))
    } else {
        CheckResult::fail(anchors_name(), not_ca.join("; "), ROTATE_ANCHORS)
    });
    let name = validity_name("trust anchors are", threshold);
    out.push(match certs::check_times(&anchors, now, threshold) {
        Ok(m) => CheckResult::ok(name, m),
        Err(m) => CheckResult::fail(name, m, ROTATE_ANCHORS),
    });
    (out, Some(anchors))
}

/// The checks of the issuer certificate PEM (issuer first, then intermediates).
pub fn issuer_checks(
    pem: &[u8],
    anchors: Option<&[Cert]>,
    now: SystemTime,
    threshold: Duration,
) -> Vec<CheckResult> {
    let source = format!("{ISSUER_SECRET}[tls.crt]");
    let chain = match certs::parse_bundle(pem, &source) {
        Ok(c) => c,
        Err(e) => {
            return vec![CheckResult::fail(
                issuer_name(),
                e.to_string(),
                ROTATE_ISSUER,
            )];
        }
    };
    let issuer = &chain[0];
    let mut out = vec![if issuer.is_ca {
        CheckResult::ok(issuer_name(), "")
    } else {
        CheckResult::fail(
            issuer_name(),
            format!("{:?} is not a CA", issuer.subject),
            ROTATE_ISSUER,
        )
    }];
    let name = "issuer certificate is issued by a trust anchor";
    out.push(match anchors {
        None => CheckResult::fail(
            name,
            "no usable trust anchors to check against",
            "fix the trust anchors first (see above)",
        ),
        Some(a) if certs::chains_to(&chain, a) => CheckResult::ok(name, ""),
        Some(_) => CheckResult::fail(
            name,
            format!(
                "{:?} is not signed by any trust anchor in {TRUST_ANCHORS_CONFIGMAP}",
                issuer.subject
            ),
            "proxies will reject each other's certificates: apply an issuer signed by a trust \
             anchor, or add its root to the anchors, with `tulle install \
             --identity-trust-anchors-file ... --identity-issuer-certificate-file ... \
             --identity-issuer-key-file ... | kubectl apply -f -`",
        ),
    });
    let name = validity_name("issuer certificate is", threshold);
    out.push(match certs::check_times(&chain, now, threshold) {
        Ok(m) => CheckResult::ok(name, m),
        // Expired (or not yet valid): tulle-identity refuses to sign and is not ready.
        Err(m) if certs::any_outside_validity(&chain, now) => CheckResult::fail(
            name,
            format!("{m}; tulle-identity refuses to sign with it"),
            ROTATE_ISSUER,
        ),
        // Still valid but expiring soon: rotate it in time.
        Err(m) => CheckResult::warn(name, m, ROTATE_ISSUER),
    });
    out
}
