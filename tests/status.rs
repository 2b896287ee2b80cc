//! `release status [COMPONENT]` (SPEC §5): the board, derived from the audit log alone.
//!
//! There is no `promote` command to produce a history here, so each test writes the audit
//! log by hand, as `release` writes it (SPEC §7: one JSON record a line, hash-chained, past
//! timestamps), and `release audit verify` proves the hand-written log is valid.
//! Ages ("12d ago") depend on today: the human output is compared with them masked.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Run, TestEnv};

const CONFIG: &str = "\
version: 1
components:
  player_experience: {}
  orchestration:
    depends_on: [player_experience]
  checkout:
    depends_on: [orchestration]
  legacy: {}
  search: {}
  fresh: {}
gates:
  staging:
    - { id: reviewed, attested: { check: code-review } }
  production:
    - { id: stable, stable_for: 7d }
    - { id: security-review, attested: { check: security-review, within: 90d } }
";

const ROLLBACK_RUNBOOK: &str = "runbooks/production/rollback.yaml";

/// An audit log written record by record, chained as `release` chains it.
struct AuditLog {
    text: String,
    prev: String,
    seq: u64,
    runs: u64,
}

impl AuditLog {
    fn new() -> Self {
        Self {
            text: String::new(),
            prev: "0".repeat(64),
            seq: 0,
            runs: 0,
        }
    }

    /// A new run id.
    fn run(&mut self) -> String {
        self.runs += 1;
        format!("r20250101T000000Z-{:06x}", self.runs)
    }

    /// One record: the fields in the order `release` writes them; `prev` is the SHA-256
    /// of the previous line's bytes.
    #[expect(clippy::too_many_arguments, reason = "one argument per record field")]
    fn record(
        &mut self,
        ts: &str,
        run: &str,
        kind: &str,
        actor: &str,
        component: &str,
        stage: &str,
        data: &Value,
    ) -> &mut Self {
        self.seq += 1;
        let line = format!(
            r#"{{"v":1,"seq":{},"ts":{},"run":{},"kind":{},"actor":{},"component":{},"stage":{},"data":{},"prev":"{}"}}"#,
            self.seq,
            json!(ts),
            json!(run),
            json!(kind),
            json!(actor),
            json!(component),
            json!(stage),
            data,
            self.prev
        );
        self.prev = hex::encode(Sha256::digest(line.as_bytes()));
        self.text.push_str(&line);
        self.text.push('\n');
        self
    }

    fn promotion(
        &mut self,
        ts: &str,
        actor: &str,
        component: &str,
        from: &str,
        to: &str,
        commit: &str,
    ) -> &mut Self {
        let run = self.run();
        let data =
            json!({ "from": from, "to": to, "commit": commit, "reason": "scheduled release" });
        self.record(ts, &run, "promotion.completed", actor, component, to, &data)
    }

