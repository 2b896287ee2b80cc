//! What the audit log says of each component, replayed in one streaming pass (there is no
//! second state file): the stage it has reached and since when, the commits it was promoted
//! with, its rollbacks, its rehearsed rollbacks (with the runbook's hash), attestations,
//! approvals, the latest gate evaluation and its last action.
//!
//! Invariants:
//! - One pass, memory flat in the log's size: per component only the latest of each kind
//!   of fact is kept (the latest rehearsal per stage and runbook hash, the latest
//!   attestation per check, the latest approval per approver), and a run's start is kept
//!   only until its end is read.
//! - Only the fields a fact needs are parsed: a record's `data` is parsed for the kinds
//!   that carry facts, never for step records, which are most of a log.
//! - The record order is the log's order (appends are serialised), so "latest" is "last".

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::audit::{AuditError, AuditLog};

/// Everything the log says, per component.
#[derive(Clone, Debug, Default)]
pub struct History {
    components: BTreeMap<String, ComponentHistory>,
    /// How many records were read.
    pub records: u64,
    /// Real rollback runs that did not count (declined or blocked before starting): a
    /// resume of one of them is the rollback that counts.
    uncounted: std::collections::HashSet<String>,
}

/// One component's facts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ComponentHistory {
    /// The stage reached; `None` means the first stage (no promotion recorded).
    pub stage: Option<String>,
    /// When it entered `stage`; at the first stage, its first record in the log.
    pub entered_at: Option<DateTime<Utc>>,
    /// The commit recorded when it entered its current stage.
    pub commit: Option<String>,
    /// The commit recorded by the promotion into that stage before that one.
    pub previous_commit: Option<String>,
    pub deprecated: Option<Deprecation>,
    /// Real rollback runs, per stage.
    pub rollbacks: BTreeMap<String, Rollbacks>,
    /// Successful rollback runs (dry or real), per stage, the latest per runbook hash.
    pub rehearsals: BTreeMap<String, Vec<Rehearsal>>,
    /// The latest attestation of each check.
    pub attestations: BTreeMap<String, Signed>,
    /// Approvals per target stage, the latest per approver, since the last promotion into
    /// that stage (a promotion uses them up).
    pub approvals: BTreeMap<String, BTreeMap<String, Signed>>,
    /// The latest gate evaluation per target stage.
    pub gates: BTreeMap<String, GatesSeen>,
    /// The target stages for which `release gates --file-blockers` ran: a blocker issue may
    /// be open there, for `promote` to close.
    pub blockers_filed: std::collections::BTreeSet<String>,
    /// The latest refused promotion.
    pub refusal: Option<Refusal>,
    pub last_action: Option<LastAction>,
    /// When each stage was last entered (its promotion's time).
    #[serde(skip)]
    entered: HashMap<String, DateTime<Utc>>,
    /// The commits of each stage's last two promotions: (latest, the one before).
    #[serde(skip)]
    commits: HashMap<String, (String, Option<String>)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Deprecation {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub reason: String,
}

/// Real rollbacks at one stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rollbacks {
    pub total: u64,
    /// Since the component last entered the stage.
    pub since_entered: u64,
    pub last_at: Option<DateTime<Utc>>,
}

/// A successful run of a stage's rollback runbook.
#[derive(Clone, Debug, Serialize)]
pub struct Rehearsal {
    pub run: String,
    /// When it finished.
    pub at: DateTime<Utc>,
    pub dry_run: bool,
    pub runbook: String,
    pub runbook_sha256: String,
}

