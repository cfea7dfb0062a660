//! TrafficTarget conversion: v1alpha3 is the storage (hub) version, v1alpha2 is served.
//!
//! v1alpha2 has `spec.destination.port`, which v1alpha3 moved into TCPRoutes. It is not
//! dropped (smi-sdk-go's converter drops it, widening the TrafficTarget to every port): on
//! the way up it is kept in the annotation [`DESTINATION_PORT_ANNOTATION`], which the
//! controller reads as a port restriction of the TrafficTarget; on the way down the
//! annotation becomes `spec.destination.port` again. Everything else is the same in both
//! versions.

use super::{ConversionError, annotations, fail};
use crate::core::access::DESTINATION_PORT_ANNOTATION;
use serde_json::Value;

/// The TrafficTarget API group.
pub const GROUP: &str = "access.smi-spec.io";
/// Versions served, oldest first (the last is the storage version).
pub const VERSIONS: [&str; 2] = ["v1alpha2", "v1alpha3"];

fn version(api_version: &str) -> Result<&'static str, ConversionError> {
    super::served_version(api_version, GROUP, &VERSIONS)
}

/// Converts one TrafficTarget (JSON) to `desired` (`access.smi-spec.io/<version>`).
pub fn convert(mut obj: Value, desired: &str) -> Result<Value, ConversionError> {
    let to = version(desired)?;
    let from = version(obj["apiVersion"].as_str().unwrap_or_default())?;
    match (from, to) {
        ("v1alpha2", "v1alpha3") => port_to_annotation(&mut obj)?,
        ("v1alpha3", "v1alpha2") => annotation_to_port(&mut obj),
        _ => {}
    }
    obj["apiVersion"] = Value::String(format!("{GROUP}/{to}"));
    Ok(obj)
}

/// v1alpha2 → v1alpha3: `spec.destination.port` → the annotation.
fn port_to_annotation(obj: &mut Value) -> Result<(), ConversionError> {
    let Some(port) = obj
        .pointer_mut("/spec/destination")
        .and_then(Value::as_object_mut)
        .and_then(|d| d.remove("port"))
    else {
        return Ok(());
    };
    let n = match &port {
        Value::Null => return Ok(()),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|p| (1..=65535).contains(p))
    .ok_or_else(|| {
        fail(format!(
            "spec.destination.port: {port} is not a port number (1-65535)"
        ))
    })?;
    annotations(obj)?.insert(
        DESTINATION_PORT_ANNOTATION.into(),
        Value::String(n.to_string()),
    );
    Ok(())
}

/// v1alpha3 → v1alpha2: the annotation → `spec.destination.port` (a value that is not a
/// port stays in the annotation, so reading never fails).
fn annotation_to_port(obj: &mut Value) {
    let Some(port) = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DESTINATION_PORT_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|p| *p > 0)
    else {
        return;
    };
    let Some(dest) = obj
        .pointer_mut("/spec/destination")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    dest.insert("port".into(), Value::from(port));
    if let Some(a) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(DESTINATION_PORT_ANNOTATION);
        if a.is_empty()
            && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("annotations");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1alpha2(port: Value) -> Value {
        json!({"apiVersion": "access.smi-spec.io/v1alpha2", "kind": "TrafficTarget",
            "metadata": {"name": "tt", "namespace": "shop"},
            "spec": {"destination": {"kind": "ServiceAccount", "name": "api", "namespace": "shop", "port": port},
                     "rules": [{"kind": "HTTPRouteGroup", "name": "g", "matches": ["m"]}],
                     "sources": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]}})
    }

    #[test]
    fn destination_port_round_trips_through_the_annotation() {
        let up = convert(v1alpha2(json!(8080)), "access.smi-spec.io/v1alpha3").unwrap();
        assert_eq!(up["apiVersion"], "access.smi-spec.io/v1alpha3");
        assert_eq!(
            up["metadata"]["annotations"][DESTINATION_PORT_ANNOTATION],
            "8080"
        );
        assert!(up["spec"]["destination"].get("port").is_none());
        assert_eq!(up["spec"]["rules"][0]["matches"][0], "m");
        let down = convert(up, "access.smi-spec.io/v1alpha2").unwrap();
        assert_eq!(down, v1alpha2(json!(8080)));
    }

    #[test]
    fn no_port_and_bad_ports() {
        let mut o = v1alpha2(Value::Null);
        o["spec"]["destination"]
            .as_object_mut()
            .unwrap()
            .remove("port");
        let up = convert(o.clone(), "access.smi-spec.io/v1alpha3").unwrap();
        assert!(up["metadata"].get("annotations").is_none());
        assert_eq!(
            convert(up, "access.smi-spec.io/v1alpha2").unwrap()["spec"],
            o["spec"]
        );
        let e = convert(v1alpha2(json!(70000)), "access.smi-spec.io/v1alpha3").unwrap_err();
        assert!(e.to_string().contains("spec.destination.port"), "{e}");
        assert!(convert(v1alpha2(json!(80)), "access.smi-spec.io/v1alpha1").is_err());
    }

    #[test]
    fn served_through_the_review() {
        let body = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "r1", "desiredAPIVersion": "access.smi-spec.io/v1alpha3",
                        "objects": [v1alpha2(json!(9090))]}});
        let rsp = super::super::review(&serde_json::to_vec(&body).unwrap()).unwrap();
        let v = serde_json::to_value(rsp).unwrap();
        assert_eq!(v["response"]["result"]["status"], "Success", "{v}");
        assert_eq!(
            v["response"]["convertedObjects"][0]["metadata"]["annotations"]
                [DESTINATION_PORT_ANNOTATION],
            "9090"
        );
    }
}