    /// A `gates.evaluated` record: `gates` are (id, kind, passed, summary); the rules
    /// are those of the next stage, all passing unless `failing_rule` names one.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per field of the evaluation"
    )]
    fn gates(
        &mut self,
        ts: &str,
        actor: &str,
        component: &str,
        from: &str,
        target: &str,
        failing_rule: Option<(&str, &str)>,
        gates: &[(&str, &str, bool, &str)],
    ) -> &mut Self {
        let run = self.run();
        let mut rules = vec![
            json!({"id": "not-deprecated", "kind": "rule", "passed": true, "summary": format!("{component} is not deprecated"), "evidence": {}}),
            json!({"id": "next-stage", "kind": "rule", "passed": true, "summary": format!("{from} → {target} is the next stage"), "evidence": {}}),
            json!({"id": "dependencies", "kind": "rule", "passed": true, "summary": "every dependency is at the target or higher", "evidence": {}}),
        ];
        if let Some((id, summary)) = failing_rule {
            for rule in &mut rules {
                if rule["id"] == id {
                    rule["passed"] = json!(false);
                    rule["summary"] = json!(summary);
                }
            }
        }
        let gates: Vec<Value> = gates
            .iter()
            .map(|(id, kind, passed, summary)| {
                json!({"id": id, "kind": kind, "passed": passed, "summary": summary, "evidence": {}})
            })
            .collect();
        let passed = rules
            .iter()
            .chain(&gates)
            .all(|g| g["passed"] == json!(true));
        let data = json!({ "target": target, "from": from, "passed": passed, "rules": rules, "gates": gates });
        self.record(ts, &run, "gates.evaluated", actor, component, target, &data)
    }

    /// A run of the stage's rollback runbook, with one step: started at `start`, finished
    /// (succeeded) at `end`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per fact of the run"
    )]
    fn rollback(
        &mut self,
        start: &str,
        end: &str,
        actor: &str,
        component: &str,
        stage: &str,
        dry_run: bool,
        reason: Option<&str>,
    ) -> &mut Self {
        let run = self.run();
        let started = json!({
            "purpose": "rollback",
            "dry_run": dry_run,
            "runbook": ROLLBACK_RUNBOOK,
            "runbook_sha256": hex::encode(Sha256::digest(b"the runbook")),
            "params": {},
            "reason": reason,
            "command": [],
        });
        self.record(
            start,
            &run,
            "run.started",
            actor,
            component,
            stage,
            &started,
        );
        self.record(
            start,
            &run,
            "step.started",
            actor,
            component,
            stage,
            &json!({"step": "revert"}),
        );
        let finished =
            json!({"step": "revert", "outcome": "succeeded", "duration_ms": 1200, "error": null});
        self.record(
            end,
            &run,
            "step.finished",
            actor,
            component,
            stage,
            &finished,
        );
        self.record(
            end,
            &run,
            "run.finished",
            actor,
            component,
            stage,
            &json!({"outcome": "succeeded"}),
        )
    }

    fn attest(
        &mut self,
        ts: &str,
        actor: &str,
        component: &str,
        stage: &str,
        check: &str,
    ) -> &mut Self {
        let run = self.run();
        let data = json!({ "check": check, "note": null });
        self.record(
            ts,
            &run,
            "attestation.recorded",
            actor,
            component,
            stage,
            &data,
        )
    }

    fn deprecate(
        &mut self,
        ts: &str,
        actor: &str,
        component: &str,
        stage: &str,
        reason: &str,
    ) -> &mut Self {
        let run = self.run();
        let data = json!({ "reason": reason });
        self.record(
            ts,
            &run,
            "component.deprecated",
            actor,
            component,
            stage,
            &data,
        )
    }
}

/// Times relative to now, so that the ages the board shows ("12d ago") are fixed: the
/// human output is compared with its dates masked instead.
struct Clock {
    now: DateTime<Utc>,
}

impl Clock {
    fn new() -> Self {
        let now = Utc::now().with_nanosecond(0).expect("a time");
        Self { now }
    }

    fn at(&self, days: i64, hours: i64) -> DateTime<Utc> {
        self.now - TimeDelta::days(days) - TimeDelta::hours(hours)
    }

    /// A record's `ts`, `days` and `hours` ago.
    fn ts(&self, days: i64, hours: i64) -> String {
        self.at(days, hours)
            .format("%Y-%m-%dT%H:%M:%S.000Z")
            .to_string()
    }

    /// The same time as `release status --json` writes it.
    fn json(&self, days: i64, hours: i64) -> Value {
        json!(
            self.at(days, hours)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        )
    }
}

