//! `release resume RUN_ID` (SPEC §8): continues a failed or interrupted run from its first
//! unfinished step, with the inputs it started with.
//!
//! Everything comes from the audit log: the run's `run.started` (runbook, its SHA-256,
//! params, reason, component, stage) and its steps' records. A step that succeeded is not
//! run again (its recorded stdout still feeds `steps.<id>.stdout`); a step that started and
//! never finished has an unknown outcome, and the operator must say whether to run it again
//! (`--rerun`) or count it done (`--mark-done`). A resume of a resume follows the chain back
//! through `run.started.resumes`.
//!
//! A resume refuses rather than run on inputs it cannot give back as they were: a param or
//! a step output recorded redacted or cut, the output of a step marked done, and the work
//! of steps that a `when: failure` step may have undone since.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use crate::commands::Context;
use crate::commands::run::{
    Job, Resumption, RunOptions, audit_log, audit_path, check_target, execute_runbook, locks_dir,
    take_lock,
};
use crate::engine::context::outputs_read;
use crate::engine::scheduler::is_cut;
use crate::engine::{Done, Resumed};
use crate::error::Error;
use crate::project::Project;
use crate::project::runbook::{Runbook, When};
use crate::project::yaml::{suggest, suggest_among};
use crate::state::audit::{AuditError, AuditLog, Record, Records};
use crate::state::lock::{self, LockError};
use crate::state::redact::{REDACTED, Redactor};

/// Continue a failed or interrupted run from its first unfinished step.
///
/// Steps that succeeded are not run again; the others run with the params and reason the
/// run started with. A run whose runbook changed since is not resumed.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run's id (the summary of a run prints it; `release audit log --kind run.finished`
    /// lists them).
    pub run_id: String,

    /// Run STEP again whatever its recorded outcome: for a step that started and never
    /// finished, once you know it did not do its work (repeatable).
    #[arg(long, value_name = "STEP")]
    pub rerun: Vec<String>,

    /// Count STEP as done whatever its recorded outcome: you checked that its work is done,
    /// or did it by hand (repeatable).
    #[arg(long, value_name = "STEP")]
    pub mark_done: Vec<String>,

    /// At most N steps at once (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: Option<u16>,
}

pub fn cmd_resume(ctx: &Context<'_>, args: &ResumeArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let log = AuditLog::reader(audit_path(&project));
    let id = args.run_id.as_str();
    let chain = Chain::read(&log, id)?;
    let run = chain.run();
    let Some(started) = run.started.as_ref() else {
        return Err(unknown_run(id, &chain.started_ids));
    };
    let command = chain.first_command();
    refuse_unresumable(
        id,
        started,
        run.finished.as_deref(),
        &chain.resumed_by,
        &command,
    )?;
    let (component, stage) = (run.component.as_str(), run.stage.as_str());
    check_target(&project, component, stage)?;
    if run.finished.is_none() {
        // No end recorded: the run may still be going on, and its steps look unfinished.
        refuse_if_running(&project, id, component, stage)?;
    }
    let path = project.root.join(&started.runbook);
    refuse_changed_runbook(
        id,
        &started.runbook,
        &path,
        &started.runbook_sha256,
        &command,
    )?;
    let runbook = project
        .load_runbook(&project.root, &path)
        .map_err(Error::Invalid)?
        .0;
    refuse_redacted_params(&started.params, &command)?;
    check_step_names(args, &runbook)?;
    let done = done_steps(&chain, args, &runbook)?;
    refuse_lost_outputs(id, &runbook, &done)?;
    if run.finished.as_deref() == Some("declined") {
        ctx.output.warn(&format!(
            "run {id} was declined at a confirmation; {}",
            if ctx.global.yes {
                "--yes answers it this time"
            } else {
                "it is asked again"
            }
        ));
    }
    let resumption = Resumption {
        resumed: Resumed {
            resumes: id.to_owned(),
            origin: chain.first_id().to_owned(),
            done,
        },
        params: started.params.clone(),
        runbook_sha256: started.runbook_sha256.clone(),
        command,
        promotion: started.promotion.clone(),
    };
    let options = RunOptions {
        set: Vec::new(),
        reason: started.reason.clone(),
        dry_run: false,
        max_parallel: args.max_parallel,
    };
    // The lock first, then a last look at what was appended since the log was read: two
    // resumes of one run started side by side must not both run.
    let run_id = crate::engine::new_run_id();
    let audit = audit_log(&project, Redactor::default());
    let lock = take_lock(ctx, &project, &audit, &run_id, component, stage)?;
    if let Some(later) = resumed_since(&log, chain.read_up_to, id) {
        let _ = lock.release();
        return Err(refused(
            format!("run {id} was resumed by run {later} while this resume got ready; nothing ran"),
            format!(
                "see how it ended: `release audit log --kind run.finished`; resume it if it did not succeed: `release resume {later}`"
            ),
        ));
    }
    let code = execute_runbook(
        ctx,
        &project,
        &Job {
            path: &path,
            component,
            stage,
            options: &options,
            purpose: "resume",
            held: Some(&run_id),
            resume: Some(&resumption),
        },
    );
    let _ = lock.release();
    code
}

