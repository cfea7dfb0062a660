//! What a step can do in its case's namespace: apply objects, deploy apps, send traffic from
//! one app to another and read what the apps received.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::{self, App};
use crate::case::Mode;
use crate::kubectl::Kubectl;
use crate::profile::Profile;
use crate::{Error, Result};

/// How long a policy or split change may take to reach the data plane before a step that
/// waits for it fails (the upstream suite allowed about 5 s plus its assert time).
pub const PROPAGATION: Duration = Duration::from_secs(30);

/// The settings every case shares.
#[derive(Debug)]
pub struct Shared {
    pub kubectl: Kubectl,
    pub profile: Profile,
    pub app_image: String,
}

/// A case's context: its namespace (and any extra ones it made), and the shared settings.
#[derive(Debug)]
pub struct Ctx {
    pub ns: String,
    pub mode: Mode,
    pub shared: Arc<Shared>,
    /// Every namespace this case created, deleted when it ends.
    pub namespaces: Mutex<Vec<String>>,
}

/// What a burst of requests got: answers per app, failures per reason (`403 <header>`,
/// `error: ...`, `timeout`).
#[derive(Clone, Debug, Default)]
pub struct Burst {
    pub ok: u64,
    pub failed: u64,
    pub by_app: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Burst {
    /// Answers from `app`.
    pub fn from(&self, app: &str) -> u64 {
        self.by_app.get(app).copied().unwrap_or(0)
    }

    /// The share of answers from `app` among all requests.
    pub fn share(&self, app: &str) -> f64 {
        self.from(app) as f64 / (self.ok + self.failed).max(1) as f64
    }

    fn parse(v: &Value) -> Self {
        let map = |v: &Value| -> BTreeMap<String, u64> {
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        };
        let mut by_app = BTreeMap::new();
        for (pod, n) in map(&v["by_pod"]) {
            *by_app.entry(app::app_of_pod(&pod).to_string()).or_default() += n;
        }
        Self {
            ok: v["ok"].as_u64().unwrap_or(0),
            failed: v["failed"].as_u64().unwrap_or(0),
            by_app,
            errors: map(&v["errors"]),
        }
    }
}

/// What an app received: `caller → "METHOD /path STATUS" → count`.
pub type Received = BTreeMap<String, BTreeMap<String, u64>>;

impl Ctx {
    /// `kubectl ARGS` in the case's namespace.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.shared.kubectl.run(&all, None).await
    }

    /// `kubectl apply` of JSON objects or YAML text into namespace `ns`.
    pub async fn apply_in(&self, ns: &str, text: &str) -> Result<()> {
        self.shared
            .kubectl
            .run(&["apply", "-n", ns, "-f", "-"], Some(text))
            .await
            .map(drop)
    }

    /// `kubectl apply` of YAML (one or more documents) in the case's namespace.
    pub async fn apply(&self, yaml: &str) -> Result<()> {
        self.apply_in(&self.ns, yaml).await
    }

    /// Delete an object in the case's namespace and wait until it is gone.
    pub async fn delete(&self, kind: &str, name: &str) -> Result<()> {
        self.kubectl(&["delete", kind, name, "--wait=true", "--timeout=60s"])
            .await
            .map(drop)
    }

    /// Deploy `apps` and `services` into `ns` and wait until every app is ready.
    pub async fn deploy_in(&self, ns: &str, apps: &[App], services: &[Value]) -> Result<()> {
        let mut items: Vec<Value> = apps
            .iter()
            .flat_map(|a| a.manifests(&self.shared.app_image))
            .collect();
        items.extend_from_slice(services);
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        self.apply_in(ns, &list.to_string()).await?;
        for a in apps {
            let deploy = format!("deployment/{}", a.name);
            self.shared
                .kubectl
                .run(
                    &["rollout", "status", "-n", ns, &deploy, "--timeout=150s"],
                    None,
                )
                .await?;
        }
        Ok(())
    }

    /// Deploy into the case's namespace.
    pub async fn deploy(&self, apps: &[App], services: &[Value]) -> Result<()> {
        self.deploy_in(&self.ns, apps, services).await
    }

    /// Create another namespace for this case (`<ns>-<suffix>`, meshed, in `mode`), deleted
    /// with the case's own.
    pub async fn extra_namespace(&self, suffix: &str, mode: Mode) -> Result<String> {
        let name = format!("{}-{suffix}", self.ns);
        create_namespace(&self.shared, &name, mode).await?;
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        Ok(name)
    }