/// The story every test but one reads (days ago):
/// - `player_experience`: development → staging (40) → production (12), then a real
///   rollback there 2 hours ago;
/// - orchestration: at staging (30), its production gates failed (4: security-review);
/// - checkout: at staging (20), blocked by its dependency orchestration (at staging); its
///   only evaluation of the production gates (25) predates its promotion (stale);
/// - legacy: deprecated (10); search: at development, its staging gates passed (6);
/// - fresh: never named in the log; retired: only in the log (no longer declared).
#[expect(clippy::too_many_lines, reason = "one story, told in order")]
fn story(clock: &Clock) -> AuditLog {
    let (alice, bob, carol, dave) = (
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    );
    let t = |days, hours| clock.ts(days, hours);
    let reviewed = [(
        "reviewed",
        "attested",
        true,
        "code-review attested by alice@example.com",
    )];
    let mut log = AuditLog::new();
    log.attest(&t(60, 0), dave, "legacy", "development", "code-review")
        .attest(&t(50, 0), alice, "retired", "development", "code-review")
        .gates(
            &t(40, 1),
            alice,
            "player_experience",
            "development",
            "staging",
            None,
            &reviewed,
        )
        .promotion(
            &t(40, 0),
            alice,
            "player_experience",
            "development",
            "staging",
            &"a".repeat(40),
        )
        .attest(
            &t(35, 0),
            bob,
            "orchestration",
            "development",
            "code-review",
        )
        .promotion(
            &t(30, 0),
            bob,
            "orchestration",
            "development",
            "staging",
            &"b".repeat(40),
        )
        .gates(
            &t(25, 0),
            carol,
            "checkout",
            "development",
            "production",
            Some((
                "next-stage",
                "checkout is at development: production would skip staging",
            )),
            &[(
                "stable",
                "stable_for",
                false,
                "in development for 0d, 7d asked",
            )],
        )
        .promotion(
            &t(20, 0),
            carol,
            "checkout",
            "development",
            "staging",
            &"c".repeat(40),
        )
        .promotion(
            &t(12, 0),
            alice,
            "player_experience",
            "staging",
            "production",
            &"d".repeat(40),
        )
        .deprecate(
            &t(10, 0),
            dave,
            "legacy",
            "development",
            "replaced by checkout",
        )
        .gates(
            &t(6, 0),
            alice,
            "search",
            "development",
            "staging",
            None,
            &reviewed,
        )
        .rollback(
            &t(5, 1),
            &t(5, 0),
            carol,
            "orchestration",
            "production",
            true,
            None,
        )
        .gates(
            &t(4, 0),
            carol,
            "orchestration",
            "staging",
            "production",
            None,
            &[
                (
                    "stable",
                    "stable_for",
                    true,
                    "in staging for 26d, 7d asked, no rollback",
                ),
                (
                    "security-review",
                    "attested",
                    false,
                    "no security-review attestation recorded",
                ),
            ],
        )
        .rollback(
            &t(0, 3),
            &t(0, 2),
            bob,
            "player_experience",
            "production",
            false,
            Some("5xx spike"),
        );
    log
}

fn project(log: Option<&AuditLog>) -> TestEnv {
    let env = TestEnv::new();
    env.write("release.yaml", CONFIG);
    if let Some(log) = log {
        env.write(".release/audit.jsonl", &log.text);
    }
    env
}

/// The human output with its dates masked (same width: the columns stay aligned).
fn masked(run: &Run) -> String {
    let date = regex::Regex::new(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}").expect("regex");
    date.replace_all(&run.stdout, "yyyy-mm-dd hh:mm")
        .into_owned()
}

fn status_json(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let run = env.release(&all);
    run.assert_code(0);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", run.transcript()))
}

fn component<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {document:#}"))
}

#[test]
fn the_hand_written_log_verifies() {
    let log = story(&Clock::new());
    let env = project(Some(&log));
    env.release(&["audit", "verify"])
        .assert_code(0)
        .assert_stdout_contains(&format!("ok: {} records, head {}", log.seq, log.prev));
}

