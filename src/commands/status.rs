//! `release status [COMPONENT]`: the maturity board.
//!
//! Everything shown is derived from the audit log (one streaming pass, [`History::load`])
//! and `release.yaml`: the stage a component has reached and since when, its last action,
//! and what blocks its next promotion. The promotion rules (not deprecated, dependencies)
//! are judged now; the gates are not evaluated here (they may run test suites or query
//! servers): the board shows the latest recorded evaluation of the next stage's gates and
//! its date, and says when there is none or when it predates the component's entry into
//! its stage (its `stable_for` and rule results would be stale).
//!
//! Components are listed in `release.yaml` order; those the log names but `release.yaml`
//! no longer declares are left out (and counted in one note line).

use std::fmt::Write as _;
use std::io::IsTerminal;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::commands::Context;
use crate::commands::run::{audit_log, load_history};
use crate::error::Error;
use crate::gates::rules;
use crate::project::Project;
use crate::project::yaml::suggest;
use crate::state::history::{Deprecation, GatesSeen, History, LastAction};
use crate::state::redact::Redactor;

/// The board: each stage's components, and what blocks each one's next promotion.
///
/// Read from the audit log and release.yaml. Gates are not evaluated here: the board shows
/// the latest `release gates` evaluation of each component's next stage, and its date.
/// With --json: one document with `stages`, `columns` (each stage's components, and
/// `deprecated`) and `components` (stage, since, last action, next stage, blockers, ready).
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show only this component.
    pub component: Option<String>,
}

/// Width of the human output when stdout is not a terminal.
const DEFAULT_WIDTH: usize = 100;

pub fn cmd_status(ctx: &Context<'_>, args: &StatusArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let audit = audit_log(&project, Redactor::default());
    let history = load_history(&project, &audit)?;
    if let Some(component) = &args.component {
        check_component(&project, &history, component)?;
    }
    if audit.has_torn_tail() {
        ctx.output.warn(&format!(
            "{} ends with a torn line (a crash mid-write?), left out of this board: `release audit verify` shows it; the next record moves it aside",
            audit.path().display()
        ));
    }
    let board = Board::build(&project, &history, args.component.as_deref(), Utc::now());
    if ctx.output.json {
        let value = serde_json::to_value(board.document()).unwrap_or_default();
        ctx.output.json_value(&value);
    } else {
        ctx.output.result(board.render(terminal_width()).trim_end());
    }
    Ok(0)
}

/// An unknown component is invalid input (exit 2), with the nearest declared name.
fn check_component(project: &Project, history: &History, component: &str) -> Result<(), Error> {
    if project.config.components.contains(component) {
        return Ok(());
    }
    let names: Vec<&str> = project.config.components.names().collect();
    let hint = if history.get(component).is_some() {
        format!(
            "the audit log names `{component}`, but release.yaml no longer declares it; {}",
            suggest(component, &names)
        )
    } else {
        suggest(component, &names)
    };
    Err(Error::InvalidInput {
        message: format!("unknown component `{component}`"),
        hint: Some(hint),
    })
}

fn terminal_width() -> usize {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return DEFAULT_WIDTH;
    }
    console::Term::stdout()
        .size_checked()
        .map_or(DEFAULT_WIDTH, |(_, cols)| usize::from(cols).max(60))
}

/// What stands between a component and its next promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Promotion {
    /// The rules pass now and the latest evaluation of the next stage's gates passed (or
    /// no gate guards it).
    Ready,
    /// A rule fails now, or a gate failed at the latest evaluation.
    Blocked,
    /// The rules pass, but the next stage's gates were never evaluated, or not since the
    /// component entered its stage.
    NotEvaluated,
    /// At the last stage: there is no next promotion.
    LastStage,
    /// Deprecated: never promoted again.
    Deprecated,
}

/// The next stage's gates, as last recorded.
struct Gates<'a> {
    /// How many gates `release.yaml` lists for the next stage.
    configured: usize,
    seen: Option<&'a GatesSeen>,
    /// The evaluation predates the component's entry into its stage, or release.yaml's
    /// gates for the stage changed since (see `changed`).
    stale: bool,
    /// The evaluation predates the component's entry into its stage.
    predates: bool,
    /// The gates release.yaml lists for the stage are not those evaluated.
    changed: bool,
    /// The failing gates of that evaluation (`id: summary`), without the rules.
    failing: Vec<&'a str>,
}

