//! `notify`, `health_check` and `migration_rollback` through the binary, against real HTTP
//! servers on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Run, TestEnv};

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// An HTTP/1.1 server on a loopback port answering from a script: `answer(n, request)`
/// gives the status and body of the n-th request (from 0).
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(answer: impl Fn(usize, &Seen) -> (u16, String) + Send + 'static) -> Self {
        Self::start_raw(move |n, request, mut stream| {
            let (status, text) = answer(n, request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        })
    }

    /// A server whose `respond(n, request, stream)` writes the answer itself (or holds the
    /// connection open on a thread of its own).
    fn start_raw(respond: impl Fn(usize, &Seen, TcpStream) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let path = parts.next().unwrap_or_default().to_owned();
                let mut headers = Vec::new();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request = Seen {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(request.clone());
                    log.len() - 1
                };
                respond(n, &request, stream);
            }
        });
        Self { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// `release ARGS` in the test folder with extra environment variables.
fn release_with(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> Run {
    env.release_with_env(args, vars)
}

const TARGET: [&str; 6] = [
    "--component",
    "orchestration",
    "--stage",
    "staging",
    "--reason",
    "5xx spike",
];

fn run_args<'a>(runbook: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", runbook];
    args.extend(TARGET);
    args.extend(extra);
    args
}

fn audit(env: &TestEnv) -> String {
    std::fs::read_to_string(env.join(".release/audit.jsonl")).unwrap_or_default()
}

#[test]
fn notify_slack_posts_text_and_never_shows_the_url() {
    let env = TestEnv::initialized();
    let server = Server::start(|_, _| (200, "ok".into()));
    let secret_url = server.url("/services/T000/B000/XXXXsecretXXXX");
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    notify: { channel: slack, message: \"Rollback of {{ component }}: {{ run.reason }}\" }\n",
    );
    let run = release_with(
        &env,
        &[("SLACK_WEBHOOK_URL", &secret_url)],
        &run_args("n.yaml", &[]),
    );
    run.assert_code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/services/T000/B000/XXXXsecretXXXX");
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json")),
        "{:?}",
        seen[0].headers
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "text": "Rollback of orchestration: 5xx spike" })
    );
    for text in [&run.stdout, &run.stderr, &audit(&env)] {
        assert!(
            !text.contains("XXXXsecretXXXX"),
            "the webhook URL leaked: {text}"
        );
    }
}

#[test]
fn notify_webhook_carries_the_run_context() {
    let env = TestEnv::initialized();
    let server = Server::start(|_, _| (204, String::new()));
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    notify: { channel: ops, message: \"started\" }\n",
    );
    let run = release_with(
        &env,
        &[("OPS_WEBHOOK_URL", &server.url("/hook"))],
        &run_args("n.yaml", &[]),
    );
    run.assert_code(0);
    let body: serde_json::Value = serde_json::from_str(&server.seen()[0].body).unwrap();
    assert_eq!(body["message"], "started");
    assert_eq!(body["component"], "orchestration");
    assert_eq!(body["stage"], "staging");
    assert_eq!(body["reason"], "5xx spike");
    assert_eq!(body["dry_run"], false);
    assert!(body["run"].as_str().unwrap().starts_with('r'));
    assert_eq!(
        body["actor"],
        "tester@".to_owned()
            + body["actor"]
                .as_str()
                .unwrap()
                .trim_start_matches("tester@")
    );
}

#[test]
fn notify_retries_a_5xx_and_fails_on_a_4xx() {
    let env = TestEnv::initialized();
    let flaky = Server::start(|n, _| {
        if n == 0 {
            (503, "busy".into())
        } else {
            (200, "ok".into())
        }
    });
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    notify: { channel: ops, message: m }\n",
    );
    release_with(
        &env,
        &[("OPS_WEBHOOK_URL", &flaky.url("/h"))],
        &run_args("n.yaml", &[]),
    )
    .assert_code(0);
    assert_eq!(flaky.seen().len(), 2, "one retry after the 503");

    let gone = Server::start(|_, _| (404, "no such hook".into()));
    let run = release_with(
        &env,
        &[("OPS_WEBHOOK_URL", &gone.url("/h"))],
        &run_args("n.yaml", &[]),
    );
    run.assert_code(1)
        .assert_stdout_contains("answered 404: no such hook");
    assert_eq!(gone.seen().len(), 1, "a 4xx is not retried");
}

