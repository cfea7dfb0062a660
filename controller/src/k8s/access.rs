//! The SMI Traffic Access resources, read tolerantly from their JSON ([`DynamicObject`]):
//! TrafficTarget (`access.smi-spec.io/v1alpha3`, the storage version; v1alpha2 reaches it
//! through the conversion webhook, its `destination.port` kept in the annotation
//! [`DESTINATION_PORT_ANNOTATION`]) and UDPRoute (`specs.smi-spec.io/v1alpha4`).

use super::smi::{ParseError, meta};
use crate::core::{
    AccessRule, Subject, TrafficTargetInfo, UdpRouteInfo, access::DESTINATION_PORT_ANNOTATION,
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

/// TrafficTarget v1alpha3.
pub fn traffic_target_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("access.smi-spec.io", "v1alpha3", "TrafficTarget"),
        "traffictargets",
    )
}

/// UDPRoute v1alpha4.
pub fn udp_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("specs.smi-spec.io", "v1alpha4", "UDPRoute"),
        "udproutes",
    )
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ParseError {
    ParseError {
        field: field.into(),
        message: message.into(),
    }
}

fn spec(obj: &DynamicObject) -> Result<&serde_json::Map<String, Value>, ParseError> {
    match obj.data.get("spec") {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(err("spec", "must be an object")),
        None => Err(err("spec", "is missing")),
    }
}

fn opt_string(v: Option<&Value>, field: &str) -> Result<Option<String>, ParseError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(err(field, format!("{other} is not a string"))),
    }
}

fn string(v: Option<&Value>, field: &str) -> Result<String, ParseError> {
    opt_string(v, field)?.ok_or_else(|| err(field, "is missing (a non-empty string)"))
}

fn array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], ParseError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(err(field, format!("{other} is not a list"))),
    }
}

fn subject(v: &Value, field: &str) -> Result<Subject, ParseError> {
    if !v.is_object() {
        return Err(err(field, "must be an object {kind, name, namespace}"));
    }
    Ok(Subject {
        kind: string(v.get("kind"), &format!("{field}.kind"))?,
        name: string(v.get("name"), &format!("{field}.name"))?,
        namespace: opt_string(v.get("namespace"), &format!("{field}.namespace"))?,
    })
}

fn port(v: &Value) -> Option<u16> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
}

/// A TrafficTarget.
pub fn traffic_target(obj: &DynamicObject) -> Result<TrafficTargetInfo, ParseError> {
    let spec = spec(obj)?;
    let destination = match spec.get("destination") {
        Some(v) => subject(v, "spec.destination")?,
        None => return Err(err("spec.destination", "is missing")),
    };
    let mut rules = Vec::new();
    for (i, r) in array(spec.get("rules"), "spec.rules")?.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        let kind = string(r.get("kind"), &format!("{field}.kind"))?;
        let name = string(r.get("name"), &format!("{field}.name"))?;
        rules.push(match kind.as_str() {
            "HTTPRouteGroup" => AccessRule::HttpRouteGroup {
                name,
                matches: match r.get("matches") {
                    None | Some(Value::Null) => None,
                    v => Some(
                        array(v, &format!("{field}.matches"))?
                            .iter()
                            .enumerate()
                            .map(|(j, m)| {
                                m.as_str().map(String::from).ok_or_else(|| {
                                    err(
                                        format!("{field}.matches[{j}]"),
                                        format!("{m} is not a string (a match name)"),
                                    )
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                },
            },
            "TCPRoute" => AccessRule::TcpRoute(name),
            "UDPRoute" => AccessRule::UdpRoute(name),
            _ => AccessRule::Other(kind, name),
        });
    }
    let sources = array(spec.get("sources"), "spec.sources")?
        .iter()
        .enumerate()
        .map(|(i, s)| subject(s, &format!("spec.sources[{i}]")))
        .collect::<Result<_, _>>()?;
    let port = match obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESTINATION_PORT_ANNOTATION))
    {
        None => None,
        Some(v) => Some(port(&Value::String(v.clone())).ok_or_else(|| {
            err(
                format!("metadata.annotations[{DESTINATION_PORT_ANNOTATION}]"),
                format!("{v:?} is not a port number (1-65535)"),
            )
        })?),
    };
    Ok(TrafficTargetInfo {
        destination,
        rules,
        sources,
        port,
        meta: meta(obj),
    })
}

/// A UDPRoute (same shape as a TCPRoute).
pub fn udp_route(obj: &DynamicObject) -> Result<UdpRouteInfo, ParseError> {
    let r = super::smi::tcp_route(obj)?;
    Ok(UdpRouteInfo {
        ports: r.ports,
        meta: r.meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        let mut o = json!({"apiVersion": "access.smi-spec.io/v1alpha3", "kind": "TrafficTarget",
            "metadata": {"name": "tt", "namespace": "shop", "uid": "u1"}});
        o.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(o).unwrap()
    }

    #[test]
    fn reads_a_traffic_target() {
        let tt = traffic_target(&obj(json!({
            "metadata": {"name": "tt", "namespace": "shop", "annotations": {DESTINATION_PORT_ANNOTATION: "8080"}},
            "spec": {
                "destination": {"kind": "ServiceAccount", "name": "api", "namespace": "shop"},
                "rules": [{"kind": "HTTPRouteGroup", "name": "routes", "matches": ["metrics"]},
                          {"kind": "HTTPRouteGroup", "name": "all"},
                          {"kind": "TCPRoute", "name": "tcp"}, {"kind": "UDPRoute", "name": "udp"},
                          {"kind": "Other", "name": "x"}],
                "sources": [{"kind": "ServiceAccount", "name": "web"},
                            {"kind": "ServiceAccount", "name": "prom", "namespace": "mon"}]}
        })))
        .unwrap();
        assert_eq!(
            tt.destination_account("shop"),
            Some(("shop".into(), "api".into()))
        );
        assert_eq!(tt.port, Some(8080));
        assert_eq!(
            tt.rules,
            vec![
                AccessRule::HttpRouteGroup {
                    name: "routes".into(),
                    matches: Some(vec!["metrics".into()])
                },
                AccessRule::HttpRouteGroup {
                    name: "all".into(),
                    matches: None
                },
                AccessRule::TcpRoute("tcp".into()),
                AccessRule::UdpRoute("udp".into()),
                AccessRule::Other("Other".into(), "x".into()),
            ]
        );
        assert_eq!(tt.sources[0].namespace, None);
        assert_eq!(tt.sources[1].namespace.as_deref(), Some("mon"));
    }

    #[test]
    fn unreadable_traffic_targets_name_the_field() {
        let e = traffic_target(&obj(json!({"spec": {"rules": []}}))).unwrap_err();
        assert_eq!(e.field, "spec.destination");
        let e = traffic_target(&obj(json!({"spec": {
            "destination": {"kind": "ServiceAccount", "name": "api"},
            "rules": [{"kind": "HTTPRouteGroup", "name": "g", "matches": [1]}]}})))
        .unwrap_err();
        assert_eq!(e.field, "spec.rules[0].matches[0]");
        let e = traffic_target(&obj(json!({
            "metadata": {"name": "tt", "namespace": "shop", "annotations": {DESTINATION_PORT_ANNOTATION: "http"}},
            "spec": {"destination": {"kind": "ServiceAccount", "name": "api"}}})))
        .unwrap_err();
        assert!(e.field.contains(DESTINATION_PORT_ANNOTATION), "{e}");
    }
}
