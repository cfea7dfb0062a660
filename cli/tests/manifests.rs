//! Properties of `tulle install` / `tulle uninstall` output that hold for any PKI.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

fn generated() -> Vec<Value> {
    docs(&install(&[]).unwrap())
}

#[test]
fn every_document_parses_and_is_named() {
    let objs = generated();
    assert!(objs.len() >= 20, "only {} documents", objs.len());
    for o in &objs {
        for field in ["apiVersion", "kind"] {
            assert!(
                o[field].as_str().is_some_and(|s| !s.is_empty()),
                "no {field}: {o}"
            );
        }
        assert!(
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "no metadata.name: {o}"
        );
        let labels = &o["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/part-of"], "tulle",
            "{}",
            o["metadata"]
        );
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION")
        );
        assert!(labels["app.kubernetes.io/name"].is_string());
    }
}

#[test]
fn json_output_is_a_list_of_the_same_objects() {
    let yaml = generated();
    let json: Value = serde_json::from_str(&install(&["-o", "json"]).unwrap()).unwrap();
    assert_eq!(json["kind"], "List");
    let keys = |xs: &[Value]| xs.iter().map(key).collect::<Vec<_>>();
    assert_eq!(keys(json["items"].as_array().unwrap()), keys(&yaml));
}

#[test]
fn apply_order_works_in_one_pass() {
    let objs = generated();
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    let ns_pos = kinds.iter().position(|k| *k == "Namespace").unwrap();
    assert!(
        kinds[..ns_pos]
            .iter()
            .all(|k| *k == "CustomResourceDefinition")
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "CustomResourceDefinition")
            .count(),
        5
    );
    for (i, o) in objs.iter().enumerate() {
        if o["metadata"]["namespace"].is_string() {
            assert!(i > ns_pos, "{:?} comes before its namespace", key(o));
            // The one exception: the aggregated API server's auth-reader binding.
            let want = if o["metadata"]["name"] == "tulle-controller-auth-reader" {
                "kube-system"
            } else {
                "tulle-system"
            };
            assert_eq!(o["metadata"]["namespace"], want, "{:?}", key(o));
        }
    }
    assert_eq!(kinds.last(), Some(&"MutatingWebhookConfiguration"));
    // The metrics APIService points at the controller: after its Deployment.
    let pos = |kind: &str, name: &str| {
        objs.iter()
            .position(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    assert!(
        pos("APIService", "v1alpha1.metrics.smi-spec.io") > pos("Deployment", "tulle-controller")
    );
}

#[test]
fn namespace_is_labelled_for_the_webhook() {
    let ns = generated()
        .into_iter()
        .find(|o| o["kind"] == "Namespace")
        .unwrap();
    assert_eq!(ns["metadata"]["name"], "tulle-system");
    assert_eq!(
        ns["metadata"]["labels"]["tulle.io/control-plane-ns"],
        "tulle-system"
    );
}

/// Kubernetes' structural-schema rule: every node has a type, except nodes marked
/// x-kubernetes-preserve-unknown-fields or x-kubernetes-int-or-string.
fn assert_structural(node: &Value, path: &str) {
    let exempt = node["x-kubernetes-preserve-unknown-fields"] == true
        || node["x-kubernetes-int-or-string"] == true;
    assert!(
        exempt || node["type"].is_string(),
        "{path}: no type in {node}"
    );
    if let Some(props) = node["properties"].as_object() {
        assert_eq!(node["type"], "object", "{path}: properties on a non-object");
        for (k, v) in props {
            assert_structural(v, &format!("{path}.{k}"));
        }
        if let Some(req) = node["required"].as_array() {
            for r in req {
                assert!(
                    props.contains_key(r.as_str().unwrap()),
                    "{path}: required {r} not a property"
                );
            }
        }
    }
    if node["type"] == "array" {
        assert_structural(&node["items"], &format!("{path}[]"));
    }
    for forbidden in ["oneOf", "anyOf", "allOf", "$ref", "additionalProperties"] {
        assert!(
            node.get(forbidden).is_none(),
            "{path}: {forbidden} is not used in our schemas"
        );
    }
}

#[test]
fn crd_schemas_are_structural_and_versions_consistent() {
    for crd in generated()
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let versions = crd["spec"]["versions"].as_array().unwrap();
        assert_eq!(
            versions.iter().filter(|v| v["storage"] == true).count(),
            1,
            "{name}: exactly one storage version"
        );
        let first = &versions[0]["schema"]["openAPIV3Schema"];
        let webhook = crd["spec"]["conversion"]["strategy"] == "Webhook";
        if webhook {
            let svc = &crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"];
            assert_eq!(svc["name"], "tulle-controller");
            assert_eq!(svc["namespace"], "tulle-system");
            assert_eq!(svc["path"], "/convert");
            assert_eq!(svc["port"], 443);
        }
        for v in versions {
            assert_eq!(v["served"], true);
            let schema = &v["schema"]["openAPIV3Schema"];
            // strategy None is only correct when every served version has the same schema
            assert!(
                webhook || schema == first,
                "{name}: versions differ but there is no conversion"
            );
            assert_structural(schema, &format!("{name}/{}", v["name"]));
            assert_eq!(schema["properties"]["spec"]["type"], "object");
        }
    }
}

