//! `release gates COMPONENT --stage S [--file-blockers]`: evaluates the promotion rules and
//! the gates for entering S, prints the table, writes `workflow_report_<component>.json`,
//! records `gates.evaluated`; exit 0 when all pass, 1 otherwise.

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;

use crate::commands::Context;
use crate::commands::run::{audit_log, check_target, load_history};
use crate::engine;
use crate::error::Error;
use crate::gates::evaluate::Subject;
use crate::gates::{self, Evaluation};
use crate::project::{Project, display_path};
use crate::state::audit::{AuditLog, Entry};
use crate::state::history::History;
use crate::state::redact::Redactor;
use crate::trackers::{self, NewIssue, Opened, Tracker};

/// Evaluate the promotion rules and the gates for entering a stage.
#[derive(Debug, clap::Args)]
pub struct GatesArgs {
    /// The component.
    pub component: String,

    /// The stage it would enter.
    #[arg(long)]
    pub stage: String,

    /// Open (or update) one tracker issue per failing component and stage; close it once
    /// the gates pass.
    #[arg(long)]
    pub file_blockers: bool,
}

pub fn cmd_gates(ctx: &Context<'_>, args: &GatesArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let (component, target) = (args.component.as_str(), args.stage.as_str());
    check_target(&project, component, target)?;
    let audit = audit_log(&project, secrets(&project));
    let history = load_history(&project, &audit)?;
    let run_id = engine::new_run_id();
    let runtime = runtime()?;
    let Some(evaluation) = runtime.block_on(evaluate(
        &project, &history, &audit, component, target, true,
    )) else {
        return Ok(130);
    };
    let mut record = evaluation.record(false);
    if args.file_blockers {
        // `promote` closes the blocker of a stage it enters only where one may exist.
        record["file_blockers"] = json!(true);
    }
    append(
        ctx.output,
        &audit,
        &run_id,
        "gates.evaluated",
        component,
        target,
        record,
    )?;
    // A report that cannot be written fails the command, but after the results are shown:
    // they were evaluated and recorded.
    let report = gates::write_report(&project.root, &evaluation)
        .map(|path| display_path(&ctx.cwd, &path).display().to_string());
    let blockers = if args.file_blockers {
        let standing = gates::rules::standing(&project.config, &history, component);
        let settled = if history
            .get(component)
            .is_some_and(|h| h.deprecated.is_some())
        {
            Some(format!("{component} is deprecated"))
        } else if project
            .config
            .stages()
            .position(|s| s == target)
            .is_some_and(|p| p <= standing.position)
        {
            Some(format!("{component} is already at {}", standing.stage))
        } else {
            None
        };
        Some(runtime.block_on(file_blockers(
            &project,
            &evaluation,
            &run_id,
            settled.as_deref(),
        )))
    } else {
        None
    };
    if ctx.output.json {
        let mut value = evaluation.report();
        value["report_file"] = match &report {
            Ok(path) => json!(path),
            Err(e) => json!({ "error": e.to_string() }),
        };
        if let Some(b) = &blockers {
            value["blocker_issue"] = match b {
                Ok(text) => json!(text),
                Err(e) => json!({ "error": e }),
            };
        }
        ctx.output.json_value(&value);
    } else {
        let mut text = evaluation.table();
        text.push('\n');
        text.push_str(&verdict_line(&evaluation));
        match &report {
            Ok(path) => {
                let _ = write!(text, "\nreport: {path}");
            }
            Err(_) => text.push_str("\nreport: not written (see below)"),
        }
        if let Some(Ok(done)) = &blockers {
            let _ = write!(text, "\nblocker issue: {done}");
        }
        ctx.output.result(&text);
    }
    if let Err(e) = report {
        return Err(Error::io(
            format!("cannot write workflow_report_{component}.json"),
            e,
        ));
    }
    if let Some(Err(e)) = blockers {
        return Err(Error::Failed {
            message: format!("cannot file the blocker issue: {e}"),
            hint: Some(
                "the gates were evaluated and recorded; fix the tracker and run again".into(),
            ),
        });
    }
    Ok(i32::from(!evaluation.passed))
}

