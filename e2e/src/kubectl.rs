//! `kubectl` where it is simpler than the API: apply, exec, logs, port-forward. Uses `KUBECONFIG`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{Error, Result};

const REQUEST_TIMEOUT: &str = "--request-timeout=60s";

fn finish(args: &[&str], out: std::process::Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Kubectl {
            args: args.join(" "),
            stderr: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    }
}

/// Run `kubectl ARGS`; stdout on success, stderr in the error.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .arg(REQUEST_TIMEOUT)
        .args(args)
        .output()
        .map_err(|e| Error::Io(format!("running kubectl (is it installed?): {e}")))?;
    finish(args, out)
}

/// Run `kubectl ARGS` with `input` on stdin.
pub fn run_stdin(args: &[&str], input: &str) -> Result<String> {
    let mut child = Command::new("kubectl")
        .arg(REQUEST_TIMEOUT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io(format!("running kubectl (is it installed?): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| Error::Io(format!("writing to kubectl: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Io(format!("waiting for kubectl: {e}")))?;
    finish(args, out)
}

/// `kubectl exec -n NS POD [-c CONTAINER] -- CMD...`: the command's stdout.
pub fn exec(ns: &str, pod: &str, container: Option<&str>, cmd: &[&str]) -> Result<String> {
    let mut args = vec!["exec", "-n", ns, pod];
    if let Some(c) = container {
        args.extend(["-c", c]);
    }
    args.push("--");
    args.extend(cmd);
    run(&args)
}

/// `kubectl logs -n NS POD [-c CONTAINER]`.
pub fn logs(ns: &str, pod: &str, container: Option<&str>) -> Result<String> {
    let mut args = vec!["logs", "-n", ns, pod];
    if let Some(c) = container {
        args.extend(["-c", c]);
    }
    run(&args)
}

/// A running `kubectl port-forward`; stopped on drop.
#[derive(Debug)]
pub struct PortForward {
    child: Child,
    /// The local address that forwards to the pod port.
    pub local: std::net::SocketAddr,
}

impl PortForward {
    /// Forward a free local port on 127.0.0.1 to `target` (e.g. `pod/x` or `svc/y`) port `port`.
    pub fn start(ns: &str, target: &str, port: u16) -> Result<Self> {
        let mut child = Command::new("kubectl")
            .args([
                "port-forward",
                "-n",
                ns,
                target,
                &format!(":{port}"),
                "--address=127.0.0.1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Io(format!("running kubectl port-forward: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Io("no stdout from kubectl".into()))?;
        // "Forwarding from 127.0.0.1:41234 -> 8080"; kubectl exits (EOF) if it cannot forward.
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        // Keep draining: kubectl logs every connection and dies of EPIPE if nobody reads.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let local = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                Error::Kubectl {
                    args: format!("port-forward -n {ns} {target} :{port}"),
                    stderr: format!("{line}{err}"),
                }
            })?;
        Ok(Self { child, local })
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET to `addr` (10 s timeout): (status code, body).
pub async fn http_get(addr: std::net::SocketAddr, path_and_query: &str) -> Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| Error::Io(format!("GET http://{addr}{path_and_query} timed out")))?
        .map_err(|e| Error::Io(format!("GET http://{addr}{path_and_query}: {e}")))?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
