//! The report: per case and step what happened, per API and version the verdict (FULL when
//! every step passed, PARTIAL when at least half did — Meshery's "HALF" — else NONE), written
//! as JSON, Markdown and JUnit XML.

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::case::{Api, Mode};

/// What a step came to.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed {
        message: String,
    },
    /// Not run because of an earlier failure of its case.
    #[serde(rename = "not-run")]
    NotRun {
        reason: String,
    },
}

impl Outcome {
    /// `passed`, `FAILED` or `not run`.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed { .. } => "FAILED",
            Outcome::NotRun { .. } => "not run",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub api: Api,
    pub version: String,
    pub mode: Mode,
    pub upstream: bool,
    pub about: String,
    pub namespace: String,
    pub seconds: f64,
    pub steps: Vec<StepResult>,
}

impl CaseResult {
    /// Every step passed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.outcome == Outcome::Passed)
    }
}

/// FULL, PARTIAL or NONE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Full,
    Partial,
    None,
}

impl Verdict {
    /// Of `passed` steps out of `total`.
    pub fn of(passed: usize, total: usize) -> Self {
        if passed == total {
            Verdict::Full
        } else if passed * 2 >= total {
            Verdict::Partial
        } else {
            Verdict::None
        }
    }
}

/// One API version's result.
#[derive(Clone, Debug, Serialize)]
pub struct ApiResult {
    pub api: Api,
    pub version: String,
    pub passed: usize,
    pub total: usize,
    /// Of those, the upstream scenarios' steps.
    pub upstream_passed: usize,
    pub upstream_total: usize,
    pub result: Verdict,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mesh: String,
    pub kubernetes: String,
    /// The day of the run (UTC, `YYYY-MM-DD`).
    pub date: String,
    pub seconds: f64,
    pub summary: Vec<ApiResult>,
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// The report of `cases`, with the summary per API and version.
    pub fn new(
        mesh: &str,
        kubernetes: &str,
        date: &str,
        seconds: f64,
        cases: Vec<CaseResult>,
    ) -> Self {
        let mut by: BTreeMap<(Api, String), ApiResult> = BTreeMap::new();
        for c in &cases {
            let r = by
                .entry((c.api, c.version.clone()))
                .or_insert_with(|| ApiResult {
                    api: c.api,
                    version: c.version.clone(),
                    passed: 0,
                    total: 0,
                    upstream_passed: 0,
                    upstream_total: 0,
                    result: Verdict::None,
                });
            let passed = c
                .steps
                .iter()
                .filter(|s| s.outcome == Outcome::Passed)
                .count();
            r.passed += passed;
            r.total += c.steps.len();
            if c.upstream {
                r.upstream_passed += passed;
                r.upstream_total += c.steps.len();
            }
        }
        let summary = by
            .into_values()
            .map(|mut r| {
                r.result = Verdict::of(r.passed, r.total);
                r
            })
            .collect();
        Self {
            mesh: mesh.into(),
            kubernetes: kubernetes.into(),
            date: date.into(),
            seconds,
            summary,
            cases,
        }
    }

    /// Every step of every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(CaseResult::passed)
    }

    /// The failed steps: `case / step: message`.
    pub fn failures(&self) -> Vec<String> {
        self.cases
            .iter()
            .flat_map(|c| {
                c.steps.iter().filter_map(move |s| match &s.outcome {
                    Outcome::Failed { message } => {
                        Some(format!("{} / {}: {message}", c.name, s.name))
                    }
                    _ => None,
                })
            })
            .collect()
    }

    /// The conformance table: API, version, result, steps, date, Kubernetes version.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| API | Version | Result | Steps passed | Upstream steps passed | Date | Kubernetes |\n|---|---|---|---|---|---|---|\n",
        );
        for r in &self.summary {
            let upstream = if r.upstream_total == 0 {
                "-".to_string()
            } else {
                format!("{}/{}", r.upstream_passed, r.upstream_total)
            };
            s += &format!(
                "| {} | {} | {:?} | {}/{} | {upstream} | {} | {} |\n",
                r.api.title(),
                r.version,
                r.result,
                r.passed,
                r.total,
                self.date,
                self.kubernetes
            )
            .replace("Full", "FULL")
            .replace("Partial", "PARTIAL")
            .replace("| None |", "| NONE |");
        }
        s
    }

    /// The Markdown report: the table, then every case and its steps, then the failures.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# SMI conformance: {}\n\nRun on {} against Kubernetes {}: {} cases in {:.0} s.\n\n{}\n## Cases\n\n| Case | API | Version | Mode | Upstream | Steps passed | Seconds | What it shows |\n|---|---|---|---|---|---|---|---|\n",
            self.mesh,
            self.date,
            self.kubernetes,
            self.cases.len(),
            self.seconds,
            self.table()
        );
        for c in &self.cases {
            let passed = c
                .steps
                .iter()
                .filter(|s| s.outcome == Outcome::Passed)
                .count();
            s += &format!(
                "| {} | {} | {} | {:?} | {} | {passed}/{} | {:.0} | {} |\n",
                c.name,
                c.api.title(),
                c.version,
                c.mode,
                if c.upstream { "yes" } else { "" },
                c.steps.len(),
                c.seconds,
                c.about
            );
        }
        let failures = self.failures();
        if !failures.is_empty() {
            s += "\n## Failures\n\n";
            for f in failures {
                s += &format!("- {}\n", f.replace('\n', " "));
            }
        }
        s
    }

    /// JUnit XML: a test suite per case, a test case per step.
    pub fn junit(&self) -> String {
        let mut report = quick_junit::Report::new(format!("smi-conformance-{}", self.mesh));
        report.set_time(Duration::from_secs_f64(self.seconds));
        for c in &self.cases {
            let mut suite = TestSuite::new(format!("{} {} {}", c.api.title(), c.version, c.name));
            for st in &c.steps {
                let status = match &st.outcome {
                    Outcome::Passed => TestCaseStatus::success(),
                    Outcome::Failed { message } => {
                        let mut f = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        f.set_message(message.clone());
                        f
                    }
                    Outcome::NotRun { reason } => {
                        let mut f = TestCaseStatus::skipped();
                        f.set_message(reason.clone());
                        f
                    }
                };
                let mut tc = TestCase::new(st.name.clone(), status);
                tc.set_classname(c.name.clone());
                tc.set_time(Duration::from_secs_f64(st.seconds));
                suite.add_test_case(tc);
            }
            report.add_test_suite(suite);
        }
        report
            .to_string()
            .unwrap_or_else(|e| format!("<!-- JUnit serialization failed: {e} -->"))
    }
}

