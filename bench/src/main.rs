//! `tulle-bench`: see the crate docs (`bench/README.md`) for what each subcommand measures.
use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Only aws-lc-rs may be the crypto provider; an error means one is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = tulle_bench::cli::Cli::parse();
    tulle_bench::run(cli)
}
