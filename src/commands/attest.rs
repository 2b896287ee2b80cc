//! `release attest COMPONENT CHECK [--note TEXT]`: records a manual attestation (a security
//! review, a code review, monitoring in place …) for the `attested` gate.

use serde_json::json;

use crate::commands::Context;
use crate::commands::gates::{append, secrets};
use crate::commands::run::{audit_log, check_component, load_history};
use crate::engine;
use crate::error::Error;
use crate::gates::rules::standing;
use crate::project::Project;

/// Record that a check was done for a component (for `attested` gates).
#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// The component.
    pub component: String,

    /// The check, as `attested: {check: …}` gates name it: security-review, code-review,
    /// monitoring, runbook …
    pub check: String,

    /// What was checked, by whom, where the evidence is.
    #[arg(long)]
    pub note: Option<String>,
}

pub fn cmd_attest(ctx: &Context<'_>, args: &AttestArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let component = args.component.as_str();
    check_component(&project, component)?;
    let check = args.check.trim();
    if check.is_empty() || check.chars().any(char::is_whitespace) {
        return Err(Error::InvalidInput {
            message: format!("`{}` is not a check name", args.check),
            hint: Some("name the check as the gate does, e.g. `security-review`".into()),
        });
    }
    let audit = audit_log(&project, secrets(&project));
    // An attestation vouches for a check: by nobody in particular, it vouches for nothing.
    if crate::state::audit::is_unidentified(audit.actor()) {
        return Err(Error::InvalidInput {
            message: "cannot tell who you are: set git's user.email (`git config user.email you@example.com`) or $USER".into(),
            hint: Some(format!(
                "the attestation would be recorded as {}, which names no person and never counts",
                audit.actor()
            )),
        });
    }
    let history = load_history(&project, &audit)?;
    let stage = standing(&project.config, &history, component)
        .stage
        .to_owned();
    append(
        ctx.output,
        &audit,
        &engine::new_run_id(),
        "attestation.recorded",
        component,
        &stage,
        json!({ "check": check, "note": args.note }),
    )?;
    let gated: Vec<String> = project
        .config
        .stages()
        .flat_map(|s| {
            project
                .config
                .gates_for(s)
                .into_iter()
                .filter_map(move |g| match &g.kind {
                    crate::project::config::GateKind::Attested(a) if a.check == check => {
                        Some(format!("{s}/{}", g.id))
                    }
                    _ => None,
                })
        })
        .collect();
    if ctx.output.json {
        ctx.output.json_value(&json!({
            "component": component, "check": check, "note": args.note,
            "actor": audit.actor(), "gates": gated,
        }));
    } else {
        let used = if gated.is_empty() {
            format!(" (no gate in release.yaml asks for `{check}`)")
        } else {
            format!(" (counts for {})", gated.join(", "))
        };
        ctx.output.result(&format!(
            "recorded: {check} of {component} attested by {}{used}",
            audit.actor()
        ));
    }
    Ok(0)
}
