//! Smoke tests of the cluster features the mesh depends on. Run with `cluster/e2e`.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tulle_e2e::{TestNamespace, kubectl, testapp_image, wait};

const READY: Duration = Duration::from_secs(120);
/// A new Service's endpoints reach kube-proxy and CoreDNS asynchronously after the pods are Ready.
const PROPAGATE: Duration = Duration::from_secs(30);

/// A Deployment + Service `name` running the test app (HTTP 8080 -> Service port 80). `extra_container`
/// and `extra_pod` are YAML lines spliced into the container and the pod spec (indented 8 and 6).
fn testapp_with(name: &str, extra_container: &str, extra_pod: &str) -> String {
    let image = testapp_image();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
{extra_container}
{extra_pod}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#
    )
}

fn testapp(name: &str) -> String {
    testapp_with(name, "", "")
}

/// Standard base64 (for caBundle fields), via coreutils.
fn b64(data: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run base64");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn network_guards_exist() {
    let check = |args: &[&str]| {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run")
            .status
            .success()
    };
    assert!(
        check(&[
            "iptables",
            "-t",
            "mangle",
            "-C",
            "FORWARD",
            "-i",
            "cni0",
            "!",
            "-o",
            "cni0",
            "-m",
            "comment",
            "--comment",
            "tulle-cluster-guard",
            "-j",
            "DROP"
        ]),
        "mangle FORWARD DROP guard missing"
    );
    let routes = std::process::Command::new("ip")
        .args(["route", "show", "table", "local"])
        .output()
        .expect("ip");
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("local 10.96.0.0/16 dev lo"),
        "service range is not routed locally"
    );
    let status =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster/status"))
            .output()
            .expect("status");
    assert!(
        status.status.success(),
        "cluster/status failed:\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn pod_to_service_by_dns_and_pod_to_pod() {
    let ns = TestNamespace::new("net").await.unwrap();
    ns.apply(&(testapp("server") + "---\n" + &testapp("client")))
        .unwrap();
    let server = wait::pods_ready(&ns.client, &ns.name, "app=server", 1, READY)
        .await
        .unwrap()
        .remove(0);
    let client = wait::pods_ready(&ns.client, &ns.name, "app=client", 1, READY)
        .await
        .unwrap()
        .remove(0);
    let (server_name, client_name) = (pod_name(&server), pod_name(&client));

    // Service by short name, namespace-qualified name and FQDN (CoreDNS + kube-proxy).
    for host in [
        "server",
        &format!("server.{}", ns.name),
        &format!("server.{}.svc.cluster.local", ns.name),
    ] {
        let url = format!("http://{host}/");
        let out = wait::exec_ok(
            &ns.name,
            &client_name,
            None,
            &["/usr/local/bin/testapp", "get", &url],
            PROPAGATE,
        )
        .await
        .unwrap_or_else(|e| panic!("pod -> service {host}: {e}"));
        assert!(
            out.starts_with("200") && out.contains(&server_name),
            "pod -> service {host}: {out}"
        );
    }
    // Pod -> pod IP directly.
    let ip = server.status.and_then(|s| s.pod_ip).expect("server pod IP");
    let out = kubectl::exec(
        &ns.name,
        &client_name,
        None,
        &[
            "/usr/local/bin/testapp",
            "get",
            &format!("http://{ip}:8080/"),
        ],
    )
    .unwrap();
    assert!(out.contains(&server_name), "pod -> pod {ip}: {out}");
    // A name that does not exist does not resolve (and nothing is forwarded upstream).
    let err = kubectl::exec(
        &ns.name,
        &client_name,
        None,
        &["/usr/local/bin/testapp", "get", "http://nosuchservice/"],
    );
    assert!(err.is_err(), "nosuchservice resolved: {err:?}");
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn kubectl_logs_exec_port_forward() {
    let ns = TestNamespace::new("kubectl").await.unwrap();
    ns.apply(&(testapp("server") + "---\n" + &testapp("other")))
        .unwrap();
    let pod = pod_name(
        &wait::pods_ready(&ns.client, &ns.name, "app=server", 1, READY)
            .await
            .unwrap()[0],
    );
    let other = pod_name(
        &wait::pods_ready(&ns.client, &ns.name, "app=other", 1, READY)
            .await
            .unwrap()[0],
    );

    let logs = kubectl::logs(&ns.name, &pod, None).unwrap();
    assert!(logs.contains(&format!("pod={pod}")), "logs: {logs}");

    let out = kubectl::exec(
        &ns.name,
        &pod,
        None,
        &["/usr/local/bin/testapp", "cat", "/etc/passwd"],
    )
    .unwrap();
    assert!(out.contains("tulle-proxy:x:2110"), "exec: {out}");

    let pf = kubectl::PortForward::start(&ns.name, &format!("pod/{pod}"), 8080).unwrap();
    let (status, body) = kubectl::http_get(pf.local, "/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&pod), "port-forward: {body}");
    // /call: the test app calls another service and reports what it got back.
    let call = format!("/call?url=http://other.{}/", ns.name);
    let (status, body, v) = wait::until(
        "/call to reach Service other",
        PROPAGATE,
        || async {
            let (status, body) = kubectl::http_get(pf.local, &call).await.ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            v.get("status").is_some().then_some((status, body, v))
        },
        || async { String::new() },
    )
    .await
    .unwrap();
    assert_eq!((status, v["status"].as_u64()), (200, Some(200)), "{body}");
    assert!(
        v["body"].as_str().unwrap_or_default().contains(&other),
        "{body}"
    );
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn native_sidecar_starts_first_and_serves_main() {
    let ns = TestNamespace::new("sidecar").await.unwrap();
    let image = testapp_image();
    ns.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: sidecar}}
spec:
  initContainers:
  - name: sidecar
    image: {image}
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    env: [{{name: PORT, value: "9090"}}]
    startupProbe: {{httpGet: {{path: /healthz, port: 9090}}, periodSeconds: 1}}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
"#
    ))
    .unwrap();
    let pod = wait::pod_ready(&ns.client, &ns.name, "sidecar", READY)
        .await
        .unwrap();
    let st = pod.status.unwrap();
    let side = &st.init_container_statuses.unwrap()[0];
    assert!(
        side.ready
            && side
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .is_some(),
        "sidecar not running: {side:?}"
    );
    let side_start = side
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone()
        .unwrap();
    let main = &st.container_statuses.unwrap()[0];
    let main_start = main
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone()
        .unwrap();
    assert!(side_start.0 <= main_start.0, "sidecar started after main");
    let out = kubectl::exec(
        &ns.name,
        "sidecar",
        Some("main"),
        &[
            "/usr/local/bin/testapp",
            "get",
            "http://127.0.0.1:9090/healthz",
        ],
    )
    .unwrap();
    assert!(
        out.starts_with("200"),
        "main -> sidecar over localhost: {out}"
    );
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn token_request_review_and_projected_token() {
    let ns = TestNamespace::new("token").await.unwrap();
    let audience = "e2e.tulle.io";
    let review = |token: String| {
        let client = ns.client.clone();
        async move {
            let tr: TokenReview =
                serde_json::from_value(json!({"spec": {"token": token, "audiences": [audience]}}))
                    .unwrap();
            Api::<TokenReview>::all(client)
                .create(&PostParams::default(), &tr)
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    // TokenRequest (audience-bound) + TokenReview.
    wait::until(
        "default ServiceAccount",
        READY,
        || async {
            ns.api::<ServiceAccount>()
                .get_opt("default")
                .await
                .ok()
                .flatten()
        },
        || async { String::new() },
    )
    .await
    .unwrap();
    let req: TokenRequest = serde_json::from_value(
        json!({"spec": {"audiences": [audience], "expirationSeconds": 600}}),
    )
    .unwrap();
    let token = ns
        .api::<ServiceAccount>()
        .create_token_request("default", &PostParams::default(), &req)
        .await
        .unwrap();
    let st = review(token.status.unwrap().token).await;
    assert_eq!(st.authenticated, Some(true), "{st:?}");
    let user = st.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:default", ns.name).as_str())
    );
    assert_eq!(st.audiences, Some(vec![audience.to_string()]));
    // A token for another audience is rejected for ours.
    let other: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": ["someone-else"]}})).unwrap();
    let other = ns
        .api::<ServiceAccount>()
        .create_token_request("default", &PostParams::default(), &other)
        .await
        .unwrap();
    assert_ne!(
        review(other.status.unwrap().token).await.authenticated,
        Some(true)
    );

    // Projected service-account token volume.
    let image = testapp_image();
    ns.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: projected}}