/// A run that resumed `id` among the records appended from byte `offset` on. A line cut by
/// the offset, or one being written, is not a record and is passed over.
fn resumed_since(log: &AuditLog, offset: u64, id: &str) -> Option<String> {
    let mut records = log.records_after(offset).ok()?;
    let finder = memchr::memmem::Finder::new(id.as_bytes());
    while let Some(Ok((_, line))) = records.next_line() {
        if finder.find(line).is_none() {
            continue;
        }
        let Ok(record) = serde_json::from_slice::<Record>(line) else {
            continue;
        };
        let resumes = record.data.get("resumes").and_then(|r| r.as_str());
        if record.kind == "run.started" && resumes == Some(id) {
            return Some(record.run);
        }
    }
    None
}

/// `run.started`'s data, as far as a resume needs it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Started {
    command: Vec<String>,
    runbook: String,
    runbook_sha256: String,
    params: BTreeMap<String, String>,
    dry_run: bool,
    reason: Option<String>,
    purpose: String,
    /// For a resume: the run it continues.
    resumes: Option<String>,
    /// The template context's `promotion` when the run started.
    promotion: Option<serde_json::Value>,
}

/// `run.resumed`'s data.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResumedData {
    resumes: String,
    /// The steps not run (succeeded earlier, or marked done).
    skipped: Vec<String>,
    /// Those of them the operator marked done.
    marked_done: Vec<String>,
}

/// What one step of the run left in the log.
#[derive(Debug, Default)]
struct StepRecords {
    /// `step.started`'s `seq`.
    started: Option<u64>,
    finished: Option<StepEnd>,
}

/// `step.finished`: its outcome, recorded stdout and `seq`.
#[derive(Debug, Default)]
struct StepEnd {
    outcome: String,
    stdout: String,
    seq: u64,
}

