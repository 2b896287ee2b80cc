//! The model of a runbook (SPEC §4): parameters, a confirmation, and a graph of steps, each
//! with exactly one action.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::duration::Duration;
use super::named_map::NamedMap;
use super::spanned::Spanned;

/// A runbook's header: everything but its steps, which are deserialized one by one.
#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunbookHeader {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Parameters, set with `--set name=value`, used as `{{ params.name }}`.
    #[serde(default)]
    pub params: NamedMap<Param>,
    /// `type-component`: the operator types the component name once before anything runs.
    pub confirm: Option<RunbookConfirm>,
}

/// A runbook as written.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "release runbook")]
pub struct RunbookSpec {
    #[serde(flatten)]
    pub header: RunbookHeader,
    pub steps: Vec<StepSpec>,
}

#[derive(Clone, Debug, Default, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub description: Option<String>,
    /// A required parameter must be given with `--set`; it has no default.
    #[serde(default)]
    pub required: bool,
    pub default: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunbookConfirm {
    /// The operator types the component's name.
    TypeComponent,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Every need succeeded or was skipped (the default).
    #[default]
    Success,
    /// Some step of the run failed.
    Failure,
    /// Whatever happened before.
    Always,
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, the first included.
    pub attempts: Spanned<u32>,
    /// Wait before the second attempt.
    #[serde(default = "zero")]
    pub delay: Duration,
    /// Each later wait is the previous one times this.
    #[serde(default = "one")]
    pub backoff: Spanned<f64>,
}

fn zero() -> Duration {
    Duration(std::time::Duration::ZERO)
}

fn one() -> Spanned<f64> {
    Spanned::unspanned(1.0)
}

/// A step as written: its fields and exactly one action.
#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique within the runbook: `^[a-z0-9][a-z0-9_-]*$`.
    pub id: Spanned<String>,
    /// A label for output.
    pub name: Option<String>,
    /// Steps this one waits for. Omitted: the step written above. `[]`: none.
    pub needs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub when: When,
    /// An expression over the template context; false skips the step.
    #[serde(rename = "if")]
    pub condition: Option<Spanned<String>>,
    /// A question asked before the step runs; no stops the run.
    pub confirm: Option<String>,
    /// The step fails when it runs longer; its process group is killed.
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    /// A failure of this step does not fail the run.
    #[serde(default)]
    pub continue_on_error: bool,

    pub run: Option<RunAction>,
    pub notify: Option<NotifyAction>,
    pub git_revert: Option<GitRevertAction>,
    pub migration_rollback: Option<MigrationRollbackAction>,
    pub cache_clear: Option<CacheClearAction>,
    pub verify: Option<VerifyAction>,
    pub health_check: Option<HealthCheckAction>,
    pub incident_issue: Option<IncidentIssueAction>,
}

/// The actions, in the order SPEC §4 lists them.
pub const ACTIONS: &[&str] = &[
    "run",
    "notify",
    "git_revert",
    "migration_rollback",
    "cache_clear",
    "verify",
    "health_check",
    "incident_issue",
];

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Run(RunAction),
    Notify(NotifyAction),
    GitRevert(GitRevertAction),
    MigrationRollback(MigrationRollbackAction),
    CacheClear(CacheClearAction),
    Verify(VerifyAction),
    HealthCheck(HealthCheckAction),
    IncidentIssue(IncidentIssueAction),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Run(_) => "run",
            Action::Notify(_) => "notify",
            Action::GitRevert(_) => "git_revert",
            Action::MigrationRollback(_) => "migration_rollback",
            Action::CacheClear(_) => "cache_clear",
            Action::Verify(_) => "verify",
            Action::HealthCheck(_) => "health_check",
            Action::IncidentIssue(_) => "incident_issue",
        }
    }
}

impl StepSpec {
    pub fn actions_set(&self) -> Vec<&'static str> {
        self.actions().map(|a| a.name()).collect()
    }

    fn actions(&self) -> impl Iterator<Item = Action> {
        [
            self.run.clone().map(Action::Run),
            self.notify.clone().map(Action::Notify),
            self.git_revert.clone().map(Action::GitRevert),
            self.migration_rollback
                .clone()
                .map(Action::MigrationRollback),
            self.cache_clear.clone().map(Action::CacheClear),
            self.verify.clone().map(Action::Verify),
            self.health_check.clone().map(Action::HealthCheck),
            self.incident_issue.clone().map(Action::IncidentIssue),
        ]
        .into_iter()
        .flatten()
    }

    /// The one action of this step, when it has exactly one.
    pub fn action(&self) -> Option<Action> {
        let mut actions = self.actions();
        let first = actions.next()?;
        actions.next().is_none().then_some(first)
    }
}

