use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::Digest;

use crate::commands::Context;
use crate::engine::{self, Report, Request, RunOutcome, confirm, reporter, scheduler::Dispatcher};
use crate::error::Error;
use crate::project::runbook::{Action, Runbook};
use crate::project::yaml::suggest;
use crate::project::{Project, display_path};
use crate::state::audit::{Actor, AuditLog, Entry};
use crate::state::history::History;
use crate::state::lock::{self, Acquired, LockError, LockHolder};
use crate::state::redact::Redactor;

/// The lines of a plan's output the dry-run's table shows.
const SHOWN_PLAN_LINES: usize = 40;

/// Run any runbook file for a component at a stage.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The runbook file.
    pub runbook: PathBuf,

    /// The component it runs for (its `vars` feed the templates).
    #[arg(long)]
    pub component: String,

    /// The stage it runs at.
    #[arg(long)]
    pub stage: String,

    #[command(flatten)]
    pub options: RunOptions,
}

/// Options shared by the commands that run a runbook.
#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// A runbook parameter: `--set commit=abc123` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Why: recorded in the audit log and available as `{{ run.reason }}`.
    #[arg(long)]
    pub reason: Option<String>,

    /// Rehearse: run every step's read-only preflight and nothing else.
    #[arg(long)]
    pub dry_run: bool,

    /// At most N steps at once (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: Option<u16>,
}

pub fn cmd_run(ctx: &Context<'_>, args: &RunArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let path = ctx.cwd.join(&args.runbook);
    execute_runbook(
        ctx,
        &project,
        &Job {
            path: &path,
            component: &args.component,
            stage: &args.stage,
            options: &args.options,
            purpose: "run",
            held: None,
            resume: None,
        },
    )
}

/// Starts libgit2 (its first use loads OpenSSL's CA bundle, a few milliseconds of CPU)
/// while the run gets ready, when the runbook's text names `git_revert`; a runbook that
/// only mentions the word costs a thread.
fn warm_up_for(runbook: &[u8]) {
    if memchr::memmem::find(runbook, b"git_revert").is_some() {
        crate::actions::git_revert::warm_up();
    }
}

/// A runbook to run for a component at a stage.
pub struct Job<'a> {
    pub path: &'a Path,
    pub component: &'a str,
    pub stage: &'a str,
    pub options: &'a RunOptions,
    /// `run`, `rollback` or `promote` (recorded in `run.started`).
    pub purpose: &'static str,
    /// The run id of a caller that already holds the component's lock at this stage (the
    /// run then uses that id and takes no lock).
    pub held: Option<&'a str>,
    /// Set by `release resume`: the run continued, its inputs and the steps done.
    pub resume: Option<&'a Resumption>,
}

/// What `release resume` runs with: the inputs the run started with, and what it did.
pub struct Resumption {
    pub resumed: engine::Resumed,
    /// The params recorded in `run.started`.
    pub params: BTreeMap<String, String>,
    /// The runbook's SHA-256 recorded in `run.started`: a changed runbook is not resumed.
    pub runbook_sha256: String,
    /// The command that started the chain, for the hint of a refusal.
    pub command: String,
    /// `promotion.*` of the template context as the run recorded it (`None` for a run
    /// recorded before it was).
    pub promotion: Option<serde_json::Value>,
}

/// Checks the component exists (exit 2 with the nearest name otherwise).
pub fn check_component(project: &Project, component: &str) -> Result<(), Error> {
    if !project.config.components.contains(component) {
        let names: Vec<&str> = project.config.components.names().collect();
        return Err(Error::InvalidInput {
            message: format!("unknown component `{component}`"),
            hint: Some(suggest(component, &names)),
        });
    }
    Ok(())
}

/// Checks the component and stage exist (exit 2 with the nearest name otherwise).
pub fn check_target(project: &Project, component: &str, stage: &str) -> Result<(), Error> {
    check_component(project, component)?;
    if !project.config.has_stage(stage) {
        let stages: Vec<&str> = project.config.stages().collect();
        return Err(Error::InvalidInput {
            message: format!("unknown stage `{stage}`"),
            hint: Some(suggest(stage, &stages)),
        });
    }
    Ok(())
}

