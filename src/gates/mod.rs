//! Quality gates (SPEC §3) and the promotion rules: what must hold for a component to
//! enter a stage. Each gate kind is evaluated on its own, concurrently with the others,
//! and every result carries its evidence (what was measured, found or missing) and, when
//! it fails, how to fix it.

pub mod coverage;
pub mod evaluate;
pub mod freeze;
pub mod rules;
pub mod uptime;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

/// The result of one gate or rule.
#[derive(Clone, Debug, Serialize)]
pub struct GateResult {
    pub id: String,
    /// The gate kind (`coverage`, `stable_for`, …), or `rule` for the promotion rules.
    pub kind: &'static str,
    pub passed: bool,
    /// One line for the table: what was measured against what was asked.
    pub summary: String,
    /// What was measured, found or missing, for the report and the audit log.
    pub evidence: serde_json::Value,
    /// How to make it pass, when it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub duration_ms: u64,
}

/// Rules and gates for one component and target stage, as `gates`, `promote` and the
/// report file show them.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub component: String,
    /// The stage it is in now.
    pub from: String,
    pub target: String,
    pub actor: String,
    pub evaluated_at: DateTime<Utc>,
    pub rules: Vec<GateResult>,
    pub gates: Vec<GateResult>,
    /// False when the gates were not evaluated (a real promotion refused by the rules).
    pub gates_evaluated: bool,
    pub passed: bool,
}

/// The version of `workflow_report_<component>.json`'s format.
pub const REPORT_VERSION: u32 = 1;

impl Evaluation {
    pub fn rules_passed(&self) -> bool {
        self.rules.iter().all(|r| r.passed)
    }

    pub fn failing(&self) -> impl Iterator<Item = &GateResult> {
        self.rules.iter().chain(&self.gates).filter(|g| !g.passed)
    }

    /// Every failing rule and gate: `id: summary`.
    pub fn reasons(&self) -> Vec<String> {
        self.failing()
            .map(|g| format!("{}: {}", g.id, g.summary))
            .collect()
    }

    /// The `data` of the `gates.evaluated` record.
    pub fn record(&self, dry_run: bool) -> serde_json::Value {
        json!({
            "target": self.target,
            "from": self.from,
            "passed": self.passed,
            "rules": self.rules,
            "gates": self.gates,
            "dry_run": dry_run,
        })
    }

    /// The report file's content (versioned).
    pub fn report(&self) -> serde_json::Value {
        let failed = self.failing().count();
        json!({
            "version": REPORT_VERSION,
            "component": self.component,
            "current_stage": self.from,
            "target": self.target,
            "evaluated_at": self.evaluated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "actor": self.actor,
            "passed": self.passed,
            "summary": {
                "rules": self.rules.len(),
                "gates": self.gates.len(),
                "failed": failed,
                "gates_evaluated": self.gates_evaluated,
            },
            "rules": self.rules,
            "gates": self.gates,
        })
    }

    /// The table for people: one line per rule and gate, the evidence, and the fix under a
    /// failure.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} → {} (evaluated {} by {})",
            self.component,
            self.from,
            self.target,
            self.evaluated_at.format("%Y-%m-%d %H:%M UTC"),
            self.actor
        );
        let label = |g: &GateResult| {
            if g.kind == "rule" {
                format!("rule {}", g.id)
            } else {
                format!("{} ({})", g.id, g.kind)
            }
        };
        let width = self
            .rules
            .iter()
            .chain(&self.gates)
            .map(|g| label(g).chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(out, "  {:width$}  {:6}  evidence", "gate", "result");
        for g in self.rules.iter().chain(&self.gates) {
            let result = if g.passed { "pass" } else { "FAIL" };
            let mut lines = g.summary.lines();
            let _ = writeln!(
                out,
                "  {:width$}  {result:6}  {}",
                label(g),
                lines.next().unwrap_or_default()
            );
            for line in lines {
                let _ = writeln!(out, "  {:width$}  {:6}  {line}", "", "");
            }
            if let Some(fix) = g.fix.as_deref().filter(|_| !g.passed) {
                let _ = writeln!(out, "  {:width$}  {:6}  fix: {fix}", "", "");
            }
        }
        if !self.gates_evaluated {
            let _ = writeln!(
                out,
                "  (gates not evaluated: the rules refuse this promotion; `release gates {} --stage {}` shows them)",
                self.component, self.target
            );
        }
        out.trim_end().to_owned()
    }
}

/// Evaluates the rules and, unless `rules_only` and a rule fails, the target stage's gates.
pub async fn evaluate_promotion(
    subject: &evaluate::Subject<'_>,
    stop_at_rules: bool,
) -> Evaluation {
    let rules = rules::check(
        subject.config,
        subject.history,
        subject.component,
        subject.target,
    );
    let skip = stop_at_rules && rules.iter().any(|r| !r.passed);
    let gates = if skip {
        Vec::new()
    } else {
        evaluate::evaluate(subject, &subject.config.gates_for(subject.target)).await
    };
    let passed = rules.iter().chain(&gates).all(|g| g.passed) && !skip;
    Evaluation {
        component: subject.component.to_owned(),
        from: subject.current.to_owned(),
        target: subject.target.to_owned(),
        actor: subject.actor.to_owned(),
        evaluated_at: subject.now,
        rules,
        gates,
        gates_evaluated: !skip,
        passed,
    }
}

/// Writes `workflow_report_<component>.json` next to `release.yaml`, atomically (a reader
/// never sees half a report).
pub fn write_report(dir: &Path, evaluation: &Evaluation) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("workflow_report_{}.json", evaluation.component));
    let temporary = dir.join(format!(
        ".workflow_report_{}.json.tmp",
        evaluation.component
    ));
    let mut text = serde_json::to_string_pretty(&evaluation.report()).unwrap_or_default();
    text.push('\n');
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}
