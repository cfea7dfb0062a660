//! tulle: the command-line tool of the tulle service mesh.
//!
//! - `tulle install` prints every manifest of the mesh (SMI CRDs, namespace, RBAC, identity and
//!   controller, the injector webhook configuration, the trust anchors and the issuer) as one
//!   multi-document YAML stream, in an order `kubectl apply -f -` accepts in one pass. The trust
//!   anchor and the issuer are generated ([`pki`]) unless the user supplies them.
//! - `tulle check` checks the cluster before install (`--pre`) or the installed mesh ([`check`]).
//! - `tulle uninstall` prints every object `install` creates, for `kubectl delete -f -`.
//! - `tulle version` prints the client version and the control plane's.
//! - `tulle inject` meshes the workloads of a YAML stream ([`inject`]): the annotation, or with
//!   `--manual` the sidecar itself.
//! - `tulle stat` and `tulle edges` print golden metrics and edges from the SMI Traffic
//!   Metrics API, through the Kubernetes API server ([`stat`]).
//! - `tulle dashboard` port-forwards to the web dashboard and opens the browser ([`dashboard`]).
//!
//! The manifests are built from typed k8s-openapi objects ([`manifest`]), so the output is
//! well-formed by construction. Exit codes are stable: see [`exit`].
//!
//! The binary also works as a kubectl plugin: install it (or a symlink to it) as
//! `kubectl-tulle` on the `PATH` and run `kubectl tulle ...`.

pub mod args;
pub mod check;
pub mod dashboard;
pub mod error;
pub mod inject;
pub mod kubeconfig;
pub mod manifest;
pub mod pki;
pub mod render;
pub mod stat;
pub mod version;

pub use args::Cli;
pub use error::{Error, exit};

use args::Command;
use std::io::Write;

/// Runs one command; returns the exit code to use on success paths (`0`, or `1` when
/// `version` could not reach the control plane or a `check` failed).
pub fn run(cli: Cli) -> Result<u8, Error> {
    let Cli { global, command } = cli;
    match command {
        Command::Install(args) => {
            let out = manifest::install(&args, std::time::SystemTime::now())?;
            write_stdout(&out)
        }
        Command::Check(args) => runtime()?.block_on(check::run(&global, &args)),
        Command::Uninstall(args) => {
            let out = manifest::uninstall(args.output)?;
            write_stdout(&out)
        }
        Command::Inject(args) => {
            let (out, report) = inject::run(&global, &args)?;
            for line in report {
                eprintln!("{line}");
            }
            write_stdout(&out)
        }
        Command::Version(args) => {
            let report = runtime()?.block_on(version::report(&global, &args));
            print!("{}", report.text);
            Ok(report.exit_code)
        }
        Command::Stat(args) => print(runtime()?.block_on(stat::run_stat(&global, &args))?),
        Command::Edges(args) => print(runtime()?.block_on(stat::run_edges(&global, &args))?),
        Command::Dashboard(args) => runtime()?.block_on(dashboard::run(&global, &args)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

fn print(p: stat::Printed) -> Result<u8, Error> {
    let code = write_stdout(&p.stdout)?;
    for line in p.stderr {
        eprintln!("{line}");
    }
    Ok(code)
}

fn write_stdout(s: &str) -> Result<u8, Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Stdout)?;
    Ok(exit::OK)
}
