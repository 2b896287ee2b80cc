//! Evaluating a stage's gates for a component: every gate at once (`run` gates one after
//! the other, since test suites often share build folders), each with its evidence and,
//! when it fails, the fix.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::GateResult;
use crate::actions::http;
use crate::engine::process::{Exit, run_process};
use crate::project::config::{
    ApprovalsGate, AttestedGate, Config, CoverageGate, FreezeWindow, Gate, GateKind,
    RollbackTestedGate, UptimeGate,
};
use crate::project::duration::Duration;
use crate::project::spanned::Spanned;
use crate::state::history::{ComponentHistory, History};
use crate::trackers::Tracker;

/// What a gate is evaluated for.
pub struct Subject<'a> {
    /// The project root: where `run` gates run and paths are resolved.
    pub root: &'a Path,
    pub config: &'a Config,
    pub history: &'a History,
    pub component: &'a str,
    /// The stage the gates guard (the promotion's target, or `verify`'s stage).
    pub target: &'a str,
    /// The stage the component is in now (the one `stable_for` measures).
    pub current: &'a str,
    /// Who is promoting or evaluating: never counted as an approver.
    pub actor: &'a str,
    pub now: DateTime<Utc>,
    pub cancel: watch::Receiver<bool>,
}

/// The gate kind's name, as written in `release.yaml`.
pub fn kind_name(kind: &GateKind) -> &'static str {
    match kind {
        GateKind::Run(_) => "run",
        GateKind::Coverage(_) => "coverage",
        GateKind::StableFor(_) => "stable_for",
        GateKind::Uptime(_) => "uptime",
        GateKind::Attested(_) => "attested",
        GateKind::Approvals(_) => "approvals",
        GateKind::Freeze(_) => "freeze",
        GateKind::RollbackTested(_) => "rollback_tested",
        GateKind::FileExists(_) => "file_exists",
        GateKind::NoOpenIssues(_) => "no_open_issues",
    }
}

/// True for the gates that only the audit log answers (no process, file or network).
pub fn audit_derived(kind: &GateKind) -> bool {
    matches!(
        kind,
        GateKind::StableFor(_)
            | GateKind::Attested(_)
            | GateKind::Approvals(_)
            | GateKind::Freeze(_)
    )
}

/// Evaluates `gates` concurrently; results come back in the order the gates are written.
pub async fn evaluate(subject: &Subject<'_>, gates: &[Gate]) -> Vec<GateResult> {
    let templates = Templates::new(subject);
    let component = subject.history.component(subject.component);
    let (runs, others): (Vec<_>, Vec<_>) = gates
        .iter()
        .enumerate()
        .partition(|(_, g)| matches!(g.kind, GateKind::Run(_)));
    let sequential = async {
        let mut out = Vec::new();
        for (i, gate) in runs {
            out.push((i, one(subject, &templates, &component, gate).await));
        }
        out
    };
    let concurrent = futures_util::future::join_all(others.into_iter().map(|(i, gate)| {
        let (templates, component) = (&templates, &component);
        async move { (i, one(subject, templates, component, gate).await) }
    }));
    let (mut a, b) = tokio::join!(sequential, concurrent);
    a.extend(b);
    a.sort_by_key(|(i, _)| *i);
    a.into_iter().map(|(_, r)| r).collect()
}

/// Renders gate templates: `component`, `stage` (the target), `spec`, `vars`, `repository`.
struct Templates {
    env: minijinja::Environment<'static>,
    context: serde_json::Value,
}

impl Templates {
    fn new(subject: &Subject<'_>) -> Self {
        let definition = subject.config.components.get(subject.component);
        let mut context = json!({
            "component": subject.component,
            "stage": subject.target,
            "vars": definition.map(|c| serde_json::to_value(&c.vars).unwrap_or_default()).unwrap_or_default(),
            "repository": subject.config.header.repository,
        });
        // A component without `spec:` has none: strict templates fail rather than render "".
        if let Some(spec) = definition.and_then(|c| c.spec.clone()) {
            context["spec"] = json!(spec);
        }
        Templates {
            env: crate::template::environment(),
            context,
        }
    }

