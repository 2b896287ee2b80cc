//! Confirmations: the runbook's `confirm: type-component` and steps' `confirm:` questions.
//! With no terminal and no `--yes` a run that needs one is refused before anything runs.
//!
//! Ctrl-C at a prompt is an interrupt, never an answer: in raw mode the terminal sends no
//! SIGINT, `console` reads the key as an interrupted read (and raises SIGINT itself), and
//! that read comes back here as [`Answer::Interrupted`], so the run ends `interrupted`
//! whichever of the two the dispatcher sees first. The prompts hide the cursor and do not
//! show it again on that path: [`PromptGuard`] does, on every way out.
//!
//! A signal (SIGTERM, SIGHUP) does not wait for the prompt's read: the run ends while the
//! read is still blocked, with the terminal in raw mode and the cursor hidden.
//! [`restore_terminal`] puts back the settings saved when the prompt opened.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use crate::project::runbook::Runbook;

/// What the operator did at a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Ctrl-C (or the read was interrupted by a signal).
    Interrupted,
}

/// The terminal's settings from before the open prompt, if one is open.
static BEFORE_PROMPT: Mutex<Option<rustix::termios::Termios>> = Mutex::new(None);

/// Open while a prompt is: saves the terminal's settings first; when dropped, forgets them
/// and shows the cursor again (a prompt hides it).
pub struct PromptGuard;

impl PromptGuard {
    fn open() -> Self {
        let stdin = std::io::stdin();
        if stdin.is_terminal()
            && let Ok(settings) = rustix::termios::tcgetattr(&stdin)
            && let Ok(mut saved) = BEFORE_PROMPT.lock()
        {
            *saved = Some(settings);
        }
        Self
    }
}

impl Drop for PromptGuard {
    fn drop(&mut self) {
        if let Ok(mut saved) = BEFORE_PROMPT.lock() {
            saved.take();
        }
        show_cursor();
    }
}

/// After a prompt was cut short by a signal: the terminal's settings as they were before
/// it (its read, still blocked, holds the terminal in raw mode), and the cursor shown.
pub fn restore_terminal() {
    let saved = BEFORE_PROMPT.lock().ok().and_then(|mut s| s.take());
    if let Some(settings) = saved {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &settings,
        );
        // The question's line was left unanswered: what follows starts on a line of its own.
        let _ = std::io::stderr().write_all(b"\n");
    }
    show_cursor();
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
    let _prompt = PromptGuard::open();
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
    let _prompt = PromptGuard::open();
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
