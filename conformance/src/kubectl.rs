//! `kubectl`, the suite's one way to the cluster: any cluster a user can reach with kubectl
//! can be tested, and every step can be repeated by hand from the report.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

use crate::{Error, Result};

/// How to call kubectl: its path and the kubeconfig (the default one when `None`).
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub binary: PathBuf,
    pub kubeconfig: Option<PathBuf>,
}

impl Kubectl {
    /// `kubectl ARGS` (stdin: `input`), its stdout on exit status 0.
    pub async fn run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut cmd = tokio::process::Command::new(&self.binary);
        if let Some(k) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(k);
        }
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let fail = |message: String| Error::Kubectl {
            args: args.join(" "),
            message,
        };
        let mut child = cmd.spawn().map_err(|e| {
            fail(format!(
                "cannot start {}: {e} (install kubectl or pass --kubectl)",
                self.binary.display()
            ))
        })?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .await
                .map_err(|e| fail(format!("writing stdin: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            Err(fail(
                format!("{} {}", stderr.trim(), stdout.trim())
                    .trim()
                    .to_string(),
            ))
        }
    }

    /// `kubectl ARGS` as JSON.
    pub async fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let text = self.run(args, None).await?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            what: format!("kubectl {}", args.join(" ")),
            text,
            source,
        })
    }
}
