//! JSON patches (RFC 6902) over the pod as the API server sent it. Only `add` operations at
//! fixed places: existing containers and volumes are never rewritten, so fields this build's
//! k8s-openapi does not know survive.

use super::{
    Config, INJECTED_ANNOTATION, PROXIED_LABEL, PROXY_VERSION_ANNOTATION, SKIPPED_ANNOTATION,
    sidecar::Added,
};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Escapes one JSON pointer token (`/` and `~`).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn add(path: impl Into<String>, value: Value) -> Value {
    json!({"op": "add", "path": path.into(), "value": value})
}

fn into_patch(ops: Vec<Value>) -> json_patch::Patch {
    // The operations are built above from known-good shapes; this cannot fail.
    serde_json::from_value(Value::Array(ops)).unwrap_or(json_patch::Patch(Vec::new()))
}

/// Adds `entries` to the map at `/metadata/<field>` (created when absent).
fn map_entries(
    ops: &mut Vec<Value>,
    field: &str,
    existing: Option<&BTreeMap<String, String>>,
    entries: &[(&str, &str)],
) {
    match existing {
        None => {
            let m: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            ops.push(add(format!("/metadata/{field}"), Value::Object(m)));
        }
        Some(_) => {
            for (k, v) in entries {
                ops.push(add(format!("/metadata/{field}/{}", token(k)), json!(v)));
            }
        }
    }
}

/// The patch that records why `pod` was not injected.
pub(super) fn skipped(pod: &Pod, code: &str) -> json_patch::Patch {
    let mut ops = Vec::new();
    map_entries(
        &mut ops,
        "annotations",
        pod.metadata.annotations.as_ref(),
        &[(SKIPPED_ANNOTATION, code)],
    );
    into_patch(ops)
}

/// The patch that injects `added` into `pod`: init step first, then the proxy, then the pod's
/// own init containers (which therefore already run meshed).
pub(super) fn inject(pod: &Pod, added: Added, cfg: &Config) -> json_patch::Patch {
    let mut ops = Vec::new();
    map_entries(
        &mut ops,
        "annotations",
        pod.metadata.annotations.as_ref(),
        &[
            (INJECTED_ANNOTATION, "true"),
            (PROXY_VERSION_ANNOTATION, &cfg.proxy_version),
        ],
    );
    let owner = super::owner_label(pod);
    let mut labels = vec![(PROXIED_LABEL, "true")];
    if let Some((k, v)) = &owner {
        labels.push((k.as_str(), v.as_str()));
    }
    map_entries(&mut ops, "labels", pod.metadata.labels.as_ref(), &labels);
    let init = serde_json::to_value(&added.init).unwrap_or(Value::Null);
    let proxy = serde_json::to_value(&added.proxy).unwrap_or(Value::Null);
    let volumes: Vec<Value> = added
        .volumes
        .iter()
        .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
        .collect();
    match pod.spec.as_ref() {
        None => ops.push(add(
            "/spec",
            json!({"initContainers": [init, proxy], "volumes": volumes}),
        )),
        Some(spec) => {
            if spec.init_containers.is_some() {
                ops.push(add("/spec/initContainers/0", init));
                ops.push(add("/spec/initContainers/1", proxy));
            } else {
                ops.push(add("/spec/initContainers", json!([init, proxy])));
            }
            if spec.volumes.is_some() {
                for v in volumes {
                    ops.push(add("/spec/volumes/-", v));
                }
            } else {
                ops.push(add("/spec/volumes", Value::Array(volumes)));
            }
        }
    }
    into_patch(ops)
}
