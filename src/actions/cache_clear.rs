//! `cache_clear` (being written; until then a real run refuses it before anything runs).

use super::{
    Execution, Preflight, StepAction, StepContext, not_available_execution, not_available_preflight,
};
use crate::project::runbook::CacheClearAction;

impl StepAction for CacheClearAction {
    async fn preflight(&self, _ctx: &StepContext<'_>) -> Preflight {
        not_available_preflight("cache_clear")
    }

    async fn execute(&self, _ctx: &StepContext<'_>) -> Execution {
        not_available_execution("cache_clear")
    }
}
