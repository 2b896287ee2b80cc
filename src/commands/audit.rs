use std::fmt::Write as _;

use crate::commands::Context;
use crate::commands::run::audit_log;
use crate::error::Error;
use crate::project::Project;
use crate::state::redact::Redactor;

/// Read and check the audit log.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    Log(LogArgs),
    Verify(VerifyArgs),
}

/// The records, as a table or (`--json`) as JSON lines.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[arg(long)]
    pub component: Option<String>,
    /// A kind (`run.started`) or a prefix ending with a dot (`step.`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Records at or after this date or time (RFC 3339, or YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
}

/// Check the hash chain; names the first bad line (exit 1).
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Also require the chain to end at this head hash (the SHA-256 of the last line).
    #[arg(long, value_name = "HASH")]
    pub expect_head: Option<String>,
}

pub fn cmd_audit(ctx: &Context<'_>, args: &AuditArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let audit = audit_log(&project, Redactor::default());
    match &args.command {
        AuditCommand::Verify(a) => verify(ctx, &audit, a),
        AuditCommand::Log(a) => log(ctx, &audit, a),
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed {
        message: e.to_string(),
        hint: None,
    }
}

fn verify(
    ctx: &Context<'_>,
    audit: &crate::state::audit::AuditLog,
    args: &VerifyArgs,
) -> Result<i32, Error> {
    let v = audit.verify().map_err(failed)?;
    let head_ok = args
        .expect_head
        .as_deref()
        .is_none_or(|want| v.head.as_deref() == Some(want.trim()));
    let ok = v.problem.is_none() && head_ok;
    if ctx.output.json {
        ctx.output.json_value(&serde_json::json!({
            "ok": ok,
            "records": v.records,
            "head": v.head,
            "problem": v.problem,
            "expected_head": args.expect_head,
        }));
    } else if let Some(p) = &v.problem {
        ctx.output.error(&Error::Failed {
            message: format!("{}: line {}: {}", audit.path().display(), p.line, p.message),
            hint: Some(format!("the {} records before it verify", v.records)),
        });
    } else if !head_ok {
        ctx.output.error(&Error::Failed {
            message: format!(
                "{}: the chain verifies but ends at {} instead of the expected {}: records were removed or rewritten at the end",
                audit.path().display(),
                v.head.as_deref().unwrap_or("nothing"),
                args.expect_head.as_deref().unwrap_or_default()
            ),
            hint: None,
        });
    } else {
        ctx.output.result(&format!(
            "ok: {} records, head {}",
            v.records,
            v.head.as_deref().unwrap_or("(empty log)")
        ));
    }
    Ok(i32::from(!ok))
}

fn parse_since(since: &str) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(since) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| Error::InvalidInput {
            message: format!("--since {since}: not a date"),
            hint: Some("write YYYY-MM-DD or an RFC 3339 time".into()),
        })
}

fn log(
    ctx: &Context<'_>,
    audit: &crate::state::audit::AuditLog,
    args: &LogArgs,
) -> Result<i32, Error> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut table = String::new();
    let mut count = 0usize;
    let stdout = std::io::stdout();
    for record in audit.records().map_err(failed)? {
        let record = record.map_err(failed)?;
        if args
            .component
            .as_deref()
            .is_some_and(|c| record.component.as_deref() != Some(c))
        {
            continue;
        }
        if let Some(kind) = &args.kind {
            let matches = if kind.ends_with('.') {
                record.kind.starts_with(kind.as_str())
            } else {
                &record.kind == kind
            };
            if !matches {
                continue;
            }
        }
        if let Some(since) = since {
            let at = chrono::DateTime::parse_from_rfc3339(&record.ts)
                .map(|t| t.with_timezone(&chrono::Utc));
            if at.is_ok_and(|t| t < since) {
                continue;
            }
        }
        count += 1;
        if ctx.output.json {
            use std::io::Write;
            let mut out = stdout.lock();
            let _ = serde_json::to_writer(&mut out, &record);
            let _ = writeln!(out);
            continue;
        }
        let detail = record
            .data
            .get("step")
            .or_else(|| record.data.get("outcome"))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default();
        let outcome = if record.data.get("step").is_some() {
            record
                .data
                .get("outcome")
                .and_then(|v| v.as_str())
                .map(|o| format!(" {o}"))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let _ = writeln!(
            table,
            "{:>6}  {}  {:<20} {:<18} {:<12} {}  {}{}",
            record.seq,
            record.ts,
            record.kind,
            record.component.as_deref().unwrap_or("-"),
            record.stage.as_deref().unwrap_or("-"),
            record.run,
            detail,
            outcome
        );
        if table.len() > 64 * 1024 {
            ctx.output.result(table.trim_end());
            table.clear();
        }
    }
    if !ctx.output.json {
        if !table.is_empty() {
            ctx.output.result(table.trim_end());
        }
        if count == 0 {
            ctx.output.result("no records");
        }
    }
    Ok(0)
}
