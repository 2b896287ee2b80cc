//! What the audit log says of a component: the stage it has reached and the commits it
//! was promoted with, replayed in one streaming pass (there is no second state file).

use serde::Serialize;

use super::audit::{AuditError, AuditLog};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ComponentHistory {
    /// The stage reached; `None` means the first stage (no promotion recorded).
    pub stage: Option<String>,
    /// The commit recorded when it entered its current stage.
    pub commit: Option<String>,
    /// The commit recorded by the promotion into that stage before that one.
    pub previous_commit: Option<String>,
    pub deprecated: bool,
}

/// Replays the log for one component.
pub fn component_history(
    audit: &AuditLog,
    component: &str,
) -> Result<ComponentHistory, AuditError> {
    let mut history = ComponentHistory::default();
    // The commits of each stage's promotions, newest last: (stage, commit).
    let mut commits: Vec<(String, String)> = Vec::new();
    for record in audit.records()? {
        let record = record?;
        if record.component.as_deref() != Some(component) {
            continue;
        }
        match record.kind.as_str() {
            "promotion.completed" => {
                let to = record.data["to"].as_str().unwrap_or_default().to_owned();
                let commit = record.data["commit"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                commits.push((to.clone(), commit));
                history.stage = Some(to);
            }
            "component.deprecated" => history.deprecated = true,
            _ => {}
        }
    }
    if let Some(stage) = &history.stage {
        let mut of_stage = commits
            .iter()
            .rev()
            .filter(|(s, _)| s == stage)
            .map(|(_, c)| c.clone());
        history.commit = of_stage.next();
        history.previous_commit = of_stage.next();
    }
    Ok(history)
}
