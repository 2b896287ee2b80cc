//! `release resume RUN_ID` through its contract (SPEC §5, §7, §8): a failed, interrupted or
//! killed run continued with the inputs it started with, succeeded steps not run again (their
//! stdout still reaching later steps), the chain of resumes, `--rerun` / `--mark-done`, the
//! refusals that append nothing to the audit log, the incident issue reused across the
//! chain, and the `--json` report.
//!
//! Steps prove what they did by writing files in the project folder (`*.count` files get one
//! line per execution); the audit log is read directly as JSON lines. Everything is a real
//! `release` process; the runs killed with SIGKILL leave their step's process group behind,
//! which the tests kill themselves.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Run, TestEnv};

const C: &str = "orchestration";
const AUDIT: &str = ".release/audit.jsonl";
const LOCK: &str = ".release/locks/orchestration.staging.lock";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `release run RUNBOOK --component orchestration --stage staging EXTRA…`
fn run_args<'a>(runbook: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", runbook, "--component", C, "--stage", "staging"];
    args.extend_from_slice(extra);
    args
}

/// `release resume RUN_ID EXTRA…`
fn resume(env: &TestEnv, run_id: &str, extra: &[&str]) -> Run {
    let mut args = vec!["resume", run_id];
    args.extend_from_slice(extra);
    env.release(&args)
}

/// The audit log's records (complete lines that parse; none when there is no log).
fn audit_records(env: &TestEnv) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(env.join(AUDIT)) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str(l.trim_end()).ok())
        .collect()
}

/// The number of lines of the audit log (0 when there is none).
fn audit_line_count(env: &TestEnv) -> usize {
    std::fs::read_to_string(env.join(AUDIT)).map_or(0, |text| text.matches('\n').count())
}

/// The records of one run, in log order.
fn of_run<'a>(records: &'a [Value], run_id: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["run"] == run_id).collect()
}

/// The records of one kind, in log order.
fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// The one record of `kind` in `run_id`'s records.
fn one<'a>(records: &'a [Value], run_id: &str, kind: &str) -> &'a Value {
    let found: Vec<&Value> = of_run(records, run_id)
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one `{kind}` record in run {run_id}: {records:#?}"
    );
    found[0]
}

/// The ids of the steps a run started, in log order.
fn steps_started(records: &[Value], run_id: &str) -> Vec<String> {
    of_run(records, run_id)
        .into_iter()
        .filter(|r| r["kind"] == "step.started")
        .map(|r| r["data"]["step"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The outcome a run recorded for a step (its last `step.finished`).
fn step_outcome(records: &[Value], run_id: &str, step: &str) -> Option<String> {
    of_run(records, run_id)
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "step.finished" && r["data"]["step"] == step)
        .map(|r| r["data"]["outcome"].as_str().unwrap_or_default().to_owned())
}

/// The outcome recorded by a run's `run.finished`.
fn run_outcome(records: &[Value], run_id: &str) -> String {
    one(records, run_id, "run.finished")["data"]["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The id of the last run started (from the audit log).
fn last_run_id(env: &TestEnv) -> String {
    let records = audit_records(env);
    of_kind(&records, "run.started")
        .last()
        .and_then(|r| r["run"].as_str())
        .unwrap_or_else(|| panic!("no run.started in {records:#?}"))
        .to_owned()
}

/// The id of the run that resumed `original` (its `run.resumed` record).
fn resumed_by(env: &TestEnv, original: &str) -> String {
    let records = audit_records(env);
    let found: Vec<&Value> = of_kind(&records, "run.resumed")
        .into_iter()
        .filter(|r| r["data"]["resumes"] == original)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one run.resumed of {original}: {records:#?}"
    );
    found[0]["run"].as_str().expect("run id").to_owned()
}

/// The run's report printed by `--json` (one JSON document on stdout).
fn json_report(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e})\n{}",
            run.transcript()
        )
    })
}

/// The run id of a run made with `--json`.
fn run_id_of(run: &Run) -> String {
    json_report(run)["run"]
        .as_str()
        .unwrap_or_else(|| panic!("no `run` in the report\n{}", run.transcript()))
        .to_owned()
}

