//! The proxy injector's MutatingWebhookConfiguration. Its `caBundle` is left out: the
//! controller generates its own serving certificate and patches the bundle in.

use super::{
    CONTROL_PLANE_COMPONENT_LABEL, CONTROL_PLANE_NS_LABEL, CONTROLLER, NAMESPACE, Values,
    WEBHOOK_CONFIG, meta,
};
use k8s_openapi::{
    api::admissionregistration::v1::{
        MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
        WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
};

fn requirement(key: &str, op: &str, values: Option<Vec<String>>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values,
    }
}

/// `tulle-proxy-injector`: CREATE of pods, outside the control-plane namespace and
/// kube-system, never for control-plane pods.
pub fn injector(v: &Values) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(WEBHOOK_CONFIG, false, "controller", &v.tag),
        webhooks: Some(vec![MutatingWebhook {
            name: "inject.tulle.io".into(),
            client_config: WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: NAMESPACE.into(),
                    name: CONTROLLER.into(),
                    path: Some("/inject".into()),
                    port: Some(443),
                }),
                ..Default::default()
            },
            failure_policy: Some(v.webhook_failure_policy.as_str().into()),
            // The webhook writes Events (InjectionSkipped), never on dry runs.
            side_effects: "NoneOnDryRun".into(),
            admission_review_versions: vec!["v1".into()],
            timeout_seconds: Some(10),
            reinvocation_policy: Some("Never".into()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods".into()]),
                scope: Some("Namespaced".into()),
            }]),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![
                    requirement(CONTROL_PLANE_NS_LABEL, "DoesNotExist", None),
                    requirement(
                        "kubernetes.io/metadata.name",
                        "NotIn",
                        Some(vec!["kube-system".into()]),
                    ),
                ]),
                ..Default::default()
            }),
            object_selector: Some(LabelSelector {
                match_expressions: Some(vec![requirement(
                    CONTROL_PLANE_COMPONENT_LABEL,
                    "DoesNotExist",
                    None,
                )]),
                ..Default::default()
            }),
            ..Default::default()
        }]),
    }
}