#[test]
fn smi_versions_served() {
    let objs = generated();
    let served = |crd: &str| -> Vec<String> {
        let o = objs.iter().find(|o| o["metadata"]["name"] == crd).unwrap();
        o["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        served("trafficsplits.split.smi-spec.io"),
        ["v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"]
    );
    assert_eq!(
        served("traffictargets.access.smi-spec.io"),
        ["v1alpha3", "v1alpha2"]
    );
    assert_eq!(
        served("httproutegroups.specs.smi-spec.io"),
        ["v1alpha4", "v1alpha3"]
    );
    assert_eq!(served("tcproutes.specs.smi-spec.io"), ["v1alpha4"]);
    assert_eq!(served("udproutes.specs.smi-spec.io"), ["v1alpha4"]);
}

/// v1alpha1 weights are Quantities; v1alpha1/v1alpha2 have no `matches` (the conversion
/// webhook keeps them in an annotation); v1alpha3 and v1alpha4 are identical.
#[test]
fn traffic_split_versions_differ_where_the_api_does() {
    let objs = generated();
    let ts = objs
        .iter()
        .find(|o| o["metadata"]["name"] == "trafficsplits.split.smi-spec.io")
        .unwrap();
    let spec = |v: &str| {
        ts["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == v)
            .unwrap()["schema"]["openAPIV3Schema"]["properties"]["spec"]
            .clone()
    };
    assert_eq!(spec("v1alpha3"), spec("v1alpha4"));
    for v in ["v1alpha1", "v1alpha2"] {
        assert!(spec(v)["properties"].get("matches").is_none(), "{v}");
    }
    let weight =
        |v: &str| spec(v)["properties"]["backends"]["items"]["properties"]["weight"].clone();
    for v in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        assert_eq!(weight(v)["x-kubernetes-int-or-string"], true, "{v}");
    }
    // v1alpha1 weights are Quantities (milli-units once stored); no CEL rule on any weight:
    // on an int-or-string field the API server estimates it beyond the CRD's cost budget.
    assert_ne!(
        weight("v1alpha1")["description"],
        weight("v1alpha4")["description"]
    );
    for v in ["v1alpha1", "v1alpha4"] {
        assert!(weight(v).get("x-kubernetes-validations").is_none(), "{v}");
    }
}

#[test]
fn control_plane_pods_are_locked_down() {
    let objs = generated();
    let deployments: Vec<_> = objs.iter().filter(|o| o["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 3, "identity, controller, dashboard");
    for d in deployments {
        // The dashboard has no admin port: its probes are on its HTTP port.
        let dashboard = d["metadata"]["name"] == "tulle-dashboard";
        let (probe_port, live_path) = if dashboard {
            (8084, "/ready")
        } else {
            (9990, "/live")
        };
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert!(labels["tulle.io/control-plane-component"].is_string());
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
            assert!(c["resources"]["requests"]["memory"].is_string());
            assert!(c["resources"]["limits"]["memory"].is_string());
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
            assert_eq!(c["readinessProbe"]["httpGet"]["port"], probe_port);
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], live_path);
            assert_eq!(c["imagePullPolicy"], "IfNotPresent");
            let image = c["image"].as_str().unwrap();
            assert!(
                image.starts_with("localhost/tulle/")
                    && image.ends_with(concat!(":", env!("CARGO_PKG_VERSION"))),
                "{image}"
            );
        }
    }
}

