//! `release deprecate COMPONENT --reason TEXT`: moves a component to the Deprecated column;
//! it can no longer be promoted.

use serde_json::json;

use crate::commands::Context;
use crate::commands::gates::{append, secrets};
use crate::commands::run::{audit_log, check_component, load_history};
use crate::engine;
use crate::error::Error;
use crate::gates::rules::standing;
use crate::project::Project;

/// Deprecate a component: it stays on the board, and is never promoted again.
#[derive(Debug, clap::Args)]
pub struct DeprecateArgs {
    /// The component.
    pub component: String,

    /// Why (recorded).
    #[arg(long)]
    pub reason: String,
}

pub fn cmd_deprecate(ctx: &Context<'_>, args: &DeprecateArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let component = args.component.as_str();
    check_component(&project, component)?;
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(Error::InvalidInput {
            message: "--reason is empty".into(),
            hint: Some("say why, e.g. --reason \"replaced by checkout-v2\"".into()),
        });
    }
    let audit = audit_log(&project, secrets(&project));
    let history = load_history(&project, &audit)?;
    if let Some(d) = history.get(component).and_then(|h| h.deprecated.as_ref()) {
        if ctx.output.json {
            ctx.output.json_value(&json!({
                "component": component,
                "recorded": false,
                "already_deprecated": true,
                "since": d.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "by": d.actor,
                "reason": d.reason,
            }));
        } else {
            ctx.output.result(&format!(
                "{component} is already deprecated (since {} by {}: {}); nothing recorded",
                d.at.format("%Y-%m-%d %H:%M UTC"),
                d.actor,
                d.reason
            ));
        }
        return Ok(0);
    }
    let stage = standing(&project.config, &history, component)
        .stage
        .to_owned();
    append(
        ctx.output,
        &audit,
        &engine::new_run_id(),
        "component.deprecated",
        component,
        &stage,
        json!({ "reason": reason }),
    )?;
    if ctx.output.json {
        ctx.output.json_value(&json!({
            "component": component, "stage": stage, "reason": reason, "actor": audit.actor(),
            "recorded": true,
        }));
    } else {
        ctx.output.result(&format!(
            "recorded: {component} (at {stage}) is deprecated; it will not be promoted again"
        ));
    }
    Ok(0)
}
