use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Error;

/// Print the man page (roff), e.g. `release man > release.1 && man ./release.1`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {}

pub fn cmd_man(_args: &ManArgs) -> Result<i32, Error> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render(&mut std::io::stdout())
        .map_err(|e| Error::io("cannot write the man page", e))?;
    Ok(0)
}
