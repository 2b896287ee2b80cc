//! `verify`: re-evaluates a stage's gates for the component inside a runbook (after a
//! rollback), not the promotion rules: it is already there. Its preflight lists the gates
//! it would evaluate.
//!
//! The gates that govern the act of entering a stage — `stable_for` (time in the stage
//! being left), `approvals` (used up by the promotion) and `freeze` (when promotions may
//! happen) — say nothing about the component once it is there, so `verify` lists them as
//! not re-evaluated; every other gate is evaluated exactly as `release gates` does.

use std::fmt::Write as _;

use chrono::Utc;

use super::{Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Verdict};
use crate::engine::process::Line;
use crate::gates::GateResult;
use crate::gates::evaluate::{Subject, evaluate, kind_name};
use crate::project::config::{Config, Gate, GateKind};
use crate::project::display_path;
use crate::project::runbook::VerifyAction;
use crate::state::audit::AuditLog;
use crate::state::history::History;
use crate::state::redact::Redactor;

/// True for the gates about entering a stage, which `verify` does not re-evaluate.
fn entry_only(kind: &GateKind) -> bool {
    matches!(
        kind,
        GateKind::StableFor(_) | GateKind::Approvals(_) | GateKind::Freeze(_)
    )
}

fn split(config: &Config, stage: &str) -> (Vec<Gate>, Vec<Gate>) {
    config
        .gates_for(stage)
        .into_iter()
        .partition(|g| !entry_only(&g.kind))
}

fn names(gates: &[Gate]) -> String {
    gates
        .iter()
        .map(|g| format!("{} ({})", g.id, kind_name(&g.kind)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn skipped_note(skipped: &[Gate]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(
            "; not re-evaluated (they govern entering the stage): {}",
            names(skipped)
        )
    }
}

impl StepAction for VerifyAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        let stage = &self.stage.value;
        let (gates, skipped) = split(ctx.config, stage);
        let would = if gates.is_empty() {
            format!(
                "nothing to evaluate: stage `{stage}` has no gate about the component's state{}",
                skipped_note(&skipped)
            )
        } else {
            format!(
                "evaluate {} gate(s) of `{stage}`: {}{}",
                gates.len(),
                names(&gates),
                skipped_note(&skipped)
            )
        };
        Preflight {
            verdict: Verdict::Ready,
            fidelity: Fidelity::Checked,
            reason: "the gates are listed, not evaluated, in a dry-run".into(),
            would,
            output: None,
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        let stage = &self.stage.value;
        let (gates, skipped) = split(ctx.config, stage);
        let audit = AuditLog::new(
            ctx.root.join(&ctx.config.header.audit.path),
            ctx.run.actor.clone(),
            Redactor::default(),
        );
        let runbooks = display_path(ctx.root, &ctx.root.join(&ctx.config.header.runbooks))
            .display()
            .to_string();
        let loaded = tokio::task::spawn_blocking(move || History::load(&audit, &runbooks)).await;
        let history = match loaded {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return failed(format!("cannot read the audit log: {e}"), String::new()),
            Err(e) => return failed(format!("cannot read the audit log: {e}"), String::new()),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let subject = Subject {
            root: ctx.root,
            config: ctx.config,
            history: &history,
            component: &ctx.run.component,
            target: stage,
            current: stage,
            actor: &ctx.run.actor,
            now: Utc::now(),
            cancel: stop_rx,
        };
        let (results, timed_out) = evaluate_until_stopped(&subject, &gates, &stop_tx, ctx).await;
        let mut stdout = String::new();
        for r in &results {
            let line = format!(
                "{} {} ({}): {}",
                if r.passed { "pass" } else { "FAIL" },
                r.id,
                r.kind,
                r.summary
            );
            let _ = ctx.lines.send(Line {
                stderr: false,
                text: line.clone(),
            });
            stdout.push_str(&line);
            stdout.push('\n');
        }
        for g in &skipped {
            let _ = writeln!(
                stdout,
                "skip {} ({}): governs entering the stage",
                g.id,
                kind_name(&g.kind)
            );
        }
        let failing: Vec<String> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.id, r.summary))
            .collect();
        if timed_out {
            return Execution {
                outcome: Outcome::TimedOut,
                error: Some(format!(
                    "the gates of {stage} took longer than the step's timeout ({}); their \
                     commands were stopped",
                    crate::engine::reporter::human_duration(ctx.timeout.unwrap_or_default())
                )),
                stdout,
                interrupted: false,
            };
        }
        if *ctx.cancel.borrow() {
            return Execution {
                outcome: Outcome::Failed,
                error: Some("interrupted while evaluating the gates".into()),
                stdout,
                interrupted: true,
            };
        }
        if failing.is_empty() {
            Execution {
                outcome: Outcome::Succeeded,
                error: None,
                stdout,
                interrupted: false,
            }
        } else {
            failed(
                format!(
                    "{} of {} gate(s) of {stage} fail: {}",
                    failing.len(),
                    results.len(),
                    failing.join("; ")
                ),
                stdout,
            )
        }
    }
}

/// The gates' results, and whether the step's timeout cut them short. The gates stop
/// (their processes ended, TERM then KILL) when the run is interrupted or the step's
/// timeout expires: `stop` tells them, through the receiver in `subject`.
async fn evaluate_until_stopped(
    subject: &Subject<'_>,
    gates: &[Gate],
    stop: &tokio::sync::watch::Sender<bool>,
    ctx: &StepContext<'_>,
) -> (Vec<GateResult>, bool) {
    let mut run_cancel = ctx.cancel.clone();
    let stopped = async {
        let deadline = async {
            match ctx.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = deadline => true,
            _ = run_cancel.wait_for(|c| *c) => false,
        }
    };
    let evaluation = evaluate(subject, gates);
    tokio::pin!(evaluation);
    tokio::select! {
        results = &mut evaluation => (results, false),
        by_timeout = stopped => {
            let _ = stop.send(true);
            (evaluation.await, by_timeout)
        }
    }
}

fn failed(error: String, stdout: String) -> Execution {
    Execution {
        outcome: Outcome::Failed,
        error: Some(error),
        stdout,
        interrupted: false,
    }
}
