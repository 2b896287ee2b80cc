//! `health_check` (being written; until then a real run refuses it before anything runs).

use super::{
    Execution, Preflight, StepAction, StepContext, not_available_execution, not_available_preflight,
};
use crate::project::runbook::HealthCheckAction;

impl StepAction for HealthCheckAction {
    async fn preflight(&self, _ctx: &StepContext<'_>) -> Preflight {
        not_available_preflight("health_check")
    }

    async fn execute(&self, _ctx: &StepContext<'_>) -> Execution {
        not_available_execution("health_check")
    }
}
