//! `tulle-proxy`: run the sidecar proxy (default), `init` (iptables rules) or
//! `dev-certs <dir> <name>...` (development certificates).

use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("run") => tulle_proxy::cli::run_proxy(),
        Some("init") => tulle_proxy::cli::run_init(&args[1..]),
        Some("dev-certs") => tulle_proxy::cli::run_dev_certs(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{}", tulle_proxy::cli::USAGE);
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n\n{}", tulle_proxy::cli::USAGE);
            ExitCode::from(64)
        }
    }
}