/// `--set k=v` against the runbook's `params`: unknown names and missing required ones are
/// refused before anything runs; defaults fill the rest.
pub fn resolve_params(
    runbook: &Runbook,
    set: &[String],
) -> Result<BTreeMap<String, String>, Error> {
    let declared: Vec<&str> = runbook.params.names().collect();
    let mut params = BTreeMap::new();
    for item in set {
        let Some((key, value)) = item.split_once('=') else {
            return Err(Error::InvalidInput {
                message: format!("`--set {item}` is not KEY=VALUE"),
                hint: Some("write e.g. `--set commit=abc123`".into()),
            });
        };
        let key = key.trim();
        if !runbook.params.contains(key) {
            let hint = if declared.is_empty() {
                "this runbook takes no parameters".to_owned()
            } else {
                suggest(key, &declared)
            };
            return Err(Error::InvalidInput {
                message: format!("unknown parameter `{key}`"),
                hint: Some(hint),
            });
        }
        if let Some(earlier) = params.get(key) {
            return Err(Error::InvalidInput {
                message: format!(
                    "parameter `{key}` is set twice (`{earlier}`, then `{value}`); a parameter holds one value"
                ),
                hint: Some(format!(
                    "pass `--set {key}=…` once; for several commits write them in one value, e.g. `--set {key}=\"A B\"` or `A..B`"
                )),
            });
        }
        let required = runbook
            .params
            .iter()
            .any(|(name, param)| name.value == key && param.required && param.default.is_none());
        if required && value.trim().is_empty() {
            return Err(Error::InvalidInput {
                message: format!("parameter `{key}` is required and was given an empty value"),
                hint: Some(format!("add a value: `--set {key}=…`")),
            });
        }
        params.insert(key.to_owned(), value.to_owned());
    }
    for (name, param) in runbook.params.iter() {
        if params.contains_key(&name.value) {
            continue;
        }
        match (&param.default, param.required) {
            (Some(default), _) => {
                params.insert(name.value.clone(), default.value.clone());
            }
            (None, true) => {
                let about = param
                    .description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                return Err(Error::InvalidInput {
                    message: format!("parameter `{name}` is required{about}"),
                    hint: Some(format!("add `--set {name}=…`")),
                });
            }
            (None, false) => {
                params.insert(name.value.clone(), String::new());
            }
        }
    }
    Ok(params)
}

/// The values of every `*_env` variable the config and runbook name: secrets to redact.
fn secrets(project: &Project, runbook: &Runbook) -> Redactor {
    let mut names: Vec<String> = Vec::new();
    names.extend(
        project
            .config
            .notify
            .iter()
            .filter_map(|(_, c)| c.url_env.as_ref().map(|e| e.value.clone())),
    );
    if let Some(github) = &project.config.header.github {
        names.push(github.token_env.value.clone());
    }
    for step in &runbook.steps {
        if let Action::CacheClear(cache) = &step.action {
            names.extend(cache.redis.iter().map(|r| r.url_env.value.clone()));
            names.extend(
                cache
                    .http
                    .iter()
                    .flat_map(|h| h.headers_env.values().cloned()),
            );
        }
    }
    // The other runbooks' variables too: a `plan` or a script may print any variable of
    // the environment, and a value secret in one runbook is secret in all.
    for file in project.runbook_files() {
        env_names_in(&file, &mut names);
    }
    let mut redactor = Redactor::default();
    for name in names {
        if let Ok(value) = std::env::var(&name) {
            redactor.add(&value);
        }
    }
    redactor
}

