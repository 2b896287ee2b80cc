//! Where output goes and how it looks: results on stdout, diagnostics and logs on stderr,
//! colour only on a terminal (and never with `NO_COLOR`), JSON with `--json`.

use std::io::{IsTerminal, Write};

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::project::diagnostic::{self, Diagnostic};

pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// Colour on stderr.
    pub color: bool,
}

impl Output {
    pub fn new(global: &GlobalArgs) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            json: global.json,
            quiet: global.quiet,
            color: !no_color && std::io::stderr().is_terminal(),
        }
    }

    /// Logs (tracing) on stderr: warnings by default, `-v` info, `-vv` debug, `-q` errors;
    /// `RUST_LOG` wins when set. Below `-vv`, only release's own: the libraries' (an
    /// HTTP client's `ERROR failed with status 502` for a request release retries and
    /// reports itself) would only repeat, without context, what the run says better.
    pub fn init_logging(&self, global: &GlobalArgs) {
        let level = match (global.quiet, global.verbose) {
            (true, _) => "release=error",
            (false, 0) => "release=warn",
            (false, 1) => "release=info",
            (false, _) => "debug",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(self.color)
            .with_target(false)
            .try_init();
    }

    /// A result line on stdout.
    pub fn result(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// A JSON document on stdout.
    pub fn json_value(&self, value: &serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, value);
        let _ = writeln!(out);
    }

    /// Diagnostics: rendered on stderr, or as a JSON list on stdout with `--json`.
    pub fn diagnostics(&self, diagnostics: &[Diagnostic]) {
        if self.json {
            self.json_value(&serde_json::to_value(diagnostics).unwrap_or_default());
        } else if !diagnostics.is_empty() {
            let shown: Vec<Diagnostic> = if self.quiet {
                diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .cloned()
                    .collect()
            } else {
                diagnostics.to_vec()
            };
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(diagnostic::render(&shown, self.color).as_bytes());
        }
    }

    /// A warning on stderr (hidden by `-q`).
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "warning: {text}");
        }
    }

    /// Warnings found on the way (a runbook's layout): on stderr for a person, never in the
    /// JSON on stdout, which belongs to the command's own result.
    pub fn warnings(&self, diagnostics: &[Diagnostic]) {
        if !self.quiet && !diagnostics.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(diagnostic::render(diagnostics, self.color).as_bytes());
        }
    }

    /// An error, printed once, with its hint.
    pub fn error(&self, error: &Error) {
        if let Error::Invalid(diagnostics) = error {
            self.diagnostics(diagnostics);
            return;
        }
        let mut err = std::io::stderr().lock();
        let (red, bold, reset) = if self.color {
            ("\x1b[31;1m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let _ = writeln!(err, "{red}error{reset}{bold}: {error}{reset}");
        if let Some(hint) = error.hint() {
            let _ = writeln!(err, "  help: {hint}");
        }
    }
}
