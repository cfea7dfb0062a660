//! Runs cases concurrently, each in a namespace of its own, and times every step.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::case::Case;
use crate::context::{Ctx, Shared, create_namespace};
use crate::report::{CaseResult, Outcome, StepResult};

/// How the suite runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Cases at once.
    pub concurrency: usize,
    /// A step that takes longer fails (the upstream suite's 180 s).
    pub step_timeout: Duration,
    /// Keep the namespaces (to look at a failure).
    pub keep: bool,
}

/// Runs `cases`, at most `settings.concurrency` at once, printing progress to stderr; results
/// in the order of `cases`.
pub async fn run(shared: Arc<Shared>, settings: &Settings, cases: Vec<Case>) -> Vec<CaseResult> {
    let total = cases.len();
    let mut results: Vec<(usize, CaseResult)> =
        futures::stream::iter(cases.into_iter().enumerate())
            .map(|(i, case)| {
                let shared = shared.clone();
                let settings = settings.clone();
                async move { (i, run_case(shared, &settings, case, total).await) }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn suffix() -> String {
    format!("{:05x}", rand::random::<u32>() & 0xfffff)
}

async fn run_case(
    shared: Arc<Shared>,
    settings: &Settings,
    case: Case,
    total: usize,
) -> CaseResult {
    let ns = format!("smi-{}-{}", case.name, suffix());
    let started = Instant::now();
    let mut result = CaseResult {
        name: case.name.into(),
        api: case.api,
        version: case.version.into(),
        mode: case.mode,
        upstream: case.upstream,
        about: case.about.into(),
        namespace: ns.clone(),
        seconds: 0.0,
        steps: Vec::new(),
    };
    eprintln!(
        "[{}] start in namespace {ns} ({} steps, {total} cases in all)",
        case.name,
        case.steps.len()
    );
    let cx = Arc::new(Ctx {
        ns: ns.clone(),
        mode: case.mode,
        shared: shared.clone(),
        namespaces: Mutex::new(vec![ns.clone()]),
    });
    let setup = create_namespace(&shared, &ns, case.mode).await;
    let mut failed = setup
        .as_ref()
        .err()
        .map(|e| format!("creating namespace {ns}: {e}"));
    for (i, step) in case.steps.iter().enumerate() {
        if let Some(why) = &failed {
            result.steps.push(StepResult {
                name: step.name.into(),
                outcome: Outcome::NotRun {
                    reason: why.clone(),
                },
                seconds: 0.0,
            });
            continue;
        }
        let t = Instant::now();
        let outcome =
            match tokio::time::timeout(settings.step_timeout, (step.run)(cx.clone())).await {
                Ok(Ok(())) => Outcome::Passed,
                Ok(Err(e)) => Outcome::Failed {
                    message: e.to_string(),
                },
                Err(_) => Outcome::Failed {
                    message: format!(
                        "the step did not finish within {} s",
                        settings.step_timeout.as_secs()
                    ),
                },
            };
        let seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "[{}] step {}/{} {}: {} ({seconds:.1} s)",
            case.name,
            i + 1,
            case.steps.len(),
            step.name,
            outcome.word()
        );
        if let Outcome::Failed { message } = &outcome {
            eprintln!("[{}]   {message}", case.name);
            failed = Some(format!("step {} ({}) failed", i + 1, step.name));
            if let Ok(pods) = cx.kubectl(&["get", "pods", "-o", "wide"]).await {
                eprintln!("[{}]   pods in {ns}:\n{pods}", case.name);
            }
        }
        result.steps.push(StepResult {
            name: step.name.into(),
            outcome,
            seconds,
        });
    }
    result.seconds = started.elapsed().as_secs_f64();
    let namespaces = cx
        .namespaces
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if settings.keep {
        eprintln!("[{}] kept namespaces {namespaces:?}", case.name);
    } else {
        for n in &namespaces {
            let _ = shared
                .kubectl
                .run(&["delete", "namespace", n, "--wait=false"], None)
                .await;
        }
    }
    eprintln!(
        "[{}] {} in {:.0} s",
        case.name,
        if result.passed() { "PASSED" } else { "FAILED" },
        result.seconds
    );
    result
}
