//! Wiring of the admission server (the proxy injector and the CRD conversion webhooks that
//! [`crate::webhook`] implements): its flags, the certificate loop, the caBundle reconciler
//! and the HTTPS server.

use super::{Args, RunError, bind};
use crate::{
    inject,
    webhook::{
        self, AnchorsFile, Injector, Metrics, ca_bundle, certs,
        cluster::KubeCluster,
        crd_bundle, server,
        store::{self, SecretStore},
    },
};
use kube::{Api, Client};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use tulle_api::{ServiceAccountIdentity, certify::SwappableCert};

const DEFAULT_PROXY_IMAGE: &str = concat!("localhost/tulle/proxy:", env!("CARGO_PKG_VERSION"));
/// How often the Secret is re-read (picks up another replica's rotation).
const CERT_CHECK: Duration = Duration::from_secs(60);

/// Flags of the injector webhook.
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Address of the injector webhook HTTPS server.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    pub webhook_addr: SocketAddr,
    /// The MutatingWebhookConfiguration whose caBundle the controller keeps current.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_WEBHOOK_CONFIG_NAME",
        default_value = "tulle-proxy-injector"
    )]
    pub webhook_config_name: String,
    /// The Service in front of the webhook (names in the serving certificate).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_WEBHOOK_SERVICE_NAME",
        default_value = "tulle-controller"
    )]
    pub webhook_service_name: String,
    /// The Secret (in the controller namespace) holding the webhook CA and certificate.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_WEBHOOK_SECRET_NAME",
        default_value = "tulle-webhook-tls"
    )]
    pub webhook_secret_name: String,
    /// Switches the injector off (no webhook server, no certificate, no caBundle updates).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_INJECT_DISABLED",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub inject_disabled: bool,
    /// The proxy image to inject.
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_IMAGE", default_value = DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,
    /// Further proxy images a `config.tulle.io/proxy-image` annotation may choose (comma
    /// separated); the image also runs the privileged init step, so any other is refused.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_ALLOWED_PROXY_IMAGES",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub allowed_proxy_images: Vec<String>,
    /// The IP families of the cluster's pod network (comma separated, as a Service's
    /// `ipFamilies`: `IPv4`, `IPv6`). The proxy intercepts only IPv4, so with `IPv6` among them
    /// every pod is refused injection (reason `ipv6`) rather than meshed with an IPv6 bypass.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_IP_FAMILIES",
        value_delimiter = ',',
        num_args = 1..,
        default_value = "IPv4",
        value_parser = clap::builder::PossibleValuesParser::new(["IPv4", "IPv6"])
    )]
    pub ip_families: Vec<String>,
    /// The proxy version (annotation tulle.io/proxy-version).
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub proxy_version: String,
    /// Default log filter of injected proxies.
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_LOG_LEVEL", default_value = "info")]
    pub proxy_log_level: String,
    /// tulle-identity's address for proxies [default: tulle-identity.NAMESPACE.svc.CLUSTER_DOMAIN:8080].
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_IDENTITY_SVC_ADDR")]
    pub proxy_identity_svc_addr: Option<String>,
    /// The controller's destination address for proxies [default: WEBHOOK_SERVICE_NAME.NAMESPACE.svc.CLUSTER_DOMAIN:DESTINATION_PORT].
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_DESTINATION_SVC_ADDR")]
    pub proxy_destination_svc_addr: Option<String>,
    /// The controller's identity for proxies [default: SERVICE_ACCOUNT.NAMESPACE.serviceaccount.identity.tulle.TRUST_DOMAIN].
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_DESTINATION_SVC_NAME")]
    pub proxy_destination_svc_name: Option<String>,
    /// The controller's inbound policy address for proxies [default: WEBHOOK_SERVICE_NAME.NAMESPACE.svc.CLUSTER_DOMAIN:POLICY_PORT].
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_POLICY_SVC_ADDR")]
    pub proxy_policy_svc_addr: Option<String>,
    /// The controller's identity on the policy API, for proxies [default: the destination's].
    #[arg(long, env = "TULLE_CONTROLLER_PROXY_POLICY_SVC_NAME")]
    pub proxy_policy_svc_name: Option<String>,
    /// This controller's pod name (the reporting instance of its Events).
    #[arg(long, env = "TULLE_CONTROLLER_POD_NAME")]
    pub pod_name: Option<String>,
}

/// The running webhook.
pub(super) struct Webhook {
    /// Installed once the serving certificate is loaded (readiness).
    pub(super) cert: Arc<SwappableCert>,
    /// The HTTPS server.
    pub(super) server: JoinHandle<std::io::Result<()>>,
    /// The CA bundle of the serving certificate (for the metrics APIService too).
    pub(super) bundle: watch::Receiver<String>,
}

/// What the injector puts in pods, from the flags.
pub fn inject_config(args: &Args) -> inject::Config {
    let w = &args.webhook;
    let (ns, cd) = (&args.namespace, &args.cluster_domain);
    inject::Config {
        proxy_image: w.proxy_image.clone(),
        allowed_images: (w.allowed_proxy_images.iter())
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect(),
        ipv6: w.ip_families.iter().any(|f| f == "IPv6"),
        proxy_version: w.proxy_version.clone(),
        trust_domain: args.trust_domain.clone(),
        identity_addr: w
            .proxy_identity_svc_addr
            .clone()
            .unwrap_or_else(|| format!("tulle-identity.{ns}.svc.{cd}:8080")),
        identity_name: args.identity_server_name.clone(),
        destination_addr: w.proxy_destination_svc_addr.clone().unwrap_or_else(|| {
            format!(
                "{}.{ns}.svc.{cd}:{}",
                w.webhook_service_name,
                args.destination_addr.port()
            )
        }),
        destination_name: w.proxy_destination_svc_name.clone().unwrap_or_else(|| {
            ServiceAccountIdentity::new(&args.service_account, ns, &args.trust_domain).dns_name()
        }),
        policy_addr: w.proxy_policy_svc_addr.clone().unwrap_or_else(|| {
            format!(
                "{}.{ns}.svc.{cd}:{}",
                w.webhook_service_name,
                args.policy_addr.port()
            )
        }),
        policy_name: w
            .proxy_policy_svc_name
            .clone()
            .or_else(|| w.proxy_destination_svc_name.clone())
            .unwrap_or_else(|| {
                ServiceAccountIdentity::new(&args.service_account, ns, &args.trust_domain)
                    .dns_name()
            }),
        log_level: w.proxy_log_level.clone(),
        resources: inject::Resources::default(),
    }
}