/// Marks of the table in a README, replaced by [`replace_table`].
pub const TABLE_BEGIN: &str = "<!-- conformance-table: written by tulle-conformance --readme -->";
pub const TABLE_END: &str = "<!-- /conformance-table -->";

/// `readme` with the text between the table marks replaced by `table`; `None` when the marks
/// are missing.
pub fn replace_table(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = start + readme[start..].find(TABLE_END)?;
    Some(format!("{}\n{table}{}", &readme[..start], &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(
        name: &str,
        api: Api,
        version: &str,
        upstream: bool,
        outcomes: Vec<Outcome>,
    ) -> CaseResult {
        CaseResult {
            name: name.into(),
            api,
            version: version.into(),
            mode: Mode::Deny,
            upstream,
            about: "about".into(),
            namespace: format!("smi-{name}-1"),
            seconds: 1.0,
            steps: outcomes
                .into_iter()
                .enumerate()
                .map(|(i, outcome)| StepResult {
                    name: format!("step{i}"),
                    outcome,
                    seconds: 0.5,
                })
                .collect(),
        }
    }

    fn failed(m: &str) -> Outcome {
        Outcome::Failed { message: m.into() }
    }

    fn not_run() -> Outcome {
        Outcome::NotRun {
            reason: "earlier".into(),
        }
    }

    #[test]
    fn verdicts_follow_meshery() {
        assert_eq!(Verdict::of(7, 7), Verdict::Full);
        assert_eq!(Verdict::of(4, 7), Verdict::Partial);
        assert_eq!(Verdict::of(3, 6), Verdict::Partial);
        assert_eq!(Verdict::of(3, 7), Verdict::None);
        assert_eq!(Verdict::of(0, 0), Verdict::Full);
    }

    #[test]
    fn the_summary_adds_up_steps_per_api_version_and_names_failures() {
        use Outcome::Passed;
        let r = Report::new(
            "tulle",
            "v1.33.0",
            "2026-12-01",
            60.0,
            vec![
                case(
                    "access",
                    Api::TrafficAccess,
                    "v1alpha3",
                    true,
                    vec![
                        Passed,
                        Passed,
                        failed("a → b was answered 200, want denied"),
                        not_run(),
                    ],
                ),
                case(
                    "access-ports",
                    Api::TrafficAccess,
                    "v1alpha3",
                    false,
                    vec![Passed, Passed],
                ),
                case(
                    "split",
                    Api::TrafficSplit,
                    "v1alpha4",
                    true,
                    vec![Passed; 3],
                ),
            ],
        );
        assert!(!r.passed());
        let access = &r.summary[0];
        assert_eq!(
            (
                access.passed,
                access.total,
                access.upstream_passed,
                access.upstream_total
            ),
            (4, 6, 2, 4)
        );
        assert_eq!(access.result, Verdict::Partial);
        assert_eq!(r.summary[1].result, Verdict::Full);
        assert_eq!(
            r.failures(),
            vec!["access / step2: a → b was answered 200, want denied"]
        );
        let table = r.table();
        assert!(
            table.contains(
                "| Traffic Access | v1alpha3 | PARTIAL | 4/6 | 2/4 | 2026-12-01 | v1.33.0 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| Traffic Split | v1alpha4 | FULL | 3/3 | 3/3 |"),
            "{table}"
        );
        let md = r.markdown();
        assert!(
            md.contains("## Failures\n\n- access / step2: a → b"),
            "{md}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cases"][0]["steps"][2]["outcome"], "failed");
        assert_eq!(json["cases"][0]["steps"][3]["outcome"], "not-run");
        assert_eq!(json["summary"][0]["result"], "PARTIAL");
    }

    #[test]
    fn junit_has_a_suite_per_case_and_a_failure_with_its_message() {
        let r = Report::new(
            "tulle",
            "v1",
            "d",
            1.0,
            vec![case(
                "access",
                Api::TrafficAccess,
                "v1alpha3",
                true,
                vec![Outcome::Passed, failed("denied <x> & \"y\""), not_run()],
            )],
        );
        let xml = r.junit();
        assert!(
            xml.contains("<testsuite name=\"Traffic Access v1alpha3 access\" tests=\"3\""),
            "{xml}"
        );
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("skipped=\"1\""), "{xml}");
        assert!(
            xml.contains("denied &lt;x&gt; &amp; &quot;y&quot;"),
            "{xml}"
        );
    }

    #[test]
    fn the_readme_table_is_replaced_between_its_marks() {
        let readme = format!("# x\n{TABLE_BEGIN}\nold\n{TABLE_END}\nrest\n");
        let new = replace_table(&readme, "| new |\n").unwrap();
        assert_eq!(
            new,
            format!("# x\n{TABLE_BEGIN}\n| new |\n{TABLE_END}\nrest\n")
        );
        assert_eq!(replace_table("no marks", "t"), None);
    }
}
