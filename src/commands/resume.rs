//! `release resume RUN_ID` (SPEC §8): continues a failed or interrupted run from its first
//! unfinished step, with the inputs it started with.
//!
//! Everything comes from the audit log: the run's `run.started` (runbook, its SHA-256,
//! params, reason, component, stage) and its steps' records. A step that succeeded is not
//! run again (its recorded stdout still feeds `steps.<id>.stdout`); a step that started and
//! never finished has an unknown outcome, and the operator must say whether to run it again
//! (`--rerun`) or count it done (`--mark-done`). A resume of a resume follows the chain back
//! through the `run.resumed` records.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::commands::Context;
use crate::commands::run::{
    Job, Resumption, RunOptions, audit_path, check_target, execute_runbook, locks_dir,
};
use crate::engine::{Done, Resumed};
use crate::error::Error;
use crate::project::Project;
use crate::project::yaml::{suggest, suggest_among};
use crate::state::audit::{AuditError, AuditLog, Record};
use crate::state::lock;

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
    let mut started_ids = Vec::new();
    let run = RunRecords::read(&log, &args.run_id, Some(&mut started_ids))?;
    let Some(started) = run.started.as_ref() else {
        let ids: Vec<&str> = started_ids.iter().map(String::as_str).collect();
        return Err(Error::InvalidInput {
            message: format!("no run `{}` in the audit log", args.run_id),
            hint: Some(if ids.is_empty() {
                "the audit log records no run yet".into()
            } else {
                format!(
                    "{}; `release audit log --kind run.finished` lists the runs and how they ended",
                    suggest_among(&args.run_id, &ids)
                )
            }),
        });
    };
    let (component, stage) = (run.component.as_str(), run.stage.as_str());
    let earlier = earlier_runs(&log, &run)?;
    // The command that started the chain: what a person would run again.
    let command = shown_command(
        &earlier
            .last()
            .and_then(|(_, first)| first.started.as_ref())
            .unwrap_or(started)
            .command,
    );
    refuse_unresumable(&args.run_id, &run, &command)?;
    check_target(&project, component, stage)?;
    if run.finished.is_none() {
        // No end recorded: the run may still be going on. Its steps would look unfinished.
        lock::check(&locks_dir(&project), component, stage, &lock::this_host()).map_err(|e| {
            Error::Refused {
                hint: e.hint(),
                message: format!("{e}: run {} may still be going on", args.run_id),
            }
        })?;
    }
    let path = project.root.join(&started.runbook);
    let runbook = project
        .load_runbook(&project.root, &path)
        .map_err(Error::Invalid)?
        .0;
    let ids: Vec<&str> = runbook.steps.iter().map(|s| s.id.as_str()).collect();
    check_step_names(args, &ids)?;
    let done = done_steps(&args.run_id, &run, &earlier, args, &ids)?;
    let resumption = Resumption {
        resumed: Resumed {
            resumes: args.run_id.clone(),
            origin: earlier
                .last()
                .map_or_else(|| args.run_id.clone(), |(id, _)| id.clone()),
            done,
        },
        params: started.params.clone(),
        runbook_sha256: started.runbook_sha256.clone(),
        command,
    };
    let options = RunOptions {
        set: Vec::new(),
        reason: started.reason.clone(),
        dry_run: false,
        max_parallel: args.max_parallel,
    };
    execute_runbook(
        ctx,
        &project,
        &Job {
            path: &path,
            component,
            stage,
            options: &options,
            purpose: "resume",
            held: None,
            resume: Some(&resumption),
        },
    )
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
    started: bool,
    /// `step.finished`'s outcome and stdout.
    finished: Option<(String, String)>,
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
    /// The runs that resumed this one.
    resumed_by: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Fields {
    step: String,
    outcome: String,
    stdout: Option<String>,
}

