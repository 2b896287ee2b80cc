//! Confirmations: the runbook's `confirm: type-component` and steps' `confirm:` questions.
//! With no terminal and no `--yes` a run that needs one is refused before anything runs.

use std::io::IsTerminal;

use crate::project::runbook::Runbook;

/// True when a real run of this runbook would ask something.
pub fn needed(runbook: &Runbook) -> bool {
    runbook.confirm.is_some() || runbook.steps.iter().any(|s| s.confirm.is_some())
}

/// True when there is a person at a terminal to answer.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The operator types the component's name; anything else declines.
pub fn type_component(component: &str, stage: &str, runbook: &str) -> bool {
    let answer = dialoguer::Input::<String>::new()
        .with_prompt(format!(
            "{runbook} on {stage}: type the component name ({component}) to go on, anything else stops"
        ))
        .allow_empty(true)
        .interact_text();
    answer.is_ok_and(|a| a.trim() == component)
}

/// A yes/no question; no (the default) declines.
pub fn ask(question: &str) -> bool {
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .unwrap_or(false)
}