/// The dashboard reads, never writes, and never Secrets; `--dashboard=false` leaves it out.
#[test]
fn the_dashboard_is_read_only_and_optional() {
    let objs = generated();
    let mine: Vec<_> = objs
        .iter()
        .filter(|o| o["metadata"]["name"] == "tulle-dashboard")
        .collect();
    let kinds: Vec<&str> = mine.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment"
        ]
    );
    for role in mine
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for r in role["rules"].as_array().unwrap() {
            let resources = r["resources"].as_array().unwrap();
            assert!(!resources.iter().any(|x| x == "secrets" || x == "*"), "{r}");
            for v in r["verbs"].as_array().unwrap() {
                assert!(
                    ["get", "list", "watch"].contains(&v.as_str().unwrap()),
                    "{r}"
                );
            }
            if resources.iter().any(|x| x == "configmaps") {
                assert_eq!(
                    r["resourceNames"],
                    serde_json::json!(["tulle-trust-anchors"]),
                    "{r}"
                );
            }
        }
    }
    let svc = mine.iter().find(|o| o["kind"] == "Service").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 8084);
    let without = docs(&install(&["--dashboard=false"]).unwrap());
    assert!(
        without
            .iter()
            .all(|o| o["metadata"]["name"] != "tulle-dashboard")
    );
    assert_eq!(without.len() + mine.len(), objs.len());
}

#[test]
fn flags_reach_the_manifests() {
    let objs = docs(
        &install(&[
            "--registry",
            "r.example/x",
            "--tag",
            "t1",
            "--webhook-failure-policy",
            "Fail",
            "--controller-replicas",
            "3",
            "--proxy-log-level",
            "trace",
            "--trust-domain",
            "example.org",
            "--default-inbound-policy",
            "deny",
        ])
        .unwrap(),
    );
    let ctl = objs
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-controller")
        .unwrap();
    assert_eq!(ctl["spec"]["replicas"], 3);
    assert_eq!(ctl["metadata"]["labels"]["app.kubernetes.io/version"], "t1");
    let c = &ctl["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "r.example/x/controller:t1");
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(env("TULLE_CONTROLLER_PROXY_IMAGE"), "r.example/x/proxy:t1");
    assert_eq!(env("TULLE_CONTROLLER_PROXY_VERSION"), "t1");
    assert_eq!(env("TULLE_CONTROLLER_PROXY_LOG_LEVEL"), "trace");
    // Issue 11: the mesh default inbound policy, and the policy API's address.
    assert_eq!(env("TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY"), "deny");
    assert_eq!(env("TULLE_CONTROLLER_POLICY_ADDR"), "0.0.0.0:8090");
    assert_eq!(
        env("TULLE_CONTROLLER_IDENTITY_SERVER_NAME"),
        "tulle-identity.tulle-system.serviceaccount.identity.tulle.example.org"
    );
    let hook = objs
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(hook["webhooks"][0]["failurePolicy"], "Fail");
    // The injector writes InjectionSkipped Events, except on dry runs (controller/tests/
    // webhook.rs proves that half): `None` would be a false promise to `kubectl --dry-run`.
    assert_eq!(hook["webhooks"][0]["sideEffects"], "NoneOnDryRun");
    assert!(
        hook["webhooks"][0]["clientConfig"]
            .get("caBundle")
            .is_none()
    );
}

#[test]
fn bad_values_are_input_errors() {
    for args in [
        ["--tag", "a b"],
        ["--trust-domain", "bad..domain"],
        ["--registry", " "],
    ] {
        let e = install(&args).unwrap_err();
        assert_eq!(e.exit_code(), tulle_cli::exit::CONFIG, "{e}");
    }
}

#[test]
fn uninstall_covers_everything_install_creates() {
    let installed: BTreeSet<_> = generated().iter().map(key).collect();
    let removed_docs =
        docs(&tulle_cli::manifest::uninstall(tulle_cli::args::Output::Yaml).unwrap());
    let removed: BTreeSet<_> = removed_docs.iter().map(key).collect();
    assert_eq!(installed, removed);
    assert!(removed.contains(&(
        "RoleBinding".to_string(),
        "kube-system".to_string(),
        "tulle-controller-auth-reader".to_string()
    )));
    // bare references: nothing secret in the uninstall output
    for d in &removed_docs {
        assert!(d.get("data").is_none() && d.get("spec").is_none(), "{d}");
    }
    let cluster_scoped: Vec<_> = removed
        .iter()
        .filter(|k| k.1.is_empty())
        .map(|k| k.0.as_str())
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "APIService",
    ] {
        assert!(
            cluster_scoped.contains(&kind),
            "{kind} missing from uninstall"
        );
    }
}

