//! tulle-testapp: a small HTTP server for the cluster end-to-end tests.
//!
//! `tulle-testapp` (no arguments) serves, on `$PORT` (default 8080):
//! - `/` (and any path not listed here) the pod's name and namespace (`$POD_NAME`, `$POD_NAMESPACE`, from the downward API) as JSON,
//! - `/call?url=http://svc.ns:port/path` makes a GET to another service and reports what came back,
//! - `/healthz`,
//! - `/received`: what the app received, per caller and request (see [`received`]),
//! - `/load`: with `$LOAD_URL` set, a steady GET load (`$LOAD_RPS`/s, default 20) runs in the
//!   background and this reports its totals, failures and answers per pod.
//!
//! With `$TLS_CERT` and `$TLS_KEY` (PEM files) it also serves HTTPS on `$TLS_PORT` (default 8443), with
//! the same routes plus admission webhooks (`/mutate`, `/validate`) and a tiny aggregated API
//! (`/apis/<$APISERVICE_GROUP>/v1alpha1`).
//!
//! Client modes, for `kubectl exec` in images without a shell:
//! `tulle-testapp get URL` prints the status and body of a GET; `tulle-testapp cat FILE` prints a file;
//! `burst URL N [--h2] [-H name:value]...` and `tcp-burst HOST:PORT N` count N answers by pod
//! (see [`burst`]); `tcp-hold HOST:PORT SECONDS` holds an echoed connection and reports when it
//! was closed. With `$TCP_PORT` the app also serves a speaks-first TCP protocol there, with
//! `$TCP_ECHO_PORT` a TCP echo.

mod admission;
mod app;
mod burst;
mod client;
mod load;
mod received;
mod tls;

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => app::serve(app::Config::from_env()?).await,
        ["get", url] => {
            let reply = client::get(url).await?;
            println!("{}", reply.status);
            print!("{}", reply.body);
            if reply.status >= 400 {
                std::process::exit(1);
            }
            Ok(())
        }
        ["burst", rest @ ..] => burst::http(rest).await,
        ["tcp-burst", rest @ ..] => burst::tcp(rest).await,
        ["tcp-hold", rest @ ..] => burst::hold(rest).await,
        ["cat", path] => {
            let data = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            print!("{data}");
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: tulle-testapp [serve | get URL | cat FILE | burst URL N [--h2] [-H name:value]... | tcp-burst HOST:PORT N | tcp-hold HOST:PORT SECONDS]"
        ),
    }
}