/// Who recorded something, when, with what note.
#[derive(Clone, Debug, Serialize)]
pub struct Signed {
    pub actor: String,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

/// A gate evaluation as recorded: when, and what failed.
#[derive(Clone, Debug, Serialize)]
pub struct GatesSeen {
    pub at: DateTime<Utc>,
    pub passed: bool,
    /// The failing gates: `id: summary`.
    pub failing: Vec<String>,
    /// The failing promotion rules at the time: `id: summary`.
    pub failing_rules: Vec<String>,
    /// The ids of the gates evaluated, passing or not, in order.
    pub ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    pub at: DateTime<Utc>,
    pub to: String,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastAction {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// The record kind it comes from.
    pub kind: String,
    /// For people: "promoted staging → production", "rollback at production: succeeded".
    pub summary: String,
}

impl ComponentHistory {
    /// The successful rehearsals of `stage`'s rollback runbook, newest first.
    pub fn rehearsals_of(&self, stage: &str) -> Vec<&Rehearsal> {
        let mut found: Vec<&Rehearsal> = self
            .rehearsals
            .get(stage)
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        found.sort_by_key(|r| std::cmp::Reverse(r.at));
        found
    }

    fn promoted(&mut self, at: DateTime<Utc>, actor: &str, f: Fields) {
        self.stage = Some(f.to.clone());
        self.entered_at = Some(at);
        self.entered.insert(f.to.clone(), at);
        self.rollbacks
            .entry(f.to.clone())
            .or_default()
            .since_entered = 0;
        self.approvals.remove(&f.to);
        let previous = self.commits.remove(&f.to).map(|(latest, _)| latest);
        self.commits.insert(f.to.clone(), (f.commit, previous));
        let from = if f.from.is_empty() {
            "?".into()
        } else {
            f.from
        };
        self.act(
            at,
            actor,
            "promotion.completed",
            format!("promoted {from} → {}", f.to),
        );
    }

    fn evaluated(&mut self, at: DateTime<Utc>, actor: &str, stage: &str, f: Fields) {
        let target = if f.target.is_empty() {
            stage.to_owned()
        } else {
            f.target
        };
        let failed = |list: &[Judged]| -> Vec<String> {
            list.iter()
                .filter(|g| !g.passed)
                .map(|g| format!("{}: {}", g.id, g.summary))
                .collect()
        };
        let (failing, failing_rules) = (failed(&f.gates), failed(&f.rules));
        let ids = f.gates.iter().map(|g| g.id.clone()).collect();
        if f.file_blockers {
            self.blockers_filed.insert(target.clone());
        }
        let verdict = if f.passed { "passed" } else { "failed" };
        self.act(
            at,
            actor,
            "gates.evaluated",
            format!("gates for {target}: {verdict}"),
        );
        self.gates.insert(
            target,
            GatesSeen {
                at,
                passed: f.passed,
                failing,
                failing_rules,
                ids,
            },
        );
    }

