//! The tulle-dashboard binary: parse flags, install the crypto provider, init tracing, run.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        // Colours only on a terminal: container logs stay plain text for kubectl and grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    tulle_dashboard::run(tulle_dashboard::Args::parse()).await?;
    Ok(())
}