fn json_step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no `steps` in {report:#}"))
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

/// The `data.skipped` of a `run.resumed` record, sorted (the contract gives no order).
fn skipped(resumed: &Value) -> Vec<String> {
    let mut ids: Vec<String> = resumed["data"]["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("`skipped` is not an array: {resumed:#}"))
        .iter()
        .map(|v| v.as_str().expect("a step id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// How many lines a file the steps append to has (0 when it does not exist).
fn count(env: &TestEnv, file: &str) -> usize {
    std::fs::read_to_string(env.join(file)).map_or(0, |t| t.lines().count())
}

fn touch(env: &TestEnv, file: &str) {
    env.write(file, "");
}

fn remove(env: &TestEnv, file: &str) {
    std::fs::remove_file(env.join(file)).expect("remove");
}

fn assert_verifies(env: &TestEnv) {
    env.release(&["audit", "verify"]).assert_code(0);
}

/// Asserts `run` refused with `code`, saying each of `needles` (on stderr), and that the
/// audit log did not grow.
#[track_caller]
fn assert_refused(env: &TestEnv, run: &Run, code: i32, lines_before: usize, needles: &[&str]) {
    run.assert_code(code);
    for needle in needles {
        run.assert_stderr_contains(needle);
    }
    assert_eq!(
        audit_line_count(env),
        lines_before,
        "a refused resume appended to the audit log\n{}",
        run.transcript()
    );
}

/// Starts `release ARGS` in the background (output captured).
fn spawn_release(env: &TestEnv, args: &[&str]) -> Child {
    env.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn release")
}

/// Waits for a background run (at most `limit`), killing it if it overstays.
fn finish(mut child: Child, limit: Duration) -> Run {
    let ended = wait_until(limit, || child.try_wait().expect("try_wait").is_some());
    if !ended {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("wait");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        ended,
        "release did not end within {limit:?}\n{}",
        run.transcript()
    );
    run
}

/// Polls `done` every 20 ms until it holds or `limit` passes; true if it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the audit log shows `step`'s `step.started` and the step wrote its pid to
/// `pid_file` (so its process runs); returns that pid.
fn wait_for_step(env: &TestEnv, step: &str, pid_file: &str) -> u32 {
    let path = env.join(pid_file);
    let seen = wait_until(Duration::from_secs(10), || {
        audit_records(env)
            .iter()
            .any(|r| r["kind"] == "step.started" && r["data"]["step"] == step)
            && std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
    });
    assert!(
        seen,
        "step `{step}` never started (or never wrote {pid_file})"
    );
    env.read(pid_file).trim().parse().expect("a pid")
}

/// True when the process is gone (or a zombie: dead, only waiting to be reaped).
fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn pid(raw: u32) -> rustix::process::Pid {
    rustix::process::Pid::from_raw(i32::try_from(raw).expect("pid")).expect("a pid")
}

/// Kills the process group `leader` leads (a step's process: the engine starts each step in
/// its own group) and waits until the leader is gone.
fn kill_group(leader: u32) {
    let _ = rustix::process::kill_process_group(pid(leader), rustix::process::Signal::KILL);
    assert!(
        wait_until(Duration::from_secs(3), || pid_gone(leader)),
        "the step's process {leader} survived SIGKILL to its group"
    );
}

/// Starts `release run RUNBOOK` in the background, waits until `step` runs (it writes its
/// pid to `pid_file` and hangs while the file `hang` exists), then kills `release` with
/// SIGKILL and the step's process group too, as a crash of the machine's `release` would
/// leave it (minus the orphan). Returns the killed run's id.
fn killed_mid_step(env: &TestEnv, runbook: &str, step: &str, pid_file: &str) -> String {
    touch(env, "hang");
    let mut child = spawn_release(env, &run_args(runbook, &[]));
    let step_pid = wait_for_step(env, step, pid_file);
    child.kill().expect("SIGKILL release");
    child.wait().expect("reap release");
    kill_group(step_pid);
    let run_id = last_run_id(env);
    let records = audit_records(env);
    assert!(steps_started(&records, &run_id).contains(&step.to_owned()));
    assert_eq!(
        step_outcome(&records, &run_id, step),
        None,
        "the killed step has an outcome"
    );
    assert!(
        of_run(&records, &run_id)
            .iter()
            .all(|r| r["kind"] != "run.finished"),
        "the killed run has an end: {records:#?}"
    );
    run_id
}

// ---------------------------------------------------------------------------------------
// Runbooks
// ---------------------------------------------------------------------------------------

/// `a` succeeds (printing `alpha`), `b` fails until `ok` exists, `c` writes `a`'s stdout and
/// the `tag` parameter.
const ABC: &str = r#"params:
  tag: { default: "untagged" }
steps:
  - id: a
    run: [sh, -c, 'echo run >> a.count; echo alpha']
  - id: b
    needs: [a]
    run: [sh, -c, 'echo run >> b.count; test -f ok']
  - id: c
    needs: [b]
    run: [sh, -c, 'echo run >> c.count; printf "%s %s" "$1" "$2" > c.out', sh, "{{ steps.a.stdout }}", "{{ params.tag }}"]
"#;

/// Like [`ABC`] with two failing points: `b` needs `ok1`, `c` needs `ok2`; `d` writes `a`'s
/// stdout.
const ABCD: &str = r#"steps:
  - id: a
    run: [sh, -c, 'echo run >> a.count; echo alpha']
  - id: b
    run: [sh, -c, 'echo run >> b.count; test -f ok1']
  - id: c
    run: [sh, -c, 'echo run >> c.count; test -f ok2']
  - id: d
    run: [sh, -c, 'echo run >> d.count; printf "%s" "$1" > d.out', sh, "{{ steps.a.stdout }}"]
"#;

/// `slow` hangs while `hang` exists; `after` writes the stdout of `a` and of `slow`.
const SLOW: &str = r#"steps:
  - id: a
    run: [sh, -c, 'echo run >> a.count; echo alpha']
  - id: slow
    run: [sh, -c, 'echo $$ > slow.pid; echo run >> slow.count; if [ -f hang ]; then sleep 30; fi; echo done']
  - id: after
    run: [sh, -c, 'echo run >> after.count; printf "%s|%s" "$1" "$2" > after.out', sh, "{{ steps.a.stdout }}", "{{ steps.slow.stdout }}"]
"#;

/// [`SLOW`] where `after` does not read what `slow` printed.
const SLOW_APART: &str = r#"steps:
  - id: a
    run: [sh, -c, 'echo run >> a.count; echo alpha']
  - id: slow
    run: [sh, -c, 'echo $$ > slow.pid; echo run >> slow.count; if [ -f hang ]; then sleep 30; fi; echo done']
  - id: after
    run: [sh, -c, 'echo run >> after.count; printf "%s|" "$1" > after.out', sh, "{{ steps.a.stdout }}"]
"#;

/// Fails at `b` (no `ok`): a run to resume. Returns its id.
fn failed_abc(env: &TestEnv) -> String {
    env.write("rb/abc.yaml", ABC);
    let first = env.release(&run_args(
        "rb/abc.yaml",
        &["--json", "--set", "tag=v42", "--reason", "5xx spike"],
    ));
    first.assert_code(1);
    let id = run_id_of(&first);
    let records = audit_records(env);
    assert_eq!(step_outcome(&records, &id, "b").as_deref(), Some("failed"));
    assert_eq!(run_outcome(&records, &id), "failed");
    assert_eq!((count(env, "a.count"), count(env, "c.count")), (1, 0));
    id
}

// ---------------------------------------------------------------------------------------
// Resuming a failed run
// ---------------------------------------------------------------------------------------

#[test]
fn resume_of_a_failed_run_skips_succeeded_steps_and_reuses_inputs_and_outputs() {
    let env = TestEnv::initialized();
    let original = failed_abc(&env);
    let started_before = audit_records(&env)
        .into_iter()
        .find(|r| r["kind"] == "run.started")
        .expect("run.started");
    touch(&env, "ok");

    let run = resume(&env, &original, &["--no-progress"]);
    run.assert_code(0);

    // The effects: a not run again, b and c ran, c got a's recorded stdout and the param.
    assert_eq!(
        count(&env, "a.count"),
        1,
        "a ran again\n{}",
        run.transcript()
    );
    assert_eq!(count(&env, "b.count"), 2);
    assert_eq!(count(&env, "c.count"), 1);
    assert_eq!(env.read("c.out"), "alpha v42");

    // The records: a new run, started as a resume with the original inputs, then run.resumed.
    let records = audit_records(&env);
    let new = resumed_by(&env, &original);
    assert_ne!(new, original, "the resumed run has a new run id");
    let mine = of_run(&records, &new);
    assert_eq!(
        mine.first().map(|r| &r["kind"]),
        Some(&Value::from("run.started"))
    );
    assert_eq!(
        mine.get(1).map(|r| &r["kind"]),
        Some(&Value::from("run.resumed"))
    );
    assert_eq!(
        mine.last().map(|r| &r["kind"]),
        Some(&Value::from("run.finished"))
    );
    let started = &mine[0]["data"];
    assert_eq!(started["purpose"], "resume");
    assert_eq!(started["dry_run"], false);
    for field in ["runbook", "runbook_sha256", "params", "reason"] {
        assert_eq!(
            started[field], started_before["data"][field],
            "run.started.{field} of the resume differs from the original's"
        );
    }
    assert_eq!(started["runbook"], "rb/abc.yaml");
    assert_eq!(started["params"]["tag"], "v42");
    assert_eq!(started["reason"], "5xx spike");
    for record in &mine {
        assert_eq!(record["component"], C, "{record}");
        assert_eq!(record["stage"], "staging", "{record}");
    }
    let resumed = one(&records, &new, "run.resumed");
    assert_eq!(resumed["data"]["resumes"], original.as_str());
    assert_eq!(skipped(resumed), ["a"]);
    assert_eq!(steps_started(&records, &new), ["b", "c"]);
    assert_eq!(
        step_outcome(&records, &new, "b").as_deref(),
        Some("succeeded")
    );
    assert_eq!(
        step_outcome(&records, &new, "c").as_deref(),
        Some("succeeded")
    );
    assert_eq!(run_outcome(&records, &new), "succeeded");
    assert!(!env.join(LOCK).exists(), "the lock was not released");
    assert_verifies(&env);
}

#[test]
fn resume_of_a_resume_accumulates_the_skipped_steps_of_the_chain() {
    let env = TestEnv::initialized();
    env.write("rb/abcd.yaml", ABCD);
    let first = env.release(&run_args("rb/abcd.yaml", &["--json"]));
    first.assert_code(1);
    let r1 = run_id_of(&first);

    // First fix: b passes, c fails again → exit 1.
    touch(&env, "ok1");
    let second = resume(&env, &r1, &["--json"]);
    second.assert_code(1);
    let r2 = run_id_of(&second);
    assert_eq!(json_report(&second)["outcome"], "failed");
    assert_eq!(resumed_by(&env, &r1), r2);
    let records = audit_records(&env);
    assert_eq!(skipped(one(&records, &r2, "run.resumed")), ["a"]);
    assert_eq!(step_outcome(&records, &r2, "c").as_deref(), Some("failed"));
    assert_eq!(run_outcome(&records, &r2), "failed");
    assert_eq!(
        [
            count(&env, "a.count"),
            count(&env, "b.count"),
            count(&env, "c.count")
        ],
        [1, 2, 1]
    );
    assert!(!env.join("d.out").exists());

    // Second fix, resuming the resume, from a subfolder of the project: a and b are not run
    // again, and a's stdout from the first run still reaches d.
    touch(&env, "ok2");
    std::fs::create_dir_all(env.join("deep/er")).expect("mkdir");
    let third = env.release_in(&env.join("deep/er"), &["--json", "resume", &r2]);
    third.assert_code(0);
    let r3 = run_id_of(&third);
    assert_eq!(resumed_by(&env, &r2), r3);
    assert!(r3 != r1 && r3 != r2);
    let records = audit_records(&env);
    let resumed = one(&records, &r3, "run.resumed");
    assert_eq!(resumed["data"]["resumes"], r2.as_str());
    assert_eq!(skipped(resumed), ["a", "b"]);
    assert_eq!(steps_started(&records, &r3), ["c", "d"]);
    assert_eq!(run_outcome(&records, &r3), "succeeded");
    assert_eq!(
        [
            count(&env, "a.count"),
            count(&env, "b.count"),
            count(&env, "c.count"),
            count(&env, "d.count")
        ],
        [1, 2, 2, 1]
    );
    assert_eq!(env.read("d.out"), "alpha");

    // The report says where each skipped step succeeded.
    let report = json_report(&third);
    assert_eq!(report["resumes"], r2.as_str());
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(json_step(&report, "a")["outcome"], "succeeded");
    assert_eq!(json_step(&report, "a")["from_run"], r1.as_str());
    assert_eq!(json_step(&report, "b")["outcome"], "succeeded");
    assert_eq!(json_step(&report, "b")["from_run"], r2.as_str());
    for ran in ["c", "d"] {
        assert_eq!(json_step(&report, ran)["outcome"], "succeeded");
        assert!(json_step(&report, ran).get("from_run").is_none());
    }
    assert_verifies(&env);
}

#[test]
fn resume_json_report_names_the_new_run_the_resumed_one_and_each_step() {
    let env = TestEnv::initialized();
    let original = failed_abc(&env);
    touch(&env, "ok");
    // From outside the project, with -C, and with --max-parallel.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let root = env.path().display().to_string();
    let run = env.release_in(
        elsewhere.path(),
        &[
            "-C",
            &root,
            "--json",
            "resume",
            &original,
            "--max-parallel",
            "1",
        ],
    );
    run.assert_code(0);
    let report = json_report(&run);
    let new = resumed_by(&env, &original);
    assert_eq!(report["run"], new.as_str());
    assert_eq!(report["resumes"], original.as_str());
    assert_eq!(report["outcome"], "succeeded");
    let a = json_step(&report, "a");
    assert_eq!(a["outcome"], "succeeded");
    assert_eq!(a["from_run"], original.as_str());
    for ran in ["b", "c"] {
        let step = json_step(&report, ran);
        assert_eq!(step["outcome"], "succeeded", "{step}");
        assert!(step.get("from_run").is_none(), "{step}");
    }
    assert_eq!(report["steps"].as_array().map(Vec::len), Some(3));
    assert_eq!(env.read("c.out"), "alpha v42");
    assert_eq!(count(&env, "a.count"), 1);
}

// ---------------------------------------------------------------------------------------
// Refusals: exit 3 (or 2) and nothing appended
// ---------------------------------------------------------------------------------------

#[test]
fn resume_refuses_a_changed_runbook() {
    let env = TestEnv::initialized();
    let original = failed_abc(&env);
    touch(&env, "ok");
    env.write("rb/abc.yaml", &format!("{ABC}# one more comment\n"));
    let before = audit_line_count(&env);
    let run = resume(&env, &original, &[]);
    assert_refused(&env, &run, 3, before, &["changed"]);
    assert_eq!([count(&env, "b.count"), count(&env, "c.count")], [1, 0]);
    assert!(!env.join(LOCK).exists());

    // Back to the recorded bytes, it resumes.
    env.write("rb/abc.yaml", ABC);
    resume(&env, &original, &[]).assert_code(0);
    assert_eq!(env.read("c.out"), "alpha v42");
}

#[test]
fn resume_refuses_a_succeeded_run() {
    let env = TestEnv::initialized();
    env.write("rb/abc.yaml", ABC);
    touch(&env, "ok");
    let first = env.release(&run_args("rb/abc.yaml", &["--json"]));
    first.assert_code(0);
    let id = run_id_of(&first);
    let before = audit_line_count(&env);
    let run = resume(&env, &id, &[]);
    assert_refused(&env, &run, 3, before, &["nothing to resume"]);
    assert_eq!(count(&env, "a.count"), 1);
    assert_eq!(count(&env, "c.count"), 1);
}

#[test]
fn resume_refuses_a_dry_run() {
    let env = TestEnv::initialized();
    env.write("rb/abc.yaml", ABC);
    let dry = env.release(&run_args("rb/abc.yaml", &["--json", "--dry-run"]));
    let id = run_id_of(&dry);
    assert_eq!(
        one(&audit_records(&env), &id, "run.started")["data"]["dry_run"],
        true
    );
    let before = audit_line_count(&env);
    let run = resume(&env, &id, &[]);
    assert_refused(&env, &run, 3, before, &["dry-run"]);
    assert_eq!(count(&env, "a.count"), 0, "a dry-run's resume ran a step");
}

#[test]
fn resume_refuses_a_promote_run() {
    let env = TestEnv::new();
    env.write("release.yaml", "version: 1\ncomponents:\n  api: {}\n")
        .write(
            "runbooks/staging/promote.yaml",
            "steps:\n  - id: deploy\n    run: [sh, -c, 'echo run >> deploy.count; test -f ok']\n",
        );
    let promote = env.release(&["promote", "api", "--to", "staging", "--reason", "ship"]);
    promote.assert_code(1);
    let id = last_run_id(&env);
    assert_eq!(
        one(&audit_records(&env), &id, "run.started")["data"]["purpose"],
        "promote"
    );
    touch(&env, "ok");
    let before = audit_line_count(&env);
    let run = resume(&env, &id, &[]);
    assert_refused(&env, &run, 3, before, &["release promote"]);
    assert_eq!(count(&env, "deploy.count"), 1);
}

#[test]
fn resume_of_an_unknown_run_id_is_invalid() {
    let env = TestEnv::initialized();
    failed_abc(&env);
    let before = audit_line_count(&env);
    let run = resume(&env, "r20200101T000000Z-abcdef", &[]);
    assert_refused(&env, &run, 2, before, &["r20200101T000000Z-abcdef"]);

    // An empty project (no log at all) too.
    let empty = TestEnv::initialized();
    let run = resume(&empty, "r-nowhere", &[]);
    assert_refused(&empty, &run, 2, 0, &["r-nowhere"]);
}

#[test]
fn resume_with_an_unknown_or_contradictory_step_is_invalid() {
    let env = TestEnv::initialized();
    let original = failed_abc(&env);
    touch(&env, "ok");
    let before = audit_line_count(&env);
    let run = resume(&env, &original, &["--rerun", "nosuchstep"]);
    assert_refused(&env, &run, 2, before, &["nosuchstep"]);
    let run = resume(&env, &original, &["--mark-done", "otherstep"]);
    assert_refused(&env, &run, 2, before, &["otherstep"]);
    let run = resume(&env, &original, &["--rerun", "b", "--mark-done", "b"]);
    assert_refused(&env, &run, 2, before, &["b"]);
    // No `--set` on resume: the recorded params are the params.
    let run = resume(&env, &original, &["--set", "tag=other"]);
    assert_refused(&env, &run, 2, before, &[]);
    assert_eq!([count(&env, "a.count"), count(&env, "b.count")], [1, 1]);
    assert!(!env.join("c.out").exists());
}

// ---------------------------------------------------------------------------------------
// --rerun and --mark-done
// ---------------------------------------------------------------------------------------

#[test]
fn resume_rerun_runs_a_succeeded_step_again() {
    let env = TestEnv::initialized();
    let original = failed_abc(&env);
    touch(&env, "ok");
    resume(&env, &original, &["--rerun", "a"]).assert_code(0);
    assert_eq!(count(&env, "a.count"), 2, "--rerun a did not run a");
    assert_eq!(env.read("c.out"), "alpha v42");
    let records = audit_records(&env);
    let new = resumed_by(&env, &original);
    assert_eq!(steps_started(&records, &new), ["a", "b", "c"]);
    assert!(skipped(one(&records, &new, "run.resumed")).is_empty());
}

// ---------------------------------------------------------------------------------------
// Unknown outcome: `release` killed mid-step
// ---------------------------------------------------------------------------------------

/// Asserts nothing but a lock takeover (`lock.forced`, for the dead run's lock) was
/// appended since the log had `before` lines.
#[track_caller]
fn assert_only_lock_takeover_appended(env: &TestEnv, before: usize, run: &Run) {
    let records = audit_records(env);
    let appended: Vec<&Value> = records.iter().skip(before).collect();
    assert!(
        appended.iter().all(|r| r["kind"] == "lock.forced"),
        "a refused resume appended {appended:#?}\n{}",
        run.transcript()
    );
}

#[test]
fn resume_of_a_killed_run_refuses_the_unknown_step_then_reruns_it() {
    let env = TestEnv::initialized();
    env.write("rb/slow.yaml", SLOW);
    let original = killed_mid_step(&env, "rb/slow.yaml", "slow", "slow.pid");
    remove(&env, "hang");

    let before = audit_line_count(&env);
    let refused = resume(&env, &original, &[]);
    refused
        .assert_code(3)
        .assert_stderr_contains("slow")
        .assert_stderr_contains("--rerun")
        .assert_stderr_contains("--mark-done");
    assert_only_lock_takeover_appended(&env, before, &refused);
    assert_eq!(
        count(&env, "slow.count"),
        1,
        "the refused resume ran `slow`"
    );
    assert!(!env.join("after.out").exists());

    let run = resume(&env, &original, &["--rerun", "slow"]);
    run.assert_code(0);
    assert_eq!(count(&env, "a.count"), 1, "a ran again");
    assert_eq!(count(&env, "slow.count"), 2, "--rerun slow did not run it");
    assert_eq!(env.read("after.out"), "alpha|done");
    let records = audit_records(&env);
    let new = resumed_by(&env, &original);
    assert_eq!(skipped(one(&records, &new, "run.resumed")), ["a"]);
    assert_eq!(steps_started(&records, &new), ["slow", "after"]);
    assert_eq!(run_outcome(&records, &new), "succeeded");
    assert!(!env.join(LOCK).exists(), "the lock was not released");
    assert_verifies(&env);
}

#[test]
fn resume_of_a_killed_run_with_mark_done_runs_what_follows_only() {
    let env = TestEnv::initialized();
    env.write("rb/slow.yaml", SLOW_APART);
    let original = killed_mid_step(&env, "rb/slow.yaml", "slow", "slow.pid");
    remove(&env, "hang");

    let run = resume(&env, &original, &["--mark-done", "slow"]);
    run.assert_code(0);
    assert_eq!(count(&env, "slow.count"), 1, "--mark-done slow ran it");
    assert_eq!(count(&env, "a.count"), 1, "a ran again");
    assert_eq!(count(&env, "after.count"), 1);
    assert_eq!(env.read("after.out"), "alpha|");
    let records = audit_records(&env);
    let new = resumed_by(&env, &original);
    assert_eq!(steps_started(&records, &new), ["after"]);
    let resumed = one(&records, &new, "run.resumed");
    assert!(skipped(resumed).contains(&"a".to_owned()));
    assert_eq!(resumed["data"]["marked_done"], serde_json::json!(["slow"]));
    assert_eq!(run_outcome(&records, &new), "succeeded");
    assert!(!env.join(LOCK).exists(), "the lock was not released");
    assert_verifies(&env);
}

#[test]
fn resume_refuses_to_mark_done_a_step_whose_output_a_later_step_reads() {
    let env = TestEnv::initialized();
    env.write("rb/slow.yaml", SLOW);
    let original = killed_mid_step(&env, "rb/slow.yaml", "slow", "slow.pid");
    remove(&env, "hang");
    let before = audit_line_count(&env);

    let run = resume(&env, &original, &["--mark-done", "slow"]);
    assert_refused(
        &env,
        &run,
        3,
        before,
        &[
            "`after` reads `steps.slow.stdout`",
            "marked done",
            "--rerun slow",
        ],
    );
    assert_eq!(count(&env, "after.count"), 0, "after ran");
    resume(&env, &original, &["--rerun", "slow"]).assert_code(0);
    assert_eq!(env.read("after.out"), "alpha|done");
}

// ---------------------------------------------------------------------------------------
// Interrupted run
// ---------------------------------------------------------------------------------------

#[test]
fn resume_of_an_interrupted_run_runs_the_interrupted_step_again() {
    let env = TestEnv::initialized();
    env.write("rb/slow.yaml", SLOW);
    touch(&env, "hang");
    let child = spawn_release(&env, &run_args("rb/slow.yaml", &[]));
    let sleeper = wait_for_step(&env, "slow", "slow.pid");
    rustix::process::kill_process(pid(child.id()), rustix::process::Signal::TERM)
        .expect("SIGTERM to release");
    finish(child, Duration::from_secs(10)).assert_code(130);
    if !wait_until(Duration::from_secs(3), || pid_gone(sleeper)) {
        kill_group(sleeper);
        panic!("the interrupted step's process {sleeper} survived the interrupt");
    }
    let original = last_run_id(&env);
    let records = audit_records(&env);
    assert_eq!(run_outcome(&records, &original), "interrupted");
    assert!(!env.join("after.out").exists());

    remove(&env, "hang");
    let run = resume(&env, &original, &[]);
    run.assert_code(0);
    assert_eq!(count(&env, "a.count"), 1);
    assert_eq!(
        count(&env, "slow.count"),
        2,
        "the interrupted step did not run again"
    );
    assert_eq!(env.read("after.out"), "alpha|done");
    let records = audit_records(&env);
    let new = resumed_by(&env, &original);
    assert_eq!(skipped(one(&records, &new, "run.resumed")), ["a"]);
    assert_eq!(steps_started(&records, &new), ["slow", "after"]);
    assert_eq!(run_outcome(&records, &new), "succeeded");
    assert_verifies(&env);
}

// ---------------------------------------------------------------------------------------
// incident_issue across the chain
// ---------------------------------------------------------------------------------------

const INCIDENT: &str = r#"steps:
  - id: incident
    incident_issue:
      title: "Rollback: {{ component }}"
      labels: ["component:{{ component }}", rollback, incident]
      body: "Reason: {{ run.reason }}\nRun: {{ run.id }}"
  - id: check1
    run: [sh, -c, 'echo run >> check1.count; test -f ok1']
  - id: check2
    run: [sh, -c, 'echo run >> check2.count; test -f ok2']
"#;

/// The issue files of the local tracker.
fn incident_files(env: &TestEnv) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(env.join(".release/incidents")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "md")
        })
        .collect();
    names.sort();
    names
}

#[test]
fn resume_rerunning_the_incident_step_reuses_the_issue_of_the_first_run() {
    let env = TestEnv::initialized();
    env.write("rb/incident.yaml", INCIDENT);
    let first = env.release(&run_args(
        "rb/incident.yaml",
        &["--json", "--reason", "5xx spike"],
    ));
    first.assert_code(1);
    let r1 = run_id_of(&first);
    let files = incident_files(&env);
    assert_eq!(files.len(), 1, "{}", first.transcript());
    let marker = format!("<!-- release:run={r1} step=incident -->");
    let path = format!(".release/incidents/{}", files[0]);
    assert!(env.read(&path).contains(&marker), "{}", env.read(&path));

    // Resume, running the incident step again: check1 passes, check2 fails.
    touch(&env, "ok1");
    let second = resume(&env, &r1, &["--json", "--rerun", "incident"]);
    second.assert_code(1);
    let r2 = run_id_of(&second);
    // Resume of the resume, running the incident step again once more: all pass.
    touch(&env, "ok2");
    let third = resume(&env, &r2, &["--json", "--rerun", "incident"]);
    third.assert_code(0);
    let r3 = run_id_of(&third);

    let records = audit_records(&env);
    assert_eq!(
        steps_started(&records, &r2),
        ["incident", "check1", "check2"],
        "the incident step was not run again"
    );
    assert_eq!(
        steps_started(&records, &r3),
        ["incident", "check2"],
        "the incident step was not run again (or check1 was)"
    );
    for run in [&r2, &r3] {
        assert_eq!(
            step_outcome(&records, run, "incident").as_deref(),
            Some("succeeded")
        );
    }
    assert_eq!(
        incident_files(&env),
        files,
        "a resumed run opened a second issue\n{}{}",
        second.transcript(),
        third.transcript()
    );
    let text = env.read(&path);
    assert!(text.contains(&marker), "{text}");
    assert!(text.contains(&format!("run: \"{r1}\"")), "{text}");
    for resumed in [&r2, &r3] {
        assert!(
            !text.contains(&format!("release:run={resumed}")),
            "the marker holds a resumed run's id, not the first run's\n{text}"
        );
    }
    assert_eq!(
        [count(&env, "check1.count"), count(&env, "check2.count")],
        [2, 2]
    );
    assert_verifies(&env);
}

// ---------------------------------------------------------------------------------------
// Inputs a resume cannot give back as they were, and the order of the refusals
// ---------------------------------------------------------------------------------------

/// `migrate` does work, `deploy` fails until `ok` exists, `undo` (when: failure) undoes
/// `migrate`'s work, `report` always runs.
const UNDO: &str = r"steps:
  - id: migrate
    run: [sh, -c, 'echo run >> migrate.count; touch migrated']
  - id: deploy
    run: [sh, -c, 'echo run >> deploy.count; test -f ok && test -f migrated']
  - id: undo
    when: failure
    run: [sh, -c, 'echo run >> undo.count; rm -f migrated']
  - id: report
    when: always
    run: [sh, -c, 'echo run >> report.count']
";

#[test]
fn resume_after_a_failure_handler_ran_asks_about_the_work_it_may_have_undone() {
    let env = TestEnv::initialized();
    env.write("rb/undo.yaml", UNDO);
    let first = env.release(&run_args("rb/undo.yaml", &["--json"]));
    first.assert_code(1);
    let original = run_id_of(&first);
    assert!(!env.join("migrated").exists(), "undo did not run");
    touch(&env, "ok");
    let before = audit_line_count(&env);

    let run = resume(&env, &original, &[]);
    assert_refused(
        &env,
        &run,
        3,
        before,
        &[
            "`undo` (when: failure) ran in run",
            "`migrate`",
            &format!("release resume {original} --mark-done migrate"),
        ],
    );
    // The operator knows `undo` removed the migration: run it again.
    resume(&env, &original, &["--rerun", "migrate"]).assert_code(0);
    assert_eq!(count(&env, "migrate.count"), 2);
    assert_eq!(count(&env, "deploy.count"), 2);
    // The handler is not carried over: nothing failed this time, so it did not run; the
    // `always` step runs in every run.
    assert_eq!(count(&env, "undo.count"), 1);
    assert_eq!(count(&env, "report.count"), 2);
    assert_verifies(&env);
}

#[test]
fn resume_refuses_a_param_recorded_redacted() {
    let env = TestEnv::initialized();
    env.write(
        "rb/abc.yaml",
        &ABC.replace("default: \"untagged\"", "required: true"),
    );
    let secret = "https://hooks.example.com/services/T0/B0/SECRETXYZ";
    let vars = [("SLACK_WEBHOOK_URL", secret)];
    let tag = format!("tag={secret}/extra");
    let first = env.release_with_env(&run_args("rb/abc.yaml", &["--json", "--set", &tag]), &vars);
    first.assert_code(1);
    let original = run_id_of(&first);
    assert!(
        !env.read(AUDIT).contains("SECRETXYZ"),
        "the secret reached the log"
    );
    touch(&env, "ok");
    let before = audit_line_count(&env);
    let run = env.release_with_env(&["resume", &original], &vars);
    assert_refused(&env, &run, 3, before, &["parameter `tag`", "redacted"]);
    assert!(!run.transcript().contains("SECRETXYZ"));
    assert_eq!(count(&env, "c.count"), 0);
}

#[test]
fn a_changed_runbook_is_refused_before_anything_else_and_a_missing_one_too() {
    let env = TestEnv::initialized();
    env.write("rb/slow.yaml", SLOW);
    let original = killed_mid_step(&env, "rb/slow.yaml", "slow", "slow.pid");
    remove(&env, "hang");
    // Renamed step and all: the refusal is about the file, not about `slow`.
    env.write("rb/slow.yaml", &SLOW.replace("id: slow", "id: slower"));
    let before = audit_line_count(&env);
    let run = resume(&env, &original, &[]);
    assert_refused(&env, &run, 3, before, &["rb/slow.yaml changed since run"]);
    assert!(!run.stderr.contains("--rerun"), "{}", run.transcript());

    std::fs::remove_file(env.join("rb/slow.yaml")).expect("remove the runbook");
    let run = resume(&env, &original, &["--rerun", "slow"]);
    assert_refused(
        &env,
        &run,
        3,
        before,
        &[
            "cannot read runbook rb/slow.yaml",
            "put it back at rb/slow.yaml",
        ],
    );
    assert_eq!(count(&env, "after.count"), 0);
}

#[test]
fn a_killed_run_whose_lock_another_run_holds_is_not_resumed_meanwhile() {
    let env = TestEnv::initialized();
    env.write("rb/slow.yaml", SLOW);
    let original = killed_mid_step(&env, "rb/slow.yaml", "slow", "slow.pid");
    // Another run of the component at the stage takes the stale lock over and runs on.
    std::fs::remove_file(env.join("slow.pid")).expect("remove slow.pid");
    let mut other = spawn_release(&env, &run_args("rb/slow.yaml", &[]));
    let other_step = wait_for_step_of_run_after(&env, &original, "slow", "slow.pid");
    let before = audit_line_count(&env);
    let run = resume(&env, &original, &["--rerun", "slow"]);
    assert_refused(
        &env,
        &run,
        3,
        before,
        &[
            "another run of orchestration at staging is going on",
            "once run",
        ],
    );
    assert!(
        !run.stderr.contains("may still be going on"),
        "{}",
        run.transcript()
    );
    other.kill().expect("SIGKILL the other run");
    other.wait().expect("reap it");
    kill_group(other_step);
}

/// As [`wait_for_step`], for the run started after `earlier` (whose records are there
/// already).
fn wait_for_step_of_run_after(env: &TestEnv, earlier: &str, step: &str, pid_file: &str) -> u32 {
    let path = env.join(pid_file);
    let seen = wait_until(Duration::from_secs(10), || {
        audit_records(env).iter().any(|r| {
            r["kind"] == "step.started" && r["data"]["step"] == step && r["run"] != earlier
        }) && std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
    });
    assert!(seen, "the other run's `{step}` never started");
    env.read(pid_file).trim().parse().expect("a pid")
}

#[test]
fn a_failed_run_says_how_to_resume_it_and_a_dry_run_does_not() {
    let env = TestEnv::initialized();
    env.write("rb/abc.yaml", ABC);
    let failed = env.release(&run_args("rb/abc.yaml", &[]));
    failed.assert_code(1);
    let id = last_run_id(&env);
    failed.assert_stdout_contains(&format!(
        "release resume {id} (it keeps the runbook and the --set params: a fix to either needs a new run)"
    ));
    let dry = env.release(&run_args("rb/abc.yaml", &["--dry-run"]));
    assert!(
        !dry.stdout.contains("release resume"),
        "{}",
        dry.transcript()
    );
    touch(&env, "ok");
    let resumed = resume(&env, &id, &[]);
    resumed.assert_code(0);
    assert!(
        !resumed.stdout.contains("release resume"),
        "{}",
        resumed.transcript()
    );
}

/// Runs git in the project, as a tester, whatever the machine's git config says.
fn git(env: &TestEnv, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args(args)
        .current_dir(env.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_promotion_since_the_run_does_not_change_what_the_resume_gets() {
    let env = TestEnv::new();
    env.write("release.yaml", "version: 1\ncomponents:\n  api: {}\n")
        .write(".gitignore", ".release/\n.home/\n*.count\n*.out\nok\n")
        .write(
            "rb/p.yaml",
            "steps:\n  - id: a\n    run: [sh, -c, 'echo run >> a.count']\n  - id: b\n    run: [sh, -c, 'echo \"$1\" > b.out; test -f ok', sh, \"{{ promotion.commit }}\"]\n",
        );
    git(&env, &["init", "-q", "-b", "main"]);
    git(&env, &["add", "-A"]);
    git(&env, &["commit", "-q", "-m", "one"]);
    let first = git(&env, &["rev-parse", "HEAD"]);
    env.release(&["promote", "api", "--to", "staging", "--reason", "r"])
        .assert_code(0);
    let failed = env.release(&[
        "--json",
        "run",
        "rb/p.yaml",
        "--component",
        "api",
        "--stage",
        "staging",
    ]);
    failed.assert_code(1);
    assert_eq!(env.read("b.out").trim(), first);
    let id = run_id_of(&failed);

    // A new commit is promoted to production meanwhile: `promotion.commit` is now that one.
    env.write("two.txt", "2\n");
    git(&env, &["add", "-A"]);
    git(&env, &["commit", "-q", "-m", "two"]);
    env.release(&["promote", "api", "--to", "production", "--reason", "r"])
        .assert_code(0);

    touch(&env, "ok");
    resume(&env, &id, &[]).assert_code(0);
    assert_eq!(
        env.read("b.out").trim(),
        first,
        "the resume saw the later promotion"
    );
    assert_eq!(count(&env, "a.count"), 1);
}

#[test]
fn a_step_that_runs_on_failure_or_always_cannot_be_marked_done() {
    let env = TestEnv::initialized();
    env.write("rb/undo.yaml", UNDO);
    let first = env.release(&run_args("rb/undo.yaml", &["--json"]));
    first.assert_code(1);
    let id = run_id_of(&first);
    for step in ["undo", "report"] {
        let before = audit_line_count(&env);
        let run = resume(&env, &id, &["--mark-done", step]);
        assert_refused(
            &env,
            &run,
            2,
            before,
            &[&format!("--mark-done {step}"), "cannot be marked done"],
        );
    }
}

#[test]
fn the_command_a_refusal_suggests_keeps_the_flags_given_and_runs() {
    let env = TestEnv::initialized();
    env.write("rb/undo.yaml", UNDO);
    let first = env.release(&run_args("rb/undo.yaml", &["--json"]));
    first.assert_code(1);
    let id = run_id_of(&first);
    touch(&env, "ok");
    touch(&env, "migrated");
    // `--rerun report` changes nothing (it always runs) but must survive into the hint.
    let refused = resume(&env, &id, &["--rerun", "report"]);
    refused.assert_code(3);
    let suggested = format!("release resume {id} --rerun report --mark-done migrate");
    refused.assert_stderr_contains(&suggested);
    let argv: Vec<&str> = suggested.split(' ').skip(1).collect();
    env.release(&argv).assert_code(0);
    assert_eq!(count(&env, "migrate.count"), 1, "the marked step ran");
    assert_eq!(count(&env, "deploy.count"), 2);
}