    fn act(&mut self, at: DateTime<Utc>, actor: &str, kind: &str, summary: String) {
        self.last_action = Some(LastAction {
            at,
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            summary,
        });
    }
}

/// The fields of a record the replay reads, borrowed from the line where possible.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    run: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    actor: Cow<'a, str>,
    #[serde(borrow)]
    component: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stage: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunStarted {
    #[serde(deserialize_with = "nullable")]
    dry_run: bool,
    #[serde(deserialize_with = "nullable")]
    purpose: String,
    #[serde(deserialize_with = "nullable")]
    runbook: String,
    #[serde(deserialize_with = "nullable")]
    runbook_sha256: String,
    /// For a resume: the run it continues.
    #[serde(deserialize_with = "nullable")]
    resumes: Option<String>,
}

/// A run between its start and its end.
struct Pending {
    component: String,
    stage: String,
    started: DateTime<Utc>,
    data: RunStarted,
    rollback: bool,
    /// Some step of it started.
    stepped: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Fields {
    #[serde(deserialize_with = "nullable")]
    outcome: String,
    #[serde(deserialize_with = "nullable")]
    to: String,
    #[serde(deserialize_with = "nullable")]
    from: String,
    #[serde(deserialize_with = "nullable")]
    commit: String,
    #[serde(deserialize_with = "nullable")]
    check: String,
    note: Option<String>,
    #[serde(deserialize_with = "nullable")]
    reason: String,
    #[serde(deserialize_with = "nullable")]
    target: String,
    #[serde(deserialize_with = "nullable")]
    passed: bool,
    #[serde(deserialize_with = "nullable")]
    reasons: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    rules: Vec<Judged>,
    #[serde(deserialize_with = "nullable")]
    gates: Vec<Judged>,
    #[serde(deserialize_with = "nullable")]
    file_blockers: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Judged {
    #[serde(deserialize_with = "nullable")]
    id: String,
    #[serde(deserialize_with = "nullable")]
    passed: bool,
    #[serde(deserialize_with = "nullable")]
    summary: String,
}

/// A record being replayed, with where it is for errors.
struct Line<'a> {
    view: &'a View<'a>,
    number: u64,
    path: &'a std::path::Path,
}

impl Line<'_> {
    /// The record's `data`, parsed as the facts of its kind need it.
    fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, AuditError> {
        serde_json::from_str(self.view.data.get()).map_err(|e| AuditError::Corrupt {
            path: self.path.to_path_buf(),
            line: self.number,
            reason: e.to_string(),
        })
    }
}

/// A field written as `null` reads as its default, as a missing one does.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl History {
    /// Replays the whole log. `runbooks` is the runbook folder as the log names runbooks
    /// (relative to the project root): a `release run` of `<runbooks>/<stage>/rollback.yaml`
    /// counts as a rollback of that stage, like `release rollback`.
    pub fn load(audit: &AuditLog, runbooks: &str) -> Result<History, AuditError> {
        let mut history = History::default();
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let mut records = audit.records_checked()?;
        let path = audit.path().to_path_buf();
        let corrupt = |line: u64, reason: String| AuditError::Corrupt {
            path: path.clone(),
            line,
            reason,
        };
        while let Some(next) = records.next_line() {
            let (number, line) = next?;
            let view: View<'_> =
                serde_json::from_slice(line).map_err(|e| corrupt(number, e.to_string()))?;
            history.records += 1;
            // Every record's time is checked, as `audit verify` checks it.
            let Some(at) = parse_ts(&view.ts) else {
                return Err(corrupt(
                    number,
                    format!("`ts` {} is not an RFC 3339 time", view.ts),
                ));
            };
            if view.kind.starts_with("step.") {
                // A step that started did (some of) its work: the run changed something.
                if view.kind == "step.started"
                    && let Some(run) = pending.get_mut(view.run.as_ref())
                {
                    run.stepped = true;
                }
                continue;
            }
            let Some(component) = view.component.as_deref() else {
                continue;
            };
            let line = Line {
                view: &view,
                number,
                path: audit.path(),
            };
            history.apply(&line, component, at, &mut pending, runbooks)?;
        }
        // Runs that never finished (a crash): a real rollback still happened, at least in
        // part; it counts against stability.
        let mut unfinished: Vec<(String, Pending)> = pending.into_iter().collect();
        unfinished.sort_by_key(|(_, p)| p.started);
        for (run, started) in unfinished {
            if history.counts(&run, &started, None) {
                let entry = history
                    .components
                    .entry(started.component.clone())
                    .or_default();
                count_rollback(entry, &started);
            }
        }
        for entry in history.components.values_mut() {
            if let Some(stage) = &entry.stage
                && let Some((commit, previous)) = entry.commits.get(stage)
            {
                entry.commit = Some(commit.clone());
                entry.previous_commit.clone_from(previous);
            }
        }
        Ok(history)
    }

