//! `tulle-webhook`: the injector's MutatingWebhookConfiguration exists and has a caBundle, and
//! the serving certificate in Secret `tulle-webhook-tls` is valid, chains to that caBundle
//! (as the API server verifies it) and does not expire within the threshold; the install's IP
//! families cover the nodes' pod networks (IPv6 is not intercepted: docs/ipv6.md).

use super::{
    Category, CheckFuture, CheckResult, Ctx,
    certs::{self, Cert},
    kube_error,
};
use crate::manifest::{CONTROLLER, NAMESPACE, WEBHOOK_CONFIG, WEBHOOK_TLS_SECRET};
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::Deployment,
    core::v1::{Node, Secret},
};
use kube::api::{Api, ListParams};
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
            let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
                .get_opt(WEBHOOK_TLS_SECRET)
                .await;
            let mut out = webhook_checks(config, secret, super::now(), ctx.expiry_threshold);
            let nodes = Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(|l| l.items.iter().flat_map(pod_cidrs).collect());
            let families = Api::<Deployment>::namespaced(client, NAMESPACE)
                .get_opt(CONTROLLER)
                .await
                .ok()
                .flatten()
                .and_then(|d| controller_env(&d, IP_FAMILIES_ENV));
            out.push(ip_families_check(nodes, families.as_deref()));
            out
        })
    }
}

/// The controller's setting of the pods' IP families (absent: IPv4).
const IP_FAMILIES_ENV: &str = "TULLE_CONTROLLER_IP_FAMILIES";

fn pod_cidrs(n: &Node) -> Vec<(String, String)> {
    let name = n.metadata.name.clone().unwrap_or_default();
    let spec = n.spec.as_ref();
    let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
        && !cidrs.contains(&c)
    {
        cidrs.push(c);
    }
    cidrs.into_iter().map(|c| (name.clone(), c)).collect()
}

fn controller_env(d: &Deployment, name: &str) -> Option<String> {
    let pod = d.spec.as_ref()?.template.spec.as_ref()?;
    pod.containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// Whether the install's IP families (`families`, the controller's `--ip-families`; `None`:
/// IPv4) cover the pod networks the nodes allocate (`(node, spec.podCIDRs)`). The proxy
/// intercepts only IPv4: on nodes with an IPv6 pod range, a mesh installed for IPv4 injects
/// pods whose IPv6 traffic bypasses the proxy, which fails the check (docs/ipv6.md).
pub fn ip_families_check(
    node_cidrs: Result<Vec<(String, String)>, kube::Error>,
    families: Option<&str>,
) -> CheckResult {
    let name = "proxy injector knows the pods' IP families";
    let ipv6_installed = families.is_some_and(|f| f.split(',').any(|f| f.trim() == "IPv6"));
    if ipv6_installed {
        return CheckResult::warn(
            name,
            format!(
                "installed with --ip-families {}: IPv6 is not intercepted yet, so the injector refuses every pod (tulle.io/inject-skipped: ipv6)",
                families.unwrap_or_default()
            ),
            "see docs/ipv6.md",
        );
    }
    let cidrs = match node_cidrs {
        Ok(c) => c,
        Err(e) => {
            return CheckResult::warn(
                name,
                format!("cannot list the nodes' pod CIDRs: {}", kube_error(&e)),
                "`kubectl get nodes -o jsonpath='{.items[*].spec.podCIDRs}'`: with an IPv6 range, re-install with --ip-families IPv4,IPv6 (docs/ipv6.md)",
            );
        }
    };
    let v6: Vec<String> = cidrs
        .iter()
        .filter(|(_, c)| c.contains(':'))
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    if v6.is_empty() {
        return CheckResult::ok(name, "");
    }
    CheckResult::fail(
        name,
        format!(
            "nodes allocate IPv6 pod addresses ({}) but the mesh was installed for IPv4 only: meshed pods' IPv6 traffic bypasses the proxy (no mTLS, no policy)",
            v6.join(", ")
        ),
        "re-install with `tulle install --ip-families IPv4,IPv6` (chart value ipFamilies) so that the injector refuses the pods it cannot fully mesh (docs/ipv6.md)",
    )
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

#[cfg(test)]
mod ip_family_tests {
    use super::*;
    use crate::check::Status;

    fn nodes(cidrs: &[&str]) -> Result<Vec<(String, String)>, kube::Error> {
        Ok(cidrs
            .iter()
            .map(|c| ("node-1".to_string(), c.to_string()))
            .collect())
    }

    /// Issue 15 item 4: a dual-stack cluster installed for IPv4 would mesh pods whose IPv6
    /// traffic bypasses the proxy; `tulle check` says so, and how to make the injector refuse.
    #[test]
    fn ipv6_pod_networks_need_the_ip_families_at_install() {
        let r = ip_families_check(nodes(&["10.244.0.0/24", "fd00:10:244::/64"]), None);
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(
            r.message.contains("node-1 fd00:10:244::/64"),
            "{}",
            r.message
        );
        assert!(
            r.hint
                .as_deref()
                .unwrap()
                .contains("--ip-families IPv4,IPv6")
        );
        let r = ip_families_check(nodes(&["fd00:10:244::/64"]), Some("IPv4"));
        assert_eq!(r.status, Status::Fail);

        assert_eq!(
            ip_families_check(nodes(&["10.244.0.0/24"]), None).status,
            Status::Ok
        );
        assert_eq!(ip_families_check(nodes(&[]), None).status, Status::Ok);
        // Installed for IPv6: nothing bypasses, but nothing is meshed either.
        let r = ip_families_check(nodes(&["fd00:10:244::/64"]), Some("IPv4,IPv6"));
        assert_eq!(r.status, Status::Warn);
        assert!(r.message.contains("refuses every pod"), "{}", r.message);
    }

    #[test]
    fn node_cidrs_come_from_pod_cidrs_and_pod_cidr() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24", "fd00::/64"]}
        }))
        .unwrap();
        assert_eq!(
            pod_cidrs(&n),
            [
                ("n1".to_string(), "10.244.0.0/24".to_string()),
                ("n1".to_string(), "fd00::/64".to_string())
            ]
        );
    }
}