#[test]
fn notify_log_channel_writes_the_message() {
    let env = TestEnv::initialized();
    env.write("n.yaml", "steps:\n  - id: tell\n    notify: { channel: console, message: \"hello {{ component }}\" }\n");
    let run = release_with(&env, &[], &run_args("n.yaml", &[]));
    run.assert_code(0)
        .assert_stderr_contains("tell | hello orchestration");
}

#[test]
fn notify_dry_run_sends_nothing_and_names_a_missing_variable() {
    let env = TestEnv::initialized();
    let server = Server::start(|_, _| (200, "ok".into()));
    env.write("n.yaml", "steps:\n  - id: tell\n    notify: { channel: slack, message: \"about {{ component }}\" }\n");
    let run = release_with(&env, &[], &run_args("n.yaml", &["--dry-run"]));
    run.assert_code(1)
        .assert_stdout_contains("environment variable SLACK_WEBHOOK_URL is not set");
    let run = release_with(
        &env,
        &[("SLACK_WEBHOOK_URL", &server.url("/s"))],
        &run_args("n.yaml", &["--dry-run"]),
    );
    run.assert_code(0)
        .assert_stdout_contains("about orchestration");
    assert!(server.seen().is_empty(), "the dry-run sent something");
    // A real run without the variable fails the step, naming the variable.
    let run = release_with(&env, &[], &run_args("n.yaml", &[]));
    run.assert_code(1)
        .assert_stdout_contains("SLACK_WEBHOOK_URL is not set");
}

#[test]
fn notify_with_a_variable_that_is_not_a_url_is_blocked_and_never_retried() {
    let env = TestEnv::initialized();
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    notify: { channel: slack, message: hi }\n",
    );
    for value in ["notaurl-s3cret", "ftp://127.0.0.1/s3cret"] {
        let vars = [("SLACK_WEBHOOK_URL", value)];
        let run = release_with(&env, &vars, &run_args("n.yaml", &["--dry-run"]));
        run.assert_code(1)
            .assert_stdout_contains("the value of SLACK_WEBHOOK_URL is not an http(s) URL");
        let run = release_with(&env, &vars, &run_args("n.yaml", &[]));
        run.assert_code(1)
            .assert_stdout_contains("the value of SLACK_WEBHOOK_URL is not an http(s) URL");
        assert!(!run.stdout.contains("attempts"), "{}", run.stdout);
        for text in [&run.stdout, &run.stderr, &audit(&env)] {
            assert!(!text.contains("s3cret"), "the value leaked: {text}");
        }
    }
}

#[test]
fn a_webhook_path_quoted_back_by_the_server_is_redacted() {
    let env = TestEnv::initialized();
    // Like many frameworks' error pages, the server quotes the path it was sent.
    let server = Server::start(|_, request| (404, format!("Cannot POST {}", request.path)));
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    notify: { channel: slack, message: hi }\n",
    );
    let url = server.url("/services/T0/B0/SLACKSECRETxyz");
    let run = release_with(
        &env,
        &[("SLACK_WEBHOOK_URL", &url)],
        &run_args("n.yaml", &[]),
    );
    run.assert_code(1).assert_stdout_contains("answered 404");
    for text in [&run.stdout, &run.stderr, &audit(&env)] {
        assert!(
            !text.contains("SLACKSECRET"),
            "the webhook's secret path leaked: {text}"
        );
    }
}

#[test]
fn a_variable_named_by_another_runbook_is_redacted_too() {
    let env = TestEnv::initialized();
    // The production rollback names `url_env: REDIS_URL`; this runbook does not, and its
    // plan prints the whole environment.
    assert!(
        env.read("runbooks/production/rollback.yaml")
            .contains("REDIS_URL")
    );
    env.write(
        "m.yaml",
        "steps:\n  - id: migration\n    migration_rollback: { run: [\"true\"], plan: [sh, -c, 'echo db=$REDIS_URL'] }\n",
    );
    let secret = "redis://:s3cretRedisPw@127.0.0.1:16391/0";
    let run = release_with(
        &env,
        &[("REDIS_URL", secret)],
        &run_args("m.yaml", &["--dry-run"]),
    );
    run.assert_code(0);
    for text in [&run.stdout, &run.stderr, &audit(&env)] {
        assert!(!text.contains("s3cretRedisPw"), "REDIS_URL leaked: {text}");
    }
    assert!(run.stdout.contains("db=[redacted]"), "{}", run.stdout);
}

