//! The one owner of the terminal during a run: progress bars (one line per running step and
//! a bar for the whole graph) on a terminal, plain timestamped lines on stderr otherwise,
//! and prompts shown with the bars suspended. Every text passes the run's redactor.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::actions::{Outcome, Preflight, Verdict};
use crate::state::redact::Redactor;

/// The bars set aside for a prompt; drawn again when this is dropped.
pub struct PromptBars(Option<MultiProgress>);

impl Drop for PromptBars {
    fn drop(&mut self) {
        if let Some(multi) = &self.0 {
            multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

pub struct Reporter {
    mode: Mode,
    redactor: Redactor,
    quiet: bool,
}

enum Mode {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        steps: HashMap<String, ProgressBar>,
    },
    Plain,
}

/// Whether bars are shown: decided once (a terminal, not CI, not `--no-progress`/`--json`).
pub fn bars_wanted(no_progress: bool, json: bool) -> bool {
    !no_progress
        && !json
        && std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none_or(|v| v.is_empty() || v == "false")
}

impl Reporter {
    pub fn new(bars: bool, quiet: bool, redactor: Redactor, total_steps: usize) -> Self {
        let mode = if bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total_steps as u64));
            overall.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps  {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            overall.enable_steady_tick(Duration::from_millis(500));
            Mode::Bars {
                multi,
                overall,
                steps: HashMap::new(),
            }
        } else {
            Mode::Plain
        };
        Self {
            mode,
            redactor,
            quiet,
        }
    }

    fn plain(&self, text: &str) {
        // One write per line (stderr is unbuffered): lines of parallel steps never mix,
        // and a step costs two system calls here, not eight.
        let line = format!(
            "{} {}\n",
            chrono::Local::now().format("%H:%M:%S"),
            self.redactor.redact(text)
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// A line above the bars (or a plain line).
    fn println(&self, text: &str) {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.println(self.redactor.redact(text));
            }
            Mode::Plain => self.plain(text),
        }
    }

    /// A warning: shown even with `-q`.
    pub fn warn(&self, text: &str) {
        self.println(&format!("warning: {text}"));
    }

    pub fn note(&self, text: &str) {
        if !self.quiet {
            self.println(text);
        }
    }

    pub fn step_started(&mut self, id: &str, label: &str) {
        match &mut self.mode {
            Mode::Bars {
                multi,
                overall,
                steps,
            } => {
                let bar = multi.insert_before(overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.green} {prefix:.bold} {elapsed:>4} {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(label.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                steps.insert(id.to_owned(), bar);
            }
            Mode::Plain => {
                if !self.quiet {
                    self.plain(&format!("start  {label}"));
                }
            }
        }
    }

    pub fn step_output(&self, id: &str, line: &str) {
        let line = self.redactor.redact(line);
        match &self.mode {
            Mode::Bars { steps, .. } => {
                if let Some(bar) = steps.get(id) {
                    bar.set_message(line.into_owned());
                }
            }
            Mode::Plain => {
                if !self.quiet {
                    self.plain(&format!("  {id} | {line}"));
                }
            }
        }
    }

    pub fn step_finished(
        &mut self,
        id: &str,
        outcome: Outcome,
        duration: Duration,
        error: Option<&str>,
    ) {
        let mark = match outcome {
            Outcome::Succeeded => "ok    ",
            Outcome::Skipped => "skip  ",
            Outcome::Declined => "no    ",
            Outcome::Failed | Outcome::TimedOut => "FAILED",
        };
        let detail = error.map(|e| format!(": {e}")).unwrap_or_default();
        let text = format!("{mark} {id} ({}){detail}", human_duration(duration));
        let failed = matches!(outcome, Outcome::Failed | Outcome::TimedOut);
        if let Mode::Bars { steps, overall, .. } = &mut self.mode {
            if let Some(bar) = steps.remove(id) {
                bar.finish_and_clear();
            }
            overall.inc(1);
        }
        if failed || !self.quiet {
            self.println(&text);
        }
    }

    pub fn preflight(&mut self, id: &str, preflight: &Preflight) {
        let mark = match preflight.verdict {
            Verdict::Ready => "ready  ",
            Verdict::Warn => "warn   ",
            Verdict::Blocked => "BLOCKED",
        };
        if let Mode::Bars { overall, .. } = &self.mode {
            overall.inc(1);
        }
        if preflight.verdict == Verdict::Blocked || !self.quiet {
            self.println(&format!("{mark} {id}: {}", preflight.reason));
        }
    }

    /// Takes the bars off the terminal while a prompt is shown, until the [`PromptBars`]
    /// is dropped.
    /// No lock is held meanwhile (`MultiProgress::suspend` would hold one across the
    /// prompt's read, and a signal ends the run while that read may still be blocked).
    pub fn aside(&self) -> PromptBars {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.clear();
                multi.set_draw_target(ProgressDrawTarget::hidden());
                PromptBars(Some(multi.clone()))
            }
            Mode::Plain => PromptBars(None),
        }
    }

    pub fn finish(&mut self) {
        if let Mode::Bars { overall, steps, .. } = &mut self.mode {
            for (_, bar) in steps.drain() {
                bar.finish_and_clear();
            }
            overall.finish_and_clear();
        }
    }
}

pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
