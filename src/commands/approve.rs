//! `release approve COMPONENT --to S [--note TEXT]`: records the actor's approval of that
//! promotion, for the `approvals` gate (which never counts the actor promoting). An
//! approval that could never count is refused: one into the first stage or a stage the
//! component has reached (exit 3), one by an actor nobody can name (exit 2).

use serde_json::json;

use crate::commands::Context;
use crate::commands::gates::{append, secrets};
use crate::commands::run::{audit_log, check_target, load_history};
use crate::engine;
use crate::error::Error;
use crate::gates::rules::standing;
use crate::project::Project;
use crate::project::config::GateKind;
use crate::state::audit::is_unidentified;

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
    // Four eyes means two known people: an approval by nobody in particular counts for none.
    if is_unidentified(audit.actor()) {
        return Err(Error::InvalidInput {
            message: "cannot tell who you are: set git's user.email (`git config user.email you@example.com`) or $USER".into(),
            hint: Some(format!(
                "the approval would be recorded as {}, which names no person and never counts",
                audit.actor()
            )),
        });
    }
    let history = load_history(&project, &audit)?;
    if history
        .get(component)
        .is_some_and(|h| h.deprecated.is_some())
    {
        return Err(Error::Refused {
            message: format!(
                "{component} is deprecated: it can no longer be promoted, so no approval of it can count"
            ),
            hint: None,
        });
    }
    let here = standing(&project.config, &history, component);
    let stages: Vec<&str> = project.config.stages().collect();
    let target_position = stages.iter().position(|s| *s == target).unwrap_or(0);
    let next = match stages.get(here.position + 1) {
        Some(next) => format!("its next promotion is `--to {next}`"),
        None => format!(
            "{} is the last stage: there is no next promotion",
            here.stage
        ),
    };
    if target_position == 0 {
        return Err(Error::Refused {
            message: format!(
                "{target} is the first stage: nothing is promoted into it, so no approval of it can count"
            ),
            hint: Some(format!("{component} is at {}: {next}", here.stage)),
        });
    }
    if target_position <= here.position {
        return Err(Error::Refused {
            message: format!(
                "{component} is already at {}: an approval of its promotion to {target} can never count",
                here.stage
            ),
            hint: Some(next),
        });
    }
    let guarded = project
        .config
        .gates_for(target)
        .iter()
        .any(|g| matches!(g.kind, GateKind::Approvals(_)));
    append(
        ctx.output,
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
            "gated": guarded,
        }));
    } else {
        let counts = if guarded {
            format!("it counts for anyone but {} promoting", audit.actor())
        } else {
            format!("no approvals gate guards {target}")
        };
        ctx.output.result(&format!(
            "recorded: {} approves the promotion of {component} to {target} ({counts})",
            audit.actor(),
        ));
    }
    Ok(0)
}