#[test]
fn board_after_promotions_a_rollback_gate_evaluations_and_a_deprecation() {
    let clock = Clock::new();
    let env = project(Some(&story(&clock)));
    let run = env.release(&["status"]);
    run.assert_code(0);
    assert_eq!(run.stderr, "", "{}", run.transcript());
    insta::assert_snapshot!(masked(&run), @r"
    Development  Staging        Production         Deprecated
    search       orchestration  player_experience  legacy
    fresh        checkout

    component          stage           since             last action
    player_experience  production      yyyy-mm-dd hh:mm  rollback at production: succeeded
                       commit ddddddd  (12d ago)         yyyy-mm-dd hh:mm (2h ago), bob@example.com
      next: none, at the last stage
    orchestration      staging         yyyy-mm-dd hh:mm  gates for production: failed
                       commit bbbbbbb  (30d ago)         yyyy-mm-dd hh:mm (4d ago), carol@example.com
      next → production: BLOCKED
        - security-review: no security-review attestation recorded
        as evaluated on yyyy-mm-dd hh:mm; after a fix, evaluate again: `release gates orchestration
          --stage production`
    checkout           staging         yyyy-mm-dd hh:mm  promoted development → staging
                       commit ccccccc  (20d ago)         yyyy-mm-dd hh:mm (20d ago), carol@example.com
      next → production: BLOCKED
        - dependencies: needs its dependencies at production or higher: orchestration is at staging
        gates last evaluated on yyyy-mm-dd hh:mm, before it entered staging: evaluate them again:
          `release gates checkout --stage production`
    legacy             development     yyyy-mm-dd hh:mm  deprecated: replaced by checkout
                                       (60d ago)         yyyy-mm-dd hh:mm (10d ago), dave@example.com
      next: none, deprecated on yyyy-mm-dd hh:mm by dave@example.com: replaced by checkout (never
        promoted again)
    search             development     yyyy-mm-dd hh:mm  gates for staging: passed
                                       (6d ago)          yyyy-mm-dd hh:mm (6d ago), alice@example.com
      next → staging: ready, gates passed on yyyy-mm-dd hh:mm: `release promote search --to staging`
    fresh              development     -                 -
      next → staging: gates not evaluated yet: `release gates fresh --stage staging`

    6 components: 1 ready to promote, 2 blocked, 1 with gates to evaluate, 1 at the last stage, 1
      deprecated
    not shown: retired (named in the audit log, no longer declared in release.yaml)
    ");
    for line in run.stdout.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line:?}"
        );
    }
}

#[test]
fn json_document() {
    let clock = Clock::new();
    let env = project(Some(&story(&clock)));
    let doc = status_json(&env, &[]);
    assert_eq!(
        doc["stages"],
        json!(["development", "staging", "production"])
    );
    assert_eq!(
        doc["columns"],
        json!({
            "development": ["search", "fresh"],
            "staging": ["orchestration", "checkout"],
            "production": ["player_experience"],
            "deprecated": ["legacy"],
        })
    );
    let names: Vec<&str> = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "player_experience",
            "orchestration",
            "checkout",
            "legacy",
            "search",
            "fresh"
        ]
    );
    assert_eq!(doc["undeclared"], json!(["retired"]));

    assert_eq!(
        component(&doc, "player_experience"),
        &json!({
            "name": "player_experience",
            "stage": "production",
            "since": clock.json(12, 0),
            "commit": "d".repeat(40),
            "deprecated": null,
            "last_action": {
                "at": clock.json(0, 2),
                "actor": "bob@example.com",
                "kind": "run.finished",
                "summary": "rollback at production: succeeded",
            },
            "next": null,
            "promotion": "last-stage",
            "ready": false,
            "blockers": [],
            "gates": null,
            "note": null,
        })
    );
}

