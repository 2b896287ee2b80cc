//! The default production rollback runbook, end to end on a sandbox with real parts: a git
//! repository with a bare `origin`, a real `redis-server`, a Slack webhook and a health
//! endpoint on 127.0.0.1, and the local incident tracker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

use crate::harness::{Run, TestEnv};

/// A redis-server on a free loopback port, stopped on drop.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let redis = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, pattern: &str) -> usize {
        self.cli(&["--scan", "--pattern", pattern]).lines().count()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server recording requests and answering 200 with `body`.
struct Http {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Http {
    fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim_end().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut payload = vec![0; length];
                reader.read_exact(&mut payload).unwrap();
                let mut parts = first.split_whitespace();
                log.lock().unwrap().push((
                    parts.next().unwrap_or_default().to_owned(),
                    parts.next().unwrap_or_default().to_owned(),
                    String::from_utf8_lossy(&payload).into_owned(),
                ));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn bodies(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A project after `release init` that is also a git repository with a bare origin, the
/// component's vars pointing at the test servers, and a bad commit to roll back.
struct Sandbox {
    env: TestEnv,
    origin: tempfile::TempDir,
    redis: Redis,
    slack: Http,
    health: Http,
    bad: String,
}

impl Sandbox {
    fn new() -> Self {
        let env = TestEnv::initialized();
        let redis = Redis::start(env.path());
        let slack = Http::start("ok");
        let health = Http::start(r#"{"status":"ok"}"#);
        let config = env
            .read("release.yaml")
            .replace("http://127.0.0.1:8080/health", &health.url("/health"));
        env.write("release.yaml", &config);
        let dir = env.path();
        git(dir, &["init", "-q", "-b", "main"]);
        git(dir, &["config", "user.name", "On Call"]);
        git(dir, &["config", "user.email", "oncall@example.com"]);
        env.write("src/orchestration/service.txt", "version 1\n");
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "orchestration v1"]);
        env.write("src/orchestration/service.txt", "version 2 (bad)\n");
        git(dir, &["commit", "-q", "-am", "orchestration v2"]);
        let bad = git(dir, &["rev-parse", "HEAD"]);
        let origin = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "--bare", "-b", "main"]);
        git(
            dir,
            &["remote", "add", "origin", origin.path().to_str().unwrap()],
        );
        git(dir, &["push", "-q", "origin", "main"]);
        for i in 0..40 {
            redis.cli(&["SET", &format!("orch:{i}"), "x"]);
        }
        redis.cli(&["SET", "px:keep", "x"]);
        Self {
            env,
            origin,
            redis,
            slack,
            health,
            bad,
        }
    }

    fn release(&self, args: &[&str]) -> Run {
        self.release_with_redis(args, &format!("redis://127.0.0.1:{}", self.redis.port))
    }

