//! `release approve COMPONENT --to S [--note TEXT]`: records the actor's approval of that
//! promotion, for the `approvals` gate (which never counts the actor promoting).

use serde_json::json;

use crate::commands::Context;
use crate::commands::gates::{append, secrets};
use crate::commands::run::{audit_log, check_target};
use crate::engine;
use crate::error::Error;
use crate::project::Project;

/// Approve the promotion of a component into a stage (for `approvals` gates).
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The component.
    pub component: String,

    /// The stage it would enter.
    #[arg(long)]
    pub to: String,

    /// Why, or what was looked at.
    #[arg(long)]
    pub note: Option<String>,
}

pub fn cmd_approve(ctx: &Context<'_>, args: &ApproveArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let (component, target) = (args.component.as_str(), args.to.as_str());
    check_target(&project, component, target)?;
    let audit = audit_log(&project, secrets(&project));
    append(
        &audit,
        &engine::new_run_id(),
        "approval.recorded",
        component,
        target,
        json!({ "to": target, "note": args.note }),
    )?;
    if ctx.output.json {
        ctx.output.json_value(&json!({
            "component": component, "to": target, "note": args.note, "actor": audit.actor(),
        }));
    } else {
        ctx.output.result(&format!(
            "recorded: {} approves the promotion of {component} to {target} (it counts for anyone but {} promoting)",
            audit.actor(),
            audit.actor()
        ));
    }
    Ok(0)
}
