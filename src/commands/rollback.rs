use crate::commands::Context;
use crate::commands::run::{
    Job, RunOptions, audit_log, check_target, execute_runbook, load_history,
};
use crate::error::Error;
use crate::project::Project;
use crate::state::redact::Redactor;

/// Run a stage's rollback runbook (`runbooks/<stage>/rollback.yaml`) for a component.
///
/// A real run needs `--reason` and a component that has reached the stage; `--dry-run`
/// rehearses it at any stage, changing nothing.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The component to roll back.
    pub component: String,

    /// The stage whose rollback runbook runs.
    #[arg(long)]
    pub stage: String,

    #[command(flatten)]
    pub options: RunOptions,
}

pub fn cmd_rollback(ctx: &Context<'_>, args: &RollbackArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let (component, stage) = (&args.component, &args.stage);
    check_target(&project, component, stage)?;
    let path = project.runbook_path(stage, "rollback");
    if !path.is_file() {
        return Err(Error::InvalidInput {
            message: format!(
                "stage `{stage}` has no rollback runbook ({} is missing)",
                path.display()
            ),
            hint: Some("`release init` writes the default one for each stage".into()),
        });
    }
    if !args.options.dry_run {
        if args
            .options
            .reason
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
        {
            return Err(Error::InvalidInput {
                message: "a real rollback needs --reason".into(),
                hint: Some("say why, e.g. --reason \"5xx spike after deploy\": it goes in the audit log and the incident (or rehearse with --dry-run)".into()),
            });
        }
        let audit = audit_log(&project, Redactor::default());
        let history = load_history(&project, &audit)?.component(component);
        let stages: Vec<&str> = project.config.stages().collect();
        let reached = history.stage.as_deref().unwrap_or(stages[0]);
        let position = |s: &str| stages.iter().position(|x| *x == s).unwrap_or(0);
        if position(reached) < position(stage) {
            return Err(Error::Refused {
                message: format!(
                    "{component} is at {reached}: it has not reached {stage}, so there is nothing of it to roll back there"
                ),
                hint: Some(format!(
                    "rehearse the procedure with `release rollback {component} --stage {stage} --dry-run …`"
                )),
            });
        }
    }
    execute_runbook(
        ctx,
        &project,
        &Job {
            path: &path,
            component,
            stage,
            options: &args.options,
            purpose: "rollback",
            held: None,
            resume: None,
        },
    )
}
