use super::*;
use serde_json::json;

fn obj(v: Value) -> DynamicObject {
    let mut o: Value = json!({
        "apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
        "metadata": {"name": "x", "namespace": "shop", "uid": "u-1",
                     "creationTimestamp": "2024-01-01T00:00:10Z"}
    });
    o.as_object_mut()
        .unwrap()
        .extend(v.as_object().unwrap().clone());
    serde_json::from_value(o).unwrap()
}

fn split(spec: Value) -> Result<SplitInfo, ParseError> {
    traffic_split(&obj(json!({"spec": spec})))
}

fn weights(spec: Value) -> Vec<u32> {
    split(spec)
        .unwrap()
        .backends
        .into_iter()
        .map(|(_, w)| w)
        .collect()
}

#[test]
fn split_with_metadata_and_matches() {
    let s = split(json!({"service": "web", "backends": [
        {"service": "web-v1", "weight": 90}, {"service": "web-v2", "weight": 10}],
        "matches": [{"kind": "HTTPRouteGroup", "name": "canary"}, {"kind": "TCPRoute", "name": "all"},
                    {"kind": "UDPRoute", "name": "u"}]}))
    .unwrap();
    assert_eq!(s.apex, "web");
    assert_eq!(
        s.backends,
        vec![("web-v1".into(), 90), ("web-v2".into(), 10)]
    );
    assert_eq!(
        s.matches,
        vec![
            RouteRef::HttpRouteGroup("canary".into()),
            RouteRef::TcpRoute("all".into()),
            RouteRef::Other("UDPRoute".into(), "u".into())
        ]
    );
    assert_eq!(s.meta.uid.as_deref(), Some("u-1"));
    assert_eq!(s.meta.created, Some(1_704_067_210));
}

#[test]
fn weights_as_ints_floats_strings_and_quantities() {
    let b = |w1: Value, w2: Value| json!({"service": "web", "backends": [{"service": "a", "weight": w1}, {"service": "b", "weight": w2}]});
    assert_eq!(weights(b(json!(75), json!(25))), [75, 25]);
    // v1alpha4 strings are plain numbers: "25" is 25.
    assert_eq!(weights(b(json!("75"), json!("25"))), [75, 25]);
    assert_eq!(weights(b(json!(75), json!("25"))), [75, 25]);
    // A fraction somewhere: all in milli-units, proportions kept.
    assert_eq!(weights(b(json!("750m"), json!("250m"))), [750, 250]);
    assert_eq!(weights(b(json!(0.5), json!(1))), [500, 1000]);
    assert_eq!(weights(b(json!("500m"), json!(1))), [500, 1000]);
    assert_eq!(weights(b(json!(2.0), json!(1))), [2, 1]);
    // Negative: 0.
    assert_eq!(weights(b(json!(-5), json!(5))), [0, 5]);
    assert_eq!(weights(b(json!("-5"), json!(5))), [0, 5]);
    // Huge: saturates (the milli-units of u64::MAX are not whole, so both are milli).
    assert_eq!(weights(b(json!(u64::MAX), json!(1))), [u32::MAX, 1000]);
}

#[test]
fn unreadable_splits_name_the_field() {
    let e = split(json!({"service": "web", "backends": [{"service": "a", "weight": "abc"}]}))
        .unwrap_err();
    assert_eq!(e.field, "spec.backends[0].weight");
    assert!(e.message.contains("not a quantity"), "{e}");
    let e = split(json!({"service": "web", "backends": [{"service": "a", "weight": true}]}))
        .unwrap_err();
    assert!(e.to_string().contains("whole number"), "{e}");
    let e = split(json!({"service": "web", "backends": [{"service": "a"}]})).unwrap_err();
    assert_eq!(e.field, "spec.backends[0].weight");
    let e = split(json!({"backends": []})).unwrap_err();
    assert_eq!(e.field, "spec.service");
    let e = split(json!({"service": 3})).unwrap_err();
    assert!(e.to_string().contains("not a string"));
    let e = split(json!({"service": "web", "backends": {"a": 1}})).unwrap_err();
    assert_eq!(e.field, "spec.backends");
    let e = traffic_split(&obj(json!({}))).unwrap_err();
    assert_eq!(e.to_string(), "spec: is missing");
}

#[test]
fn route_group_headers_as_map_or_list() {
    let g = |headers: Value| {
        http_route_group(&obj(json!({"spec": {"matches": [
            {"name": "m", "pathRegex": "/api", "methods": ["get", "*"], "headers": headers}]}})))
    };
    let want = vec![("user-agent".to_string(), ".*Firefox.*".to_string())];
    let map = g(json!({"User-Agent": ".*Firefox.*"})).unwrap();
    assert_eq!(map.matches[0].headers, want);
    assert_eq!(map.matches[0].methods, ["GET", "*"]);
    assert_eq!(map.matches[0].path_regex.as_deref(), Some("/api"));
    let list = g(json!([{"user-agent": ".*Firefox.*"}])).unwrap();
    assert_eq!(list.matches[0].headers, want);
    let two = g(json!([{"a": "1"}, {"B": "2"}])).unwrap();
    assert_eq!(two.matches[0].headers.len(), 2);
    assert_eq!(two.matches[0].headers[1].0, "b");
    assert!(g(json!("x")).is_err());
    assert!(g(json!([1])).is_err());
    let e = g(json!({"a": 1})).unwrap_err();
    assert_eq!(e.field, "spec.matches[0].headers.a");
    // Only headers: any path, any method.
    let only = http_route_group(&obj(
        json!({"spec": {"matches": [{"name": "h", "headers": {"x-canary": "true"}}]}}),
    ))
    .unwrap();
    assert_eq!(only.matches[0].path_regex, None);
    assert!(only.matches[0].methods.is_empty());
}

#[test]
fn tcp_route_ports() {
    let r = |m: Value| tcp_route(&obj(json!({"spec": {"matches": m}})));
    assert_eq!(r(json!({"ports": [80, 8080]})).unwrap().ports, [80, 8080]);
    assert!(r(json!({"ports": []})).unwrap().ports.is_empty());
    assert!(r(json!({"ports": [0]})).is_err());
    assert!(r(json!({"ports": [70000]})).is_err());
    assert!(r(json!({"ports": ["80"]})).is_err());
    assert!(r(json!([80])).is_err());
}