    /// The running pod of `app` in `ns`.
    pub async fn pod_in(&self, ns: &str, app: &str) -> Result<String> {
        let selector = format!("app={app}");
        let name = self
            .shared
            .kubectl
            .run(
                &[
                    "get",
                    "pods",
                    "-n",
                    ns,
                    "-l",
                    &selector,
                    "--field-selector=status.phase=Running",
                    "-o",
                    "jsonpath={.items[0].metadata.name}",
                ],
                None,
            )
            .await?;
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Check(format!("no running pod of {app} in {ns}")));
        }
        Ok(name.to_string())
    }

    /// Run the testapp in `app`'s pod in `ns` with `args`, its JSON output.
    async fn testapp(&self, ns: &str, app: &str, args: &[&str]) -> Result<Value> {
        let pod = self.pod_in(ns, app).await?;
        let mut all = vec![
            "exec",
            "-n",
            ns,
            pod.as_str(),
            "-c",
            "app",
            "--",
            app::BINARY,
        ];
        all.extend_from_slice(args);
        let out = self.shared.kubectl.run(&all, None).await?;
        // `testapp get` prints the status on its own first line, then the body.
        let body = if args.first() == Some(&"get") {
            out.split_once('\n').map_or("", |(_, b)| b)
        } else {
            out.as_str()
        };
        serde_json::from_str(body.trim()).map_err(|source| Error::Json {
            what: format!("testapp {} in {pod}", args.join(" ")),
            text: out.clone(),
            source,
        })
    }

    /// The URL of Service `svc` in the case's namespace.
    pub fn url(&self, svc: &str, path: &str) -> String {
        format!(
            "http://{svc}.{}.svc.cluster.local:{}{path}",
            self.ns,
            app::HTTP_PORT
        )
    }

    /// `n` HTTP requests from `app` (in `ns`) to `url`, one keep-alive connection, the caller
    /// named in `x-conformance-caller`; `extra` are testapp burst flags (`-X POST`, `-H k:v`,
    /// `--h2`).
    pub async fn http_from(
        &self,
        ns: &str,
        app: &str,
        url: &str,
        n: u32,
        extra: &[&str],
    ) -> Result<Burst> {
        let n = n.to_string();
        let caller = format!("x-conformance-caller:{app}");
        let mut args = vec!["burst", url, n.as_str(), "-H", caller.as_str()];
        args.extend_from_slice(extra);
        Ok(Burst::parse(&self.testapp(ns, app, &args).await?))
    }

    /// [`Ctx::http_from`] an app in the case's namespace.
    pub async fn http(&self, app: &str, url: &str, n: u32, extra: &[&str]) -> Result<Burst> {
        self.http_from(&self.ns, app, url, n, extra).await
    }

    /// `n` connections from `app` to the speaks-first TCP port of Service `svc`.
    pub async fn tcp(&self, app: &str, svc: &str, n: u32) -> Result<Burst> {
        let addr = format!("{svc}.{}.svc.cluster.local:{}", self.ns, app::TCP_PORT);
        let n = n.to_string();
        Ok(Burst::parse(
            &self
                .testapp(&self.ns, app, &["tcp-burst", &addr, &n])
                .await?,
        ))
    }

    /// What `app` received so far, per caller.
    pub async fn received(&self, app: &str) -> Result<Received> {
        let url = format!("http://127.0.0.1:{}/received", app::APP_PORT);
        let v = self.testapp(&self.ns, app, &["get", &url]).await?;
        serde_json::from_value(v.clone()).map_err(|source| Error::Json {
            what: format!("/received of {app}"),
            text: v.to_string(),
            source,
        })
    }

    /// Polls `probe` until `done` holds of its result, at most `within`; fails with the last
    /// result seen.
    pub async fn eventually<T, F, Fut>(
        &self,
        what: &str,
        within: Duration,
        mut probe: F,
        done: impl Fn(&T) -> bool,
    ) -> Result<T>
    where
        T: std::fmt::Debug,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let start = Instant::now();
        loop {
            let last = probe().await;
            match &last {
                Ok(v) if done(v) => return last,
                _ if start.elapsed() >= within => {
                    return Err(Error::Timeout {
                        what: what.into(),
                        secs: within.as_secs(),
                        last: match last {
                            Ok(v) => format!(": last {v:?}"),
                            Err(e) => format!(": last error {e}"),
                        },
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Create namespace `name`, meshed by the profile, in `mode`.
pub async fn create_namespace(shared: &Shared, name: &str, mode: Mode) -> Result<()> {
    let p = &shared.profile;
    let meta = p.inject.merged(match mode {
        Mode::Deny => &p.deny,
        Mode::Allow => &p.allow,
    });
    let mut metadata = meta.json();
    metadata["name"] = name.into();
    metadata["labels"]["app.kubernetes.io/part-of"] = "smi-conformance".into();
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata});
    shared
        .kubectl
        .run(&["apply", "-f", "-"], Some(&ns.to_string()))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_counts_answers_per_app() {
        let b = Burst::parse(&serde_json::json!({
            "ok": 3, "failed": 1,
            "by_pod": {"app-b-5d9f7c6b8-x2x7q": 2, "app-b-5d9f7c6b8-aaaaa": 0, "app-c-6c-zz": 1},
            "errors": {"403 -": 1}
        }));
        assert_eq!(
            (b.from("app-b"), b.from("app-c"), b.from("app-a")),
            (2, 1, 0)
        );
        assert_eq!(b.share("app-b"), 0.5);
        assert_eq!(b.errors["403 -"], 1);
    }
}