#[test]
fn a_parameter_set_twice_or_required_and_empty_is_refused() {
    let env = TestEnv::initialized();
    env.write(
        "p.yaml",
        "params:\n  commit: { required: true }\nsteps:\n  - id: a\n    run: [touch, ran]\n",
    );
    let run = release_with(
        &env,
        &[],
        &run_args("p.yaml", &["--set", "commit=aaa", "--set", "commit=bbb"]),
    );
    run.assert_code(2)
        .assert_stderr_contains("parameter `commit` is set twice (`aaa`, then `bbb`)");
    let run = release_with(&env, &[], &run_args("p.yaml", &["--set", "commit="]));
    run.assert_code(2)
        .assert_stderr_contains("parameter `commit` is required and was given an empty value");
    assert!(!env.join("ran").exists());
}

#[test]
fn health_check_polls_until_healthy() {
    let env = TestEnv::initialized();
    let server = Server::start(|n, _| {
        if n < 2 {
            (503, "starting".into())
        } else {
            (200, r#"{"status":"ok","version":"2.4"}"#.into())
        }
    });
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"{}\", expect_body: ok, expect_body_regex: '\"version\":\"2\\.', attempts: 5, interval: 100ms, timeout: 1s }}\n",
            server.url("/health")
        ),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &[]));
    run.assert_code(0)
        .assert_stderr_contains("attempt 1/5: status 503, expected 200")
        .assert_stderr_contains("attempt 3/5: healthy (200)");
    assert_eq!(server.seen().len(), 3);
    assert!(
        server
            .seen()
            .iter()
            .all(|r| r.method == "GET" && r.path == "/health")
    );
}

#[test]
fn health_check_fails_when_attempts_run_out() {
    let env = TestEnv::initialized();
    let server = Server::start(|_, _| (200, "degraded".into()));
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"{}\", expect_body: healthy, attempts: 3, interval: 50ms, timeout: 1s }}\n",
            server.url("/h")
        ),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &[]));
    run.assert_code(1).assert_stdout_contains(
        "not healthy after 3 attempts: status 200 but the body lacks \"healthy\"",
    );
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn health_check_dry_run_is_one_get_and_never_blocks() {
    let env = TestEnv::initialized();
    let down = Server::start(|_, _| (503, "down".into()));
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"{}\", attempts: 10, interval: 1s, timeout: 1s }}\n",
            down.url("/h")
        ),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &["--dry-run"]));
    run.assert_code(0)
        .assert_stdout_contains("warn")
        .assert_stdout_contains("not healthy now (status 503");
    assert_eq!(down.seen().len(), 1, "a preflight is one GET");

    // Nothing listens: still a warning, not a block.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write(
        "h.yaml",
        &format!("steps:\n  - id: health\n    health_check: {{ url: \"http://127.0.0.1:{port}/h\", timeout: 1s }}\n"),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &["--dry-run"]));
    run.assert_code(0).assert_stdout_contains("cannot connect");
}

#[test]
fn health_check_reading_a_step_output_is_unverifiable_and_sends_nothing() {
    let env = TestEnv::initialized();
    let server = Server::start(|_, _| (200, "ok".into()));
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: find\n    run: [echo, /health]\n  - id: health\n    health_check: {{ url: \"{}{{{{ steps.find.stdout }}}}\" }}\n",
            server.url("")
        ),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &["--dry-run", "--json"]));
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let step = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "health")
        .unwrap();
    assert_eq!(step["preflight"]["verdict"], "warn", "{step}");
    assert_eq!(step["preflight"]["fidelity"], "unverifiable", "{step}");
    assert!(
        server.seen().is_empty(),
        "the dry-run probed a URL it cannot know"
    );
    // The real run uses the output.
    let run = release_with(&env, &[], &run_args("h.yaml", &[]));
    run.assert_code(0);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].path, "/health");
}