/// One component on the board.
struct Entry<'a> {
    name: &'a str,
    stage: &'a str,
    since: Option<DateTime<Utc>>,
    commit: Option<&'a str>,
    deprecated: Option<&'a Deprecation>,
    last_action: Option<&'a LastAction>,
    next: Option<&'a str>,
    /// The failing rules, judged now (`id: summary`).
    rules: Vec<String>,
    gates: Option<Gates<'a>>,
    promotion: Promotion,
    /// Something odd about the record, for people.
    note: Option<String>,
}

impl Entry<'_> {
    /// What blocks the next promotion: the failing rules, then the failing gates of the
    /// latest (current) evaluation.
    fn blockers(&self) -> Vec<String> {
        let gates = self
            .gates
            .iter()
            .filter(|g| !g.stale)
            .flat_map(|g| g.failing.iter().map(|f| (*f).to_owned()));
        self.rules.iter().cloned().chain(gates).collect()
    }
}

struct Board<'a> {
    stages: Vec<&'a str>,
    entries: Vec<Entry<'a>>,
    /// Components the log names that release.yaml does not declare (not shown).
    undeclared: Vec<&'a str>,
    /// Whether the board shows one component only.
    filtered: bool,
    now: DateTime<Utc>,
}

impl<'a> Board<'a> {
    fn build(
        project: &'a Project,
        history: &'a History,
        only: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        let config = &project.config;
        let stages: Vec<&str> = config.stages().collect();
        let entries = config
            .components
            .names()
            .filter(|name| only.is_none_or(|o| o == *name))
            .map(|name| entry(project, history, &stages, name))
            .collect();
        let undeclared = if only.is_some() {
            Vec::new()
        } else {
            history
                .names()
                .filter(|n| !config.components.contains(n))
                .collect()
        };
        Board {
            stages,
            entries,
            undeclared,
            filtered: only.is_some(),
            now,
        }
    }
}

fn entry<'a>(
    project: &'a Project,
    history: &'a History,
    stages: &[&'a str],
    name: &'a str,
) -> Entry<'a> {
    let config = &project.config;
    let facts = history.get(name);
    let standing = rules::standing(config, history, name);
    let stage = stages.get(standing.position).copied().unwrap_or_default();
    let recorded = facts.and_then(|f| f.stage.as_deref());
    // A stage the log names but release.yaml no longer lists: the rules put the component
    // at the first stage, and the time it entered that other stage means nothing here.
    let lost_stage = recorded.filter(|s| !config.has_stage(s));
    let since = if lost_stage.is_some() {
        None
    } else {
        facts.and_then(|f| f.entered_at)
    };
    let note = lost_stage.map(|s| {
        format!(
            "the audit log has it at `{s}`, a stage release.yaml no longer lists: shown at {stage}"
        )
    });
    let deprecated = facts.and_then(|f| f.deprecated.as_ref());
    let mut entry = Entry {
        name,
        stage,
        since,
        commit: facts.and_then(|f| f.commit.as_deref()),
        deprecated,
        last_action: facts.and_then(|f| f.last_action.as_ref()),
        next: None,
        rules: Vec::new(),
        gates: None,
        promotion: Promotion::LastStage,
        note,
    };
    if deprecated.is_some() {
        entry.promotion = Promotion::Deprecated;
        let mut failing = failing_rules(&rules::check(config, history, name, stage));
        failing.retain(|f| f.starts_with("not-deprecated:"));
        entry.rules = failing;
        return entry;
    }
    let Some(next) = stages.get(standing.position + 1).copied() else {
        return entry;
    };
    entry.next = Some(next);
    entry.rules = failing_rules(&rules::check(config, history, name, next));
    let seen = facts.and_then(|f| f.gates.get(next));
    let configured: Vec<String> = config.gates_for(next).into_iter().map(|g| g.id).collect();
    // An evaluation of other gates says nothing of the gates configured now.
    let changed = seen.is_some_and(|g| {
        let mut evaluated: Vec<&str> = g.ids.iter().map(String::as_str).collect();
        let mut now: Vec<&str> = configured.iter().map(String::as_str).collect();
        evaluated.sort_unstable();
        now.sort_unstable();
        evaluated != now
    });
    let predates = seen.is_some_and(|g| since.is_some_and(|entered| g.at < entered));
    let outdated = changed || predates;
    let gates = Gates {
        configured: configured.len(),
        seen,
        stale: outdated,
        predates,
        changed,
        failing: seen
            .map(|g| g.failing.iter().map(String::as_str).collect())
            .unwrap_or_default(),
    };
    entry.promotion = if !entry.rules.is_empty() || (!outdated && !gates.failing.is_empty()) {
        Promotion::Blocked
    } else if gates.configured > 0 && (seen.is_none() || outdated) {
        Promotion::NotEvaluated
    } else {
        Promotion::Ready
    };
    entry.gates = Some(gates);
    entry
}

