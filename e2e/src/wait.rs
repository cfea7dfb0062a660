//! Waiting with timeouts that say what was not ready.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};

use crate::{Error, Result};

/// Poll `check` every 500 ms until it returns `Some`, or fail after `timeout` with `diagnose()`'s text.
pub async fn until<T, F, Fut, D, DFut>(
    what: &str,
    timeout: Duration,
    mut check: F,
    diagnose: D,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    D: FnOnce() -> DFut,
    DFut: Future<Output = String>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout,
                diagnostics: diagnose().await,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Retry `kubectl exec` of `cmd` until it succeeds (e.g. while a new Service's endpoints and DNS
/// propagate); fails after `timeout` with the last error.
pub async fn exec_ok(
    ns: &str,
    pod: &str,
    container: Option<&str>,
    cmd: &[&str],
    timeout: Duration,
) -> Result<String> {
    let last = std::sync::Mutex::new(String::new());
    until(
        &format!("`{}` to succeed in pod {ns}/{pod}", cmd.join(" ")),
        timeout,
        || async {
            match crate::kubectl::exec(ns, pod, container, cmd) {
                Ok(out) => Some(out),
                Err(e) => {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                    None
                }
            }
        },
        || async {
            format!(
                "last error: {}",
                last.lock().unwrap_or_else(|p| p.into_inner())
            )
        },
    )
    .await
}

fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Wait until `n` pods matching `selector` (e.g. `app=server`) in `ns` are Ready; returns them.
pub async fn pods_ready(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(selector);
    until(
        &format!("{n} Ready pod(s) with {selector} in {ns}"),
        timeout,
        || async {
            let pods = api.list(&lp).await.ok()?.items;
            let ready: Vec<Pod> = pods.into_iter().filter(pod_is_ready).collect();
            (ready.len() >= n).then_some(ready)
        },
        || describe(client, ns),
    )
    .await
}

/// Wait until the pod `name` in `ns` is Ready.
pub async fn pod_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    until(
        &format!("pod {ns}/{name} Ready"),
        timeout,
        || async { api.get_opt(name).await.ok().flatten().filter(pod_is_ready) },
        || describe(client, ns),
    )
    .await
}

/// What the pods of `ns` are doing (phase, every container's state) and the namespace's recent events.
pub async fn describe(client: &kube::Client, ns: &str) -> String {
    let mut out = format!("--- pods in {ns}:\n");
    match Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(pods) if pods.items.is_empty() => out.push_str("  (none)\n"),
        Ok(pods) => {
            for p in pods.items {
                let st = p.status.unwrap_or_default();
                let name = p.metadata.name.unwrap_or_default();
                out.push_str(&format!(
                    "  {name}: phase={}\n",
                    st.phase.unwrap_or_default()
                ));
                let all = st
                    .init_container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .chain(st.container_statuses.unwrap_or_default());
                for c in all {
                    let state = c.state.map(|s| {
                        if let Some(w) = s.waiting {
                            format!(
                                "waiting {} {}",
                                w.reason.unwrap_or_default(),
                                w.message.unwrap_or_default()
                            )
                        } else if let Some(t) = s.terminated {
                            format!(
                                "terminated exit={} {} {}",
                                t.exit_code,
                                t.reason.unwrap_or_default(),
                                t.message.unwrap_or_default()
                            )
                        } else {
                            "running".to_string()
                        }
                    });
                    out.push_str(&format!(
                        "    {}: ready={} restarts={} {}\n",
                        c.name,
                        c.ready,
                        c.restart_count,
                        state.unwrap_or_default()
                    ));
                }
            }
        }
        Err(e) => out.push_str(&format!("  (listing pods failed: {e})\n")),
    }
    out.push_str(&format!("--- events in {ns}:\n"));
    if let Ok(events) = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        for e in events.items.iter().rev().take(20).rev() {
            let obj = &e.involved_object;
            out.push_str(&format!(
                "  {} {}/{}: {} {}\n",
                e.type_.clone().unwrap_or_default(),
                obj.kind.clone().unwrap_or_default(),
                obj.name.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            ));
        }
    }
    out
}