/// The variable names given to `*_env` keys anywhere in a YAML file (a name, or a map of
/// names like `headers_env`), read without validating it. Unreadable or odd files give
/// nothing: the runbook being run is read, typed, by the caller.
fn env_names_in(file: &Path, names: &mut Vec<String>) {
    fn walk(value: &serde_json::Value, names: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    if key.ends_with("_env") {
                        match value {
                            serde_json::Value::String(name) => names.push(name.clone()),
                            serde_json::Value::Object(inner) => names.extend(
                                inner.values().filter_map(|v| v.as_str().map(str::to_owned)),
                            ),
                            _ => {}
                        }
                    }
                    walk(value, names);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let regular_and_small = std::fs::metadata(file)
        .is_ok_and(|m| m.is_file() && m.len() <= crate::project::yaml::MAX_FILE_BYTES as u64);
    if !regular_and_small {
        return;
    }
    // Most runbooks name no variable: those are not parsed at all.
    if let Ok(text) = std::fs::read_to_string(file)
        && text.contains("_env")
        && let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(&text)
    {
        walk(&value, names);
    }
}

/// The project's audit log, for commands that append: the actor is found meanwhile.
pub fn audit_log(project: &Project, redactor: Redactor) -> AuditLog {
    AuditLog::for_current_actor(audit_path(project), &project.root, redactor)
}

/// Where `audit.path` in release.yaml puts the log.
pub fn audit_path(project: &Project) -> PathBuf {
    project.root.join(&project.config.header.audit.path)
}

/// A runbook's path as the audit log records it: relative to the project root, without
/// `..` or symlinks, so that every way of naming the file gives the same text (the gates
/// compare it with `runbooks/<stage>/rollback.yaml`).
pub fn runbook_label(project: &Project, path: &Path) -> String {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    display_path(&real(&project.root), &real(path))
        .display()
        .to_string()
}

/// Replays the audit log (SPEC §7): the only record of each component's stage and history.
pub fn load_history(project: &Project, audit: &AuditLog) -> Result<History, Error> {
    History::load(audit, &project.runbooks_label()).map_err(|e| Error::Failed {
        message: e.to_string(),
        hint: Some("`release audit verify` names the bad line".into()),
    })
}

pub fn locks_dir(project: &Project) -> PathBuf {
    project.root.join(".release").join("locks")
}

/// Loads, checks and runs a runbook; prints the report; returns the exit code.
pub fn execute_runbook(ctx: &Context<'_>, project: &Project, job: &Job<'_>) -> Result<i32, Error> {
    let (report, redactor) = run_job(ctx, project, job)?;
    print_report(ctx, &report, &redactor);
    let stopped = matches!(
        report.outcome,
        RunOutcome::Failed | RunOutcome::Interrupted | RunOutcome::Declined
    );
    if stopped && !report.dry_run && !ctx.output.json {
        ctx.output.result(&format!(
            "to go on from the first unfinished step once the cause is fixed: release resume {} (it keeps the runbook and the --set params: a fix to either needs a new run)",
            report.run
        ));
    }
    Ok(report.outcome.exit_code())
}

/// Loads, checks and runs a runbook; returns its report (not printed) and the redactor of
/// its secrets.
pub fn run_job(
    ctx: &Context<'_>,
    project: &Project,
    job: &Job<'_>,
) -> Result<(Report, Redactor), Error> {
    let Job {
        path,
        component,
        stage,
        options,
        purpose,
        held,
        resume,
    } = *job;
    check_target(project, component, stage)?;
    // The first record needs the actor (a `git config` process): found while the runbook
    // is read and checked.
    let actor = Actor::find(&project.root);
    let bytes = crate::project::read_limited(path).map_err(|e| Error::InvalidInput {
        message: format!(
            "runbook {}: {}",
            display_path(&ctx.cwd, path).display(),
            e.message
        ),
        hint: e.hint,
    })?;
    warm_up_for(&bytes);
    let (runbook, warnings) = project
        .load_runbook(&ctx.cwd, path)
        .map_err(Error::Invalid)?;
    ctx.output.warnings(&warnings);
    let runbook_sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let params = match resume {
        Some(resume) => {
            refuse_changed(project, path, resume, &runbook_sha256)?;
            resume.params.clone()
        }
        None => resolve_params(&runbook, &options.set)?,
    };
    let dry_run = options.dry_run;
    if !dry_run {
        refuse_unrunnable(ctx, &runbook)?;
    }

    let redactor = secrets(project, &runbook);
    let audit = AuditLog::with_actor(audit_path(project), actor, redactor.clone());
    let history = load_history(project, &audit)?.component(component);
    let run_id = held.map_or_else(engine::new_run_id, str::to_owned);
    // One real run at a time per component and stage; dry-runs change nothing and take none.
    let lock = if dry_run || held.is_some() {
        None
    } else {
        Some(take_lock(ctx, project, &audit, &run_id, component, stage)?)
    };
    let mut context = template_context(project, component, stage, &params, history);
    if let Some(promotion) = resume.and_then(|r| r.promotion.clone()) {
        // As the run saw it: a promotion since must not change what a resumed step does.
        context["promotion"] = promotion;
    }
    let request = Request {
        root: project.root.clone(),
        config: std::sync::Arc::new(project.config.clone()),
        runbook_path: runbook_label(project, path),
        runbook_sha256,
        runbook,
        component: component.to_owned(),
        stage: stage.to_owned(),
        params,
        reason: options.reason.clone(),
        dry_run,
        max_parallel: options.max_parallel.map_or_else(
            || std::thread::available_parallelism().map_or(2, usize::from),
            usize::from,
        ),
        yes: ctx.global.yes,
        purpose,
        command: std::env::args().collect(),
        context,
        resumed: resume.map(|r| r.resumed.clone()),
    };
    let bars = reporter::bars_wanted(ctx.global.no_progress, ctx.global.json);
    let reporter = reporter::Reporter::new(
        bars,
        ctx.global.quiet,
        redactor.clone(),
        // A resumed run's bar counts the steps it may run, not those done before.
        request
            .runbook
            .steps
            .len()
            .saturating_sub(request.resumed.as_ref().map_or(0, |r| r.done.len())),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the runtime", e))?;
    let report = runtime.block_on(async {
        Dispatcher::new(&request, &audit, reporter, run_id)
            .run()
            .await
    });
    // The run is over: work a step left behind off the runtime (a tracker write still
    // waiting for its folder's lock after the step's timeout) does not hold the process.
    runtime.shutdown_background();
    if let Some(lock) = lock {
        let _ = lock.release();
    }
    Ok((report, redactor))
}

/// A resume is refused when the runbook is not the one the run started with (SPEC §8):
/// checked again here, on the bytes that run, should it have changed since `resume` looked.
fn refuse_changed(
    project: &Project,
    path: &Path,
    resume: &Resumption,
    sha256: &str,
) -> Result<(), Error> {
    if resume.runbook_sha256 == sha256 {
        return Ok(());
    }
    Err(crate::commands::resume::changed_runbook(
        &resume.resumed.resumes,
        &runbook_label(project, path),
        &resume.runbook_sha256,
        sha256,
        &resume.command,
    ))
}

/// A real run is refused before anything runs when it could not finish: a confirmation
/// nobody can answer.
pub fn refuse_unrunnable(ctx: &Context<'_>, runbook: &Runbook) -> Result<(), Error> {
    if confirm::needed(runbook) && !ctx.global.yes && !confirm::can_ask() {
        return Err(Error::Refused {
            message: "this runbook asks for confirmation and there is no terminal to answer it; nothing ran".into(),
            hint: Some(
                "run it from a terminal, or pass --yes to answer yes to every confirmation".into(),
            ),
        });
    }
    Ok(())
}

/// Takes the run lock, recording the takeover of a dead holder's lock; refuses a live one.
pub fn take_lock(
    ctx: &Context<'_>,
    project: &Project,
    audit: &AuditLog,
    run_id: &str,
    component: &str,
    stage: &str,
) -> Result<lock::Lock, Error> {
    let holder = LockHolder {
        run: run_id.to_owned(),
        pid: std::process::id(),
        host: lock::this_host(),
        actor: audit.actor().to_owned(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    match lock::acquire(&locks_dir(project), component, stage, &holder) {
        Ok(Acquired::Free(lock)) => Ok(lock),
        Ok(Acquired::TookOver { lock, previous }) => {
            audit
                .append(Entry {
                    run: run_id.to_owned(),
                    kind: "lock.forced",
                    component: Some(component.to_owned()),
                    stage: Some(stage.to_owned()),
                    data: json!({
                        "holder": previous,
                        "reason": format!("holder process {} is gone", previous.pid),
                    }),
                })
                .map_err(|e| Error::Failed {
                    message: e.to_string(),
                    hint: None,
                })?;
            ctx.output.warn(&format!(
                "took over the stale lock of {previous}: its process is gone"
            ));
            Ok(lock)
        }
        Err(e @ LockError::Held { .. }) => Err(Error::Refused {
            hint: e.hint(),
            message: e.to_string(),
        }),
        Err(e @ LockError::Io { .. }) => Err(Error::Failed {
            message: e.to_string(),
            hint: None,
        }),
    }
}

/// The template context of SPEC §4, but for `run.*` and `steps.*`, which the engine adds.
fn template_context(
    project: &Project,
    component: &str,
    stage: &str,
    params: &BTreeMap<String, String>,
    history: crate::state::history::ComponentHistory,
) -> serde_json::Value {
    let definition = project.config.components.get(component);
    let mut context = json!({
        "component": component,
        "stage": stage,
        "vars": definition.map(|c| serde_json::to_value(&c.vars).unwrap_or_default()).unwrap_or_default(),
        "params": params,
        "repository": project.config.header.repository,
        "promotion": {
            "commit": history.commit.unwrap_or_default(),
            "previous_commit": history.previous_commit.unwrap_or_default(),
        },
    });
    // A component without `spec:` has none: strict templates fail rather than render "".
    if let Some(spec) = definition.and_then(|c| c.spec.clone()) {
        context["spec"] = json!(spec);
    }
    context
}

/// A plan's output under its step in the dry-run's table: the first lines, how many more
/// there are, and the note of an output cut to what is kept.
fn plan_output(out: &mut String, width: usize, output: &str) {
    let mut lines: Vec<&str> = output.lines().collect();
    // The note of an output cut to what is kept stays in sight.
    let note = lines
        .last()
        .filter(|l| engine::scheduler::is_cut_note(l))
        .copied();
    if note.is_some() {
        lines.pop();
    }
    for line in lines.iter().take(SHOWN_PLAN_LINES) {
        let _ = writeln!(out, "  {:width$}  {:7}  {:12}  | {line}", "", "", "");
    }
    let more = lines.len().saturating_sub(SHOWN_PLAN_LINES);
    if more > 0 {
        let _ = writeln!(
            out,
            "  {:width$}  {:7}  {:12}  | … {more} more line{} (--json and the audit log keep the first {} KiB)",
            "",
            "",
            "",
            if more == 1 { "" } else { "s" },
            crate::actions::run::MAX_PLAN_OUTPUT / 1024
        );
    }
    if let Some(note) = note {
        let _ = writeln!(out, "  {:width$}  {:7}  {:12}  | {note}", "", "", "");
    }
}

pub fn print_report(ctx: &Context<'_>, report: &Report, redactor: &Redactor) {
    if ctx.output.json {
        let mut value = serde_json::to_value(report).unwrap_or_default();
        redactor.redact_json(&mut value);
        ctx.output.json_value(&value);
        return;
    }
    let mut out = String::new();
    let verdict = match (report.dry_run, report.outcome) {
        (true, RunOutcome::Succeeded) => "nothing blocked".to_owned(),
        (true, RunOutcome::Blocked) => "BLOCKED".to_owned(),
        (_, outcome) => serde_json::to_value(outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    };
    let resumes = report
        .resumes
        .as_ref()
        .map(|r| format!("; resumes run {r}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{} {}: {verdict} in {} ({} for {} at {}{resumes})",
        if report.dry_run { "dry-run" } else { "run" },
        report.run,
        reporter::human_duration(std::time::Duration::from_millis(report.duration_ms)),
        report.runbook,
        report.component,
        report.stage
    );
    let width = report
        .steps
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    if report.dry_run {
        let _ = writeln!(
            out,
            "  {:width$}  {:7}  {:12}  what the real run would do / why",
            "step", "verdict", "fidelity"
        );
        for step in &report.steps {
            let Some(p) = &step.preflight else {
                let _ = writeln!(out, "  {:width$}  -", step.id);
                continue;
            };
            let verdict = serde_json::to_value(p.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let fidelity = serde_json::to_value(p.fidelity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut would = p.would.lines();
            let _ = writeln!(
                out,
                "  {:width$}  {verdict:7}  {fidelity:12}  {}",
                step.id,
                would.next().unwrap_or_default()
            );
            for line in would {
                let _ = writeln!(out, "  {:width$}  {:7}  {:12}  {line}", "", "", "");
            }
            let _ = writeln!(out, "  {:width$}  {:7}  {:12}  {}", "", "", "", p.reason);
            plan_output(&mut out, width, p.output.as_deref().unwrap_or_default());
        }
    } else {
        let _ = writeln!(
            out,
            "  {:width$}  {:10}  {:>8}  detail",
            "step", "outcome", "duration"
        );
        for step in &report.steps {
            let outcome = step
                .outcome
                .and_then(|o| serde_json::to_value(o).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "not run".into());
            let duration =
                reporter::human_duration(std::time::Duration::from_millis(step.duration_ms));
            let detail = step.detail();
            let _ = writeln!(
                out,
                "  {:width$}  {outcome:10}  {duration:>8}  {detail}",
                step.id
            );
        }
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "{error}");
    }
    ctx.output.result(redactor.redact(out.trim_end()).as_ref());
}