fn failing_rules(results: &[crate::gates::GateResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.id, r.summary))
        .collect()
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

/// The `--json` document (keys come out sorted):
///
/// ```json
/// {
///   "stages": ["development", "staging", "production"],
///   "columns": { "development": ["search"], "staging": ["orchestration"],
///                "production": ["player_experience"], "deprecated": ["legacy"] },
///   "components": [{
///     "name": "orchestration",
///     "stage": "staging",
///     "since": "2026-03-03T11:30:00Z",              // null: never named in the log
///     "commit": "b1946ac92492d2347c6235b4d2611184", // null: none recorded
///     "deprecated": null,                           // or {"at", "actor", "reason"}
///     "last_action": { "at": "2026-03-15T16:20:00Z", "actor": "carol@example.com",
///                      "kind": "gates.evaluated", "summary": "gates for production: failed" },
///     "next": "production",                         // null: at the last stage, deprecated
///     "promotion": "blocked",   // ready | blocked | not-evaluated | last-stage | deprecated
///     "ready": false,
///     "blockers": ["security-review: no security-review attestation recorded"],
///     "gates": { "target": "production", "configured": 2,
///                "evaluated_at": "2026-03-15T16:20:00Z", "passed": false, "stale": false,
///                "changed": false,
///                "failing": ["security-review: no security-review attestation recorded"] },
///     "note": null
///   }],
///   "undeclared": ["retired"]
/// }
/// ```
#[derive(Serialize)]
struct Document<'a> {
    /// The configured stages, in promotion order.
    stages: &'a [&'a str],
    /// Each stage's components (not deprecated), and `deprecated`.
    columns: serde_json::Map<String, serde_json::Value>,
    components: Vec<ComponentJson<'a>>,
    /// Components the audit log names that release.yaml no longer declares (not shown).
    undeclared: &'a [&'a str],
}

#[derive(Serialize)]
struct ComponentJson<'a> {
    name: &'a str,
    stage: &'a str,
    /// When it entered `stage` (RFC 3339); at the first stage, its first record; `null`
    /// when the log never names it.
    since: Option<String>,
    /// The commit recorded when it entered `stage`.
    commit: Option<&'a str>,
    deprecated: Option<DeprecatedJson<'a>>,
    last_action: Option<ActionJson<'a>>,
    /// The stage it would be promoted to; `null` at the last stage or when deprecated.
    next: Option<&'a str>,
    promotion: Promotion,
    ready: bool,
    /// The failing rules (judged now) and the failing gates of the latest evaluation of
    /// the next stage's gates, each `id: summary`.
    blockers: Vec<String>,
    gates: Option<GatesJson<'a>>,
    note: Option<&'a str>,
}

#[derive(Serialize)]
struct DeprecatedJson<'a> {
    at: String,
    actor: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct ActionJson<'a> {
    at: String,
    actor: &'a str,
    kind: &'a str,
    summary: &'a str,
}