    fn render(&self, text: &str) -> Result<String, String> {
        if !crate::template::is_template(text) {
            return Ok(text.to_owned());
        }
        let context = minijinja::Value::from(minijinja::value::Serde(&self.context));
        self.env.render_str(text, &context).map_err(|e| {
            let used = crate::template::template_variables(&self.env, text).unwrap_or_default();
            match crate::template::missing_variable(&e, &used, &context) {
                Some(part) => format!("cannot render `{text}`: `{part}` has no value here"),
                None => format!("cannot render `{text}`: {e}"),
            }
        })
    }

    fn render_all(&self, texts: &[String]) -> Result<Vec<String>, String> {
        texts.iter().map(|t| self.render(t)).collect()
    }
}

/// A gate's verdict before its id, kind and duration are attached.
struct Verdict {
    passed: bool,
    summary: String,
    evidence: serde_json::Value,
    fix: Option<String>,
}

impl Verdict {
    fn pass(summary: String, evidence: serde_json::Value) -> Self {
        Verdict {
            passed: true,
            summary,
            evidence,
            fix: None,
        }
    }

    fn fail(summary: String, evidence: serde_json::Value, fix: impl Into<String>) -> Self {
        Verdict {
            passed: false,
            summary,
            evidence,
            fix: Some(fix.into()),
        }
    }
}

