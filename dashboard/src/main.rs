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
    let args = tulle_dashboard::Args::parse();
    // As a container's PID 1 the process gets no default action for SIGTERM: without a
    // handler, a deleted pod would keep running until the kubelet's SIGKILL (30 s later).
    // Its pages are read-only and reload, so it just exits.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tulle_dashboard::run(args) => r?,
        _ = term.recv() => tracing::info!("SIGTERM received; exiting"),
    }
    Ok(())
}