#[derive(Serialize)]
struct GatesJson<'a> {
    /// The stage the gates guard (= `next`).
    target: &'a str,
    /// How many gates release.yaml lists for it.
    configured: usize,
    /// The latest evaluation; `null` if none is recorded.
    evaluated_at: Option<String>,
    /// Whether the gates (the rules aside) passed at that evaluation.
    passed: Option<bool>,
    /// The evaluation predates the component's entry into its stage, or evaluated other
    /// gates than release.yaml lists now.
    stale: bool,
    /// The gates evaluated are not those release.yaml lists now.
    changed: bool,
    failing: &'a [&'a str],
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Board<'_> {
    fn document(&self) -> Document<'_> {
        let mut columns = serde_json::Map::new();
        for (stage, names) in self.columns() {
            columns.insert(stage.to_owned(), serde_json::json!(names));
        }
        let components = self
            .entries
            .iter()
            .map(|e| ComponentJson {
                name: e.name,
                stage: e.stage,
                since: e.since.map(rfc3339),
                commit: e.commit,
                deprecated: e.deprecated.map(|d| DeprecatedJson {
                    at: rfc3339(d.at),
                    actor: &d.actor,
                    reason: &d.reason,
                }),
                last_action: e.last_action.map(|a| ActionJson {
                    at: rfc3339(a.at),
                    actor: &a.actor,
                    kind: &a.kind,
                    summary: &a.summary,
                }),
                next: e.next,
                promotion: e.promotion,
                ready: e.promotion == Promotion::Ready,
                blockers: e.blockers(),
                gates: e.next.zip(e.gates.as_ref()).map(|(target, g)| GatesJson {
                    target,
                    configured: g.configured,
                    evaluated_at: g.seen.map(|s| rfc3339(s.at)),
                    passed: g.seen.map(|_| g.failing.is_empty()),
                    stale: g.stale,
                    changed: g.changed,
                    failing: &g.failing,
                }),
                note: e.note.as_deref(),
            })
            .collect();
        Document {
            stages: &self.stages,
            columns,
            components,
            undeclared: &self.undeclared,
        }
    }

    /// Each stage's components, then `deprecated`'s.
    fn columns(&self) -> Vec<(&str, Vec<&str>)> {
        let mut columns: Vec<(&str, Vec<&str>)> =
            self.stages.iter().map(|s| (*s, Vec::new())).collect();
        let mut deprecated = Vec::new();
        for e in &self.entries {
            if e.deprecated.is_some() {
                deprecated.push(e.name);
            } else if let Some((_, names)) = columns.iter_mut().find(|(s, _)| *s == e.stage) {
                names.push(e.name);
            }
        }
        columns.push(("deprecated", deprecated));
        columns
    }
}

// ---------------------------------------------------------------------------------------
// Human output
// ---------------------------------------------------------------------------------------

