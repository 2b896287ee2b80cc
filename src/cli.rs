//! The command line: global flags shared by every command, and the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// Release and rollback orchestrator: stage gates, runbooks with an honest dry-run, and a
/// tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(
    name = "release",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[expect(clippy::struct_excessive_bools, reason = "each is a command-line flag")]
pub struct GlobalArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,

    /// Use this release.yaml instead of searching the current folder and its parents.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Answer yes to every confirmation.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,

    /// More log output on stderr (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short = 'v', long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,

    /// Plain lines instead of progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(commands::init::InitArgs),
    Status(commands::status::StatusArgs),
    Gates(commands::gates::GatesArgs),
    Promote(commands::promote::PromoteArgs),
    Attest(commands::attest::AttestArgs),
    Approve(commands::approve::ApproveArgs),
    Deprecate(commands::deprecate::DeprecateArgs),
    Run(commands::run::RunArgs),
    Rollback(commands::rollback::RollbackArgs),
    Resume(commands::resume::ResumeArgs),
    Runbook(commands::runbook::RunbookArgs),
    Audit(commands::audit::AuditArgs),
    Unlock(commands::unlock::UnlockArgs),
    Schema(commands::schema::SchemaArgs),
    Completions(commands::completions::CompletionsArgs),
    Man(commands::man::ManArgs),
}