async fn one(
    subject: &Subject<'_>,
    templates: &Templates,
    history: &ComponentHistory,
    gate: &Gate,
) -> GateResult {
    let started = Instant::now();
    let verdict = match &gate.kind {
        GateKind::Run(argv) => run_gate(subject, templates, argv).await,
        GateKind::Coverage(c) => coverage_gate(subject, templates, c),
        GateKind::StableFor(d) => stable_for(subject, history, d),
        GateKind::Uptime(u) => uptime_gate(templates, u).await,
        GateKind::Attested(a) => attested(subject, history, a),
        GateKind::Approvals(a) => approvals(subject, history, a),
        GateKind::Freeze(windows) => freeze(subject, windows),
        GateKind::RollbackTested(r) => rollback_tested(subject, history, r),
        GateKind::FileExists(paths) => file_exists(subject, templates, paths),
        GateKind::NoOpenIssues(n) => no_open_issues(subject, templates, &n.labels).await,
    };
    GateResult {
        id: gate.id.clone(),
        kind: kind_name(&gate.kind),
        passed: verdict.passed,
        summary: verdict.summary,
        evidence: verdict.evidence,
        fix: verdict.fix,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// The last lines of a gate command's output kept as evidence.
const OUTPUT_LINES: usize = 20;

async fn run_gate(subject: &Subject<'_>, templates: &Templates, argv: &[String]) -> Verdict {
    let argv = match templates.render_all(argv) {
        Ok(argv) => argv,
        Err(e) => return Verdict::fail(e, json!({}), "fix the gate's template in release.yaml"),
    };
    // Quoted as the runbook dry-run shows argv: pasted into a shell, it runs the same.
    let shown = crate::actions::run::show_argv(&argv);
    // Stopped (an interrupt, a `verify` step's timeout): no further command starts.
    if *subject.cancel.borrow() {
        return Verdict::fail(
            format!("`{shown}` was not started: the evaluation was stopped"),
            json!({ "argv": argv }),
            "evaluate the gates again",
        );
    }
    let (lines, mut receiver) = mpsc::unbounded_channel();
    // The output is kept, not streamed: the last lines go in the evidence.
    let collect = async move {
        let mut tail = std::collections::VecDeque::new();
        while let Some(line) = receiver.recv().await {
            let line: crate::engine::process::Line = line;
            if tail.len() == OUTPUT_LINES {
                tail.pop_front();
            }
            tail.push_back(line.text);
        }
        tail.into_iter().collect::<Vec<String>>()
    };
    let started = Instant::now();
    let no_env = std::collections::BTreeMap::new();
    let run = run_process(
        &argv,
        &no_env,
        subject.root,
        None,
        subject.cancel.clone(),
        lines,
    );
    let (result, output) = tokio::join!(run, collect);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let code = match result.exit {
        Exit::Code(code) => Some(code),
        _ => None,
    };
    let evidence = json!({
        "argv": argv,
        "exit_code": code,
        "duration_ms": duration_ms,
        "output": output,
    });
    if result.succeeded() {
        return Verdict::pass(format!("`{shown}` exited 0"), evidence);
    }
    let fix = match &result.exit {
        Exit::SpawnFailed(_) => format!(
            "install `{}` (or fix the gate's argv in release.yaml); the command runs in {}",
            argv.first().map_or("", String::as_str),
            subject.root.display()
        ),
        _ => format!("run `{shown}` and fix what it reports"),
    };
    let program = argv.first().map_or("", String::as_str);
    let summary = match &result.exit {
        Exit::SpawnFailed(_)
            if crate::engine::process::resolve_program(program, subject.root).is_none() =>
        {
            format!("cannot start `{shown}`: `{program}` is not installed or not on PATH")
        }
        _ => result.describe_failure(&shown),
    };
    Verdict::fail(summary, evidence, fix)
}

fn coverage_gate(subject: &Subject<'_>, templates: &Templates, gate: &CoverageGate) -> Verdict {
    let min = gate.min.value;
    let report = match templates.render(&gate.report) {
        Ok(r) => r,
        Err(e) => return Verdict::fail(e, json!({}), "fix the gate's template in release.yaml"),
    };
    let path = subject.root.join(&report);
    if path.is_dir() {
        return Verdict::fail(
            format!("the coverage report {report} is a folder, not a report file"),
            json!({ "report": report, "min": min }),
            "point `report:` at the report file the coverage tool writes in it (e.g. `coverage/coverage.xml`)",
        );
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            return Verdict::fail(
                format!(
                    "cannot read the coverage report {report}: {}",
                    io_reason(&e)
                ),
                json!({ "report": report, "min": min }),
                "produce the report before evaluating the gates (e.g. `pytest --cov --cov-report=xml:…`, `cargo llvm-cov --json --output-path …`)",
            );
        }
    };
    match super::coverage::parse_classified(&bytes, gate.format) {
        Ok(measured) => {
            let percent = measured.percent();
            let evidence = json!({
                "report": report,
                "format": measured.format,
                "covered": measured.covered,
                "total": measured.total,
                "percent": (percent * 100.0).round() / 100.0,
                "min": min,
            });
            let summary = format!(
                "line coverage {percent:.2} % ({} of {} lines) {} {min} %",
                measured.covered,
                measured.total,
                if percent >= min { "≥" } else { "<" }
            );
            if percent >= min {
                Verdict::pass(summary, evidence)
            } else {
                Verdict::fail(
                    summary,
                    evidence,
                    format!("add tests until {report} shows at least {min} % of lines covered"),
                )
            }
        }
        Err((problem, e)) => Verdict::fail(
            format!("{report}: {e}"),
            json!({ "report": report, "min": min }),
            problem.fix(),
        ),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "no such file".into()
    } else {
        e.to_string()
    }
}

/// A duration for people: "3d 4h", "2h 5m", "12m"; with `seconds`, a duration under an
/// hour keeps its seconds ("1m 30s", "45s"), for gates that ask for less than an hour.
fn human(d: chrono::TimeDelta, seconds: bool) -> String {
    let total = d.num_seconds();
    if total < 0 {
        return if seconds { "0s" } else { "0m" }.into();
    }
    if seconds && total < 3600 {
        let (minutes, seconds) = (total / 60, total % 60);
        return if minutes == 0 {
            format!("{seconds}s")
        } else {
            format!("{minutes}m {seconds}s")
        };
    }
    let minutes = total / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, h) => format!("{h}h {minutes}m"),
        (d, h) => format!("{d}d {h}h"),
    }
}