/// Invalid TrafficTargets (no destination, no rules, no sources) are rejected by the CRD
/// schema of every served version (issue 11), and v1alpha2 keeps `destination.port`.
#[test]
fn traffic_target_schema_rejects_incomplete_objects() {
    let objs = generated();
    let tt = objs
        .iter()
        .find(|o| o["metadata"]["name"] == "traffictargets.access.smi-spec.io")
        .unwrap();
    assert_eq!(tt["spec"]["conversion"]["strategy"], "Webhook");
    for v in tt["spec"]["versions"].as_array().unwrap() {
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["required"],
            serde_json::json!(["destination", "rules", "sources"]),
            "{}",
            v["name"]
        );
        assert_eq!(spec["properties"]["rules"]["minItems"], 1);
        assert_eq!(spec["properties"]["sources"]["minItems"], 1);
        let port = &spec["properties"]["destination"]["properties"]["port"];
        if v["name"] == "v1alpha2" {
            assert_eq!(port["type"], "integer");
        } else {
            assert!(port.is_null(), "v1alpha3 has no destination.port");
        }
    }
}

/// Issue 15, item 8: the controller's ClusterRole grants what the controller does and nothing
/// more. Each line names the code that needs it; a verb nothing uses fails this test.
#[test]
fn controller_cluster_role_grants_only_what_the_controller_uses() {
    let objs = docs(&install(&[]).unwrap());
    let role = objs
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "tulle-controller")
        .unwrap();
    let mut granted: Vec<String> = vec![];
    for r in role["rules"].as_array().unwrap() {
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    granted.push(format!(
                        "{}/{} {}",
                        g.as_str().unwrap(),
                        res.as_str().unwrap(),
                        v.as_str().unwrap()
                    ));
                }
            }
        }
    }
    granted.sort();
    let mut used = vec![
        // controller/src/k8s: spawn_watches (list + watch each).
        "/services list",
        "/services watch",
        "/pods list",
        "/pods watch",
        "/namespaces list",
        "/namespaces watch",
        "discovery.k8s.io/endpointslices list",
        "discovery.k8s.io/endpointslices watch",
        "split.smi-spec.io/trafficsplits list",
        "split.smi-spec.io/trafficsplits watch",
        "access.smi-spec.io/traffictargets list",
        "access.smi-spec.io/traffictargets watch",
        "specs.smi-spec.io/httproutegroups list",
        "specs.smi-spec.io/httproutegroups watch",
        "specs.smi-spec.io/tcproutes list",
        "specs.smi-spec.io/tcproutes watch",
        "specs.smi-spec.io/udproutes list",
        "specs.smi-spec.io/udproutes watch",
        // controller/src/k8s/trust_anchors.rs: the anchors' ConfigMap (by name) and its
        // copies into every namespace.
        "/configmaps get",
        "/configmaps list",
        "/configmaps watch",
        "/configmaps patch",
        "/configmaps create",
        // controller/src/webhook/cluster.rs: the admitted pod's namespace.
        "/namespaces get",
        // controller/src/webhook/ca_bundle.rs: get, patch, and a watch by name.
        "admissionregistration.k8s.io/mutatingwebhookconfigurations get",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations patch",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations list",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations watch",
        // controller/src/webhook/crd_bundle.rs: the conversion webhook's caBundle.
        "apiextensions.k8s.io/customresourcedefinitions get",
        "apiextensions.k8s.io/customresourcedefinitions patch",
        // controller/src/k8s/metrics_api.rs: the workloads the metrics API lists, its
        // callers' SubjectAccessReviews, and its own APIService's caBundle.
        "apps/deployments list",
        "apps/daemonsets list",
        "apps/statefulsets list",
        "batch/jobs list",
        "authorization.k8s.io/subjectaccessreviews create",
        "apiregistration.k8s.io/apiservices get",
        "apiregistration.k8s.io/apiservices patch",
        // kube's event Recorder (create, then patch a series).
        "/events create",
        "/events patch",
        "events.k8s.io/events create",
        "events.k8s.io/events patch",
    ];
    used.sort();
    assert_eq!(granted, used);
}

