//! Property-based fuzzing (issue 15) of the CRD conversion webhook: arbitrary JSON-ish
//! TrafficSplits and TrafficTargets (weights as numbers, strings, quantities, missing or
//! odd fields) convert or fail with an error, never a panic; whole ConversionReviews too;
//! a valid v1alpha4 TrafficSplit survives v1alpha4 → v1alpha1 → v1alpha4 unchanged, and a
//! v1alpha1 one keeps its weights' proportions. Cases: `TULLE_FUZZ_CASES` (default 256);
//! see docs/fuzzing.md.

use proptest::prelude::*;
use serde_json::{Value, json};
use tulle_controller::core::quantity::{MAX_MILLI, parse_milli};
use tulle_controller::webhook::conversion::{MATCHES_ANNOTATION, convert, review};

fn config() -> ProptestConfig {
    let cases = std::env::var("TULLE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Quantity-like text, with exponents near the ends of i32.
fn quantity() -> impl Strategy<Value = String> {
    let exponent = prop_oneof![
        any::<i32>(),
        -30i32..30,
        (i32::MAX - 5)..=i32::MAX,
        i32::MIN..(i32::MIN + 5),
    ];
    prop_oneof![
        "[+-]?[0-9]{0,12}(\\.[0-9]{0,6})?(|m|k|M|G|T|P|E|n|u|Ki|Mi|Gi|Ti|Pi|Ei|x| )",
        (
            "[+-]?[0-9]{0,6}(\\.[0-9]{0,6})?",
            prop_oneof![Just("e"), Just("E")],
            exponent
        )
            .prop_map(|(n, e, x)| format!("{n}{e}{x}")),
        any::<String>(),
    ]
}

fn weight() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        (0..=MAX_MILLI).prop_map(Value::from),
        quantity().prop_map(Value::from),
        Just(Value::Null),
        Just(json!(true)),
        Just(json!({"a": 1})),
        Just(json!([1])),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z:/.0-9]{0,12}".prop_map(Value::from),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn api_version() -> impl Strategy<Value = String> {
    prop_oneof![
        "split\\.smi-spec\\.io/v1alpha[0-5]",
        "access\\.smi-spec\\.io/v1alpha[0-4]",
        "[a-z./0-9]{0,20}",
    ]
}

/// `Some(v)` maybe, and sometimes the key holds anything.
fn maybe(v: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => v.prop_map(Some),
        1 => Just(None),
        1 => any_json().prop_map(Some),
    ]
}

fn object(pairs: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

/// A TrafficSplit or TrafficTarget-shaped object with arbitrary holes and values.
fn crd_object() -> impl Strategy<Value = Value> {
    let backend = (maybe("[a-z]{1,6}".prop_map(Value::from)), maybe(weight()))
        .prop_map(|(s, w)| object(vec![("service", s), ("weight", w)]));
    let annotations = maybe(
        prop::collection::btree_map(
            prop_oneof![Just(MATCHES_ANNOTATION.to_string()), "[a-z./]{1,10}"],
            prop_oneof![
                Just(Value::from(r#"[{"kind":"HTTPRouteGroup","name":"g"}]"#)),
                leaf()
            ],
            0..3,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect())),
    );
    let metadata = maybe(annotations.prop_map(|a| object(vec![("annotations", a)])));
    let spec = maybe(
        (
            maybe(prop::collection::vec(backend, 0..4).prop_map(Value::from)),
            maybe(any_json()),
            maybe(any_json()),
        )
            .prop_map(|(b, m, d)| {
                object(vec![
                    ("backends", b),
                    ("matches", m),
                    ("destination", d),
                    ("service", Some(json!("web"))),
                ])
            }),
    );
    prop_oneof![
        9 => (maybe(api_version().prop_map(Value::from)), metadata, spec).prop_map(|(a, m, s)| {
            object(vec![("apiVersion", a), ("metadata", m), ("spec", s)])
        }),
        1 => any_json(),
    ]
}

fn v1alpha4(weights: &[u64], matches: bool, other_annotation: bool) -> Value {
    let backends: Vec<Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"service": format!("b{i}"), "weight": w}))
        .collect();
    let mut o = json!({
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"service": "web", "backends": backends},
    });
    if matches {
        o["spec"]["matches"] = json!([{"kind": "HTTPRouteGroup", "name": "g"}]);
    }
    if other_annotation {
        o["metadata"]["annotations"] = json!({"a": "b"});
    }
    o
}

fn weights_of(o: &Value) -> Vec<u64> {
    o["spec"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].as_u64().unwrap())
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_objects_convert_or_fail(obj in crd_object(), desired in api_version()) {
        if let Ok(out) = convert(obj, &desired) {
            prop_assert_eq!(out["apiVersion"].as_str(), Some(desired.as_str()));
        }
    }

    #[test]
    fn arbitrary_reviews_answer_or_fail(
        objects in prop::collection::vec(crd_object(), 0..4),
        desired in api_version(),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let body = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": "u", "desiredAPIVersion": desired, "objects": objects},
        });
        let _ = review(&serde_json::to_vec(&body).unwrap());
        let _ = review(&junk);
    }

    #[test]
    fn quantities_parse_or_fail(q in quantity()) {
        if let Ok(milli) = parse_milli(&q) {
            prop_assert!(milli <= MAX_MILLI, "{q:?} → {milli}");
        }
    }

    #[test]
    fn v1alpha4_round_trips_through_v1alpha1(
        weights in prop::collection::vec(
            prop_oneof![0..=MAX_MILLI, (0..=MAX_MILLI / 1000).prop_map(|w| w * 1000)], 0..5),
        matches in any::<bool>(),
        other_annotation in any::<bool>(),
    ) {
        let o = v1alpha4(&weights, matches, other_annotation);
        let down = convert(o.clone(), "split.smi-spec.io/v1alpha1").unwrap();
        prop_assert!(down["spec"].get("matches").is_none());
        for b in down["spec"]["backends"].as_array().unwrap() {
            let w = b["weight"].as_str().unwrap();
            // Whole units when they are: clients read weights with AsInt64.
            prop_assert!(!w.ends_with("000m"), "{w}");
        }
        let up = convert(down, "split.smi-spec.io/v1alpha4").unwrap();
        prop_assert_eq!(&up, &o);
        prop_assert_eq!(weights_of(&up), weights);
    }

    #[test]
    fn v1alpha1_weights_keep_their_proportions(
        weights in prop::collection::vec((0u64..100_000, 0usize..3), 1..5),
    ) {
        // The same proportions written three ways: units, milli-units, decimals.
        let text = |(w, form): (u64, usize)| match form {
            0 => json!(w),
            1 => json!(format!("{}m", w * 1000)),
            _ => json!(format!("{}.{:03}", w / 1000, w % 1000)),
        };
        let scale = |(w, form): (u64, usize)| if form == 2 { w } else { w * 1000 };
        let backends: Vec<Value> = weights
            .iter()
            .map(|&w| json!({"service": "b", "weight": text(w)}))
            .collect();
        let o = json!({
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "metadata": {"name": "s"},
            "spec": {"service": "web", "backends": backends},
        });
        let up = convert(o, "split.smi-spec.io/v1alpha4").unwrap();
        let want: Vec<u64> = weights.iter().map(|&w| scale(w)).collect();
        prop_assert_eq!(weights_of(&up), want.clone());
        let again = convert(
            convert(up, "split.smi-spec.io/v1alpha1").unwrap(),
            "split.smi-spec.io/v1alpha4",
        )
        .unwrap();
        prop_assert_eq!(weights_of(&again), want);
    }
}
