//! Actions: what a step does. Each implements [`StepAction`]: a read-only `preflight` (the
//! dry-run) and `execute`. The engine only ever calls [`preflight`] and [`execute`], so a
//! new action is one file and one arm here.

pub mod run;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::engine::context::Templater;
use crate::engine::process::Line;
use crate::project::runbook::Action;

/// What an action gets to do its work.
pub struct StepContext<'a> {
    pub step_id: &'a str,
    /// The project root: where processes run unless told otherwise.
    pub root: &'a Path,
    pub templates: &'a Templater,
    pub timeout: Option<Duration>,
    pub cancel: watch::Receiver<bool>,
    pub lines: mpsc::UnboundedSender<Line>,
    /// The step's templates read an earlier step's output, which a dry-run cannot know.
    pub reads_step_output: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ready,
    Warn,
    Blocked,
}

/// How much a preflight really checked (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fidelity {
    /// The effect was computed without being applied.
    Simulated,
    /// A `plan` command ran and its output is shown.
    Planned,
    /// Only inputs, executables, credentials and reachability were checked.
    Checked,
    /// Nothing could be checked.
    Unverifiable,
}

/// The dry-run's account of a step.
#[derive(Clone, Debug, Serialize)]
pub struct Preflight {
    pub verdict: Verdict,
    pub fidelity: Fidelity,
    /// Why this verdict.
    pub reason: String,
    /// What the real run would do.
    pub would: String,
    /// What a `plan` command printed.
    pub output: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Skipped,
    Declined,
    TimedOut,
}

/// The result of executing a step once.
#[derive(Clone, Debug)]
pub struct Execution {
    pub outcome: Outcome,
    pub error: Option<String>,
    /// What the step printed (for `steps.<id>.stdout`).
    pub stdout: String,
    /// True when the step was cut short by an interrupt.
    pub interrupted: bool,
}

pub trait StepAction {
    fn preflight(&self, ctx: &StepContext<'_>) -> impl Future<Output = Preflight> + Send;
    fn execute(&self, ctx: &StepContext<'_>) -> impl Future<Output = Execution> + Send;
}

/// True when this build can execute the action.
pub fn can_execute(action: &Action) -> bool {
    matches!(action, Action::Run(_))
}

fn not_available(action: &Action) -> Preflight {
    Preflight {
        verdict: Verdict::Blocked,
        fidelity: Fidelity::Unverifiable,
        reason: format!(
            "this version of release cannot run `{}` steps yet (only `run`)",
            action.name()
        ),
        would: String::new(),
        output: None,
    }
}

pub async fn preflight(action: &Action, ctx: &StepContext<'_>) -> Preflight {
    match action {
        Action::Run(run) => run.preflight(ctx).await,
        other => not_available(other),
    }
}

pub async fn execute(action: &Action, ctx: &StepContext<'_>) -> Execution {
    match action {
        Action::Run(run) => run.execute(ctx).await,
        other => Execution {
            outcome: Outcome::Failed,
            error: Some(not_available(other).reason),
            stdout: String::new(),
            interrupted: false,
        },
    }
}
