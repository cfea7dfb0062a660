//! The tulle-controller binary: parse flags, install the crypto provider, run.

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
    let args = tulle_controller::Args::parse();
    // As a container's PID 1 the process gets no default action for SIGTERM: without a
    // handler, a deleted pod would keep running until the kubelet's SIGKILL (30 s later).
    // Proxies keep their last state while it is away and reconnect to another replica or its successor, so it just exits.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tulle_controller::run(args) => r?,
        _ = term.recv() => tracing::info!("SIGTERM received; exiting"),
    }
    Ok(())
}
