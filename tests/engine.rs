//! The runbook engine through its contract (SPEC §4–§8): the scheduler's rules, templated
//! values as single arguments, confirmations, the honest dry-run, the hash-chained audit
//! log, locks and interrupts, and `rollback`'s refusals.
//!
//! Every runbook here is made of `run` steps (the other actions come later). Steps prove
//! what they did by writing files in the project folder; the audit log is read directly
//! as JSON lines.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Run, TestEnv};

const C: &str = "orchestration";
const OTHER: &str = "player_experience";
const SECRET: &str = "https://hooks.example/very-secret-token-123";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `release` as the harness builds it (cleared environment, pinned HOME…), in the folder.
fn command(env: &TestEnv) -> Command {
    env.command()
}

/// Runs `release ARGS` with extra environment variables.
fn release_with_env(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Run {
    env.release_with_env(args, vars)
}

/// Starts `release ARGS` in the background (output captured).
fn spawn_release(env: &TestEnv, args: &[&str]) -> Child {
    command(env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn release")
}

/// Waits for a background run (at most `limit`), killing it if it overstays.
fn finish(mut child: Child, limit: Duration) -> Run {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!(
                "release did not end within {limit:?}\n--- stdout\n{}--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("wait");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
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

/// `release run rb/NAME.yaml --component COMPONENT --stage staging EXTRA…`
fn run_args<'a>(runbook: &'a str, component: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        runbook,
        "--component",
        component,
        "--stage",
        "staging",
    ];
    args.extend_from_slice(extra);
    args
}

const AUDIT: &str = ".release/audit.jsonl";

/// The audit log's records (complete lines that parse; none when there is no log).
fn records(env: &TestEnv) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(env.join(AUDIT)) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str(l.trim_end()).ok())
        .collect()
}

fn kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// The `step.finished` record of a step (the last one, if several).
fn finished<'a>(records: &'a [Value], step: &str) -> &'a Value {
    records
        .iter()
        .rev()
        .find(|r| r["kind"] == "step.finished" && r["data"]["step"] == step)
        .unwrap_or_else(|| panic!("no step.finished for `{step}` in {records:#?}"))
}

fn started<'a>(records: &'a [Value], step: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|r| r["kind"] == "step.started" && r["data"]["step"] == step)
}