spec:
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: token, mountPath: /var/run/secrets/tulle}}]
  volumes:
  - name: token
    projected:
      sources: [{{serviceAccountToken: {{audience: {audience}, expirationSeconds: 3600, path: token}}}}]
"#
    ))
    .unwrap();
    wait::pod_ready(&ns.client, &ns.name, "projected", READY)
        .await
        .unwrap();
    let token = kubectl::exec(
        &ns.name,
        "projected",
        None,
        &[
            "/usr/local/bin/testapp",
            "cat",
            "/var/run/secrets/tulle/token",
        ],
    )
    .unwrap();
    let st = review(token.trim().to_string()).await;
    assert_eq!(st.authenticated, Some(true), "projected token: {st:?}");
    let extra = st.user.unwrap().extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["projected".to_string()]),
        "{extra:?}"
    );
}

/// A CA and a serving certificate for `<svc>.<ns>.svc`; returns (ca pem, cert pem, key pem).
fn serving_cert(svc: &str, ns: &str) -> (String, String, String) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "e2e-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params = rcgen::CertificateParams::new(vec![
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ])
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The test app with TLS on 8443 (Service port 443) from a Secret `<name>-tls`.
fn tls_testapp(ns: &TestNamespace, name: &str, group: &str) -> String {
    let (ca, cert, key) = serving_cert(name, &ns.name);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-tls")},
        "stringData": {"tls.crt": cert, "tls.key": key}});
    ns.apply(&secret.to_string()).unwrap();
    let container = "        volumeMounts: [{name: tls, mountPath: /tls}]\n        ports: [{containerPort: 8443}]";
    let pod = format!("      volumes: [{{name: tls, secret: {{secretName: {name}-tls}}}}]");
    let env = format!(
        "        - {{name: TLS_CERT, value: /tls/tls.crt}}\n        - {{name: TLS_KEY, value: /tls/tls.key}}\n        - {{name: APISERVICE_GROUP, value: {group}}}\n"
    );
    let yaml = testapp_with(name, container, &pod)
        .replace("        readinessProbe:", &format!("{env}        readinessProbe:"))
        .replace("  ports: [{name: http, port: 80, targetPort: 8080}]", "  ports: [{name: http, port: 80, targetPort: 8080}, {name: https, port: 443, targetPort: 8443}]");
    ns.apply(&yaml).unwrap();
    ca
}

