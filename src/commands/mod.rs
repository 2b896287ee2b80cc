//! One file per subcommand, and the one `match` that dispatches to them.

pub mod approve;
pub mod attest;
pub mod audit;
pub mod completions;
pub mod deprecate;
pub mod gates;
pub mod init;
pub mod man;
pub mod promote;
pub mod resume;
pub mod rollback;
pub mod run;
pub mod runbook;
pub mod schema;
pub mod status;
pub mod unlock;

use std::path::PathBuf;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::Error;
use crate::output::Output;

/// What every command gets: the folder it runs in (after `-C`), the global flags, output.
pub struct Context<'a> {
    pub cwd: PathBuf,
    pub global: &'a GlobalArgs,
    pub output: &'a Output,
}

/// Runs the command; the `Ok` value is the exit code of a command that finished (a failed
/// check is not an error of the program).
pub fn dispatch(cli: Cli, output: &Output) -> Result<i32, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("cannot read the current folder", e))?;
    let cwd = match &cli.global.directory {
        Some(dir) => {
            let dir = cwd.join(dir);
            if !dir.is_dir() {
                return Err(Error::InvalidInput {
                    message: format!("-C {}: no such folder", dir.display()),
                    hint: None,
                });
            }
            dir
        }
        None => cwd,
    };
    let ctx = Context {
        cwd,
        global: &cli.global,
        output,
    };
    match cli.command {
        Command::Init(args) => init::cmd_init(&ctx, &args),
        Command::Run(args) => run::cmd_run(&ctx, &args),
        Command::Rollback(args) => rollback::cmd_rollback(&ctx, &args),
        Command::Resume(args) => resume::cmd_resume(&ctx, &args),
        Command::Runbook(args) => runbook::cmd_runbook(&ctx, &args),
        Command::Audit(args) => audit::cmd_audit(&ctx, &args),
        Command::Unlock(args) => unlock::cmd_unlock(&ctx, &args),
        Command::Schema(args) => schema::cmd_schema(&ctx, &args),
        Command::Status(args) => status::cmd_status(&ctx, &args),
        Command::Gates(args) => gates::cmd_gates(&ctx, &args),
        Command::Promote(args) => promote::cmd_promote(&ctx, &args),
        Command::Attest(args) => attest::cmd_attest(&ctx, &args),
        Command::Approve(args) => approve::cmd_approve(&ctx, &args),
        Command::Deprecate(args) => deprecate::cmd_deprecate(&ctx, &args),
        Command::Completions(args) => completions::cmd_completions(&args),
        Command::Man(args) => man::cmd_man(&args),
    }
}
