//! The CRD conversion webhook of TrafficSplit and TrafficTarget (`POST /convert`,
//! apiextensions.k8s.io/v1 ConversionReview), served by the injector's HTTPS server.
//! TrafficTargets are converted in [`access`]. For TrafficSplit, v1alpha4 is the storage
//! (hub) version; every conversion goes through it:
//!
//! - v1alpha1 → v1alpha4: weights are `resource.Quantity` values and are normalised to
//!   milli-units (`500m` → 500, `1` → 1000, `"75"` → 75000, `1.5` → 1500) so that
//!   proportions are kept; a weight that is not a quantity, or is negative, fails the
//!   conversion (the write is rejected with the reason);
//! - v1alpha4 → v1alpha1: weight `w` → `"{w/1000}"` when it is whole units, else `"{w}m"`
//!   (`100000` → `"100"`, `1500` → `"1500m"`): clients such as Flagger read weights with
//!   `Quantity.AsInt64()`, which refuses `"100000m"`. A weight that is not a number is passed
//!   on unchanged, so reading never fails;
//! - v1alpha1/v1alpha2 have no `spec.matches`: on the way down they are kept as JSON in the
//!   annotation [`MATCHES_ANNOTATION`], and restored from it on the way up;
//! - v1alpha2 ↔ v1alpha3 ↔ v1alpha4: the `apiVersion` only (same fields).

pub mod access;

use crate::core::quantity;
use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse, ConversionReview},
};
use serde_json::{Map, Value};

/// The TrafficSplit API group.
pub const GROUP: &str = "split.smi-spec.io";
/// Versions served, oldest first.
pub const VERSIONS: [&str; 4] = ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"];
/// Keeps `spec.matches` on versions that have no such field (v1alpha1, v1alpha2).
pub const MATCHES_ANNOTATION: &str = "split.smi-spec.io/matches";

/// The body is not a ConversionReview with a request.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode the ConversionReview (expected apiextensions.k8s.io/v1 ConversionReview JSON with a request): {0}"
)]
pub struct BadReview(String);

/// One object cannot be converted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConversionError(String);

pub(crate) fn fail(msg: impl Into<String>) -> ConversionError {
    ConversionError(msg.into())
}

/// Answers a ConversionReview: every object converted, or a `Failure` naming the first
/// object that could not be.
pub fn review(body: &[u8]) -> Result<ConversionReview, BadReview> {
    let review: ConversionReview =
        serde_json::from_slice(body).map_err(|e| BadReview(e.to_string()))?;
    let req = ConversionRequest::try_from(review).map_err(|e| BadReview(e.to_string()))?;
    let desired = req.desired_api_version.clone();
    let objects = req.objects.clone();
    let rsp = ConversionResponse::for_request(req);
    let mut out = Vec::with_capacity(objects.len());
    for obj in objects {
        let name = describe(&obj);
        match convert(obj, &desired) {
            Ok(o) => out.push(o),
            Err(e) => {
                let kind = if desired.starts_with(access::GROUP) {
                    "TrafficTarget"
                } else {
                    "TrafficSplit"
                };
                tracing::info!(object = %name, %desired, error = %e, "{kind} conversion refused");
                let msg = format!("cannot convert {kind} {name} to {desired}: {e}");
                return Ok(rsp
                    .failure(Status::failure(&msg, "Invalid").with_code(422))
                    .into_review());
            }
        }
    }
    Ok(rsp.success(out).into_review())
}

