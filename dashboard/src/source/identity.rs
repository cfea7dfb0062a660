//! The identity issuer's expiry, read from tulle-identity's own `/metrics`.
//!
//! # Why from the metrics, and from each pod
//!
//! The issuer certificate and its key are in the Secret `tulle-identity-issuer`, which the
//! dashboard may not read (its ServiceAccount has no access to Secrets, on purpose: a
//! dashboard compromise must not leak the key that signs every mesh identity). tulle-identity
//! already publishes what the overview needs, the gauge
//! `identity_issuer_expiry_timestamp_seconds` (the loaded issuer's notAfter, 0 until one is
//! loaded), on its admin port (9990, plain HTTP, the same endpoint Prometheus scrapes). So
//! the dashboard reads that, and nothing else about the issuer:
//!
//! - no new permission: it already lists pods; the admin port answers any in-cluster client,
//!   and the number is not secret (the certificate is public; only the key is);
//! - no copy to keep in sync: publishing the notAfter elsewhere (a ConfigMap written by
//!   identity) would need identity to write to the API server and could go stale, while the
//!   gauge is what identity itself enforces (an expired issuer signs nothing);
//! - each identity **pod** is asked directly, by pod IP, not through the `tulle-identity`
//!   Service: the Service only routes to ready pods, and an identity with an expired issuer is
//!   not ready, so through the Service the expiry would vanish exactly when it matters. The
//!   earliest notAfter of the pods is shown (they load the same Secret; during a rotation the
//!   old one is the one that counts).
//!
//! When the dashboard runs outside the cluster (`KUBECONFIG`, by hand) pod IPs are not
//! reachable and the overview says so. The answer is reused for [`CACHE_TTL`].

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::model::{CertState, CertStatus, PodInfo};

/// The label selector of the identity pods.
pub const IDENTITY_SELECTOR: &str = "tulle.io/control-plane-component=identity";
/// tulle-identity's admin port (`/metrics`).
pub const ADMIN_PORT: u16 = 9990;
/// The gauge: the issuer's notAfter in Unix seconds (0 until an issuer is loaded).
pub const EXPIRY_METRIC: &str = "identity_issuer_expiry_timestamp_seconds";
/// How long the dashboard reuses the issuer's status (it changes once per rotation).
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// How long one `/metrics` request may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a `/metrics` answer read (identity's is about 2 KB).
const MAX_BYTES: u64 = 256 * 1024;

/// The value of [`EXPIRY_METRIC`] in a Prometheus text exposition.
pub fn expiry_from_metrics(text: &str) -> Result<Option<i64>, String> {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(EXPIRY_METRIC) else {
            continue;
        };
        // `name value` or `name{} value`; not a longer name with the same prefix.
        let rest = rest.strip_prefix("{}").unwrap_or(rest);
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let value = rest.split_whitespace().next().unwrap_or_default();
        let v: f64 = value
            .parse()
            .map_err(|_| format!("{EXPIRY_METRIC} is not a number: {value:?}"))?;
        return Ok((v.is_finite() && v > 0.0).then_some(v as i64));
    }
    Err(format!(
        "no {EXPIRY_METRIC} in its /metrics (a tulle-identity older than this dashboard?)"
    ))
}

/// GET `http://{ip}:{port}/metrics` (HTTP/1.0: the server closes the connection after the
/// answer, so no client library is needed for one small read).
pub async fn fetch_metrics(ip: &str, port: u16) -> Result<String, String> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let addr = format!("{host}:{port}");
    let get = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut body = Vec::new();
        s.take(MAX_BYTES)
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok::<_, String>(body)
    };
    let raw = tokio::time::timeout(TIMEOUT, get)
        .await
        .map_err(|_| format!("{addr} did not answer within {TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("http://{addr}/metrics answered {status:?}"));
    }
    Ok(body.to_string())
}