    /// Applies one record's facts.
    fn apply(
        &mut self,
        line: &Line<'_>,
        component: &str,
        at: DateTime<Utc>,
        pending: &mut HashMap<String, Pending>,
        runbooks: &str,
    ) -> Result<(), AuditError> {
        let view = line.view;
        let fields = || line.data::<Fields>();
        let stage = view.stage.as_deref().unwrap_or_default();
        let entry = self.components.entry(component.to_owned()).or_default();
        if entry.entered_at.is_none() && entry.stage.is_none() {
            entry.entered_at = Some(at);
        }
        let actor = view.actor.as_ref();
        match view.kind.as_ref() {
            "run.started" => {
                let data: RunStarted = line.data()?;
                let rollback = data.purpose == "rollback"
                    || data.runbook == format!("{runbooks}/{stage}/rollback.yaml");
                pending.insert(
                    view.run.clone().into_owned(),
                    Pending {
                        component: component.to_owned(),
                        stage: stage.to_owned(),
                        started: at,
                        data,
                        rollback,
                        stepped: false,
                    },
                );
            }
            "run.finished" => {
                let outcome = fields()?.outcome;
                if let Some(started) = pending.remove(view.run.as_ref()) {
                    self.finish_run(view.run.as_ref(), started, at, actor, &outcome);
                }
            }
            "promotion.completed" => entry.promoted(at, actor, fields()?),
            "promotion.refused" => {
                let f = fields()?;
                entry.act(
                    at,
                    actor,
                    &view.kind,
                    format!("promotion to {} refused", f.to),
                );
                entry.refusal = Some(Refusal {
                    at,
                    to: f.to,
                    reasons: f.reasons,
                });
            }
            "gates.evaluated" => entry.evaluated(at, actor, stage, fields()?),
            "attestation.recorded" => {
                let f = fields()?;
                entry.act(at, actor, &view.kind, format!("attested {}", f.check));
                entry.attestations.insert(
                    f.check,
                    Signed {
                        actor: actor.to_owned(),
                        at,
                        note: f.note,
                    },
                );
            }
            "approval.recorded" => {
                let f = fields()?;
                let to = if f.to.is_empty() {
                    stage.to_owned()
                } else {
                    f.to
                };
                entry.act(
                    at,
                    actor,
                    &view.kind,
                    format!("approved the promotion to {to}"),
                );
                // One approval per person, however they spell their e-mail's case.
                entry.approvals.entry(to).or_default().insert(
                    actor.to_lowercase(),
                    Signed {
                        actor: actor.to_owned(),
                        at,
                        note: f.note,
                    },
                );
            }
            "component.deprecated" => {
                let f = fields()?;
                entry.act(at, actor, &view.kind, format!("deprecated: {}", f.reason));
                entry.deprecated = Some(Deprecation {
                    at,
                    actor: actor.to_owned(),
                    reason: f.reason,
                });
            }
            "lock.forced" => entry.act(at, actor, &view.kind, format!("lock at {stage} removed")),
            _ => {}
        }
        Ok(())
    }

    /// Records a run's end on its component.
    fn finish_run(
        &mut self,
        run: &str,
        started: Pending,
        at: DateTime<Utc>,
        actor: &str,
        outcome: &str,
    ) {
        let counted = self.counts(run, &started, Some(outcome));
        let entry = self
            .components
            .entry(started.component.clone())
            .or_default();
        end_run(entry, run, started, at, actor, outcome, counted);
    }

    /// Whether a run is a real rollback that changed something, for `stable_for`: any but
    /// one declined before a step started (`outcome`; `None` for a run that never
    /// finished), and for a resume, only when the run it continues did not count already.
    fn counts(&mut self, run: &str, started: &Pending, outcome: Option<&str>) -> bool {
        if !started.rollback || started.data.dry_run {
            return false;
        }
        let continues_a_counted_one = started
            .data
            .resumes
            .as_ref()
            .is_some_and(|earlier| !self.uncounted.contains(earlier));
        if continues_a_counted_one {
            return false;
        }
        let changed = started.stepped || !matches!(outcome, Some("declined" | "blocked"));
        if !changed {
            self.uncounted.insert(run.to_owned());
        }
        changed
    }

