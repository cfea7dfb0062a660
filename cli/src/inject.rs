//! `tulle inject`: meshes the workloads of a YAML stream (files or stdin), like
//! `linkerd inject`. By default it adds `tulle.io/inject: enabled` to each pod template, so the
//! injector webhook adds the proxy when the pods are created; `--manual` adds the init step and
//! the proxy sidecar itself (the same code as the webhook: crate `tulle-inject`), for clusters
//! without the webhook. Objects that are not workloads pass through unchanged. What was done or
//! skipped, and why, is reported on stderr, one line per object.

use crate::Error;
use crate::args::{GlobalArgs, InjectArgs};
use crate::manifest::{
    CONTROLLER, IDENTITY, NAMESPACE, TRUST_ANCHORS_CONFIGMAP, TRUST_ANCHORS_KEY,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::{Value, json};
use std::io::Read;
use tulle_api::ServiceAccountIdentity;
use tulle_inject::{INJECT_ANNOTATION, INJECTED_ANNOTATION};

/// The outcome for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pod template was annotated or injected.
    Injected,
    /// Left unchanged, with the reason.
    Skipped(String),
}

/// One line of the report: `deployment "web" injected` / `service "web" skipped (not a workload)`.
pub fn report_line(obj: &Value, outcome: &Outcome) -> String {
    let kind = obj["kind"].as_str().unwrap_or("object").to_lowercase();
    let name = obj["metadata"]["name"].as_str().unwrap_or("?");
    match outcome {
        Outcome::Injected => format!("{kind} \"{name}\" injected"),
        Outcome::Skipped(why) => format!("{kind} \"{name}\" skipped ({why})"),
    }
}

/// How pods are meshed by `--manual`.
#[derive(Debug, Clone)]
pub struct Manual {
    /// The injector configuration (images and control-plane addresses).
    pub config: tulle_inject::Config,
    /// The trust anchors PEM put in the proxies' environment.
    pub anchors_pem: String,
}

impl Manual {
    /// The configuration the webhook of a default `tulle install` with these flags would use.
    pub fn from_args(args: &InjectArgs, anchors_pem: String) -> Self {
        let td = &args.trust_domain;
        let config = tulle_inject::Config {
            proxy_image: format!("{}/proxy:{}", args.registry, args.tag),
            proxy_version: args.tag.clone(),
            trust_domain: td.clone(),
            identity_addr: format!("{IDENTITY}.{NAMESPACE}.svc.cluster.local:8080"),
            identity_name: ServiceAccountIdentity::new(IDENTITY, NAMESPACE, td).dns_name(),
            destination_addr: format!("{CONTROLLER}.{NAMESPACE}.svc.cluster.local:8086"),
            destination_name: ServiceAccountIdentity::new(CONTROLLER, NAMESPACE, td).dns_name(),
            policy_addr: format!("{CONTROLLER}.{NAMESPACE}.svc.cluster.local:8090"),
            policy_name: ServiceAccountIdentity::new(CONTROLLER, NAMESPACE, td).dns_name(),
            log_level: args.proxy_log_level.clone(),
            resources: tulle_inject::Resources::default(),
            // As a default install: only its own proxy image.
            allowed_images: vec![],
            // As a default install: IPv4 (`--ip-families`; docs/ipv6.md).
            ipv6: false,
        };
        Manual {
            config,
            anchors_pem,
        }
    }
}

