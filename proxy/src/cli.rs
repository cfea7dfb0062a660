//! The binary's commands (kept out of `main.rs` so they are testable and `main` stays thin).

use std::process::ExitCode;
use std::sync::Arc;

use crate::app::Proxy;
use crate::config::IdentitySource;
use crate::config::{Config, Env};
use crate::control::Timing as DestTiming;
use crate::control::destination::DestinationDiscovery;
use crate::control::identity::{Certifier, Timing};
use crate::discovery::{Resolve, StaticDiscovery, StaticFile};
use crate::tls::{CredentialSource, FileSource, Tls};

pub const USAGE: &str = "usage:
  tulle-proxy [run]                 run the proxy; configured by TULLE_PROXY_* environment variables
  tulle-proxy init [options]        install the iptables redirection rules in this network namespace
                                    (tulle-proxy init --help for options)
  tulle-proxy dev-certs DIR NAME... write a development trust anchor (DIR/ca.pem) and, per identity
                                    NAME, DIR/NAME.crt and DIR/NAME.key";

const EX_USAGE: u8 = 64;

/// The TLS configuration and, in identity service mode, the client that fills it.
fn identity(config: &Config) -> Result<(Tls, Option<Certifier>), String> {
    let id = &config.identity;
    match &id.source {
        IdentitySource::Files {
            cert_file,
            key_file,
        } => {
            let source = FileSource {
                name: id.name.clone(),
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                trust_anchors: id.trust_anchors.clone(),
            };
            let tls = source
                .load()
                .and_then(Tls::new)
                .map_err(|e| e.to_string())?;
            Ok((tls, None))
        }
        IdentitySource::Service { svc, token_file } => {
            let origin = id.trust_anchors.origin();
            let pem = id
                .trust_anchors
                .pem()
                .map_err(|e| format!("reading trust anchors {}: {e}", origin.display()))?;
            let roots = tulle_api::certify::roots_from_pem(&pem)
                .map_err(|e| format!("{}: {e}", origin.display()))?;
            let tls = Tls::pending(id.name.clone(), roots).map_err(|e| e.to_string())?;
            let c = Certifier::new(
                svc,
                &id.name,
                token_file.clone(),
                tls.identity_client(),
                Timing::default(),
            )
            .map_err(|e| e.to_string())?;
            Ok((tls, Some(c)))
        }
    }
}

/// Runs the proxy until SIGTERM/SIGINT, then drains.
pub fn run_proxy() -> ExitCode {
    let config = match Config::from_strings(&Env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tulle-proxy: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        // Colours only on a terminal: container logs stay plain text for kubectl and grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();

    let rt = if config.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tulle-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // gRPC channels (identity, destination) spawn their workers on the runtime.
    let enter = rt.enter();
    let (tls, certifier) = match identity(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tulle-proxy: identity: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let file = match &config.static_config {
        Some(p) => match StaticFile::from_path(p) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("tulle-proxy: {e} (TULLE_PROXY_STATIC_CONFIG)");
                return ExitCode::from(EX_USAGE);
            }
        },
        None => StaticFile::default(),
    };
    let static_discovery = match StaticDiscovery::new(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tulle-proxy: {e} (TULLE_PROXY_STATIC_CONFIG)");
            return ExitCode::from(EX_USAGE);
        }
    };
    drop(enter);
    rt.block_on(async move {
        // Trust anchors from a file are reloaded when it changes (anchor rotation).
        if let Some(path) = config.identity.trust_anchors.watched_file() {
            tokio::spawn(crate::trust::watch_file(
                path,
                tls.anchors.clone(),
                crate::trust::RELOAD_INTERVAL,
            ));
        }
        let grace = config.shutdown_grace;
        // The gRPC channel needs the runtime, so the destination client is made here.
        let discovery: Arc<dyn Resolve> = match &config.destination {
            None => Arc::new(static_discovery),
            Some(d) => {
                match DestinationDiscovery::new(d, tls.control_client(), DestTiming::default()) {
                    Ok(d) => Arc::new(d),
                    Err(e) => {
                        eprintln!("tulle-proxy: {e}");
                        return ExitCode::from(EX_USAGE);
                    }
                }
            }
        };
        if let Some(c) = certifier {
            tokio::spawn(c.run(tls.store.clone()));
        }
        let proxy = match Proxy::start(config, tls, discovery).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("tulle-proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!(?grace, "shutdown signal received; draining");
        proxy.shutdown(grace).await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `tulle-proxy dev-certs DIR NAME...`
pub fn run_dev_certs(args: &[String]) -> ExitCode {
    let Some((dir, names)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(EX_USAGE);
    };
    if names.is_empty() {
        eprintln!(
            "dev-certs: name at least one identity, e.g. web.default.serviceaccount.identity.tulle.cluster.local"
        );
        return ExitCode::from(EX_USAGE);
    }
    match crate::devcerts::DevCa::new().and_then(|ca| ca.write(std::path::Path::new(dir), names)) {
        Ok(()) => {
            println!("wrote {dir}/ca.pem and a .crt/.key pair per name");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dev-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tulle-proxy init ...`
pub fn run_init(args: &[String]) -> ExitCode {
    let opts = match crate::init::Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tulle-proxy init: {e}\n\n{}", crate::init::USAGE);
            return ExitCode::from(EX_USAGE);
        }
    };
    match crate::init::apply(&opts) {
        Ok(applied) => {
            println!("{applied}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tulle-proxy init: {e}");
            ExitCode::FAILURE
        }
    }
}
