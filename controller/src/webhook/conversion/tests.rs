use super::*;
use serde_json::json;

fn ts(version: &str, weights: &[Value]) -> Value {
    json!({
        "apiVersion": format!("split.smi-spec.io/{version}"), "kind": "TrafficSplit",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"service": "web", "backends": weights.iter().enumerate()
            .map(|(i, w)| json!({"service": format!("web-v{}", i + 1), "weight": w}))
            .collect::<Vec<_>>()}
    })
}

fn weights_of(v: &Value) -> Vec<Value> {
    v["spec"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].clone())
        .collect()
}

fn up(weights: &[Value]) -> Result<Vec<Value>, ConversionError> {
    convert(ts("v1alpha1", weights), "split.smi-spec.io/v1alpha4").map(|v| {
        assert_eq!(v["apiVersion"], "split.smi-spec.io/v1alpha4");
        weights_of(&v)
    })
}

#[test]
fn v1alpha1_quantities_become_milli_units() {
    assert_eq!(
        up(&[
            json!("10m"),
            json!("1"),
            json!("1500m"),
            json!("0.5"),
            json!("25"),
            json!("1k")
        ])
        .unwrap(),
        [
            json!(10),
            json!(1000),
            json!(1500),
            json!(500),
            json!(25000),
            json!(1_000_000)
        ]
    );
    // Flagger's string weights, and plain JSON numbers.
    assert_eq!(
        up(&[json!("75"), json!("25")]).unwrap(),
        [json!(75000), json!(25000)]
    );
    assert_eq!(
        up(&[json!(1.5), json!(0)]).unwrap(),
        [json!(1500), json!(0)]
    );
    assert_eq!(
        up(&[json!("900m"), json!("100m")]).unwrap(),
        [json!(900), json!(100)]
    );
}

#[test]
fn invalid_quantities_fail_with_the_field() {
    for bad in [
        json!("abc"),
        json!("-1"),
        json!("1.2.3"),
        json!("10M"),
        json!(true),
    ] {
        let e = up(&[json!(1), bad.clone()]).unwrap_err().to_string();
        assert!(e.starts_with("spec.backends[1].weight: "), "{bad}: {e}");
    }
}

#[test]
fn v1alpha4_to_v1alpha1_and_back_keeps_proportions() {
    let down = convert(
        ts("v1alpha4", &[json!(90), json!(10), json!("abc")]),
        "split.smi-spec.io/v1alpha1",
    )
    .unwrap();
    assert_eq!(down["apiVersion"], "split.smi-spec.io/v1alpha1");
    assert_eq!(
        weights_of(&down),
        [json!("90m"), json!("10m"), json!("abc")]
    );
    let mut good = down.clone();
    good["spec"]["backends"].as_array_mut().unwrap().pop();
    let back = convert(good, "split.smi-spec.io/v1alpha4").unwrap();
    assert_eq!(weights_of(&back), [json!(90), json!(10)]);
}

#[test]
fn whole_weights_go_down_as_integers_for_flagger() {
    // Flagger writes "100"/"0" (stored as 100000/0) and reads them back with
    // Quantity.AsInt64(), which refuses "100000m": whole units go down as integers.
    let down = convert(
        ts(
            "v1alpha4",
            &[
                json!(100000),
                json!(0),
                json!(75000),
                json!(1500),
                json!("25000"),
            ],
        ),
        "split.smi-spec.io/v1alpha1",
    )
    .unwrap();
    assert_eq!(
        weights_of(&down),
        [
            json!("100"),
            json!("0"),
            json!("75"),
            json!("1500m"),
            json!("25")
        ]
    );
    let back = convert(down, "split.smi-spec.io/v1alpha4").unwrap();
    assert_eq!(
        weights_of(&back),
        [
            json!(100000),
            json!(0),
            json!(75000),
            json!(1500),
            json!(25000)
        ]
    );
}

#[test]
fn matches_ride_an_annotation_below_v1alpha3() {
    let mut v4 = ts("v1alpha4", &[json!(0), json!(100)]);
    v4["spec"]["matches"] = json!([{"kind": "HTTPRouteGroup", "name": "canary"}]);
    for old in ["v1alpha1", "v1alpha2"] {
        let down = convert(v4.clone(), &format!("split.smi-spec.io/{old}")).unwrap();
        assert!(down["spec"].get("matches").is_none(), "{down}");
        assert_eq!(
            down["metadata"]["annotations"][MATCHES_ANNOTATION],
            r#"[{"kind":"HTTPRouteGroup","name":"canary"}]"#
        );
        let back = convert(down, "split.smi-spec.io/v1alpha4").unwrap();
        assert_eq!(back, v4, "{old} round trip");
    }
    // v1alpha3: apiVersion only.
    let v3 = convert(v4.clone(), "split.smi-spec.io/v1alpha3").unwrap();
    assert_eq!(v3["spec"], v4["spec"]);
    assert_eq!(v3["apiVersion"], "split.smi-spec.io/v1alpha3");
    // A broken annotation is refused on the way up.
    let mut bad = ts("v1alpha2", &[json!(1)]);
    bad["metadata"]["annotations"] = json!({MATCHES_ANNOTATION: "nope"});
    let e = convert(bad, "split.smi-spec.io/v1alpha4").unwrap_err();
    assert!(e.to_string().contains("fix or remove it"), "{e}");
}

#[test]
fn unknown_versions_fail() {
    let e = convert(ts("v1alpha4", &[]), "split.smi-spec.io/v2").unwrap_err();
    assert!(e.to_string().contains("v1alpha1, v1alpha2"), "{e}");
    assert!(convert(ts("v1alpha4", &[]), "other.io/v1alpha4").is_err());
}

#[test]
fn reviews_succeed_or_fail_whole() {
    let body = |objects: Vec<Value>| {
        serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "r-1", "desiredAPIVersion": "split.smi-spec.io/v1alpha4", "objects": objects}
        }))
        .unwrap()
    };
    let ok = serde_json::to_value(
        review(&body(vec![ts("v1alpha1", &[json!("500m"), json!("1")])])).unwrap(),
    )
    .unwrap();
    assert_eq!(ok["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(ok["kind"], "ConversionReview");
    assert_eq!(ok["response"]["uid"], "r-1");
    assert_eq!(ok["response"]["result"]["status"], "Success");
    assert_eq!(
        weights_of(&ok["response"]["convertedObjects"][0]),
        [json!(500), json!(1000)]
    );
    let bad = serde_json::to_value(
        review(&body(vec![
            ts("v1alpha1", &[json!("1")]),
            ts("v1alpha1", &[json!("lots")]),
        ]))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(bad["response"]["uid"], "r-1");
    assert_eq!(bad["response"]["result"]["status"], "Failure");
    let msg = bad["response"]["result"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("cannot convert TrafficSplit shop/web to split.smi-spec.io/v1alpha4: spec.backends[0].weight: \"lots\" is not a quantity"),
        "{msg}"
    );
    assert!(review(b"{}").is_err());
    assert!(review(b"not json").is_err());
}
