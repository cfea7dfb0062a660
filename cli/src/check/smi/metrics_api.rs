//! The SMI Traffic Metrics API: the APIService `v1alpha1.metrics.smi-spec.io` exists and the
//! API server reports it `Available` (it reached the controller's port 8443 with the caBundle
//! the controller patched in).

use crate::check::{CheckResult, kube_error};
use crate::manifest::{CONTROLLER, METRICS_API_SERVICE, NAMESPACE};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::Api;

/// Reads the APIService and judges it.
pub async fn check(client: &kube::Client) -> CheckResult {
    api_service_check(
        Api::<APIService>::all(client.clone())
            .get_opt(METRICS_API_SERVICE)
            .await,
    )
}

/// `SMI Traffic Metrics API is available`: the APIService exists and its condition
/// `Available` is `True`.
pub fn api_service_check(r: Result<Option<APIService>, kube::Error>) -> CheckResult {
    let name = format!("SMI Traffic Metrics API is available (APIService {METRICS_API_SERVICE})");
    let inspect = format!(
        "`kubectl get apiservice {METRICS_API_SERVICE} -o yaml`; the controller serves it on port 8443 and patches its caBundle: `kubectl -n {NAMESPACE} logs deploy/{CONTROLLER}`"
    );
    let svc = match r {
        Ok(Some(s)) => s,
        Ok(None) => {
            return CheckResult::fail(
                name,
                format!("APIService {METRICS_API_SERVICE} not found"),
                "install it with the control plane: `tulle install | kubectl apply -f -` or `helm upgrade tulle charts/tulle -n tulle-system`",
            );
        }
        Err(e) => return CheckResult::fail(name, kube_error(&e), inspect),
    };
    let available = svc
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Available");
    match available {
        Some(c) if c.status == "True" => CheckResult::ok(name, ""),
        c => {
            let why = c
                .map(|c| {
                    let reason = c.reason.unwrap_or_default();
                    match c.message.filter(|m| !m.is_empty()) {
                        Some(m) => format!("{reason}: {m}"),
                        None => reason,
                    }
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "no Available condition yet".into());
            let no_bundle = svc
                .spec
                .as_ref()
                .is_none_or(|s| s.ca_bundle.as_ref().is_none_or(|b| b.0.is_empty()));
            let extra = if no_bundle {
                " (no caBundle yet: the controller has not patched it)"
            } else {
                ""
            };
            CheckResult::fail(
                name,
                format!("not Available: {why}{extra}"),
                format!(
                    "wait for tulle-controller to be ready (`tulle check --wait 2m`), else {inspect}"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
        APIServiceCondition, APIServiceSpec, APIServiceStatus,
    };

    fn svc(available: Option<(&str, &str)>, bundle: bool) -> APIService {
        APIService {
            spec: Some(APIServiceSpec {
                ca_bundle: bundle.then(|| k8s_openapi::ByteString(b"PEM".to_vec())),
                ..Default::default()
            }),
            status: Some(APIServiceStatus {
                conditions: available.map(|(status, message)| {
                    vec![APIServiceCondition {
                        type_: "Available".into(),
                        status: status.into(),
                        reason: Some("FailedDiscoveryCheck".into()),
                        message: Some(message.into()),
                        last_transition_time: None,
                    }]
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn available_or_says_why_not() {
        assert_eq!(
            api_service_check(Ok(Some(svc(Some(("True", "")), true)))).status,
            Status::Ok
        );
        let r = api_service_check(Ok(Some(svc(
            Some((
                "False",
                "failing or missing response from https://10.0.0.1:8443",
            )),
            false,
        ))));
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.message,
            "not Available: FailedDiscoveryCheck: failing or missing response from https://10.0.0.1:8443 (no caBundle yet: the controller has not patched it)"
        );
        assert!(r.hint.unwrap().contains("tulle check --wait"));
        let r = api_service_check(Ok(Some(svc(None, true))));
        assert_eq!(r.message, "not Available: no Available condition yet");
        let r = api_service_check(Ok(None));
        assert_eq!(r.status, Status::Fail);
        assert!(r.hint.unwrap().contains("tulle install"));
    }
}
