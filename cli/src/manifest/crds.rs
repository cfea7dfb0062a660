//! The SMI CustomResourceDefinitions, in their latest released versions.
//!
//! - TrafficSplit: v1alpha4 (storage), v1alpha3, v1alpha2 and v1alpha1, converted by the
//!   controller's conversion webhook (`POST /convert` on Service tulle-controller, port 443;
//!   the controller patches in the caBundle): v1alpha1 `resource.Quantity` weights become
//!   milli-units, v1alpha2/v1alpha1 keep `matches` in an annotation.
//! - HTTPRouteGroup: v1alpha4 (storage) and v1alpha3, identical schemas (strategy `None`).
//! - TrafficTarget: v1alpha3 (storage) and v1alpha2, converted by the same webhook: v1alpha2
//!   `spec.destination.port` is kept in the annotation `access.smi-spec.io/destination-port`
//!   (read by the controller as a port restriction, never dropped).
//! - TCPRoute v1alpha4, UDPRoute v1alpha4 (accepted, not enforced): only these versions.

use super::{CONTROLLER, NAMESPACE, meta, smi_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceConversion, CustomResourceDefinition,
    CustomResourceDefinitionNames, CustomResourceDefinitionSpec, CustomResourceDefinitionVersion,
    CustomResourceValidation, JSONSchemaProps, ServiceReference, WebhookClientConfig,
    WebhookConversion,
};
use serde_json::Value;

struct Crd {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static str,
    /// Served versions, the storage version first.
    versions: &'static [&'static str],
    /// The schema of a version.
    schema: fn(&str) -> Value,
    /// Converted by the controller's webhook (else strategy None: identical schemas).
    webhook: bool,
    columns: &'static [(&'static str, &'static str, &'static str)],
}

fn table() -> [Crd; 5] {
    [
        Crd {
            group: "split.smi-spec.io",
            kind: "TrafficSplit",
            plural: "trafficsplits",
            short: "ts",
            versions: &["v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"],
            schema: smi_schema::traffic_split,
            webhook: true,
            columns: &[("Service", "string", ".spec.service")],
        },
        Crd {
            group: "access.smi-spec.io",
            kind: "TrafficTarget",
            plural: "traffictargets",
            short: "tt",
            versions: &["v1alpha3", "v1alpha2"],
            schema: smi_schema::traffic_target,
            webhook: true,
            columns: &[("Destination", "string", ".spec.destination.name")],
        },
        Crd {
            group: "specs.smi-spec.io",
            kind: "HTTPRouteGroup",
            plural: "httproutegroups",
            short: "htr",
            versions: &["v1alpha4", "v1alpha3"],
            schema: |_| smi_schema::http_route_group(),
            webhook: false,
            columns: &[],
        },
        Crd {
            group: "specs.smi-spec.io",
            kind: "TCPRoute",
            plural: "tcproutes",
            short: "tr",
            versions: &["v1alpha4"],
            schema: |_| smi_schema::port_route("TCP"),
            webhook: false,
            columns: &[],
        },
        Crd {
            group: "specs.smi-spec.io",
            kind: "UDPRoute",
            plural: "udproutes",
            short: "ur",
            versions: &["v1alpha4"],
            schema: |_| smi_schema::port_route("UDP"),
            webhook: false,
            columns: &[],
        },
    ]
}

/// The path of the conversion webhook on the controller's webhook server.
pub const CONVERSION_PATH: &str = "/convert";

/// `<plural>.<group>` of the CRDs converted by the controller's webhook.
pub fn conversion_crd_names() -> Vec<String> {
    table()
        .iter()
        .filter(|c| c.webhook)
        .map(|c| format!("{}.{}", c.plural, c.group))
        .collect()
}

/// `<plural>.<group>` of every CRD.
pub fn crd_names() -> Vec<String> {
    table()
        .iter()
        .map(|c| format!("{}.{}", c.plural, c.group))
        .collect()
}

/// The CRDs, labelled with `version`.
pub fn crds(version: &str) -> Vec<CustomResourceDefinition> {
    table().iter().map(|c| crd(c, version)).collect()
}

fn crd(c: &Crd, version: &str) -> CustomResourceDefinition {
    let mut columns: Vec<CustomResourceColumnDefinition> = c
        .columns
        .iter()
        .map(|(name, type_, path)| CustomResourceColumnDefinition {
            name: name.to_string(),
            type_: type_.to_string(),
            json_path: path.to_string(),
            ..Default::default()
        })
        .collect();
    columns.push(CustomResourceColumnDefinition {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        ..Default::default()
    });
    let versions = c
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| CustomResourceDefinitionVersion {
            name: v.to_string(),
            served: true,
            storage: i == 0,
            schema: Some(CustomResourceValidation {
                open_api_v3_schema: Some(
                    serde_json::from_value::<JSONSchemaProps>((c.schema)(v))
                        .expect("SMI schemas are valid JSONSchemaProps"),
                ),
            }),
            additional_printer_columns: Some(columns.clone()),
            ..Default::default()
        })
        .collect();
    // No caBundle: the controller patches it in (it makes its own webhook CA).
    let conversion = c.webhook.then(|| CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            client_config: Some(WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: NAMESPACE.into(),
                    name: CONTROLLER.into(),
                    path: Some(CONVERSION_PATH.into()),
                    port: Some(443),
                }),
                ..Default::default()
            }),
            conversion_review_versions: vec!["v1".into()],
        }),
    });
    CustomResourceDefinition {
        metadata: meta(&format!("{}.{}", c.plural, c.group), false, "crds", version),
        spec: CustomResourceDefinitionSpec {
            group: c.group.to_string(),
            scope: "Namespaced".into(),
            names: CustomResourceDefinitionNames {
                kind: c.kind.to_string(),
                list_kind: Some(format!("{}List", c.kind)),
                plural: c.plural.to_string(),
                singular: Some(c.kind.to_lowercase()),
                short_names: Some(vec![c.short.to_string()]),
                categories: Some(vec!["smi".into(), "tulle".into()]),
            },
            versions,
            conversion,
            ..Default::default()
        },
        ..Default::default()
    }
}