fn outcome(records: &[Value], step: &str) -> String {
    finished(records, step)["data"]["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn run_outcome(records: &[Value]) -> String {
    kind(records, "run.finished")
        .last()
        .map(|r| r["data"]["outcome"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// The summary line of a step in the human report (`  id  outcome  duration  detail`).
fn summary_line<'a>(run: &'a Run, step: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(step))
        .unwrap_or_else(|| panic!("no summary line for `{step}`\n{}", run.transcript()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

fn read_pid(env: &TestEnv, file: &str) -> u32 {
    let path = env.join(file);
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&path)
            .is_ok_and(|t| t.ends_with('\n'))),
        "{file} was never written"
    );
    env.read(file).trim().parse().expect("a pid")
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Every file of the project folder but `.release/` and `.git/`, with its hash.
fn tree_hashes(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".release" || rel == ".git" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, sha256_hex(&std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn git(env: &TestEnv, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(env.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args(args)
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Refs, HEAD, index state and work tree state of the repository.
fn git_state(env: &TestEnv) -> String {
    [
        git(env, &["for-each-ref"]),
        git(env, &["rev-parse", "HEAD"]),
        git(env, &["log", "--all", "--format=%H %s"]),
        git(env, &["status", "--porcelain", "--untracked-files=all"]),
        git(env, &["stash", "list"]),
    ]
    .join("\n--\n")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

fn lock_json(run: &str, pid: u32, host: &str) -> String {
    serde_json::json!({
        "run": run,
        "pid": pid,
        "host": host,
        "actor": "someone@example.com",
        "started_at": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

const LOCK: &str = ".release/locks/orchestration.staging.lock";

/// True when `text` names `line N` (not `line N0…`).
fn names_line(text: &str, n: usize) -> bool {
    let needle = format!("line {n}");
    text.match_indices(&needle).any(|(i, _)| {
        !text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// A runbook of `n` sequential steps, each sleeping a little.
fn many_steps(n: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("steps:\n");
    for i in 0..n {
        let _ = write!(text, "  - id: s{i}\n    run: [sleep, \"0.01\"]\n");
    }
    text
}

/// What the terminal tests do once a prompt has appeared.
enum Key<'a> {
    /// Types this.
    Type(&'a str),
    /// Sends SIGTERM to the `release` process.
    Term,
}

/// Runs `release ARGS` with stdin and stderr on a pseudo-terminal (util-linux `script`),
/// typing each answer once its prompt (a substring) has appeared. Returns the exit code
/// and everything the terminal showed.
fn release_in_pty(env: &TestEnv, args: &[&str], answers: &[(&str, &str)]) -> (i32, String) {
    let keys: Vec<(&str, Key<'_>)> = answers.iter().map(|(p, a)| (*p, Key::Type(a))).collect();
    release_in_terminal(env, args, &keys, "")
}

/// The `release` process started in `env` (its working folder), if one is running.
fn release_pid(env: &TestEnv) -> Option<rustix::process::Pid> {
    let here = env.path().canonicalize().ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let dir = entry.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let cwd = std::fs::read_link(dir.join("cwd")).ok()?;
            let pid = entry.file_name().to_str()?.parse().ok()?;
            (comm.trim() == "release" && cwd == here)
                .then_some(pid)
                .and_then(rustix::process::Pid::from_raw)
        })
}

/// [`release_in_pty`] with any key, and `then` (shell text) run in the same terminal after
/// `release` ends; the exit code is then the last command's.
fn release_in_terminal(
    env: &TestEnv,
    args: &[&str],
    answers: &[(&str, Key<'_>)],
    then: &str,
) -> (i32, String) {
    let bin = assert_cmd::cargo::cargo_bin("release");
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut line = quote(&bin.display().to_string());
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line.push_str(then);
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(env.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.join(".home"))
        .env("USER", "tester")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("NO_COLOR", "1")
        .env("TZ", "UTC")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) is needed for the terminal tests");
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown =
        |seen: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut from = 0;
    for (prompt, answer) in answers {
        let mut at = None;
        let appeared = wait_until(Duration::from_secs(15), || {
            let text = shown(&seen);
            at = text
                .get(from..)
                .and_then(|t| t.find(prompt))
                .map(|i| from + i + prompt.len());
            at.is_some()
        });
        if !appeared {
            let _ = child.kill();
            panic!("prompt {prompt:?} never appeared:\n{}", shown(&seen));
        }
        from = at.unwrap_or(from);
        // Let the prompt finish switching the terminal's mode before typing.
        std::thread::sleep(Duration::from_millis(150));
        match answer {
            Key::Type(text) => {
                stdin.write_all(text.as_bytes()).expect("type");
                stdin.flush().expect("flush");
            }
            Key::Term => {
                let pid = release_pid(env).expect("release is running");
                rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                    .expect("SIGTERM to release");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("release in a terminal did not end:\n{}", shown(&seen));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let _ = reader.join();
    (status.code().unwrap_or(-1), shown(&seen))
}

// ---------------------------------------------------------------------------------------
// Scheduler
// ---------------------------------------------------------------------------------------

#[test]
fn scheduler_starts_a_step_only_after_every_step_it_needs_finished() {
    let env = TestEnv::initialized();
    env.write(
        "rb/order.yaml",
        "steps:
  - id: a
    run: [sleep, \"0.05\"]
  - id: b          # waits for a (the step above)
    run: [sleep, \"0.05\"]
  - id: c
    needs: [a]
    run: [sleep, \"0.1\"]
  - id: d
    needs: [b, c]
    run: [\"true\"]
  - id: e
    needs: []
    run: [\"true\"]
",
    );
    env.release(&run_args("rb/order.yaml", C, &[]))
        .assert_code(0);
    let records = records(&env);
    let seq = |r: &Value| r["seq"].as_u64().unwrap();
    let ts = |r: &Value| r["ts"].as_str().unwrap().to_owned();
    for (step, needs) in [("b", &["a"][..]), ("c", &["a"]), ("d", &["b", "c"])] {
        let start = started(&records, step).expect("started");
        for need in needs {
            let done = finished(&records, need);
            assert!(
                seq(start) > seq(done) && ts(start) >= ts(done),
                "`{step}` started (seq {}, {}) before `{need}` finished (seq {}, {})",
                seq(start),
                ts(start),
                seq(done),
                ts(done)
            );
        }
    }
    for step in ["a", "b", "c", "d", "e"] {
        assert!(seq(started(&records, step).unwrap()) < seq(finished(&records, step)));
        assert_eq!(outcome(&records, step), "succeeded");
    }
    assert_eq!(records.first().unwrap()["kind"], "run.started");
    assert_eq!(records.last().unwrap()["kind"], "run.finished");
    assert_eq!(run_outcome(&records), "succeeded");
}

const PARALLEL: &str = "steps:
  - id: a
    needs: []
    run: [sh, -c, 'date +%s%N > start_a; sleep 0.3; date +%s%N > end_a']
  - id: b
    needs: []
    run: [sh, -c, 'date +%s%N > start_b; sleep 0.3; date +%s%N > end_b']
  - id: c
    needs: []
    run: [sh, -c, 'date +%s%N > start_c; sleep 0.3; date +%s%N > end_c']
";

/// (start, end) in nanoseconds of each step, as the steps themselves wrote them.
fn intervals(env: &TestEnv) -> Vec<(u128, u128)> {
    let read = |f: String| env.read(&f).trim().parse::<u128>().expect("nanoseconds");
    ["a", "b", "c"]
        .iter()
        .map(|id| (read(format!("start_{id}")), read(format!("end_{id}"))))
        .collect()
}

#[test]
fn scheduler_runs_independent_steps_in_parallel() {
    let env = TestEnv::initialized();
    env.write("rb/parallel.yaml", PARALLEL);
    env.release(&run_args("rb/parallel.yaml", C, &["--max-parallel", "3"]))
        .assert_code(0);
    let spans = intervals(&env);
    let last_start = spans.iter().map(|s| s.0).max().unwrap();
    let first_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        last_start < first_end,
        "the three independent steps did not overlap: {spans:?}"
    );
}

#[test]
fn scheduler_max_parallel_one_serialises_independent_steps() {
    let env = TestEnv::initialized();
    env.write("rb/parallel.yaml", PARALLEL);
    env.release(&run_args("rb/parallel.yaml", C, &["--max-parallel", "1"]))
        .assert_code(0);
    let mut spans = intervals(&env);
    spans.sort_unstable();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "steps overlapped with --max-parallel 1: {spans:?}"
        );
    }
    env.release(&run_args("rb/parallel.yaml", C, &["--max-parallel", "0"]))
        .assert_code(2);
}

const WHEN: &str = "params:
  fail: { default: \"\" }
steps:
  - id: first
    run: [sh, -c, 'touch first; [ -z \"$1\" ]', sh, \"{{ params.fail }}\"]
  - id: dependent            # when: success (the default)
    run: [touch, dependent]
  - id: on-failure
    when: failure
    run: [touch, on-failure]
  - id: finally
    when: always
    run: [touch, finally]
";

#[test]
fn scheduler_when_success_failure_always_after_a_success() {
    let env = TestEnv::initialized();
    env.write("rb/when.yaml", WHEN);
    let run = env.release(&run_args("rb/when.yaml", C, &[]));
    run.assert_code(0);
    let records = records(&env);
    assert_eq!(outcome(&records, "first"), "succeeded");
    assert_eq!(outcome(&records, "dependent"), "succeeded");
    assert_eq!(outcome(&records, "on-failure"), "skipped");
    assert_eq!(outcome(&records, "finally"), "succeeded");
    assert!(started(&records, "on-failure").is_none());
    assert!(env.join("dependent").exists() && env.join("finally").exists());
    assert!(!env.join("on-failure").exists());
    assert!(summary_line(&run, "on-failure").contains("skipped"));
    assert_eq!(run_outcome(&records), "succeeded");
}

#[test]
fn scheduler_when_success_failure_always_after_a_failure() {
    let env = TestEnv::initialized();
    env.write("rb/when.yaml", WHEN);
    let run = env.release(&run_args("rb/when.yaml", C, &["--set", "fail=yes"]));
    run.assert_code(1);
    let records = records(&env);
    assert_eq!(outcome(&records, "first"), "failed");
    assert_eq!(outcome(&records, "dependent"), "skipped");
    assert_eq!(outcome(&records, "on-failure"), "succeeded");
    assert_eq!(outcome(&records, "finally"), "succeeded");
    assert!(env.join("first").exists(), "the failing step did run");
    assert!(!env.join("dependent").exists());
    assert!(env.join("on-failure").exists() && env.join("finally").exists());
    assert_eq!(run_outcome(&records), "failed");
}

#[test]
fn scheduler_a_failure_stops_the_steps_written_below_it() {
    // Runbooks read top to bottom: b waits for a, c waits for b. When a fails, b is skipped
    // because of that failure, and c must not run either (the failure propagates); only a
    // skip by `if` counts as satisfied.
    let env = TestEnv::initialized();
    env.write(
        "rb/chain.yaml",
        "steps:
  - id: a
    run: [sh, -c, 'exit 1']
  - id: b
    run: [touch, b_ran]
  - id: c
    run: [touch, c_ran]
",
    );
    env.release(&run_args("rb/chain.yaml", C, &[]))
        .assert_code(1);
    let records = records(&env);
    assert_eq!(outcome(&records, "b"), "skipped");
    assert!(!env.join("c_ran").exists(), "c ran after a failed");
    assert_eq!(outcome(&records, "c"), "skipped");
}

#[test]
fn scheduler_if_false_skips_and_counts_as_satisfied() {
    let env = TestEnv::initialized();
    env.write(
        "rb/if.yaml",
        "params:
  enabled: { default: \"\" }
steps:
  - id: gated
    if: \"params.enabled\"
    run: [touch, gated]
  - id: after
    run: [touch, after]
",
    );
    let run = env.release(&run_args("rb/if.yaml", C, &[]));
    run.assert_code(0);
    let records = records(&env);
    assert_eq!(outcome(&records, "gated"), "skipped");
    assert!(started(&records, "gated").is_none());
    assert!(!env.join("gated").exists());
    assert!(
        summary_line(&run, "gated").contains("skipped"),
        "{}",
        run.stdout
    );
    assert_eq!(outcome(&records, "after"), "succeeded");
    assert!(env.join("after").exists());

    env.release(&run_args("rb/if.yaml", C, &["--set", "enabled=yes"]))
        .assert_code(0);
    assert!(env.join("gated").exists(), "`if` true runs the step");
}

#[test]
fn scheduler_an_if_that_cannot_be_evaluated_fails_the_step_and_the_run() {
    let env = TestEnv::initialized();
    env.write(
        "rb/if-error.yaml",
        "params:
  n: { default: \"1\" }
steps:
  - id: divide
    if: \"1 // (params.n | int) > 0\"
    run: [touch, divided]
  - id: after
    run: [touch, after]
  - id: on-failure
    needs: [after]
    when: failure
    run: [touch, cleaned]
",
    );
    let run = env.release(&run_args("rb/if-error.yaml", C, &["--set", "n=0"]));
    run.assert_code(1);
    let records = records(&env);
    assert_eq!(outcome(&records, "divide"), "failed");
    assert!(
        finished(&records, "divide")["data"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot evaluate `if`"),
    );
    assert_eq!(outcome(&records, "after"), "skipped");
    assert_eq!(run_outcome(&records), "failed");
    assert!(env.join("cleaned").exists(), "a `when: failure` step runs");
    assert!(!env.join("divided").exists());
}

#[test]
fn a_process_left_behind_with_its_output_elsewhere_ends_with_the_step() {
    let env = TestEnv::initialized();
    env.write(
        "rb/bg.yaml",
        "steps:
  - id: a
    run: [sh, -c, 'nohup sleep 30 >/dev/null 2>&1 & echo $! > left.pid']
  - id: b
    run: [\"true\"]
",
    );
    let run = env.release(&run_args("rb/bg.yaml", C, &[]));
    run.assert_code(0);
    let pid = read_pid(&env, "left.pid");
    assert!(
        wait_until(Duration::from_secs(3), || pid_gone(pid)),
        "the process left behind by step a is still running"
    );
}

#[test]
fn scheduler_timeout_kills_the_whole_process_group() {
    let env = TestEnv::initialized();
    env.write(
        "rb/timeout.yaml",
        "steps:
  - id: hang
    timeout: 1s
    run: [sh, -c, 'sleep 30 & echo $! > grandchild.pid; wait']
",
    );
    let started_at = Instant::now();
    let run = env.release(&run_args("rb/timeout.yaml", C, &[]));
    run.assert_code(1);
    assert!(
        started_at.elapsed() < Duration::from_secs(10),
        "the timeout did not end the step"
    );
    let records = records(&env);
    assert_eq!(outcome(&records, "hang"), "timed_out");
    assert_eq!(run_outcome(&records), "failed");
    assert!(summary_line(&run, "hang").contains("timed_out"));
    let pid = read_pid(&env, "grandchild.pid");
    assert!(
        wait_until(Duration::from_secs(2), || pid_gone(pid)),
        "the step's grandchild (sleep, pid {pid}) survived the timeout"
    );
}

#[test]
fn scheduler_retry_until_success_records_the_attempts() {
    let env = TestEnv::initialized();
    env.write(
        "rb/retry.yaml",
        "steps:
  - id: flaky
    retry: { attempts: 3, delay: 50ms }
    run: [sh, -c, 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]']
  - id: hopeless
    needs: []
    retry: { attempts: 2, delay: 10ms }
    run: [sh, -c, 'echo try >> tries; exit 1']
",
    );
    env.release(&run_args("rb/retry.yaml", C, &[]))
        .assert_code(1);
    let records = records(&env);
    let flaky = finished(&records, "flaky");
    assert_eq!(flaky["data"]["outcome"], "succeeded");
    assert_eq!(flaky["data"]["attempts"], 3);
    assert_eq!(env.read("count").trim(), "3");
    let hopeless = finished(&records, "hopeless");
    assert_eq!(hopeless["data"]["outcome"], "failed");
    assert_eq!(hopeless["data"]["attempts"], 2);
    assert_eq!(env.read("tries").lines().count(), 2);
    assert_eq!(run_outcome(&records), "failed");
}

#[test]
fn scheduler_continue_on_error_fails_the_step_not_the_run() {
    let env = TestEnv::initialized();
    env.write(
        "rb/coe.yaml",
        "steps:
  - id: optional
    continue_on_error: true
    run: [sh, -c, 'exit 4']
  - id: next
    run: [touch, next]
",
    );
    let run = env.release(&run_args("rb/coe.yaml", C, &[]));
    run.assert_code(0);
    let records = records(&env);
    assert_eq!(outcome(&records, "optional"), "failed");
    assert_eq!(outcome(&records, "next"), "succeeded");
    assert!(env.join("next").exists());
    assert_eq!(run_outcome(&records), "succeeded");
    assert!(summary_line(&run, "optional").contains("failed"));
}

const PARAMS: &str = "params:
  commit: { description: the commit, required: true }
steps:
  - id: use
    run: [touch, \"ran-{{ params.commit }}\"]
";

#[test]
fn scheduler_unknown_param_is_refused_with_a_suggestion() {
    let env = TestEnv::initialized();
    env.write("rb/params.yaml", PARAMS);
    let run = env.release(&run_args("rb/params.yaml", C, &["--set", "comit=abc"]));
    run.assert_code(2)
        .assert_stderr_contains("comit")
        .assert_stderr_contains("did you mean `commit`");
    assert!(records(&env).is_empty(), "nothing may be recorded");
    assert!(!env.join("ran-abc").exists());
}

#[test]
fn scheduler_missing_required_param_is_refused() {
    let env = TestEnv::initialized();
    env.write("rb/params.yaml", PARAMS);
    let run = env.release(&run_args("rb/params.yaml", C, &[]));
    run.assert_code(2)
        .assert_stderr_contains("`commit` is required")
        .assert_stderr_contains("--set commit=");
    assert!(records(&env).is_empty());
    env.release(&run_args("rb/params.yaml", C, &["--set", "commit=abc"]))
        .assert_code(0);
    assert!(env.join("ran-abc").exists());
}

const NASTY: &str = "a b; touch pwned1 $(touch pwned2) `touch pwned3` \"q\" 'x' $HOME";

#[test]
fn templated_values_are_single_argv_elements() {
    let env = TestEnv::initialized();
    env.write(
        "rb/argv.yaml",
        "params:
  msg: { default: \"\" }
steps:
  - id: argv
    run: [sh, -c, 'printf \"%s\" \"$#\" > argc; printf \"%s\" \"$1\" > arg1', sh, \"{{ params.msg }}\"]
",
    );
    env.release(&run_args(
        "rb/argv.yaml",
        C,
        &["--set", &format!("msg={NASTY}")],
    ))
    .assert_code(0);
    assert_eq!(env.read("argc"), "1", "the value was split");
    assert_eq!(env.read("arg1"), NASTY, "the value was altered");
    for f in ["pwned1", "pwned2", "pwned3"] {
        assert!(!env.join(f).exists(), "{f}: the value reached a shell");
    }
}

#[test]
fn script_with_shell_passes_values_as_positional_arguments() {
    let env = TestEnv::initialized();
    env.write(
        "rb/script.yaml",
        "params:
  msg: { default: \"\" }
steps:
  - id: bare
    run:
      script: 'printf \"%s\" {{ params.msg }} > bare; echo $# > count'
      shell: true
",
    );
    env.release(&run_args(
        "rb/script.yaml",
        C,
        &["--set", &format!("msg={NASTY}")],
    ))
    .assert_code(0);
    assert_eq!(env.read("bare"), NASTY);
    assert_eq!(env.read("count").trim(), "1", "one positional argument");
    for f in ["pwned1", "pwned2", "pwned3"] {
        assert!(
            !env.join(f).exists(),
            "{f}: the value was spliced into the script"
        );
    }
}

#[test]
fn script_template_inside_double_quotes_stays_one_word() {
    // `"<{{ params.msg }}>"` becomes `"<""$1"">"`: the quotes cancel out and $1 is split
    // on spaces and globbed, so `rm -rf "{{ vars.dir }}/x"` would remove the wrong paths.
    let env = TestEnv::initialized();
    env.write(
        "rb/script.yaml",
        "params:
  msg: { default: \"\" }
steps:
  - id: quoted
    run:
      script: 'printf \"%s\" \"<{{ params.msg }}>\" > quoted; set -- \"{{ params.msg }}\"; echo $# > count'
      shell: true
",
    );
    env.release(&run_args(
        "rb/script.yaml",
        C,
        &["--set", &format!("msg={NASTY}")],
    ))
    .assert_code(0);
    assert_eq!(env.read("quoted"), format!("<{NASTY}>"));
    assert_eq!(
        env.read("count").trim(),
        "1",
        "the value was split into words"
    );
}

/// Ordinary shell syntax around a value: an apostrophe in a comment, a function after
/// `set --` and `shift`, a here-document, a control block and the `{% raw %}` of docker's
/// `-f` idiom. The value reaches each command whole (it used to be dropped, or in a
/// function taken for the function's own argument, and the blocks went to `sh`
/// unrendered); the places that cannot hold a value safely are found by `runbook validate`.
#[test]
fn script_values_survive_comments_nesting_here_documents_and_blocks() {
    let env = TestEnv::initialized();
    env.write(
        "rb/script.yaml",
        "params:
  msg: { default: \"\" }
steps:
  - id: shapes
    run:
      shell: true
      script: |
        # it's the comment that used to open a quote
        printf '%s' {{ params.msg }} > plain
        nested() { printf '[%s]\\n' \"{{ params.msg }}\"; }
        set -- other; shift; nested > nested
        cat > doc <<EOF
        it's {{ params.msg }}
        EOF
        {% if run.dry_run %}echo dry > mode{% else %}echo real > mode{% endif %}
        echo '{% raw %}{{.State.Status}}{% endraw %}' > raw
",
    );
    env.release(&run_args(
        "rb/script.yaml",
        C,
        &["--set", &format!("msg={NASTY}")],
    ))
    .assert_code(0);
    assert_eq!(env.read("plain"), NASTY);
    assert_eq!(env.read("nested"), format!("[{NASTY}]\n"));
    assert_eq!(env.read("doc"), format!("it's {NASTY}\n"));
    assert_eq!(env.read("mode"), "real\n");
    assert_eq!(env.read("raw"), "{{.State.Status}}\n");
    for f in ["pwned1", "pwned2", "pwned3"] {
        assert!(!env.join(f).exists(), "{f}: the value ran");
    }

    env.write(
        "rb/sum.yaml",
        "params:
  n: { default: \"1\" }
steps:
  - id: sum
    run: { script: 'echo $(( {{ params.n }} + 1 ))', shell: true }
  - id: nested
    run: { script: 'echo \"$(printf %s \"{{ params.n }}\")\"', shell: true }
",
    );
    env.release(&["runbook", "validate", "rb/sum.yaml"])
        .assert_code(2)
        .assert_stderr_contains("step `sum`: `script` cannot hold a value where it stands")
        .assert_stderr_contains("where the shell evaluates it as arithmetic")
        .assert_stderr_contains("step `nested`: `script` cannot hold a value where it stands")
        .assert_stderr_contains(
            "a value inside `$( … )` cannot be quoted safely there: set a variable to it on a line of its own",
        );
}

// ---------------------------------------------------------------------------------------
// Confirmations
// ---------------------------------------------------------------------------------------

const TYPE_COMPONENT: &str = "confirm: type-component
steps:
  - id: one
    run: [touch, made1]
  - id: two
    confirm: \"Go on with {{ component }}?\"
    run: [touch, made2]
  - id: three
    run: [touch, made3]
";

const STEP_CONFIRM: &str = "steps:
  - id: one
    run: [touch, made1]
  - id: two
    confirm: \"Go on?\"
    run: [touch, made2]
";

fn made(env: &TestEnv) -> Vec<&'static str> {
    ["made1", "made2", "made3"]
        .into_iter()
        .filter(|f| env.join(f).exists())
        .collect()
}

#[test]
fn confirm_without_terminal_or_yes_is_refused_before_anything_runs() {
    for runbook in [TYPE_COMPONENT, STEP_CONFIRM] {
        let env = TestEnv::initialized();
        env.write("rb/confirm.yaml", runbook);
        let run = env.release(&run_args("rb/confirm.yaml", C, &[]));
        run.assert_code(3)
            .assert_stderr_contains("no terminal")
            .assert_stderr_contains("--yes");
        assert!(records(&env).is_empty(), "nothing may be recorded");
        assert!(made(&env).is_empty(), "steps ran: {:?}", made(&env));
        assert!(!env.join(LOCK).exists());
    }
}

#[test]
fn confirm_with_yes_runs_everything() {
    for flag in ["--yes", "-y"] {
        let env = TestEnv::initialized();
        env.write("rb/confirm.yaml", TYPE_COMPONENT);
        let mut args = vec![flag];
        args.extend(run_args("rb/confirm.yaml", C, &[]));
        env.release(&args).assert_code(0);
        assert_eq!(made(&env), ["made1", "made2", "made3"]);
        assert_eq!(run_outcome(&records(&env)), "succeeded");
    }
}

#[test]
fn confirm_wrong_component_name_in_a_terminal_declines_before_anything_runs() {
    let env = TestEnv::initialized();
    env.write("rb/confirm.yaml", TYPE_COMPONENT);
    let (code, screen) = release_in_pty(
        &env,
        &run_args("rb/confirm.yaml", C, &[]),
        &[("type the component name", "orchestratio\r")],
    );
    assert_eq!(code, 3, "{screen}");
    let records = records(&env);
    assert_eq!(run_outcome(&records), "declined", "{records:#?}");
    assert!(kind(&records, "step.started").is_empty());
    assert!(made(&env).is_empty());
    assert!(!env.join(LOCK).exists());
}

#[test]
fn confirm_declined_step_in_a_terminal_stops_the_run() {
    let env = TestEnv::initialized();
    env.write("rb/confirm.yaml", TYPE_COMPONENT);
    let (code, screen) = release_in_pty(
        &env,
        &run_args("rb/confirm.yaml", C, &[]),
        &[
            ("type the component name", "orchestration\r"),
            ("Go on with orchestration?", "n"),
        ],
    );
    assert_eq!(code, 3, "{screen}");
    let records = records(&env);
    assert_eq!(outcome(&records, "one"), "succeeded");
    assert_eq!(outcome(&records, "two"), "declined");
    assert!(started(&records, "two").is_none());
    assert!(started(&records, "three").is_none());
    assert_eq!(run_outcome(&records), "declined");
    assert_eq!(made(&env), ["made1"]);
    assert!(!env.join(LOCK).exists());
}

/// SIGTERM while a prompt waits for its answer: the run ends at once, interrupted (130),
/// with the terminal as it was before the prompt (not left in raw mode) and the cursor shown.
#[test]
fn confirm_sigterm_at_a_prompt_ends_the_run_and_restores_the_terminal() {
    let env = TestEnv::initialized();
    env.write("rb/confirm.yaml", TYPE_COMPONENT);
    let started = Instant::now();
    let (_, screen) = release_in_terminal(
        &env,
        &run_args("rb/confirm.yaml", C, &[]),
        &[("type the component name", Key::Term)],
        "; echo \"exit=$?\"; stty -a",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run waited for the prompt's read:\n{screen}"
    );
    assert!(screen.contains("exit=130"), "{screen}");
    assert!(screen.contains("interrupted at a confirmation"), "{screen}");
    let settings: Vec<&str> = screen.split_whitespace().collect();
    assert!(
        settings.contains(&"icanon") && settings.contains(&"echo"),
        "the terminal was left raw:\n{screen}"
    );
    assert!(screen.contains("\x1b[?25h"), "cursor shown again");
    let records = records(&env);
    assert_eq!(run_outcome(&records), "interrupted", "{records:#?}");
    assert!(made(&env).is_empty());
    assert!(!env.join(LOCK).exists());
}

#[test]
fn confirm_accepted_in_a_terminal_runs_everything() {
    let env = TestEnv::initialized();
    env.write("rb/confirm.yaml", TYPE_COMPONENT);
    let (code, screen) = release_in_pty(
        &env,
        &run_args("rb/confirm.yaml", C, &[]),
        &[
            ("type the component name", "orchestration\r"),
            ("Go on with orchestration?", "y"),
        ],
    );
    assert_eq!(code, 0, "{screen}");
    assert_eq!(made(&env), ["made1", "made2", "made3"]);
    assert_eq!(run_outcome(&records(&env)), "succeeded");
}

// ---------------------------------------------------------------------------------------
// Dry-run
// ---------------------------------------------------------------------------------------

const DRY: &str = "confirm: type-component
steps:
  - id: commit
    confirm: \"Commit?\"
    run: { argv: [git, commit, --allow-empty, -m, x], plan: [git, status, --short] }
  - id: touch
    run: [touch, created-by-a-real-run]
  - id: wipe
    run: { script: 'rm -rf runbooks; echo gone > marker', shell: true }
  - id: cleanup
    when: failure
    run: [rm, -f, release.yaml]
";

fn git_project() -> TestEnv {
    let env = TestEnv::initialized();
    git(&env, &["init", "-q", "-b", "main"]);
    git(&env, &["add", "-A"]);
    git(&env, &["commit", "-q", "-m", "initial"]);
    env.write("untracked-note.txt", "not committed\n");
    env
}

#[test]
fn dry_run_changes_nothing_and_shows_the_plan_output() {
    let env = git_project();
    env.write("rb/dry.yaml", DRY);
    // A first status refreshes the index, so that only the dry-run can change things.
    git(&env, &["status"]);
    let (files, repo) = (tree_hashes(env.path()), git_state(&env));
    let run = env.release(&run_args("rb/dry.yaml", C, &["--dry-run"]));
    run.assert_code(0)
        .assert_stdout_contains("?? untracked-note.txt")
        .assert_stdout_contains("planned");
    assert_eq!(tree_hashes(env.path()), files, "the dry-run changed files");
    assert_eq!(git_state(&env), repo, "the dry-run changed the repository");
    assert!(!env.join(LOCK).exists());
    for line in [
        summary_line(&run, "commit"),
        summary_line(&run, "touch"),
        summary_line(&run, "cleanup"),
    ] {
        assert!(line.contains("ready"), "{line}");
    }
    assert!(summary_line(&run, "wipe").contains("warn"));
}

#[test]
fn dry_run_records_verdict_and_fidelity() {
    let env = git_project();
    env.write("rb/dry.yaml", DRY);
    env.release(&run_args("rb/dry.yaml", C, &["--dry-run"]))
        .assert_code(0);
    let records = records(&env);
    let start = kind(&records, "run.started");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["data"]["dry_run"], true);
    assert_eq!(start[0]["data"]["purpose"], "run");
    let expect = [
        ("commit", "ready", "planned"),
        ("touch", "ready", "checked"),
        ("wipe", "warn", "checked"),
        ("cleanup", "ready", "checked"),
    ];
    for (step, verdict, fidelity) in expect {
        let data = &finished(&records, step)["data"];
        assert_eq!(data["verdict"], verdict, "{step}: {data}");
        assert_eq!(data["fidelity"], fidelity, "{step}: {data}");
        assert_eq!(data["outcome"], "succeeded", "{step}: {data}");
        assert!(data.get("preflight").is_some(), "{step}: {data}");
    }
    assert!(
        finished(&records, "commit")["data"]["preflight"]["output"]
            .as_str()
            .unwrap()
            .contains("?? untracked-note.txt")
    );
    assert_eq!(run_outcome(&records), "succeeded");
}

const BLOCKED: &str = "steps:
  - id: missing
    run: [no-such-program-xyz, --now]
  - id: fine
    needs: []
    run: [echo, hi]
  - id: from-output
    needs: [fine]
    run: [echo, \"{{ steps.fine.stdout }}\"]
  - id: rescue
    needs: [missing]
    when: failure
    run: [another-missing-program-xyz]
";

#[test]
fn dry_run_blocked_exits_one() {
    let env = TestEnv::initialized();
    env.write("rb/blocked.yaml", BLOCKED);
    let run = env.release(&run_args("rb/blocked.yaml", C, &["--dry-run"]));
    run.assert_code(1)
        .assert_stdout_contains("no-such-program-xyz");
    assert!(summary_line(&run, "missing").contains("blocked"));
    assert!(summary_line(&run, "fine").contains("ready"));
    assert!(
        summary_line(&run, "rescue").contains("blocked"),
        "`when: failure` steps are preflighted too"
    );
    let records = records(&env);
    assert_eq!(finished(&records, "missing")["data"]["verdict"], "blocked");
    assert_eq!(finished(&records, "missing")["data"]["outcome"], "failed");
    assert_eq!(finished(&records, "rescue")["data"]["verdict"], "blocked");
    assert_eq!(run_outcome(&records), "blocked");
}

/// The report in `--json` output: the last JSON document holding `steps`.
fn json_report(run: &Run) -> Value {
    serde_json::Deserializer::from_str(&run.stdout)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .filter(|v| v.get("steps").is_some())
        .last()
        .unwrap_or_else(|| panic!("no JSON report\n{}", run.transcript()))
}

fn json_step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

#[test]
fn dry_run_json_report_has_verdict_and_fidelity_per_step() {
    let env = TestEnv::initialized();
    env.write("rb/blocked.yaml", BLOCKED);
    let run = env.release(&{
        let mut args = vec!["--json"];
        args.extend(run_args("rb/blocked.yaml", C, &["--dry-run"]));
        args
    });
    run.assert_code(1);
    let report = json_report(&run);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["outcome"], "blocked");
    let expect = [
        ("missing", "blocked", "checked"),
        ("fine", "ready", "checked"),
        ("from-output", "warn", "unverifiable"),
        ("rescue", "blocked", "checked"),
    ];
    for (id, verdict, fidelity) in expect {
        let preflight = &json_step(&report, id)["preflight"];
        assert_eq!(preflight["verdict"], verdict, "{id}: {preflight}");
        assert_eq!(preflight["fidelity"], fidelity, "{id}: {preflight}");
    }
}

#[test]
fn dry_run_json_stdout_is_one_json_document() {
    let env = TestEnv::initialized();
    env.write("rb/blocked.yaml", BLOCKED);
    let mut args = vec!["--json"];
    args.extend(run_args("rb/blocked.yaml", C, &["--dry-run"]));
    let run = env.release(&args);
    run.assert_code(1);
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{}", run.stdout));
    assert_eq!(report["outcome"], "blocked");
}

#[test]
fn dry_run_never_asks() {
    let env = TestEnv::initialized();
    env.write("rb/confirm.yaml", TYPE_COMPONENT);
    let run = env.release(&run_args("rb/confirm.yaml", C, &["--dry-run"]));
    run.assert_code(0);
    assert!(made(&env).is_empty());
    let records = records(&env);
    assert_eq!(kind(&records, "run.started")[0]["data"]["dry_run"], true);
    assert_eq!(run_outcome(&records), "succeeded");
}

// ---------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------

/// A project whose log holds a few records (one run of 3 steps: 8 records).
fn logged() -> TestEnv {
    let env = TestEnv::initialized();
    env.write(
        "rb/three.yaml",
        "steps:\n  - id: a\n    run: [\"true\"]\n  - id: b\n    run: [\"true\"]\n  - id: c\n    run: [\"true\"]\n",
    );
    env.release(&run_args("rb/three.yaml", C, &[]))
        .assert_code(0);
    env
}

fn audit_lines(env: &TestEnv) -> Vec<String> {
    env.read(AUDIT).lines().map(str::to_owned).collect()
}

fn write_lines(env: &TestEnv, lines: &[String]) {
    env.write(AUDIT, &(lines.join("\n") + "\n"));
}

/// Checks the chain as SPEC §7 defines it, independently of `release`.
fn assert_chain(env: &TestEnv) {
    let mut prev = "0".repeat(64);
    for (i, line) in audit_lines(env).iter().enumerate() {
        let record: Value = serde_json::from_str(line).expect("a record");
        assert_eq!(record["v"], 1);
        assert_eq!(record["seq"], i as u64 + 1, "line {}", i + 1);
        assert_eq!(record["prev"], prev.as_str(), "line {}", i + 1);
        prev = sha256_hex(line.as_bytes());
    }
}

#[test]
fn audit_verify_accepts_a_fresh_log_and_prints_its_head() {
    let env = logged();
    assert_chain(&env);
    let lines = audit_lines(&env);
    assert_eq!(lines.len(), 8);
    let head = sha256_hex(lines.last().unwrap().as_bytes());
    env.release(&["audit", "verify"])
        .assert_code(0)
        .assert_stdout_contains(&head);
    env.release(&["audit", "verify", "--expect-head", &head])
        .assert_code(0);
    // A head kept before later records were appended still vouches for its lines.
    let earlier = sha256_hex(lines[lines.len() - 3].as_bytes());
    env.release(&["audit", "verify", "--expect-head", &earlier])
        .assert_code(0)
        .assert_stdout_contains("the expected head is line 6's: 2 records appended since");
    let wrong = sha256_hex(b"not a line of this log");
    env.release(&["audit", "verify", "--expect-head", &wrong])
        .assert_code(1)
        .assert_stderr_contains("but no line of it hashes to the expected");
    // The last records removed: the head kept then is nowhere in the chain.
    write_lines(&env, &lines[..lines.len() - 1]);
    env.release(&["audit", "verify", "--expect-head", &head])
        .assert_code(1)
        .assert_stderr_contains("records up to that head were removed or rewritten");
}

/// Rewrites every `prev` after line `from` (1-based) so that the chain of hashes holds
/// again: a forger's log, whose only flaw is what they changed in it.
fn rechain(lines: &mut [String], from: usize) {
    for i in from..lines.len() {
        let prev = sha256_hex(lines[i - 1].as_bytes());
        let mut record: Value = serde_json::from_str(&lines[i]).unwrap();
        record["prev"] = Value::String(prev);
        lines[i] = serde_json::to_string(&record).unwrap();
    }
}

/// `audit verify` and the commands that decide from the log agree on what a record is: a
/// `seq` out of order is refused by both (the deciders used to accept it), and so is a
/// `ts` that is not a time (`verify` used to accept it while the deciders refused it and
/// pointed at `verify`).
#[test]
fn audit_verify_and_the_deciding_commands_refuse_the_same_records() {
    let env = logged();
    let original = audit_lines(&env);
    for (field, value, says) in [
        ("seq", Value::from(2), "`seq` is 2 where 3 was expected"),
        (
            "ts",
            Value::from("yesterday"),
            "`ts` yesterday is not an RFC 3339 time",
        ),
    ] {
        let mut lines = original.clone();
        let mut record: Value = serde_json::from_str(&lines[2]).unwrap();
        record[field] = value;
        lines[2] = serde_json::to_string(&record).unwrap();
        rechain(&mut lines, 3);
        write_lines(&env, &lines);
        env.release(&["audit", "verify"])
            .assert_code(1)
            .assert_stderr_contains(says);
        env.release(&["status"]).assert_code(1);
        env.release(&["attest", C, "security-review"])
            .assert_code(1);
    }
    // An unknown version on the last line: refused by both.
    let mut lines = original.clone();
    let last = lines.len() - 1;
    lines[last] = lines[last].replacen("\"v\":1,", "\"v\":2,", 1);
    write_lines(&env, &lines);
    env.release(&["audit", "verify"]).assert_code(1);
    env.release(&["status"]).assert_code(1);
    // Valid JSON written otherwise (a blank after a colon, an escaped letter): accepted by both.
    let mut lines = original.clone();
    lines[last] = lines[last].replacen("\"seq\":", "\"seq\": ", 1).replacen(
        "Z\",\"run\"",
        "\\u005a\",\"run\"",
        1,
    );
    assert!(lines[last].contains("\\u005a"), "{}", lines[last]);
    write_lines(&env, &lines);
    env.release(&["audit", "verify"]).assert_code(0);
    env.release(&["status"]).assert_code(0);
}

/// `status` says when the log ends with a torn line, which it leaves out of the board (it
/// used to say nothing).
#[test]
fn status_warns_of_a_torn_last_line() {
    let env = logged();
    let mut text = env.read(AUDIT);
    text.push_str("{\"v\":1,\"seq\":9,\"ts\":\"2026");
    env.write(AUDIT, &text);
    env.release(&["status"])
        .assert_code(0)
        .assert_stderr_contains(
            "ends with a torn line (a crash mid-write?), left out of this board",
        );
    env.release(&["audit", "verify"]).assert_code(1);
}

#[test]
fn audit_verify_names_an_edited_line() {
    let env = logged();
    let mut lines = audit_lines(&env);
    // Line 4 is a step record; change one byte of its step id: still valid JSON.
    let at = lines[3].find("\"step\":\"").expect("a step record") + 8;
    let mut bytes = lines[3].clone().into_bytes();
    bytes[at] = if bytes[at] == b'z' { b'y' } else { b'z' };
    lines[3] = String::from_utf8(bytes).unwrap();
    write_lines(&env, &lines);
    let run = env.release(&["audit", "verify"]);
    run.assert_code(1);
    assert!(
        names_line(&run.stderr, 4) || names_line(&run.stderr, 5),
        "the edited line (4) is not named\n{}",
        run.transcript()
    );
}

#[test]
fn audit_verify_names_a_deleted_line() {
    let env = logged();
    let mut lines = audit_lines(&env);
    lines.remove(4);
    write_lines(&env, &lines);
    let run = env.release(&["audit", "verify"]);
    run.assert_code(1);
    assert!(
        names_line(&run.stderr, 5),
        "the line after the deleted one (5) is not named\n{}",
        run.transcript()
    );
}

const TORN: &str = "{\"v\":1,\"seq\":9,\"ts\":\"2026-";

fn tear(env: &TestEnv) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(env.join(AUDIT))
        .unwrap();
    file.write_all(TORN.as_bytes()).unwrap();
}

fn assert_repaired(env: &TestEnv) {
    let records = records(env);
    let repaired = kind(&records, "audit.repaired");
    assert_eq!(repaired.len(), 1, "{records:#?}");
    let data = &repaired[0]["data"];
    assert_eq!(data["bytes"], TORN.len());
    let moved_to = data["moved_to"].as_str().expect("moved_to");
    let moved = if Path::new(moved_to).is_absolute() {
        std::path::PathBuf::from(moved_to)
    } else {
        env.join(moved_to)
    };
    assert_eq!(std::fs::read_to_string(moved).unwrap(), TORN);
    env.release(&["audit", "verify"]).assert_code(0);
    assert_chain(env);
}

#[test]
fn audit_torn_last_line_is_reported_then_moved_aside_by_the_next_append() {
    let env = logged();
    tear(&env);
    env.release(&["audit", "verify"])
        .assert_code(1)
        .assert_stderr_contains("torn");
    // The next append (here: an unlock, which appends without reading the log first).
    env.write(LOCK, &lock_json("r-far", 4_000_000, "elsewhere"));
    env.release(&[
        "unlock",
        C,
        "--stage",
        "staging",
        "--lock-id",
        "r-far",
        "--reason",
        "x",
    ])
    .assert_code(0);
    assert_repaired(&env);
}

#[test]
fn audit_torn_last_line_does_not_stop_the_next_run() {
    let env = logged();
    tear(&env);
    env.release(&["audit", "verify"])
        .assert_code(1)
        .assert_stderr_contains("torn");
    env.release(&run_args("rb/three.yaml", C, &[]))
        .assert_code(0);
    assert_repaired(&env);
}

#[test]
fn audit_two_concurrent_runs_keep_one_chain() {
    let env = TestEnv::initialized();
    env.write("rb/many.yaml", &many_steps(20));
    let first = spawn_release(&env, &run_args("rb/many.yaml", C, &[]));
    let second = spawn_release(&env, &run_args("rb/many.yaml", OTHER, &[]));
    finish(first, Duration::from_secs(30)).assert_code(0);
    finish(second, Duration::from_secs(30)).assert_code(0);
    env.release(&["audit", "verify"]).assert_code(0);
    assert_chain(&env);
    let records = records(&env);
    assert_eq!(records.len(), 2 * (20 * 2 + 2));
    for component in [C, OTHER] {
        let steps = records
            .iter()
            .filter(|r| r["component"] == component && r["kind"] == "step.finished")
            .count();
        assert_eq!(steps, 20, "{component}");
    }
    let switches = records
        .windows(2)
        .filter(|w| w[0]["run"] != w[1]["run"])
        .count();
    assert!(
        switches > 1,
        "the two runs did not write at the same time; the test proves nothing"
    );
}

#[test]
fn audit_secrets_never_appear() {
    let env = TestEnv::initialized();
    env.write(
        "rb/secret.yaml",
        "steps:
  - id: shout
    run: [sh, -c, 'echo \"posting to $SLACK_WEBHOOK_URL\"; echo \"$SLACK_WEBHOOK_URL\" > seen']
  - id: complain
    run: [sh, -c, 'echo \"cannot post to $SLACK_WEBHOOK_URL\" >&2; exit 1']
",
    );
    let vars = [("SLACK_WEBHOOK_URL", SECRET)];
    for json in [false, true] {
        let mut args = if json { vec!["--json"] } else { vec![] };
        args.extend(run_args("rb/secret.yaml", C, &[]));
        let run = release_with_env(&env, &args, &vars);
        run.assert_code(1);
        assert!(!run.stdout.contains(SECRET), "stdout: {}", run.stdout);
        assert!(!run.stderr.contains(SECRET), "stderr: {}", run.stderr);
    }
    assert_eq!(env.read("seen").trim(), SECRET, "the step saw the variable");
    assert!(
        !env.read(AUDIT).contains(SECRET),
        "the audit log holds the secret"
    );
    let log = release_with_env(&env, &["audit", "log"], &vars);
    log.assert_code(0);
    assert!(!log.stdout.contains(SECRET) && !log.stderr.contains(SECRET));
}

#[test]
fn audit_log_filters_by_component_and_kind() {
    let env = logged();
    env.release(&run_args("rb/three.yaml", OTHER, &[]))
        .assert_code(0);
    let all = records(&env);
    let expected: Vec<&Value> = all
        .iter()
        .filter(|r| r["component"] == C && r["kind"].as_str().unwrap().starts_with("step."))
        .collect();
    assert_eq!(expected.len(), 6);

    let run = env.release(&["audit", "log", "--component", C, "--kind", "step."]);
    run.assert_code(0);
    let rows: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), expected.len(), "{}", run.stdout);
    for row in &rows {
        assert!(
            row.contains("step.") && row.contains(C) && !row.contains(OTHER),
            "{row}"
        );
    }

    let run = env.release(&[
        "--json",
        "audit",
        "log",
        "--component",
        C,
        "--kind",
        "step.",
    ]);
    run.assert_code(0);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (got, want) in lines.iter().zip(&expected) {
        assert_eq!(&got, want);
    }

    let run = env.release(&["--json", "audit", "log", "--kind", "run.finished"]);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
}

// ---------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------

const NAP: &str = "steps:
  - id: nap
    run: [sh, -c, 'sleep 30 & echo $! > nap.pid; wait']
";

fn wait_for_step_started(env: &TestEnv, step: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || started(&records(env), step)
            .is_some()),
        "step `{step}` never started"
    );
}

/// A project where a run of `rb/nap.yaml` is under way and holds the lock (`rb/quick.yaml`
/// is a one-step runbook to try next): the project, the holder, and its lock record.
fn holding_the_lock() -> (TestEnv, Child, Value) {
    let env = TestEnv::initialized();
    env.write("rb/nap.yaml", NAP);
    env.write(
        "rb/quick.yaml",
        "steps:\n  - id: quick\n    run: [touch, quick]\n",
    );
    let holder = spawn_release(&env, &run_args("rb/nap.yaml", C, &[]));
    wait_for_step_started(&env, "nap");
    let lock: Value = serde_json::from_str(&env.read(LOCK)).expect("lock JSON");
    (env, holder, lock)
}

#[test]
fn lock_held_refuses_a_second_run_with_the_holder() {
    let (env, holder, lock) = holding_the_lock();
    assert_eq!(lock["pid"], holder.id());
    let run_id = lock["run"].as_str().unwrap().to_owned();

    let second = env.release(&run_args("rb/quick.yaml", C, &[]));
    second
        .assert_code(3)
        .assert_stderr_contains(&run_id)
        .assert_stderr_contains(&holder.id().to_string());
    assert!(!env.join("quick").exists());
    // Another stage of the same component is free.
    env.release(&[
        "run",
        "rb/quick.yaml",
        "--component",
        C,
        "--stage",
        "production",
    ])
    .assert_code(0);

    send_signal(holder.id(), "-INT");
    finish(holder, Duration::from_secs(10)).assert_code(130);
}

#[test]
fn lock_of_a_dead_process_on_this_host_is_taken_over() {
    let env = TestEnv::initialized();
    env.write(
        "rb/quick.yaml",
        "steps:\n  - id: quick\n    run: [touch, quick]\n",
    );
    env.write(LOCK, &lock_json("r-dead", 4_000_000, &hostname()));
    let run = env.release(&run_args("rb/quick.yaml", C, &[]));
    run.assert_code(0);
    assert!(env.join("quick").exists());
    assert!(!env.join(LOCK).exists(), "the lock was not released");
    let records = records(&env);
    let forced = kind(&records, "lock.forced");
    assert_eq!(forced.len(), 1, "{records:#?}");
    assert_eq!(
        forced[0]["data"]["reason"],
        "holder process 4000000 is gone"
    );
    assert_eq!(forced[0]["data"]["holder"]["run"], "r-dead");
    assert_eq!(forced[0]["component"], C);
    assert_eq!(forced[0]["stage"], "staging");
}

#[test]
fn lock_from_another_host_needs_unlock() {
    let env = TestEnv::initialized();
    env.write(
        "rb/quick.yaml",
        "steps:\n  - id: quick\n    run: [touch, quick]\n",
    );
    env.write(LOCK, &lock_json("r-far", 4_000_000, "elsewhere.example"));
    let run = env.release(&run_args("rb/quick.yaml", C, &[]));
    run.assert_code(3)
        .assert_stderr_contains("r-far")
        .assert_stderr_contains("elsewhere.example")
        .assert_stderr_contains("release unlock")
        .assert_stderr_contains("--lock-id r-far");
    assert!(!env.join("quick").exists());
    assert!(env.join(LOCK).exists());

    let unlock = |id: &str| {
        env.release(&[
            "unlock",
            C,
            "--stage",
            "staging",
            "--lock-id",
            id,
            "--reason",
            "host is dead",
        ])
    };
    unlock("r-wrong")
        .assert_code(3)
        .assert_stderr_contains("r-far");
    assert!(env.join(LOCK).exists(), "a wrong id removed the lock");
    assert!(kind(&records(&env), "lock.forced").is_empty());

    unlock("r-far").assert_code(0);
    assert!(!env.join(LOCK).exists());
    let records = records(&env);
    let forced = kind(&records, "lock.forced");
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0]["data"]["reason"], "host is dead");
    assert_eq!(forced[0]["data"]["holder"]["host"], "elsewhere.example");
    assert_eq!(forced[0]["data"]["holder"]["run"], "r-far");

    env.release(&run_args("rb/quick.yaml", C, &[]))
        .assert_code(0);
}

// ---------------------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------------------

fn assert_interrupted(signal: &str) {
    let env = TestEnv::initialized();
    env.write(
        "rb/nap.yaml",
        &format!("{NAP}  - id: later\n    run: [touch, later]\n"),
    );
    let child = spawn_release(&env, &run_args("rb/nap.yaml", C, &[]));
    wait_for_step_started(&env, "nap");
    let sleeper = read_pid(&env, "nap.pid");
    assert!(env.join(LOCK).exists());
    let sent = Instant::now();
    send_signal(child.id(), signal);
    let run = finish(child, Duration::from_secs(10));
    run.assert_code(130);
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        sent.elapsed()
    );
    let records = records(&env);
    assert_eq!(run_outcome(&records), "interrupted");
    assert!(started(&records, "later").is_none());
    assert!(!env.join("later").exists());
    assert!(!env.join(LOCK).exists(), "the lock was not released");
    assert!(
        wait_until(Duration::from_secs(2), || pid_gone(sleeper)),
        "the step's sleep (pid {sleeper}) survived the interrupt"
    );
    env.release(&["audit", "verify"]).assert_code(0);
}

#[test]
fn interrupt_sigint_stops_the_run() {
    assert_interrupted("-INT");
}

#[test]
fn interrupt_sigterm_stops_the_run() {
    assert_interrupted("-TERM");
}

// ---------------------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------------------

fn rollback_project() -> TestEnv {
    let env = TestEnv::initialized();
    let runbook = "params:
  commit: { required: true }
steps:
  - id: revert
    run: [touch, reverted]
";
    env.write("runbooks/staging/rollback.yaml", runbook);
    env.write("runbooks/production/rollback.yaml", runbook);
    env
}

#[test]
fn rollback_of_a_stage_not_reached_is_refused() {
    let env = rollback_project();
    let run = env.release(&[
        "rollback",
        C,
        "--stage",
        "staging",
        "--set",
        "commit=abc",
        "--reason",
        "5xx spike",
    ]);
    run.assert_code(3).assert_stderr_contains("development");
    assert!(!env.join("reverted").exists());
    assert!(records(&env).is_empty());
}

#[test]
fn rollback_without_reason_is_invalid() {
    let env = rollback_project();
    env.release(&[
        "rollback",
        C,
        "--stage",
        "development",
        "--set",
        "commit=abc",
    ])
    .assert_code(2)
    .assert_stderr_contains("--reason");
    assert!(!env.join("reverted").exists());
    // At a stage it has reached (the first), with a reason, it runs.
    env.write(
        "runbooks/development/rollback.yaml",
        "steps:\n  - id: revert\n    run: [touch, reverted]\n",
    );
    env.release(&[
        "rollback",
        C,
        "--stage",
        "development",
        "--reason",
        "bad deploy",
    ])
    .assert_code(0);
    assert!(env.join("reverted").exists());
    let records = records(&env);
    let start = kind(&records, "run.started")[0];
    assert_eq!(start["data"]["purpose"], "rollback");
    assert_eq!(start["data"]["reason"], "bad deploy");
}

#[test]
fn rollback_dry_run_works_at_any_stage() {
    let env = rollback_project();
    for stage in ["staging", "production"] {
        let run = env.release(&[
            "rollback",
            C,
            "--stage",
            stage,
            "--set",
            "commit=abc",
            "--dry-run",
        ]);
        run.assert_code(0);
        assert!(
            summary_line(&run, "revert").contains("ready"),
            "{}",
            run.stdout
        );
    }
    assert!(!env.join("reverted").exists());
    let records = records(&env);
    assert_eq!(kind(&records, "run.started").len(), 2);
    for start in kind(&records, "run.started") {
        assert_eq!(start["data"]["dry_run"], true);
        assert_eq!(start["data"]["purpose"], "rollback");
    }
}

// ---------------------------------------------------------------------------------------
// Review B: locks, dry-run `if`, interrupts, recorded output, audit commands
// ---------------------------------------------------------------------------------------

fn unlock(env: &TestEnv, how: &[&str], reason: &str) -> Run {
    let mut args = vec!["unlock", C, "--stage", "staging"];
    args.extend_from_slice(how);
    args.extend_from_slice(&["--reason", reason]);
    env.release(&args)
}

#[test]
fn unlock_refuses_the_lock_of_a_run_alive_on_this_host() {
    let (env, holder, lock) = holding_the_lock();
    let run_id = lock["run"].as_str().unwrap().to_owned();

    let refused = unlock(&env, &["--lock-id", &run_id], "I think it is dead");
    refused
        .assert_code(3)
        .assert_stderr_contains(&format!("pid {}", holder.id()))
        .assert_stderr_contains("release")
        .assert_stderr_contains("stop it first");
    assert!(env.join(LOCK).exists(), "the live run's lock was removed");
    assert!(kind(&records(&env), "lock.forced").is_empty());
    env.release(&run_args("rb/quick.yaml", C, &[]))
        .assert_code(3);
    assert!(
        !env.join("quick").exists(),
        "a second run went beside the first"
    );

    send_signal(holder.id(), "-INT");
    finish(holder, Duration::from_secs(10)).assert_code(130);
}

#[test]
fn unlock_removes_a_local_lock_whose_pid_was_reused() {
    let env = TestEnv::initialized();
    env.write(
        "rb/quick.yaml",
        "steps:\n  - id: quick\n    run: [touch, quick]\n",
    );
    // A live process that is not the holder: started after the lock was taken.
    let mut stranger = Command::new("sleep").arg("30").spawn().expect("sleep");
    let taken = chrono::Utc::now() - chrono::Duration::seconds(120);
    let mut lock: Value =
        serde_json::from_str(&lock_json("r-reused", stranger.id(), &hostname())).unwrap();
    lock["started_at"] = Value::from(taken.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    env.write(LOCK, &lock.to_string());
    env.release(&run_args("rb/quick.yaml", C, &[]))
        .assert_code(3)
        .assert_stderr_contains("r-reused");
    unlock(
        &env,
        &["--lock-id", "r-reused"],
        "pid reused after a restart",
    )
    .assert_code(0);
    assert!(!env.join(LOCK).exists());

    // A lock taken before this host booted is dead whatever its pid shows now.
    lock["started_at"] = Value::from("2000-01-01T00:00:00Z");
    lock["run"] = Value::from("r-before-boot");
    env.write(LOCK, &lock.to_string());
    env.release(&run_args("rb/quick.yaml", C, &[]))
        .assert_code(0);
    let _ = stranger.kill();
    let _ = stranger.wait();
    let records = records(&env);
    let forced = kind(&records, "lock.forced");
    assert_eq!(forced.len(), 2, "{records:#?}");
    assert_eq!(forced[1]["data"]["holder"]["run"], "r-before-boot");
}

#[test]
fn unlock_a_corrupt_lock_file_needs_the_corrupt_flag() {
    let env = TestEnv::initialized();
    env.write(LOCK, "");
    unlock(&env, &["--lock-id", "anything"], "corrupt")
        .assert_code(3)
        .assert_stderr_contains("orchestration.staging.lock")
        .assert_stderr_contains("not a lock record")
        .assert_stderr_contains("--corrupt");
    assert!(env.join(LOCK).exists(), "a made-up lock id removed it");
    let removed = unlock(&env, &["--corrupt"], "empty file after a full disk");
    removed
        .assert_code(0)
        .assert_stdout_contains("corrupt lock file");
    assert!(!env.join(LOCK).exists());
    let records = records(&env);
    let forced = kind(&records, "lock.forced");
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0]["data"]["reason"], "empty file after a full disk");
    assert!(forced[0]["data"]["holder"]["corrupt"].is_string());
    // --corrupt on a real lock record is refused.
    env.write(LOCK, &lock_json("r-far", 4_000_000, "elsewhere.example"));
    unlock(&env, &["--corrupt"], "x")
        .assert_code(3)
        .assert_stderr_contains("--lock-id r-far");
}

#[test]
fn unlock_with_an_empty_reason_is_invalid() {
    let env = TestEnv::initialized();
    env.write(LOCK, &lock_json("r-far", 4_000_000, "elsewhere.example"));
    for reason in ["", "   "] {
        unlock(&env, &["--lock-id", "r-far"], reason)
            .assert_code(2)
            .assert_stderr_contains("--reason");
    }
    assert!(env.join(LOCK).exists());
    assert!(records(&env).is_empty());
}

#[test]
fn dry_run_an_if_over_steps_is_unverifiable_and_still_preflighted() {
    let env = TestEnv::initialized();
    env.write(
        "rb/ifout.yaml",
        "steps:
  - id: check
    continue_on_error: true
    run: [sh, -c, \"exit 1\"]
  - id: fix
    if: \"steps.check.outcome == 'failed'\"
    run: [no-such-fixer-binary]
  - id: grep
    needs: [check]
    if: \"'ERROR' in steps.check.stdout\"
    run: [\"true\"]
",
    );
    let run = env.release(&run_args("rb/ifout.yaml", C, &["--dry-run", "--json"]));
    run.assert_code(1);
    let report = json_report(&run);
    let fix = &json_step(&report, "fix")["preflight"];
    assert_eq!(fix["verdict"], "blocked", "{fix:#}");
    assert!(
        fix["reason"]
            .as_str()
            .unwrap()
            .contains("no-such-fixer-binary"),
        "{fix:#}"
    );
    let grep = &json_step(&report, "grep")["preflight"];
    assert_eq!(grep["verdict"], "warn", "{grep:#}");
    assert_eq!(grep["fidelity"], "unverifiable", "{grep:#}");
    let reason = grep["reason"].as_str().unwrap();
    assert!(
        reason.contains("runs only if `'ERROR' in steps.check.stdout`, known only in a real run"),
        "{reason}"
    );
    let records = records(&env);
    assert_eq!(finished(&records, "grep")["data"]["verdict"], "warn");
    assert_eq!(finished(&records, "fix")["data"]["verdict"], "blocked");
}

#[test]
fn confirm_ctrl_c_at_a_step_question_is_always_an_interrupt() {
    let env = TestEnv::initialized();
    env.write(
        "rb/confirm.yaml",
        "steps:
  - id: first
    run: [echo, first]
  - id: ask
    confirm: \"Really wipe db1?\"
    run: [touch, wiped]
",
    );
    // Ctrl-C used to race with the prompt's own reading of the key: try it a few times.
    for _ in 0..3 {
        let (code, screen) = release_in_pty(
            &env,
            &run_args("rb/confirm.yaml", C, &["--no-progress"]),
            &[("Really wipe db1?", "\x03")],
        );
        assert_eq!(code, 130, "{screen}");
        let records = records(&env);
        assert_eq!(run_outcome(&records), "interrupted", "{screen}");
        assert!(
            kind(&records, "step.finished")
                .iter()
                .all(|r| r["data"]["outcome"] != "declined"),
            "Ctrl-C recorded as declined"
        );
        if let Some(hidden) = screen.rfind("\x1b[?25l") {
            assert!(
                screen[hidden..].contains("\x1b[?25h"),
                "the cursor was left hidden:\n{screen:?}"
            );
        }
        std::fs::remove_file(env.join(AUDIT)).unwrap();
    }
    assert!(!env.join("wiped").exists());
}

#[test]
fn interrupt_during_a_dry_run_plan_stops_its_process_group() {
    let env = TestEnv::initialized();
    env.write(
        "rb/plan.yaml",
        "steps:
  - id: p
    run: { argv: [\"true\"], plan: [sh, -c, \"sleep 30 & echo $! > plan.pid; wait\"] }
",
    );
    let child = spawn_release(&env, &run_args("rb/plan.yaml", C, &["--dry-run"]));
    let sleeper = read_pid(&env, "plan.pid");
    send_signal(child.id(), "-TERM");
    finish(child, Duration::from_secs(10)).assert_code(130);
    assert!(
        wait_until(Duration::from_secs(2), || pid_gone(sleeper)),
        "the plan's sleep (pid {sleeper}) survived the interrupt"
    );
    let records = records(&env);
    let step = finished(&records, "p");
    assert_eq!(step["data"]["outcome"], "failed");
    assert!(
        step["data"]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{step:#}"
    );
    assert_eq!(run_outcome(&records), "interrupted");
}

#[test]
fn interrupt_sighup_stops_the_run() {
    assert_interrupted("-HUP");
}

#[test]
fn step_stdout_is_recorded_in_the_log_and_the_json_report() {
    let env = TestEnv::initialized();
    env.write(
        "rb/out.yaml",
        "steps:
  - id: say
    run: [echo, abc123]
  - id: quiet
    run: [\"true\"]
  - id: loud
    run: [sh, -c, \"yes x | head -c 10000\"]
",
    );
    let run = env.release(&run_args("rb/out.yaml", C, &["--json"]));
    run.assert_code(0);
    let records = records(&env);
    assert_eq!(finished(&records, "say")["data"]["stdout"], "abc123\n");
    assert!(finished(&records, "quiet")["data"].get("stdout").is_none());
    let loud = finished(&records, "loud")["data"]["stdout"]
        .as_str()
        .unwrap();
    assert!(loud.len() < 4200, "{} bytes recorded", loud.len());
    assert!(loud.contains("more bytes not recorded"), "{loud}");
    let report = json_report(&run);
    assert_eq!(json_step(&report, "say")["stdout"], "abc123\n");
}

#[test]
fn scheduler_when_failure_skip_names_a_continue_on_error_failure() {
    let env = TestEnv::initialized();
    env.write(
        "rb/coe.yaml",
        "steps:
  - id: t
    continue_on_error: true
    run: [sh, -c, \"exit 1\"]
  - id: onfail
    when: failure
    run: [touch, onfail]
",
    );
    let run = env.release(&run_args("rb/coe.yaml", C, &["--no-progress"]));
    run.assert_code(0);
    let records = records(&env);
    let reason = finished(&records, "onfail")["data"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        reason,
        "no step failed the run (`t` failed with continue_on_error)"
    );
    assert!(
        !run.stderr.contains("no step of the run failed"),
        "{}",
        run.transcript()
    );
}

#[test]
fn steps_stdout_is_rendered_without_its_trailing_newline() {
    let env = TestEnv::initialized();
    env.write(
        "rb/chain.yaml",
        "steps:
  - id: get
    run: [echo, abc123]
  - id: use
    run: [sh, -c, 'printf \"[%s]\" \"$1\" > used', sh, \"{{ steps.get.stdout }}\"]
",
    );
    env.release(&run_args("rb/chain.yaml", C, &[]))
        .assert_code(0);
    assert_eq!(env.read("used"), "[abc123]");
}

/// A tool that prints bytes that are not UTF-8 (a Latin-1 table name) on stdout and on
/// stderr keeps running to its end: its output is read to the last byte, the bad bytes
/// shown as U+FFFD. (Reading used to stop at the first such byte, closing the pipe, and
/// the tool died of SIGPIPE midway: a migration cut in half.)
#[test]
fn output_that_is_not_utf8_is_read_to_the_end() {
    let env = TestEnv::initialized();
    env.write(
        "rb/latin1.yaml",
        "steps:
  - id: tool
    run: [sh, -c, 'printf \"table caf\\351\\n\"; printf \"warn caf\\351\\n\" >&2; seq 1 20000; seq 1 20000 >&2; echo done > finished; echo last']
  - id: use
    run: [sh, -c, 'printf \"%s\" \"$1\" | head -n 1 > first; printf \"%s\" \"$1\" | tail -n 1 > last', sh, \"{{ steps.tool.stdout }}\"]
",
    );
    env.release(&run_args("rb/latin1.yaml", C, &[]))
        .assert_code(0);
    assert_eq!(env.read("finished"), "done\n", "the tool ran to its end");
    assert_eq!(env.read("first"), "table caf\u{fffd}\n");
    assert_eq!(env.read("last"), "last");
}

#[test]
fn audit_log_unknown_component_or_kind_is_invalid() {
    let env = logged();
    env.release(&["audit", "log", "--component", "orchestraton"])
        .assert_code(2)
        .assert_stderr_contains("did you mean `orchestration`");
    env.release(&["audit", "log", "--kind", "rolback.started"])
        .assert_code(2)
        .assert_stderr_contains("no such record kind");
    env.release(&["audit", "log", "--kind", "rn.started"])
        .assert_code(2)
        .assert_stderr_contains("did you mean `run.started`");
    env.release(&["audit", "log", "--kind", "stp."])
        .assert_code(2)
        .assert_stderr_contains("no record kind starts with `stp.`");
    // Known names with no records are not errors.
    env.release(&["audit", "log", "--component", OTHER])
        .assert_code(0)
        .assert_stdout_contains("no records");
    env.release(&["audit", "log", "--kind", "promotion.completed"])
        .assert_code(0);
    env.release(&["audit", "log", "--kind", "step."])
        .assert_code(0);
}

#[test]
fn audit_verify_expect_head_is_validated_and_compared_in_any_case() {
    let env = logged();
    let lines = audit_lines(&env);
    let head = sha256_hex(lines.last().unwrap().as_bytes());
    env.release(&["audit", "verify", "--expect-head", "zz"])
        .assert_code(2)
        .assert_stderr_contains("64 hex digits");
    env.release(&["audit", "verify", "--expect-head", &head.to_uppercase()])
        .assert_code(0);
}

#[test]
fn audit_verify_names_the_edited_line_without_vouching_for_it() {
    let env = logged();
    let mut lines = audit_lines(&env);
    lines[1] = lines[1].replacen("\"step\":\"", "\"step\":\"X", 1);
    write_lines(&env, &lines);
    let run = env.release(&["audit", "verify"]);
    run.assert_code(1)
        .assert_stderr_contains("line 2 was changed, or line 3's `prev` is wrong");
    assert!(
        !run.stderr.contains("the 2 records before it verify"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr.contains("line 1 verifies"),
        "{}",
        run.transcript()
    );
}

#[test]
fn audit_verify_says_when_there_is_no_log() {
    let env = TestEnv::initialized();
    env.release(&["audit", "verify"])
        .assert_code(0)
        .assert_stdout_contains("no audit log at");
    env.release(&["audit", "verify", "--expect-head", &"a".repeat(64)])
        .assert_code(1)
        .assert_stderr_contains("no audit log at");
}

/// The commands that record without running a runbook (attest, approve, deprecate, gates,
/// promote) say so too.
#[test]
fn audit_torn_last_line_repair_is_shown_by_attest() {
    let env = logged();
    tear(&env);
    env.release(&["attest", C, "security-review", "--note", "ok"])
        .assert_code(0)
        .assert_stderr_contains("torn last line")
        .assert_stderr_contains("audit.jsonl.torn-");
    assert_repaired(&env);
}

#[test]
fn audit_torn_last_line_repair_is_shown_on_the_terminal() {
    let env = logged();
    tear(&env);
    let run = env.release(&run_args("rb/three.yaml", C, &["--no-progress", "-q"]));
    run.assert_code(0)
        .assert_stderr_contains("torn last line")
        .assert_stderr_contains("audit.jsonl.torn-")
        .assert_stderr_contains("recorded as audit.repaired");
    assert_repaired(&env);
}
