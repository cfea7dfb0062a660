//! Structural OpenAPI v3 schemas of the SMI resources (fields as in the SMI spec v0.6.0 and
//! smi-sdk-go's CRDs), tightened with validation that rejects bad objects with a clear
//! message: required fields, enums, bounds, and CEL rules (`x-kubernetes-validations`).

use serde_json::{Value, json};

/// A DNS-1123 name (Service, ServiceAccount, route names).
fn name(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 253, "description": description})
}

/// Wraps a `spec` schema into the object's top-level schema.
fn top(description: &str, spec: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    })
}

/// The weight of a TrafficSplit backend in `version`.
fn split_weight(version: &str) -> Value {
    if version == "v1alpha1" {
        return json!({
            "x-kubernetes-int-or-string": true,
                "description": "A resource.Quantity (e.g. 500m, 1, \"25\"), relative to the other weights; 0 sends no traffic. Stored as milli-units by the conversion webhook (500m -> 500, 1 -> 1000).",
        });
    }
    // No CEL rule on the weight: on an int-or-string field the API server estimates its cost
    // beyond the CRD budget (the string is unbounded) and refuses the whole CRD. Negative
    // weights count as 0 in the controller instead.
    json!({
        "x-kubernetes-int-or-string": true,
        "description": "Relative weight (not a percentage), a whole number; 0 (or a negative number) sends no traffic. A numeric string (\"25\") is read as that number; any other string makes the controller ignore the TrafficSplit (with a Warning Event).",
    })
}

/// TrafficSplit (split.smi-spec.io) in `version`: v1alpha3 and v1alpha4 share one shape;
/// v1alpha2 has no `matches` (the conversion webhook keeps them in the annotation
/// `split.smi-spec.io/matches`); v1alpha1 also has Quantity weights.
pub fn traffic_split(version: &str) -> Value {
    let mut spec = json!({
        "type": "object",
        "required": ["service", "backends"],
        "properties": {
            "service": name("The apex Service: the name clients use. Must be a Service in the TrafficSplit's namespace."),
            "backends": {
                "type": "array",
                "minItems": 1,
                "maxItems": 64,
                "description": "Backend Services and their relative weights.",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["service"],
                "items": {
                    "type": "object",
                    "required": ["service", "weight"],
                    "properties": {
                        "service": name("A Service in the same namespace (it may not exist yet: it then gets no traffic)."),
                        "weight": split_weight(version),
                    },
                },
            },
        },
    });
    if version == "v1alpha3" || version == "v1alpha4" {
        spec["properties"]["matches"] = json!({
            "type": "array",
            "maxItems": 16,
            "description": "Routes whose matching requests are split (HTTPRouteGroup), or ports whose connections are (TCPRoute); other requests go to the apex Service.",
            "items": {
                "type": "object",
                "required": ["kind", "name"],
                "properties": {
                    "kind": {"type": "string", "enum": ["HTTPRouteGroup", "TCPRoute"], "description": "HTTPRouteGroup or TCPRoute."},
                    "name": name("An HTTPRouteGroup or TCPRoute in the same namespace."),
                    "apiGroup": {"type": "string", "description": "Unused."},
                },
            },
        });
    }
    top(
        "TrafficSplit splits the traffic that meshed clients send to the apex Service across backend Services, by relative weight.",
        spec,
    )
}