/// Deletes cluster-scoped objects made by a test.
struct ClusterScoped(Vec<String>);
impl Drop for ClusterScoped {
    fn drop(&mut self) {
        for o in &self.0 {
            let _ = kubectl::run(&["delete", o, "--ignore-not-found", "--wait=false"]);
        }
    }
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn admission_webhooks_served_from_pods() {
    let ns = TestNamespace::new("webhook").await.unwrap();
    let ca = tls_testapp(&ns, "webhook", "unused.tulle.io");
    wait::pods_ready(&ns.client, &ns.name, "app=webhook", 1, READY)
        .await
        .unwrap();
    let bundle = b64(&ca);
    // Not `tulle-…`: an uninstall running beside this test waits for every `tulle-` webhook
    // configuration to go (e2e/src/install.rs `leftovers`).
    let name = ns.name.clone();
    let _cleanup = ClusterScoped(vec![
        format!("mutatingwebhookconfiguration/{name}"),
        format!("validatingwebhookconfiguration/{name}"),
    ]);
    let hook = |kind: &str, path: &str| {
        format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata: {{name: {name}}}
webhooks:
- name: {path}.{ns}.e2e.tulle.io
  clientConfig:
    service: {{name: webhook, namespace: {ns}, path: /{path}, port: 443}}
    caBundle: {bundle}
  rules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{tulle.io/e2e-ns: {ns}}}}}
  objectSelector: {{matchExpressions: [{{key: e2e-webhook, operator: Exists}}]}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
"#,
            ns = ns.name
        )
    };
    ns.apply(
        &(hook("MutatingWebhookConfiguration", "mutate")
            + "---"
            + &hook("ValidatingWebhookConfiguration", "validate")),
    )
    .unwrap();

    let cms = ns.api::<ConfigMap>();
    let cm = |name: &str, deny: bool| -> ConfigMap {
        let mut labels = json!({"e2e-webhook": "yes"});
        if deny {
            labels["e2e-deny"] = json!("true");
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    };
    // Webhook configurations take effect asynchronously: retry until the mutation shows.
    let created = wait::until(
        "a ConfigMap mutated by the webhook",
        Duration::from_secs(60),
        || async {
            let _ = cms.delete("allowed", &Default::default()).await;
            let c = cms
                .create(&PostParams::default(), &cm("allowed", false))
                .await
                .ok()?;
            c.metadata
                .labels
                .as_ref()?
                .get("tulle-testapp/mutated")
                .is_some()
                .then_some(c)
        },
        || wait::describe(&ns.client, &ns.name),
    )
    .await
    .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["tulle-testapp/mutated"],
        "true"
    );
    let denied = cms
        .create(&PostParams::default(), &cm("denied", true))
        .await;
    let err = denied.expect_err("the validating webhook should deny e2e-deny=true");
    assert!(err.to_string().contains("denied by tulle-testapp"), "{err}");
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn aggregated_api_through_the_apiserver() {
    let ns = TestNamespace::new("agg").await.unwrap();
    let group = format!("{}.e2e.tulle.io", ns.name);
    let ca = tls_testapp(&ns, "api", &group);
    wait::pods_ready(&ns.client, &ns.name, "app=api", 1, READY)
        .await
        .unwrap();
    let bundle = b64(&ca);
    let apiservice = format!("v1alpha1.{group}");
    let _cleanup = ClusterScoped(vec![format!("apiservice/{apiservice}")]);
    kubectl::run_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: {apiservice}}}
