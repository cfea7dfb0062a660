//! The SMI resources the controller watches, read tolerantly from their JSON
//! ([`DynamicObject`]): TrafficSplit (split.smi-spec.io v1alpha4, the storage version; older
//! versions reach it through the conversion webhook), HTTPRouteGroup and TCPRoute
//! (specs.smi-spec.io v1alpha4). A parser returns a [`ParseError`] naming the field for an
//! object it cannot read; the watch then treats that object as absent and keeps going.
//!
//! Accepted beyond the strict schema:
//! - TrafficSplit weights as integers, floats or numeric strings / Quantities (`25`, `"25"`,
//!   `"750m"`, `0.5`); negative weights count as 0. When some weight of an object is not a
//!   whole number, all of its weights are taken in milli-units, so proportions are kept.
//! - HTTPRouteGroup `headers` as a map or as a list of one-key maps (smi-sdk-go's form).

use crate::core::{
    HttpRule, ObjectMeta, RouteGroupInfo, RouteRef, SplitInfo, TcpRouteInfo,
    quantity::{self, QuantityError},
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

/// TrafficSplit v1alpha4.
pub fn traffic_split_resource() -> ApiResource {
    resource(
        "split.smi-spec.io",
        "v1alpha4",
        "TrafficSplit",
        "trafficsplits",
    )
}

/// HTTPRouteGroup v1alpha4.
pub fn http_route_group_resource() -> ApiResource {
    resource(
        "specs.smi-spec.io",
        "v1alpha4",
        "HTTPRouteGroup",
        "httproutegroups",
    )
}

/// TCPRoute v1alpha4.
pub fn tcp_route_resource() -> ApiResource {
    resource("specs.smi-spec.io", "v1alpha4", "TCPRoute", "tcproutes")
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// A field of an object that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    /// JSON path of the field, e.g. `spec.backends[1].weight`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ParseError {
    ParseError {
        field: field.into(),
        message: message.into(),
    }
}

/// The object's metadata as the index needs it.
pub fn meta(obj: &DynamicObject) -> ObjectMeta {
    ObjectMeta {
        uid: obj.metadata.uid.clone(),
        created: obj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
    }
}

fn spec(obj: &DynamicObject) -> Result<&serde_json::Map<String, Value>, ParseError> {
    match obj.data.get("spec") {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(err("spec", "must be an object")),
        None => Err(err("spec", "is missing")),
    }
}

fn string<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a str, ParseError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => Err(err(field, "is missing (a non-empty string)")),
        Some(other) => Err(err(field, format!("{other} is not a string"))),
    }
}

fn array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], ParseError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(err(field, format!("{other} is not a list"))),
    }
}

/// A weight in milli-units (negative: 0).
fn weight_milli(v: Option<&Value>, field: &str) -> Result<u64, ParseError> {
    match v {
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(u.saturating_mul(1000))
            } else if n.as_i64().is_some() {
                Ok(0)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                // Saturates; NaN cannot come from JSON.
                Ok((f.max(0.0) * 1000.0).ceil() as u64)
            }
        }
        Some(Value::String(s)) => match quantity::parse_milli(s) {
            Ok(m) => Ok(m),
            Err(QuantityError::Negative(_)) => Ok(0),
            Err(e) => Err(err(field, e.to_string())),
        },
        None | Some(Value::Null) => Err(err(field, "is missing (a whole number >= 0)")),
        Some(other) => Err(err(
            field,
            format!("{other} is not a number: use a whole number >= 0, e.g. 25"),
        )),
    }
}