/// `run: [argv]`, or `{argv, env, cwd, plan}`, or `{script, shell: true, env, cwd, plan}`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RunAction {
    Argv(Vec<String>),
    Spec(RunSpec),
}

#[derive(Clone, Debug, Default, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The program and its arguments (no shell).
    pub argv: Option<Vec<String>>,
    /// Shell text, run with `sh -c` only when `shell: true`; each `{{ … }}` becomes a
    /// quoted positional argument, never spliced into the text.
    pub script: Option<String>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// A read-only command the dry-run runs instead, its output shown.
    pub plan: Option<Vec<String>>,
}

impl RunAction {
    pub fn spec(&self) -> RunSpec {
        match self {
            RunAction::Argv(argv) => RunSpec {
                argv: Some(argv.clone()),
                ..RunSpec::default()
            },
            RunAction::Spec(spec) => spec.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for RunAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RunVisitor;
        impl<'de> Visitor<'de> for RunVisitor {
            type Value = RunAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an argv list like [cmd, arg] or a mapping with `argv` or `script`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RunAction, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RunAction::Argv)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RunAction, A::Error> {
                RunSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RunAction::Spec)
            }
        }
        d.deserialize_any(RunVisitor)
    }
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyAction {
    /// A channel of `release.yaml`'s `notify:`.
    pub channel: Spanned<String>,
    /// The message (templated).
    pub message: String,
}

/// One commit, a list, or a range `A..B` (templated).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Commits {
    One(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Commits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CommitsVisitor;
        impl<'de> Visitor<'de> for CommitsVisitor {
            type Value = Commits;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a commit, a list of commits, or a range A..B")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Commits, E> {
                Ok(Commits::One(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Commits, E> {
                Ok(Commits::One(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Commits, E> {
                Ok(Commits::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Commits, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Commits::List)
            }
        }
        d.deserialize_any(CommitsVisitor)
    }
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitRevertAction {
    pub commits: Commits,
    /// Keep only the commits of a range that change this path.
    pub touching: Option<String>,
    /// Push to `repository.remote`/`repository.branch` afterwards.
    #[serde(default)]
    pub push: bool,
    /// The parent number (1-based) to revert merge commits against.
    pub mainline: Option<u32>,
    /// One revert commit for all the commits.
    #[serde(default)]
    pub squash: bool,
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationRollbackAction {
    /// The migration tool's rollback command.
    pub run: Vec<String>,
    /// Its read-only plan (offline SQL) run by the dry-run.
    pub plan: Option<Vec<String>>,
}

/// Exactly one of `redis`, `http` or `run`.
#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheClearAction {
    pub redis: Option<RedisCache>,
    pub http: Option<HttpPurge>,
    pub run: Option<Vec<String>>,
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisCache {
    /// The environment variable holding the Redis URL (a secret).
    pub url_env: Spanned<String>,
    /// A SCAN MATCH pattern, e.g. `px:*` (templated).
    pub pattern: String,
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpPurge {
    #[serde(default = "purge")]
    pub method: Spanned<String>,
    pub url: String,
    /// Headers with literal (templated) values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from environment variables (secrets).
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
}

fn purge() -> Spanned<String> {
    Spanned::unspanned("POST".into())
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAction {
    /// The stage whose gates are re-evaluated.
    pub stage: Spanned<String>,
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckAction {
    pub url: String,
    #[serde(default = "ok")]
    pub expect_status: Spanned<u16>,
    /// A substring the body must contain.
    pub expect_body: Option<String>,
    /// A regex found anywhere in the body.
    pub expect_body_regex: Option<Spanned<String>>,
    #[serde(default = "one_attempt")]
    pub attempts: Spanned<u32>,
    #[serde(default = "five_seconds")]
    pub interval: Duration,
    #[serde(default = "five_seconds")]
    pub timeout: Duration,
}

fn ok() -> Spanned<u16> {
    Spanned::unspanned(200)
}

fn one_attempt() -> Spanned<u32> {
    Spanned::unspanned(1)
}

fn five_seconds() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}

#[derive(Clone, Debug, serde::Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentIssueAction {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A step after validation.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub id: String,
    pub name: Option<String>,
    /// Resolved: the step above when omitted.
    pub needs: Vec<String>,
    pub when: When,
    pub condition: Option<String>,
    pub confirm: Option<String>,
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    pub continue_on_error: bool,
    pub action: Action,
}

/// A validated runbook.
#[derive(Clone, Debug, Serialize)]
pub struct Runbook {
    pub name: Option<String>,
    pub description: Option<String>,
    pub params: NamedMap<Param>,
    pub confirm: Option<RunbookConfirm>,
    pub steps: Vec<Step>,
}
