use serde_json::json;

use crate::commands::Context;
use crate::commands::run::{audit_log, check_target, locks_dir};
use crate::error::Error;
use crate::project::Project;
use crate::state::audit::Entry;
use crate::state::lock::{self, Removed, Target, UnlockError};
use crate::state::redact::Redactor;

/// Remove a stale lock, recorded as `lock.forced`.
///
/// Stale: its run is on another host and dead there, or its process on this host is gone
/// or is no longer that run (a reused pid), or the lock file is corrupt. The lock of a run
/// that is alive on this host is never removed: stop that run first (or wait for it).
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    pub component: String,

    #[arg(long)]
    pub stage: String,

    /// The run id the lock holds (shown when a run is refused), so that only that lock goes.
    #[arg(long, value_name = "RUN_ID", required_unless_present = "corrupt")]
    pub lock_id: Option<String>,

    /// Remove a lock file whose content is not a lock record (empty or torn), which names
    /// no run to pass to --lock-id.
    #[arg(long, conflicts_with = "lock_id")]
    pub corrupt: bool,

    /// Why it is safe to remove: recorded in the audit log.
    #[arg(long)]
    pub reason: String,
}

pub fn cmd_unlock(ctx: &Context<'_>, args: &UnlockArgs) -> Result<i32, Error> {
    if args.reason.trim().is_empty() {
        return Err(Error::InvalidInput {
            message: "--reason is empty".into(),
            hint: Some(
                "say why the lock is safe to remove, e.g. --reason \"ci-runner-7 was destroyed\": it goes in the audit log"
                    .into(),
            ),
        });
    }
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    check_target(&project, &args.component, &args.stage)?;
    let dir = locks_dir(&project);
    let target = match &args.lock_id {
        Some(id) => Target::Run(id),
        None => Target::Corrupt,
    };
    let (component, stage) = (&args.component, &args.stage);
    match lock::force_remove(&dir, component, stage, target) {
        Ok(Some(removed)) => {
            let (run, holder) = match &removed {
                Removed::Holder(holder) => (holder.run.clone(), json!(holder)),
                Removed::Corrupt { path, content } => (
                    crate::engine::new_run_id(),
                    json!({ "corrupt": path.display().to_string(), "content": content }),
                ),
            };
            let audit = audit_log(&project, Redactor::default());
            let appended = audit
                .append(Entry {
                    run,
                    kind: "lock.forced",
                    component: Some(component.clone()),
                    stage: Some(stage.clone()),
                    data: json!({ "holder": holder, "reason": args.reason }),
                })
                .map_err(|e| Error::Failed {
                    message: e.to_string(),
                    hint: None,
                })?;
            if let Some(repaired) = appended.repaired {
                ctx.output.warn(&repaired.to_string());
            }
            ctx.output.result(&format!("removed {removed}"));
            Ok(0)
        }
        Ok(None) => {
            ctx.output.result(&format!(
                "{component} at {stage} is not locked: nothing to do"
            ));
            Ok(0)
        }
        Err(e) => Err(refusal(&e, component, stage)),
    }
}

fn refusal(e: &UnlockError, component: &str, stage: &str) -> Error {
    let hint = match e {
        UnlockError::OtherRun { holder, .. } => Some(if holder.is_corrupt() {
            format!(
                "it is corrupt: release unlock {component} --stage {stage} --corrupt --reason \"…\""
            )
        } else {
            format!("check it is dead, then pass --lock-id {}", holder.run)
        }),
        UnlockError::NotCorrupt { holder, .. } => Some(format!(
            "if run {} is dead, pass --lock-id {} instead of --corrupt",
            holder.run, holder.run
        )),
        UnlockError::Corrupt { .. } => Some(format!(
            "if no run of {component} at {stage} is going on: release unlock {component} --stage {stage} --corrupt --reason \"…\""
        )),
        UnlockError::Live { holder, command } => Some(format!(
            "it is running as pid {} ({}): stop it first (Ctrl-C in its terminal, or kill -TERM {}: it stops its steps and releases the lock), or wait for it to finish",
            holder.pid,
            command.as_deref().unwrap_or("its command is unknown"),
            holder.pid
        )),
        UnlockError::Lock(_) => None,
    };
    match e {
        UnlockError::Lock(_) => Error::Failed {
            message: e.to_string(),
            hint,
        },
        _ => Error::Refused {
            message: e.to_string(),
            hint,
        },
    }
}
