//! The runbook engine.
//!
//! One dispatcher ([`scheduler`]) owns the graph state: it decides which step may start
//! (`needs`, `when`, `if`), asks confirmations, writes each audit record before the side
//! effect it announces, and reacts to Ctrl-C. Step tasks only run their action and send
//! events back (output lines, the result). The [`reporter`] renders those events; the
//! audit log is written by the dispatcher alone, so records never interleave within a run.
//!
//! A dry-run walks the same graph in order and calls each action's read-only `preflight`
//! instead of `execute`: nothing else runs, nothing is asked.

pub mod confirm;
pub mod context;
pub mod process;
pub mod reporter;
pub mod scheduler;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::actions::{Outcome, Preflight};
use crate::project::runbook::Runbook;

/// Everything a run needs, resolved before it starts.
pub struct Request {
    pub root: PathBuf,
    /// `release.yaml`, for actions (channels, repository, trackers).
    pub config: std::sync::Arc<crate::project::config::Config>,
    pub runbook: Runbook,
    /// As shown to people and recorded.
    pub runbook_path: String,
    pub runbook_sha256: String,
    pub component: String,
    pub stage: String,
    pub params: BTreeMap<String, String>,
    pub reason: Option<String>,
    pub dry_run: bool,
    pub max_parallel: usize,
    pub yes: bool,
    /// `rollback`, `promote`, `run` or `resume`.
    pub purpose: &'static str,
    /// The command line, as recorded.
    pub command: Vec<String>,
    /// component, stage, spec, vars, params, repository, promotion (run.* is added here).
    pub context: serde_json::Value,
    /// Set when this run resumes an earlier one (`release resume`).
    pub resumed: Option<Resumed>,
}

/// What a resumed run carries over from the run it continues (SPEC §8).
#[derive(Clone, Debug)]
pub struct Resumed {
    /// The run this one continues.
    pub resumes: String,
    /// The first run of the chain (a resume of a resume leads back to it): the id the
    /// `incident_issue` marker holds, so that every run of the chain finds one issue.
    pub origin: String,
    /// The steps not run again, by id.
    pub done: BTreeMap<String, Done>,
}

/// A step a resumed run does not run again.
#[derive(Clone, Debug)]
pub struct Done {
    /// The run in which it succeeded; `None` when the operator marked it done
    /// (`--mark-done`).
    pub run: Option<String>,
    /// What it printed, as recorded (redacted, the first 4 KiB): `steps.<id>.stdout`.
    pub stdout: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Declined,
    Interrupted,
    /// A dry-run found something blocking.
    Blocked,
}

impl RunOutcome {
    /// The exit code SPEC §5 gives this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            RunOutcome::Succeeded => 0,
            RunOutcome::Failed | RunOutcome::Blocked => 1,
            RunOutcome::Declined => 3,
            RunOutcome::Interrupted => 130,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    /// `None`: the step never started (the run stopped first).
    pub outcome: Option<Outcome>,
    pub duration_ms: u64,
    pub attempts: u32,
    pub error: Option<String>,
    /// What the step printed (redacted with the report; the first 4 KiB), when it printed
    /// something: the revert's commits, the incident's path, a key count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Preflight>,
    /// For a step a resumed run did not run again: the run in which it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_run: Option<String>,
    /// For a step a resumed run did not run again because the operator said it was done.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub marked_done: bool,
}

impl StepReport {
    /// The summary's detail: the error, else where a resumed run found it done, else the
    /// first line the step printed.
    pub fn detail(&self) -> std::borrow::Cow<'_, str> {
        if let Some(error) = &self.error {
            return error.into();
        }
        if let Some(run) = &self.from_run {
            return format!("succeeded in run {run}: not run again").into();
        }
        if self.marked_done {
            return "marked done (--mark-done): not run".into();
        }
        self.stdout
            .as_deref()
            .and_then(|stdout| stdout.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or_default()
            .into()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub run: String,
    pub component: String,
    pub stage: String,
    pub runbook: String,
    pub dry_run: bool,
    pub outcome: RunOutcome,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
    /// Why the run stopped, when it did not finish normally.
    pub error: Option<String>,
    /// The run this one resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumes: Option<String>,
}

/// A new run id: sortable by time, unique enough per project.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!(
        "r{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        hasher.finish() & 0xff_ffff
    )
}
