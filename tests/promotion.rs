//! Promotion through the real binary (issue 6): the rules (next stage, dependencies, not
//! deprecated), every gate kind of SPEC §3 passing and failing, `release gates` and its
//! report file, `--file-blockers`, `promote` (real, refused, dry-run), `attest`, `approve`,
//! `deprecate`, the `verify` runbook action, and a whole development → staging →
//! production story with a rehearsed rollback.
//!
//! Real parts only: git repositories with a bare `origin`, coverage reports produced by
//! real tools (`tests/fixtures/coverage/`), a Prometheus-compatible HTTP server on
//! 127.0.0.1 (wiremock), the local incident tracker, and audit logs written by hand with
//! past timestamps (a valid hash chain, as any writer following SPEC §7 would produce).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{Run, TestEnv};

const AUDIT: &str = ".release/audit.jsonl";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

// ---------------------------------------------------------------------------------------
// The project

/// release.yaml with three components (`web` depends on `api`; `billing` on nothing) and
/// `gates` (YAML lines indented by two spaces, e.g. `  staging:\n    - {…}\n`).
fn config(gates: &str) -> String {
    format!(
        "version: 1
incidents: local
components:
  api: {{ path: src/api, spec: specs/api.md }}
  web: {{ path: src/web, spec: specs/web.md, depends_on: [api] }}
  billing: {{ path: src/billing, spec: specs/billing.md }}
gates:
{gates}"
    )
}

fn project(gates: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write("release.yaml", &config(gates));
    env
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
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

/// Makes the project a git repository (acting as `email`) with everything committed;
/// returns HEAD.
fn init_git(env: &TestEnv, email: &str) -> String {
    let dir = env.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test"]);
    git(dir, &["config", "user.email", email]);
    env.write(".gitignore", ".release/\n.home/\nworkflow_report_*.json\n");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "start"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Who `release` records as the actor from now on (git's user.email in the project).
fn act_as(env: &TestEnv, email: &str) {
    git(env.path(), &["config", "user.email", email]);
}

fn commit_all(env: &TestEnv, message: &str) -> String {
    git(env.path(), &["add", "-A"]);
    git(env.path(), &["commit", "-q", "-m", message]);
    git(env.path(), &["rev-parse", "HEAD"])
}

fn sha256_of(env: &TestEnv, relative: &str) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(env.join(relative)).expect("read"),
    ))
}

// ---------------------------------------------------------------------------------------
// What the binary left behind

fn records(env: &TestEnv) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(env.join(AUDIT)) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}

/// Waits (10 s at most) for a step or gate to create `file` in the project: it has started.
#[track_caller]
fn wait_for_file(env: &TestEnv, file: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !env.join(file).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(env.join(file).exists(), "{file} never appeared");
}

fn of_kind(env: &TestEnv, kind: &str) -> Vec<Value> {
    records(env)
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

fn kinds(env: &TestEnv) -> Vec<String> {
    records(env)
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn report_file(env: &TestEnv, component: &str) -> Value {
    let text = env.read(&format!("workflow_report_{component}.json"));
    serde_json::from_str(&text).expect("the report is JSON")
}

/// A gate's result by id, in a report or in a `gates.evaluated` record's data.
#[track_caller]
fn gate<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["id"] == id))
        .unwrap_or_else(|| panic!("no gate `{id}` in {report:#}"))
}

#[track_caller]
fn rule<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["id"] == id))
        .unwrap_or_else(|| panic!("no rule `{id}` in {report:#}"))
}

fn summary(result: &Value) -> &str {
    result["summary"].as_str().unwrap_or_default()
}

#[track_caller]
fn assert_gate(report: &Value, id: &str, passed: bool, needle: &str) {
    let result = gate(report, id);
    assert_eq!(result["passed"], passed, "gate {id}: {result:#}");
    assert!(
        summary(result).contains(needle),
        "gate {id}: summary lacks {needle:?}: {result:#}"
    );
}

/// `release gates COMPONENT --stage STAGE`, and the report file it wrote.
fn evaluate(env: &TestEnv, component: &str, stage: &str) -> (Run, Value) {
    let run = env.release(&["gates", component, "--stage", stage]);
    assert!(
        run.code == 0 || run.code == 1,
        "gates exits 0 or 1\n{}",
        run.transcript()
    );
    (run, report_file(env, component))
}

