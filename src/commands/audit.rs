use std::fmt::Write as _;

use crate::commands::Context;
use crate::commands::run::audit_path;
use crate::error::Error;
use crate::project::Project;
use crate::state::audit::{Problem, ProblemKind};

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
    // Read only: no actor is looked up (a `git config` process).
    let audit = crate::state::audit::AuditLog::reader(audit_path(&project));
    match &args.command {
        AuditCommand::Verify(a) => verify(ctx, &audit, a),
        AuditCommand::Log(a) => log(ctx, &project, &audit, a),
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed {
        message: e.to_string(),
        hint: None,
    }
}

/// The record kinds of SPEC §7 (the log may hold others: those seen in it count too).
const KINDS: &[&str] = &[
    "run.started",
    "step.started",
    "step.finished",
    "run.finished",
    "run.resumed",
    "audit.repaired",
    "gates.evaluated",
    "promotion.completed",
    "promotion.refused",
    "attestation.recorded",
    "approval.recorded",
    "component.deprecated",
    "lock.forced",
];

/// `--expect-head`: a SHA-256 in hex (64 digits, any case), as lowercase.
fn expected_head(given: &str) -> Result<String, Error> {
    let head = given.trim();
    if head.len() == 64 && head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(head.to_ascii_lowercase());
    }
    Err(Error::InvalidInput {
        message: format!(
            "--expect-head {given}: not a SHA-256 (64 hex digits; this is {} characters)",
            given.chars().count()
        ),
        hint: Some("pass the head `release audit verify` printed when you last checked".into()),
    })
}

/// What to say of a problem: a broken `prev` at line N means line N-1 changed (or line
/// N's `prev`, or a line went in or out between them), so line N-1 is not vouched for.
fn explain_problem(p: &Problem, records: u64) -> (String, String) {
    if p.kind != ProblemKind::BrokenChain {
        let hint = match records {
            0 => "no record before it verifies".to_owned(),
            1 => "the record before it verifies".to_owned(),
            n => format!("the {n} records before it verify"),
        };
        return (format!("line {}: {}", p.line, p.message), hint);
    }
    if p.line == 1 {
        return (
            format!(
                "line 1: its `prev` is not 64 zeros, as the first record's is: line 1 was changed, or lines were removed from the start ({})",
                p.message
            ),
            "no record verifies".into(),
        );
    }
    let (changed, next) = (p.line - 1, p.line);
    let vouched = match changed - 1 {
        0 => "no record verifies: line 1 may be the changed one".to_owned(),
        1 => "line 1 verifies; line 2 and after are not vouched for".to_owned(),
        n => format!(
            "the {n} records before line {changed} verify; line {changed} and after are not vouched for"
        ),
    };
    (
        format!(
            "line {changed} was changed, or line {next}'s `prev` is wrong, or a line was deleted or inserted between them (line {next}: {})",
            p.message
        ),
        vouched,
    )
}

