//! The SMI TrafficSplit resource (`split.smi-spec.io/v1alpha4`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Splits traffic sent to an apex Service among backend Services by weight.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "split.smi-spec.io",
    version = "v1alpha4",
    kind = "TrafficSplit",
    namespaced
)]
pub struct TrafficSplitSpec {
    /// The apex Service clients address.
    pub service: String,
    /// Backends with relative weights.
    #[serde(default)]
    pub backends: Vec<TrafficSplitBackend>,
    /// Optional HTTPRouteGroup/TCPRoute references (applied by the proxy in a later issue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TrafficSplitMatch>,
}

/// A backend of a TrafficSplit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct TrafficSplitBackend {
    /// Backend Service name (same namespace).
    pub service: String,
    /// Relative weight; 0 gets nothing.
    pub weight: i64,
}

/// A route reference of a TrafficSplit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct TrafficSplitMatch {
    /// Kind of the route (HTTPRouteGroup, TCPRoute).
    pub kind: String,
    /// Name of the route.
    pub name: String,
    /// API group of the route.
    #[serde(default, rename = "apiGroup", skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
}