/// `stable_for`: the time in the stage it is leaving, counted from when it entered or from
/// its latest real rollback there, whichever is later. A rollback restarts the clock rather
/// than blocking for good: no command re-enters a stage, so "since it entered, with no
/// rollback" could never hold again after the first one.
fn stable_for(subject: &Subject<'_>, history: &ComponentHistory, required: &Duration) -> Verdict {
    let stage = subject.current;
    let required_delta = chrono::TimeDelta::from_std(required.0).unwrap_or(chrono::TimeDelta::MAX);
    // Under an hour, minutes would hide the whole wait.
    let precise = required_delta < chrono::TimeDelta::hours(1);
    let format = if precise {
        "%Y-%m-%d %H:%M:%S UTC"
    } else {
        "%Y-%m-%d %H:%M UTC"
    };
    let rollbacks = history.rollbacks.get(stage).map_or(0, |r| r.since_entered);
    let Some(entered) = history.entered_at else {
        return Verdict::fail(
            format!(
                "no record of {} in {stage} yet: its time there starts with its first audit record",
                subject.component
            ),
            json!({ "stage": stage, "entered_at": null, "rollbacks_since": 0, "required": required.to_string() }),
            format!(
                "evaluate the gates once (`release gates {} --stage {}`) to start the clock, then wait {required}",
                subject.component, subject.target
            ),
        );
    };
    let last_rollback = history
        .rollbacks
        .get(stage)
        .filter(|r| r.since_entered > 0)
        .and_then(|r| r.last_at)
        .filter(|at| *at >= entered);
    let stable_since = last_rollback.map_or(entered, |at| at.max(entered));
    let stable = subject.now - stable_since;
    let evidence = json!({
        "stage": stage,
        "entered_at": entered,
        "in_stage": human(subject.now - entered, precise),
        "required": required.to_string(),
        "rollbacks_since": rollbacks,
        "last_rollback_at": last_rollback,
        "stable_since": stable_since,
        "stable_for": human(stable, precise),
    });
    let summary = match last_rollback {
        None if stable >= required_delta => format!(
            "in {stage} for {} (since {}), no rollback; needs {required}",
            human(stable, precise),
            entered.format(format)
        ),
        None => format!(
            "in {stage} for {} only; needs {required}",
            human(stable, precise)
        ),
        Some(at) => format!(
            "in {stage} since {}; last rollback {} ({rollbacks} since it entered): stable for {}; needs {required}",
            entered.format(format),
            at.format(format),
            human(stable, precise)
        ),
    };
    if stable >= required_delta {
        Verdict::pass(summary, evidence)
    } else {
        let at = stable_since + required_delta;
        Verdict::fail(
            summary,
            evidence,
            format!(
                "wait until {} ({} from now)",
                at.format(format),
                human(at - subject.now, precise)
            ),
        )
    }
}