impl Board<'_> {
    fn render(&self, width: usize) -> String {
        let mut out = String::new();
        self.render_board(&mut out, width);
        out.push('\n');
        if self.entries.is_empty() {
            out.push_str("release.yaml declares no component\n");
        } else {
            self.render_details(&mut out, width);
        }
        if !self.filtered {
            self.render_summary(&mut out, width);
        }
        out
    }

    /// One column per stage (and Deprecated), listing component names; as lines when the
    /// columns would not fit the width.
    fn render_board(&self, out: &mut String, width: usize) {
        let columns: Vec<(String, Vec<&str>)> = self
            .columns()
            .into_iter()
            .map(|(stage, names)| (capitalised(stage), names))
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .map(|(header, names)| {
                names
                    .iter()
                    .map(|n| n.chars().count())
                    .chain([header.chars().count()])
                    .max()
                    .unwrap_or(1)
            })
            .collect();
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        if total > width {
            for (header, names) in &columns {
                let list = if names.is_empty() {
                    "-".to_owned()
                } else {
                    names.join(", ")
                };
                push_wrapped(out, &format!("{header}: {list}"), width, 2);
            }
            return;
        }
        let header: Vec<&str> = columns.iter().map(|(h, _)| h.as_str()).collect();
        push_row(out, &header, &widths);
        let rows = columns
            .iter()
            .map(|(_, n)| n.len())
            .max()
            .unwrap_or(0)
            .max(1);
        for i in 0..rows {
            let cells: Vec<&str> = columns
                .iter()
                .map(|(_, names)| match names.get(i) {
                    Some(name) => name,
                    None if i == 0 => "-",
                    None => "",
                })
                .collect();
            push_row(out, &cells, &widths);
        }
    }

    /// A table (component, stage, since, last action), each row followed by an indented
    /// line on the next promotion and its blockers, which use the whole width.
    fn render_details(&self, out: &mut String, width: usize) {
        let rows: Vec<[Vec<String>; 4]> = self
            .entries
            .iter()
            .map(|e| {
                let mut stage = vec![e.stage.to_owned()];
                if let Some(commit) = e.commit {
                    stage.push(format!("commit {}", short_commit(commit)));
                }
                let since = e.since.map_or_else(
                    || vec!["-".to_owned()],
                    |t| vec![stamp(t), format!("({})", age(t, self.now))],
                );
                // What happened, then when and who.
                let action = e.last_action.map_or_else(
                    || vec!["-".to_owned()],
                    |a| {
                        vec![
                            a.summary.clone(),
                            format!("{} ({}), {}", stamp(a.at), age(a.at, self.now), a.actor),
                        ]
                    },
                );
                [vec![e.name.to_owned()], stage, since, action]
            })
            .collect();
        let headers = ["component", "stage", "since", "last action"];
        let mut widths = [0usize; 4];
        for (i, header) in headers.iter().enumerate() {
            widths[i] = rows
                .iter()
                .flat_map(|r| r[i].iter().map(|l| l.chars().count()))
                .chain([header.len()])
                .max()
                .unwrap_or(0);
        }
        // The last column takes what is left, wrapped; never less than a readable width.
        widths[3] = width
            .saturating_sub(widths[..3].iter().sum::<usize>() + 6)
            .max(30);
        push_row(out, &headers, &widths);
        for (e, row) in self.entries.iter().zip(rows) {
            let [name, stage, since, action] = row;
            let action: Vec<String> = action.iter().flat_map(|a| wrap(a, widths[3], 0)).collect();
            let cells = [name, stage, since, action];
            let height = cells.iter().map(Vec::len).max().unwrap_or(1);
            for line in 0..height {
                let parts: Vec<&str> = cells
                    .iter()
                    .map(|c| c.get(line).map_or("", String::as_str))
                    .collect();
                push_row(out, &parts, &widths);
            }
            render_next(out, e, width);
        }
    }

    /// "3 components: 1 ready to promote, 1 blocked, …" and the undeclared ones.
    fn render_summary(&self, out: &mut String, width: usize) {
        let count = |p: Promotion| self.entries.iter().filter(|e| e.promotion == p).count();
        let parts: Vec<String> = [
            (Promotion::Ready, "ready to promote"),
            (Promotion::Blocked, "blocked"),
            (Promotion::NotEvaluated, "with gates to evaluate"),
            (Promotion::LastStage, "at the last stage"),
            (Promotion::Deprecated, "deprecated"),
        ]
        .into_iter()
        .filter_map(|(p, label)| {
            let n = count(p);
            (n > 0).then(|| format!("{n} {label}"))
        })
        .collect();
        if !parts.is_empty() {
            let n = self.entries.len();
            let noun = if n == 1 { "component" } else { "components" };
            out.push('\n');
            push_wrapped(out, &format!("{n} {noun}: {}", parts.join(", ")), width, 2);
        }
        if !self.undeclared.is_empty() {
            push_wrapped(
                out,
                &format!(
                    "not shown: {} (named in the audit log, no longer declared in release.yaml)",
                    self.undeclared.join(", ")
                ),
                width,
                2,
            );
        }
    }
}

/// "next → production: BLOCKED" and the blockers, indented under the row.
fn render_next(out: &mut String, e: &Entry<'_>, width: usize) {
    if let Some(note) = &e.note {
        push_wrapped(out, &format!("  note: {note}"), width, 8);
    }
    let gates_line = e.gates.as_ref().map(|g| gates_status(e, g));
    match (e.promotion, e.next) {
        (Promotion::Deprecated, _) => {
            let d = e.deprecated.map_or_else(String::new, |d| {
                format!(" on {} by {}: {}", stamp(d.at), d.actor, d.reason)
            });
            push_wrapped(
                out,
                &format!("  next: none, deprecated{d} (never promoted again)"),
                width,
                4,
            );
        }
        (Promotion::LastStage, _) | (_, None) => {
            push_wrapped(out, "  next: none, at the last stage", width, 4);
        }
        (Promotion::Ready, Some(next)) => {
            let why = gates_line.unwrap_or_default();
            let command = format!("`release promote {} --to {next}`", e.name);
            push_wrapped(
                out,
                &format!("  next → {next}: ready, {why}: {command}"),
                width,
                4,
            );
        }
        (Promotion::NotEvaluated, Some(next)) => {
            let why = gates_line.unwrap_or_default();
            push_wrapped(out, &format!("  next → {next}: {why}"), width, 4);
        }
        (Promotion::Blocked, Some(next)) => {
            let _ = writeln!(out, "  next → {next}: BLOCKED");
            for blocker in e.blockers() {
                push_wrapped(out, &format!("    - {blocker}"), width, 6);
            }
            if let Some(line) = gates_line {
                push_wrapped(out, &format!("    {line}"), width, 6);
            }
        }
    }
}

