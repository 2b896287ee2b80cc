//! `release promote COMPONENT --to S [--dry-run] [--reason]`: the rules, the gates of S,
//! then `runbooks/S/promote.yaml` if present, then `promotion.completed` with HEAD.
//!
//! Order, so that nothing is lost and nothing surprises: the lock of (component, S) is
//! taken first and held to the end; the rules are checked (a refusal is recorded and exits
//! 3 without running the gates, which a dry-run or `release gates` shows); the gates are
//! evaluated and recorded (`gates.evaluated`, the report file); a failing gate is recorded
//! as `promotion.refused` (exit 1); the promote runbook runs through the engine with the
//! promotion's run id; only when it succeeds is `promotion.completed` recorded.

use std::fmt::Write as _;

use serde_json::json;

use crate::commands::Context;
use crate::commands::gates::{append, evaluate, runtime, secrets, verdict_line};
use crate::commands::run::{
    Job, RunOptions, audit_log, check_target, load_history, locks_dir, print_report,
    refuse_unrunnable, resolve_params, run_job, take_lock,
};
use crate::engine;
use crate::error::Error;
use crate::gates::{self, Evaluation};
use crate::project::{Project, display_path};
use crate::state::history::History;
use crate::state::lock::{self, LockError};
use crate::trackers::{self, Tracker};

/// Promote a component into the next stage: rules, gates, the stage's promote runbook.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The component to promote.
    pub component: String,

    /// The stage it enters (the one after its current stage).
    #[arg(long)]
    pub to: String,

    #[command(flatten)]
    pub options: RunOptions,
}

pub fn cmd_promote(ctx: &Context<'_>, args: &PromoteArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let (component, target) = (args.component.as_str(), args.to.as_str());
    check_target(&project, component, target)?;
    let dry_run = args.options.dry_run;
    // A promote runbook that could not finish (bad parameters; it asks and nobody can
    // answer) is refused before the gates run, not after; a question nobody can answer
    // comes after the rules, which may refuse the promotion anyway.
    let runbook = project.runbook_path(target, "promote");
    let mut unrunnable = None;
    if runbook.is_file() {
        let (loaded, _) = project
            .load_runbook(&ctx.cwd, &runbook)
            .map_err(Error::Invalid)?;
        resolve_params(&loaded, &args.options.set)?;
        if !dry_run {
            unrunnable = refuse_unrunnable(ctx, &loaded).err();
        }
    } else if let Some(first) = args.options.set.first() {
        return Err(Error::InvalidInput {
            message: format!(
                "`--set {first}`: stage `{target}` has no promote runbook ({} is missing), so nothing takes parameters",
                display_path(&ctx.cwd, &runbook).display()
            ),
            hint: Some("remove --set, or write the promote runbook that uses it".into()),
        });
    }
    let audit = audit_log(&project, secrets(&project));
    let run_id = engine::new_run_id();
    // The lock first: the history read next stays true until the promotion is recorded.
    let lock = if dry_run {
        None
    } else {
        Some(take_lock(
            ctx, &project, &audit, &run_id, component, target,
        )?)
    };
    let result = promote(ctx, &project, &audit, &run_id, args, unrunnable);
    if let Some(lock) = lock {
        let _ = lock.release();
    }
    result
}