/// One run's records.
#[derive(Debug, Default)]
struct RunRecords {
    component: String,
    stage: String,
    started: Option<Started>,
    resumed: Option<ResumedData>,
    steps: BTreeMap<String, StepRecords>,
    /// `run.finished`'s outcome.
    finished: Option<String>,
    /// `run.resumed`'s `seq`: when the marks it carries were made.
    resumed_seq: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Fields {
    step: String,
    outcome: String,
    stdout: Option<String>,
}

impl RunRecords {
    fn apply(&mut self, record: Record) -> Result<(), serde_json::Error> {
        match record.kind.as_str() {
            "run.started" => {
                self.component = record.component.unwrap_or_default();
                self.stage = record.stage.unwrap_or_default();
                self.started = Some(serde_json::from_value(record.data)?);
            }
            "run.resumed" => {
                self.resumed = Some(serde_json::from_value(record.data)?);
                self.resumed_seq = record.seq;
            }
            "run.finished" => {
                let data: Fields = serde_json::from_value(record.data)?;
                self.finished = Some(data.outcome);
            }
            "step.started" => {
                let data: Fields = serde_json::from_value(record.data)?;
                self.steps.entry(data.step).or_default().started = Some(record.seq);
            }
            "step.finished" => {
                let data: Fields = serde_json::from_value(record.data)?;
                self.steps.entry(data.step).or_default().finished = Some(StepEnd {
                    outcome: data.outcome,
                    stdout: data.stdout.unwrap_or_default(),
                    seq: record.seq,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// The run this one resumes, if it is a resume.
    fn resumes(&self) -> Option<&str> {
        self.started
            .as_ref()
            .and_then(|s| s.resumes.as_deref())
            .or_else(|| self.resumed.as_ref().map(|r| r.resumes.as_str()))
    }

    /// The step's recorded stdout if it succeeded in this run.
    fn succeeded(&self, step: &str) -> Option<&str> {
        let end = self.steps.get(step)?.finished.as_ref()?;
        (end.outcome == "succeeded").then_some(end.stdout.as_str())
    }

    /// A step that started and never finished: whether it did its work is unknown.
    fn unfinished(&self, step: &str) -> bool {
        self.steps
            .get(step)
            .is_some_and(|s| s.started.is_some() && s.finished.is_none())
    }
}

/// The run to resume and the runs it resumes, newest first, read from the log in two
/// passes whatever the chain's length. The passes do not check the hash chain: they only
/// decide what to refuse, and the run that follows replays the log with the chain checked
/// before any step starts.
struct Chain {
    /// `(run id, its records)`: the run to resume, then the one it resumes, and so on.
    runs: Vec<(String, RunRecords)>,
    /// Every run id that has a `run.started`, for a "did you mean".
    started_ids: Vec<String>,
    /// The runs that resumed the run to resume, with how they ended (`None`: no end).
    resumed_by: Vec<(String, Option<String>)>,
    /// The log's length before the first pass: what is appended later is another run's.
    read_up_to: u64,
}

/// Where a step was found done: the position in the chain of the run that decided it, and
/// the `seq` from which its work stands (its `step.started`, or the resume that marked it).
struct Decided {
    done: Done,
    at: usize,
    seq: u64,
}

impl Chain {
    fn read(log: &AuditLog, id: &str) -> Result<Self, Error> {
        let read_up_to = log.end_offset().map_err(|e| broken(&e))?;
        // First pass: the run's records, and which run resumes which.
        let mut links: HashMap<String, String> = HashMap::new();
        let mut started_ids = Vec::new();
        let mut first = RunRecords::default();
        scan(
            log.records(),
            &HashSet::from([id.to_owned()]),
            true,
            |record| {
                if record.kind == "run.started" {
                    started_ids.push(record.run.clone());
                }
                if matches!(record.kind.as_str(), "run.started" | "run.resumed")
                    && let Some(resumes) = record.data.get("resumes").and_then(|r| r.as_str())
                {
                    links.insert(record.run.clone(), resumes.to_owned());
                }
                if record.run == id {
                    first.apply(record)?;
                }
                Ok(())
            },
        )?;
        let resumers: Vec<String> = links
            .iter()
            .filter(|(_, resumes)| resumes.as_str() == id)
            .map(|(run, _)| run.clone())
            .collect();
        // The chain's ids, newest first; a hand-made log could loop, and ends here.
        let mut ids = vec![id.to_owned()];
        while let Some(earlier) = links.get(ids.last().map(String::as_str).unwrap_or_default()) {
            if ids.contains(earlier) {
                break;
            }
            ids.push(earlier.clone());
        }
        // Second pass: the earlier runs' records, and how the resumers ended.
        let wanted: HashSet<String> = ids[1..].iter().chain(&resumers).cloned().collect();
        let mut others: HashMap<String, RunRecords> = HashMap::new();
        if !wanted.is_empty() {
            scan(log.records(), &wanted, false, |record| {
                if wanted.contains(&record.run) {
                    others
                        .entry(record.run.clone())
                        .or_default()
                        .apply(record)?;
                }
                Ok(())
            })?;
        }
        let resumed_by = resumers
            .into_iter()
            .map(|run| {
                let end = others.get(&run).and_then(|r| r.finished.clone());
                (run, end)
            })
            .collect();
        let mut runs = vec![(id.to_owned(), first)];
        for id in &ids[1..] {
            match others.remove(id) {
                Some(records) if records.started.is_some() => runs.push((id.clone(), records)),
                _ => break,
            }
        }
        Ok(Self {
            runs,
            started_ids,
            resumed_by,
            read_up_to,
        })
    }

    fn run(&self) -> &RunRecords {
        &self.runs[0].1
    }

    fn first_id(&self) -> &str {
        self.runs.last().map_or_else(|| "", |(id, _)| id.as_str())
    }

    /// The command that started the chain, as a person would type it again.
    fn first_command(&self) -> String {
        let argv = self
            .runs
            .iter()
            .rev()
            .find_map(|(_, r)| r.started.as_ref())
            .map(|s| s.command.as_slice())
            .unwrap_or_default();
        shown_command(argv)
    }

    /// Whether `step` is done as of the run to resume: its own outcome where it last ran,
    /// or marked done by a resume; else nothing.
    fn done(&self, step: &str) -> Option<Decided> {
        for (at, (id, records)) in self.runs.iter().enumerate() {
            if let Some(ran) = records.steps.get(step) {
                let stdout = records.succeeded(step)?;
                return Some(Decided {
                    done: Done {
                        run: Some(id.clone()),
                        stdout: stdout.to_owned(),
                    },
                    at,
                    seq: ran.started.unwrap_or_default(),
                });
            }
            records.resumes()?;
            match &records.resumed {
                Some(r) if r.marked_done.iter().any(|s| s == step) => {
                    return Some(Decided {
                        done: Done {
                            run: None,
                            stdout: String::new(),
                        },
                        at,
                        seq: records.resumed_seq,
                    });
                }
                Some(r) if !r.skipped.iter().any(|s| s == step) => return None,
                // Skipped as done (or `run.resumed` never written): as the run before had it.
                _ => {}
            }
        }
        None
    }

    /// The newest run of the chain in which a `when: failure` step of `runbook` started
    /// (whatever its end): its position in the chain, the `seq` by which every such step of
    /// that run had ended (`u64::MAX` when one never did), and the steps.
    fn failure_handlers(&self, runbook: &Runbook) -> Option<(usize, u64, Vec<String>)> {
        self.runs.iter().enumerate().find_map(|(at, (_, records))| {
            let ran: Vec<(&String, u64)> = runbook
                .steps
                .iter()
                .filter(|s| s.when == When::Failure)
                .filter_map(|s| {
                    let step = records.steps.get(&s.id)?;
                    step.started?;
                    Some((&s.id, step.finished.as_ref().map_or(u64::MAX, |e| e.seq)))
                })
                .collect();
            let ended = ran.iter().map(|(_, seq)| *seq).max()?;
            Some((
                at,
                ended,
                ran.into_iter().map(|(id, _)| id.clone()).collect(),
            ))
        })
    }
}

fn broken(e: &AuditError) -> Error {
    Error::Failed {
        message: e.to_string(),
        hint: Some("`release audit verify` names the bad line".into()),
    }
}

/// Streams `records`, handing `each` those that name one of `runs` (the prefilter is a
/// byte search; `each` checks), and with `links`, every `run.started` and `run.resumed`
/// too.
fn scan(
    records: Result<Records, AuditError>,
    runs: &HashSet<String>,
    links: bool,
    mut each: impl FnMut(Record) -> Result<(), serde_json::Error>,
) -> Result<(), Error> {
    let finders: Vec<memchr::memmem::Finder<'_>> = runs
        .iter()
        .map(|r| memchr::memmem::Finder::new(r.as_bytes()))
        .collect();
    let started = memchr::memmem::Finder::new(b"\"run.started\"");
    let resumed = memchr::memmem::Finder::new(b"\"run.resumed\"");
    let mut records = records.map_err(|e| broken(&e))?;
    while let Some(line) = records.next_line() {
        let (number, line) = line.map_err(|e| broken(&e))?;
        let wanted = finders.iter().any(|f| f.find(line).is_some())
            || (links && (started.find(line).is_some() || resumed.find(line).is_some()));
        if !wanted {
            continue;
        }
        let record: Record =
            serde_json::from_slice(line).map_err(|e| broken(&records.corrupt(number, e)))?;
        each(record).map_err(|e| broken(&records.corrupt(number, e)))?;
    }
    Ok(())
}

fn unknown_run(id: &str, started_ids: &[String]) -> Error {
    let ids: Vec<&str> = started_ids.iter().map(String::as_str).collect();
    Error::InvalidInput {
        message: format!("no run `{id}` in the audit log"),
        hint: Some(if ids.is_empty() {
            "the audit log records no run yet".into()
        } else {
            format!(
                "{}; `release audit log --kind run.finished` lists the runs and how they ended",
                suggest_among(id, &ids)
            )
        }),
    }
}

fn refused(message: String, hint: String) -> Error {
    Error::Refused {
        message,
        hint: Some(hint),
    }
}

/// Only a real run that did not succeed is resumed, once, and not a promotion (whose
/// gates must be checked again).
fn refuse_unresumable(
    id: &str,
    started: &Started,
    finished: Option<&str>,
    resumed_by: &[(String, Option<String>)],
    command: &str,
) -> Result<(), Error> {
    if started.dry_run {
        return Err(refused(
            format!("run {id} was a dry-run: it changed nothing, so there is nothing to resume"),
            format!("rehearse again: `{command}`"),
        ));
    }
    if started.purpose == "promote" {
        return Err(refused(
            format!(
                "run {id} was a promotion: a promotion is not resumed, because its gates must pass again"
            ),
            format!(
                "run `{command}` again: `release promote` checks the gates, then runs its runbook"
            ),
        ));
    }
    if let Some((later, end)) = resumed_by.last() {
        return Err(match end.as_deref() {
            Some("succeeded") => refused(
                format!(
                    "run {id} was already resumed by run {later}, which succeeded: nothing to resume"
                ),
                format!("to run it again, start a new run: `{command}`"),
            ),
            _ => refused(
                format!("run {id} was already resumed by run {later}"),
                format!("resume that one instead: `release resume {later}`"),
            ),
        });
    }
    if finished == Some("succeeded") {
        return Err(refused(
            format!("run {id} succeeded: nothing to resume"),
            format!("to run it again, start a new run: `{command}`"),
        ));
    }
    Ok(())
}

/// A run that recorded no end may still be going on: its lock says.
fn refuse_if_running(
    project: &Project,
    id: &str,
    component: &str,
    stage: &str,
) -> Result<(), Error> {
    let Err(e) = lock::check(&locks_dir(project), component, stage, &lock::this_host()) else {
        return Ok(());
    };
    let holder = match &e {
        LockError::Held { holder, .. } => holder.run.clone(),
        LockError::Io { .. } => {
            return Err(Error::Failed {
                message: e.to_string(),
                hint: None,
            });
        }
    };
    Err(if holder == id {
        Error::Refused {
            message: format!("{e}: run {id} may still be going on"),
            hint: e.hint(),
        }
    } else {
        refused(
            format!("{e}: another run of {component} at {stage} is going on"),
            format!("resume run {id} once run {holder} has ended"),
        )
    })
}

/// The runbook must be the one the run started with, byte for byte (SPEC §8). Checked
/// before anything else about it, so that no refusal sends the operator to a changed file.
fn refuse_changed_runbook(
    id: &str,
    label: &str,
    path: &std::path::Path,
    recorded: &str,
    command: &str,
) -> Result<(), Error> {
    use sha2::Digest;
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Err(refused(
                format!("cannot read runbook {label}, which run {id} ran: {e}"),
                format!(
                    "a resume runs the runbook the run started with, at the same place: put it back at {label}, or start a new run: `{command}`"
                ),
            ));
        }
    };
    let now = hex::encode(sha2::Sha256::digest(&bytes));
    if now == recorded {
        return Ok(());
    }
    Err(changed_runbook(id, label, recorded, &now, command))
}

/// The refusal of a runbook whose SHA-256 is not the recorded one.
pub fn changed_runbook(id: &str, label: &str, recorded: &str, now: &str, command: &str) -> Error {
    refused(
        format!(
            "runbook {label} changed since run {id} started (SHA-256 {} then, {} now): a resume runs only the steps the run started with; nothing ran",
            short_hash(recorded),
            short_hash(now),
        ),
        format!("put the runbook back as it was to resume, or start a new run: `{command}`"),
    )
}

fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A param recorded redacted (its value held a secret) cannot be given back.
fn refuse_redacted_params(params: &BTreeMap<String, String>, command: &str) -> Result<(), Error> {
    let redacted: Vec<String> = params
        .iter()
        .filter(|(_, v)| v.contains(REDACTED))
        .map(|(k, _)| format!("`{k}`"))
        .collect();
    if redacted.is_empty() {
        return Ok(());
    }
    Err(refused(
        format!(
            "parameter {} was recorded {REDACTED}, since its value holds a secret: a resume cannot give it back; nothing ran",
            redacted.join(", ")
        ),
        format!("start a new run with the same values (fill in the redacted ones): `{command}`"),
    ))
}

/// `--rerun` and `--mark-done` name steps of the runbook, each at most once.
fn check_step_names(args: &ResumeArgs, runbook: &Runbook) -> Result<(), Error> {
    let ids: Vec<&str> = runbook.steps.iter().map(|s| s.id.as_str()).collect();
    for (flag, names) in [("--rerun", &args.rerun), ("--mark-done", &args.mark_done)] {
        if let Some(unknown) = names.iter().find(|n| !ids.contains(&n.as_str())) {
            return Err(Error::InvalidInput {
                message: format!("{flag} {unknown}: the runbook has no step `{unknown}`"),
                hint: Some(suggest(unknown, &ids)),
            });
        }
    }
    if let Some(step) = runbook
        .steps
        .iter()
        .find(|s| s.when != When::Success && args.mark_done.contains(&s.id))
    {
        return Err(Error::InvalidInput {
            message: format!(
                "--mark-done {}: the step runs `when: {}`, so every run decides again whether it runs; it cannot be marked done",
                step.id,
                if step.when == When::Failure {
                    "failure"
                } else {
                    "always"
                }
            ),
            hint: Some(format!("leave out --mark-done {}", step.id)),
        });
    }
    if let Some(both) = args.rerun.iter().find(|n| args.mark_done.contains(n)) {
        return Err(Error::InvalidInput {
            message: format!("step `{both}` is given to both --rerun and --mark-done"),
            hint: Some(format!(
                "keep --rerun {both} to run it again, or --mark-done {both} to count it done"
            )),
        });
    }
    Ok(())
}

/// The steps not run again: those that succeeded in the chain and those marked done. A
/// `when: failure` or `always` step is never carried over: it answers what happens in
/// this run. Refused: a step whose outcome is unknown, and steps whose work stood before a
/// `when: failure` step started (it may have undone it), unless the operator says what to
/// do with each (`--rerun` or `--mark-done`).
fn done_steps(
    chain: &Chain,
    args: &ResumeArgs,
    runbook: &Runbook,
) -> Result<BTreeMap<String, Done>, Error> {
    let named = |list: &[String], id: &str| list.iter().any(|s| s == id);
    let handlers = chain.failure_handlers(runbook);
    let mut done = BTreeMap::new();
    let (mut unknown, mut maybe_undone) = (Vec::new(), Vec::new());
    for step in runbook.steps.iter().filter(|s| s.when == When::Success) {
        let id = step.id.as_str();
        if named(&args.rerun, id) {
            continue;
        }
        if named(&args.mark_done, id) {
            let stdout = String::new();
            done.insert(id.to_owned(), Done { run: None, stdout });
            continue;
        }
        if let Some(decided) = chain.done(id) {
            let undone = handlers.as_ref().is_some_and(|(at, ended, _)| {
                decided.at > *at || (decided.at == *at && decided.seq < *ended)
            });
            if undone {
                maybe_undone.push(id);
            }
            done.insert(id.to_owned(), decided.done);
        } else if chain.run().unfinished(id) {
            unknown.push(id);
        }
    }
    let run_id = chain.runs[0].0.as_str();
    if !unknown.is_empty() {
        let one = unknown.len() == 1;
        return Err(refused(
            format!(
                "run {run_id} stopped while {} {} running: whether {} work is unknown; nothing ran",
                listed(&unknown),
                if one { "was" } else { "were" },
                if one { "it did its" } else { "they did their" },
            ),
            format!(
                "check what {} did, then resume with `{}` to run {} again, or with `--mark-done STEP` instead for each whose work is done",
                if one { "it" } else { "they" },
                again(args, "--rerun", &unknown),
                if one { "it" } else { "them" },
            ),
        ));
    }
    if let (Some((at, _, handlers)), false) = (handlers, maybe_undone.is_empty()) {
        let handlers: Vec<&str> = handlers.iter().map(String::as_str).collect();
        return Err(refused(
            format!(
                "{} (when: failure) ran in run {} after a failure and may have undone the work of {}, done before it; nothing ran",
                listed(&handlers),
                chain.runs[at].0,
                listed(&maybe_undone)
            ),
            format!(
                "say what to do with each: `{}` if their work still stands, or `--rerun STEP` instead for those to run again",
                again(args, "--mark-done", &maybe_undone)
            ),
        ));
    }
    Ok(done)
}

/// The resume command with the flags given, and `flag` for each of `steps`.
fn again(args: &ResumeArgs, flag: &str, steps: &[&str]) -> String {
    let mut command = vec![
        "release".to_owned(),
        "resume".to_owned(),
        args.run_id.clone(),
    ];
    for (given, names) in [("--rerun", &args.rerun), ("--mark-done", &args.mark_done)] {
        for name in names {
            command.extend([given.to_owned(), name.clone()]);
        }
    }
    for step in steps {
        command.extend([flag.to_owned(), (*step).to_owned()]);
    }
    crate::actions::run::show_argv(&command)
}

/// A step that runs must get the output it read when the chain ran it: not one recorded
/// cut or redacted, nor the missing output of a step marked done.
fn refuse_lost_outputs(
    run_id: &str,
    runbook: &Runbook,
    done: &BTreeMap<String, Done>,
) -> Result<(), Error> {
    for step in runbook.steps.iter().filter(|s| !done.contains_key(&s.id)) {
        let mut templates = serde_json::to_value(&step.action).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut templates {
            map.insert("if".into(), step.condition.clone().into());
            map.insert("confirm".into(), step.confirm.clone().into());
        }
        for read in outputs_read(&templates) {
            let Some(earlier) = done.get(&read) else {
                continue;
            };
            let why = match &earlier.run {
                None => "it was marked done, so no output of it is known".to_owned(),
                Some(run) if is_cut(&earlier.stdout) => {
                    format!("run {run} recorded only its first 4 KiB")
                }
                Some(run) if earlier.stdout.contains(REDACTED) => {
                    format!("run {run} recorded it with a secret {REDACTED}")
                }
                Some(_) => continue,
            };
            return Err(refused(
                format!(
                    "step `{}` reads `steps.{read}.stdout`, but {why}: a resume of run {run_id} cannot give it the value it had; nothing ran",
                    step.id
                ),
                format!("resume with `--rerun {read}` to produce it again"),
            ));
        }
    }
    Ok(())
}

fn listed(ids: &[&str]) -> String {
    ids.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A recorded command line as a person would type it again.
fn shown_command(argv: &[String]) -> String {
    let mut argv = argv.to_vec();
    if let Some(first) = argv.first_mut() {
        "release".clone_into(first);
    }
    crate::actions::run::show_argv(&argv)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::project::diagnostic::SourceFile;
    use crate::project::validate::check_runbook_source;

    /// `a`, `b`, `c` in a chain; `undo` runs when something failed; `report` always.
    const RUNBOOK: &str = r#"steps:
  - id: a
    run: ["echo", "a"]
  - id: b
    run: ["echo", "{{ steps.a.stdout }}"]
  - id: c
    run: ["echo", "c"]
  - id: undo
    when: failure
    run: ["echo", "undo"]
  - id: report
    when: always
    run: ["echo", "report"]
"#;

    fn runbook() -> Runbook {
        let (runbook, diagnostics) =
            check_runbook_source(&SourceFile::new(Path::new("r.yaml"), RUNBOOK), None);
        runbook.unwrap_or_else(|| panic!("{diagnostics:?}"))
    }

    /// A run's records from `(step, outcome)` pairs; `None` for a step that started and
    /// never finished. `resumed`: the run it resumes, its skipped and marked-done steps.
    fn run(
        steps: &[(&str, Option<&str>)],
        resumed: Option<(&str, &[&str], &[&str])>,
    ) -> RunRecords {
        let mut records = RunRecords {
            started: Some(Started {
                resumes: resumed.map(|(r, _, _)| r.to_owned()),
                ..Started::default()
            }),
            ..RunRecords::default()
        };
        for (seq, (step, outcome)) in (1..).zip(steps) {
            records.steps.insert(
                (*step).to_owned(),
                StepRecords {
                    started: Some(2 * seq),
                    finished: outcome.map(|o| StepEnd {
                        outcome: o.to_owned(),
                        stdout: format!("{step} out"),
                        seq: 2 * seq + 1,
                    }),
                },
            );
        }
        let list = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect();
        records.resumed = resumed.map(|(resumes, skipped, marked)| ResumedData {
            resumes: resumes.to_owned(),
            skipped: list(skipped),
            marked_done: list(marked),
        });
        records
    }

    /// Newest first, named r<N>…r1.
    fn chain(runs: Vec<RunRecords>) -> Chain {
        let n = runs.len();
        Chain {
            runs: runs
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("r{}", n - i), r))
                .collect(),
            started_ids: Vec::new(),
            resumed_by: Vec::new(),
            read_up_to: 0,
        }
    }

    fn args(rerun: &[&str], mark_done: &[&str]) -> ResumeArgs {
        ResumeArgs {
            run_id: "r".into(),
            rerun: rerun.iter().map(|s| (*s).to_owned()).collect(),
            mark_done: mark_done.iter().map(|s| (*s).to_owned()).collect(),
            max_parallel: None,
        }
    }

    fn done(chain: &Chain, args: &ResumeArgs) -> Result<Vec<(String, Option<String>)>, String> {
        done_steps(chain, args, &runbook())
            .map(|done| {
                done.iter()
                    .map(|(k, d)| (k.clone(), d.run.clone()))
                    .collect()
            })
            .map_err(|e| text(&e))
    }

    /// An error's message and hint.
    fn text(error: &Error) -> String {
        match error {
            Error::Refused { message, hint } | Error::InvalidInput { message, hint } => {
                format!("{message} | {}", hint.as_deref().unwrap_or_default())
            }
            other => other.to_string(),
        }
    }

    fn pair(step: &str, run: Option<&str>) -> (String, Option<String>) {
        (step.to_owned(), run.map(str::to_owned))
    }

    #[test]
    fn steps_done_anywhere_in_the_chain_stay_done_and_the_latest_outcome_wins() {
        // r1: a ok, b failed. r2 resumes r1: skips a, b ok, c fails; `report` (always)
        // succeeded in both and is never carried over.
        let r1 = run(
            &[
                ("a", Some("succeeded")),
                ("b", Some("failed")),
                ("report", Some("succeeded")),
            ],
            None,
        );
        let r2 = run(
            &[
                ("b", Some("succeeded")),
                ("c", Some("failed")),
                ("report", Some("succeeded")),
            ],
            Some(("r1", &["a"], &[])),
        );
        let chain = chain(vec![r2, r1]);
        assert_eq!(
            done(&chain, &args(&[], &[])).unwrap(),
            vec![pair("a", Some("r1")), pair("b", Some("r2"))]
        );
        assert_eq!(chain.done("a").unwrap().done.stdout, "a out");
    }

    #[test]
    fn a_mark_carries_down_the_chain_and_a_missing_run_resumed_inherits() {
        // r2 marked `a` done; r3 resumed r2 but its `run.resumed` was never written.
        let r1 = run(&[("a", None), ("b", Some("failed"))], None);
        let r2 = run(&[("b", Some("failed"))], Some(("r1", &["a"], &["a"])));
        let mut r3 = run(&[], Some(("r2", &[], &[])));
        r3.resumed = None;
        let chain = chain(vec![r3, r2, r1]);
        assert_eq!(
            done(&chain, &args(&[], &[])).unwrap(),
            vec![pair("a", None)]
        );
    }

    #[test]
    fn a_step_run_again_and_failed_is_not_done_though_it_succeeded_earlier() {
        let r1 = run(&[("a", Some("succeeded")), ("b", Some("failed"))], None);
        let r2 = run(&[("a", Some("failed"))], Some(("r1", &[], &[])));
        assert!(
            done(&chain(vec![r2, r1]), &args(&[], &[]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_outcome_is_refused_until_the_operator_says_rerun_or_done() {
        let r1 = run(&[("a", Some("succeeded")), ("b", None), ("c", None)], None);
        let chain = chain(vec![r1]);
        let refusal = done(&chain, &args(&[], &[])).unwrap_err();
        assert!(refusal.contains("`b`, `c` were running"), "{refusal}");
        assert!(
            refusal.contains("release resume r --rerun b --rerun c"),
            "{refusal}"
        );
        assert_eq!(
            done(&chain, &args(&["b"], &["c"])).unwrap(),
            vec![pair("a", Some("r1")), pair("c", None)]
        );
        // --rerun also runs a step that succeeded.
        assert!(
            done(&chain, &args(&["a", "b", "c"], &[]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn work_done_before_a_failure_handler_ran_needs_the_operators_word() {
        // r1: a ok, b failed, undo (when: failure) ran. r2 resumes: b ok, c failed, no
        // handler ran. `a` (done in r1, before `undo`) needs a word; `b` (r2) does not.
        let r1 = run(
            &[
                ("a", Some("succeeded")),
                ("b", Some("failed")),
                ("undo", Some("succeeded")),
            ],
            None,
        );
        let r2 = run(
            &[("b", Some("succeeded")), ("c", Some("failed"))],
            Some(("r1", &["a"], &[])),
        );
        let chain = chain(vec![r2, r1]);
        let refusal = done(&chain, &args(&[], &[])).unwrap_err();
        assert!(
            refusal.contains("`undo` (when: failure) ran in run r1"),
            "{refusal}"
        );
        assert!(
            refusal.contains("release resume r --mark-done a"),
            "{refusal}"
        );
        assert_eq!(
            done(&chain, &args(&[], &["a"])).unwrap(),
            vec![pair("a", None), pair("b", Some("r2"))]
        );
        assert_eq!(
            done(&chain, &args(&["a"], &[])).unwrap(),
            vec![pair("b", Some("r2"))]
        );
    }

    #[test]
    fn a_failure_handler_that_started_counts_whatever_its_end_and_marks_are_checked_too() {
        // r1: a ok, b failed, undo started and never finished (killed).
        let r1 = run(
            &[
                ("a", Some("succeeded")),
                ("b", Some("failed")),
                ("undo", None),
            ],
            None,
        );
        let chain1 = chain(vec![r1]);
        let refusal = done(&chain1, &args(&[], &[])).unwrap_err();
        assert!(
            refusal.contains("may have undone the work of `a`"),
            "{refusal}"
        );
        // r2 resumed r1 with `a` marked done, and `undo` ran again after b failed: the mark
        // came before the handler, so it is asked about again.
        let r1 = run(
            &[
                ("a", Some("succeeded")),
                ("b", Some("failed")),
                ("undo", Some("failed")),
            ],
            None,
        );
        let mut r2 = run(
            &[("b", Some("failed")), ("undo", Some("succeeded"))],
            Some(("r1", &["a"], &["a"])),
        );
        r2.resumed_seq = 1;
        let refusal = done(&chain(vec![r2, r1]), &args(&[], &[])).unwrap_err();
        assert!(
            refusal.contains("may have undone the work of `a`"),
            "{refusal}"
        );
    }

    #[test]
    fn work_that_started_after_the_handler_ended_is_not_asked_about() {
        // In r1, `undo` started at seq 2 and ended at 3; `a` started at 4 (after it).
        let mut r1 = run(
            &[
                ("undo", Some("succeeded")),
                ("a", Some("succeeded")),
                ("b", Some("failed")),
            ],
            None,
        );
        if let Some(a) = r1.steps.get_mut("a") {
            a.started = Some(4);
        }
        assert_eq!(
            done(&chain(vec![r1]), &args(&[], &[])).unwrap(),
            vec![pair("a", Some("r1"))]
        );
    }

    #[test]
    fn a_resume_started_meanwhile_is_seen_in_what_was_appended_since() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(
            dir.path().join("audit.jsonl"),
            "me@example.com".into(),
            Redactor::default(),
        );
        let append = |run: &str, kind: &'static str, data: serde_json::Value| {
            let entry = crate::state::audit::Entry {
                run: run.into(),
                kind,
                component: None,
                stage: None,
                data,
            };
            log.append(entry).unwrap();
        };
        append("r1", "run.started", serde_json::json!({ "purpose": "run" }));
        let offset = log.end_offset().unwrap();
        assert_eq!(resumed_since(&log, offset, "r1"), None);
        append(
            "r2",
            "run.started",
            serde_json::json!({ "purpose": "resume", "resumes": "r1" }),
        );
        assert_eq!(resumed_since(&log, offset, "r1").as_deref(), Some("r2"));
        // From the middle of a line: the fragment is passed over.
        assert_eq!(resumed_since(&log, offset + 5, "r1"), None);
        assert_eq!(resumed_since(&log, log.end_offset().unwrap(), "r1"), None);
    }

    #[test]
    fn skipped_and_unstarted_steps_run_again() {
        let mut r1 = run(&[("a", Some("skipped"))], None);
        if let Some(a) = r1.steps.get_mut("a") {
            a.started = None;
        }
        assert!(done(&chain(vec![r1]), &args(&[], &[])).unwrap().is_empty());
    }

    #[test]
    fn an_output_a_resume_cannot_give_back_is_refused() {
        let rb = runbook();
        let from = |stdout: &str| {
            BTreeMap::from([(
                "a".to_owned(),
                Done {
                    run: Some("r1".into()),
                    stdout: stdout.to_owned(),
                },
            )])
        };
        assert!(refuse_lost_outputs("r1", &rb, &from("a out")).is_ok());
        for (stdout, why) in [
            ("x\n[… 10 more bytes not recorded]\n", "first 4 KiB"),
            ("token [redacted]", "secret [redacted]"),
        ] {
            let refusal = text(&refuse_lost_outputs("r1", &rb, &from(stdout)).unwrap_err());
            assert!(
                refusal.contains("`b` reads `steps.a.stdout`") && refusal.contains(why),
                "{refusal}"
            );
        }
        let marked = BTreeMap::from([(
            "a".to_owned(),
            Done {
                run: None,
                stdout: String::new(),
            },
        )]);
        let refusal = refuse_lost_outputs("r1", &rb, &marked)
            .unwrap_err()
            .to_string();
        assert!(refusal.contains("marked done"), "{refusal}");
        // Nothing reads `c`: marking it done is fine.
        let c = BTreeMap::from([(
            "c".to_owned(),
            Done {
                run: None,
                stdout: String::new(),
            },
        )]);
        assert!(refuse_lost_outputs("r1", &rb, &c).is_ok());
    }

    #[test]
    fn refusals_name_what_to_do_instead() {
        let refusal =
            |started: &Started, finished: Option<&str>, later: &[(String, Option<String>)]| {
                refuse_unresumable("r1", started, finished, later, "release run x")
                    .map_err(|e| text(&e))
            };
        let mut started = Started::default();
        assert!(refusal(&started, Some("failed"), &[]).is_ok());
        assert!(refusal(&started, None, &[]).is_ok());
        assert!(
            refusal(&started, Some("succeeded"), &[])
                .unwrap_err()
                .contains("nothing to resume")
        );
        let later = [("r2".to_owned(), Some("failed".to_owned()))];
        let text = refusal(&started, Some("failed"), &later).unwrap_err();
        assert!(text.contains("release resume r2"), "{text}");
        let later = [("r2".to_owned(), Some("succeeded".to_owned()))];
        let text = refusal(&started, Some("failed"), &later).unwrap_err();
        assert!(text.contains("which succeeded"), "{text}");
        started.purpose = "promote".into();
        assert!(
            refusal(&started, Some("failed"), &[])
                .unwrap_err()
                .contains("promotion")
        );
        started.dry_run = true;
        assert!(
            refusal(&started, Some("failed"), &[])
                .unwrap_err()
                .contains("dry-run")
        );
        let params = BTreeMap::from([("url".to_owned(), "https://[redacted]/x".to_owned())]);
        let refusal = refuse_redacted_params(&params, "release run x")
            .unwrap_err()
            .to_string();
        assert!(refusal.contains("`url`"), "{refusal}");
    }

    #[test]
    fn a_recorded_command_is_shown_as_release_with_its_arguments_quoted() {
        let argv = [
            "/opt/bin/release",
            "rollback",
            "api",
            "--reason",
            "5xx spike",
        ];
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            shown_command(&argv),
            "release rollback api --reason '5xx spike'"
        );
    }
}
