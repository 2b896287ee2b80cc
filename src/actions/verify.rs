//! `verify`: re-evaluates a stage's gates for the component after a rollback. Its preflight
//! lists the gates it would evaluate; evaluating them comes with the gates (the promotion
//! work), so until then a real run refuses a runbook with a `verify` step before starting.

use super::{
    Execution, Fidelity, Preflight, StepAction, StepContext, Verdict, not_available_execution,
};
use crate::project::config::GateKind;
use crate::project::runbook::VerifyAction;

fn kind_name(kind: &GateKind) -> &'static str {
    match kind {
        GateKind::Run(_) => "run",
        GateKind::Coverage(_) => "coverage",
        GateKind::StableFor(_) => "stable_for",
        GateKind::Uptime(_) => "uptime",
        GateKind::Attested(_) => "attested",
        GateKind::Approvals(_) => "approvals",
        GateKind::Freeze(_) => "freeze",
        GateKind::RollbackTested(_) => "rollback_tested",
        GateKind::FileExists(_) => "file_exists",
        GateKind::NoOpenIssues(_) => "no_open_issues",
    }
}

impl StepAction for VerifyAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        let stage = &self.stage.value;
        let gates = ctx.config.gates_for(stage);
        let list = gates
            .iter()
            .map(|g| format!("{} ({})", g.id, kind_name(&g.kind)))
            .collect::<Vec<_>>()
            .join(", ");
        let would = if gates.is_empty() {
            format!("nothing: stage `{stage}` has no gates")
        } else {
            format!("evaluate the {} gates of `{stage}`: {list}", gates.len())
        };
        Preflight {
            verdict: Verdict::Ready,
            fidelity: Fidelity::Checked,
            reason: "the gates are listed, not evaluated, in a dry-run".into(),
            would,
            output: None,
        }
    }

    async fn execute(&self, _ctx: &StepContext<'_>) -> Execution {
        not_available_execution("verify")
    }
}