fn promote(
    ctx: &Context<'_>,
    project: &Project,
    audit: &crate::state::audit::AuditLog,
    run_id: &str,
    args: &PromoteArgs,
    unrunnable: Option<Error>,
) -> Result<i32, Error> {
    let (component, target) = (args.component.as_str(), args.to.as_str());
    let dry_run = args.options.dry_run;
    let history = load_history(project, audit)?;
    unanswerable_unless_refused(project, &history, component, target, unrunnable)?;
    if !dry_run {
        leaving_is_quiet(project, &history, component, target)?;
    }
    // A dry-run says everything that would block; a real promotion stops at the rules.
    // (The runtime ends with this statement: the promote runbook starts its own.)
    let Some(evaluation) = runtime()?.block_on(evaluate(
        project, &history, audit, component, target, dry_run,
    )) else {
        return Ok(130);
    };
    if evaluation.gates_evaluated {
        append(
            ctx.output,
            audit,
            run_id,
            "gates.evaluated",
            component,
            target,
            evaluation.record(dry_run),
        )?;
    }
    let report = if dry_run || !evaluation.gates_evaluated {
        None
    } else {
        let path = gates::write_report(&project.root, &evaluation)
            .map_err(|e| Error::io(format!("cannot write workflow_report_{component}.json"), e))?;
        Some(display_path(&ctx.cwd, &path).display().to_string())
    };
    let mut text = evaluation.table();
    text.push('\n');
    text.push_str(&verdict_line(&evaluation));
    if let Some(report) = &report {
        let _ = write!(text, "\nreport: {report}");
    }

    if !evaluation.passed {
        return refuse(ctx, audit, run_id, &evaluation, dry_run, &text);
    }
    if !dry_run {
        // Again: a run may have started there while the gates ran.
        leaving_is_quiet(project, &history, component, target)?;
    }
    if !ctx.output.json {
        ctx.output.result(&text);
    }

    let runbook = project.runbook_path(target, "promote");
    let mut ran = None;
    if runbook.is_file() {
        let (report, redactor) = run_job(
            ctx,
            project,
            &Job {
                path: &runbook,
                component,
                stage: target,
                options: &args.options,
                purpose: "promote",
                held: Some(run_id),
                resume: None,
            },
        )?;
        let code = report.outcome.exit_code();
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        redactor.redact_json(&mut value);
        if !ctx.output.json {
            print_report(ctx, &report, &redactor);
        }
        if code != 0 {
            if ctx.output.json {
                let mut out = outcome_json(&evaluation, dry_run, false, None, None);
                out["runbook"] = value;
                ctx.output.json_value(&out);
            } else if !dry_run {
                ctx.output.warn(&format!(
                    "{component} was NOT promoted: the promote runbook did not succeed (its steps are recorded under run {run_id})"
                ));
            }
            return Ok(code);
        }
        ran = Some(value);
    }
    if dry_run {
        return Ok(dry_run_done(ctx, &evaluation, ran));
    }
    complete(
        ctx,
        project,
        audit,
        run_id,
        &evaluation,
        args.options.reason.as_deref(),
        Shown {
            report: report.as_deref(),
            runbook: ran,
            history: &history,
        },
    )
}

/// The end of a promotion's dry-run that nothing blocked: what would happen; exit 0.
fn dry_run_done(
    ctx: &Context<'_>,
    evaluation: &Evaluation,
    runbook: Option<serde_json::Value>,
) -> i32 {
    if ctx.output.json {
        let mut out = outcome_json(evaluation, true, false, None, None);
        out["runbook"] = runbook.unwrap_or_default();
        ctx.output.json_value(&out);
    } else {
        ctx.output.result(&format!(
            "dry-run: {} would be promoted {} → {}; nothing was changed",
            evaluation.component, evaluation.from, evaluation.target
        ));
    }
    0
}

/// The refusal of a promote runbook that asks a question nobody can answer, unless the
/// rules refuse the promotion anyway: they say so first, before any gate or question.
fn unanswerable_unless_refused(
    project: &Project,
    history: &History,
    component: &str,
    target: &str,
    unrunnable: Option<Error>,
) -> Result<(), Error> {
    match unrunnable {
        Some(refusal)
            if crate::gates::rules::check(&project.config, history, component, target)
                .iter()
                .all(|rule| rule.passed) =>
        {
            Err(refusal)
        }
        _ => Ok(()),
    }
}

/// What the output shows besides the evaluation: the report file and the runbook's report.
struct Shown<'a> {
    report: Option<&'a str>,
    runbook: Option<serde_json::Value>,
    /// The history read under the lock (it says whether blockers were filed).
    history: &'a History,
}

/// Records `promotion.completed` with HEAD.
fn complete(
    ctx: &Context<'_>,
    project: &Project,
    audit: &crate::state::audit::AuditLog,
    run_id: &str,
    evaluation: &Evaluation,
    reason: Option<&str>,
    shown: Shown<'_>,
) -> Result<i32, Error> {
    let (component, target) = (&evaluation.component, &evaluation.target);
    // And once more, right before the record: the promote runbook took its time too.
    leaving_is_quiet(project, shown.history, component, target)?;
    let commit = head_commit(project);
    if commit.is_none() {
        ctx.output.warn(&format!(
            "{} is not in a git repository with a commit: the promotion records no commit",
            project.root.display()
        ));
    }
    append(
        ctx.output,
        audit,
        run_id,
        "promotion.completed",
        component,
        target,
        json!({
            "from": evaluation.from,
            "to": target,
            "commit": commit,
            "reason": reason,
        }),
    )?;
    // The promotion is recorded: a tracker that fails now only earns a warning.
    // Only where `release gates --file-blockers` ran for this stage may a blocker be open.
    let filed = shown
        .history
        .get(component)
        .is_some_and(|h| h.blockers_filed.contains(target.as_str()));
    let blocker = if filed {
        match close_blocker(project, component, target) {
            Ok(closed) => closed,
            Err(e) => {
                ctx.output.warn(&format!(
                    "{component} is promoted, but its blocker issue for {target} could not be closed: {e}; close it by hand"
                ));
                None
            }
        }
    } else {
        None
    };
    if ctx.output.json {
        let mut out = outcome_json(evaluation, false, true, commit.as_deref(), shown.report);
        out["runbook"] = shown.runbook.unwrap_or_default();
        out["blocker_closed"] = json!(blocker);
        ctx.output.json_value(&out);
    } else {
        let at = commit
            .as_deref()
            .map_or(String::new(), |c| format!(" at {}", &c[..c.len().min(12)]));
        let mut text = format!(
            "promoted {component} {} → {target}{at} (run {run_id})",
            evaluation.from
        );
        if let Some(closed) = &blocker {
            let _ = write!(
                text,
                "\nblocker issue: closed {closed} ({component} is at {target})"
            );
        }
        ctx.output.result(&text);
    }
    Ok(0)
}

