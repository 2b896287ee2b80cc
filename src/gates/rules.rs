//! The promotion rules that hold besides the listed gates (SPEC §3): a deprecated component
//! is never promoted, the target is the next stage (no skipping), and every dependency is
//! already at the target stage or higher. Each is reported like a gate.

use serde_json::json;

use super::GateResult;
use crate::project::config::Config;
use crate::state::history::History;

/// Where a component stands, as the rules see it.
pub struct Standing<'a> {
    pub stage: &'a str,
    pub position: usize,
}

/// The component's current stage (the first one when it has no promotion).
pub fn standing<'a>(config: &'a Config, history: &'a History, component: &str) -> Standing<'a> {
    let stages: Vec<&str> = config.stages().collect();
    let reached = history
        .get(component)
        .and_then(|h| h.stage.as_deref())
        .and_then(|s| stages.iter().position(|x| *x == s));
    let position = reached.unwrap_or(0);
    Standing {
        stage: stages.get(position).copied().unwrap_or_default(),
        position,
    }
}

fn rule(id: &str, passed: bool, summary: String, evidence: serde_json::Value) -> GateResult {
    GateResult {
        id: id.to_owned(),
        kind: "rule",
        passed,
        summary,
        evidence,
        fix: None,
        duration_ms: 0,
    }
}

/// Every rule for promoting `component` into `target`, in order: not deprecated, the next
/// stage, dependencies.
pub fn check(config: &Config, history: &History, component: &str, target: &str) -> Vec<GateResult> {
    vec![
        not_deprecated(history, component),
        next_stage(config, history, component, target),
        dependencies(config, history, component, target),
    ]
}

fn not_deprecated(history: &History, component: &str) -> GateResult {
    match history.get(component).and_then(|h| h.deprecated.as_ref()) {
        Some(d) => {
            let mut r = rule(
                "not-deprecated",
                false,
                format!(
                    "{component} was deprecated on {} by {}: {}",
                    d.at.format("%Y-%m-%d"),
                    d.actor,
                    d.reason
                ),
                json!({ "deprecated_at": d.at, "by": d.actor, "reason": d.reason }),
            );
            r.fix = Some("a deprecated component is never promoted again".into());
            r
        }
        None => rule(
            "not-deprecated",
            true,
            format!("{component} is not deprecated"),
            json!({}),
        ),
    }
}

fn position(config: &Config, stage: &str) -> usize {
    config.stages().position(|s| s == stage).unwrap_or(0)
}

fn next_stage(config: &Config, history: &History, component: &str, target: &str) -> GateResult {
    let here = standing(config, history, component);
    let target_position = position(config, target);
    let next = config.stages().nth(here.position + 1);
    let mut stage_rule = rule(
        "next-stage",
        next == Some(target),
        String::new(),
        json!({ "current": here.stage, "target": target, "next": next }),
    );
    if next == Some(target) {
        stage_rule.summary = format!("{} → {target} is the next stage", here.stage);
    } else if target_position == 0 {
        stage_rule.summary = format!(
            "{target} is the first stage: components start there, nothing is promoted into it"
        );
        stage_rule.fix = Some(match next {
            Some(next) => format!(
                "{component} is at {}: its next promotion is `--to {next}`",
                here.stage
            ),
            None => format!(
                "{component} is at {}, the last stage: there is no next promotion",
                here.stage
            ),
        });
    } else if target_position <= here.position {
        stage_rule.summary = format!("{component} is already at {}", here.stage);
        stage_rule.fix = Some(match next {
            Some(next) => format!("its next promotion is `--to {next}`"),
            None => format!("{} is the last stage", here.stage),
        });
    } else {
        let next = next.unwrap_or_default();
        stage_rule.summary = format!(
            "{component} is at {}: {target} would skip {next}",
            here.stage
        );
        stage_rule.fix = Some(format!(
            "promote it to {next} first: `release promote {component} --to {next}`"
        ));
    }
    stage_rule
}

fn dependencies(config: &Config, history: &History, component: &str, target: &str) -> GateResult {
    let target_position = position(config, target);
    let depends_on = depends_on(config, component);
    let mut behind = Vec::new();
    let mut at = serde_json::Map::new();
    for dependency in &depends_on {
        let theirs = standing(config, history, dependency);
        at.insert(dependency.clone(), json!(theirs.stage));
        if theirs.position < target_position {
            behind.push(format!("{dependency} is at {}", theirs.stage));
        }
    }
    let summary = if depends_on.is_empty() {
        format!("{component} depends on no component")
    } else if behind.is_empty() {
        format!("every dependency is at {target} or higher")
    } else {
        format!(
            "needs its dependencies at {target} or higher: {}",
            behind.join(", ")
        )
    };
    let mut deps = rule(
        "dependencies",
        behind.is_empty(),
        summary,
        json!({ "depends_on": at, "behind": behind }),
    );
    if !deps.passed {
        deps.fix = Some(dependencies_fix(config, history, component, target));
    }
    deps
}

fn depends_on(config: &Config, component: &str) -> Vec<String> {
    config
        .components
        .get(component)
        .map(|c| {
            c.depends_on
                .iter()
                .map(|d| d.value.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
}

/// A fix that can be followed as written: the dependencies below `target`, direct or not,
/// in an order in which each promotion passes the dependency rule (deepest first); and a
/// deprecated one, which is never promoted again, taken out of the `depends_on` holding it.
fn dependencies_fix(config: &Config, history: &History, component: &str, target: &str) -> String {
    let target_position = position(config, target);
    let mut order = Vec::new();
    let mut deprecated = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Depth first, each dependency after its own dependencies (post-order); `seen` also
    // stops a cycle, which validation refuses anyway.
    let mut stack: Vec<(String, bool)> = vec![(component.to_owned(), false)];
    while let Some((name, expanded)) = stack.pop() {
        if expanded {
            if name != component {
                order.push(name);
            }
            continue;
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        stack.push((name.clone(), true));
        for dependency in depends_on(config, &name).into_iter().rev() {
            let below = standing(config, history, &dependency).position < target_position;
            if !below || seen.contains(&dependency) {
                continue;
            }
            if history
                .get(&dependency)
                .is_some_and(|h| h.deprecated.is_some())
            {
                deprecated.push(format!(
                    "{dependency} is deprecated and is never promoted again: remove it from {name}'s depends_on in release.yaml"
                ));
            } else {
                stack.push((dependency, false));
            }
        }
    }
    let promote = match order.as_slice() {
        [] => None,
        [one] => Some(format!("promote {one} to {target} first")),
        [first, rest @ ..] => Some(format!(
            "promote {first}, then {}, to {target} first",
            rest.join(", then ")
        )),
    };
    deprecated.extend(promote);
    deprecated.join("; ")
}
