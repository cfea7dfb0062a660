//! The SMI CustomResourceDefinitions, in their latest released versions.
//!
//! Several versions of one CRD are served only where their schemas are identical, because
//! without a conversion webhook the API server only rewrites `apiVersion` (strategy `None`):
//! - TrafficSplit: v1alpha4 (storage), v1alpha3 and v1alpha2. v1alpha1 is *not* served: its
//!   weights are `resource.Quantity` strings (`10m`) that need a real conversion.
//! - HTTPRouteGroup: v1alpha4 (storage) and v1alpha3.
//! - TrafficTarget v1alpha3, TCPRoute v1alpha4, UDPRoute v1alpha4: only these versions.

use super::{meta, smi_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceValidation,
    JSONSchemaProps,
};
use serde_json::Value;

struct Crd {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static str,
    /// Served versions, the storage version first.
    versions: &'static [&'static str],
    schema: fn() -> Value,
    columns: &'static [(&'static str, &'static str, &'static str)],
}

fn table() -> [Crd; 5] {
    [
        Crd {
            group: "split.smi-spec.io",
            kind: "TrafficSplit",
            plural: "trafficsplits",
            short: "ts",
            versions: &["v1alpha4", "v1alpha3", "v1alpha2"],
            schema: smi_schema::traffic_split,
            columns: &[("Service", "string", ".spec.service")],
        },
        Crd {
            group: "access.smi-spec.io",
            kind: "TrafficTarget",
            plural: "traffictargets",
            short: "tt",
            versions: &["v1alpha3"],
            schema: smi_schema::traffic_target,
            columns: &[("Destination", "string", ".spec.destination.name")],
        },
        Crd {
            group: "specs.smi-spec.io",
            kind: "HTTPRouteGroup",
            plural: "httproutegroups",
            short: "htr",
            versions: &["v1alpha4", "v1alpha3"],
            schema: smi_schema::http_route_group,
            columns: &[],
        },
        Crd {
            group: "specs.smi-spec.io",
            kind: "TCPRoute",
            plural: "tcproutes",
            short: "tr",
            versions: &["v1alpha4"],
            schema: || smi_schema::port_route("TCP"),
            columns: &[],
        },
        Crd {
            group: "specs.smi-spec.io",
            kind: "UDPRoute",
            plural: "udproutes",
            short: "ur",
            versions: &["v1alpha4"],
            schema: || smi_schema::port_route("UDP"),
            columns: &[],
        },
    ]
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
    let schema: JSONSchemaProps =
        serde_json::from_value((c.schema)()).expect("SMI schemas are valid JSONSchemaProps");
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
                open_api_v3_schema: Some(schema.clone()),
            }),
            additional_printer_columns: Some(columns.clone()),
            ..Default::default()
        })
        .collect();
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
            ..Default::default()
        },
        ..Default::default()
    }
}
