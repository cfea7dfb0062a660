//! Reading the SMI Traffic Metrics API as a user does: `kubectl get --raw` through the API
//! server, and the metric values of its `TrafficMetrics` items.

use serde_json::Value;

use crate::kubectl;

/// `kubectl get --raw PATH` as JSON (panics with the path and the answer otherwise).
pub fn raw(path: &str) -> Value {
    let out = kubectl::run(&["get", "--raw", path]).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
}

/// A metric of a `TrafficMetrics` item (`None` when it has no value): quantities such as
/// `12` or `12500m` as numbers.
pub fn metric(item: &Value, name: &str) -> Option<f64> {
    let m = item["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?;
    let v = m["value"].as_str()?;
    Some(match v.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => v.parse().ok()?,
    })
}

/// `success_count` and `failure_count` of an item, rounded (-1 when absent).
pub fn counts(item: &Value) -> (i64, i64) {
    let get = |n| metric(item, n).map_or(-1, |v| v.round() as i64);
    (get("success_count"), get("failure_count"))
}