/// Refuses (exit 3) to promote a component out of a stage where a run of it holds the lock:
/// a rollback there may be under way, and what it finds decides whether the component
/// should move on at all (`stable_for` would count it only once it started).
fn leaving_is_quiet(
    project: &Project,
    history: &History,
    component: &str,
    target: &str,
) -> Result<(), Error> {
    let leaving = gates::rules::standing(&project.config, history, component).stage;
    if leaving == target {
        return Ok(());
    }
    match lock::check(&locks_dir(project), component, leaving, &lock::this_host()) {
        Ok(_) => Ok(()),
        Err(e @ LockError::Held { .. }) => Err(Error::Refused {
            message: format!(
                "{component} cannot leave {leaving} while a run of it there holds the lock (a rollback may be under way): {e}"
            ),
            hint: Some(format!(
                "promote once that run has ended{}",
                e.hint().map(|h| format!("; {h}")).unwrap_or_default()
            )),
        }),
        Err(e) => Err(Error::Failed {
            message: e.to_string(),
            hint: None,
        }),
    }
}

/// Closes the component's open blocker issues for `target` (opened by `release gates
/// --file-blockers`; more than one only when runs filed at once), now that it is there;
/// their references, or `None` when none is open.
fn close_blocker(
    project: &Project,
    component: &str,
    target: &str,
) -> Result<Option<String>, String> {
    let tracker = Tracker::from_config(&project.config, &project.root)?;
    let runtime = runtime().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let labels = trackers::blocker_labels(component, target);
        let marker = trackers::blocker_marker(component, target);
        let closed = tracker.close_all_with_marker(&labels, &marker).await?;
        Ok((!closed.is_empty()).then(|| {
            closed
                .iter()
                .map(trackers::Issue::reference)
                .collect::<Vec<_>>()
                .join(", ")
        }))
    })
}

/// Records and reports a refusal: exit 3 for the rules, 1 for a failing gate.
fn refuse(
    ctx: &Context<'_>,
    audit: &crate::state::audit::AuditLog,
    run_id: &str,
    evaluation: &Evaluation,
    dry_run: bool,
    text: &str,
) -> Result<i32, Error> {
    let (component, target) = (&evaluation.component, &evaluation.target);
    if !dry_run {
        append(
            ctx.output,
            audit,
            run_id,
            "promotion.refused",
            component,
            target,
            json!({ "to": target, "from": evaluation.from, "reasons": evaluation.reasons() }),
        )?;
    }
    if ctx.output.json {
        ctx.output
            .json_value(&outcome_json(evaluation, dry_run, false, None, None));
    } else {
        let what = if dry_run {
            "would be refused"
        } else {
            "refused"
        };
        ctx.output.result(&format!(
            "{text}\npromotion of {component} to {target} {what}: nothing was changed"
        ));
    }
    Ok(if evaluation.rules_passed() { 1 } else { 3 })
}

fn outcome_json(
    evaluation: &Evaluation,
    dry_run: bool,
    promoted: bool,
    commit: Option<&str>,
    report: Option<&str>,
) -> serde_json::Value {
    let mut value = evaluation.report();
    value["dry_run"] = json!(dry_run);
    value["promoted"] = json!(promoted);
    value["commit"] = json!(commit);
    value["report_file"] = json!(report);
    value
}

/// The commit HEAD points at, when the project is in a git repository with one.
fn head_commit(project: &Project) -> Option<String> {
    let repo = git2::Repository::discover(&project.root).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}