#[test]
fn migration_rollback_plans_in_the_dry_run_and_runs_for_real() {
    let env = TestEnv::initialized();
    env.write(
        "tool.sh",
        "#!/bin/sh\nif [ \"$2\" = --sql ]; then echo \"DROP TABLE widgets; -- down to $1\"; else echo \"rolled back to $1\" > rolled-back; fi\n",
    );
    std::fs::set_permissions(
        env.join("tool.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    env.write(
        "m.yaml",
        "params:\n  migration: { required: true }\nsteps:\n  - id: migration\n    migration_rollback:\n      run: [./tool.sh, \"{{ params.migration }}\"]\n      plan: [./tool.sh, \"{{ params.migration }}\", --sql]\n",
    );
    let run = release_with(
        &env,
        &[],
        &run_args("m.yaml", &["--set", "migration=0042", "--dry-run"]),
    );
    run.assert_code(0)
        .assert_stdout_contains("planned")
        .assert_stdout_contains("| DROP TABLE widgets; -- down to 0042");
    assert!(
        !env.join("rolled-back").exists(),
        "the dry-run ran the rollback"
    );
    release_with(&env, &[], &run_args("m.yaml", &["--set", "migration=0042"])).assert_code(0);
    assert_eq!(env.read("rolled-back"), "rolled back to 0042\n");
}

#[test]
fn a_plan_that_cannot_start_is_blocked_and_not_called_planned() {
    let env = TestEnv::initialized();
    env.write(
        "m.yaml",
        "steps:\n  - id: m\n    migration_rollback: { run: [\"true\"], plan: [no-such-plan-tool, --sql] }\n",
    );
    let run = release_with(&env, &[], &run_args("m.yaml", &["--dry-run"]));
    run.assert_code(1)
        .assert_stdout_contains("cannot start `no-such-plan-tool`");
    let data = &audit(&env)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "step.finished")
        .unwrap()["data"];
    assert_eq!(data["verdict"], "blocked", "{data}");
    assert_eq!(data["fidelity"], "checked", "{data}");
}

/// A plan that succeeds proves nothing of a rollback tool that is not installed: the
/// dry-run checks the `run` executable too (it used to run the plan only, and a rehearsal
/// that counts for `rollback_tested` passed).
#[test]
fn a_plan_does_not_excuse_a_missing_rollback_tool() {
    let env = TestEnv::initialized();
    env.write(
        "m.yaml",
        "steps:\n  - id: m\n    migration_rollback: { run: [alembic-not-installed, downgrade, \"-1\"], plan: [echo, SQL] }\n",
    );
    let run = release_with(&env, &[], &run_args("m.yaml", &["--dry-run"]));
    run.assert_code(1)
        .assert_stdout_contains("`alembic-not-installed` is not found on PATH");
}

/// A long plan shows its first 40 lines and says how many more there are; the audit log
/// and `--json` keep its first 64 KiB, with a note. The step's `timeout` is the plan's
/// limit (60 s without one), and a plan that overruns it says so.
#[test]
fn a_long_plan_is_cut_with_a_note_and_a_slow_one_names_its_limit() {
    let env = TestEnv::initialized();
    env.write(
        "m.yaml",
        "steps:\n  - id: m\n    migration_rollback: { run: [\"true\"], plan: [seq, 1, 20000] }\n",
    );
    let run = release_with(&env, &[], &run_args("m.yaml", &["--dry-run"]));
    run.assert_code(0)
        .assert_stdout_contains("| 40\n")
        .assert_stdout_contains("more lines (--json and the audit log keep the first 64 KiB)")
        .assert_stdout_contains(" more bytes not recorded]\n");
    assert!(!run.stdout.contains("| 41\n"), "{}", run.stdout);
    let data = &audit(&env)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "step.finished")
        .unwrap()["data"];
    let output = data["preflight"]["output"].as_str().unwrap();
    assert!(output.len() < 66 * 1024, "{}", output.len());
    assert!(output.starts_with("1\n2\n"), "{output:.40}");
    assert!(
        output.ends_with(" more bytes not recorded]\n"),
        "{}",
        &output[output.len() - 80..]
    );

    env.write(
        "slow.yaml",
        "steps:\n  - id: m\n    timeout: 1s\n    migration_rollback: { run: [\"true\"], plan: [sleep, \"30\"] }\n",
    );
    let run = release_with(&env, &[], &run_args("slow.yaml", &["--dry-run"]));
    run.assert_code(1).assert_stdout_contains(
        "plan `sleep 30` ran longer than 1.0s (the step's timeout) and was stopped",
    );
}