async fn uptime_gate(templates: &Templates, gate: &UptimeGate) -> Verdict {
    let query = match templates.render(&gate.query) {
        Ok(q) => q,
        Err(e) => return Verdict::fail(e, json!({}), "fix the gate's template in release.yaml"),
    };
    let server = http::redacted_url(&gate.prometheus);
    let client = match http::client(std::time::Duration::from_secs(30)) {
        Ok(c) => c,
        Err(e) => return Verdict::fail(e, json!({}), "see the message"),
    };
    match super::uptime::query(&client, &gate.prometheus, &query).await {
        Ok(sample) => {
            let evidence = json!({
                "prometheus": server,
                "query": query,
                "value": sample.value,
                "series": sample.series,
                "min": gate.min,
            });
            let mut summary = format!(
                "{} {} {}",
                sample.value,
                if sample.value >= gate.min { "≥" } else { "<" },
                gate.min
            );
            // With several series, the ones below the objective are named: they are what
            // to look at.
            let below: Vec<&str> = sample
                .series
                .iter()
                .filter(|(_, v)| *v < gate.min)
                .map(|(name, _)| name.as_str())
                .collect();
            if sample.series.len() > 1 && !below.is_empty() {
                let _ = write!(
                    summary,
                    " ({} of {} series below: {})",
                    below.len(),
                    sample.series.len(),
                    below.join(", ")
                );
            }
            if sample.value >= gate.min {
                Verdict::pass(summary, evidence)
            } else {
                Verdict::fail(
                    summary,
                    evidence,
                    "the service must meet its uptime objective first: look at its incidents over the query's range",
                )
            }
        }
        Err(e) => Verdict::fail(
            e.message,
            json!({ "prometheus": server, "query": query, "min": gate.min }),
            e.problem.fix(),
        ),
    }
}

fn within(now: DateTime<Utc>, at: DateTime<Utc>, window: Option<&Duration>) -> bool {
    window.is_none_or(|w| chrono::TimeDelta::from_std(w.0).is_ok_and(|w| now - at <= w))
}

fn attested(subject: &Subject<'_>, history: &ComponentHistory, gate: &AttestedGate) -> Verdict {
    let check = &gate.check;
    let fix = format!(
        "after the {check}, record it: `release attest {} {check} --note \"…\"`",
        subject.component
    );
    let Some(found) = history.attestations.get(check) else {
        return Verdict::fail(
            format!("no {check} attestation recorded"),
            json!({ "check": check }),
            fix,
        );
    };
    let evidence = json!({
        "check": check,
        "by": found.actor,
        "at": found.at,
        "note": found.note,
        "within": gate.within.map(|w| w.to_string()),
    });
    let when = format!("{} on {}", found.actor, found.at.format("%Y-%m-%d"));
    if crate::state::audit::is_unidentified(&found.actor) {
        return Verdict::fail(
            format!("the last {check} ({when}) names nobody, so it vouches for nothing"),
            evidence,
            fix,
        );
    }
    if within(subject.now, found.at, gate.within.as_ref()) {
        Verdict::pass(format!("{check} attested by {when}"), evidence)
    } else {
        Verdict::fail(
            format!(
                "the last {check} ({when}) is older than {}",
                gate.within.map(|w| w.to_string()).unwrap_or_default()
            ),
            evidence,
            fix,
        )
    }
}