/// Starts the webhook (None when disabled).
pub(super) async fn start(
    args: &Args,
    client: Client,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Option<Webhook>, RunError> {
    let w = &args.webhook;
    if w.inject_disabled {
        tracing::info!("proxy injector disabled (TULLE_CONTROLLER_INJECT_DISABLED)");
        return Ok(None);
    }
    let metrics = Metrics::default();
    metrics.register(registry);
    let cert = Arc::new(SwappableCert::default());
    let (bundle_tx, bundle_rx) = watch::channel(String::new());
    let names = certs::service_dns_names(
        &w.webhook_service_name,
        &args.namespace,
        &args.cluster_domain,
    );
    tokio::spawn(store::maintain(
        SecretStore::new(
            Api::namespaced(client.clone(), &args.namespace),
            &w.webhook_secret_name,
        ),
        names,
        cert.clone(),
        bundle_tx,
        metrics.clone(),
        CERT_CHECK,
    ));
    tokio::spawn(ca_bundle::maintain(
        Api::all(client.clone()),
        w.webhook_config_name.clone(),
        bundle_rx.clone(),
    ));
    tokio::spawn(crd_bundle::maintain(
        Api::all(client.clone()),
        bundle_rx.clone(),
    ));
    let config = inject_config(args);
    tracing::info!(?config, "proxy injector configured");
    let injector = Arc::new(Injector {
        config,
        anchors: AnchorsFile::new(args.trust_anchors.clone()),
        cluster: Arc::new(KubeCluster::new(client, w.pod_name.clone())),
        metrics,
    });
    let tls =
        webhook::server::server_config(cert.clone()).map_err(|e| RunError::Tls(e.to_string()))?;
    let listener = bind(w.webhook_addr).await?;
    tracing::info!(addr = %w.webhook_addr, "serving the proxy injector and TrafficSplit conversion webhooks (HTTPS, POST /inject, POST /convert)");
    let server = tokio::spawn(server::serve(listener, tls, injector));
    Ok(Some(Webhook {
        cert,
        server,
        bundle: bundle_rx,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_match_the_install_contract() {
        let args = Args::try_parse_from(["tulle-controller"]).unwrap();
        let w = &args.webhook;
        assert_eq!(w.webhook_addr.to_string(), "0.0.0.0:9443");
        assert_eq!(w.webhook_config_name, "tulle-proxy-injector");
        assert_eq!(w.webhook_service_name, "tulle-controller");
        assert!(!w.inject_disabled);
        let c = inject_config(&args);
        assert_eq!(
            c.proxy_image,
            concat!("localhost/tulle/proxy:", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(c.proxy_version, env!("CARGO_PKG_VERSION"));
        assert!(
            c.allowed_images.is_empty(),
            "only the install's own image by default"
        );
        let args = Args::try_parse_from([
            "tulle-controller",
            "--allowed-proxy-images",
            "r.example/proxy:1, r.example/proxy:2",
        ])
        .unwrap();
        assert_eq!(
            inject_config(&args).allowed_images,
            ["r.example/proxy:1", "r.example/proxy:2"]
        );
        assert!(!c.ipv6, "IPv4 by default");
        for (families, ipv6) in [("IPv4", false), ("IPv4,IPv6", true), ("IPv6", true)] {
            let args =
                Args::try_parse_from(["tulle-controller", "--ip-families", families]).unwrap();
            assert_eq!(inject_config(&args).ipv6, ipv6, "{families}");
        }
        assert!(Args::try_parse_from(["tulle-controller", "--ip-families", "ipx"]).is_err());
        assert_eq!(
            c.identity_addr,
            "tulle-identity.tulle-system.svc.cluster.local:8080"
        );
        assert_eq!(
            c.identity_name,
            "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local"
        );
        assert_eq!(
            c.destination_addr,
            "tulle-controller.tulle-system.svc.cluster.local:8086"
        );
        assert_eq!(
            c.destination_name,
            "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local"
        );
        assert_eq!(
            c.policy_addr,
            "tulle-controller.tulle-system.svc.cluster.local:8090"
        );
        assert_eq!(c.policy_name, c.destination_name);
        assert_eq!(args.policy_addr.to_string(), "0.0.0.0:8090");
        assert_eq!(
            args.default_inbound_policy,
            crate::core::DefaultPolicy::Allow
        );
        let deny =
            Args::try_parse_from(["tulle-controller", "--default-inbound-policy", "deny"]).unwrap();
        assert_eq!(
            deny.default_inbound_policy,
            crate::core::DefaultPolicy::Deny
        );
        assert!(
            Args::try_parse_from(["tulle-controller", "--default-inbound-policy", "open"]).is_err()
        );
        let off = Args::try_parse_from(["tulle-controller", "--inject-disabled", "true"]).unwrap();
        assert!(off.webhook.inject_disabled);
    }
}