#[test]
fn migration_examples_validate() {
    let env = TestEnv::initialized();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for tool in ["alembic", "sqlx", "dbmate", "flyway"] {
        let text =
            std::fs::read_to_string(repo.join(format!("examples/migrations/{tool}.yaml"))).unwrap();
        env.write(&format!("m/{tool}.yaml"), &text);
        env.release(&["runbook", "validate", &format!("m/{tool}.yaml")])
            .assert_code(0);
    }
}

/// A raw `302`/`307` answer pointing at `to`.
fn redirect(mut stream: TcpStream, status: u16, to: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Moved\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

/// A redirect is answered, not followed: a webhook's POST turned into a GET delivers
/// nothing, and the 200 at its end used to read as delivered; the secret URL (as Referer)
/// and the purge's secret header went along to the other server.
#[test]
fn notifications_and_purges_do_not_follow_redirects() {
    let env = TestEnv::initialized();
    let elsewhere = Server::start(|_, _| (200, "ok".into()));
    let landing = elsewhere.url("/landing");
    let to = landing.clone();
    let hook = Server::start_raw(move |_, _, stream| redirect(stream, 302, &to));
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    notify: { channel: ops, message: m }\n",
    );
    let secret = hook.url("/hooks/very-secret-path");
    let run = release_with(
        &env,
        &[("OPS_WEBHOOK_URL", &secret)],
        &run_args("n.yaml", &[]),
    );
    run.assert_code(1).assert_stdout_contains(&format!(
        "answered 302, a redirect to http://127.0.0.1:{}/… (release does not follow redirects: use the URL it points to)",
        elsewhere.port
    ));
    for text in [&run.stdout, &run.stderr, &audit(&env)] {
        assert!(!text.contains("very-secret-path"), "{}", run.transcript());
    }
    assert_eq!(hook.seen().len(), 1, "a redirect is not a failure to retry");

    let to = landing.clone();
    let cdn = Server::start_raw(move |_, _, stream| redirect(stream, 307, &to));
    env.write(
        "p.yaml",
        &format!(
            "steps:\n  - id: purge\n    cache_clear: {{ http: {{ url: \"{}\", headers_env: {{ X-Purge-Token: PURGE_TOKEN }} }} }}\n",
            cdn.url("/purge")
        ),
    );
    let run = release_with(
        &env,
        &[("PURGE_TOKEN", "purge-token-value")],
        &run_args("p.yaml", &[]),
    );
    run.assert_code(1).assert_stdout_contains(&format!(
        "answered 307, a redirect to http://127.0.0.1:{}/…",
        elsewhere.port
    ));
    assert_eq!(cdn.seen().len(), 1);

    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"{}\", attempts: 1 }}\n",
            cdn.url("/health")
        ),
    );
    release_with(&env, &[], &run_args("h.yaml", &[]))
        .assert_code(1)
        .assert_stdout_contains(&format!(
            "status 307, expected 200: a redirect to {landing} (not followed: use that URL)"
        ));
    assert!(
        elsewhere.seen().is_empty(),
        "nothing reached the other server: {:?}",
        elsewhere.seen()
    );
}

/// A 200 whose body is cut off, or stops arriving before the timeout, is not healthy: half
/// an answer proves nothing (it used to count as healthy, its body taken for empty).
#[test]
fn health_check_counts_a_body_cut_off_or_late_as_a_failed_attempt() {
    let env = TestEnv::initialized();
    let server = Server::start_raw(|n, _, mut stream| {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n";
        match n {
            0 => {
                let _ = write!(stream, "{head}ok partial");
            }
            1 => {
                std::thread::spawn(move || {
                    let _ = write!(stream, "{head}ok");
                    std::thread::sleep(Duration::from_secs(5));
                });
            }
            _ => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        }
    });
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"{}\", expect_body: ok, attempts: 3, interval: 50ms, timeout: 1s }}\n",
            server.url("/health")
        ),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &[]));
    run.assert_code(0)
        .assert_stderr_contains("attempt 1/3: status 200, but its body was cut off")
        .assert_stderr_contains(
            "attempt 2/3: status 200, but its body did not arrive before the timeout",
        )
        .assert_stderr_contains("attempt 3/3: healthy (200)");
}