    /// As [`release`](Self::release), with `REDIS_URL` set to `redis_url`.
    fn release_with_redis(&self, args: &[&str], redis_url: &str) -> Run {
        let mut command = Command::cargo_bin("release").unwrap();
        command
            .current_dir(self.env.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.env.join(".home"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("NO_COLOR", "1")
            .env(
                "SLACK_WEBHOOK_URL",
                self.slack.url("/services/T0/B0/secret-path-123"),
            )
            .env("REDIS_URL", redis_url)
            .args(args)
            .stdin(Stdio::null());
        let out = command.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn refs(&self) -> (String, String, Vec<u8>) {
        (
            git(self.env.path(), &["rev-parse", "HEAD"]),
            git(self.origin.path(), &["rev-parse", "main"]),
            std::fs::read(self.env.join(".git/index")).unwrap(),
        )
    }

    fn incidents(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.env.join(".release/incidents"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "md"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn production_rollback_dry_run_changes_nothing_and_is_ready() {
    let sandbox = Sandbox::new();
    let before = sandbox.refs();
    let commit = format!("commit={}", sandbox.bad);
    let run = sandbox.release(&[
        "rollback",
        "orchestration",
        "--stage",
        "production",
        "--set",
        &commit,
        "--dry-run",
    ]);
    run.assert_code(0).assert_stdout_contains("nothing blocked");
    for step in [
        "notify-start",
        "revert",
        "migration",
        "caches",
        "verify",
        "health",
        "incident",
    ] {
        assert!(
            run.stdout.contains(step),
            "{step} missing from\n{}",
            run.stdout
        );
    }
    run.assert_stdout_contains("simulated"); // the in-memory revert and the key count
    run.assert_stdout_contains("40 keys");
    assert_eq!(before, sandbox.refs(), "the dry-run changed git state");
    assert_eq!(sandbox.redis.keys("orch:*"), 40, "the dry-run deleted keys");
    assert!(sandbox.slack.bodies().is_empty(), "the dry-run notified");
    assert!(
        sandbox.incidents().is_empty(),
        "the dry-run opened an incident"
    );
    for text in [
        &run.stdout,
        &run.stderr,
        &sandbox.env.read(".release/audit.jsonl"),
    ] {
        assert!(!text.contains("secret-path-123"));
    }
}

/// A Prometheus answering every instant query with one series at `value`.
const PROMETHEUS_UP: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1764000000,"0.999"]}]}}"#;

impl Sandbox {
    /// Takes both components to production through `release promote`, with every default
    /// production gate passing for real: coverage reports, a Prometheus on 127.0.0.1, the
    /// security review attested, the rollback rehearsed (a dry-run), the docs, no critical
    /// issue. `stable_for` is shortened to 0s (a real week cannot pass in a test).
    fn promote_to_production(&self, prometheus: &Http) {
        let config = self
            .env
            .read("release.yaml")
            .replace("http://127.0.0.1:8081/health", &self.health.url("/health"))
            .replace("http://127.0.0.1:9090", &prometheus.url(""))
            .replace("stable_for: 7d", "stable_for: 0s")
            .replace(
                "    - { id: unit-tests, run: [uv, run, pytest, \"tests/{{ component }}\"] }\n",
                "    - { id: unit-tests, run: [\"true\"] }\n",
            )
            .replace(
                "    - { id: lint, run: [uv, run, ruff, check, \"src/{{ component }}\"] }\n",
                "",
            );
        assert!(!config.contains("uv, run"), "release.yaml changed shape");
        self.env.write("release.yaml", &config);
        for component in ["player_experience", "orchestration"] {
            self.env.write(
                &format!("coverage/{component}.xml"),
                r#"<?xml version="1.0" ?><coverage version="7.6.1" timestamp="1" lines-valid="200" lines-covered="184" line-rate="0.92" branches-covered="0" branches-valid="0" branch-rate="0" complexity="0"><packages/></coverage>"#,
            );
            self.env
                .write(&format!("src/{component}/README.md"), "# docs\n");
            self.env.write(&format!("specs/{component}.md"), "# spec\n");
        }
        let dir = self.env.path();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "docs and coverage"]);
        git(dir, &["push", "-q", "origin", "main"]);
        let commit = format!("commit={}", self.bad);
        for component in ["player_experience", "orchestration"] {
            self.release(&["attest", component, "security-review", "--note", "ok"])
                .assert_code(0);
            self.release(&[
                "rollback",
                component,
                "--stage",
                "production",
                "--set",
                &commit,
                "--dry-run",
            ])
            .assert_code(0);
        }
        for (component, stage) in [
            ("player_experience", "staging"),
            ("orchestration", "staging"),
            ("player_experience", "production"),
            ("orchestration", "production"),
        ] {
            self.release(&[
                "promote",
                component,
                "--to",
                stage,
                "--reason",
                "release 42",
                "--yes",
            ])
            .assert_code(0)
            .assert_stdout_contains(&format!("promoted {component}"));
        }
    }
}