    /// One component's facts (empty when the log never names it).
    pub fn component(&self, name: &str) -> ComponentHistory {
        self.components.get(name).cloned().unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&ComponentHistory> {
        self.components.get(name)
    }

    /// The components the log names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }
}

fn count_rollback(entry: &mut ComponentHistory, run: &Pending) {
    let entered = entry.entered.get(&run.stage).copied();
    let stats = entry.rollbacks.entry(run.stage.clone()).or_default();
    stats.total += 1;
    if entered.is_none_or(|e| run.started >= e) {
        stats.since_entered += 1;
    }
    stats.last_at = Some(stats.last_at.map_or(run.started, |t| t.max(run.started)));
}

fn end_run(
    entry: &mut ComponentHistory,
    run: &str,
    started: Pending,
    at: DateTime<Utc>,
    actor: &str,
    outcome: &str,
    counted: bool,
) {
    let purpose = if started.rollback {
        "rollback"
    } else {
        started.data.purpose.as_str()
    };
    let dry = if started.data.dry_run { " dry-run" } else { "" };
    entry.act(
        at,
        actor,
        "run.finished",
        format!("{purpose}{dry} at {}: {outcome}", started.stage),
    );
    if !started.rollback {
        return;
    }
    if counted {
        count_rollback(entry, &started);
    }
    if outcome == "succeeded" {
        let list = entry.rehearsals.entry(started.stage.clone()).or_default();
        list.retain(|r| r.runbook_sha256 != started.data.runbook_sha256);
        list.push(Rehearsal {
            run: run.to_owned(),
            at,
            dry_run: started.data.dry_run,
            runbook: started.data.runbook,
            runbook_sha256: started.data.runbook_sha256,
        });
    }
}

/// Replays the log for one component.
pub fn component_history(
    audit: &AuditLog,
    runbooks: &str,
    component: &str,
) -> Result<ComponentHistory, AuditError> {
    Ok(History::load(audit, runbooks)?.component(component))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::audit::Entry;
    use crate::state::redact::Redactor;
    use proptest::prelude::*;
    use serde_json::json;

    fn log(dir: &std::path::Path) -> AuditLog {
        AuditLog::new(
            dir.join("audit.jsonl"),
            "me@example.com".into(),
            Redactor::default(),
        )
    }

    fn add(audit: &AuditLog, run: &str, kind: &'static str, stage: &str, data: serde_json::Value) {
        audit
            .append(Entry {
                run: run.into(),
                kind,
                component: Some("api".into()),
                stage: Some(stage.into()),
                data,
            })
            .unwrap();
    }

    fn promote(audit: &AuditLog, from: &str, to: &str, commit: &str) {
        add(
            audit,
            "p",
            "promotion.completed",
            to,
            json!({ "from": from, "to": to, "commit": commit, "reason": null }),
        );
    }

    /// A run of `runbook` at `stage`, finished with `outcome` (unfinished when `None`).
    fn run(
        audit: &AuditLog,
        id: &str,
        stage: &str,
        dry_run: bool,
        sha: &str,
        outcome: Option<&str>,
    ) {
        add(
            audit,
            id,
            "run.started",
            stage,
            json!({
                "purpose": "rollback", "dry_run": dry_run, "params": {}, "reason": "r",
                "runbook": format!("runbooks/{stage}/rollback.yaml"), "runbook_sha256": sha,
                "command": [],
            }),
        );
        // Declined here means at the first confirmation, before any step started.
        if outcome != Some("declined") {
            add(audit, id, "step.started", stage, json!({ "step": "a" }));
        }
        if let Some(outcome) = outcome {
            add(
                audit,
                id,
                "run.finished",
                stage,
                json!({ "outcome": outcome }),
            );
        }
    }

    #[test]
    fn promotions_give_stage_commit_and_previous_commit() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        assert!(
            History::load(&audit, "runbooks")
                .unwrap()
                .get("api")
                .is_none()
        );
        promote(&audit, "development", "staging", "c1");
        promote(&audit, "staging", "production", "c2");
        promote(&audit, "staging", "production", "c3");
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        assert_eq!(h.stage.as_deref(), Some("production"));
        assert_eq!(h.commit.as_deref(), Some("c3"));
        assert_eq!(h.previous_commit.as_deref(), Some("c2"));
        assert_eq!(
            h.last_action.unwrap().summary,
            "promoted staging → production"
        );
    }

