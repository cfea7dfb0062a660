//! Pods that are not injected, and why.

use super::*;

#[test]
fn skip_reasons() {
    // Not enabled anywhere: nothing recorded.
    let (d, out) = run(&bare_pod(), &[]);
    assert!(
        matches!(
            d,
            Decision::Skip {
                reason: Skip::NotEnabled,
                patch: None
            }
        ),
        "{d:?}"
    );
    assert_eq!(out, bare_pod());

    // The pod's `disabled` wins over the namespace's `enabled`.
    let mut v = web_pod();
    v["metadata"]["annotations"]["tulle.io/inject"] = json!("disabled");
    let (d, out) = run(&v, &[("tulle.io/inject", "enabled")]);
    assert!(
        matches!(
            d,
            Decision::Skip {
                reason: Skip::Disabled { on: "pod" },
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "disabled"
    );
    assert!(out["spec"]["initContainers"].as_array().unwrap().len() == 1);
    // Recording the reason is idempotent too.
    let (_, again) = run(&out, &[("tulle.io/inject", "enabled")]);
    assert_eq!(again, out);

    let (d, _) = run(&bare_pod(), &[("tulle.io/inject", "disabled")]);
    assert!(matches!(
        d,
        Decision::Skip {
            reason: Skip::Disabled { on: "namespace" },
            ..
        }
    ));

    // The pod's `enabled` wins over the namespace's `disabled`.
    let (d, _) = run(&web_pod(), &[("tulle.io/inject", "disabled")]);
    assert!(matches!(d, Decision::Inject(_)));

    let mut v = web_pod();
    v["spec"]["hostNetwork"] = json!(true);
    let (d, out) = run(&v, &[]);
    assert!(
        matches!(
            d,
            Decision::Skip {
                reason: Skip::HostNetwork,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "host-network"
    );
    assert!(out["metadata"]["labels"].get("tulle.io/proxied").is_none());

    // A bare pod (no annotations map at all) gets one.
    let mut v = bare_pod();
    v["spec"]["hostNetwork"] = json!(true);
    let (_, out) = run(&v, &[("tulle.io/inject", "enabled")]);
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "host-network"
    );

    let mut v = web_pod();
    v["spec"]["containers"][0]["name"] = json!("tulle-proxy");
    let (d, out) = run(&v, &[]);
    assert_eq!(
        d_reason(&d),
        Some(Skip::ExistingSidecar("tulle-proxy".into()))
    );
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "existing-sidecar"
    );

    let mut v = web_pod();
    v["spec"]["volumes"][0]["name"] = json!(TOKEN_VOLUME);
    let (d, _) = run(&v, &[]);
    assert_eq!(
        d_reason(&d),
        Some(Skip::ExistingSidecar(TOKEN_VOLUME.into()))
    );

    let mut v = web_pod();
    v["metadata"]["annotations"]["tulle.io/inject"] = json!("yes");
    let (d, out) = run(&v, &[]);
    let Some(Skip::Invalid(e)) = d_reason(&d) else {
        panic!("{d:?}")
    };
    assert_eq!(e.key, "tulle.io/inject");
    assert!(
        e.to_string().contains("expected enabled or disabled"),
        "{e}"
    );
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "invalid-annotation"
    );
}

fn d_reason(d: &Decision) -> Option<Skip> {
    match d {
        Decision::Skip { reason, .. } => Some(reason.clone()),
        Decision::Inject(_) => None,
    }
}

#[test]
fn bad_override_values_skip_with_a_clear_reason() {
    for (key, value) in [
        ("config.tulle.io/skip-inbound-ports", "ssh"),
        ("config.tulle.io/skip-outbound-subnets", "10.0.0.0/40"),
        ("config.tulle.io/proxy-memory-limit", "a lot"),
        ("config.tulle.io/proxy-cpu-request", "-1"),
        ("config.tulle.io/proxy-log-level", "$(SECRET)"),
        ("config.tulle.io/proxy-image", "bad image"),
        ("config.tulle.io/opaque-ports", "99999"),
        // Above the default limit (256Mi): the API server would reject the pod.
        ("config.tulle.io/proxy-memory-request", "1Gi"),
    ] {
        let mut v = web_pod();
        v["metadata"]["annotations"][key] = json!(value);
        let (d, out) = run(&v, &[]);
        let Some(Skip::Invalid(e)) = d_reason(&d) else {
            panic!("{key}={value}: {d:?}")
        };
        assert!(e.to_string().contains("fix or remove it"), "{e}");
        assert_eq!(
            out["metadata"]["annotations"]["tulle.io/inject-skipped"],
            "invalid-annotation"
        );
        assert_eq!(out["spec"]["initContainers"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn pods_that_would_break_are_skipped() {
    // The app already listens on the proxy's admin port.
    let mut v = web_pod();
    v["spec"]["containers"][0]["ports"] = json!([{"containerPort": 4191}]);
    let (d, out) = run(&v, &[]);
    assert_eq!(d_reason(&d), Some(Skip::PortConflict(4191)));
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "port-conflict"
    );

    // Pod Security baseline/restricted would reject the init step: the pod could not be created.
    for level in ["baseline", "restricted"] {
        let mut ns = shop(&[("tulle.io/inject", "enabled")]);
        ns.labels.insert(POD_SECURITY_LABEL.into(), level.into());
        let (d, out) = run_in(&bare_pod(), &ns);
        let Some(Skip::PodSecurity(l)) = d_reason(&d) else {
            panic!("{d:?}")
        };
        assert_eq!(l, level);
        assert!(Skip::PodSecurity(l).to_string().contains("privileged"));
        assert_eq!(
            out["metadata"]["annotations"]["tulle.io/inject-skipped"],
            "pod-security"
        );
    }
    let mut ns = shop(&[("tulle.io/inject", "enabled")]);
    ns.labels
        .insert(POD_SECURITY_LABEL.into(), "privileged".into());
    assert!(matches!(run_in(&bare_pod(), &ns).0, Decision::Inject(_)));
}

/// Issue 15, item 8: the image of the privileged init step is the install's, or one it allows.
#[test]
fn a_proxy_image_the_install_does_not_allow_is_refused() {
    for (image, ok) in [
        ("evil.example/root:latest", false),
        ("localhost/tulle/proxy:0.1.0", true),
        ("registry.example/tulle/proxy:dev", true),
    ] {
        let mut v = web_pod();
        v["metadata"]["annotations"]["config.tulle.io/proxy-image"] = json!(image);
        let (d, out) = run(&v, &[]);
        if ok {
            assert!(matches!(d, Decision::Inject(_)), "{image}: {d:?}");
            assert_eq!(init(&out, 0).image.as_deref(), Some(image));
            continue;
        }
        let Some(reason) = d_reason(&d) else {
            panic!("{image} injected")
        };
        assert_eq!(
            reason,
            Skip::ImageNotAllowed {
                image: image.into(),
                allowed: vec![
                    "localhost/tulle/proxy:0.1.0".into(),
                    "registry.example/tulle/proxy:dev".into()
                ],
            }
        );
        let text = reason.to_string();
        assert!(
            text.contains(image) && text.contains("--allowed-proxy-image"),
            "{text}"
        );
        assert_eq!(
            out["metadata"]["annotations"]["tulle.io/inject-skipped"],
            "image-not-allowed"
        );
        assert_eq!(out["spec"]["initContainers"].as_array().unwrap().len(), 1);
    }
    // On the namespace too.
    let (d, _) = run(
        &web_pod(),
        &[("config.tulle.io/proxy-image", "evil.example/root:latest")],
    );
    assert!(
        matches!(d_reason(&d), Some(Skip::ImageNotAllowed { .. })),
        "{d:?}"
    );
}

/// Issue 15, item 4: on a cluster whose pods get IPv6 addresses, IPv6 traffic would bypass the
/// IPv4-only proxy; injection refuses (with a reason recorded on the pod) instead.
#[test]
fn ipv6_clusters_are_refused_with_a_reason() {
    let ipv6 = Config {
        ipv6: true,
        ..cfg()
    };
    let ns = shop(&[]);
    let d = decide(&pod(&web_pod()), &ns, &ipv6, ANCHORS);
    let Decision::Skip {
        reason,
        patch: Some(patch),
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(reason, Skip::Ipv6);
    assert!(reason.is_recorded(), "an Event and the annotation");
    assert!(reason.is_warning(), "a Warning Event");
    assert!(!Skip::HostNetwork.is_warning());
    let text = reason.to_string();
    for part in ["IPv6", "bypass", "--ip-families", "docs/ipv6.md"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let mut out = web_pod();
    json_patch::patch(&mut out, &patch).unwrap();
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/inject-skipped"],
        "ipv6"
    );
    assert_eq!(out["spec"]["initContainers"].as_array().unwrap().len(), 1);
    // Pods that are not to be meshed anyway are not annotated.
    let d = decide(&pod(&bare_pod()), &ns, &ipv6, ANCHORS);
    assert!(
        matches!(
            d,
            Decision::Skip {
                reason: Skip::NotEnabled,
                patch: None
            }
        ),
        "{d:?}"
    );
    // IPv4-only clusters inject as before.
    assert!(matches!(run(&web_pod(), &[]).0, Decision::Inject(_)));
}
