//! `tulle dashboard`: port-forwards a local port (127.0.0.1 only) to the dashboard pod in
//! tulle-system through the Kubernetes API (kube-rs port-forward over WebSocket, one stream
//! per connection), opens the browser (`xdg-open`, or `open` on macOS; otherwise prints
//! the URL) and serves until Ctrl-C.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::net::{TcpListener, TcpStream};

use crate::args::{DashboardArgs, GlobalArgs, Show};
use crate::manifest::{CONTROL_PLANE_COMPONENT_LABEL, DASHBOARD_PORT, NAMESPACE};
use crate::{Error, kubeconfig};

/// The URL of the dashboard behind a local port (`localhost` is in its Host allow-list).
pub fn url(port: u16) -> String {
    format!("http://localhost:{port}")
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A ready dashboard pod, waiting up to `wait`.
async fn ready_pod(pods: &Api<Pod>, wait: Duration) -> Result<String, Error> {
    let selector = format!("{CONTROL_PLANE_COMPONENT_LABEL}=dashboard");
    let deadline = Instant::now() + wait;
    loop {
        let found = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::Dashboard(format!("cannot list the pods of {NAMESPACE}: {e}")))?;
        if let Some(p) = found.items.iter().find(|p| is_ready(p)) {
            return Ok(p.metadata.name.clone().unwrap_or_default());
        }
        if Instant::now() >= deadline {
            let why = if found.items.is_empty() {
                "no dashboard pod: is it installed? (`tulle install` includes it unless \
                 --dashboard=false; the chart unless dashboard.enabled=false)"
            } else {
                "the dashboard pod is not ready"
            };
            return Err(Error::Dashboard(format!(
                "{why}; see `kubectl -n {NAMESPACE} get pods -l {selector}`"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Forwards one local connection to the pod.
async fn forward(pods: Api<Pod>, pod: String, mut conn: TcpStream) -> Result<(), String> {
    let port = DASHBOARD_PORT as u16;
    let mut pf = pods
        .portforward(&pod, &[port])
        .await
        .map_err(|e| format!("port-forward to {pod}: {e}"))?;
    let mut upstream = pf
        .take_stream(port)
        .ok_or_else(|| format!("port-forward to {pod}: no stream"))?;
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    drop(upstream);
    let _ = pf.join().await;
    Ok(())
}

/// Opens `url` with the platform's opener; false if there is none.
fn open_browser(url: &str) -> bool {
    for opener in ["xdg-open", "open"] {
        let spawned = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if spawned.is_ok() {
            return true;
        }
    }
    false
}

/// Runs `tulle dashboard` until Ctrl-C.
pub async fn run(global: &GlobalArgs, args: &DashboardArgs) -> Result<u8, Error> {
    let client = kubeconfig::client(global, Duration::from_secs(30))
        .await
        .map_err(|e| Error::Dashboard(format!("cannot reach the cluster: {e}")))?;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut pod = ready_pod(&pods, Duration::from_secs(args.wait)).await?;
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            Error::Dashboard(format!(
                "cannot listen on 127.0.0.1:{}: {e} (choose another with --port)",
                args.port
            ))
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Dashboard(e.to_string()))?
        .port();
    let url = url(port);
    println!("tulle dashboard available at:\n{url}");
    if args.show == Show::Browser && !open_browser(&url) {
        println!("(no xdg-open or open found: open the URL in your browser)");
    }
    println!("Press Ctrl-C to stop.");
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    // Forwarding errors (the pod went away): the next connections go to a new pod.
    let (failed, mut failures) = tokio::sync::mpsc::unbounded_channel::<String>();
    loop {
        let conn = tokio::select! {
            _ = &mut stop => return Ok(crate::exit::OK),
            c = listener.accept() => c,
        };
        let Ok((conn, _)) = conn else { continue };
        let mut stale = false;
        while let Ok(e) = failures.try_recv() {
            eprintln!("{e}");
            stale = true;
        }
        if stale {
            pod = ready_pod(&pods, Duration::from_secs(args.wait)).await?;
        }
        let (pods, pod, failed) = (pods.clone(), pod.clone(), failed.clone());
        tokio::spawn(async move {
            if let Err(e) = forward(pods, pod, conn).await {
                let _ = failed.send(e);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_localhost_which_the_dashboard_allows() {
        assert_eq!(url(50750), "http://localhost:50750");
    }
}