#[test]
fn production_rollback_runs_for_real_with_every_part() {
    let sandbox = Sandbox::new();
    let prometheus = Http::start(PROMETHEUS_UP);
    sandbox.promote_to_production(&prometheus);
    let slack_before = sandbox.slack.bodies().len();
    let commit = format!("commit={}", sandbox.bad);
    // The default runbook, whole: its `verify` step re-evaluates the production gates.
    let run = sandbox.release(&[
        "rollback",
        "orchestration",
        "--stage",
        "production",
        "--set",
        &commit,
        "--set",
        "impact=checkout down for 4% of users",
        "--reason",
        "5xx spike",
        "--yes",
    ]);
    run.assert_code(0);
    let audit = sandbox.env.read(".release/audit.jsonl");
    let verified = audit
        .lines()
        .find(|l| l.contains("\"step.finished\"") && l.contains("\"step\":\"verify\""))
        .expect("a verify step record");
    assert!(verified.contains("\"outcome\":\"succeeded\""), "{verified}");

    // Notified first.
    let slack = sandbox.slack.bodies()[slack_before..].to_vec();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(slack[0].contains("Production rollback initiated for orchestration: 5xx spike"));
    // Reverted and pushed.
    let dir = sandbox.env.path();
    assert_eq!(
        sandbox.env.read("src/orchestration/service.txt"),
        "version 1\n"
    );
    let subject = git(dir, &["log", "-1", "--format=%s"]);
    assert_eq!(subject, "Revert \"orchestration v2\"");
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        git(sandbox.origin.path(), &["rev-parse", "main"])
    );
    // Caches cleared, others kept.
    assert_eq!(sandbox.redis.keys("orch:*"), 0);
    assert_eq!(sandbox.redis.keys("px:*"), 1);
    // Healthy.
    assert!(!sandbox.health.bodies().is_empty());
    // The incident, with reason, time and impact.
    let incidents = sandbox.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let issue = std::fs::read_to_string(&incidents[0]).unwrap();
    for needle in [
        "Production rollback: orchestration",
        "Rollback reason: 5xx spike",
        "Impact: checkout down for 4% of users",
        "component:orchestration",
    ] {
        assert!(issue.contains(needle), "{needle} missing from\n{issue}");
    }
    // The chain verifies and the secret is nowhere.
    sandbox.release(&["audit", "verify"]).assert_code(0);
    for text in [
        &run.stdout,
        &run.stderr,
        &sandbox.env.read(".release/audit.jsonl"),
    ] {
        assert!(!text.contains("secret-path-123"));
    }
}

#[test]
fn a_production_rollback_that_failed_is_resumed_without_reverting_twice() {
    let sandbox = Sandbox::new();
    let prometheus = Http::start(PROMETHEUS_UP);
    sandbox.promote_to_production(&prometheus);
    let slack_before = sandbox.slack.bodies().len();
    let commit = format!("commit={}", sandbox.bad);
    let args = [
        "rollback",
        "orchestration",
        "--stage",
        "production",
        "--set",
        &commit,
        "--reason",
        "5xx spike",
        "--yes",
    ];
    // Redis is unreachable: the revert is done and pushed, the cache clear fails, the
    // incident (when: always) is opened, the rest is skipped.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("redis://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let failed = sandbox.release_with_redis(&args, &dead);
    failed.assert_code(1);
    let dir = sandbox.env.path();
    let reverts = || {
        git(dir, &["log", "--format=%s", "--grep=^Revert"])
            .lines()
            .count()
    };
    assert_eq!(reverts(), 1);
    assert_eq!(sandbox.redis.keys("orch:*"), 40);
    assert_eq!(sandbox.incidents().len(), 1);
    let audit = sandbox.env.read(".release/audit.jsonl");
    let id = audit
        .lines()
        .rfind(|l| l.contains("\"run.started\""))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|r| r["run"].as_str().map(str::to_owned))
        .expect("the rollback's run id");
    failed.assert_stdout_contains(&format!("release resume {id}"));

    // Redis is back: the resume goes on from the cache clear.
    let resumed = sandbox.release(&["resume", &id, "--yes"]);
    resumed.assert_code(0);
    assert_eq!(reverts(), 1, "the resume reverted again");
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        git(sandbox.origin.path(), &["rev-parse", "main"])
    );
    assert_eq!(sandbox.redis.keys("orch:*"), 0);
    assert_eq!(sandbox.redis.keys("px:*"), 1);
    assert_eq!(
        sandbox.slack.bodies().len(),
        slack_before + 1,
        "notified twice"
    );
    assert_eq!(sandbox.incidents().len(), 1, "a second incident was opened");
    let audit = sandbox.env.read(".release/audit.jsonl");
    let resumed_record = audit
        .lines()
        .find(|l| l.contains("\"run.resumed\""))
        .expect("a run.resumed record");
    for step in ["notify-start", "revert"] {
        assert!(
            resumed_record.contains(&format!("\"{step}\"")),
            "{resumed_record}"
        );
    }
    sandbox.release(&["audit", "verify"]).assert_code(0);
}
