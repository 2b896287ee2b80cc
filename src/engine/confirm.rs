//! Confirmations: the runbook's `confirm: type-component` and steps' `confirm:` questions.
//! With no terminal and no `--yes` a run that needs one is refused before anything runs.
//!
//! Ctrl-C at a prompt is an interrupt, never an answer: in raw mode the terminal sends no
//! SIGINT, `console` reads the key as an interrupted read (and raises SIGINT itself), and
//! that read comes back here as [`Answer::Interrupted`], so the run ends `interrupted`
//! whichever of the two the dispatcher sees first. The prompts hide the cursor and do not
//! show it again on that path: [`CursorGuard`] does, on every way out.

use std::io::{IsTerminal, Write};

use crate::project::runbook::Runbook;

/// What the operator did at a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Ctrl-C (or the read was interrupted by a signal).
    Interrupted,
}

/// Shows the terminal's cursor again when dropped (a prompt hides it).
pub struct CursorGuard;

impl Drop for CursorGuard {
    fn drop(&mut self) {
        show_cursor();
    }
}

/// Makes the cursor visible on stderr, if it is a terminal.
pub fn show_cursor() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = err.write_all(b"\x1b[?25h");
        let _ = err.flush();
    }
}

/// True when a real run of this runbook would ask something.
pub fn needed(runbook: &Runbook) -> bool {
    runbook.confirm.is_some() || runbook.steps.iter().any(|s| s.confirm.is_some())
}

/// True when there is a person at a terminal to answer.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn interrupted(error: &dialoguer::Error) -> bool {
    let dialoguer::Error::IO(e) = error;
    e.kind() == std::io::ErrorKind::Interrupted
}

/// The operator types the component's name; anything else declines.
pub fn type_component(component: &str, stage: &str, runbook: &str) -> Answer {
    let _cursor = CursorGuard;
    let answer = dialoguer::Input::<String>::new()
        .with_prompt(format!(
            "{runbook} on {stage}: type the component name ({component}) to go on, anything else stops"
        ))
        .allow_empty(true)
        .interact_text();
    match answer {
        Ok(a) if a.trim() == component => Answer::Yes,
        Err(e) if interrupted(&e) => Answer::Interrupted,
        _ => Answer::No,
    }
}

/// A yes/no question; no (the default) declines.
pub fn ask(question: &str) -> Answer {
    let _cursor = CursorGuard;
    match dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
    {
        Ok(true) => Answer::Yes,
        Err(e) if interrupted(&e) => Answer::Interrupted,
        _ => Answer::No,
    }
}