/// TrafficTarget (access.smi-spec.io) in `version`: v1alpha3, or v1alpha2 (with
/// `destination.port`, kept by the conversion webhook in the annotation
/// `access.smi-spec.io/destination-port`; no UDPRoute rules). A TrafficTarget without
/// destination, rules or sources is rejected by the schema (required, minItems).
pub fn traffic_target(version: &str) -> Value {
    let subject = |what: &str| {
        json!({
            "type": "object",
            "required": ["kind", "name"],
            "description": what,
            "properties": {
                "kind": {"type": "string", "enum": ["ServiceAccount"], "description": "Only ServiceAccount."},
                "name": name("The ServiceAccount's name."),
                "namespace": name("The ServiceAccount's namespace (default: the TrafficTarget's)."),
            },
        })
    };
    let rule_kinds: &[&str] = if version == "v1alpha2" {
        &["HTTPRouteGroup", "TCPRoute"]
    } else {
        &["HTTPRouteGroup", "TCPRoute", "UDPRoute"]
    };
    let mut schema = top(
        "TrafficTarget allows the listed source ServiceAccounts to reach the pods of the destination ServiceAccount on the listed routes (UDPRoute rules are accepted but not enforced: the proxy does not carry UDP).",
        json!({
            "type": "object",
            "required": ["destination", "rules", "sources"],
            "properties": {
                "destination": subject("The destination: all pods running as this ServiceAccount."),
                "sources": {
                    "type": "array",
                    "minItems": 1,
                    "description": "The clients allowed.",
                    "items": subject("A client ServiceAccount."),
                },
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "description": "The routes allowed.",
                    "items": {
                        "type": "object",
                        "required": ["kind", "name"],
                        "properties": {
                            "kind": {"type": "string", "enum": rule_kinds},
                            "name": name("The route object's name, in the TrafficTarget's namespace."),
                            "matches": {
                                "type": "array",
                                "description": "Names of HTTPRouteGroup matches (default: all of them).",
                                "items": {"type": "string", "minLength": 1},
                            },
                        },
                        "x-kubernetes-validations": [{
                            "rule": "self.kind == 'HTTPRouteGroup' || !has(self.matches)",
                            "message": "matches may only be given for rules of kind HTTPRouteGroup",
                        }],
                    },
                },
            },
        }),
    );
    if version == "v1alpha2" {
        schema["properties"]["spec"]["properties"]["destination"]["properties"]["port"] = json!({
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "description": "Only this destination (pod) port (v1alpha3: use a TCPRoute). Kept on v1alpha3 in the annotation access.smi-spec.io/destination-port.",
        });
    }
    schema
}

/// HTTPRouteGroup (specs.smi-spec.io v1alpha3 and v1alpha4).
pub fn http_route_group() -> Value {
    top(
        "HTTPRouteGroup names sets of HTTP requests (path regex, methods, headers) for TrafficTarget rules and TrafficSplit matches.",
        json!({
            "type": "object",
            "required": ["matches"],
            "properties": {
                "matches": {
                    "type": "array",
                    "minItems": 1,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "description": "The matches; a request matching any of them matches the group.",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": name("The match's name, referenced by TrafficTarget rules."),
                            "pathRegex": {"type": "string", "description": "A regular expression anchored at the start of the path (default: any path)."},
                            "methods": {
                                "type": "array",
                                "description": "HTTP methods; * is any (default: any).",
                                "items": {"type": "string", "enum": ["*", "GET", "HEAD", "PUT", "POST", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]},
                            },
                            "headers": {
                                "description": "Header name to value regex, all of which must match: a map, or a list of one-entry maps (smi-sdk-go's form).",
                                "x-kubernetes-preserve-unknown-fields": true,
                            },
                        },
                    },
                },
            },
        }),
    )
}

/// TCPRoute and UDPRoute (specs.smi-spec.io v1alpha4).
pub fn port_route(proto: &str) -> Value {
    top(
        &format!(
            "{proto}Route names {proto} traffic to destination ports, for TrafficTarget rules."
        ),
        json!({
            "type": "object",
            "required": ["matches"],
            "properties": {
                "matches": {
                    "type": "object",
                    "required": ["ports"],
                    "properties": {
                        "name": {"type": "string", "description": "Unused."},
                        "ports": {
                            "type": "array",
                            "description": "Destination (pod) ports; empty means all ports.",
                            "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                        },
                    },
                },
            },
        }),
    )
}