fn describe(obj: &Value) -> String {
    let m = &obj["metadata"];
    let name = m["name"]
        .as_str()
        .or_else(|| m["generateName"].as_str())
        .unwrap_or("");
    match m["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

fn version(api_version: &str) -> Result<&'static str, ConversionError> {
    served_version(api_version, GROUP, &VERSIONS)
}

/// The version of `api_version` if it is `<group>/<one of versions>`.
fn served_version(
    api_version: &str,
    group: &str,
    versions: &[&'static str],
) -> Result<&'static str, ConversionError> {
    api_version
        .strip_prefix(group)
        .and_then(|v| v.strip_prefix('/'))
        .and_then(|v| versions.iter().find(|x| **x == v).copied())
        .ok_or_else(|| {
            fail(format!(
                "apiVersion {api_version:?} is not one of {group}/{}",
                versions.join(", ")
            ))
        })
}

/// Converts one TrafficSplit (JSON) to `desired` (`split.smi-spec.io/<version>`), or one
/// TrafficTarget to `access.smi-spec.io/<version>` (see [`access`]).
pub fn convert(mut obj: Value, desired: &str) -> Result<Value, ConversionError> {
    if desired.starts_with(access::GROUP) {
        return access::convert(obj, desired);
    }
    let to = version(desired)?;
    let from = version(obj["apiVersion"].as_str().unwrap_or_default())?;
    if from != to {
        to_hub(&mut obj, from)?;
        from_hub(&mut obj, to)?;
    }
    obj["apiVersion"] = Value::String(format!("{GROUP}/{to}"));
    Ok(obj)
}

fn backends(obj: &mut Value) -> impl Iterator<Item = (usize, &mut Map<String, Value>)> {
    obj.pointer_mut("/spec/backends")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, b)| b.as_object_mut().map(|b| (i, b)))
}

fn to_hub(obj: &mut Value, from: &str) -> Result<(), ConversionError> {
    if from == "v1alpha1" {
        for (i, b) in backends(obj) {
            let text = match b.get("weight") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                None | Some(Value::Null) => continue,
                Some(other) => {
                    return Err(fail(format!(
                        "spec.backends[{i}].weight: {other} is not a quantity (e.g. 500m or 1)"
                    )));
                }
            };
            let milli = quantity::parse_milli(&text)
                .map_err(|e| fail(format!("spec.backends[{i}].weight: {e}")))?;
            b.insert("weight".into(), Value::from(milli));
        }
    }
    if matches!(from, "v1alpha1" | "v1alpha2") {
        restore_matches(obj)?;
    }
    Ok(())
}

fn from_hub(obj: &mut Value, to: &str) -> Result<(), ConversionError> {
    if to == "v1alpha1" {
        for (_, b) in backends(obj) {
            let milli = match b.get("weight") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s))
                    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) =>
                {
                    s.parse().ok()
                }
                _ => None,
            };
            if let Some(w) = milli {
                let q = if w.is_multiple_of(1000) {
                    (w / 1000).to_string()
                } else {
                    format!("{w}m")
                };
                b.insert("weight".into(), Value::String(q));
            }
        }
    }
    if matches!(to, "v1alpha1" | "v1alpha2") {
        stash_matches(obj)?;
    }
    Ok(())
}

/// Moves `spec.matches` into the annotation.
fn stash_matches(obj: &mut Value) -> Result<(), ConversionError> {
    let Some(matches) = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .and_then(|s| s.remove("matches"))
    else {
        return Ok(());
    };
    if matches.as_array().is_some_and(Vec::is_empty) || matches.is_null() {
        return Ok(());
    }
    let text = serde_json::to_string(&matches).map_err(|e| fail(e.to_string()))?;
    annotations(obj)?.insert(MATCHES_ANNOTATION.into(), Value::String(text));
    Ok(())
}

/// Moves the annotation back into `spec.matches`.
fn restore_matches(obj: &mut Value) -> Result<(), ConversionError> {
    let Some(text) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(MATCHES_ANNOTATION))
    else {
        return Ok(());
    };
    let matches: Value = text
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .filter(Value::is_array)
        .ok_or_else(|| {
            fail(format!(
                "annotation {MATCHES_ANNOTATION} is not a JSON list of {{kind, name}} (it carries spec.matches of v1alpha3+): fix or remove it"
            ))
        })?;
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("matches").or_insert(matches);
    }
    if obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
        && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.remove("annotations");
    }
    Ok(())
}

pub(crate) fn annotations(obj: &mut Value) -> Result<&mut Map<String, Value>, ConversionError> {
    let meta = obj
        .as_object_mut()
        .ok_or_else(|| fail("the object is not a JSON object"))?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta
        .as_object_mut()
        .ok_or_else(|| fail("metadata is not an object"))?;
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if ann.is_null() {
        *ann = Value::Object(Map::new());
    }
    ann.as_object_mut()
        .ok_or_else(|| fail("metadata.annotations is not an object"))
}

#[cfg(test)]
mod tests;
