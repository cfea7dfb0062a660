//! A steady background load (`$LOAD_URL` at `$LOAD_RPS` requests per second, default 20) over
//! one keep-alive client, with its outcome served at `/load` as JSON: totals, failures with
//! their last errors, and successes counted per answering pod (the `pod` field of the body).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const KEPT_ERRORS: usize = 20;

/// Counters of the load loop.
#[derive(Debug, Default)]
pub struct Stats {
    total: u64,
    ok: u64,
    failed: u64,
    by_pod: BTreeMap<String, u64>,
    errors: Vec<String>,
}

impl Stats {
    fn fail(&mut self, e: String) {
        self.failed += 1;
        if self.errors.len() == KEPT_ERRORS {
            self.errors.remove(0);
        }
        self.errors.push(e);
    }

    pub fn to_json(&self) -> Value {
        json!({"total": self.total, "ok": self.ok, "failed": self.failed,
               "by_pod": self.by_pod, "errors": self.errors})
    }
}

pub type Shared = Arc<Mutex<Stats>>;

/// Starts the loop when `$LOAD_URL` is set.
pub fn start_from_env() -> anyhow::Result<Option<Shared>> {
    let Some(url) = std::env::var("LOAD_URL").ok().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let rps: u32 = match std::env::var("LOAD_RPS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| anyhow::anyhow!("LOAD_RPS={v:?} is not a positive integer"))?,
        Err(_) => 20,
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("LOAD_URL={url:?} is not a URL: {e}"))?;
    let stats = Shared::default();
    tokio::spawn(run(uri, rps, stats.clone()));
    println!("load: GET {url} at {rps}/s, results at /load");
    Ok(Some(stats))
}

async fn run(uri: hyper::Uri, rps: u32, stats: Shared) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rps);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (client, uri, stats) = (client.clone(), uri.clone(), stats.clone());
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                let resp = client.get(uri).await?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await?.to_bytes();
                anyhow::Ok((status, body))
            })
            .await;
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            s.total += 1;
            match outcome {
                Ok(Ok((status, body))) if status < 400 => {
                    s.ok += 1;
                    let pod = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["pod"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "?".into());
                    *s.by_pod.entry(pod).or_default() += 1;
                }
                Ok(Ok((status, body))) => s.fail(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body)
                )),
                Ok(Err(e)) => s.fail(format!("{e:#}")),
                Err(_) => s.fail("timed out after 10s".into()),
            }
        });
    }
}
