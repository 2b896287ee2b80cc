use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Error;

/// Print shell completions (e.g. `release completions bash > /etc/bash_completion.d/release`).
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

pub fn cmd_completions(args: &CompletionsArgs) -> Result<i32, Error> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "release", &mut std::io::stdout());
    Ok(0)
}
