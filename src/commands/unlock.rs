use serde_json::json;

use crate::commands::Context;
use crate::commands::run::{audit_log, check_target, locks_dir};
use crate::error::Error;
use crate::project::Project;
use crate::state::audit::Entry;
use crate::state::lock::{self, LockError};
use crate::state::redact::Redactor;

/// Remove a stale lock (one whose run is dead on another host), recorded as `lock.forced`.
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    pub component: String,

    #[arg(long)]
    pub stage: String,

    /// The run id the lock holds (shown when a run is refused), so that only that lock goes.
    #[arg(long, value_name = "RUN_ID")]
    pub lock_id: String,

    /// Why it is safe to remove: recorded in the audit log.
    #[arg(long)]
    pub reason: String,
}

pub fn cmd_unlock(ctx: &Context<'_>, args: &UnlockArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    check_target(&project, &args.component, &args.stage)?;
    let dir = locks_dir(&project);
    match lock::force_remove(&dir, &args.component, &args.stage, &args.lock_id) {
        Ok(Some(holder)) => {
            audit_log(&project, Redactor::default())
                .append(Entry {
                    run: args.lock_id.clone(),
                    kind: "lock.forced",
                    component: Some(args.component.clone()),
                    stage: Some(args.stage.clone()),
                    data: json!({ "holder": holder, "reason": args.reason }),
                })
                .map_err(|e| Error::Failed {
                    message: e.to_string(),
                    hint: None,
                })?;
            ctx.output.result(&format!("removed the lock of {holder}"));
            Ok(0)
        }
        Ok(None) => {
            ctx.output.result(&format!(
                "{} at {} is not locked: nothing to do",
                args.component, args.stage
            ));
            Ok(0)
        }
        Err(LockError::Held { holder, .. }) => Err(Error::Refused {
            message: format!(
                "the lock of {} at {} is held by {holder}, not by run {}",
                args.component, args.stage, args.lock_id
            ),
            hint: Some(format!(
                "check it is dead, then pass --lock-id {}",
                holder.run
            )),
        }),
        Err(e @ LockError::Io { .. }) => Err(Error::Failed {
            message: e.to_string(),
            hint: None,
        }),
    }
}