/// What the latest evaluation of the next stage's gates says, for people.
fn gates_status(e: &Entry<'_>, g: &Gates<'_>) -> String {
    let next = e.next.unwrap_or_default();
    let command = format!("`release gates {} --stage {next}`", e.name);
    match g.seen {
        _ if g.configured == 0 => format!("no gate guards {next}"),
        None => format!("gates not evaluated yet: {command}"),
        Some(seen) if g.predates => format!(
            "gates last evaluated on {}, before it entered {}: evaluate them again: {command}",
            stamp(seen.at),
            e.stage
        ),
        Some(_) if g.changed => format!(
            "release.yaml's gates for {next} changed since the last evaluation: run {command}"
        ),
        Some(seen) if g.failing.is_empty() => {
            format!("gates passed on {}", stamp(seen.at))
        }
        Some(seen) => format!(
            "as evaluated on {}; after a fix, evaluate again: {command}",
            stamp(seen.at)
        ),
    }
}

/// "2026-01-10 14:00", in UTC.
fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// "12d ago", "3h ago", "5m ago", "just now"; "in the future" for a clock gone wrong.
fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let age = now.signed_duration_since(at);
    if age < chrono::TimeDelta::zero() {
        "in the future".to_owned()
    } else if age.num_minutes() < 1 {
        "just now".to_owned()
    } else if age.num_hours() < 1 {
        format!("{}m ago", age.num_minutes())
    } else if age.num_hours() < 48 {
        format!("{}h ago", age.num_hours())
    } else {
        format!("{}d ago", age.num_days())
    }
}

fn short_commit(commit: &str) -> &str {
    let is_sha = commit.len() > 12 && commit.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha { &commit[..7] } else { commit }
}

/// "development" → "Development".
fn capitalised(stage: &str) -> String {
    let mut chars = stage.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// One line of cells, each padded to its column's width (two spaces between columns).
fn push_row(out: &mut String, cells: &[&str], widths: &[usize]) {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        let pad = width.saturating_sub(cell.chars().count());
        line.extend(std::iter::repeat_n(' ', pad));
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Appends `text` wrapped to `width`, continuation lines indented by `indent`.
fn push_wrapped(out: &mut String, text: &str, width: usize, indent: usize) {
    for line in wrap(text, width, indent) {
        out.push_str(&line);
        out.push('\n');
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can (a word
/// longer than a line is cut). The first line keeps the leading spaces of `text`; the
/// others start with `indent` spaces.
fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let indent = indent.min(width / 2);
    let lead = text.len() - text.trim_start_matches(' ').len();
    let mut lines = Vec::new();
    let mut line = " ".repeat(lead);
    let mut len = lead;
    // No word on `line` yet.
    let mut fresh = true;
    let mut new_line = |line: &mut String, len: &mut usize| {
        lines.push(std::mem::replace(line, " ".repeat(indent)));
        *len = indent;
    };
    for word in text[lead..].split(' ').filter(|w| !w.is_empty()) {
        let mut chars: Vec<char> = word.chars().collect();
        if !fresh && len + 1 + chars.len() > width {
            new_line(&mut line, &mut len);
            fresh = true;
        }
        while len + chars.len() > width {
            let room = width.saturating_sub(len).max(1).min(chars.len());
            line.extend(chars.drain(..room));
            new_line(&mut line, &mut len);
        }
        if chars.is_empty() {
            continue;
        }
        if !fresh {
            line.push(' ');
            len += 1;
        }
        len += chars.len();
        line.extend(chars);
        fresh = false;
    }
    if !fresh || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::{capitalised, short_commit, wrap};

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        assert_eq!(wrap("aa bb cc", 5, 0), ["aa bb", "cc"]);
        assert_eq!(wrap("  aa bb", 7, 0), ["  aa bb"]);
        assert_eq!(wrap("  aa bb cc", 8, 4), ["  aa bb", "    cc"]);
        assert_eq!(wrap("abcdefghij", 4, 0), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 10, 0), [""]);
        for line in wrap("x yyyyyyyyyyyyyyyyyyyy z", 8, 2) {
            assert!(line.chars().count() <= 8, "{line}");
        }
    }

    #[test]
    fn names_for_people() {
        assert_eq!(capitalised("production"), "Production");
        assert_eq!(capitalised(""), "");
        assert_eq!(short_commit("0123456789abcdef0123"), "0123456");
        assert_eq!(short_commit("v1.2"), "v1.2");
    }
}
