//! The embedded scraper: every interval, `GET http://<pod-ip>:4191/metrics` from every meshed
//! pod (each [`Target`] carries the address; bounded concurrency, a timeout per pod) into a
//! [`Sink`] (the [`crate::store::Store`]).
//!
//! Targets come from a function the caller gives (the controller's index, fed by its pod
//! watch), so this module knows nothing of Kubernetes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// Largest `/metrics` body read from one proxy (a proxy's series are bounded well below).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A pod to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `(namespace, name)`.
    pub pod: (String, String),
    /// Its proxy's admin address.
    pub addr: SocketAddr,
    /// Labels added to every series of the pod (`namespace`, `pod`, the owner kind's label).
    pub labels: Vec<(String, String)>,
}

/// Where scraped text goes.
pub trait Sink: Send + Sync + 'static {
    /// Stores one scrape of `pod` taken at `at`; `Err` describes text that could not be read.
    fn ingest(&self, target: &Target, at: SystemTime, text: &str) -> Result<(), String>;
    /// Drops what is older than the retention and pods that stopped being scraped.
    fn expire(&self, now: SystemTime);
}

/// Scraper settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time between rounds.
    pub interval: Duration,
    /// Time allowed for one pod's scrape.
    pub timeout: Duration,
    /// Pods scraped at once.
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            concurrency: 32,
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Pods scraped and stored.
    pub ok: usize,
    /// Pods that did not answer, answered an error or sent unreadable text.
    pub failed: usize,
}

/// Scrapes forever. `on_round` sees each round's outcome (for the caller's metrics).
pub async fn run<S: Sink>(
    cfg: Config,
    targets: impl Fn() -> Vec<Target> + Send + Sync + 'static,
    sink: Arc<S>,
    on_round: impl Fn(Round, Duration) + Send + Sync + 'static,
) {
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.interval * 2)
        .build_http::<Empty<Bytes>>();
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let round = scrape_round(&client, &cfg, targets(), sink.as_ref()).await;
        sink.expire(SystemTime::now());
        on_round(round, started.elapsed());
    }
}

async fn scrape_round<S: Sink>(
    client: &Client<HttpConnector, Empty<Bytes>>,
    cfg: &Config,
    targets: Vec<Target>,
    sink: &S,
) -> Round {
    let results: Vec<bool> = futures::stream::iter(targets)
        .map(|t| async move {
            let at = SystemTime::now();
            match tokio::time::timeout(cfg.timeout, fetch(client, t.addr)).await {
                Ok(Ok(text)) => match sink.ingest(&t, at, &text) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(pod = ?t.pod, error = %e, "unreadable /metrics");
                        false
                    }
                },
                Ok(Err(e)) => {
                    tracing::debug!(pod = ?t.pod, addr = %t.addr, error = %e, "scrape failed");
                    false
                }
                Err(_) => {
                    tracing::debug!(pod = ?t.pod, addr = %t.addr, "scrape timed out");
                    false
                }
            }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    let ok = results.iter().filter(|r| **r).count();
    Round {
        ok,
        failed: results.len() - ok,
    }
}

async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
) -> Result<String, String> {
    let uri: http::Uri = format!("http://{addr}/metrics")
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let resp = client.get(uri).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, String)>>);

    impl Sink for Recorded {
        fn ingest(&self, t: &Target, _: SystemTime, text: &str) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((t.pod.1.clone(), text.to_string()));
            Ok(())
        }
        fn expire(&self, _: SystemTime) {}
    }

    async fn serve_metrics(body: &'static str) -> SocketAddr {
        let app = axum_like(body);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let app = app.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), app)
                        .await;
                });
            }
        });
        addr
    }

    #[allow(clippy::type_complexity)]
    fn axum_like(
        body: &'static str,
    ) -> impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<http_body_util::Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = std::future::Ready<
            Result<hyper::Response<http_body_util::Full<Bytes>>, std::convert::Infallible>,
        >,
    > + Clone {
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (status, b) = if req.uri().path() == "/metrics" {
                (200, body)
            } else {
                (404, "")
            };
            std::future::ready(Ok(hyper::Response::builder()
                .status(status)
                .body(http_body_util::Full::new(Bytes::from_static(b.as_bytes())))
                .unwrap()))
        })
    }

    #[tokio::test]
    async fn a_round_stores_answering_pods_and_counts_the_others() {
        let up = serve_metrics("response_total 1\n").await;
        // Nothing listens on a just-closed port.
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let target = |name: &str, addr| Target {
            pod: ("ns".into(), name.into()),
            addr,
            labels: vec![],
        };
        let sink = Recorded::default();
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let round = scrape_round(
            &client,
            &Config::default(),
            vec![target("up", up), target("down", down)],
            &sink,
        )
        .await;
        assert_eq!(round, Round { ok: 1, failed: 1 });
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec![("up".to_string(), "response_total 1\n".to_string())]
        );
    }
}