/// The issuer's validity from the identity pods' `/metrics` (the earliest notAfter), or why
/// it is not known.
pub async fn issuer_status(
    namespace: &str,
    pods: Result<Vec<PodInfo>, String>,
    port: u16,
) -> CertStatus {
    let source = format!("tulle-identity /metrics ({EXPIRY_METRIC})");
    let unknown = |why: String| CertStatus {
        name: "issuer".into(),
        source: source.clone(),
        state: CertState::Unknown(why),
    };
    let pods = match pods {
        Ok(p) => p,
        Err(e) => return unknown(format!("cannot list the identity pods: {e}")),
    };
    let pods: Vec<PodInfo> = pods.into_iter().filter(|p| !p.ip.is_empty()).collect();
    if pods.is_empty() {
        return unknown(format!(
            "no running tulle-identity pod in {namespace} ({IDENTITY_SELECTOR}): see `kubectl -n {namespace} get pods`"
        ));
    }
    let answers = futures::future::join_all(pods.iter().map(|p| async move {
        let text = fetch_metrics(&p.ip, port).await?;
        expiry_from_metrics(&text)
    }))
    .await;
    let mut earliest: Option<i64> = None;
    let mut errors = Vec::new();
    for (p, a) in pods.iter().zip(answers) {
        match a {
            Ok(Some(t)) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
            Ok(None) => errors.push(format!("{}: no issuer loaded yet", p.name)),
            Err(e) => errors.push(format!("{}: {e}", p.name)),
        }
    }
    match earliest {
        Some(not_after) => CertStatus {
            name: "issuer".into(),
            source,
            state: CertState::Known {
                subject: "the issuer tulle-identity loaded".into(),
                not_after,
            },
        },
        None => unknown(format!(
            "not read from tulle-identity's metrics ({}); `tulle check` reads it from the Secret",
            errors.join("; ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "# HELP identity_issuer_expiry_seconds Seconds until the issuer certificate expires.
# TYPE identity_issuer_expiry_seconds gauge
identity_issuer_expiry_seconds 86400.0
# TYPE identity_issuer_expiry_timestamp_seconds_extra gauge
identity_issuer_expiry_timestamp_seconds_extra 1.0
identity_issuer_expiry_timestamp_seconds 1893456000.0
# EOF
";

    #[test]
    fn reads_the_gauge_and_not_a_longer_name() {
        assert_eq!(expiry_from_metrics(TEXT), Ok(Some(1_893_456_000)));
        assert_eq!(
            expiry_from_metrics("identity_issuer_expiry_timestamp_seconds 0\n"),
            Ok(None)
        );
        assert!(expiry_from_metrics("other 1\n").is_err());
        assert!(expiry_from_metrics("identity_issuer_expiry_timestamp_seconds x\n").is_err());
    }

    #[tokio::test]
    async fn fetches_the_metrics_of_a_pod_and_takes_the_earliest_expiry() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /metrics HTTP/1.0"));
                let body = TEXT;
                let answer = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let text = fetch_metrics("127.0.0.1", port).await.unwrap();
        assert_eq!(expiry_from_metrics(&text), Ok(Some(1_893_456_000)));
        let pod = |name: &str, ip: &str| PodInfo {
            name: name.into(),
            ip: ip.into(),
            ..PodInfo::default()
        };
        let s = issuer_status(
            "tulle-system",
            Ok(vec![pod("identity-1", "127.0.0.1"), pod("pending", "")]),
            port,
        )
        .await;
        assert_eq!(
            s.state,
            CertState::Known {
                subject: "the issuer tulle-identity loaded".into(),
                not_after: 1_893_456_000
            }
        );
        // A closed port: the reason, not a hang.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = fetch_metrics("127.0.0.1", closed_port).await.unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");

        let none = issuer_status("tulle-system", Ok(vec![]), port).await;
        assert!(
            matches!(&none.state, CertState::Unknown(w) if w.contains("no running tulle-identity pod")),
            "{none:?}"
        );
    }
}
