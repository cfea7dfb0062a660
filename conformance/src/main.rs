//! `tulle-conformance`: run the SMI conformance suite against the mesh on a cluster and
//! write the report. Exit status: 0 every step passed, 1 a step failed, 2 the suite could not
//! run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tulle_conformance::context::Shared;
use tulle_conformance::kubectl::Kubectl;
use tulle_conformance::profile::Profile;
use tulle_conformance::report::{self, Report};
use tulle_conformance::{cases, runner};

/// The SMI conformance suite: Traffic Access, Specs, Split and Metrics on a real cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The kubeconfig (default: kubectl's own).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// kubectl to use.
    #[arg(long, default_value = "kubectl")]
    kubectl: PathBuf,
    /// The mesh: `tulle`, `linkerd`, or a profile YAML file (see the README).
    #[arg(long, default_value = "tulle")]
    mesh: String,
    /// The test app image (cluster/image testapp builds it).
    #[arg(long, env = "TULLE_TESTAPP_IMAGE", default_value = concat!("localhost/tulle/testapp:", env!("CARGO_PKG_VERSION")))]
    app_image: String,
    /// Run only this case (repeatable; `--list` shows the names).
    #[arg(long)]
    only: Vec<String>,
    /// Cases at once.
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Seconds a step may take.
    #[arg(long, default_value_t = 180)]
    step_timeout: u64,
    /// Where to write report.json, report.md and junit.xml.
    #[arg(long, default_value = "conformance-report")]
    report_dir: PathBuf,
    /// Also write the conformance table into this README, between its table marks.
    #[arg(long)]
    readme: Option<PathBuf>,
    /// Keep the namespaces after the run.
    #[arg(long)]
    keep: bool,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let profile = Profile::load(&args.mesh)?;
    let mut all = cases::all();
    if !args.only.is_empty() {
        all.retain(|c| args.only.iter().any(|o| c.name == o.as_str()));
        anyhow::ensure!(
            !all.is_empty(),
            "no case matches --only {:?}; --list shows them",
            args.only
        );
    }
    if args.list {
        for c in &all {
            println!(
                "{:<18} {:<15} {:<9} {:<5} {} steps: {}",
                c.name,
                c.api.title(),
                c.version,
                format!("{:?}", c.mode).to_lowercase(),
                c.steps.len(),
                c.about
            );
        }
        return Ok(true);
    }
    let kubectl = Kubectl {
        binary: args.kubectl.clone(),
        kubeconfig: args.kubeconfig.clone(),
    };
    let version = kubectl
        .json(&["version", "-o", "json"])
        .await
        .context("reaching the cluster (check --kubeconfig)")?;
    let kubernetes = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let shared = Arc::new(Shared {
        kubectl,
        profile: profile.clone(),
        app_image: args.app_image.clone(),
    });
    let settings = runner::Settings {
        concurrency: args.concurrency,
        step_timeout: Duration::from_secs(args.step_timeout),
        keep: args.keep,
    };
    eprintln!(
        "SMI conformance of {} on Kubernetes {kubernetes}: {} cases, {} at once",
        profile.name,
        all.len(),
        settings.concurrency
    );
    let t = Instant::now();
    let results = runner::run(shared, &settings, all).await;
    let date = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let report = Report::new(
        &profile.name,
        &kubernetes,
        &date,
        t.elapsed().as_secs_f64(),
        results,
    );

    std::fs::create_dir_all(&args.report_dir)
        .with_context(|| format!("creating {}", args.report_dir.display()))?;
    let write = |name: &str, text: String| {
        let path = args.report_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("report.json", serde_json::to_string_pretty(&report)?)?;
    write("report.md", report.markdown())?;
    write("junit.xml", report.junit())?;
    if let Some(readme) = &args.readme {
        let text = std::fs::read_to_string(readme)
            .with_context(|| format!("reading {}", readme.display()))?;
        let new = report::replace_table(&text, &report.table()).with_context(|| {
            format!(
                "{} has no conformance table marks ({} … {})",
                readme.display(),
                report::TABLE_BEGIN,
                report::TABLE_END
            )
        })?;
        std::fs::write(readme, new).with_context(|| format!("writing {}", readme.display()))?;
    }
    println!("{}", report.table());
    let failures = report.failures();
    for f in &failures {
        println!("FAILED {f}");
    }
    println!(
        "report: {}/report.md, report.json, junit.xml",
        args.report_dir.display()
    );
    Ok(failures.is_empty() && report.passed())
}
