//! `tulle inject` golden tests (annotation and `--manual`) through the binary, its report on
//! stderr, and input errors.

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use support::{fixture_files, golden, tests_dir};

fn tulle(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tulle"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn app() -> String {
    tests_dir().join("fixtures/app.yaml").display().to_string()
}

const REPORT: &str = "serviceaccount \"web\" skipped (not a workload)
deployment \"web\" injected
service \"web\" skipped (not a workload)
cronjob \"report\" injected
daemonset \"node-agent\" skipped (hostNetwork: the proxy's iptables rules would capture the node)
pod \"debug\" skipped (tulle.io/inject: disabled)
";

#[test]
fn annotates_pod_templates_and_reports_each_object() {
    let (code, out, err) = tulle(&["inject", &app()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, REPORT);
    golden("inject.yaml", &out);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
    assert_eq!(docs.len(), 6, "every object is kept");
    assert_eq!(
        docs[1]["spec"]["template"]["metadata"]["annotations"]["tulle.io/inject"],
        "enabled"
    );
    // Injecting the output again changes nothing but the report.
    let (_, again, _) = tulle(&["inject", "-"], Some(&out));
    assert_eq!(again, out);
}

#[test]
fn manual_adds_the_sidecar_like_the_webhook() {
    let [anchors, _, _] = fixture_files();
    let (code, out, err) = tulle(
        &[
            "inject",
            "--manual",
            "--identity-trust-anchors-file",
            &anchors.display().to_string(),
            "-n",
            "default",
            &app(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, REPORT);
    golden("inject-manual.yaml", &out);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
    let pod = &docs[1]["spec"]["template"];
    let names: Vec<&str> = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tulle-init", "tulle-proxy"]);
    assert_eq!(pod["metadata"]["annotations"]["tulle.io/injected"], "true");
    // The identity is the ServiceAccount's in the object's own namespace.
    let env = pod["spec"]["initContainers"][1]["env"].as_array().unwrap();
    let id = env
        .iter()
        .find(|e| e["name"] == "TULLE_PROXY_IDENTITY_NAME")
        .unwrap();
    assert_eq!(
        id["value"],
        "web.shop.serviceaccount.identity.tulle.cluster.local"
    );
    // A second pass skips what is injected already.
    let (_, again, err) = tulle(
        &[
            "inject",
            "--manual",
            "--identity-trust-anchors-file",
            &anchors.display().to_string(),
            "-",
        ],
        Some(&out),
    );
    assert_eq!(again, out);
    assert!(
        err.contains("deployment \"web\" skipped (already injected)"),
        "{err}"
    );
}

#[test]
fn bad_input_is_refused_with_exit_64() {
    let (code, out, err) = tulle(&["inject", "-"], Some("- just\n- a list\n"));
    assert_eq!(code, 64, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("expected Kubernetes objects"), "{err}");
    let (code, _, err) = tulle(&["inject", "/nonexistent.yaml"], None);
    assert_eq!(code, 64);
    assert!(err.contains("/nonexistent.yaml"), "{err}");
}