fn approvals(subject: &Subject<'_>, history: &ComponentHistory, gate: &ApprovalsGate) -> Verdict {
    let min = gate.min.value as usize;
    let mut counted = Vec::new();
    let mut excluded = Vec::new();
    // Why each excluded approval does not count, for the summary.
    let mut why_not = Vec::new();
    for (actor, signed) in history.approvals.get(subject.target).into_iter().flatten() {
        if crate::state::audit::is_unidentified(&signed.actor) {
            excluded.push(json!({ "by": signed.actor, "at": signed.at, "why": "nobody can tell who recorded it" }));
            why_not.push(format!(
                "{}'s does not count: nobody can tell who that is",
                signed.actor
            ));
        } else if !within(subject.now, signed.at, gate.within.as_ref()) {
            excluded
                .push(json!({ "by": signed.actor, "at": signed.at, "why": "outside the window" }));
            why_not.push(format!(
                "{}'s is older than {}",
                signed.actor,
                gate.within.map(|w| w.to_string()).unwrap_or_default()
            ));
        } else if actor.eq_ignore_ascii_case(subject.actor) {
            excluded.push(
                json!({ "by": signed.actor, "at": signed.at, "why": "the actor promoting (four eyes)" }),
            );
            why_not.push(format!("{}'s own does not count: four eyes", signed.actor));
        } else {
            counted.push(json!({ "by": signed.actor, "at": signed.at, "note": signed.note }));
        }
    }
    let names: Vec<String> = counted
        .iter()
        .filter_map(|c| c["by"].as_str().map(str::to_owned))
        .collect();
    let evidence = json!({ "approvals": counted, "excluded": excluded, "min": min });
    let mut summary = format!(
        "{} of {min} approval(s){}",
        counted.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    if !why_not.is_empty() {
        let _ = write!(summary, " ({})", why_not.join("; "));
    }
    if counted.len() >= min {
        Verdict::pass(summary, evidence)
    } else {
        Verdict::fail(
            summary,
            evidence,
            format!(
                "{} more person(s), not {}, must run `release approve {} --to {}`",
                min - counted.len(),
                subject.actor,
                subject.component,
                subject.target
            ),
        )
    }
}

fn freeze(subject: &Subject<'_>, windows: &[Spanned<FreezeWindow>]) -> Verdict {
    match super::freeze::blocking(windows, subject.now) {
        None => Verdict::pass(
            format!("outside every freeze window ({})", windows.len()),
            json!({ "windows": windows.len() }),
        ),
        Some(b) => Verdict::fail(
            b.description.clone(),
            json!({ "window": b.index, "description": b.description, "ends_at": b.ends_at }),
            format!(
                "wait until the freeze ends ({})",
                b.ends_at.format("%Y-%m-%d %H:%M UTC")
            ),
        ),
    }
}

fn rollback_tested(
    subject: &Subject<'_>,
    history: &ComponentHistory,
    gate: &RollbackTestedGate,
) -> Verdict {
    let stage = subject.target;
    let path = subject
        .root
        .join(&subject.config.header.runbooks)
        .join(stage)
        .join("rollback.yaml");
    let shown = crate::project::display_path(subject.root, &path)
        .display()
        .to_string();
    let rehearse = rehearse_command(subject, &path, stage);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            return Verdict::fail(
                format!("cannot read {shown}: {}", io_reason(&e)),
                json!({ "runbook": shown }),
                format!("`release init` writes the default rollback runbook of {stage}"),
            );
        }
    };
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let rehearsals = history.rehearsals_of(stage);
    let fresh: Vec<_> = rehearsals
        .iter()
        .filter(|r| within(subject.now, r.at, Some(&gate.within)))
        .collect();
    if let Some(r) = fresh.iter().find(|r| r.runbook_sha256 == sha) {
        return Verdict::pass(
            format!(
                "{} {} succeeded on {} with today's {shown}",
                if r.dry_run { "dry-run" } else { "run" },
                r.run,
                r.at.format("%Y-%m-%d %H:%M UTC")
            ),
            json!({ "run": r.run, "at": r.at, "dry_run": r.dry_run, "runbook": shown, "runbook_sha256": sha }),
        );
    }
    let evidence = json!({
        "runbook": shown,
        "runbook_sha256": sha,
        "within": gate.within.to_string(),
        "rehearsals": rehearsals.iter().take(5).map(|r| json!({ "run": r.run, "at": r.at, "runbook_sha256": r.runbook_sha256 })).collect::<Vec<_>>(),
    });
    let summary = match (fresh.first(), rehearsals.first()) {
        (Some(r), _) => format!(
            "{shown} changed since it was rehearsed ({} on {}): the rehearsal no longer counts",
            r.run,
            r.at.format("%Y-%m-%d")
        ),
        (None, Some(r)) => format!(
            "the last successful rehearsal ({} on {}) is older than {}",
            r.run,
            r.at.format("%Y-%m-%d"),
            gate.within
        ),
        (None, None) => format!(
            "{shown} was never rehearsed successfully for {}",
            subject.component
        ),
    };
    Verdict::fail(summary, evidence, rehearse)
}