#[test]
fn json_next_promotion_and_blockers() {
    let clock = Clock::new();
    let env = project(Some(&story(&clock)));
    let doc = status_json(&env, &[]);
    let orchestration = component(&doc, "orchestration");
    assert_eq!(orchestration["stage"], "staging");
    assert_eq!(orchestration["since"], clock.json(30, 0));
    assert_eq!(orchestration["next"], "production");
    assert_eq!(orchestration["promotion"], "blocked");
    assert_eq!(orchestration["ready"], false);
    assert_eq!(
        orchestration["blockers"],
        json!(["security-review: no security-review attestation recorded"])
    );
    assert_eq!(
        orchestration["gates"],
        json!({
            "target": "production",
            "configured": 2,
            "evaluated_at": clock.json(4, 0),
            "passed": false,
            "stale": false,
            "changed": false,
            "failing": ["security-review: no security-review attestation recorded"],
        })
    );
    assert_eq!(
        orchestration["last_action"]["summary"],
        "gates for production: failed"
    );

    // The dependency rule is judged now; the stale evaluation's failures are not blockers.
    let checkout = component(&doc, "checkout");
    assert_eq!(checkout["promotion"], "blocked");
    assert_eq!(
        checkout["blockers"],
        json!([
            "dependencies: needs its dependencies at production or higher: orchestration is at staging"
        ])
    );
    assert_eq!(checkout["gates"]["stale"], true);
    assert_eq!(checkout["gates"]["evaluated_at"], clock.json(25, 0));
    assert_eq!(
        checkout["gates"]["failing"],
        json!(["stable: in development for 0d, 7d asked"])
    );

    let legacy = component(&doc, "legacy");
    assert_eq!(legacy["stage"], "development");
    assert_eq!(legacy["since"], clock.json(60, 0));
    assert_eq!(legacy["promotion"], "deprecated");
    assert_eq!(legacy["next"], Value::Null);
    assert_eq!(
        legacy["deprecated"],
        json!({"at": clock.json(10, 0), "actor": "dave@example.com", "reason": "replaced by checkout"})
    );
    assert_eq!(
        legacy["blockers"],
        json!([format!(
            "not-deprecated: legacy was deprecated on {} by dave@example.com: replaced by checkout",
            clock.at(10, 0).format("%Y-%m-%d")
        )])
    );

    let search = component(&doc, "search");
    assert_eq!(search["promotion"], "ready");
    assert_eq!(search["ready"], true);
    assert_eq!(search["blockers"], json!([]));
    assert_eq!(search["gates"]["passed"], true);

    let fresh = component(&doc, "fresh");
    assert_eq!(fresh["stage"], "development");
    assert_eq!(fresh["since"], Value::Null);
    assert_eq!(fresh["last_action"], Value::Null);
    assert_eq!(fresh["commit"], Value::Null);
    assert_eq!(fresh["promotion"], "not-evaluated");
    assert_eq!(fresh["gates"]["evaluated_at"], Value::Null);
    assert_eq!(fresh["gates"]["passed"], Value::Null);
}

