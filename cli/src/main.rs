//! The `tulle` binary (also usable as the kubectl plugin `kubectl-tulle`): parse the
//! command line, install the crypto provider, run, and map the outcome to a stable exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = tulle_cli::args::parse(); // usage errors exit with 2 (clap)
    match tulle_cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`tulle install | head`): nothing useful to say.
        Err(tulle_cli::Error::Stdout(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(tulle_cli::exit::FAILURE)
        }
        Err(e) => {
            let code = e.exit_code();
            eprintln!("tulle: error: {:#}", anyhow::Error::new(e));
            ExitCode::from(code)
        }
    }
}