fn verify(
    ctx: &Context<'_>,
    audit: &crate::state::audit::AuditLog,
    args: &VerifyArgs,
) -> Result<i32, Error> {
    let expected = args.expect_head.as_deref().map(expected_head).transpose()?;
    let missing = !audit.path().exists();
    let v = audit.verify_finding(expected.as_deref()).map_err(failed)?;
    // The head kept earlier is the last line, or an earlier one (records were appended
    // since, as they are every day): either way it vouches for the lines up to it.
    let head_ok = expected
        .as_deref()
        .is_none_or(|want| v.head.as_deref() == Some(want) || v.kept_at.is_some());
    let ok = v.problem.is_none() && head_ok;
    if ctx.output.json {
        ctx.output.json_value(&serde_json::json!({
            "ok": ok,
            "records": v.records,
            "head": v.head,
            "problem": v.problem,
            "expected_head": expected,
            "expected_head_line": v.kept_at,
            "missing": missing,
        }));
    } else if let Some(p) = &v.problem {
        let (message, hint) = explain_problem(p, v.records);
        ctx.output.error(&Error::Failed {
            message: format!("{}: {message}", audit.path().display()),
            hint: Some(hint),
        });
    } else if missing && !head_ok {
        ctx.output.error(&Error::Failed {
            message: format!(
                "no audit log at {}, so no chain ends at the expected head {}",
                audit.path().display(),
                expected.as_deref().unwrap_or_default()
            ),
            hint: Some("was the file deleted or moved, or does `audit.path` in release.yaml point elsewhere?".into()),
        });
    } else if missing {
        ctx.output.result(&format!(
            "ok: no audit log at {} yet (nothing recorded)",
            audit.path().display()
        ));
    } else if !head_ok {
        ctx.output.error(&Error::Failed {
            message: format!(
                "{}: the chain verifies ({} records, head {}) but no line of it hashes to the expected {}: records up to that head were removed or rewritten",
                audit.path().display(),
                v.records,
                v.head.as_deref().unwrap_or("nothing"),
                expected.as_deref().unwrap_or_default()
            ),
            hint: Some("compare with a copy of the log, or the head kept by whoever checked it last".into()),
        });
    } else {
        let mut text = format!(
            "ok: {} records, head {}",
            v.records,
            v.head.as_deref().unwrap_or("(empty log)")
        );
        if let Some(line) = v.kept_at.filter(|&line| line < v.records) {
            let _ = write!(
                text,
                "\nthe expected head is line {line}'s: {} records appended since",
                v.records - line
            );
        }
        ctx.output.result(&text);
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

/// A `--component` or `--kind` that can match nothing is a typo, not an empty answer:
/// exit 2 with the names it could have been. Valid: the components of `release.yaml` and
/// SPEC's kinds, and whatever else the log holds (a removed component, a newer kind).
fn check_filters(
    project: &Project,
    audit: &crate::state::audit::AuditLog,
    args: &LogArgs,
) -> Result<(), Error> {
    let declared: Vec<&str> = project.config.components.names().collect();
    let component = args.component.as_deref().filter(|c| !declared.contains(c));
    let kind_known = |k: &str, kinds: &[&str]| {
        if k.ends_with('.') {
            kinds.iter().any(|known| known.starts_with(k))
        } else {
            kinds.contains(&k)
        }
    };
    let kind = args.kind.as_deref().filter(|k| !kind_known(k, KINDS));
    if component.is_none() && kind.is_none() {
        return Ok(());
    }
    // Rare: read the log once for the names it holds.
    let mut seen_components = std::collections::BTreeSet::new();
    let mut seen_kinds = std::collections::BTreeSet::new();
    for record in audit.records().map_err(failed)? {
        let record = record.map_err(failed)?;
        if let Some(c) = record.component {
            seen_components.insert(c);
        }
        seen_kinds.insert(record.kind);
    }
    if let Some(c) = component
        && !seen_components.contains(c)
    {
        let valid = known_names(&declared, &seen_components);
        return Err(Error::InvalidInput {
            message: format!(
                "--component {c}: no such component in release.yaml, and the audit log has no record of it"
            ),
            hint: Some(crate::project::yaml::suggest(c, &valid)),
        });
    }
    if let Some(k) = kind {
        let valid = known_names(KINDS, &seen_kinds);
        if !kind_known(k, &valid) {
            let what = if k.ends_with('.') {
                format!("--kind {k}: no record kind starts with `{k}`")
            } else {
                format!("--kind {k}: no such record kind")
            };
            return Err(Error::InvalidInput {
                message: what,
                hint: Some(format!(
                    "{} (a prefix ending with a dot, like `step.`, matches a family)",
                    crate::project::yaml::suggest(k.trim_end_matches('.'), &valid)
                )),
            });
        }
    }
    Ok(())
}

/// The names a filter may take: the `fixed` ones, then those only the log holds.
fn known_names<'a>(
    fixed: &[&'a str],
    seen: &'a std::collections::BTreeSet<String>,
) -> Vec<&'a str> {
    let mut names = fixed.to_vec();
    names.extend(
        seen.iter()
            .map(String::as_str)
            .filter(|s| !fixed.contains(s)),
    );
    names
}

fn log(
    ctx: &Context<'_>,
    project: &Project,
    audit: &crate::state::audit::AuditLog,
    args: &LogArgs,
) -> Result<i32, Error> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    check_filters(project, audit, args)?;
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
        let detail = match record.data.get("resumes").and_then(|v| v.as_str()) {
            Some(resumed) => format!("resumes {resumed}"),
            None => record
                .data
                .get("step")
                .or_else(|| record.data.get("outcome"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default(),
        };
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
