//! `tulle-webhook`: the injector's MutatingWebhookConfiguration exists and has a caBundle, and
//! the serving certificate in Secret `tulle-webhook-tls` is valid, chains to that caBundle
//! (as the API server verifies it) and does not expire within the threshold.

use super::{
    Category, CheckFuture, CheckResult, Ctx,
    certs::{self, Cert},
    kube_error,
};
use crate::manifest::{CONTROLLER, NAMESPACE, WEBHOOK_CONFIG, WEBHOOK_TLS_SECRET};
use k8s_openapi::api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Secret};
use kube::api::Api;
use std::time::{Duration, SystemTime};

/// The controller makes and renews the serving certificate and patches the caBundle.
fn restart_hint() -> String {
    format!(
        "the controller maintains the webhook certificate and caBundle: check its logs \
         (`kubectl -n {NAMESPACE} logs deploy/{CONTROLLER}`); to force new ones, delete the \
         Secret and restart it: `kubectl -n {NAMESPACE} delete secret {WEBHOOK_TLS_SECRET} && \
         kubectl -n {NAMESPACE} rollout restart deploy/{CONTROLLER}`"
    )
}

/// `tulle-webhook`.
pub struct Webhook;

impl Category for Webhook {
    fn name(&self) -> &'static str {
        "tulle-webhook"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let client = ctx.client();
            let config = Api::<MutatingWebhookConfiguration>::all(client.clone())
                .get_opt(WEBHOOK_CONFIG)
                .await;
            let secret = Api::<Secret>::namespaced(client, NAMESPACE)
                .get_opt(WEBHOOK_TLS_SECRET)
                .await;
            webhook_checks(config, secret, super::now(), ctx.expiry_threshold)
        })
    }
}

/// All checks of the category from what the API returned.
pub fn webhook_checks(
    config: Result<Option<MutatingWebhookConfiguration>, kube::Error>,
    secret: Result<Option<Secret>, kube::Error>,
    now: SystemTime,
    threshold: Duration,
) -> Vec<CheckResult> {
    let exists = format!("proxy injector webhook {WEBHOOK_CONFIG} exists");
    let config = match config {
        Ok(Some(c)) => c,
        Ok(None) => {
            return vec![CheckResult::fail(
                exists,
                format!("mutatingwebhookconfiguration {WEBHOOK_CONFIG} not found"),
                "install tulle: `tulle install | kubectl apply -f -`",
            )];
        }
        Err(e) => {
            return vec![CheckResult::fail(
                exists,
                kube_error(&e),
                format!("kubectl get mutatingwebhookconfiguration {WEBHOOK_CONFIG}"),
            )];
        }
    };
    let mut out = vec![CheckResult::ok(exists, "")];
    let bundle_name = "proxy injector webhook has a caBundle";
    let bundles: Vec<Vec<u8>> = config
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.client_config.ca_bundle.map(|b| b.0).unwrap_or_default())
        .collect();
    let ca = match bundles.first() {
        Some(b) if !b.is_empty() && bundles.iter().all(|x| x == b) => {
            match certs::parse_bundle(b, "caBundle") {
                Ok(ca) => {
                    out.push(CheckResult::ok(bundle_name, format!("{} CA(s)", ca.len())));
                    Some(ca)
                }
                Err(e) => {
                    out.push(CheckResult::fail(
                        bundle_name,
                        e.to_string(),
                        restart_hint(),
                    ));
                    None
                }
            }
        }
        _ => {
            out.push(CheckResult::fail(
                bundle_name,
                "a webhook has no caBundle (or they differ): the API server cannot call the injector",
                restart_hint(),
            ));
            None
        }
    };
    let cert_name = format!("webhook serving certificate in Secret {WEBHOOK_TLS_SECRET} is valid");
    let tls = match secret {
        Ok(Some(s)) => s.data.and_then(|mut d| d.remove("tls.crt")).map(|b| b.0),
        Ok(None) => None,
        Err(e) => {
            out.push(CheckResult::fail(cert_name, kube_error(&e), restart_hint()));
            return out;
        }
    };
    let Some(tls) = tls else {
        out.push(CheckResult::fail(
            cert_name,
            format!("secret {NAMESPACE}/{WEBHOOK_TLS_SECRET} or its tls.crt not found"),
            restart_hint(),
        ));
        return out;
    };
    out.extend(serving_checks(&tls, ca.as_deref(), now, threshold));
    out
}

/// The checks of the serving certificate (PEM) against the caBundle.
pub fn serving_checks(
    tls_crt: &[u8],
    ca: Option<&[Cert]>,
    now: SystemTime,
    threshold: Duration,
) -> Vec<CheckResult> {
    let cert_name = format!("webhook serving certificate in Secret {WEBHOOK_TLS_SECRET} is valid");
    let chain = match certs::parse_bundle(tls_crt, &format!("{WEBHOOK_TLS_SECRET}[tls.crt]")) {
        Ok(c) => c,
        Err(e) => return vec![CheckResult::fail(cert_name, e.to_string(), restart_hint())],
    };
    let mut out = vec![CheckResult::ok(cert_name, "")];
    let name = "webhook serving certificate is signed by the caBundle";
    out.push(match ca {
        None => CheckResult::fail(
            name,
            "no usable caBundle to check against",
            "fix the caBundle first (see above)",
        ),
        Some(ca) if certs::chains_to(&chain, ca) => CheckResult::ok(name, ""),
        Some(_) => CheckResult::fail(
            name,
            format!(
                "{:?} is not signed by any CA of the caBundle: the API server rejects the injector",
                chain[0].subject
            ),
            restart_hint(),
        ),
    });
    let name = format!(
        "webhook serving certificate is valid for more than {} days",
        threshold.as_secs() / 86_400
    );
    out.push(match certs::check_times(&chain[..1], now, threshold) {
        Ok(m) => CheckResult::ok(name, m),
        Err(m) => CheckResult::fail(name, m, restart_hint()),
    });
    out
}
