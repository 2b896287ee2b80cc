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
}

impl StepReport {
    /// The summary's detail: the error, else the first line the step printed.
    pub fn detail(&self) -> &str {
        match (&self.error, &self.stdout) {
            (Some(error), _) => error,
            (None, Some(stdout)) => stdout
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default(),
            (None, None) => "",
        }
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