/// "rehearse it: `release rollback C --stage S --dry-run --set name=…`", with a `--set` for
/// each parameter the runbook requires and has no default for (a command that runs as
/// shown, but for the values).
fn rehearse_command(subject: &Subject<'_>, path: &Path, stage: &str) -> String {
    let display = crate::project::display_path(subject.root, path);
    let (runbook, _) = crate::project::validate::load_runbook(path, &display, Some(subject.config));
    let Some(runbook) = runbook else {
        return format!(
            "fix the runbook (`release runbook validate {}`), then rehearse it: `release rollback {} --stage {stage} --dry-run`",
            display.display(),
            subject.component
        );
    };
    let mut command = format!(
        "release rollback {} --stage {stage} --dry-run",
        subject.component
    );
    for (name, param) in runbook.params.iter() {
        if param.required && param.default.is_none() {
            let _ = write!(command, " --set {}=…", name.value);
        }
    }
    format!("rehearse it: `{command}`")
}

fn file_exists(subject: &Subject<'_>, templates: &Templates, paths: &[String]) -> Verdict {
    let paths = match templates.render_all(paths) {
        Ok(p) => p,
        Err(e) => return Verdict::fail(e, json!({}), "fix the gate's template in release.yaml"),
    };
    let root = subject.root;
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| p.trim().is_empty() || !root.join(p).exists())
        .collect();
    let evidence = json!({ "paths": paths, "missing": missing });
    if missing.is_empty() {
        Verdict::pass(format!("all {} present", paths.len()), evidence)
    } else {
        let list: Vec<&str> = missing
            .iter()
            .map(|m| {
                if m.trim().is_empty() {
                    "(an empty path)"
                } else {
                    m.as_str()
                }
            })
            .collect();
        Verdict::fail(
            format!("missing: {}", list.join(", ")),
            evidence,
            "write the missing files (paths are relative to release.yaml's folder)",
        )
    }
}

async fn no_open_issues(
    subject: &Subject<'_>,
    templates: &Templates,
    labels: &[String],
) -> Verdict {
    let labels = match templates.render_all(labels) {
        Ok(l) => l,
        Err(e) => return Verdict::fail(e, json!({}), "fix the gate's template in release.yaml"),
    };
    let tracker = match Tracker::from_config(subject.config, subject.root) {
        Ok(t) => t,
        Err(e) => {
            return Verdict::fail(
                e,
                json!({ "labels": labels }),
                "configure the tracker (see `incidents:` and `github:` in release.yaml)",
            );
        }
    };
    match tracker.list_open_with_labels(&labels).await {
        Ok(issues) => {
            // The tool's own blocker issues report failing gates: counting them would keep
            // the gates failing, and so the blocker open, for ever.
            let (blockers, issues): (Vec<_>, Vec<_>) = issues
                .into_iter()
                .partition(crate::trackers::Issue::is_blocker);
            let found: Vec<_> = issues
                .iter()
                .map(|i| json!({ "number": i.number, "title": i.title, "at": i.reference() }))
                .collect();
            let ignored: Vec<_> = blockers
                .iter()
                .map(crate::trackers::Issue::reference)
                .collect();
            let evidence = json!({
                "tracker": tracker.describe(),
                "labels": labels,
                "open": found,
                "blockers_ignored": ignored,
            });
            if issues.is_empty() {
                Verdict::pass(
                    format!("no open issue labelled {}", labels.join(" + ")),
                    evidence,
                )
            } else {
                let list: Vec<String> = issues
                    .iter()
                    .map(|i| format!("{} {}", i.reference(), i.title))
                    .collect();
                Verdict::fail(
                    format!("{} open: {}", issues.len(), list.join("; ")),
                    evidence,
                    "resolve and close these issues first",
                )
            }
        }
        Err(e) => {
            let fix = match tracker {
                Tracker::Local(_) => {
                    "fix or remove the issue file the message names (its front matter must be YAML), then evaluate again"
                }
                Tracker::Github(_) => {
                    "check the tracker is reachable and its token set, then evaluate again"
                }
            };
            Verdict::fail(
                e,
                json!({ "tracker": tracker.describe(), "labels": labels }),
                fix,
            )
        }
    }
}