/// The issue files of the local tracker.
fn incidents(env: &TestEnv) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(env.join(".release/incidents"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The lock files under `.release/locks/`.
fn lock_files(env: &TestEnv) -> Vec<PathBuf> {
    std::fs::read_dir(env.join(".release/locks"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "lock"))
                .collect()
        })
        .unwrap_or_default()
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/coverage")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Audit history written with past timestamps

/// An audit log written by the test, as any writer following SPEC §7 would: `v`, `seq`,
/// `ts`, `run`, `kind`, `actor`, `component`, `stage`, `data`, and `prev`, the lowercase hex
/// SHA-256 of the previous line's bytes (64 zeros first). Records go in time order.
struct PastLog {
    now: DateTime<Utc>,
    lines: Vec<String>,
}

impl PastLog {
    fn new() -> Self {
        Self {
            now: Utc::now(),
            lines: Vec::new(),
        }
    }

    fn prev(&self) -> String {
        self.lines.last().map_or_else(
            || "0".repeat(64),
            |l| hex::encode(Sha256::digest(l.as_bytes())),
        )
    }

    /// One record, `ago` before now; `fields` holds run, kind, actor, component, stage, data.
    fn push(&mut self, ago: TimeDelta, fields: &Value) -> &mut Self {
        let seq = self.lines.len() + 1;
        let ts = (self.now - ago).to_rfc3339_opts(SecondsFormat::Millis, true);
        let field = |k: &str| serde_json::to_string(&fields[k]).expect("json");
        let line = format!(
            r#"{{"v":1,"seq":{seq},"ts":"{ts}","run":{},"kind":{},"actor":{},"component":{},"stage":{},"data":{},"prev":"{}"}}"#,
            field("run"),
            field("kind"),
            field("actor"),
            field("component"),
            field("stage"),
            field("data"),
            self.prev()
        );
        self.lines.push(line);
        self
    }

    fn run_id(&self) -> String {
        format!("r-past-{}", self.lines.len() + 1)
    }

    fn promoted(&mut self, ago: TimeDelta, component: &str, from: &str, to: &str) -> &mut Self {
        let run = self.run_id();
        self.push(
            ago,
            &json!({
                "run": run, "kind": "promotion.completed", "actor": ALICE,
                "component": component, "stage": to,
                "data": { "from": from, "to": to, "commit": "1".repeat(40), "reason": "release" },
            }),
        )
    }

    /// A rollback run of `stage`'s rollback runbook (hash `sha`), started `ago` and
    /// finished a minute later with `outcome`.
    fn rollback(
        &mut self,
        ago: TimeDelta,
        (component, stage): (&str, &str),
        dry_run: bool,
        outcome: &str,
        sha: &str,
    ) -> &mut Self {
        let run = self.run_id();
        let runbook = format!("runbooks/{stage}/rollback.yaml");
        self.push(
            ago,
            &json!({
                "run": run, "kind": "run.started", "actor": ALICE,
                "component": component, "stage": stage,
                "data": {
                    "command": ["release", "rollback", component, "--stage", stage],
                    "runbook": runbook, "runbook_sha256": sha, "params": { "commit": "abc123" },
                    "dry_run": dry_run, "reason": "5xx spike", "purpose": "rollback",
                },
            }),
        )
        .push(
            ago - TimeDelta::minutes(1),
            &json!({
                "run": run, "kind": "run.finished", "actor": ALICE,
                "component": component, "stage": stage,
                "data": { "outcome": outcome },
            }),
        )
    }

    fn attested(&mut self, ago: TimeDelta, actor: &str, component: &str, check: &str) -> &mut Self {
        let run = self.run_id();
        self.push(
            ago,
            &json!({
                "run": run, "kind": "attestation.recorded", "actor": actor,
                "component": component, "stage": "development",
                "data": { "check": check, "note": "done long ago" },
            }),
        )
    }

    fn approved(&mut self, ago: TimeDelta, actor: &str, component: &str, to: &str) -> &mut Self {
        let run = self.run_id();
        self.push(
            ago,
            &json!({
                "run": run, "kind": "approval.recorded", "actor": actor,
                "component": component, "stage": to,
                "data": { "to": to, "note": null },
            }),
        )
    }

    fn write(&self, env: &TestEnv) {
        let mut text = self.lines.join("\n");
        text.push('\n');
        env.write(AUDIT, &text);
    }
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

// ---------------------------------------------------------------------------------------
// The rules

const STAGING_TRUE: &str = "  staging:\n    - { id: tests, run: [\"true\"] }\n";

#[test]
fn skipping_a_stage_is_refused_with_exit_3_without_running_the_gates() {
    let env = project(&format!(
        "{STAGING_TRUE}  production:\n    - {{ id: ran, run: [touch, gate-ran] }}\n"
    ));
    let run = env.release(&["promote", "api", "--to", "production", "--reason", "hurry"]);
    run.assert_code(3)
        .assert_stdout_contains("api is at development: production would skip staging")
        .assert_stdout_contains("release promote api --to staging");
    assert!(
        !env.join("gate-ran").exists(),
        "a promotion refused by the rules ran the gates"
    );
    assert_eq!(kinds(&env), ["promotion.refused"]);
    let refused = &of_kind(&env, "promotion.refused")[0];
    assert_eq!(refused["component"], "api");
    assert_eq!(refused["stage"], "production");
    assert_eq!(refused["data"]["to"], "production");
    assert_eq!(
        refused["data"]["reasons"],
        json!(["next-stage: api is at development: production would skip staging"])
    );
    assert!(
        !env.join("workflow_report_api.json").exists(),
        "no gate was evaluated, so no report"
    );
    // `release audit log --json` shows the same record.
    let run = env.release(&["--json", "audit", "log", "--kind", "promotion.refused"]);
    run.assert_code(0);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert_eq!(lines[0]["data"]["reasons"], refused["data"]["reasons"]);
    env.release(&["promote", "api", "--to", "prod"])
        .assert_code(2)
        .assert_stderr_contains("production");

    // Nothing is promoted into the first stage, and not twice into the same one.
    env.release(&["promote", "api", "--to", "development"])
        .assert_code(3)
        .assert_stdout_contains("development is the first stage");
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(0);
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(3)
        .assert_stdout_contains("api is already at staging");
    env.release(&["audit", "verify"]).assert_code(0);
}

#[test]
fn a_dependency_below_the_target_refuses_with_exit_3_naming_it_and_its_stage() {
    let env = project(&format!(
        "{STAGING_TRUE}  production:\n    - {{ id: tests, run: [\"true\"] }}\n"
    ));
    let run = env.release(&["promote", "web", "--to", "staging"]);
    run.assert_code(3)
        .assert_stdout_contains(
            "needs its dependencies at staging or higher: api is at development",
        )
        .assert_stdout_contains("promote api to staging first");
    let refused = of_kind(&env, "promotion.refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0]["data"]["reasons"],
        json!(["dependencies: needs its dependencies at staging or higher: api is at development"])
    );

    // `gates` shows the same rule (and still evaluates the gates), exit 1.
    let (run, report) = evaluate(&env, "web", "staging");
    run.assert_code(1);
    let dependencies = rule(&report, "dependencies");
    assert_eq!(dependencies["passed"], false);
    assert_eq!(dependencies["kind"], "rule");
    assert_eq!(
        dependencies["evidence"]["depends_on"],
        json!({ "api": "development" })
    );
    assert_eq!(
        dependencies["evidence"]["behind"],
        json!(["api is at development"])
    );
    assert_eq!(gate(&report, "tests")["passed"], true);

    // Once api is there, web follows; one stage further, api is behind again.
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(0);
    env.release(&["promote", "web", "--to", "staging"])
        .assert_code(0);
    env.release(&["promote", "web", "--to", "production"])
        .assert_code(3)
        .assert_stdout_contains("api is at staging");
    env.release(&["promote", "api", "--to", "production"])
        .assert_code(0);
    env.release(&["promote", "web", "--to", "production"])
        .assert_code(0);
    let completed: Vec<(String, String)> = of_kind(&env, "promotion.completed")
        .iter()
        .map(|r| {
            (
                r["component"].as_str().unwrap().to_owned(),
                r["data"]["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        completed,
        [
            ("api".into(), "staging".into()),
            ("web".into(), "staging".into()),
            ("api".into(), "production".into()),
            ("web".into(), "production".into()),
        ]
    );
}

#[test]
fn a_deprecated_component_is_refused_with_exit_3() {
    let env = project(STAGING_TRUE);
    env.release(&["deprecate", "api", "--reason", "   "])
        .assert_code(2);
    env.release(&["deprecate", "nope", "--reason", "x"])
        .assert_code(2);
    env.release(&["deprecate", "api", "--reason", "replaced by api2"])
        .assert_code(0)
        .assert_stdout_contains("deprecated");
    let deprecated = of_kind(&env, "component.deprecated");
    assert_eq!(deprecated.len(), 1);
    assert_eq!(deprecated[0]["component"], "api");
    assert_eq!(deprecated[0]["stage"], "development");
    assert_eq!(deprecated[0]["data"]["reason"], "replaced by api2");
    // Twice is not two records.
    env.release(&["deprecate", "api", "--reason", "again"])
        .assert_code(0)
        .assert_stdout_contains("already deprecated");
    assert_eq!(of_kind(&env, "component.deprecated").len(), 1);

    let run = env.release(&["promote", "api", "--to", "staging"]);
    run.assert_code(3)
        .assert_stdout_contains("api was deprecated on")
        .assert_stdout_contains("replaced by api2");
    let refused = &of_kind(&env, "promotion.refused")[0];
    let reasons = refused["data"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .starts_with("not-deprecated: api was deprecated on"),
        "{reasons:?}"
    );
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_eq!(rule(&report, "not-deprecated")["passed"], false);
    assert_eq!(
        rule(&report, "not-deprecated")["evidence"]["reason"],
        "replaced by api2"
    );
    // Other components are promoted as before.
    env.release(&["promote", "billing", "--to", "staging"])
        .assert_code(0);
}

// ---------------------------------------------------------------------------------------
// Gate kinds

#[test]
fn run_gate_passes_on_exit_0_and_fails_with_the_exit_code_and_the_last_lines() {
    let env = project(concat!(
        "  staging:\n",
        "    - { id: ok, run: [sh, -c, 'echo checked \"$0\"', \"{{ component }}\"] }\n",
        "    - { id: noisy, run: [sh, -c, 'for i in $(seq 1 30); do echo line-$i; done; exit 3'] }\n",
        "    - { id: missing, run: [no-such-tool-7f3e, --check] }\n",
    ));
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1)
        .assert_stdout_contains("FAIL")
        .assert_stdout_contains("exited with 3");

    let ok = gate(&report, "ok");
    assert_eq!(ok["passed"], true, "{ok:#}");
    assert_eq!(ok["kind"], "run");
    assert_eq!(ok["evidence"]["exit_code"], 0);
    assert_eq!(ok["evidence"]["output"], json!(["checked api"]));
    assert!(ok["evidence"]["duration_ms"].is_u64());
    assert!(ok.get("fix").is_none(), "a passing gate has no fix: {ok:#}");

    let noisy = gate(&report, "noisy");
    assert_eq!(noisy["passed"], false);
    assert_eq!(noisy["evidence"]["exit_code"], 3);
    let output: Vec<&str> = noisy["evidence"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(output.last(), Some(&"line-30"), "{output:?}");
    assert!(
        !output.contains(&"line-1"),
        "the first lines are dropped: {output:?}"
    );
    assert!(output.len() < 30 && output.len() >= 5, "{output:?}");
    assert!(noisy["fix"].is_string());

    let missing = gate(&report, "missing");
    assert_eq!(missing["passed"], false);
    assert!(
        missing["fix"]
            .as_str()
            .unwrap()
            .contains("no-such-tool-7f3e"),
        "{missing:#}"
    );
}

/// A project whose `api` and `billing` coverage reports (`coverage/<c>.<ext>`) are the two
/// fixtures, under a gate of `min` percent.
fn coverage_project(ext: &str, min: u32, (api, billing): (&str, &str)) -> TestEnv {
    let env = project(&format!(
        "  staging:\n    - {{ id: coverage, coverage: {{ report: \"coverage/{{{{ component }}}}.{ext}\", min: {min} }} }}\n"
    ));
    env.write(&format!("coverage/api.{ext}"), &fixture(api));
    env.write(&format!("coverage/billing.{ext}"), &fixture(billing));
    env
}

/// `api` passes with `high` percent, `billing` fails with `low`, both measured as `format`.
#[track_caller]
fn assert_coverage(env: &TestEnv, format: &str, min: u32, high: f64, low: f64) {
    let (run, report) = evaluate(env, "api", "staging");
    run.assert_code(0);
    let coverage = gate(&report, "coverage");
    assert_eq!(coverage["kind"], "coverage");
    assert_eq!(coverage["passed"], true, "{coverage:#}");
    assert_eq!(coverage["evidence"]["format"], format, "{coverage:#}");
    let measured = coverage["evidence"]["percent"].as_f64().unwrap();
    assert!((measured - high).abs() < 0.006, "{measured} ≠ {high}");
    assert!(
        summary(coverage).contains(&format!("{high:.2} %")),
        "{coverage:#}"
    );
    assert_eq!(coverage["evidence"]["min"], f64::from(min));

    let (run, report) = evaluate(env, "billing", "staging");
    run.assert_code(1);
    let coverage = gate(&report, "coverage");
    assert_eq!(coverage["passed"], false, "{coverage:#}");
    assert_eq!(coverage["evidence"]["format"], format);
    let measured = coverage["evidence"]["percent"].as_f64().unwrap();
    assert!((measured - low).abs() < 0.006, "{measured} ≠ {low}");
    assert!(
        summary(coverage).contains(&format!("{low:.2} %")),
        "{coverage:#}"
    );
    assert!(
        summary(coverage).contains(&format!("< {min}")),
        "{coverage:#}"
    );
    assert!(coverage["fix"].is_string());
}

#[test]
fn coverage_gate_reads_cobertura_xml_from_coverage_py() {
    // coverage.py 7: 32 of 33 lines, and 13 of 33.
    let env = coverage_project("xml", 90, ("coverage-py-high.xml", "coverage-py-low.xml"));
    assert_coverage(&env, "cobertura", 90, 96.97, 39.39);
}

#[test]
fn coverage_gate_reads_coverage_py_json() {
    // Lines, not coverage.py's `percent_covered` (which mixes in branches: 95.74).
    let env = coverage_project(
        "json",
        90,
        ("coverage-py-high.json", "coverage-py-low.json"),
    );
    assert_coverage(&env, "coverage-py", 90, 96.97, 39.39);
}

#[test]
fn coverage_gate_reads_lcov_from_a_js_tool() {
    // node --test: 38 of 42 lines over two files; c8: 25 of 49.
    let env = coverage_project("lcov", 80, ("node-test.lcov", "c8-partial.lcov"));
    assert_coverage(&env, "lcov", 80, 90.48, 51.02);
}

#[test]
fn coverage_gate_reads_llvm_cov_json() {
    // cargo llvm-cov --json: 30 of 34 lines, and 13 of 34.
    let env = coverage_project(
        "json",
        80,
        ("cargo-llvm-cov-high.json", "cargo-llvm-cov-low.json"),
    );
    assert_coverage(&env, "llvm-cov", 80, 88.24, 38.24);
}

#[test]
fn coverage_gate_reads_each_cargo_llvm_cov_export_as_it_counts_itself() {
    let env = project(concat!(
        "  staging:\n",
        "    - { id: summary-only, coverage: { report: coverage/summary.json, min: 80 } }\n",
        "    - { id: lcov, coverage: { report: coverage/low.lcov, min: 80 } }\n",
        "    - { id: cobertura, coverage: { report: coverage/low.xml, min: 80 } }\n",
    ));
    env.write(
        "coverage/summary.json",
        &fixture("cargo-llvm-cov-summary-only.json"),
    );
    env.write("coverage/low.lcov", &fixture("cargo-llvm-cov-low.lcov"));
    env.write(
        "coverage/low.xml",
        &fixture("cargo-llvm-cov-low.cobertura.xml"),
    );
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(&report, "summary-only", true, "88.24 % (30 of 34 lines)");
    assert_gate(&report, "lcov", false, "38.24 % (13 of 34 lines)");
    assert_gate(&report, "cobertura", false, "36.36 % (12 of 33 lines)");
    assert_eq!(gate(&report, "lcov")["evidence"]["format"], "lcov");
    assert_eq!(
        gate(&report, "cobertura")["evidence"]["format"],
        "cobertura"
    );
}

#[test]
fn coverage_gate_fails_on_a_missing_report_and_a_contradicting_format() {
    let env = project(concat!(
        "  staging:\n",
        "    - { id: absent, coverage: { report: \"coverage/{{ component }}.xml\", min: 50 } }\n",
        "    - { id: mislabelled, coverage: { report: coverage/real.xml, min: 50, format: lcov } }\n",
        "    - { id: labelled, coverage: { report: coverage/real.xml, min: 50, format: cobertura } }\n",
    ));
    env.write("coverage/real.xml", &fixture("coverage-py-high.xml"));
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(
        &report,
        "absent",
        false,
        "cannot read the coverage report coverage/api.xml",
    );
    assert_gate(
        &report,
        "mislabelled",
        false,
        "the report is Cobertura XML but the gate says `format: lcov`",
    );
    assert_gate(&report, "labelled", true, "96.97 %");
}

/// A Prometheus on 127.0.0.1 answering the instant query `query` with `answer`; the
/// runtime serving it lives as long as the value.
struct Prometheus {
    runtime: tokio::runtime::Runtime,
    server: MockServer,
}

impl Prometheus {
    fn start(query: &str, answer: &Value) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path("/api/v1/query"))
                .and(query_param("query", query))
                .respond_with(ResponseTemplate::new(200).set_body_json(answer))
                .mount(&server)
                .await;
            server
        });
        Self { runtime, server }
    }

    fn requests(&self) -> usize {
        self.runtime
            .block_on(self.server.received_requests())
            .map_or(0, |r| r.len())
    }
}

fn uptime_gate(id: &str, url: &str, min: &str) -> String {
    format!(
        "    - id: {id}\n      uptime: {{ prometheus: \"{url}\", query: 'avg_over_time(up{{job=\"{{{{ component }}}}\"}}[7d])', min: {min} }}\n"
    )
}

#[test]
fn uptime_gate_passes_on_a_scalar_at_or_above_min() {
    let prometheus = Prometheus::start(
        r#"avg_over_time(up{job="api"}[7d])"#,
        &json!({ "status": "success", "data": { "resultType": "scalar", "result": [1_764_000_000, "0.9991"] } }),
    );
    let env = project(&format!(
        "  staging:\n{}",
        uptime_gate("uptime", &prometheus.server.uri(), "0.995")
    ));
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    let uptime = gate(&report, "uptime");
    assert_eq!(uptime["passed"], true, "{uptime:#}");
    assert_eq!(uptime["kind"], "uptime");
    assert_eq!(uptime["evidence"]["value"], 0.9991);
    assert_eq!(
        uptime["evidence"]["query"],
        r#"avg_over_time(up{job="api"}[7d])"#
    );
    assert!(summary(uptime).contains("0.9991"), "{uptime:#}");
    assert_eq!(prometheus.requests(), 1);
}

#[test]
fn uptime_gate_fails_on_a_vector_below_min_judging_its_worst_series() {
    let prometheus = Prometheus::start(
        r#"avg_over_time(up{job="api"}[7d])"#,
        &json!({ "status": "success", "data": { "resultType": "vector", "result": [
            { "metric": { "job": "api", "instance": "a" }, "value": [1_764_000_000, "0.999"] },
            { "metric": { "job": "api", "instance": "b" }, "value": [1_764_000_000, "0.95"] },
        ] } }),
    );
    let env = project(&format!(
        "  staging:\n{}",
        uptime_gate("uptime", &prometheus.server.uri(), "0.995")
    ));
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    let uptime = gate(&report, "uptime");
    assert_eq!(uptime["passed"], false, "{uptime:#}");
    assert_eq!(uptime["evidence"]["value"], 0.95);
    assert!(summary(uptime).contains("0.95 < 0.995"), "{uptime:#}");
    // The series below the objective are named in the summary, what the table shows.
    assert!(
        summary(uptime).contains(r#"(1 of 2 series below: {instance="b",job="api"})"#),
        "{uptime:#}"
    );
    assert_eq!(
        uptime["evidence"]["series"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn uptime_gate_fails_when_the_query_matches_no_series() {
    let prometheus = Prometheus::start(
        r#"avg_over_time(up{job="api"}[7d])"#,
        &json!({ "status": "success", "data": { "resultType": "vector", "result": [] } }),
    );
    let env = project(&format!(
        "  staging:\n{}",
        uptime_gate("uptime", &prometheus.server.uri(), "0.995")
    ));
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(&report, "uptime", false, "the query matched no series");
}

#[test]
fn uptime_gate_fails_clearly_when_prometheus_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // the listener is dropped: nothing listens there
    let env = project(&format!(
        "  staging:\n{}",
        uptime_gate("uptime", &format!("http://127.0.0.1:{port}"), "0.995")
    ));
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(
        &report,
        "uptime",
        false,
        &format!("cannot connect to Prometheus at http://127.0.0.1:{port}"),
    );
}

#[test]
fn stable_for_passes_after_enough_time_in_the_stage_left_and_verifies() {
    let env = project("  production:\n    - { id: stable, stable_for: 7d }\n");
    PastLog::new()
        .promoted(days(8), "api", "development", "staging")
        .write(&env);
    env.release(&["audit", "verify"]).assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    let stable = gate(&report, "stable");
    assert_eq!(stable["passed"], true, "{stable:#}");
    assert_eq!(stable["kind"], "stable_for");
    assert_eq!(stable["evidence"]["stage"], "staging");
    assert_eq!(stable["evidence"]["rollbacks_since"], 0);
    let entered: DateTime<Utc> =
        serde_json::from_value(stable["evidence"]["entered_at"].clone()).unwrap();
    let ago = Utc::now() - entered;
    assert!(ago > days(8) - TimeDelta::minutes(1) && ago < days(8) + TimeDelta::minutes(1));
    assert!(summary(stable).contains("in staging for 8d"), "{stable:#}");
    // The binary appended to the hand-written chain, which still verifies.
    env.release(&["audit", "verify"]).assert_code(0);
    assert_eq!(records(&env).len(), 2);
}

#[test]
fn stable_for_fails_when_the_stage_was_entered_too_recently() {
    let env = project("  production:\n    - { id: stable, stable_for: 7d }\n");
    PastLog::new()
        .promoted(days(2), "api", "development", "staging")
        .write(&env);
    env.release(&["audit", "verify"]).assert_code(0);
    let (run, report) = evaluate(&env, "api", "production");
    run.assert_code(1);
    assert_gate(&report, "stable", false, "in staging for 2d 0h only; needs");
}

#[test]
fn stable_for_fails_after_a_real_rollback_in_that_stage_since_entering() {
    let env = project("  production:\n    - { id: stable, stable_for: 7d }\n");
    PastLog::new()
        .promoted(days(8), "api", "development", "staging")
        .rollback(
            days(1),
            ("api", "staging"),
            false,
            "succeeded",
            &"a".repeat(64),
        )
        .write(&env);
    env.release(&["audit", "verify"]).assert_code(0);
    let (run, report) = evaluate(&env, "api", "production");
    run.assert_code(1);
    assert_gate(&report, "stable", false, "(1 since it entered): stable for");
    assert_eq!(gate(&report, "stable")["evidence"]["rollbacks_since"], 1);
}

#[test]
fn stable_for_counts_failed_and_unfinished_real_rollbacks() {
    let env = project("  production:\n    - { id: stable, stable_for: 7d }\n");
    let mut log = PastLog::new();
    log.promoted(days(9), "api", "development", "staging")
        .promoted(days(9), "billing", "development", "staging")
        .rollback(
            days(2),
            ("api", "staging"),
            false,
            "failed",
            &"c".repeat(64),
        );
    // billing's rollback started and never finished (a crash): it still happened.
    log.push(
        days(1),
        &json!({
            "run": "r-crashed", "kind": "run.started", "actor": ALICE,
            "component": "billing", "stage": "staging",
            "data": {
                "command": ["release", "rollback", "billing", "--stage", "staging"],
                "runbook": "runbooks/staging/rollback.yaml", "runbook_sha256": "c".repeat(64),
                "params": {}, "dry_run": false, "reason": "oom", "purpose": "rollback",
            },
        }),
    );
    log.write(&env);
    env.release(&["audit", "verify"]).assert_code(0);
    for component in ["api", "billing"] {
        let (_, report) = evaluate(&env, component, "production");
        assert_gate(&report, "stable", false, "(1 since it entered): stable for");
    }
}

#[test]
fn stable_for_counts_a_real_rollback_run_by_the_binary_but_not_its_rehearsal() {
    let env = project("  production:\n    - { id: stable, stable_for: 7d }\n");
    env.write("runbooks/staging/rollback.yaml", SIMPLE_ROLLBACK);
    PastLog::new()
        .promoted(days(8), "api", "development", "staging")
        .write(&env);
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "staging",
        "--dry-run",
        "--set",
        "commit=abc",
    ])
    .assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "stable", true, "no rollback");
    // A real rollback needs a reason.
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "staging",
        "--set",
        "commit=abc",
    ])
    .assert_code(2);
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "staging",
        "--set",
        "commit=abc",
        "--reason",
        "5xx spike",
        "--yes",
    ])
    .assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "stable", false, "(1 since it entered): stable for");
    // A real rollback at a stage not reached is refused, and changes nothing.
    env.write("runbooks/production/rollback.yaml", SIMPLE_ROLLBACK);
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--set",
        "commit=abc",
        "--reason",
        "x",
        "--yes",
    ])
    .assert_code(3)
    .assert_stderr_contains("it has not reached production");
    env.release(&["audit", "verify"]).assert_code(0);
}