    #[test]
    fn rollbacks_count_per_stage_and_restart_on_entry() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        promote(&audit, "development", "staging", "c1");
        run(&audit, "r1", "staging", false, "s", Some("failed"));
        run(&audit, "r2", "staging", false, "s", Some("declined"));
        run(&audit, "r3", "staging", true, "s", Some("succeeded"));
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        let staging = &h.rollbacks["staging"];
        // The failed one counts; the declined one changed nothing; a dry-run is no rollback.
        assert_eq!((staging.total, staging.since_entered), (1, 1));
        promote(&audit, "staging", "staging", "c2");
        run(&audit, "r4", "staging", false, "s", None); // crashed: still a rollback
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        let staging = &h.rollbacks["staging"];
        assert_eq!((staging.total, staging.since_entered), (2, 1));
    }

    /// A resume of run `resumes`, finished with `outcome`; `stepped` when a step started.
    fn resume(audit: &AuditLog, id: &str, resumes: &str, outcome: &str, stepped: bool) {
        let data = json!({
            "purpose": "resume", "dry_run": false, "params": {}, "reason": "r",
            "runbook": "runbooks/staging/rollback.yaml", "runbook_sha256": "s",
            "command": [], "resumes": resumes,
        });
        add(audit, id, "run.started", "staging", data);
        if stepped {
            add(audit, id, "step.started", "staging", json!({ "step": "b" }));
        }
        add(
            audit,
            id,
            "run.finished",
            "staging",
            json!({ "outcome": outcome }),
        );
    }

