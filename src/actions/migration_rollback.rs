//! `migration_rollback`: the migration tool's rollback command; its dry-run runs the
//! declared `plan` (the tool's offline-SQL or status mode) and shows what it printed, else
//! checks the executable. It is a `run` with a name that says what it is for.

use super::{Execution, Preflight, StepAction, StepContext};
use crate::project::runbook::{MigrationRollbackAction, RunAction, RunSpec};

impl MigrationRollbackAction {
    fn as_run(&self) -> RunAction {
        RunAction::Spec(RunSpec {
            argv: Some(self.run.clone()),
            plan: self.plan.clone(),
            ..RunSpec::default()
        })
    }
}

impl StepAction for MigrationRollbackAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        self.as_run().preflight(ctx).await
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        self.as_run().execute(ctx).await
    }
}