#[test]
fn stable_for_ignores_rehearsals_declined_runs_other_stages_and_earlier_stays() {
    let env = project("  production:\n    - { id: stable, stable_for: 7d }\n");
    let sha = "b".repeat(64);
    PastLog::new()
        // An earlier stay in staging, rolled back, then a fresh entry 8 days ago.
        .promoted(days(30), "api", "development", "staging")
        .rollback(days(20), ("api", "staging"), false, "succeeded", &sha)
        .promoted(days(8), "api", "development", "staging")
        .rollback(days(3), ("api", "staging"), true, "succeeded", &sha)
        .rollback(days(2), ("api", "staging"), false, "declined", &sha)
        .rollback(days(1), ("api", "development"), false, "succeeded", &sha)
        .rollback(days(1), ("web", "staging"), false, "succeeded", &sha)
        .write(&env);
    env.release(&["audit", "verify"]).assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "stable", true, "no rollback");
}

#[test]
fn attested_gate_without_a_window() {
    let env = project("  staging:\n    - { id: review, attested: { check: security-review } }\n");
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(
        &report,
        "review",
        false,
        "no security-review attestation recorded",
    );
    // Another component's attestation does not count.
    env.release(&["attest", "web", "security-review", "--note", "web only"])
        .assert_code(0);
    let (_, report) = evaluate(&env, "api", "staging");
    assert_eq!(gate(&report, "review")["passed"], false);

    env.release(&[
        "attest",
        "api",
        "security-review",
        "--note",
        "pentest by ACME",
    ])
    .assert_code(0)
    .assert_stdout_contains("counts for staging/review");
    let recorded = of_kind(&env, "attestation.recorded");
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1]["component"], "api");
    assert_eq!(recorded[1]["data"]["check"], "security-review");
    assert_eq!(recorded[1]["data"]["note"], "pentest by ACME");
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    let review = gate(&report, "review");
    assert_eq!(review["passed"], true, "{review:#}");
    assert_eq!(review["kind"], "attested");
    assert_eq!(review["evidence"]["note"], "pentest by ACME");
    assert_eq!(review["evidence"]["by"], recorded[1]["actor"]);
    // A check name with a space is refused.
    env.release(&["attest", "api", "security review"])
        .assert_code(2);
}

#[test]
fn attested_gate_within_a_window_refuses_an_old_attestation() {
    let env = project(
        "  staging:\n    - { id: review, attested: { check: security-review, within: 30d } }\n",
    );
    PastLog::new()
        .attested(days(40), BOB, "api", "security-review")
        .write(&env);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(
        &report,
        "review",
        false,
        "the last security-review (bob@example.com on ",
    );
    assert_gate(&report, "review", false, "is older than");
    assert_eq!(gate(&report, "review")["evidence"]["by"], BOB);

    env.release(&["attest", "api", "security-review"])
        .assert_code(0);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    assert_gate(&report, "review", true, "security-review attested by");
}

#[test]
fn approvals_gate_counts_distinct_other_people_never_the_actor() {
    let env = project("  staging:\n    - { id: four-eyes, approvals: { min: 2 } }\n");
    init_git(&env, ALICE);
    // Alice approves her own promotion: it does not count for her.
    env.release(&["approve", "api", "--to", "staging", "--note", "lgtm"])
        .assert_code(0);
    let approval = &of_kind(&env, "approval.recorded")[0];
    assert_eq!(approval["actor"], ALICE);
    assert_eq!(approval["stage"], "staging");
    assert_eq!(approval["data"]["to"], "staging");
    assert_eq!(approval["data"]["note"], "lgtm");
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_eq!(report["actor"], ALICE);
    assert_gate(&report, "four-eyes", false, "0 of 2 approval(s)");
    let excluded = &gate(&report, "four-eyes")["evidence"]["excluded"];
    assert_eq!(excluded[0]["by"], ALICE, "{excluded:#}");

    // Approvals of another stage or another component do not count.
    act_as(&env, CAROL);
    env.release(&["approve", "api", "--to", "production"])
        .assert_code(0);
    env.release(&["approve", "web", "--to", "staging"])
        .assert_code(0);
    act_as(&env, BOB);
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(0);
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(0); // twice is still one person
    act_as(&env, ALICE);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(
        &report,
        "four-eyes",
        false,
        "1 of 2 approval(s): bob@example.com",
    );

    act_as(&env, CAROL);
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(0);
    act_as(&env, ALICE);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    assert_gate(
        &report,
        "four-eyes",
        true,
        "2 of 2 approval(s): bob@example.com, carol@example.com",
    );
    // Bob evaluating: his own approval drops out, Alice's and Carol's count.
    act_as(&env, BOB);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    assert_gate(
        &report,
        "four-eyes",
        true,
        "2 of 2 approval(s): alice@example.com, carol@example.com",
    );
    env.release(&["approve", "api", "--to", "nowhere"])
        .assert_code(2);
}

#[test]
fn no_decision_rests_on_a_record_that_breaks_the_hash_chain() {
    let env = project("  staging:\n    - { id: four-eyes, approvals: { min: 1 } }\n");
    init_git(&env, ALICE);
    env.release(&["attest", "api", "code-review"])
        .assert_code(0);
    // Mallory appends an approval by hand, with a made-up `prev`.
    let forged = format!(
        "{{\"v\":1,\"seq\":2,\"ts\":\"2026-11-24T12:00:00.000Z\",\"run\":\"rx\",\"kind\":\"approval.recorded\",\"actor\":\"mallory@example.com\",\"component\":\"api\",\"stage\":\"staging\",\"data\":{{\"to\":\"staging\",\"note\":null}},\"prev\":\"{}\"}}\n",
        "0".repeat(64)
    );
    let mut log = std::fs::read_to_string(env.join(AUDIT)).unwrap();
    log.push_str(&forged);
    std::fs::write(env.join(AUDIT), &log).unwrap();
    env.release(&["audit", "verify"]).assert_code(1);
    for args in [
        &["promote", "api", "--to", "staging", "--reason", "x"][..],
        &["gates", "api", "--stage", "staging"],
        &["status"],
    ] {
        let run = env.release(args);
        run.assert_code(1)
            .assert_stderr_contains("the hash chain breaks at line 2");
    }
    assert!(of_kind(&env, "promotion.completed").is_empty());
    assert_eq!(
        std::fs::read_to_string(env.join(AUDIT)).unwrap(),
        log,
        "nothing was appended after the forged line"
    );
}

#[test]
fn approvals_gate_within_a_window_drops_old_approvals() {
    let env = project("  staging:\n    - { id: four-eyes, approvals: { min: 1, within: 7d } }\n");
    init_git(&env, ALICE);
    PastLog::new()
        .approved(days(10), BOB, "api", "staging")
        .write(&env);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(&report, "four-eyes", false, "0 of 1 approval(s)");
    let excluded = &gate(&report, "four-eyes")["evidence"]["excluded"];
    assert_eq!(excluded[0]["by"], BOB, "{excluded:#}");
    assert_eq!(excluded[0]["why"], "outside the window", "{excluded:#}");
}

#[test]
fn approvals_are_used_up_by_the_promotion_they_approved() {
    let env = project("  production:\n    - { id: four-eyes, approvals: { min: 1 } }\n");
    init_git(&env, ALICE);
    PastLog::new()
        .promoted(days(10), "api", "development", "staging")
        .approved(days(6), BOB, "api", "production")
        .approved(days(6), BOB, "billing", "production")
        .promoted(days(5), "api", "staging", "production")
        .write(&env);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "four-eyes", false, "0 of 1 approval(s)");
    let (_, report) = evaluate(&env, "billing", "production");
    assert_gate(
        &report,
        "four-eyes",
        true,
        "1 of 1 approval(s): bob@example.com",
    );
}

/// `mon 14:05`: the weekday and time of `t` as weekly freeze windows write them.
fn weekly<Z: chrono::TimeZone>(t: &DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    t.format("%a %H:%M").to_string().to_lowercase()
}