impl RunRecords {
    /// Streams the log (its chain checked: a resume decides on it) for `run`'s records;
    /// `started_ids` collects every run id that has a `run.started`, for a "did you mean".
    fn read(
        log: &AuditLog,
        run: &str,
        mut started_ids: Option<&mut Vec<String>>,
    ) -> Result<Self, Error> {
        let broken = |e: AuditError| Error::Failed {
            message: e.to_string(),
            hint: Some("`release audit verify` names the bad line".into()),
        };
        let mut records = log.records_checked().map_err(broken)?;
        let mut this = Self::default();
        while let Some(line) = records.next_line() {
            let (number, line) = line.map_err(broken)?;
            let names_run = memchr::memmem::find(line, run.as_bytes()).is_some();
            let starts_a_run =
                started_ids.is_some() && memchr::memmem::find(line, b"\"run.started\"").is_some();
            if !names_run && !starts_a_run {
                continue;
            }
            let record: Record =
                serde_json::from_slice(line).map_err(|e| broken(records.corrupt(number, e)))?;
            if record.kind == "run.started"
                && let Some(ids) = started_ids.as_deref_mut()
            {
                ids.push(record.run.clone());
            }
            if record.run == run {
                this.apply(record)
                    .map_err(|e| broken(records.corrupt(number, e)))?;
            } else if record.kind == "run.resumed"
                && record.data.get("resumes").and_then(|r| r.as_str()) == Some(run)
            {
                this.resumed_by.push(record.run);
            }
        }
        Ok(this)
    }

    fn apply(&mut self, record: Record) -> Result<(), serde_json::Error> {
        match record.kind.as_str() {
            "run.started" => {
                self.component = record.component.unwrap_or_default();
                self.stage = record.stage.unwrap_or_default();
                self.started = Some(serde_json::from_value(record.data)?);
            }
            "run.resumed" => self.resumed = Some(serde_json::from_value(record.data)?),
            "run.finished" => {
                let data: Fields = serde_json::from_value(record.data)?;
                self.finished = Some(data.outcome);
            }
            "step.started" => {
                let data: Fields = serde_json::from_value(record.data)?;
                self.steps.entry(data.step).or_default().started = true;
            }
            "step.finished" => {
                let data: Fields = serde_json::from_value(record.data)?;
                self.steps.entry(data.step).or_default().finished =
                    Some((data.outcome, data.stdout.unwrap_or_default()));
            }
            _ => {}
        }
        Ok(())
    }

    /// The step's stdout if it succeeded in this run, or in the run this one resumed.
    fn succeeded(&self, step: &str) -> Option<&str> {
        match self.steps.get(step)?.finished.as_ref()? {
            (outcome, stdout) if outcome == "succeeded" => Some(stdout),
            _ => None,
        }
    }
}

/// Only a real run that did not succeed is resumed, once, and not a promotion (whose
/// gates must be checked again).
fn refuse_unresumable(id: &str, run: &RunRecords, command: &str) -> Result<(), Error> {
    let refused = |message: String, hint: String| {
        Err(Error::Refused {
            message,
            hint: Some(hint),
        })
    };
    let Some(started) = &run.started else {
        return Ok(());
    };
    if started.dry_run {
        return refused(
            format!("run {id} was a dry-run: it changed nothing, so there is nothing to resume"),
            format!("rehearse again: `{command}`"),
        );
    }
    if started.purpose == "promote" {
        return refused(
            format!(
                "run {id} was a promotion: a promotion is not resumed, because its gates must pass again"
            ),
            format!(
                "run `{command}` again: `release promote` checks the gates, then runs its runbook"
            ),
        );
    }
    if let Some(later) = run.resumed_by.last() {
        return refused(
            format!("run {id} was already resumed by run {later}"),
            format!("resume that one if it did not succeed: `release resume {later}`"),
        );
    }
    if run.finished.as_deref() == Some("succeeded") {
        return refused(
            format!("run {id} succeeded: nothing to resume"),
            format!("to run it again, start a new run: `{command}`"),
        );
    }
    Ok(())
}

