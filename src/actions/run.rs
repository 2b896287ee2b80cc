//! `run`: a process from argv, or `sh -c` for a `script` with `shell: true` where every
//! `{{ … }}` becomes a quoted positional reference (`"${1}"`, `"${2}"`…) and its value is
//! passed as that argument: a value never becomes shell text (see [`super::script`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Verdict};
use crate::engine::process::{Exit, resolve_program, run_process};
use crate::project::runbook::{RunAction, RunSpec};

/// A plan command that runs longer than this (or the step's `timeout`, when set) blocks
/// the dry-run.
const PLAN_TIMEOUT: Duration = Duration::from_secs(60);

/// The most of a plan's output a dry-run keeps (shown with `--json`, recorded in the audit
/// log); a note says how much more it printed.
pub const MAX_PLAN_OUTPUT: usize = 64 * 1024;

/// The command ready to run: argv, environment and folder.
struct Prepared {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
}

fn prepare(
    spec: &RunSpec,
    argv: Option<&[String]>,
    ctx: &StepContext<'_>,
) -> Result<Prepared, String> {
    let t = ctx.templates;
    let argv = match (argv, &spec.script) {
        (Some(argv), _) => argv
            .iter()
            .map(|a| t.render(a))
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(script)) => {
            let (text, values) = super::script::render(t, script)?;
            let mut argv = vec![
                "sh".to_owned(),
                "-c".to_owned(),
                text,
                format!("release:{}", ctx.step_id),
            ];
            argv.extend(values);
            argv
        }
        (None, None) => return Err("`run` has neither argv nor script".into()),
    };
    let env = spec
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), t.render(v)?)))
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    let cwd = match &spec.cwd {
        Some(cwd) => ctx.root.join(t.render(cwd)?),
        None => ctx.root.to_path_buf(),
    };
    Ok(Prepared { argv, env, cwd })
}

/// How a command is shown to a person: its argv, quoted where needed.
pub fn show_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''").replace('\n', "\\n"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a step's declared read-only `plan` command and shows what it printed.
async fn preflight_plan(
    plan: &[String],
    prepared: &Prepared,
    would: String,
    ctx: &StepContext<'_>,
) -> Preflight {
    let plan = match plan
        .iter()
        .map(|a| ctx.templates.render(a))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(plan) => plan,
        Err(e) => {
            return Preflight {
                verdict: Verdict::Blocked,
                fidelity: Fidelity::Checked,
                reason: format!("cannot render the plan: {e}"),
                would,
                output: None,
            };
        }
    };
    let (lines, _) = tokio::sync::mpsc::unbounded_channel();
    let limit = ctx.timeout.unwrap_or(PLAN_TIMEOUT);
    let result = run_process(
        &plan,
        &prepared.env,
        &prepared.cwd,
        Some(limit),
        ctx.cancel.clone(),
        lines,
    )
    .await;
    let mut output = result.stdout.clone();
    if !result.stderr_tail.is_empty() {
        output.push_str(&result.stderr_tail.join("\n"));
        output.push('\n');
    }
    let output = crate::engine::scheduler::cut_to(&output, MAX_PLAN_OUTPUT);
    let (verdict, reason) = if result.succeeded() {
        (
            Verdict::Ready,
            format!("plan `{}` succeeded", show_argv(&plan)),
        )
    } else if result.exit == Exit::TimedOut {
        (
            Verdict::Blocked,
            format!(
                "plan `{}` ran longer than {} ({}) and was stopped",
                show_argv(&plan),
                crate::engine::reporter::human_duration(limit),
                if ctx.timeout.is_some() {
                    "the step's timeout"
                } else {
                    "a plan's limit without a step timeout"
                }
            ),
        )
    } else {
        (
            Verdict::Blocked,
            format!("plan failed: {}", result.describe_failure(&plan[0])),
        )
    };
    // `planned` only when the plan ran: one that could not start checked no more than
    // its inputs.
    let started = !matches!(result.exit, crate::engine::process::Exit::SpawnFailed(_));
    Preflight {
        verdict,
        fidelity: if started {
            Fidelity::Planned
        } else {
            Fidelity::Checked
        },
        reason,
        would,
        output: Some(output).filter(|_| started),
    }
}

impl StepAction for RunAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        let spec = self.spec();
        let blocked = |reason: String, fidelity| Preflight {
            verdict: Verdict::Blocked,
            fidelity,
            reason,
            would: String::new(),
            output: None,
        };
        let prepared = match prepare(&spec, spec.argv.as_deref(), ctx) {
            Ok(p) => p,
            Err(e) => return blocked(format!("cannot render the command: {e}"), Fidelity::Checked),
        };
        let would = format!("run {}", show_argv(&prepared.argv));
        if ctx.reads_step_output {
            return Preflight {
                verdict: Verdict::Warn,
                fidelity: Fidelity::Unverifiable,
                reason: "its inputs come from an earlier step's output, known only in a real run"
                    .into(),
                would,
                output: None,
            };
        }
        if !prepared.cwd.is_dir() {
            return blocked(
                format!("folder {} does not exist", prepared.cwd.display()),
                Fidelity::Checked,
            );
        }
        let program = &prepared.argv[0];
        let resolved = resolve_program(program, &prepared.cwd);
        if let (Some(plan), Some(_)) = (&spec.plan, &resolved) {
            // The real command must be there too: a plan that succeeds says nothing of a
            // rollback tool that is not installed.
            return preflight_plan(plan, &prepared, would, ctx).await;
        }
        match resolved {
            None => Preflight {
                would,
                ..blocked(
                    crate::engine::process::why_not_runnable(program, &prepared.cwd),
                    Fidelity::Checked,
                )
            },
            Some(path) if spec.script.is_some() => Preflight {
                verdict: Verdict::Warn,
                fidelity: Fidelity::Checked,
                reason: format!(
                    "the shell is {}; the script's own commands are only checked when it runs",
                    path.display()
                ),
                would,
                output: None,
            },
            Some(path) => Preflight {
                verdict: Verdict::Ready,
                fidelity: Fidelity::Checked,
                reason: format!("`{program}` is {}", path.display()),
                would,
                output: None,
            },
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        let spec = self.spec();
        let prepared = match prepare(&spec, spec.argv.as_deref(), ctx) {
            Ok(p) => p,
            Err(e) => {
                return Execution {
                    outcome: Outcome::Failed,
                    error: Some(format!("cannot render the command: {e}")),
                    stdout: String::new(),
                    interrupted: false,
                };
            }
        };
        let result = run_process(
            &prepared.argv,
            &prepared.env,
            &prepared.cwd,
            ctx.timeout,
            ctx.cancel.clone(),
            ctx.lines.clone(),
        )
        .await;
        let outcome = match result.exit {
            Exit::Code(0) => Outcome::Succeeded,
            Exit::TimedOut => Outcome::TimedOut,
            _ => Outcome::Failed,
        };
        Execution {
            outcome,
            error: (outcome != Outcome::Succeeded)
                .then(|| result.describe_failure(&prepared.argv[0])),
            stdout: result.stdout,
            interrupted: result.exit == Exit::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_shown_quoted() {
        let argv = vec!["echo".to_string(), "a b".to_string(), "it's".to_string()];
        assert_eq!(show_argv(&argv), "echo 'a b' 'it'\\''s'");
    }
}