/// The last line under the table.
pub fn verdict_line(evaluation: &Evaluation) -> String {
    let failed = evaluation.failing().count();
    let total = evaluation.rules.len() + evaluation.gates.len();
    if evaluation.passed {
        format!(
            "PASSED: all {total} rules and gates pass for {} → {}",
            evaluation.component, evaluation.target
        )
    } else {
        format!(
            "FAILED: {failed} of {total} rules and gates fail for {} → {}",
            evaluation.component, evaluation.target
        )
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the runtime", e))
}

/// The values of the `*_env` variables release.yaml names (gate evidence may echo them).
pub fn secrets(project: &Project) -> Redactor {
    let mut redactor = Redactor::default();
    let names = project
        .config
        .notify
        .iter()
        .filter_map(|(_, c)| c.url_env.as_ref().map(|e| e.value.clone()))
        .chain(
            project
                .config
                .header
                .github
                .iter()
                .map(|g| g.token_env.value.clone()),
        );
    for name in names {
        if let Ok(value) = std::env::var(&name) {
            redactor.add(&value);
        }
    }
    redactor
}

/// Evaluates rules and gates now; `None` when interrupted (SIGINT/SIGTERM/SIGHUP), after the
/// gate commands were stopped.
pub async fn evaluate(
    project: &Project,
    history: &History,
    audit: &AuditLog,
    component: &str,
    target: &str,
    all_gates: bool,
) -> Option<Evaluation> {
    let (cancel_tx, cancel) = watch::channel(false);
    let current = gates::rules::standing(&project.config, history, component).stage;
    let subject = Subject {
        root: &project.root,
        config: &project.config,
        history,
        component,
        target,
        current,
        actor: audit.actor(),
        now: Utc::now(),
        cancel,
    };
    let evaluation = gates::evaluate_promotion(&subject, !all_gates);
    tokio::pin!(evaluation);
    // SIGHUP too: a dropped ssh session must not leave the gates' commands running.
    let mut signals = crate::engine::scheduler::Signals::install();
    let interrupted = signals.recv();
    tokio::select! {
        done = &mut evaluation => Some(done),
        () = interrupted => {
            // The commands first: after a hang-up the terminal is gone, and writing to it
            // must neither come first nor fail the command (eprintln! would panic).
            let _ = cancel_tx.send(true);
            let _ = writeln!(std::io::stderr(), "interrupted: stopping the gate commands");
            let _ = evaluation.await;
            None
        }
    }
}

/// Appends one record; a failure stops the command (fail closed). A torn last line that
/// the append moved aside (an earlier crash) is said on the terminal.
pub fn append(
    output: &crate::output::Output,
    audit: &AuditLog,
    run: &str,
    kind: &'static str,
    component: &str,
    stage: &str,
    data: serde_json::Value,
) -> Result<(), Error> {
    audit
        .append(Entry {
            run: run.to_owned(),
            kind,
            component: Some(component.to_owned()),
            stage: Some(stage.to_owned()),
            data,
        })
        .map(|appended| {
            if let Some(repaired) = appended.repaired {
                output.warn(&repaired.to_string());
            }
        })
        .map_err(|e| Error::Failed {
            message: e.to_string(),
            hint: Some("nothing further was done: the audit log must record first".into()),
        })
}

/// Opens or updates the component's blocker issue for `target` when gates fail; closes it
/// when they pass, or when `settled` says why no gate will ever block that promotion
/// again (the component is deprecated, or already at `target` or beyond): such a blocker
/// could never be closed otherwise. Returns what was done, for people.
async fn file_blockers(
    project: &Project,
    evaluation: &Evaluation,
    run_id: &str,
    settled: Option<&str>,
) -> Result<String, String> {
    let (component, target) = (&evaluation.component, &evaluation.target);
    let tracker = Tracker::from_config(&project.config, &project.root)?;
    let labels = trackers::blocker_labels(component, target);
    let marker = trackers::blocker_marker(component, target);
    if settled.is_some() || evaluation.passed {
        // Every open one goes, duplicates opened by runs filing at once included.
        let closed = tracker.close_all_with_marker(&labels, &marker).await?;
        let closed: Vec<String> = closed.iter().map(trackers::Issue::reference).collect();
        return Ok(match (settled, closed.is_empty()) {
            (Some(why), true) => format!("none open, none opened ({why})"),
            (Some(why), false) => format!("closed {} ({why})", closed.join(", ")),
            (None, true) => "none open".into(),
            (None, false) => format!("closed {} (the gates pass now)", closed.join(", ")),
        });
    }
    let mut body = format!(
        "The quality gates block the promotion of `{component}` from {} to {target}.\n\nFailing:\n",
        evaluation.from
    );
    for g in evaluation.failing() {
        let _ = writeln!(body, "- **{}** ({}): {}", g.id, g.kind, g.summary);
        if let Some(fix) = &g.fix {
            let _ = writeln!(body, "  - fix: {fix}");
        }
    }
    let _ = writeln!(
        body,
        "\nEvaluated {} by {} (run {run_id}). Re-run `release gates {component} --stage {target} --file-blockers`: this issue is updated, and closed once the gates pass (`release promote` closes it too).",
        evaluation.evaluated_at.format("%Y-%m-%d %H:%M UTC"),
        evaluation.actor
    );
    // One step, so that runs filing at once open one issue (see `Tracker::open_or_reuse`).
    let new = NewIssue {
        title: format!("Quality gates block {component} → {target}"),
        body,
        labels,
        marker,
        run_id: run_id.to_owned(),
    };
    match tracker.open_or_reuse(&new).await? {
        (opened, Opened::New) => Ok(format!("opened {}", opened.reference())),
        (open, Opened::Reused) => {
            let updated = tracker.update(&open, &new.body).await?;
            Ok(format!("updated {}", updated.reference()))
        }
    }
}