    #[test]
    fn a_resumed_rollback_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        promote(&audit, "development", "staging", "c1");
        let total = || {
            History::load(&audit, "runbooks")
                .unwrap()
                .component("api")
                .rollbacks["staging"]
                .total
        };
        // r1 failed (counted); its resume r2 continues it: still one rollback.
        run(&audit, "r1", "staging", false, "s", Some("failed"));
        resume(&audit, "r2", "r1", "succeeded", true);
        assert_eq!(total(), 1);
        // r3 was declined (nothing ran); r4, declined too, changes nothing; r5 resumes r4
        // and runs: that is the rollback.
        run(&audit, "r3", "staging", false, "s", Some("declined"));
        resume(&audit, "r4", "r3", "declined", false);
        assert_eq!(total(), 1);
        resume(&audit, "r5", "r4", "failed", true);
        assert_eq!(total(), 2);
        // A resume of r5 (counted) does not count again.
        resume(&audit, "r6", "r5", "succeeded", true);
        assert_eq!(total(), 2);
        // Declined at a later step's confirmation, after a step did its work: it counts.
        let started = json!({
            "purpose": "rollback", "dry_run": false, "runbook": "runbooks/staging/rollback.yaml",
        });
        add(&audit, "r7", "run.started", "staging", started);
        add(
            &audit,
            "r7",
            "step.started",
            "staging",
            json!({ "step": "revert" }),
        );
        add(
            &audit,
            "r7",
            "run.finished",
            "staging",
            json!({ "outcome": "declined" }),
        );
        assert_eq!(total(), 3);
    }

    #[test]
    fn rehearsals_keep_the_latest_success_per_runbook_hash() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        run(&audit, "d1", "production", true, "aaa", Some("succeeded"));
        run(&audit, "d2", "production", true, "bbb", Some("blocked"));
        run(&audit, "d3", "production", true, "aaa", Some("succeeded"));
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        let found = h.rehearsals_of("production");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].run.as_str(), found[0].dry_run), ("d3", true));
        assert!(h.rehearsals_of("staging").is_empty());
        // `release run` of the stage's rollback runbook counts like `release rollback`.
        add(
            &audit,
            "x",
            "run.started",
            "staging",
            json!({ "purpose": "run", "dry_run": true, "runbook": "ops/runbooks/staging/rollback.yaml", "runbook_sha256": "ccc" }),
        );
        add(
            &audit,
            "x",
            "run.finished",
            "staging",
            json!({ "outcome": "succeeded" }),
        );
        let h = History::load(&audit, "ops/runbooks")
            .unwrap()
            .component("api");
        assert_eq!(h.rehearsals_of("staging").len(), 1);
    }

    #[test]
    fn approvals_are_used_up_by_the_promotion() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        add(
            &audit,
            "a",
            "approval.recorded",
            "staging",
            json!({ "to": "staging", "note": "lgtm" }),
        );
        add(
            &audit,
            "b",
            "attestation.recorded",
            "development",
            json!({ "check": "security-review", "note": null }),
        );
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        assert_eq!(
            h.approvals["staging"]["me@example.com"].note.as_deref(),
            Some("lgtm")
        );
        assert!(h.attestations.contains_key("security-review"));
        promote(&audit, "development", "staging", "c1");
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        assert!(!h.approvals.contains_key("staging"));
        assert!(h.attestations.contains_key("security-review"));
    }

    #[test]
    fn gate_evaluations_keep_the_gate_ids_and_whether_blockers_were_filed() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        let gates = json!([
            { "id": "tests", "kind": "run", "passed": true, "summary": "ok" },
            { "id": "cov", "kind": "coverage", "passed": false, "summary": "low" },
        ]);
        add(
            &audit,
            "g1",
            "gates.evaluated",
            "staging",
            json!({ "target": "staging", "passed": false, "rules": [], "gates": gates }),
        );
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        assert_eq!(h.gates["staging"].ids, ["tests", "cov"]);
        assert_eq!(h.gates["staging"].failing, ["cov: low"]);
        assert!(h.blockers_filed.is_empty());
        add(
            &audit,
            "g2",
            "gates.evaluated",
            "staging",
            json!({ "target": "staging", "passed": true, "rules": [], "gates": [], "file_blockers": true }),
        );
        let h = History::load(&audit, "runbooks").unwrap().component("api");
        assert!(h.gates["staging"].ids.is_empty());
        assert!(h.blockers_filed.contains("staging"));
    }

    #[test]
    fn a_line_that_is_not_a_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let audit = log(dir.path());
        promote(&audit, "development", "staging", "c1");
        let mut text = std::fs::read_to_string(audit.path()).unwrap();
        text.push_str("{\"not\": \"a record\"}\n");
        std::fs::write(audit.path(), text).unwrap();
        let error = History::load(&audit, "runbooks").unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        /// The stage is the last promotion's target, and the commits are the last two
        /// promotions into that stage, whatever the order of promotions.
        #[test]
        fn the_replay_matches_a_simple_model(targets in prop::collection::vec(0..3usize, 1..12)) {
            let stages = ["development", "staging", "production"];
            let dir = tempfile::tempdir().unwrap();
            let audit = log(dir.path());
            for (i, t) in targets.iter().enumerate() {
                promote(&audit, "x", stages[*t], &format!("c{i}"));
            }
            let h = History::load(&audit, "runbooks").unwrap().component("api");
            let last = *targets.last().unwrap();
            prop_assert_eq!(h.stage.as_deref(), Some(stages[last]));
            let mut into: Vec<String> = targets
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == last)
                .map(|(i, _)| format!("c{i}"))
                .collect();
            prop_assert_eq!(h.commit, into.pop());
            prop_assert_eq!(h.previous_commit, into.pop());
        }
    }
}
