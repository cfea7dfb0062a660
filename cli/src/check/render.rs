//! Rendering of `tulle check`: the table (streamed, one category at a time, `linkerd check`
//! style), the JSON document, and the progress of `--wait` (an indicatif spinner on a TTY,
//! plain lines otherwise; both on stderr so that stdout stays the report).

use super::{CategoryReport, Event, Report, Status};
use crate::{Error, args::CheckOutput};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};

/// The mark of a status: `✔` ok, `‼` warn, `×` fail.
pub fn mark(s: Status) -> &'static str {
    match s {
        Status::Ok => "✔",
        Status::Warn => "‼",
        Status::Fail => "×",
    }
}

/// One category as table text: a header, an underline, one line per check; the message of a
/// warning or failure indented below it, then its hint.
pub fn category_table(c: &CategoryReport) -> String {
    let mut s = format!("{}\n{}\n", c.name, "-".repeat(c.name.chars().count()));
    for check in &c.checks {
        s.push_str(&format!("{} {}", mark(check.status), check.name));
        if check.status == Status::Ok {
            if !check.message.is_empty() {
                s.push_str(&format!(" ({})", check.message));
            }
            s.push('\n');
            continue;
        }
        s.push('\n');
        for line in check.message.lines() {
            s.push_str(&format!("    {line}\n"));
        }
        if let Some(hint) = &check.hint {
            s.push_str(&format!("    hint: {hint}\n"));
        }
    }
    s.push('\n');
    s
}

/// The closing line of the table.
pub fn summary(r: &Report) -> String {
    let warned = r
        .categories
        .iter()
        .flat_map(|c| &c.checks)
        .any(|c| c.status == Status::Warn);
    match (r.success, warned) {
        (false, _) => format!("Status check results are {}\n", mark(Status::Fail)),
        (true, true) => format!(
            "Status check results are {} (with warnings)\n",
            mark(Status::Ok)
        ),
        (true, false) => format!("Status check results are {}\n", mark(Status::Ok)),
    }
}

/// The whole report as a table (what the streamed output adds up to).
pub fn table(r: &Report) -> String {
    let mut s: String = r.categories.iter().map(category_table).collect();
    s.push_str(&summary(r));
    s
}

/// The JSON document: `{"success": bool, "categories": [{"name", "checks": [{"name",
/// "status": "ok"|"warn"|"fail", "message", "hint": string|null}]}]}`.
pub fn json(r: &Report) -> Result<String, Error> {
    let mut s = serde_json::to_string_pretty(r).map_err(|e| Error::Render(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

/// Streams the output of a run.
pub struct Output {
    format: CheckOutput,
    spinner: Option<ProgressBar>,
    tty: bool,
    last_wait: Option<String>,
    write_error: Option<std::io::Error>,
}

impl Output {
    /// For `format`; the spinner is used when stderr is a terminal.
    pub fn new(format: CheckOutput) -> Self {
        Self {
            format,
            spinner: None,
            tty: std::io::stderr().is_terminal(),
            last_wait: None,
            write_error: None,
        }
    }

    /// Handles one event of the runner.
    pub fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Start(_) => {}
            Event::Waiting {
                category,
                check,
                left,
            } => {
                let text = format!(
                    "waiting for {category}: {} {} ({}s left)",
                    mark(check.status),
                    check.name,
                    left.as_secs()
                );
                if self.tty {
                    let sp = self.spinner.get_or_insert_with(|| {
                        let sp = ProgressBar::new_spinner();
                        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                            sp.set_style(style);
                        }
                        sp.enable_steady_tick(std::time::Duration::from_millis(100));
                        sp
                    });
                    sp.set_message(text);
                } else {
                    // One line per change of what is awaited, not one per retry.
                    let key = format!("{category}/{}/{}", check.name, check.message);
                    if self.last_wait.as_deref() != Some(&key) {
                        eprintln!("{text}: {}", check.message);
                        self.last_wait = Some(key);
                    }
                }
            }
            Event::Done(c) => {
                if let Some(sp) = self.spinner.take() {
                    sp.finish_and_clear();
                }
                self.last_wait = None;
                if self.format == CheckOutput::Table {
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = out
                        .write_all(category_table(c).as_bytes())
                        .and_then(|()| out.flush())
                    {
                        self.write_error.get_or_insert(e);
                    }
                }
            }
        }
    }

    /// Prints the summary line (table) or the document (json).
    pub fn finish(mut self, r: &Report) -> Result<(), Error> {
        if let Some(sp) = self.spinner.take() {
            sp.finish_and_clear();
        }
        if let Some(e) = self.write_error.take() {
            return Err(Error::Stdout(e));
        }
        let text = match self.format {
            CheckOutput::Table => summary(r),
            CheckOutput::Json => json(r)?,
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(Error::Stdout)
    }
}
