//! Bursts of requests or connections, counted by who answered: `tulle-testapp burst URL N
//! [--h2] [-X METHOD] [-H name:value]...` sends N requests (GET by default) over one keep-alive client (HTTP/2 with prior
//! knowledge with `--h2`) and `tulle-testapp tcp-burst HOST:PORT N` opens N connections and
//! reads what the server says first. Both print one JSON object: `ok`, `failed`, `by_pod`
//! (answers per pod, from the `pod` field of the body), `errors` (status and
//! `tulle-proxy-error` per failed answer, counted).
//!
//! The TCP server side: with `$TCP_PORT` set, the app also listens there and writes
//! `{"pod": "<name>"}` to every connection, then closes it (a server-speaks-first protocol).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Counts {
    ok: u64,
    failed: u64,
    by_pod: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Counts {
    fn answer(&mut self, body: &[u8]) {
        let pod = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["pod"].as_str().map(String::from))
            .unwrap_or_else(|| "?".into());
        self.ok += 1;
        *self.by_pod.entry(pod).or_default() += 1;
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        *self.errors.entry(what).or_default() += 1;
    }

    fn print(&self) {
        println!(
            "{}",
            json!({"ok": self.ok, "failed": self.failed, "by_pod": self.by_pod, "errors": self.errors})
        );
    }
}

/// `burst URL N [--h2] [-H name:value]...`
pub async fn http(args: &[&str]) -> anyhow::Result<()> {
    let [url, n, rest @ ..] = args else {
        anyhow::bail!("usage: tulle-testapp burst URL N [--h2] [-X METHOD] [-H name:value]...");
    };
    let n: u64 = n.parse().context("N must be a number")?;
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad url {url:?}"))?;
    let mut h2 = false;
    let mut method = hyper::Method::GET;
    let mut headers = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match *a {
            "--h2" => h2 = true,
            "-X" => method = it.next().context("-X needs a method")?.parse()?,
            "-H" => {
                let h = it.next().context("-H needs name:value")?;
                let (k, v) = h.split_once(':').context("-H needs name:value")?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let client = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http::<Empty<Bytes>>();
    let mut counts = Counts::default();
    for _ in 0..n {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(uri.clone());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let req = req.body(Empty::new())?;
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            let resp = client.request(req).await?;
            let status = resp.status().as_u16();
            let reason = resp
                .headers()
                .get("tulle-proxy-error")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, reason, body))
        })
        .await;
        match outcome {
            Ok(Ok((200, _, body))) => counts.answer(&body),
            Ok(Ok((status, reason, _))) => counts.fail(format!("{status} {reason}")),
            Ok(Err(e)) => counts.fail(format!("error: {e}")),
            Err(_) => counts.fail("timeout".into()),
        }
    }
    counts.print();
    Ok(())
}

/// `tcp-burst HOST:PORT N`
pub async fn tcp(args: &[&str]) -> anyhow::Result<()> {
    let [addr, n] = args else {
        anyhow::bail!("usage: tulle-testapp tcp-burst HOST:PORT N");
    };
    let n: u64 = n.parse().context("N must be a number")?;
    let mut counts = Counts::default();
    for _ in 0..n {
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            anyhow::Ok(buf)
        })
        .await;
        match got {
            Ok(Ok(buf)) if !buf.is_empty() => counts.answer(&buf),
            Ok(Ok(_)) => counts.fail("closed without an answer".into()),
            Ok(Err(e)) => counts.fail(format!("error: {e}")),
            Err(_) => counts.fail("timeout".into()),
        }
    }
    counts.print();
    Ok(())
}

/// `tcp-hold HOST:PORT SECONDS`: holds one connection open for up to SECONDS, writing a
/// byte every 100 ms and reading it back (the echo server of `$TCP_ECHO_PORT`); prints
/// `{"connected": bool, "closed_after_ms": N | null}` when the peer closed it or the time is up.
pub async fn hold(args: &[&str]) -> anyhow::Result<()> {
    let [addr, secs] = args else {
        anyhow::bail!("usage: tulle-testapp tcp-hold HOST:PORT SECONDS");
    };
    let secs: u64 = secs.parse().context("SECONDS must be a number")?;
    let t0 = std::time::Instant::now();
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    else {
        println!("{}", json!({"connected": false, "closed_after_ms": null}));
        return Ok(());
    };
    let mut buf = [0u8; 1];
    let mut closed = None;
    let mut echoed = false;
    while t0.elapsed() < Duration::from_secs(secs) {
        let alive = async {
            s.write_all(b"x").await?;
            let n = s.read(&mut buf).await?;
            anyhow::Ok(n == 1)
        };
        match tokio::time::timeout(Duration::from_secs(5), alive).await {
            Ok(Ok(true)) => echoed = true,
            _ => {
                closed = Some(t0.elapsed().as_millis() as u64);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{}",
        json!({"connected": echoed, "closed_after_ms": closed})
    );
    Ok(())
}

/// Serves a TCP echo on `port` (the other side of `tcp-hold`).
pub async fn serve_echo(port: u16) -> anyhow::Result<()> {
    let l = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding TCP port {port}"))?;
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// Serves the speaks-first TCP protocol on `port`.
pub async fn serve_tcp(port: u16, pod: String) -> anyhow::Result<()> {
    let l = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding TCP port {port}"))?;
    let answer = json!({"pod": pod}).to_string();
    loop {
        let (mut s, _) = match l.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}
