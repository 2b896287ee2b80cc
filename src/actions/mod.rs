//! Actions: what a step does. Each implements [`StepAction`]: a read-only `preflight` (the
//! dry-run) and `execute`. The engine only ever calls [`preflight`] and [`execute`], so a
//! new action is one file and one arm here.

pub mod cache_clear;
pub mod git_revert;
pub mod health_check;
pub mod http;
pub mod incident_issue;
pub mod migration_rollback;
pub mod notify;
pub mod run;
pub mod script;
pub mod verify;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::engine::context::Templater;
use crate::engine::process::Line;
use crate::project::config::Config;
use crate::project::runbook::Action;

/// Who runs what, where: the run's identity, as actions record it (webhook context,
/// incident bodies, markers).
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub id: String,
    pub actor: String,
    pub component: String,
    pub stage: String,
    pub reason: String,
    pub started_at: String,
    pub dry_run: bool,
    /// The first run of a resumed chain (`id` itself for a run that resumes none): what
    /// the `incident_issue` marker holds, so that a resumed run finds the issue.
    #[serde(skip)]
    pub origin: String,
}

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
    /// `release.yaml` (channels, repository, trackers).
    pub config: &'a Config,
    pub run: &'a RunInfo,
}

/// Why a bounded piece of work did not finish.
pub enum Stop {
    TimedOut(Duration),
    Interrupted,
}

/// Runs `work` under the step's timeout, until it ends or the run is interrupted.
pub async fn bounded<T>(
    work: impl Future<Output = T>,
    timeout: Option<Duration>,
    mut cancel: watch::Receiver<bool>,
) -> Result<T, Stop> {
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        done = work => Ok(done),
        () = deadline => Err(Stop::TimedOut(timeout.unwrap_or_default())),
        // A closed channel means nobody can interrupt any more: keep working.
        () = async {
            if cancel.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => Err(Stop::Interrupted),
    }
}

/// Reads the secret an `*_env` key names; the error names the variable, never a value.
pub fn secret_from_env(variable: &str) -> Result<String, String> {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        Ok(_) => Err(format!("environment variable {variable} is empty")),
        Err(_) => Err(format!("environment variable {variable} is not set")),
    }
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

pub async fn preflight(action: &Action, ctx: &StepContext<'_>) -> Preflight {
    match action {
        Action::Run(a) => a.preflight(ctx).await,
        Action::Notify(a) => a.preflight(ctx).await,
        Action::GitRevert(a) => a.preflight(ctx).await,
        Action::MigrationRollback(a) => a.preflight(ctx).await,
        Action::CacheClear(a) => a.preflight(ctx).await,
        Action::HealthCheck(a) => a.preflight(ctx).await,
        Action::IncidentIssue(a) => a.preflight(ctx).await,
        Action::Verify(a) => a.preflight(ctx).await,
    }
}

pub async fn execute(action: &Action, ctx: &StepContext<'_>) -> Execution {
    match action {
        Action::Run(a) => a.execute(ctx).await,
        Action::Notify(a) => a.execute(ctx).await,
        Action::GitRevert(a) => a.execute(ctx).await,
        Action::MigrationRollback(a) => a.execute(ctx).await,
        Action::CacheClear(a) => a.execute(ctx).await,
        Action::HealthCheck(a) => a.execute(ctx).await,
        Action::IncidentIssue(a) => a.execute(ctx).await,
        Action::Verify(a) => a.execute(ctx).await,
    }
}