spec:
  group: {group}
  version: v1alpha1
  service: {{name: api, namespace: {ns}, port: 443}}
  caBundle: {bundle}
  groupPriorityMinimum: 1000
  versionPriority: 15
"#,
            ns = ns.name
        ),
    )
    .unwrap();
    wait::until(
        "APIService Available",
        READY,
        || async {
            let out = kubectl::run(&[
                "get",
                "apiservice",
                &apiservice,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
            ])
            .ok()?;
            (out == "True").then_some(())
        },
        || async {
            kubectl::run(&["get", "apiservice", &apiservice, "-o", "yaml"])
                .unwrap_or_else(|e| e.to_string())
        },
    )
    .await
    .unwrap();
    let discovery = kubectl::run(&["get", "--raw", &format!("/apis/{group}/v1alpha1")]).unwrap();
    assert!(discovery.contains("whoamis"), "{discovery}");
    let who: Value = serde_json::from_str(
        &kubectl::run(&["get", "--raw", &format!("/apis/{group}/v1alpha1/whoamis")]).unwrap(),
    )
    .unwrap();
    assert_eq!(who["items"][0]["user"], "kubernetes-admin", "{who}");
    assert!(
        who["items"][0]["groups"]
            .to_string()
            .contains("system:masters"),
        "{who}"
    );
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn iptables_redirect_from_init_container() {
    let ns = TestNamespace::new("iptables").await.unwrap();
    let (image, iptables) = (
        testapp_image(),
        testapp_image().replace("/testapp:", "/iptables:"),
    );
    ns.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: redirect}}
spec:
  initContainers:
  - name: init
    image: {iptables}
    imagePullPolicy: IfNotPresent
    args: ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", "9999", "-j", "REDIRECT", "--to-ports", "8080"]
    securityContext: {{capabilities: {{add: [NET_ADMIN, NET_RAW]}}}}
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
"#
    ))
    .unwrap();
    wait::pod_ready(&ns.client, &ns.name, "redirect", READY)
        .await
        .unwrap();
    let out = kubectl::exec(
        &ns.name,
        "redirect",
        None,
        &[
            "/usr/local/bin/testapp",
            "get",
            "http://127.0.0.1:9999/healthz",
        ],
    )
    .unwrap();
    assert!(
        out.starts_with("200"),
        "127.0.0.1:9999 should be redirected to the app on 8080: {out}"
    );
}
