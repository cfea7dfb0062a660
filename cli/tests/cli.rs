//! The `tulle` binary: exit codes, stdout/stderr, the kubectl plugin name, `version`.

mod support;

use std::process::{Command, Output};

fn tulle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tulle"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn install_prints_yaml_and_exits_0() {
    let out = tulle(&["install"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let docs = support::docs(&text(&out.stdout));
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "MutatingWebhookConfiguration")
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["install", "--no-such-flag"][..],
        &["install", "--webhook-failure-policy", "Sometimes"],
        &["install", "--identity-trust-anchors-file", "a.pem"], // needs the issuer files too
        &["install", "--controller-replicas", "0"],
        &["frobnicate"],
    ] {
        let out = tulle(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
}

/// Issue 11: the mesh default inbound policy reaches the controller's Deployment; a value
/// other than allow, authenticated or deny is refused by the parser.
#[test]
fn default_inbound_policy_reaches_the_controller() {
    for flag in ["--default-policy", "--default-inbound-policy"] {
        for value in ["allow", "authenticated", "deny"] {
            let out = tulle(&["install", flag, value]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            let yaml = text(&out.stdout);
            assert!(
                yaml.contains(&format!(
                    "name: TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY\n          value: {value}"
                )),
                "{flag} {value}: the controller env does not carry it"
            );
        }
    }
    let out = tulle(&["install"]);
    assert!(
        text(&out.stdout)
            .contains("name: TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY\n          value: allow")
    );
    let out = tulle(&["install", "--default-inbound-policy", "open"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("allow") && err.contains("authenticated") && err.contains("deny"),
        "lists the values: {err}"
    );
    let help = text(&tulle(&["install", "--help"]).stdout);
    assert!(help.contains("--default-inbound-policy"), "{help}");
}

#[test]
fn bad_pki_file_exits_64_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(f("a.pem"), "not pem").unwrap();
    std::fs::write(f("i.crt"), "not pem").unwrap();
    std::fs::write(f("i.key"), "not pem").unwrap();
    let out = tulle(&[
        "install",
        "--identity-trust-anchors-file",
        &f("a.pem"),
        "--identity-issuer-certificate-file",
        &f("i.crt"),
        "--identity-issuer-key-file",
        &f("i.key"),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty(), "nothing half-written to stdout");
    let err = text(&out.stderr);
    assert!(
        err.starts_with("tulle: error: ") && err.contains(&f("a.pem")),
        "{err}"
    );
}

#[test]
fn bad_value_exits_64() {
    let out = tulle(&["install", "--tag", "has space"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("--tag"));
}

#[test]
fn uninstall_prints_references() {
    let out = tulle(&["uninstall"]);
    assert_eq!(out.status.code(), Some(0));
    let docs = support::docs(&text(&out.stdout));
    assert_eq!(docs.last().unwrap()["kind"], "CustomResourceDefinition");
}

#[test]
fn version_client_only() {
    let out = tulle(&["version", "--client", "--kubeconfig", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("Client version: {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// No cluster: a kubeconfig pointing at a closed port.
#[test]
fn version_without_cluster_exits_1_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: k, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n"
        ),
    )
    .unwrap();
    let out = tulle(&[
        "version",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--timeout",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Client version: "), "{stdout}");
    assert!(stdout.contains("Server version: unavailable ("), "{stdout}");
    // an unknown context is a reason too
    let out = tulle(&[
        "version",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--context",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("Server version: unavailable ("));
}

/// `kubectl tulle ...` runs `kubectl-tulle ...`: the binary works under that name.
#[test]
fn works_as_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-tulle");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tulle"), &link).unwrap();
    let out = Command::new(&link)
        .args(["version", "--client"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("Client version: "));
    let help = Command::new(&link).arg("--help").output().unwrap();
    let usage = text(&help.stdout);
    assert!(usage.contains("Usage: kubectl tulle [OPTIONS]"), "{usage}");
    let usage = text(&tulle(&["--help"]).stdout);
    assert!(usage.contains("Usage: tulle [OPTIONS]"), "{usage}");
}

#[test]
fn check_without_a_cluster_fails_with_a_hint_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let missing = missing.to_str().unwrap();
    let out = tulle(&["check", "--kubeconfig", missing]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("kubernetes-api\n--------------\n× can initialize the client\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    hint: pass a valid --kubeconfig FILE"),
        "{stdout}"
    );
    assert!(stdout.ends_with("Status check results are ×\n"), "{stdout}");

    let out = tulle(&["check", "--pre", "-o", "json", "--kubeconfig", missing]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["categories"][0]["checks"][0]["status"], "fail");
    assert_eq!(
        v["categories"].as_array().unwrap().len(),
        1,
        "fatal: the run stops"
    );
}

#[test]
fn check_usage_errors_exit_2() {
    for args in [
        &["check", "--wait", "soon"][..],
        &["check", "-o", "yaml"],
        &["check", "--expiry-warning-days", "-1"],
    ] {
        let out = tulle(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
