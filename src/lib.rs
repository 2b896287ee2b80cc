//! `release`: a release and rollback orchestrator.
//!
//! Data flows one way: argv ([`cli`]) → a command ([`commands`]) → the project, loaded and
//! validated ([`project`]) → output. Errors are typed ([`error::Error`]), printed once, and
//! mapped to SPEC's exit codes in one place, [`run`].

pub mod actions;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod gates;
pub mod output;
pub mod project;
pub mod state;
pub mod template;
pub mod trackers;

use std::ffi::OsString;

use clap::Parser;

use crate::cli::Cli;
use crate::output::Output;

/// Runs the command line `args` (program name first) and returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // reqwest and octocrab use rustls with ring; it needs its provider chosen once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let output = Output::new(&cli.global);
    output.init_logging(&cli.global);
    match commands::dispatch(cli, &output) {
        Ok(code) => code,
        Err(error) => {
            output.error(&error);
            error.exit_code()
        }
    }
}