/// The step's `timeout` bounds a health check's whole polling and a notification with its
/// retries (`timed_out`), and a notification that reached the server is not sent again
/// when its answer is late (it may have been posted). Ctrl-C stops a request in flight
/// at once.
#[test]
fn the_step_timeout_and_ctrl_c_bound_health_checks_and_notifications() {
    let env = TestEnv::initialized();
    let down = Server::start(|_, _| (503, "down".into()));
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    timeout: 1s\n    health_check: {{ url: \"{}\", attempts: 50, interval: 200ms, timeout: 1s }}\n",
            down.url("/health")
        ),
    );
    let started = Instant::now();
    let run = release_with(&env, &[], &run_args("h.yaml", &[]));
    run.assert_code(1).assert_stdout_contains(
        "not healthy within the step's timeout (1.0s): status 503, expected 200",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(audit(&env).contains(r#""outcome":"timed_out""#));

    let slow = Server::start_raw(|_, _, mut stream| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        });
    });
    env.write(
        "n.yaml",
        "steps:\n  - id: tell\n    timeout: 1s\n    notify: { channel: ops, message: m }\n",
    );
    let run = release_with(
        &env,
        &[("OPS_WEBHOOK_URL", &slow.url("/hook"))],
        &run_args("n.yaml", &[]),
    );
    run.assert_code(1)
        .assert_stdout_contains("no answer within the step's timeout (1.0s); it may have arrived");
    assert_eq!(slow.seen().len(), 1, "posted once, not again");

    let hanging = Server::start_raw(|_, _, stream| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            drop(stream);
        });
    });
    env.write(
        "hang.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"{}\", attempts: 3, interval: 1s, timeout: 30s }}\n",
            hanging.url("/health")
        ),
    );
    let mut child = env
        .command()
        .args(run_args("hang.yaml", &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hanging.seen().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hanging.seen().len(), 1, "the request is in flight");
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    let interrupted = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        interrupted.elapsed() < Duration::from_secs(3),
        "stopped at once, not after the request's 30s: {:?}",
        interrupted.elapsed()
    );
}

/// A request that cannot connect says why (here: TLS spoken to a plain HTTP server), in
/// the step's own report, and no library log line repeats it on stderr.
#[test]
fn a_failed_connection_names_its_cause_without_library_log_lines() {
    let env = TestEnv::initialized();
    let plain = Server::start(|_, _| (200, "ok".into()));
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"https://127.0.0.1:{}/health\", attempts: 1, timeout: 2s }}\n",
            plain.port
        ),
    );
    let run = release_with(&env, &[], &run_args("h.yaml", &["--dry-run"]));
    run.assert_code(0)
        .assert_stdout_contains("cannot connect: tls handshake eof");
    assert!(!run.stderr.contains("ERROR"), "{}", run.transcript());
}

/// A password in a health check's URL is sent (basic auth) but never shown: not in the
/// report, the progress lines or the audit log, dry or real.
#[test]
fn a_password_in_a_health_url_is_never_shown() {
    let env = TestEnv::initialized();
    let server = Server::start(|_, _| (503, "down".into()));
    env.write(
        "h.yaml",
        &format!(
            "steps:\n  - id: health\n    health_check: {{ url: \"http://admin:hunter2pw@127.0.0.1:{}/h\", attempts: 1, timeout: 1s }}\n",
            server.port
        ),
    );
    for extra in [&["--dry-run"][..], &[][..]] {
        let run = release_with(&env, &[], &run_args("h.yaml", extra));
        run.assert_stdout_contains(&format!("http://127.0.0.1:{}/h", server.port));
        for text in [&run.stdout, &run.stderr, &audit(&env)] {
            assert!(!text.contains("hunter2pw"), "{}", run.transcript());
        }
    }
    // Known only in a real run, the URL is shown as written: still without the password.
    env.write(
        "h2.yaml",
        "steps:\n  - id: a\n    run: [echo, h]\n  - id: health\n    health_check: { url: \"http://admin:hunter2pw@127.0.0.1:9/{{ steps.a.stdout }}\" }\n",
    );
    let run = release_with(&env, &[], &run_args("h2.yaml", &["--dry-run"]));
    run.assert_stdout_contains("GET http://127.0.0.1:9/{{ steps.a.stdout }}");
    for text in [&run.stdout, &run.stderr, &audit(&env)] {
        assert!(!text.contains("hunter2pw"), "{}", run.transcript());
    }
    let authorization = server.seen()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(authorization.as_deref(), Some("Basic YWRtaW46aHVudGVyMnB3"));
}