/// A TrafficSplit.
pub fn traffic_split(obj: &DynamicObject) -> Result<SplitInfo, ParseError> {
    let spec = spec(obj)?;
    let apex = string(spec.get("service"), "spec.service")?.to_string();
    let mut backends = Vec::new();
    for (i, b) in array(spec.get("backends"), "spec.backends")?
        .iter()
        .enumerate()
    {
        let field = format!("spec.backends[{i}]");
        let svc = string(b.get("service"), &format!("{field}.service"))?;
        let w = weight_milli(b.get("weight"), &format!("{field}.weight"))?;
        backends.push((svc.to_string(), w));
    }
    let whole = backends.iter().all(|(_, w)| w % 1000 == 0);
    let backends = backends
        .into_iter()
        .map(|(s, w)| {
            let w = if whole { w / 1000 } else { w };
            (s, u32::try_from(w).unwrap_or(u32::MAX))
        })
        .collect();
    let mut matches = Vec::new();
    for (i, m) in array(spec.get("matches"), "spec.matches")?
        .iter()
        .enumerate()
    {
        let field = format!("spec.matches[{i}]");
        let kind = string(m.get("kind"), &format!("{field}.kind"))?;
        let name = string(m.get("name"), &format!("{field}.name"))?.to_string();
        matches.push(match kind {
            "HTTPRouteGroup" => RouteRef::HttpRouteGroup(name),
            "TCPRoute" => RouteRef::TcpRoute(name),
            other => RouteRef::Other(other.to_string(), name),
        });
    }
    Ok(SplitInfo {
        apex,
        backends,
        matches,
        meta: meta(obj),
    })
}

/// `headers` as a map or a list of one-key maps; names lower-cased.
fn headers(v: Option<&Value>, field: &str) -> Result<Vec<(String, String)>, ParseError> {
    let entry = |k: &String, v: &Value, f: &str| match v {
        Value::String(s) => Ok((k.to_ascii_lowercase(), s.clone())),
        other => Err(err(
            format!("{f}.{k}"),
            format!("{other} is not a string (a regex of the header value)"),
        )),
    };
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| entry(k, v, field)).collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let f = format!("{field}[{i}]");
                let Value::Object(m) = item else {
                    return Err(err(f, "must be a one-key map {header-name: value-regex}"));
                };
                for (k, v) in m {
                    out.push(entry(k, v, &f)?);
                }
            }
            Ok(out)
        }
        Some(other) => Err(err(
            field,
            format!("{other} is neither a map nor a list of one-key maps"),
        )),
    }
}

/// An HTTPRouteGroup.
pub fn http_route_group(obj: &DynamicObject) -> Result<RouteGroupInfo, ParseError> {
    let spec = spec(obj)?;
    let mut matches = Vec::new();
    for (i, m) in array(spec.get("matches"), "spec.matches")?
        .iter()
        .enumerate()
    {
        let field = format!("spec.matches[{i}]");
        if !m.is_object() {
            return Err(err(field, "must be an object"));
        }
        let name = match m.get("name") {
            None => String::new(),
            v => string(v, &format!("{field}.name"))?.to_string(),
        };
        let path_regex = match m.get("pathRegex") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(err(
                    format!("{field}.pathRegex"),
                    format!("{other} is not a string"),
                ));
            }
        };
        let methods = array(m.get("methods"), &format!("{field}.methods"))?
            .iter()
            .enumerate()
            .map(|(j, v)| {
                v.as_str().map(str::to_ascii_uppercase).ok_or_else(|| {
                    err(
                        format!("{field}.methods[{j}]"),
                        format!("{v} is not a string"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        matches.push(HttpRule {
            name,
            path_regex,
            methods,
            headers: headers(m.get("headers"), &format!("{field}.headers"))?,
        });
    }
    Ok(RouteGroupInfo {
        matches,
        meta: meta(obj),
    })
}

/// A TCPRoute.
pub fn tcp_route(obj: &DynamicObject) -> Result<TcpRouteInfo, ParseError> {
    let spec = spec(obj)?;
    let ports = match spec.get("matches") {
        None | Some(Value::Null) => vec![],
        Some(Value::Object(m)) => array(m.get("ports"), "spec.matches.ports")?
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        err(
                            format!("spec.matches.ports[{i}]"),
                            format!("{p} is not a port number (1-65535)"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(err("spec.matches", format!("{other} is not an object"))),
    };
    Ok(TcpRouteInfo {
        ports,
        meta: meta(obj),
    })
}

#[cfg(test)]
mod tests;