#[test]
fn one_component() {
    let clock = Clock::new();
    let env = project(Some(&story(&clock)));
    let run = env.release(&["status", "checkout"]);
    run.assert_code(0);
    insta::assert_snapshot!(masked(&run), @r"
    Development  Staging   Production  Deprecated
    -            checkout  -           -

    component  stage           since             last action
    checkout   staging         yyyy-mm-dd hh:mm  promoted development → staging
               commit ccccccc  (20d ago)         yyyy-mm-dd hh:mm (20d ago), carol@example.com
      next → production: BLOCKED
        - dependencies: needs its dependencies at production or higher: orchestration is at staging
        gates last evaluated on yyyy-mm-dd hh:mm, before it entered staging: evaluate them again:
          `release gates checkout --stage production`
    ");

    let doc = status_json(&env, &["checkout"]);
    assert_eq!(doc["components"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["components"][0]["name"], "checkout");
    assert_eq!(doc["columns"]["staging"], json!(["checkout"]));
    assert_eq!(doc["columns"]["development"], json!([]));
    assert_eq!(doc["undeclared"], json!([]));
}

#[test]
fn unknown_component_is_invalid_input() {
    let clock = Clock::new();
    let env = project(Some(&story(&clock)));
    env.release(&["status", "chekout"])
        .assert_code(2)
        .assert_stderr_contains("unknown component `chekout`")
        .assert_stderr_contains("did you mean `checkout`?");
    // Named in the log but no longer declared: still unknown, and the hint says why.
    env.release(&["status", "retired"])
        .assert_code(2)
        .assert_stderr_contains(
            "the audit log names `retired`, but release.yaml no longer declares it",
        );
}

#[test]
fn without_an_audit_log_every_component_is_at_the_first_stage() {
    let env = project(None);
    let doc = status_json(&env, &[]);
    assert_eq!(
        doc["columns"]["development"],
        json!([
            "player_experience",
            "orchestration",
            "checkout",
            "legacy",
            "search",
            "fresh"
        ])
    );
    for c in doc["components"].as_array().expect("components") {
        assert_eq!(c["stage"], "development", "{c:#}");
        assert_eq!(c["since"], Value::Null, "{c:#}");
        assert_eq!(c["next"], "staging", "{c:#}");
    }
    // Its dependency is at development too.
    assert_eq!(
        component(&doc, "orchestration")["blockers"],
        json!([
            "dependencies: needs its dependencies at staging or higher: player_experience is at development"
        ])
    );
    let run = env.release(&["status"]);
    run.assert_code(0)
        .assert_stdout_contains("Development        Staging  Production  Deprecated\n")
        .assert_stdout_contains("gates not evaluated yet: `release gates fresh --stage staging`");
}

#[test]
fn a_custom_stage_list_makes_the_columns() {
    let env = TestEnv::new();
    env.write(
        "release.yaml",
        "version: 1\nstages: [dev, qa, live]\ncomponents:\n  api: {}\n",
    );
    let mut log = AuditLog::new();
    log.promotion(
        "2025-05-01T10:00:00.000Z",
        "alice@example.com",
        "api",
        "dev",
        "qa",
        "v1.2",
    );
    env.write(".release/audit.jsonl", &log.text);
    let run = env.release(&["status"]);
    run.assert_code(0)
        .assert_stdout_contains("Dev  Qa   Live  Deprecated\n-    api  -     -\n")
        .assert_stdout_contains("commit v1.2")
        // No gate guards `live`: the rules alone decide.
        .assert_stdout_contains("next → live: ready, no gate guards live");
    let doc = status_json(&env, &[]);
    assert_eq!(doc["stages"], json!(["dev", "qa", "live"]));
    assert_eq!(
        doc["columns"],
        json!({"dev": [], "qa": ["api"], "live": [], "deprecated": []})
    );
    assert_eq!(component(&doc, "api")["ready"], true);
}

/// `release promote` without `--reason` records `"reason": null`: the board reads it.
#[test]
fn a_promotion_without_a_reason_is_read() {
    let env = TestEnv::new();
    env.write("release.yaml", "version: 1\ncomponents:\n  api: {}\n");
    let mut log = AuditLog::new();
    let data = json!({ "from": "development", "to": "staging", "commit": "abc", "reason": null });
    log.record(
        "2025-05-01T10:00:00.000Z",
        "r-1",
        "promotion.completed",
        "alice@example.com",
        "api",
        "staging",
        &data,
    );
    env.write(".release/audit.jsonl", &log.text);
    env.release(&["audit", "verify"]).assert_code(0);
    let doc = status_json(&env, &[]);
    assert_eq!(component(&doc, "api")["stage"], "staging");
}

#[test]
fn a_gate_added_since_the_last_evaluation_makes_it_stale_not_ready() {
    let env = TestEnv::new();
    let config = "version: 1\ncomponents:\n  app: {}\ngates:\n  staging:\n    - { id: docs, file_exists: [release.yaml] }\n";
    env.write("release.yaml", config);
    env.release(&["gates", "app", "--stage", "staging"])
        .assert_code(0);
    let doc = status_json(&env, &["app"]);
    assert_eq!(component(&doc, "app")["promotion"], "ready");

    // A gate is added: the evaluation no longer says anything of the gates configured now.
    env.write(
        "release.yaml",
        &format!("{config}    - {{ id: tests, run: [\"false\"] }}\n"),
    );
    let doc = status_json(&env, &["app"]);
    let app = component(&doc, "app");
    assert_eq!(app["promotion"], "not-evaluated", "{app:#}");
    assert_eq!(app["ready"], false);
    assert_eq!(app["gates"]["configured"], 2);
    assert_eq!(app["gates"]["stale"], true);
    assert_eq!(app["gates"]["changed"], true);
    let run = env.release(&["status", "app"]);
    run.assert_code(0);
    let text = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("next → staging: release.yaml's gates for staging changed since the last evaluation: run `release gates app --stage staging`"),
        "{}",
        run.transcript()
    );
    assert!(!text.contains("ready"), "{}", run.transcript());

    // Evaluated again, it is judged on the new gates.
    env.release(&["gates", "app", "--stage", "staging"])
        .assert_code(1);
    let doc = status_json(&env, &["app"]);
    let app = component(&doc, "app");
    assert_eq!(app["promotion"], "blocked");
    assert_eq!(app["gates"]["changed"], false);
    // A gate removed makes it stale too.
    env.write("release.yaml", config);
    let doc = status_json(&env, &["app"]);
    assert_eq!(component(&doc, "app")["promotion"], "not-evaluated");
}