#[test]
fn freeze_gate_blocks_inside_a_window_only() {
    let now = Utc::now();
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let india = |t: DateTime<Utc>| {
        t.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    };
    let tokyo = now.with_timezone(&chrono_tz::Asia::Tokyo);
    let hours = TimeDelta::hours;
    let gates = format!(
        "  staging:
    - id: absolute-now
      freeze: [{{ from: \"{}\", to: \"{}\", reason: \"release party\" }}]
    - id: absolute-offset
      freeze: [{{ from: \"{}\", to: \"{}\" }}]
    - id: absolute-past
      freeze: [{{ from: \"{}\", to: \"{}\", reason: \"last week\" }}]
    - id: weekly-now
      freeze:
        - {{ from: \"{}\", to: \"{}\", reason: \"long ago\" }}
        - {{ weekly: {{ from: \"{}\", to: \"{}\" }}, tz: Asia/Tokyo, reason: \"weekend\" }}
    - id: weekly-later
      freeze: [{{ weekly: {{ from: \"{}\", to: \"{}\" }}, tz: Asia/Tokyo }}]
    - id: weekly-other-zone
      freeze: [{{ weekly: {{ from: \"{}\", to: \"{}\" }} }}]
",
        rfc(now - hours(1)),
        rfc(now + hours(1)),
        india(now - hours(1)),
        india(now + hours(1)),
        rfc(now - hours(3)),
        rfc(now - hours(2)),
        rfc(now - days(30)),
        rfc(now - days(29)),
        weekly(&(tokyo - hours(1))),
        weekly(&(tokyo + hours(1))),
        weekly(&(tokyo + hours(2))),
        weekly(&(tokyo + hours(3))),
        // Tokyo's wall clock read as UTC (the default zone) is 9 hours off: not now.
        weekly(&(tokyo - hours(1))),
        weekly(&(tokyo + hours(1))),
    );
    let env = project(&gates);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(&report, "absolute-now", false, "release party");
    let blocked = gate(&report, "absolute-now");
    assert_eq!(blocked["kind"], "freeze");
    assert_eq!(blocked["evidence"]["window"], 0);
    let ends: DateTime<Utc> =
        serde_json::from_value(blocked["evidence"]["ends_at"].clone()).unwrap();
    assert_eq!(rfc(ends), rfc(now + hours(1)));
    assert_gate(&report, "absolute-offset", false, "+05:30");
    assert_gate(
        &report,
        "absolute-past",
        true,
        "outside every freeze window",
    );
    assert_gate(&report, "weekly-now", false, "(Asia/Tokyo): weekend");
    assert_eq!(gate(&report, "weekly-now")["evidence"]["window"], 1);
    assert_gate(&report, "weekly-later", true, "outside every freeze window");
    assert_gate(
        &report,
        "weekly-other-zone",
        true,
        "outside every freeze window",
    );
}

const SIMPLE_ROLLBACK: &str = "name: production rollback
params:
  commit: { description: \"the commit to revert\", required: true }
  tool: { default: echo }
steps:
  - id: revert
    run: [\"{{ params.tool }}\", \"revert {{ params.commit }}\"]
";

#[test]
fn rollback_tested_needs_a_successful_rehearsal_of_todays_runbook() {
    let env =
        project("  production:\n    - { id: rollback-tested, rollback_tested: { within: 30d } }\n");
    env.write("runbooks/production/rollback.yaml", SIMPLE_ROLLBACK);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(
        &report,
        "rollback-tested",
        false,
        "runbooks/production/rollback.yaml was never rehearsed successfully for api",
    );
    assert!(
        gate(&report, "rollback-tested")["fix"]
            .as_str()
            .unwrap()
            .contains("release rollback api --stage production --dry-run")
    );

    // A blocked rehearsal, and another component's, do not count.
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--dry-run",
        "--set",
        "commit=abc",
        "--set",
        "tool=no-such-tool-7f3e",
    ])
    .assert_code(1);
    env.release(&[
        "rollback",
        "web",
        "--stage",
        "production",
        "--dry-run",
        "--set",
        "commit=abc",
    ])
    .assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(
        &report,
        "rollback-tested",
        false,
        "was never rehearsed successfully",
    );

    // A dry-run at development counts for the production gate.
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--dry-run",
        "--set",
        "commit=abc",
    ])
    .assert_code(0);
    let rehearsal = of_kind(&env, "run.started")
        .into_iter()
        .rfind(|r| r["component"] == "api")
        .unwrap();
    let run_id = rehearsal["run"].as_str().unwrap().to_owned();
    let (_, report) = evaluate(&env, "api", "production");
    let tested = gate(&report, "rollback-tested");
    assert_eq!(tested["passed"], true, "{tested:#}");
    assert_eq!(tested["kind"], "rollback_tested");
    assert_eq!(tested["evidence"]["run"], run_id.as_str());
    assert_eq!(
        tested["evidence"]["runbook_sha256"],
        sha256_of(&env, "runbooks/production/rollback.yaml")
    );
    assert!(summary(tested).contains(&format!("dry-run {run_id} succeeded")));

    // Any edit to the runbook voids the rehearsal, and says so.
    let edited = format!("{SIMPLE_ROLLBACK}# reviewed\n");
    env.write("runbooks/production/rollback.yaml", &edited);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(
        &report,
        "rollback-tested",
        false,
        &format!("runbooks/production/rollback.yaml changed since it was rehearsed ({run_id} on"),
    );
    // Rehearsing the new text passes again; so does the old text, byte for byte.
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--dry-run",
        "--set",
        "commit=abc",
    ])
    .assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_eq!(gate(&report, "rollback-tested")["passed"], true);
    env.write("runbooks/production/rollback.yaml", SIMPLE_ROLLBACK);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "rollback-tested", true, &run_id);
}

#[test]
fn rollback_tested_refuses_old_rehearsals_and_other_stages() {
    let env =
        project("  production:\n    - { id: rollback-tested, rollback_tested: { within: 30d } }\n");
    env.write("runbooks/production/rollback.yaml", SIMPLE_ROLLBACK);
    env.write("runbooks/staging/rollback.yaml", SIMPLE_ROLLBACK); // the very same bytes
    let sha = sha256_of(&env, "runbooks/production/rollback.yaml");
    PastLog::new()
        .rollback(days(40), ("api", "production"), true, "succeeded", &sha)
        .rollback(days(10), ("api", "production"), true, "blocked", &sha)
        .rollback(days(1), ("api", "staging"), true, "succeeded", &sha)
        .write(&env);
    env.release(&["audit", "verify"]).assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(
        &report,
        "rollback-tested",
        false,
        "the last successful rehearsal (r-past-1 on ",
    );
    // `release run` of the production rollback runbook at production counts too.
    env.release(&[
        "run",
        "runbooks/production/rollback.yaml",
        "--component",
        "api",
        "--stage",
        "production",
        "--dry-run",
        "--set",
        "commit=abc",
    ])
    .assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "rollback-tested", true, "succeeded on");
}

#[test]
fn rollback_tested_counts_a_rehearsal_run_from_a_subfolder() {
    let env =
        project("  production:\n    - { id: rollback-tested, rollback_tested: { within: 30d } }\n");
    env.write("runbooks/production/rollback.yaml", SIMPLE_ROLLBACK);
    env.write("src/api/main.txt", "code\n");
    env.release_in(
        &env.join("src"),
        &[
            "run",
            "../runbooks/production/rollback.yaml",
            "--component",
            "api",
            "--stage",
            "production",
            "--dry-run",
            "--set",
            "commit=abc",
        ],
    )
    .assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "rollback-tested", true, "succeeded on");
}

#[test]
fn file_exists_gate_names_the_missing_paths() {
    let env = project(
        "  staging:\n    - { id: docs, file_exists: [\"src/{{ component }}/README.md\", \"{{ spec }}\"] }\n",
    );
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1)
        .assert_stdout_contains("missing: src/api/README.md, specs/api.md");
    assert_gate(
        &report,
        "docs",
        false,
        "missing: src/api/README.md, specs/api.md",
    );
    assert_eq!(
        gate(&report, "docs")["evidence"]["missing"],
        json!(["src/api/README.md", "specs/api.md"])
    );
    env.write("src/api/README.md", "# api\n");
    let (_, report) = evaluate(&env, "api", "staging");
    assert_gate(&report, "docs", false, "missing: specs/api.md");
    env.write("specs/api.md", "# spec\n");
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    assert_gate(&report, "docs", true, "all 2 present");
}

const INCIDENT_RUNBOOK: &str = "name: open an incident
steps:
  - id: incident
    incident_issue:
      title: \"Checkout down for {{ component }}\"
      labels: [critical, \"component:{{ component }}\"]
      body: \"{{ run.reason }}\"
";

#[test]
fn no_open_issues_gate_reads_the_local_tracker() {
    let env = project(
        "  staging:\n    - { id: no-critical-bugs, no_open_issues: { labels: [critical, \"component:{{ component }}\"] } }\n",
    );
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    assert_gate(
        &report,
        "no-critical-bugs",
        true,
        "no open issue labelled critical + component:api",
    );

    // A real incident_issue run opens the issues: one for api, one for billing.
    env.write("runbooks/incident.yaml", INCIDENT_RUNBOOK);
    for component in ["api", "billing"] {
        env.release(&[
            "run",
            "runbooks/incident.yaml",
            "--component",
            component,
            "--stage",
            "development",
            "--reason",
            "checkout 500s",
            "--yes",
        ])
        .assert_code(0);
    }
    let issues = incidents(&env);
    assert_eq!(issues.len(), 2, "{issues:?}");
    // A file whose front matter is broken fails the gate, with the fix for a local file.
    env.write(
        ".release/incidents/0009-broken.md",
        "---\ntitle: [\n---\nbody\n",
    );
    let (_, report) = evaluate(&env, "api", "staging");
    assert!(
        fix(gate(&report, "no-critical-bugs")).starts_with("fix or remove the issue file"),
        "{report:#}"
    );
    std::fs::remove_file(env.join(".release/incidents/0009-broken.md")).unwrap();
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(&report, "no-critical-bugs", false, "1 open:");
    assert_gate(&report, "no-critical-bugs", false, "Checkout down for api");
    let open = &gate(&report, "no-critical-bugs")["evidence"]["open"];
    assert_eq!(open.as_array().map(Vec::len), Some(1), "{open:#}");
    assert_eq!(open[0]["title"], "Checkout down for api");

    // Closed, it no longer blocks.
    let api_issue = issues
        .iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("component:api")
        })
        .unwrap();
    let text = std::fs::read_to_string(api_issue).unwrap();
    assert!(text.contains("state: open"), "{text}");
    std::fs::write(api_issue, text.replace("state: open", "state: closed")).unwrap();
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(0);
    assert_eq!(gate(&report, "no-critical-bugs")["passed"], true);
}

// ---------------------------------------------------------------------------------------
// `release gates`: the report and the blocker issues

#[test]
fn gates_writes_a_versioned_report_next_to_release_yaml() {
    let env = project(concat!(
        "  staging:\n",
        "    - { id: tests, run: [\"true\"] }\n",
        "    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }\n",
    ));
    init_git(&env, ALICE);
    env.write("src/api/main.txt", "code\n");
    let before = Utc::now() - TimeDelta::seconds(2);
    // From a subfolder: the report still goes next to release.yaml.
    let run = env.release_in(
        &env.join("src/api"),
        &["gates", "api", "--stage", "staging"],
    );
    run.assert_code(1)
        .assert_stdout_contains("FAILED: 1 of 5 rules and gates fail for api → staging")
        .assert_stdout_contains("report: ");
    assert!(!env.join("src/api/workflow_report_api.json").exists());
    let report = report_file(&env, "api");
    assert_eq!(report["version"], 1);
    assert_eq!(report["component"], "api");
    assert_eq!(report["current_stage"], "development");
    assert_eq!(report["target"], "staging");
    assert_eq!(report["actor"], ALICE);
    assert_eq!(report["passed"], false);
    let at: DateTime<Utc> = serde_json::from_value(report["evaluated_at"].clone()).unwrap();
    assert!(at >= before && at <= Utc::now(), "{at}");
    assert_eq!(
        report["summary"],
        json!({ "rules": 3, "gates": 2, "failed": 1, "gates_evaluated": true })
    );
    let rule_ids: Vec<&str> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, ["not-deprecated", "next-stage", "dependencies"]);
    for result in report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["gates"].as_array().unwrap())
    {
        for field in ["id", "kind", "passed", "summary", "evidence"] {
            assert!(result.get(field).is_some(), "{field} missing in {result:#}");
        }
    }
    assert_eq!(gate(&report, "tests")["passed"], true);
    let docs = gate(&report, "docs");
    assert_eq!(docs["passed"], false);
    assert!(
        docs["fix"].is_string(),
        "a failing gate says how to fix it: {docs:#}"
    );

    // Recorded, with the same results.
    let evaluated = of_kind(&env, "gates.evaluated");
    assert_eq!(evaluated.len(), 1);
    assert_eq!(evaluated[0]["component"], "api");
    assert_eq!(evaluated[0]["stage"], "staging");
    assert_eq!(evaluated[0]["actor"], ALICE);
    let data = &evaluated[0]["data"];
    assert_eq!(data["target"], "staging");
    assert_eq!(data["passed"], false);
    assert_eq!(data["dry_run"], false);
    assert_eq!(gate(data, "docs")["evidence"], docs["evidence"]);
    assert_eq!(rule(data, "next-stage")["passed"], true);

    // Passing, exit 0; --json gives the same document on stdout.
    env.write("src/api/README.md", "# api\n");
    let run = env.release(&["--json", "gates", "api", "--stage", "staging"]);
    run.assert_code(0);
    let printed: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert_eq!(printed["passed"], true);
    assert_eq!(printed["version"], 1);
    let report = report_file(&env, "api");
    assert_eq!(report["passed"], true);
    assert_eq!(report["gates"], printed["gates"]);
    // Unknown stage or component: invalid input.
    env.release(&["gates", "api", "--stage", "prod"])
        .assert_code(2)
        .assert_stderr_contains("production");
    env.release(&["gates", "apj", "--stage", "staging"])
        .assert_code(2);
}

/// The front matter line `key: …` of an issue file.
fn front(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn file_blockers_opens_one_issue_updates_it_and_closes_it_when_the_gates_pass() {
    let env = project(
        "  staging:\n    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }\n",
    );
    let run = env.release(&["gates", "api", "--stage", "staging", "--file-blockers"]);
    run.assert_code(1)
        .assert_stdout_contains("blocker issue: opened #1");
    let issues = incidents(&env);
    assert_eq!(issues.len(), 1, "{issues:?}");
    let text = std::fs::read_to_string(&issues[0]).unwrap();
    assert_eq!(
        front(&text, "labels"),
        r#"["component:api", "target:staging", "blocker", "quality-gate-failure"]"#
    );
    assert_eq!(front(&text, "state"), "open");
    assert!(text.contains("docs"), "{text}");
    assert!(text.contains("missing: src/api/README.md"), "{text}");

    // A second failing evaluation updates the same issue.
    let run = env.release(&["gates", "api", "--stage", "staging", "--file-blockers"]);
    run.assert_code(1)
        .assert_stdout_contains("blocker issue: updated #1");
    assert_eq!(incidents(&env), issues, "a second issue was opened");
    let text = std::fs::read_to_string(&issues[0]).unwrap();
    assert_eq!(front(&text, "state"), "open");
    assert!(!front(&text, "updated").is_empty(), "{text}");

    // Another component's blocker is its own issue.
    env.release(&["gates", "billing", "--stage", "staging", "--file-blockers"])
        .assert_code(1);
    assert_eq!(incidents(&env).len(), 2);

    // Passing closes it.
    env.write("src/api/README.md", "# api\n");
    let run = env.release(&["gates", "api", "--stage", "staging", "--file-blockers"]);
    run.assert_code(0)
        .assert_stdout_contains("blocker issue: closed #1");
    let text = std::fs::read_to_string(&issues[0]).unwrap();
    assert_eq!(front(&text, "state"), "closed");
    assert_eq!(incidents(&env).len(), 2);
    let billing = std::fs::read_to_string(&incidents(&env)[1]).unwrap();
    assert_eq!(front(&billing, "state"), "open");
    // Passing again with nothing open: nothing to do.
    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(0);
    assert_eq!(incidents(&env).len(), 2);
}

const DOCS_FOR_STAGING: &str =
    "  staging:\n    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }\n";

#[test]
fn file_blockers_at_once_open_one_issue() {
    let env = project(DOCS_FOR_STAGING);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command()
                .args(["gates", "api", "--stage", "staging", "--file-blockers"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start release")
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("release ends");
            Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        })
        .collect();
    for run in &runs {
        run.assert_code(1);
    }
    assert_eq!(incidents(&env).len(), 1, "{runs:#?}");
    let opened = runs
        .iter()
        .filter(|r| r.stdout.contains("blocker issue: opened #1 "))
        .count();
    let updated = runs
        .iter()
        .filter(|r| r.stdout.contains("blocker issue: updated #1 "))
        .count();
    assert_eq!((opened, updated), (1, 3), "{runs:#?}");
}

#[test]
fn file_blockers_leaves_alone_an_incident_quoting_the_blocker_marker() {
    let env = project(DOCS_FOR_STAGING);
    env.write(
        "rb.yaml",
        "name: incident\nsteps:\n  - id: incident\n    incident_issue:\n      title: \"Rollback: {{ component }}\"\n      labels: [incident]\n      body: \"{{ run.reason }}\"\n",
    );
    let reason = "the gates said:\n<!-- release:blocker=api/staging -->";
    env.release(&[
        "run",
        "rb.yaml",
        "--component",
        "api",
        "--stage",
        "staging",
        "--yes",
        "--reason",
        reason,
    ])
    .assert_code(0);
    let incident = incidents(&env)[0].clone();
    let before = std::fs::read_to_string(&incident).unwrap();
    assert!(before.contains(reason), "{before}");

    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: opened #2 ");
    assert_eq!(std::fs::read_to_string(&incident).unwrap(), before);
    env.write("src/api/README.md", "# api\n");
    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(0)
        .assert_stdout_contains("blocker issue: closed #2 ");
    assert_eq!(std::fs::read_to_string(&incident).unwrap(), before);
}

#[test]
fn promote_closes_every_blocker_of_the_stage() {
    let env = project(DOCS_FOR_STAGING);
    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: opened #1 ");
    // A duplicate, as runs filing at once opened them before they were one step.
    let first = incidents(&env)[0].clone();
    std::fs::write(
        first.with_file_name("0002-quality-gates-block-api-staging.md"),
        std::fs::read_to_string(&first).unwrap(),
    )
    .unwrap();
    env.write("src/api/README.md", "# api\n");
    let run = env.release(&["promote", "api", "--to", "staging", "--reason", "fixed"]);
    run.assert_code(0)
        .assert_stdout_contains("blocker issue: closed #1 ")
        .assert_stdout_contains(", #2 ");
    for issue in incidents(&env) {
        assert_eq!(
            front(&std::fs::read_to_string(&issue).unwrap(), "state"),
            "closed",
            "{}",
            issue.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// `release promote`

const PROMOTE_RUNBOOK: &str = "name: staging promotion
steps:
  - id: announce
    run: [sh, -c, 'echo \"$0\" >> promoted.log', \"{{ component }} to {{ stage }}: {{ run.reason }}\"]
";

#[test]
fn promote_records_the_head_commit_and_runs_the_promote_runbook() {
    let env = project(STAGING_TRUE);
    env.write("runbooks/staging/promote.yaml", PROMOTE_RUNBOOK);
    let head = init_git(&env, ALICE);
    let run = env.release(&["promote", "api", "--to", "staging", "--reason", "release 1"]);
    run.assert_code(0).assert_stdout_contains(&format!(
        "promoted api development → staging at {}",
        &head[..12]
    ));
    assert_eq!(env.read("promoted.log"), "api to staging: release 1\n");
    let all = records(&env);
    let shown: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(shown.first(), Some(&"gates.evaluated"), "{shown:?}");
    assert_eq!(shown.last(), Some(&"promotion.completed"), "{shown:?}");
    assert!(
        shown.contains(&"run.started") && shown.contains(&"run.finished"),
        "{shown:?}"
    );
    let run_id = &all[0]["run"];
    assert!(
        all.iter().all(|r| &r["run"] == run_id),
        "one run id for the promotion"
    );
    let started = all.iter().find(|r| r["kind"] == "run.started").unwrap();
    assert_eq!(started["data"]["purpose"], "promote");
    let completed = all.last().unwrap();
    assert_eq!(completed["component"], "api");
    assert_eq!(completed["stage"], "staging");
    assert_eq!(completed["actor"], ALICE);
    assert_eq!(
        completed["data"],
        json!({ "from": "development", "to": "staging", "commit": head, "reason": "release 1" })
    );
    assert!(env.join("workflow_report_api.json").exists());
    assert_eq!(report_file(&env, "api")["passed"], true);
    assert!(
        lock_files(&env).is_empty(),
        "the promotion left a lock behind: {:?}",
        lock_files(&env)
    );
    // The component is at staging now.
    let (_, report) = evaluate(&env, "api", "production");
    assert_eq!(report["current_stage"], "staging");
    env.release(&["audit", "verify"]).assert_code(0);
}

#[test]
fn promote_refused_by_a_gate_exits_1_and_records_the_evaluation_and_the_refusal() {
    let env = project(concat!(
        "  staging:\n",
        "    - { id: tests, run: [\"true\"] }\n",
        "    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }\n",
    ));
    env.write("runbooks/staging/promote.yaml", PROMOTE_RUNBOOK);
    let run = env.release(&["promote", "api", "--to", "staging", "--reason", "release 1"]);
    run.assert_code(1)
        .assert_stdout_contains("promotion of api to staging refused");
    assert_eq!(kinds(&env), ["gates.evaluated", "promotion.refused"]);
    let refused = &of_kind(&env, "promotion.refused")[0];
    assert_eq!(
        refused["data"]["reasons"],
        json!(["docs: missing: src/api/README.md"])
    );
    assert_eq!(refused["run"], of_kind(&env, "gates.evaluated")[0]["run"]);
    assert!(
        !env.join("promoted.log").exists(),
        "the promote runbook ran"
    );
    // The report of a real promotion is written, failing gates and all.
    let report = report_file(&env, "api");
    assert_eq!(report["passed"], false);
    assert_eq!(gate(&report, "docs")["passed"], false);
    let (_, report) = evaluate(&env, "api", "staging");
    assert_eq!(report["current_stage"], "development");
}

#[test]
fn promote_is_not_recorded_when_the_promote_runbook_fails() {
    let env = project(STAGING_TRUE);
    env.write(
        "runbooks/staging/promote.yaml",
        "name: staging promotion\nsteps:\n  - id: smoke\n    run: [sh, -c, 'echo smoke failed; exit 4']\n",
    );
    let run = env.release(&["promote", "api", "--to", "staging", "--reason", "release 1"]);
    run.assert_code(1)
        .assert_stderr_contains("api was NOT promoted");
    assert!(of_kind(&env, "promotion.completed").is_empty());
    assert_eq!(
        of_kind(&env, "run.finished")[0]["data"]["outcome"],
        "failed"
    );
    let (_, report) = evaluate(&env, "api", "staging");
    assert_eq!(report["current_stage"], "development");
    assert!(lock_files(&env).is_empty(), "{:?}", lock_files(&env));
}

const PROBE_GATE: &str = "  staging:\n    - { id: probe, run: [touch, gate-ran] }\n";

#[test]
fn promote_refuses_a_promote_runbook_that_cannot_finish_before_running_the_gates() {
    let env = project(PROBE_GATE);
    env.write(
        "runbooks/staging/promote.yaml",
        "name: p\nsteps:\n  - id: a\n    confirm: \"Go?\"\n    run: [echo, go]\n",
    );
    // No terminal and no --yes: the confirmation cannot be answered.
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(3)
        .assert_stderr_contains("no terminal to answer it");
    assert!(!env.join("gate-ran").exists(), "the gates ran first");
    assert!(of_kind(&env, "gates.evaluated").is_empty());
    // A broken promote runbook: invalid input, found before the gates.
    env.write(
        "runbooks/staging/promote.yaml",
        "name: p\nsteps:\n  - id: a\n    rnu: [echo, go]\n",
    );
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(2)
        .assert_stderr_contains("unknown key `rnu`");
    assert!(!env.join("gate-ran").exists(), "the gates ran first");
    assert!(records(&env).is_empty(), "{:#?}", records(&env));
}

/// A promotion the rules refuse says so even when its runbook asks a question nobody can
/// answer: the operator is not sent to find a terminal first, only to be refused again.
#[test]
fn promote_tells_the_rules_refusal_before_an_unanswerable_question() {
    let env = project(PROBE_GATE);
    env.write(
        "runbooks/production/promote.yaml",
        "name: p\nsteps:\n  - id: a\n    confirm: \"Go?\"\n    run: [echo, go]\n",
    );
    let run = env.release(&["promote", "api", "--to", "production"]);
    run.assert_code(3)
        .assert_stdout_contains("would skip staging");
    assert!(
        !run.stderr.contains("no terminal"),
        "the question came first: {}",
        run.stderr
    );
    assert!(!env.join("gate-ran").exists());
    assert_eq!(of_kind(&env, "promotion.refused").len(), 1);
}

#[test]
fn promote_checks_the_promote_runbook_parameters_before_running_the_gates() {
    let env = project(PROBE_GATE);
    env.write(
        "runbooks/staging/promote.yaml",
        "name: p\nparams:\n  ticket: { required: true }\nsteps:\n  - id: a\n    run: [echo, \"{{ params.ticket }}\"]\n",
    );
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(2)
        .assert_stderr_contains("parameter `ticket` is required");
    assert!(
        !env.join("gate-ran").exists(),
        "the gates ran before the input was checked"
    );
    assert!(records(&env).is_empty(), "{:#?}", records(&env));
    // With it, the promotion goes through.
    env.release(&["promote", "api", "--to", "staging", "--set", "ticket=REL-1"])
        .assert_code(0);
}

#[test]
fn promote_refuses_a_parameter_that_nothing_takes() {
    let env = project(PROBE_GATE);
    env.release(&["promote", "api", "--to", "staging", "--set", "ticket=REL-1"])
        .assert_code(2)
        .assert_stderr_contains("ticket");
    assert!(of_kind(&env, "promotion.completed").is_empty());
}

#[test]
fn promote_is_refused_while_another_run_holds_the_stage_lock() {
    let env = project(STAGING_TRUE);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    // A live process on this host (the test itself) holds api at staging.
    let holder = json!({
        "run": "r-other-run", "pid": std::process::id(), "host": host,
        "actor": BOB,
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    env.write(".release/locks/api.staging.lock", &holder.to_string());
    let run = env.release(&["promote", "api", "--to", "staging", "--reason", "release 1"]);
    run.assert_code(3)
        .assert_stderr_contains("api at staging is locked by run r-other-run");
    assert!(of_kind(&env, "promotion.completed").is_empty());
    assert!(env.join(".release/locks/api.staging.lock").exists());
    // A dry-run takes no lock: it still says what would happen.
    env.release(&["promote", "api", "--to", "staging", "--dry-run"])
        .assert_code(0);
}

#[test]
fn promote_dry_run_evaluates_everything_and_changes_nothing() {
    let env = project(concat!(
        "  staging:\n",
        "    - { id: tests, run: [\"true\"] }\n",
        "  production:\n",
        "    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }\n",
    ));
    env.write("runbooks/staging/promote.yaml", PROMOTE_RUNBOOK);
    init_git(&env, ALICE);
    let run = env.release(&[
        "promote",
        "api",
        "--to",
        "staging",
        "--dry-run",
        "--reason",
        "try",
    ]);
    run.assert_code(0).assert_stdout_contains(
        "dry-run: api would be promoted development → staging; nothing was changed",
    );
    assert!(
        !env.join("promoted.log").exists(),
        "the dry-run ran the promote step"
    );
    assert!(
        !env.join("workflow_report_api.json").exists(),
        "the dry-run wrote a report"
    );
    let all = records(&env);
    assert!(!all.is_empty());
    for record in &all {
        let kind = record["kind"].as_str().unwrap();
        assert!(
            kind == "gates.evaluated" || kind.starts_with("run.") || kind.starts_with("step."),
            "a dry-run recorded {kind}"
        );
        if kind == "gates.evaluated" {
            assert_eq!(record["data"]["dry_run"], true);
        }
        if kind == "run.started" {
            assert_eq!(record["data"]["dry_run"], true);
        }
    }
    assert_eq!(of_kind(&env, "gates.evaluated").len(), 1);
    assert!(lock_files(&env).is_empty(), "{:?}", lock_files(&env));

    // A dry-run that a rule would refuse: exit 3, the gates evaluated all the same, and no
    // refusal recorded.
    let before = records(&env).len();
    let run = env.release(&["promote", "api", "--to", "production", "--dry-run"]);
    run.assert_code(3)
        .assert_stdout_contains("would skip staging")
        .assert_stdout_contains("missing: src/api/README.md")
        .assert_stdout_contains("would be refused");
    let new: Vec<Value> = records(&env).into_iter().skip(before).collect();
    assert_eq!(new.len(), 1, "{new:#?}");
    assert_eq!(new[0]["kind"], "gates.evaluated");
    assert_eq!(new[0]["data"]["dry_run"], true);
    assert_eq!(gate(&new[0]["data"], "docs")["passed"], false);

    // Through the real promotion, the dry-run to production fails on the gate only: exit 1.
    env.release(&["promote", "api", "--to", "staging"])
        .assert_code(0);
    let run = env.release(&["promote", "api", "--to", "production", "--dry-run"]);
    run.assert_code(1)
        .assert_stdout_contains("would be refused");
    assert!(of_kind(&env, "promotion.refused").is_empty());
    assert_eq!(of_kind(&env, "promotion.completed").len(), 1);
    let (_, report) = evaluate(&env, "api", "production");
    assert_eq!(report["current_stage"], "staging");
}

// ---------------------------------------------------------------------------------------
// The verify action

/// A `verify` step keeps to its `timeout`: a hung test suite in the re-verify of a
/// rollback is stopped (its process group ended) and the step is `timed_out` (it used to
/// run to its end, whatever the timeout).
#[test]
fn verify_step_keeps_to_its_timeout() {
    let env = project(
        "  staging:
    - { id: slow, run: [sh, -c, \"echo started1 >> log; sleep 30; touch finished\"] }
    - { id: later, run: [sh, -c, \"echo started2 >> log\"] }
",
    );
    env.write(
        "runbooks/verify.yaml",
        "name: verify staging\nsteps:\n  - id: verify\n    timeout: 1s\n    verify: { stage: staging }\n",
    );
    let started = std::time::Instant::now();
    let run = env.release(&[
        "run",
        "runbooks/verify.yaml",
        "--component",
        "api",
        "--stage",
        "staging",
        "--reason",
        "check",
    ]);
    run.assert_code(1).assert_stdout_contains(
        "the gates of staging took longer than the step's timeout (1.0s); their commands were stopped",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let finished = of_kind(&env, "step.finished");
    assert_eq!(finished.last().unwrap()["data"]["outcome"], "timed_out");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!env.join("finished").exists(), "the gate's command went on");
    assert_eq!(
        env.read("log"),
        "started1\n",
        "a gate command started after the timeout"
    );
}

#[test]
fn verify_step_reevaluates_the_stage_gates_but_not_the_entry_ones() {
    let now = Utc::now();
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let env = project(&format!(
        "  staging:
    - {{ id: docs, file_exists: [\"src/{{{{ component }}}}/README.md\"] }}
    - {{ id: four-eyes, approvals: {{ min: 5 }} }}
    - {{ id: frozen, freeze: [{{ from: \"{}\", to: \"{}\" }}] }}
    - {{ id: stable, stable_for: 30d }}
    - {{ id: probe, run: [touch, verify-ran] }}
",
        rfc(now - TimeDelta::hours(1)),
        rfc(now + TimeDelta::hours(1))
    ));
    env.write(
        "runbooks/verify.yaml",
        "name: verify staging\nsteps:\n  - id: verify\n    verify: { stage: staging }\n",
    );
    env.write("src/api/README.md", "# api\n");
    let args = [
        "run",
        "runbooks/verify.yaml",
        "--component",
        "api",
        "--stage",
        "staging",
    ];
    let run = env.release(&[&args[..], &["--dry-run"]].concat());
    run.assert_code(0)
        .assert_stdout_contains("evaluate 2 gate(s) of `staging`: docs (file_exists), probe (run)")
        .assert_stdout_contains("four-eyes (approvals)");
    assert!(
        !env.join("verify-ran").exists(),
        "the dry-run evaluated a gate"
    );
    // Only `docs` and `probe` are about the component; they pass, so the step does.
    env.release(&[&args[..], &["--reason", "check"]].concat())
        .assert_code(0);
    assert!(
        env.join("verify-ran").exists(),
        "the verify step ran no gate"
    );
    let finished = of_kind(&env, "step.finished");
    assert_eq!(finished.last().unwrap()["data"]["outcome"], "succeeded");

    std::fs::remove_file(env.join("src/api/README.md")).unwrap();
    let run = env.release(&[&args[..], &["--reason", "check"]].concat());
    run.assert_code(1);
    let finished = of_kind(&env, "step.finished");
    let last = &finished.last().unwrap()["data"];
    assert_eq!(last["outcome"], "failed", "{last:#}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("1 of 2 gate(s) of staging fail: docs: missing: src/api/README.md"),
        "{last:#}"
    );
}

// ---------------------------------------------------------------------------------------
// The whole story

const STORY_GATES: &str = "  staging:
    - { id: tests, run: [\"true\"] }
    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }
  production:
    - { id: rollback-tested, rollback_tested: { within: 30d } }
    - { id: security-review, attested: { check: security-review, within: 90d } }
    - { id: four-eyes, approvals: { min: 1 } }
    - { id: docs, file_exists: [\"src/{{ component }}/README.md\"] }
";

/// The production rollback, offline: revert and push to the bare origin, re-verify the
/// production gates, and always open an incident.
const STORY_ROLLBACK: &str = "name: production rollback
params:
  commit: { description: \"commit(s) to revert\", required: true }
steps:
  - id: revert
    git_revert: { commits: \"{{ params.commit }}\", push: true }
  - id: verify
    verify: { stage: production }
  - id: incident
    when: always
    incident_issue:
      title: \"Production rollback: {{ component }}\"
      labels: [\"component:{{ component }}\", rollback, incident]
      body: \"Rollback reason: {{ run.reason }}\\nRun: {{ run.id }}\"
";

/// The last `step.finished` record of `step`.
fn step_finished(env: &TestEnv, step: &str) -> Value {
    of_kind(env, "step.finished")
        .into_iter()
        .rfind(|r| r["data"]["step"] == step)
        .unwrap_or_else(|| panic!("no step.finished for {step}"))
}

#[test]
#[expect(clippy::too_many_lines, reason = "one story, told in order")]
fn development_to_production_with_a_rehearsed_rollback_end_to_end() {
    let env = project(STORY_GATES);
    env.write("runbooks/production/rollback.yaml", STORY_ROLLBACK);
    env.write("runbooks/staging/promote.yaml", PROMOTE_RUNBOOK);
    env.write("src/api/service.txt", "version 1\n");
    init_git(&env, ALICE);
    let dir = env.path();
    env.write("src/api/README.md", "# api\n");
    let docs = commit_all(&env, "api docs");
    env.write("src/api/service.txt", "version 2 (bad)\n");
    let bad = commit_all(&env, "api v2");
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q", "--bare", "-b", "main"]);
    git(
        dir,
        &["remote", "add", "origin", origin.path().to_str().unwrap()],
    );
    git(dir, &["push", "-q", "origin", "main"]);
    let commit = format!("commit={bad}");

    // 1. Rehearse the production rollback while still in development.
    let rehearsal = env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--dry-run",
        "--set",
        &commit,
    ]);
    rehearsal
        .assert_code(0)
        .assert_stdout_contains("nothing blocked")
        .assert_stdout_contains(
            "evaluate 3 gate(s) of `production`: rollback-tested (rollback_tested), security-review (attested), docs (file_exists)",
        );
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        bad,
        "the dry-run moved HEAD"
    );
    assert!(incidents(&env).is_empty(), "the dry-run opened an incident");
    let rehearsal_run = of_kind(&env, "run.started")[0]["run"].clone();

    // 2. Into staging.
    env.release(&["promote", "api", "--to", "staging", "--reason", "release 1"])
        .assert_code(0)
        .assert_stdout_contains("promoted api development → staging");
    assert_eq!(env.read("promoted.log"), "api to staging: release 1\n");

    // 3. Production is refused until someone else approves and the review is attested.
    let run = env.release(&[
        "promote",
        "api",
        "--to",
        "production",
        "--reason",
        "release 1",
    ]);
    run.assert_code(1);
    let refused = of_kind(&env, "promotion.refused");
    let reasons: Vec<&str> = refused[0]["data"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "security-review: no security-review attestation recorded",
            "four-eyes: 0 of 1 approval(s)"
        ]
    );
    let evaluated = of_kind(&env, "gates.evaluated");
    let tested = gate(&evaluated.last().unwrap()["data"], "rollback-tested");
    assert_eq!(tested["passed"], true, "{tested:#}");
    assert_eq!(tested["evidence"]["run"], rehearsal_run);

    env.release(&[
        "attest",
        "api",
        "security-review",
        "--note",
        "pentest by ACME",
    ])
    .assert_code(0);
    env.release(&["approve", "api", "--to", "production"])
        .assert_code(0); // Alice's own: never counts for her
    env.release(&[
        "promote",
        "api",
        "--to",
        "production",
        "--reason",
        "release 1",
    ])
    .assert_code(1);
    act_as(&env, BOB);
    env.release(&[
        "approve",
        "api",
        "--to",
        "production",
        "--note",
        "reviewed the diff",
    ])
    .assert_code(0);
    act_as(&env, ALICE);
    env.write("CHANGELOG.md", "release 1\n");
    let release_commit = commit_all(&env, "changelog");
    git(dir, &["push", "-q", "origin", "main"]);
    env.release(&[
        "promote",
        "api",
        "--to",
        "production",
        "--reason",
        "release 1",
    ])
    .assert_code(0)
    .assert_stdout_contains("promoted api staging → production");
    let completed = of_kind(&env, "promotion.completed");
    assert_eq!(completed.len(), 2);
    assert_eq!(completed[0]["data"]["commit"], bad.as_str());
    assert_eq!(completed[0]["data"]["to"], "staging");
    assert_eq!(completed[1]["data"]["commit"], release_commit.as_str());
    assert_eq!(completed[1]["data"]["from"], "staging");
    assert_eq!(completed[1]["data"]["to"], "production");
    assert_eq!(completed[1]["data"]["reason"], "release 1");
    assert_eq!(completed[1]["actor"], ALICE);

    // 4. A real rollback in production: reverted, pushed, verified, incident opened.
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--set",
        &commit,
        "--reason",
        "5xx spike",
        "--yes",
    ])
    .assert_code(0);
    assert_eq!(env.read("src/api/service.txt"), "version 1\n");
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        git(origin.path(), &["rev-parse", "main"])
    );
    assert_eq!(
        step_finished(&env, "verify")["data"]["outcome"],
        "succeeded"
    );
    assert_eq!(incidents(&env).len(), 1);

    // 5. A rollback that takes the docs away: the verify step fails on the docs gate, and
    //    the incident is opened all the same.
    let run = env.release(&[
        "rollback",
        "api",
        "--stage",
        "production",
        "--set",
        &format!("commit={docs}"),
        "--reason",
        "docs commit broke the build",
        "--yes",
    ]);
    run.assert_code(1);
    assert!(!env.join("src/api/README.md").exists());
    let verify = step_finished(&env, "verify");
    assert_eq!(verify["data"]["outcome"], "failed", "{verify:#}");
    assert!(
        verify["data"]["error"]
            .as_str()
            .unwrap()
            .contains("docs: missing: src/api/README.md"),
        "{verify:#}"
    );
    assert_eq!(
        step_finished(&env, "incident")["data"]["outcome"],
        "succeeded"
    );
    assert_eq!(incidents(&env).len(), 2);
    let finished = of_kind(&env, "run.finished");
    assert_eq!(finished.last().unwrap()["data"]["outcome"], "failed");

    // The log holds all of it, and verifies.
    env.release(&["audit", "verify"]).assert_code(0);
    let run = env.release(&["status", "api"]);
    run.assert_code(0).assert_stdout_contains("api");
}

// ---------------------------------------------------------------------------------------
// Messages that can be followed, and decisions that do not deadlock

/// The `fix` of a failing rule or gate.
fn fix(result: &Value) -> &str {
    result["fix"].as_str().unwrap_or_default()
}

/// The command between the first pair of backticks of `text`, as words (no quoting in it).
fn quoted_command(text: &str) -> Vec<String> {
    let inside = text.split('`').nth(1).unwrap_or_default();
    inside.split(' ').map(str::to_owned).collect()
}

#[test]
fn stable_for_restarts_its_clock_at_the_latest_rollback_in_the_stage() {
    let env = project(
        "  staging:\n    - { id: calm, stable_for: 7d }\n    - { id: short, stable_for: 3d }\n  production:\n    - { id: week, stable_for: 7d }\n    - { id: days, stable_for: 2d }\n",
    );
    let sha = "a".repeat(64);
    PastLog::new()
        .attested(days(30), ALICE, "billing", "code-review")
        .promoted(days(10), "api", "development", "staging")
        .rollback(days(3), ("api", "staging"), false, "succeeded", &sha)
        // The first stage: nothing is ever promoted into it, and a rollback there too
        // only restarts the clock.
        .rollback(
            days(5),
            ("billing", "development"),
            false,
            "succeeded",
            &sha,
        )
        .write(&env);
    env.release(&["audit", "verify"]).assert_code(0);

    let (run, report) = evaluate(&env, "api", "production");
    run.assert_code(1);
    let week = gate(&report, "week");
    assert_eq!(week["passed"], false, "{week:#}");
    assert!(summary(week).starts_with("in staging since "), "{week:#}");
    assert!(summary(week).contains("; last rollback "), "{week:#}");
    assert!(
        summary(week).contains(": stable for 3d 0h; needs 7d"),
        "{week:#}"
    );
    assert!(fix(week).starts_with("wait until "), "{week:#}");
    assert!(fix(week).contains("(3d 23h from now)"), "{week:#}");
    assert!(!fix(week).contains("promote"), "{week:#}");
    assert!(week["evidence"]["last_rollback_at"].is_string(), "{week:#}");
    assert_gate(&report, "days", true, "stable for 3d 0h; needs 2d");

    let (run, report) = evaluate(&env, "billing", "staging");
    run.assert_code(1);
    assert_gate(&report, "calm", false, "in development since ");
    assert!(fix(gate(&report, "calm")).contains("(1d 23h from now)"));
    assert_gate(&report, "short", true, "stable for 5d 0h; needs 3d");
}

#[test]
fn stable_for_after_a_real_rollback_by_the_binary_passes_once_the_time_is_up() {
    let env = project("  production:\n    - { id: stable, stable_for: 1s }\n");
    env.write("runbooks/staging/rollback.yaml", SIMPLE_ROLLBACK);
    env.release(&["promote", "api", "--to", "staging", "--reason", "r1"])
        .assert_code(0);
    env.release(&[
        "rollback",
        "api",
        "--stage",
        "staging",
        "--set",
        "commit=abc",
        "--reason",
        "bad",
        "--yes",
    ])
    .assert_code(0);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (run, report) = evaluate(&env, "api", "production");
    run.assert_code(0);
    assert_gate(&report, "stable", true, "; last rollback ");
    env.release(&["promote", "api", "--to", "production", "--reason", "r2"])
        .assert_code(0);
}

#[test]
fn stable_for_shows_seconds_when_it_asks_for_less_than_an_hour() {
    let env = project("  staging:\n    - { id: stable, stable_for: 90s }\n");
    PastLog::new()
        .attested(TimeDelta::seconds(20), ALICE, "api", "code-review")
        .write(&env);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    let stable = gate(&report, "stable");
    let seconds = regex::Regex::new(r"^in development for (2\d)s only; needs 1m30s$").unwrap();
    assert!(seconds.is_match(summary(stable)), "{stable:#}");
    let wait = regex::Regex::new(
        r"^wait until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(1m [0-9]+s from now\)$",
    )
    .unwrap();
    assert!(wait.is_match(fix(stable)), "{stable:#}");
    // From an hour up, minutes are precise enough.
    let env = project("  staging:\n    - { id: stable, stable_for: 2h }\n");
    PastLog::new()
        .attested(TimeDelta::seconds(20), ALICE, "api", "code-review")
        .write(&env);
    let (_, report) = evaluate(&env, "api", "staging");
    assert_gate(
        &report,
        "stable",
        false,
        "in development for 0m only; needs 2h",
    );
}

const BLOCKED_UNTIL_FIXED: &str = "  staging:
    - { id: tests, run: [test, '!', -e, fail] }
    - { id: no-open, no_open_issues: { labels: [\"component:{{ component }}\"] } }
  production:
    - { id: tests, run: [test, '!', -e, fail] }
";

#[test]
fn no_open_issues_ignores_the_blocker_issues_the_tool_files() {
    let env = project(BLOCKED_UNTIL_FIXED);
    env.write("fail", "");
    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: opened #1");
    std::fs::remove_file(env.join("fail")).unwrap();
    let run = env.release(&["gates", "api", "--stage", "staging", "--file-blockers"]);
    run.assert_code(0)
        .assert_stdout_contains("blocker issue: closed #1");
    let report = report_file(&env, "api");
    assert_gate(
        &report,
        "no-open",
        true,
        "no open issue labelled component:api",
    );
    assert_eq!(
        gate(&report, "no-open")["evidence"]["blockers_ignored"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // An issue people opened with that label still blocks.
    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(0);
    env.write(
        ".release/incidents/0009-outage.md",
        "---\nnumber: 9\ntitle: outage\nstate: open\nlabels: [\"component:api\"]\n---\n\nIt broke.\n",
    );
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    assert_gate(&report, "no-open", false, "1 open: #9");
}

#[test]
fn promote_closes_the_blocker_and_file_blockers_closes_those_that_can_never_pass() {
    let env = project(BLOCKED_UNTIL_FIXED.replace("    - { id: no-open, no_open_issues: { labels: [\"component:{{ component }}\"] } }\n", "").as_str());
    env.write("fail", "");
    env.release(&["gates", "api", "--stage", "staging", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: opened #1");
    std::fs::remove_file(env.join("fail")).unwrap();
    let run = env.release(&["promote", "api", "--to", "staging", "--reason", "fixed"]);
    run.assert_code(0)
        .assert_stdout_contains("blocker issue: closed #1");
    let issue = incidents(&env)[0].clone();
    let text = std::fs::read_to_string(&issue).unwrap();
    assert_eq!(front(&text, "state"), "closed");
    // Were it open again, the next --file-blockers closes it rather than updating it:
    // api is at staging, no gate of staging will ever pass for it again.
    env.write(
        &issue
            .strip_prefix(env.path())
            .unwrap()
            .display()
            .to_string(),
        &text.replace("state: closed", "state: open"),
    );
    let run = env.release(&["gates", "api", "--stage", "staging", "--file-blockers"]);
    run.assert_code(1)
        .assert_stdout_contains("blocker issue: closed #1 ")
        .assert_stdout_contains(".md (api is already at staging)");
    assert_eq!(
        front(&std::fs::read_to_string(&issue).unwrap(), "state"),
        "closed"
    );

    // A deprecated component gets no blocker, and loses the one it had.
    env.write("fail", "");
    env.release(&["gates", "api", "--stage", "production", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: opened #2");
    env.release(&["deprecate", "api", "--reason", "replaced"])
        .assert_code(0);
    env.release(&["gates", "api", "--stage", "production", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: closed #2 ")
        .assert_stdout_contains(".md (api is deprecated)");
    env.release(&["gates", "api", "--stage", "production", "--file-blockers"])
        .assert_code(1)
        .assert_stdout_contains("blocker issue: none open, none opened (api is deprecated)");
    assert_eq!(incidents(&env).len(), 2);

    // A promotion where no blocker was ever filed does not touch the tracker.
    let run = env.release(&["promote", "billing", "--to", "staging", "--reason", "x"]);
    run.assert_code(1);
    std::fs::remove_file(env.join("fail")).unwrap();
    let run = env.release(&["promote", "billing", "--to", "staging", "--reason", "x"]);
    run.assert_code(0);
    assert!(
        !run.stdout.contains("blocker issue"),
        "{}",
        run.transcript()
    );
}

#[test]
fn deprecate_twice_with_json_prints_json_both_times() {
    let env = project(STAGING_TRUE);
    let first = env.release(&["--json", "deprecate", "api", "--reason", "replaced"]);
    first.assert_code(0);
    let first: Value = serde_json::from_str(&first.stdout).expect("JSON");
    assert_eq!(first["recorded"], true);
    let again = env.release(&["--json", "deprecate", "api", "--reason", "again"]);
    again.assert_code(0);
    let again: Value = serde_json::from_str(&again.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", again.stdout));
    assert_eq!(again["recorded"], false);
    assert_eq!(again["component"], "api");
    assert_eq!(again["reason"], "replaced");
    assert_eq!(
        again["by"],
        "tester@".to_owned() + again["by"].as_str().unwrap().split('@').nth(1).unwrap()
    );
    assert!(again["since"].is_string(), "{again:#}");
    assert_eq!(of_kind(&env, "component.deprecated").len(), 1);
}

#[test]
fn rollback_tested_suggests_a_rehearsal_that_runs_as_written() {
    let env =
        project("  production:\n    - { id: rollback-tested, rollback_tested: { within: 30d } }\n");
    env.write(
        "runbooks/production/rollback.yaml",
        "name: production rollback\nsteps:\n  - { id: undo, run: [echo, undo] }\n",
    );
    let (run, report) = evaluate(&env, "api", "production");
    run.assert_code(1);
    let tested = gate(&report, "rollback-tested");
    assert_eq!(
        fix(tested),
        "rehearse it: `release rollback api --stage production --dry-run`"
    );
    let command = quoted_command(fix(tested));
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    env.release(&args).assert_code(0);
    let (_, report) = evaluate(&env, "api", "production");
    assert_gate(&report, "rollback-tested", true, "succeeded");

    // Only the required parameters without a default are named.
    env.write("runbooks/production/rollback.yaml", SIMPLE_ROLLBACK);
    let (_, report) = evaluate(&env, "api", "production");
    assert_eq!(
        fix(gate(&report, "rollback-tested")),
        "rehearse it: `release rollback api --stage production --dry-run --set commit=…`"
    );
}

#[test]
fn dependency_fixes_give_a_promotable_order_and_name_a_deprecated_dependency() {
    let env = TestEnv::new();
    env.write(
        "release.yaml",
        "version: 1
incidents: local
components:
  base: { path: src/base }
  mid: { path: src/mid, depends_on: [base] }
  top: { path: src/top, depends_on: [mid, base] }
  leaf: { path: src/leaf, depends_on: [mid] }
",
    );
    let run = env.release(&["promote", "top", "--to", "staging", "--reason", "x"]);
    run.assert_code(3);
    let refused = &of_kind(&env, "promotion.refused")[0];
    assert!(
        refused["data"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("mid is at development, base is at development"),
        "{refused:#}"
    );
    run.assert_stdout_contains("fix: promote base, then mid, to staging first");
    // A dependency behind a dependency is named too.
    env.release(&["promote", "leaf", "--to", "staging", "--reason", "x"])
        .assert_code(3)
        .assert_stdout_contains("fix: promote base, then mid, to staging first");
    // Following the fix works.
    env.release(&["promote", "base", "--to", "staging", "--reason", "x"])
        .assert_code(0);
    env.release(&["promote", "mid", "--to", "staging", "--reason", "x"])
        .assert_code(0);
    env.release(&["promote", "top", "--to", "staging", "--reason", "x"])
        .assert_code(0);

    // A deprecated dependency is never promoted: the fix is release.yaml.
    env.release(&["deprecate", "base", "--reason", "gone"])
        .assert_code(0);
    env.release(&["promote", "mid", "--to", "production", "--reason", "x"])
        .assert_code(3)
        .assert_stdout_contains(
            "fix: base is deprecated and is never promoted again: remove it from mid's depends_on in release.yaml",
        );
    let run = env.release(&["promote", "top", "--to", "production", "--reason", "x"]);
    run.assert_code(3)
        .assert_stdout_contains("remove it from top's depends_on in release.yaml")
        .assert_stdout_contains("remove it from mid's depends_on in release.yaml")
        .assert_stdout_contains("; promote mid to production first");
}

#[test]
fn run_gate_commands_are_shown_shell_quoted() {
    let env = project(
        "  staging:\n    - { id: tests, run: [sh, -c, 'test -z \"$(ls fail* 2>/dev/null)\"'] }\n    - { id: suite, run: [ls, \"tests/my app\"] }\n",
    );
    env.write("fail1", "");
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    let tests = gate(&report, "tests");
    assert!(
        summary(tests).starts_with(r#"`sh -c 'test -z "$(ls fail* 2>/dev/null)"'` exited with 1"#),
        "{tests:#}"
    );
    assert_eq!(
        fix(tests),
        r#"run `sh -c 'test -z "$(ls fail* 2>/dev/null)"'` and fix what it reports"#
    );
    assert_eq!(
        fix(gate(&report, "suite")),
        "run `ls 'tests/my app'` and fix what it reports"
    );
    // Pasted into a shell, the fix runs the gate's command.
    let pasted = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{} ; echo \"exit=$?\"",
                fix(tests).split('`').nth(1).unwrap()
            ),
        ])
        .current_dir(env.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&pasted.stdout).contains("exit=1"));
    run.assert_stdout_contains(r#"`sh -c 'test -z "$(ls fail* 2>/dev/null)"'`"#);
}

#[test]
fn approvals_summary_says_why_an_approval_does_not_count() {
    let env = project("  staging:\n    - { id: four-eyes, approvals: { min: 1, within: 1d } }\n");
    init_git(&env, ALICE);
    PastLog::new()
        .approved(days(3), BOB, "api", "staging")
        .approved(TimeDelta::hours(1), "unknown@vm", "api", "staging")
        .write(&env);
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(0);
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    let four_eyes = gate(&report, "four-eyes");
    let text = summary(four_eyes);
    assert!(text.starts_with("0 of 1 approval(s) ("), "{four_eyes:#}");
    assert!(
        text.contains("alice@example.com's own does not count: four eyes"),
        "{text}"
    );
    assert!(
        text.contains("bob@example.com's is older than 1d"),
        "{text}"
    );
    assert!(
        text.contains("unknown@vm's does not count: nobody can tell who that is"),
        "{text}"
    );
    run.assert_stdout_contains("alice@example.com's own does not count: four eyes");
}

#[test]
fn approve_refuses_approvals_that_can_never_count() {
    let env = project(&format!(
        "{STAGING_TRUE}  production:\n    - {{ id: four-eyes, approvals: {{ min: 1 }} }}\n"
    ));
    env.release(&["approve", "api", "--to", "development"])
        .assert_code(3)
        .assert_stderr_contains("development is the first stage")
        .assert_stderr_contains("its next promotion is `--to staging`");
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(0)
        .assert_stdout_contains("(no approvals gate guards staging)");
    env.release(&["approve", "api", "--to", "production"])
        .assert_code(0)
        .assert_stdout_contains("(it counts for anyone but tester@");
    env.release(&["promote", "api", "--to", "staging", "--reason", "x"])
        .assert_code(0);
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(3)
        .assert_stderr_contains("api is already at staging")
        .assert_stderr_contains("its next promotion is `--to production`");
    assert_eq!(of_kind(&env, "approval.recorded").len(), 2);
}

/// `release ARGS` with no way to tell who runs it: no git user.email, no $USER, no $LOGNAME.
fn release_as_nobody(env: &TestEnv, args: &[&str]) -> Run {
    let mut command = env.command();
    command.env_remove("USER").args(args);
    Run::of(&mut command)
}

#[test]
fn approve_refuses_an_actor_nobody_can_name() {
    let env = project("  staging:\n    - { id: four-eyes, approvals: { min: 1 } }\n");
    release_as_nobody(&env, &["approve", "api", "--to", "staging"])
        .assert_code(2)
        .assert_stderr_contains("cannot tell who you are: set git's user.email (`git config user.email you@example.com`) or $USER");
    // An empty or blank $USER names nobody either (it used to record "@host", who counted).
    for blank in ["", " "] {
        let mut command = env.command();
        command.env("USER", blank).env("LOGNAME", blank);
        command.args(["approve", "api", "--to", "staging"]);
        Run::of(&mut command).assert_code(2);
    }
    // LOGNAME is read when USER says nothing.
    let mut command = env.command();
    command.env("USER", "").env("LOGNAME", "bob");
    command.args(["approve", "api", "--to", "staging"]);
    Run::of(&mut command)
        .assert_code(0)
        .assert_stdout_contains("bob@");
    assert_eq!(of_kind(&env, "approval.recorded").len(), 1);
}

#[test]
fn coverage_and_uptime_failures_get_a_fix_for_their_kind_of_problem() {
    let prometheus = Prometheus::start(
        r#"avg_over_time(up{job="api"}[7d])"#,
        &json!({ "status": "success", "data": { "resultType": "vector", "result": [
            { "metric": { "job": "api" }, "value": [1_764_000_000, "NaN"] },
        ] } }),
    );
    let env = project(&format!(
        "  staging:\n    - {{ id: cov, coverage: {{ report: \"coverage/{{{{ component }}}}.info\", min: 50 }} }}\n{}",
        uptime_gate("up", &prometheus.server.uri(), "0.9")
    ));
    env.write("coverage/api.info", "");
    env.write(
        "coverage/billing.info",
        "SF:src/a.rs\nDA:1,1\nLH:5\nLF:2\nend_of_record\n",
    );
    let (run, report) = evaluate(&env, "api", "staging");
    run.assert_code(1);
    let cov = gate(&report, "cov");
    assert!(summary(cov).contains("the report is empty"), "{cov:#}");
    assert!(
        fix(cov).starts_with("run the tests with coverage on"),
        "{cov:#}"
    );
    let up = gate(&report, "up");
    assert!(summary(up).contains("not a finite number"), "{up:#}");
    assert!(fix(up).starts_with("guard the query against NaN"), "{up:#}");
    let (_, report) = evaluate(&env, "billing", "staging");
    let cov = gate(&report, "cov");
    assert!(fix(cov).starts_with("regenerate the report"), "{cov:#}");
    // A folder where the report should be is named as such, with its own fix.
    std::fs::remove_file(env.join("coverage/api.info")).unwrap();
    std::fs::create_dir(env.join("coverage/api.info")).unwrap();
    let (_, report) = evaluate(&env, "api", "staging");
    let cov = gate(&report, "cov");
    assert!(
        summary(cov).contains("is a folder, not a report file"),
        "{cov:#}"
    );
    assert!(
        fix(cov).starts_with("point `report:` at the report file"),
        "{cov:#}"
    );
    // Unreachable is its own problem.
    let env = project(&format!(
        "  staging:\n{}",
        uptime_gate("up", "http://127.0.0.1:1", "0.9")
    ));
    let (_, report) = evaluate(&env, "api", "staging");
    assert!(fix(gate(&report, "up")).starts_with("check that Prometheus is running"));
}

#[test]
fn promoting_into_the_first_stage_names_the_next_promotion() {
    let env = project(STAGING_TRUE);
    let run = env.release(&[
        "--json",
        "promote",
        "api",
        "--to",
        "development",
        "--reason",
        "x",
    ]);
    run.assert_code(3);
    let out: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        fix(rule(&out, "next-stage")),
        "api is at development: its next promotion is `--to staging`"
    );
    env.release(&["promote", "api", "--to", "staging", "--reason", "x"])
        .assert_code(0);
    env.release(&["promote", "api", "--to", "development", "--reason", "x"])
        .assert_code(3)
        .assert_stdout_contains("fix: api is at staging: its next promotion is `--to production`");
}

/// A hang-up (a dropped ssh session) while the gates run is an interrupt, as in a run:
/// the gates' commands are stopped, the lock is freed, exit 130 (the process used to die
/// of the signal, leaving the gate's command running and, for `promote`, its lock).
#[test]
fn a_hang_up_during_the_gates_stops_their_commands_and_frees_the_lock() {
    let env = project(
        "  staging:
    - { id: slow, run: [sh, -c, \"touch started; sleep 30; touch finished\"] }
",
    );
    init_git(&env, "alice@example.com");
    for args in [
        &["gates", "api", "--stage", "staging"][..],
        &["promote", "api", "--to", "staging"][..],
    ] {
        let _ = std::fs::remove_file(env.join("started"));
        let mut child = env
            .command()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_file(&env, "started");
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(130), "{args:?}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!env.join("finished").exists(), "{args:?}: the gate went on");
        let locks = std::fs::read_dir(env.join(".release/locks")).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "lock"))
            })
            .count()
        });
        assert_eq!(locks, 0, "{args:?}: a lock was left behind");
    }
}

/// A report that cannot be written fails `gates`, after the results are shown (they were
/// evaluated and recorded; the table used to be lost).
#[test]
fn gates_show_their_results_when_the_report_cannot_be_written() {
    let env = project("  staging:\n    - { id: docs, file_exists: [release.yaml] }\n");
    std::fs::create_dir(env.join("workflow_report_api.json")).unwrap();
    let run = env.release(&["gates", "api", "--stage", "staging"]);
    run.assert_code(1)
        .assert_stdout_contains("PASSED: all")
        .assert_stdout_contains("report: not written (see below)")
        .assert_stderr_contains("cannot write workflow_report_api.json");
    assert_eq!(of_kind(&env, "gates.evaluated").len(), 1);
}

/// A component is not promoted out of a stage while a run of it there holds the lock (a
/// rollback under way there may find it should not move on); once the run ends, it is.
#[test]
fn promote_waits_for_a_rollback_under_way_in_the_stage_it_leaves() {
    let env = project(
        "  staging:
    - { id: docs, file_exists: [release.yaml] }
  production:
    - { id: docs, file_exists: [release.yaml] }
",
    );
    env.write(
        "runbooks/staging/rollback.yaml",
        "steps:\n  - id: slow\n    run: [sh, -c, \"touch started; sleep 3\"]\n",
    );
    init_git(&env, "alice@example.com");
    env.release(&["promote", "api", "--to", "staging", "--reason", "r"])
        .assert_code(0);
    let child = env
        .command()
        .args(["rollback", "api", "--stage", "staging", "--reason", "5xx"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&env, "started");
    env.release(&["promote", "api", "--to", "production", "--reason", "r"])
        .assert_code(3)
        .assert_stderr_contains(
            "api cannot leave staging while a run of it there holds the lock (a rollback may be under way)",
        );
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    env.release(&["promote", "api", "--to", "production", "--dry-run"])
        .assert_code(0);
}

/// An attestation, like an approval, needs someone to name: by nobody in particular it is
/// refused (exit 2), and one recorded so before (an older release) never passes the gate.
/// An approval of a deprecated component, which can never count, is refused (exit 3).
#[test]
fn attestations_need_a_name_and_deprecated_components_take_no_approval() {
    let env = project("  staging:\n    - { id: sec, attested: { check: security-review } }\n");
    release_as_nobody(&env, &["attest", "api", "security-review"])
        .assert_code(2)
        .assert_stderr_contains("cannot tell who you are");
    assert!(of_kind(&env, "attestation.recorded").is_empty());
    // An attestation recorded by nobody (before attest refused): the gate does not pass.
    env.release(&["attest", "api", "security-review"])
        .assert_code(0);
    let log = env.read(".release/audit.jsonl");
    let mut record: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    record["actor"] = json!("unknown@vm");
    record["prev"] = json!("0".repeat(64));
    env.write(
        ".release/audit.jsonl",
        &(serde_json::to_string(&record).unwrap() + "\n"),
    );
    env.release(&["gates", "api", "--stage", "staging"])
        .assert_code(1)
        .assert_stdout_contains("names nobody, so it vouches for nothing");

    env.release(&["deprecate", "api", "--reason", "replaced"])
        .assert_code(0);
    env.release(&["approve", "api", "--to", "staging"])
        .assert_code(3)
        .assert_stderr_contains("api is deprecated: it can no longer be promoted");
}

/// The check is made again after the gates: a run that took the leaving stage's lock while
/// they ran stops the promotion too (it was checked once, before them).
#[test]
fn promote_checks_the_stage_it_leaves_again_after_the_gates() {
    let env = project("  staging:\n    - { id: slow, run: [sh, -c, \"touch gating; sleep 2\"] }\n");
    env.write(
        "rb/work.yaml",
        "steps:\n  - id: work\n    run: [sh, -c, \"touch running; sleep 4\"]\n",
    );
    init_git(&env, "alice@example.com");
    let spawn = |args: &[&str]| {
        env.command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let promote = spawn(&["promote", "api", "--to", "staging", "--reason", "r"]);
    wait_for_file(&env, "gating");
    let run = spawn(&[
        "run",
        "rb/work.yaml",
        "--component",
        "api",
        "--stage",
        "development",
        "--reason",
        "w",
    ]);
    wait_for_file(&env, "running");
    let promoted = promote.wait_with_output().unwrap();
    assert_eq!(promoted.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&promoted.stderr)
            .contains("api cannot leave development while a run of it there holds the lock"),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    assert!(of_kind(&env, "promotion.completed").is_empty());
    assert_eq!(run.wait_with_output().unwrap().status.code(), Some(0));
}
