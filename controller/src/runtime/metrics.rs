//! Wiring of the golden metrics: the source (the embedded scraper and store, or the user's
//! Prometheus), the SMI Traffic Metrics API server and what it needs of Kubernetes.

use super::{RunError, bind};
use crate::{
    core::Index,
    k8s::metrics_api::{
        KubeCatalog, SarAuthorizer, maintain_api_service_bundle, maintain_front_proxy,
    },
    metrics_api::{handler::Api, server},
};
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use std::{
    net::{SocketAddr, SocketAddrV4, SocketAddrV6},
    sync::Arc,
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};
use tulle_api::{certify::SwappableCert, proxy_contract::ADMIN_PORT as PROXY_ADMIN_PORT};
use tulle_metrics::{
    Source,
    promql::Prometheus,
    scrape::{self, Target},
    store::{Store, StoreConfig},
};

/// Flags of the metrics backend and the SMI Traffic Metrics API.
#[derive(Clone, Debug, clap::Args)]
pub struct MetricsArgs {
    /// Address of the SMI Traffic Metrics API server (HTTPS; the API server reaches it
    /// through the APIService v1alpha1.metrics.smi-spec.io).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_METRICS_API_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub metrics_api_addr: SocketAddr,
    /// Query this Prometheus (which scrapes the proxies, see docs/prometheus.md) instead of
    /// the embedded scraper and store.
    #[arg(long, env = "TULLE_CONTROLLER_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// How often the embedded scraper reads every meshed pod's /metrics (e.g. 10s).
    #[arg(long, env = "TULLE_CONTROLLER_METRICS_SCRAPE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub metrics_scrape_interval: Duration,
    /// How long the embedded store keeps samples (e.g. 1h).
    #[arg(long, env = "TULLE_CONTROLLER_METRICS_RETENTION", default_value = "1h", value_parser = parse_duration)]
    pub metrics_retention: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::metrics_api::path::parse_window(s).map_err(|e| e.0)
}

/// Gauges of the embedded scraper.
#[derive(Clone, Debug, Default)]
struct ScrapeMetrics {
    ok: Gauge,
    failed: Gauge,
    duration_ms: Gauge,
    series: Gauge,
    bytes: Gauge,
}

impl ScrapeMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("tulle_metrics");
        r.register(
            "scrape_pods_ok",
            "Pods scraped in the last round",
            self.ok.clone(),
        );
        r.register(
            "scrape_pods_failed",
            "Pods that failed the last round",
            self.failed.clone(),
        );
        r.register(
            "scrape_round_duration_ms",
            "Duration of the last scrape round",
            self.duration_ms.clone(),
        );
        r.register(
            "store_series",
            "Series in the embedded store",
            self.series.clone(),
        );
        r.register(
            "store_bytes",
            "Approximate bytes of the embedded store",
            self.bytes.clone(),
        );
    }
}

fn targets(index: &Index) -> Vec<Target> {
    index
        .meshed_pods()
        .into_iter()
        .map(|p| {
            let addr = match p.ip {
                std::net::IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, PROXY_ADMIN_PORT)),
                std::net::IpAddr::V6(ip) => {
                    SocketAddr::V6(SocketAddrV6::new(ip, PROXY_ADMIN_PORT, 0, 0))
                }
            };
            let mut labels = vec![
                ("namespace".to_string(), p.namespace.clone()),
                ("pod".to_string(), p.name.clone()),
            ];
            labels.extend(p.owner.clone());
            Target {
                pod: (p.namespace, p.name),
                addr,
                labels,
            }
        })
        .collect()
}

fn source(
    m: &MetricsArgs,
    index: Arc<Index>,
    registry: &mut Registry,
) -> Result<Arc<dyn Source>, RunError> {
    if let Some(url) = &m.prometheus_url {
        tracing::info!(%url, "golden metrics from Prometheus");
        let p =
            Prometheus::new(url).map_err(|e| RunError::Serve(format!("--prometheus-url: {e}")))?;
        return Ok(Arc::new(p));
    }
    let store = Arc::new(Store::new(StoreConfig {
        interval: m.metrics_scrape_interval,
        retention: m.metrics_retention,
        ..StoreConfig::default()
    }));
    let gauges = ScrapeMetrics::default();
    gauges.register(registry);
    let cfg = scrape::Config {
        interval: m.metrics_scrape_interval,
        timeout: m.metrics_scrape_interval.min(Duration::from_secs(5)),
        ..scrape::Config::default()
    };
    tracing::info!(interval = ?cfg.interval, retention = ?m.metrics_retention, "golden metrics from the embedded scraper");
    let s = store.clone();
    tokio::spawn(scrape::run(
        cfg,
        move || targets(&index),
        store.clone(),
        move |round, took| {
            let set = |g: &Gauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
            set(&gauges.ok, round.ok);
            set(&gauges.failed, round.failed);
            set(&gauges.series, s.series_count());
            set(&gauges.bytes, s.approx_bytes());
            gauges
                .duration_ms
                .set(i64::try_from(took.as_millis()).unwrap_or(i64::MAX));
        },
    ));
    Ok(store)
}

/// Starts the metrics source and the API server (with the webhook's serving certificate and
/// CA bundle).
pub(super) async fn start(
    m: &MetricsArgs,
    client: kube::Client,
    index: Arc<Index>,
    cert: Arc<SwappableCert>,
    bundle: watch::Receiver<String>,
    registry: &mut Registry,
) -> Result<JoinHandle<std::io::Result<()>>, RunError> {
    let source = source(m, index.clone(), registry)?;
    let (front_tx, front_rx) = watch::channel(None);
    tokio::spawn(maintain_front_proxy(client.clone(), front_tx));
    tokio::spawn(maintain_api_service_bundle(client.clone(), bundle));
    let api = Arc::new(Api {
        source,
        index,
        catalog: Arc::new(KubeCatalog(client.clone())),
        authorizer: Arc::new(SarAuthorizer(client)),
        now: Arc::new(|| {
            k8s_openapi::jiff::Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default()
        }),
    });
    let listener = bind(m.metrics_api_addr).await?;
    tracing::info!(addr = %m.metrics_api_addr, "serving the SMI Traffic Metrics API (HTTPS, aggregated: metrics.smi-spec.io/v1alpha1)");
    Ok(tokio::spawn(server::serve(listener, cert, front_rx, api)))
}