/// `--ha` (issue 15, high availability): 2 replicas of identity and at least 2 of the
/// controller, spread over nodes by a *preferred* anti-affinity (a single node still schedules
/// them), a PodDisruptionBudget each (minAvailable 1), and the webhook's failurePolicy Fail
/// unless given; none of it without `--ha`.
#[test]
fn ha_runs_two_replicas_spread_with_budgets_and_fails_closed() {
    let find = |objs: &[Value], kind: &str, name: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
    };
    let policy = |objs: &[Value]| {
        find(objs, "MutatingWebhookConfiguration", "tulle-proxy-injector").unwrap()["webhooks"]
            [0]["failurePolicy"]
            .clone()
    };
    let ha = docs(&install(&["--ha"]).unwrap());
    for (name, component) in [
        ("tulle-identity", "identity"),
        ("tulle-controller", "controller"),
    ] {
        let d = find(&ha, "Deployment", name).unwrap();
        assert_eq!(d["spec"]["replicas"], 2, "{name}");
        let anti = &d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
        assert!(
            anti.get("requiredDuringSchedulingIgnoredDuringExecution")
                .is_none(),
            "{name}: required anti-affinity would leave a replica pending on one node"
        );
        let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(
            term["podAffinityTerm"]["topologyKey"],
            "kubernetes.io/hostname"
        );
        let selects = &term["podAffinityTerm"]["labelSelector"]["matchLabels"];
        assert_eq!(selects, &d["spec"]["selector"]["matchLabels"], "{name}");
        assert_eq!(selects["tulle.io/control-plane-component"], component);

        let pdb = find(&ha, "PodDisruptionBudget", name).unwrap_or_else(|| panic!("{name} PDB"));
        assert_eq!(pdb["apiVersion"], "policy/v1");
        assert_eq!(pdb["metadata"]["namespace"], "tulle-system");
        assert_eq!(pdb["spec"]["minAvailable"], 1);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], *selects);
        // After its Deployment, in the namespace that uninstall deletes.
        let pos = |kind: &str| {
            ha.iter()
                .position(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap()
        };
        assert!(pos("PodDisruptionBudget") > pos("Deployment"));
    }
    assert_eq!(policy(&ha), "Fail");
    // The dashboard (read-only) is not part of it.
    let dash = find(&ha, "Deployment", "tulle-dashboard").unwrap();
    assert_eq!(dash["spec"]["replicas"], 1);
    assert!(dash["spec"]["template"]["spec"].get("affinity").is_none());

    // Explicit flags win where they keep HA: more replicas, and Ignore if asked for.
    let more = docs(&install(&["--ha", "--controller-replicas", "3"]).unwrap());
    assert_eq!(
        find(&more, "Deployment", "tulle-controller").unwrap()["spec"]["replicas"],
        3
    );
    let one = docs(&install(&["--ha", "--controller-replicas", "1"]).unwrap());
    assert_eq!(
        find(&one, "Deployment", "tulle-controller").unwrap()["spec"]["replicas"],
        2
    );
    let ignore = docs(&install(&["--ha", "--webhook-failure-policy", "Ignore"]).unwrap());
    assert_eq!(policy(&ignore), "Ignore");

    // Without --ha: one replica each, no budgets, no affinity, Ignore.
    let plain = generated();
    assert_eq!(policy(&plain), "Ignore");
    assert!(!plain.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    for name in ["tulle-identity", "tulle-controller"] {
        let d = find(&plain, "Deployment", name).unwrap();
        assert_eq!(d["spec"]["replicas"], 1);
        assert!(d["spec"]["template"]["spec"].get("affinity").is_none());
    }

    // uninstall lists what a default install creates; what --ha adds lives in tulle-system,
    // which uninstall deletes.
    let removed: BTreeSet<_> =
        docs(&tulle_cli::manifest::uninstall(tulle_cli::args::Output::Yaml).unwrap())
            .iter()
            .map(key)
            .collect();
    assert!(removed.contains(&("Namespace".into(), String::new(), "tulle-system".into())));
    for o in &ha {
        if !removed.contains(&key(o)) {
            assert_eq!(o["metadata"]["namespace"], "tulle-system", "{:?}", key(o));
        }
    }
}