/// The JSON pointer of the pod template of a workload kind (`""` for a Pod), or `None`.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Meshes one object in place. `namespace` is where it will be created (for `--manual`, whose
/// identity names include it).
pub fn inject_object(obj: &mut Value, namespace: &str, manual: Option<&Manual>) -> Outcome {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let Some(ptr) = template_pointer(&kind) else {
        return Outcome::Skipped("not a workload".into());
    };
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or(namespace)
        .to_string();
    let Some(template) = obj.pointer_mut(ptr) else {
        return Outcome::Skipped("no pod template".into());
    };
    let annotations = template["metadata"]["annotations"].as_object();
    if annotations.is_some_and(|a| a.contains_key(INJECTED_ANNOTATION)) {
        return Outcome::Skipped("already injected".into());
    }
    if annotations.and_then(|a| a.get(INJECT_ANNOTATION)) == Some(&json!("disabled")) {
        return Outcome::Skipped(format!("{INJECT_ANNOTATION}: disabled"));
    }
    if template["spec"]["hostNetwork"] == json!(true) {
        return Outcome::Skipped(
            "hostNetwork: the proxy's iptables rules would capture the node".into(),
        );
    }
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["annotations"].is_object() {
        template["metadata"]["annotations"] = json!({});
    }
    template["metadata"]["annotations"][INJECT_ANNOTATION] = json!("enabled");
    let Some(m) = manual else {
        return Outcome::Injected;
    };
    let pod: Pod = match serde_json::from_value(json!({
        "metadata": template["metadata"], "spec": template["spec"]
    })) {
        Ok(p) => p,
        Err(e) => return Outcome::Skipped(format!("unreadable pod template: {e}")),
    };
    let namespace = tulle_inject::Namespace {
        name: ns,
        ..Default::default()
    };
    match tulle_inject::inject_pod(&pod, &namespace, &m.config, &m.anchors_pem) {
        Err(skip) => Outcome::Skipped(skip.to_string()),
        Ok(injected) => {
            let Ok(v) = serde_json::to_value(&injected) else {
                return Outcome::Skipped("cannot serialize the injected pod".into());
            };
            template["metadata"] = v["metadata"].clone();
            template["spec"] = v["spec"].clone();
            Outcome::Injected
        }
    }
}

/// Reads the documents of `text`, flattening `v1/List`s; empty documents are dropped.
pub fn documents(text: &str) -> Result<Vec<Value>, Error> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| Error::Input(format!("the input is not YAML or JSON: {e}")))?;
    let mut out = Vec::new();
    for d in docs {
        match d {
            Value::Null => {}
            Value::Object(ref o) if o.get("kind") == Some(&json!("List")) => out.extend(
                o.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            Value::Object(_) => out.push(d),
            other => {
                return Err(Error::Input(format!(
                    "expected Kubernetes objects, found {other}"
                )));
            }
        }
    }
    Ok(out)
}

/// Reads every input (`-` is stdin).
fn read_inputs(files: &[std::path::PathBuf]) -> Result<String, Error> {
    let mut all = String::new();
    for f in files {
        let text = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::Input(format!("reading stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(f)
                .map_err(|e| Error::Input(format!("reading {}: {e}", f.display())))?
        };
        all.push_str("\n---\n");
        all.push_str(&text);
    }
    Ok(all)
}

/// The trust anchors for `--manual`: the file given, else the installed mesh's ConfigMap.
async fn anchors(global: &GlobalArgs, args: &InjectArgs) -> Result<String, Error> {
    if let Some(f) = &args.identity_trust_anchors_file {
        return std::fs::read_to_string(f)
            .map_err(|e| Error::Input(format!("reading {}: {e}", f.display())));
    }
    let hint = "install the mesh first (tulle install | kubectl apply -f -), or pass --identity-trust-anchors-file";
    let client = crate::kubeconfig::client(global, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| Error::Input(format!("--manual needs the trust anchors: {e}; {hint}")))?;
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client, NAMESPACE);
    let cm = cms.get(TRUST_ANCHORS_CONFIGMAP).await.map_err(|e| {
        Error::Input(format!(
            "--manual needs the trust anchors: reading ConfigMap {NAMESPACE}/{TRUST_ANCHORS_CONFIGMAP}: {e}; {hint}"
        ))
    })?;
    cm.data
        .and_then(|d| d.get(TRUST_ANCHORS_KEY).cloned())
        .ok_or_else(|| {
            Error::Input(format!(
                "ConfigMap {NAMESPACE}/{TRUST_ANCHORS_CONFIGMAP} has no {TRUST_ANCHORS_KEY}; {hint}"
            ))
        })
}

/// `tulle inject`: the meshed YAML (or JSON List) and the report lines.
pub fn run(global: &GlobalArgs, args: &InjectArgs) -> Result<(String, Vec<String>), Error> {
    let mut objects = documents(&read_inputs(&args.files)?)?;
    let manual = if args.manual {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Some(Manual::from_args(args, rt.block_on(anchors(global, args))?))
    } else {
        None
    };
    let namespace = global.namespace.clone().unwrap_or_else(|| "default".into());
    let mut report = Vec::new();
    for obj in &mut objects {
        let outcome = inject_object(obj, &namespace, manual.as_ref());
        report.push(report_line(obj, &outcome));
    }
    Ok((crate::render::render(&objects, args.output)?, report))
}