/// `--rerun` and `--mark-done` name steps of the runbook, each at most once.
fn check_step_names(args: &ResumeArgs, ids: &[&str]) -> Result<(), Error> {
    for (flag, names) in [("--rerun", &args.rerun), ("--mark-done", &args.mark_done)] {
        if let Some(unknown) = names.iter().find(|n| !ids.contains(&n.as_str())) {
            return Err(Error::InvalidInput {
                message: format!("{flag} {unknown}: the runbook has no step `{unknown}`"),
                hint: Some(suggest(unknown, ids)),
            });
        }
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

/// The steps not run again: those that succeeded in the run or earlier in its chain, and
/// those marked done (now or by an earlier resume); refuses when a step's outcome is
/// unknown and nobody said what to do.
fn done_steps(
    run_id: &str,
    run: &RunRecords,
    earlier: &[(String, RunRecords)],
    args: &ResumeArgs,
    ids: &[&str],
) -> Result<BTreeMap<String, Done>, Error> {
    let named = |list: &[String], id: &str| list.iter().any(|s| s == id);
    let mut done = BTreeMap::new();
    let mut unknown = Vec::new();
    for &id in ids {
        if named(&args.rerun, id) {
            continue;
        }
        let found = if named(&args.mark_done, id) {
            Some(Done {
                run: None,
                stdout: String::new(),
            })
        } else {
            done_in_chain(id, run_id, run, earlier)
        };
        match found {
            Some(step) => {
                done.insert(id.to_owned(), step);
            }
            None if run
                .steps
                .get(id)
                .is_some_and(|s| s.started && s.finished.is_none()) =>
            {
                unknown.push(id);
            }
            None => {}
        }
    }
    if unknown.is_empty() {
        return Ok(done);
    }
    let list = unknown
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let first = unknown[0];
    let one = unknown.len() == 1;
    Err(Error::Refused {
        message: format!(
            "run {run_id} stopped while {list} {} running: whether {} its work is unknown; nothing ran",
            if one { "was" } else { "were" },
            if one { "it did" } else { "they did" },
        ),
        hint: Some(format!(
            "check what it did, then resume with `--rerun {first}` to run it again, or `--mark-done {first}` if its work is done"
        )),
    })
}

/// Whether `step` is done as of `run`: its own outcome when it ran there; else, when `run`
/// skipped it as done, what the run before decided.
fn done_in_chain(
    step: &str,
    run_id: &str,
    run: &RunRecords,
    earlier: &[(String, RunRecords)],
) -> Option<Done> {
    let chain = std::iter::once((run_id, run))
        .chain(earlier.iter().map(|(id, records)| (id.as_str(), records)));
    for (id, records) in chain {
        if records.steps.contains_key(step) {
            return records.succeeded(step).map(|stdout| Done {
                run: Some(id.to_owned()),
                stdout: stdout.to_owned(),
            });
        }
        let resumed = records.resumed.as_ref()?;
        if resumed.marked_done.iter().any(|s| s == step) {
            return Some(Done {
                run: None,
                stdout: String::new(),
            });
        }
        if !resumed.skipped.iter().any(|s| s == step) {
            return None;
        }
    }
    None
}

/// The runs `run` resumes, back to the first of the chain (last in the list).
fn earlier_runs(log: &AuditLog, run: &RunRecords) -> Result<Vec<(String, RunRecords)>, Error> {
    let mut chain: Vec<(String, RunRecords)> = Vec::new();
    let mut resumes = run.resumed.as_ref().map(|r| r.resumes.clone());
    while let Some(id) = resumes {
        // Each resume is a later run than the one it resumes, so a chain never loops; a
        // hand-made log could, and ends here.
        if chain.iter().any(|(seen, _)| *seen == id) {
            break;
        }
        let earlier = RunRecords::read(log, &id, None)?;
        if earlier.started.is_none() {
            break;
        }
        resumes = earlier.resumed.as_ref().map(|r| r.resumes.clone());
        chain.push((id, earlier));
    }
    Ok(chain)
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
    use super::*;

    /// A run's records from `(step, outcome)` pairs; `None` for a step that started and
    /// never finished.
    fn run(
        steps: &[(&str, Option<&str>)],
        resumed: Option<(&str, &[&str], &[&str])>,
    ) -> RunRecords {
        let mut records = RunRecords {
            started: Some(Started::default()),
            ..RunRecords::default()
        };
        for (step, outcome) in steps {
            records.steps.insert(
                (*step).to_owned(),
                StepRecords {
                    started: true,
                    finished: outcome.map(|o| (o.to_owned(), format!("{step} out"))),
                },
            );
        }
        records.resumed = resumed.map(|(resumes, skipped, marked)| ResumedData {
            resumes: resumes.to_owned(),
            skipped: skipped.iter().map(|s| (*s).to_owned()).collect(),
            marked_done: marked.iter().map(|s| (*s).to_owned()).collect(),
        });
        records
    }

    fn args(rerun: &[&str], mark_done: &[&str]) -> ResumeArgs {
        ResumeArgs {
            run_id: "r3".into(),
            rerun: rerun.iter().map(|s| (*s).to_owned()).collect(),
            mark_done: mark_done.iter().map(|s| (*s).to_owned()).collect(),
            max_parallel: None,
        }
    }

    fn done_from(done: &BTreeMap<String, Done>) -> Vec<(String, Option<String>)> {
        done.iter()
            .map(|(k, d)| (k.clone(), d.run.clone()))
            .collect()
    }

    #[test]
    fn steps_done_anywhere_in_the_chain_stay_done_and_the_latest_outcome_wins() {
        // r1: a ok, b failed. r2 resumes r1: skips a, reruns b (ok), c fails, and d was
        // marked done. r3 resumes r2: a from r1, b from r2, d still marked, c runs.
        let r1 = run(&[("a", Some("succeeded")), ("b", Some("failed"))], None);
        let r2 = run(
            &[("b", Some("succeeded")), ("c", Some("failed"))],
            Some(("r1", &["a", "d"], &["d"])),
        );
        let earlier = vec![("r1".to_owned(), r1)];
        let done = done_steps("r2", &r2, &earlier, &args(&[], &[]), &["a", "b", "c", "d"]).unwrap();
        assert_eq!(
            done_from(&done),
            vec![
                ("a".into(), Some("r1".into())),
                ("b".into(), Some("r2".into())),
                ("d".into(), None),
            ]
        );
        assert_eq!(done["a"].stdout, "a out");
    }

    #[test]
    fn a_step_run_again_and_failed_is_not_done_though_it_succeeded_earlier() {
        let r1 = run(&[("a", Some("succeeded")), ("b", Some("failed"))], None);
        let r2 = run(&[("a", Some("failed"))], Some(("r1", &[], &[])));
        let earlier = vec![("r1".to_owned(), r1)];
        let done = done_steps("r2", &r2, &earlier, &args(&[], &[]), &["a", "b"]).unwrap();
        assert!(done.is_empty(), "{:?}", done_from(&done));
    }

    #[test]
    fn an_unknown_outcome_is_refused_until_the_operator_says_rerun_or_done() {
        let r1 = run(&[("a", Some("succeeded")), ("b", None), ("c", None)], None);
        let ids = ["a", "b", "c"];
        let Err(Error::Refused { message, hint }) =
            done_steps("r1", &r1, &[], &args(&[], &[]), &ids)
        else {
            panic!("an unknown outcome must be refused");
        };
        assert!(message.contains("`b`, `c` were running"), "{message}");
        assert!(hint.unwrap().contains("--rerun b"));
        let done = done_steps("r1", &r1, &[], &args(&["b"], &["c"]), &ids).unwrap();
        assert_eq!(
            done_from(&done),
            vec![("a".into(), Some("r1".into())), ("c".into(), None)]
        );
        // --rerun also runs a step that succeeded.
        let done = done_steps("r1", &r1, &[], &args(&["a", "b", "c"], &[]), &ids).unwrap();
        assert!(done.is_empty());
    }

    #[test]
    fn skipped_and_unstarted_steps_run_again() {
        let mut r1 = run(&[("a", Some("skipped"))], None);
        r1.steps.get_mut("a").unwrap().started = false;
        let done = done_steps("r1", &r1, &[], &args(&[], &[]), &["a", "b"]).unwrap();
        assert!(done.is_empty());
    }

    #[test]
    fn refusals_name_what_to_do_instead() {
        let refused =
            |records: &RunRecords| match refuse_unresumable("r1", records, "release run x") {
                Err(Error::Refused { message, hint }) => format!("{message} | {}", hint.unwrap()),
                other => panic!("expected a refusal, got {other:?}"),
            };
        let mut records = run(&[], None);
        records.finished = Some("failed".into());
        assert!(refuse_unresumable("r1", &records, "c").is_ok());
        records.finished = Some("succeeded".into());
        assert!(refused(&records).contains("nothing to resume"));
        records.resumed_by.push("r2".into());
        assert!(refused(&records).contains("release resume r2"));
        records.started.as_mut().unwrap().purpose = "promote".into();
        assert!(refused(&records).contains("release promote"));
        records.started.as_mut().unwrap().dry_run = true;
        assert!(refused(&records).contains("rehearse again: `release run x`"));
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
