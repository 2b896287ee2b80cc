//! `incident_issue`: opens an issue in the configured tracker (SPEC §3 `incidents`): a
//! Markdown file under `.release/incidents/` or a GitHub issue.
//!
//! The issue carries a hidden marker with the run id and the step id
//! ([`run_marker`]); for a resumed run, the id of the first run of the chain. Before
//! opening, the step looks for an open issue carrying it, so a resumed run (or a retried
//! step) reuses the issue it opened instead of opening a second.
//! The dry-run renders the issue, checks the tracker (the folder can be written; the token
//! is set and the repository readable, with one GET) and opens nothing. When the title,
//! body or labels read an earlier step's output, the tracker is checked all the same (a
//! failed check blocks) and the step warns that the text is known only in a real run.

use super::{
    Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Stop, Verdict, bounded,
};
use crate::engine::process::Line;
use crate::project::runbook::IncidentIssueAction;
use crate::trackers::{NewIssue, Opened, Tracker, run_marker};

/// The issue, rendered: title, body and labels with their templates filled in, and the
/// marker of this run's step.
pub fn render_issue(
    action: &IncidentIssueAction,
    ctx: &StepContext<'_>,
) -> Result<NewIssue, String> {
    let t = ctx.templates;
    let title = t
        .render(&action.title)
        .map_err(|e| format!("cannot render the title: {e}"))?
        .trim()
        .to_owned();
    if title.is_empty() {
        return Err("the rendered title is empty".into());
    }
    let body = t
        .render(&action.body)
        .map_err(|e| format!("cannot render the body: {e}"))?;
    let mut labels: Vec<String> = Vec::with_capacity(action.labels.len());
    for label in &action.labels {
        let label = t
            .render(label)
            .map_err(|e| format!("cannot render the label `{label}`: {e}"))?
            .trim()
            .to_owned();
        if !label.is_empty() && !labels.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
            labels.push(label);
        }
    }
    Ok(NewIssue {
        title,
        body,
        labels,
        marker: run_marker(&ctx.run.origin, ctx.step_id),
        run_id: ctx.run.id.clone(),
    })
}

/// What the real run would do, for the dry-run report: the issue's title and labels on the
/// first line, then its body, indented.
fn describe_issue(issue: &NewIssue, tracker: &str) -> String {
    let labels = if issue.labels.is_empty() {
        "no labels".to_owned()
    } else {
        format!("labels {}", issue.labels.join(", "))
    };
    let mut body = String::new();
    for line in issue.body.trim_end().lines() {
        body.push_str("\n    ");
        body.push_str(line);
    }
    format!(
        "open issue {:?} with {labels} in {tracker} (or reuse the one this run's step opened)\n  body:{body}",
        issue.title
    )
}

fn blocked(reason: String, would: String) -> Preflight {
    Preflight {
        verdict: Verdict::Blocked,
        fidelity: Fidelity::Checked,
        reason,
        would,
        output: None,
    }
}

fn failed(error: String) -> Execution {
    Execution {
        outcome: Outcome::Failed,
        error: Some(error),
        stdout: String::new(),
        interrupted: false,
    }
}

impl StepAction for IncidentIssueAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        let tracker = Tracker::from_config(ctx.config, ctx.root);
        let tracker_name = tracker
            .as_ref()
            .map_or_else(|_| "the tracker".to_owned(), Tracker::describe);
        // Text that reads an earlier step's output cannot be rendered now, but the tracker
        // it goes to can still be checked: the check blocks the dry-run, the text only warns.
        let unverifiable = ctx.reads_step_output;
        let would = match render_issue(self, ctx) {
            Ok(issue) => describe_issue(&issue, &tracker_name),
            Err(_) if unverifiable => {
                format!("open an issue titled {:?} in {tracker_name}", self.title)
            }
            Err(e) => return blocked(e, String::new()),
        };
        let tracker = match tracker {
            Ok(tracker) => tracker,
            Err(e) => return blocked(e, would),
        };
        match bounded(tracker.check(), ctx.timeout, ctx.cancel.clone()).await {
            Ok(Ok(checked)) if unverifiable => Preflight {
                verdict: Verdict::Warn,
                fidelity: Fidelity::Unverifiable,
                reason: format!(
                    "{}{}; but its title, body or labels come from an earlier step's output, known only in a real run",
                    checked.summary,
                    checked
                        .warning
                        .map(|w| format!(" (though {w})"))
                        .unwrap_or_default()
                ),
                would,
                output: None,
            },
            Ok(Ok(checked)) => Preflight {
                verdict: if checked.warning.is_some() {
                    Verdict::Warn
                } else {
                    Verdict::Ready
                },
                fidelity: Fidelity::Checked,
                reason: match checked.warning {
                    Some(warning) => format!("{}; but {warning}", checked.summary),
                    None => checked.summary,
                },
                would,
                output: None,
            },
            Ok(Err(e)) => blocked(e, would),
            Err(Stop::Interrupted) => blocked("interrupted".into(), would),
            Err(Stop::TimedOut(limit)) => blocked(
                format!(
                    "checking {tracker_name} timed out after {}",
                    crate::engine::reporter::human_duration(limit)
                ),
                would,
            ),
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        let issue = match render_issue(self, ctx) {
            Ok(issue) => issue,
            Err(e) => return failed(e),
        };
        let tracker = match Tracker::from_config(ctx.config, ctx.root) {
            Ok(tracker) => tracker,
            Err(e) => return failed(e),
        };
        match bounded(
            tracker.open_or_reuse(&issue),
            ctx.timeout,
            ctx.cancel.clone(),
        )
        .await
        {
            Ok(Ok((opened, how))) => {
                let shown = match &tracker {
                    Tracker::Local(_) => std::path::Path::new(&opened.location)
                        .strip_prefix(ctx.root)
                        .map_or_else(|_| opened.location.clone(), |p| p.display().to_string()),
                    Tracker::Github(_) => opened.location.clone(),
                };
                let n = opened.number;
                let text = match (&tracker, how) {
                    (Tracker::Local(_), Opened::New) => format!("wrote incident #{n}: {shown}"),
                    (Tracker::Local(_), Opened::Reused) => {
                        format!("reusing incident #{n}, written earlier by this run: {shown}")
                    }
                    (Tracker::Github(github), Opened::New) => {
                        format!("opened issue #{n} in {}: {shown}", github.repo())
                    }
                    (Tracker::Github(_), Opened::Reused) => {
                        format!("reusing issue #{n}, opened earlier by this run: {shown}")
                    }
                };
                let _ = ctx.lines.send(Line { stderr: true, text });
                Execution {
                    outcome: Outcome::Succeeded,
                    error: None,
                    stdout: opened.location,
                    interrupted: false,
                }
            }
            Ok(Err(e)) => failed(format!(
                "cannot open the issue in {}: {e}",
                tracker.describe()
            )),
            Err(Stop::Interrupted) => Execution {
                interrupted: true,
                ..failed("interrupted while opening the issue".into())
            },
            Err(Stop::TimedOut(limit)) => Execution {
                outcome: Outcome::TimedOut,
                ..failed(format!(
                    "opening the issue in {} timed out after {}",
                    tracker.describe(),
                    crate::engine::reporter::human_duration(limit)
                ))
            },
        }
    }
}
