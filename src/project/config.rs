//! The model of `release.yaml` (SPEC §3).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::named_map::NamedMap;
use super::spanned::Spanned;
use super::time::{TimeZone, Timestamp, WeeklyTime};

pub const DEFAULT_STAGES: [&str; 3] = ["development", "staging", "production"];

/// `release.yaml`: the project's stages, components, notification channels, trackers and
/// the quality gates that guard each stage.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "release.yaml")]
pub struct ConfigHeader {
    /// Format version; must be 1.
    pub version: Spanned<u32>,
    /// The stages, in promotion order.
    #[serde(default = "default_stages")]
    pub stages: Vec<Spanned<String>>,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Folder of the runbooks (`<folder>/<stage>/rollback.yaml`, `promote.yaml`).
    #[serde(default = "default_runbooks")]
    pub runbooks: PathBuf,
    #[serde(default)]
    pub repository: RepositoryConfig,
    /// Where `incident_issue` steps open issues and `no_open_issues` gates look.
    #[serde(default)]
    pub incidents: Spanned<IncidentTracker>,
    pub github: Option<GithubConfig>,
    /// Shared state for teams working from several machines (SPEC §10).
    pub state: Option<StateConfig>,
}

/// The whole of `release.yaml`. The header is deserialized on its own and each component,
/// channel and gate one by one, so that every mistake in the file is reported at once.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "release.yaml")]
pub struct Config {
    #[serde(flatten)]
    pub header: ConfigHeader,
    #[serde(default)]
    pub notify: NamedMap<Channel>,
    #[serde(default)]
    pub components: NamedMap<Component>,
    /// Gates under a stage must all pass to promote INTO that stage.
    #[serde(default)]
    pub gates: NamedMap<Vec<GateSpec>>,
}

fn default_stages() -> Vec<Spanned<String>> {
    DEFAULT_STAGES
        .iter()
        .map(|s| Spanned::unspanned((*s).to_owned()))
        .collect()
}

fn default_runbooks() -> PathBuf {
    PathBuf::from("runbooks")
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The audit log (JSON Lines, hash-chained), relative to `release.yaml`.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: default_audit_path(),
        }
    }
}

fn default_audit_path() -> PathBuf {
    PathBuf::from(".release/audit.jsonl")
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// The remote `git_revert` pushes to.
    #[serde(default = "default_remote")]
    pub remote: String,
    /// The branch `git_revert` works on and pushes.
    #[serde(default = "default_branch")]
    pub branch: String,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        Self {
            remote: default_remote(),
            branch: default_branch(),
        }
    }
}

fn default_remote() -> String {
    "origin".into()
}

fn default_branch() -> String {
    "main".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentTracker {
    /// Markdown files under `.release/incidents/`.
    #[default]
    Local,
    /// GitHub issues (see `github:`).
    Github,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repo: Spanned<String>,
    /// The REST API root: GitHub, GitHub Enterprise, or a test server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The environment variable that holds the token (never the token itself).
    #[serde(default = "default_token_env")]
    pub token_env: Spanned<String>,
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

fn default_token_env() -> Spanned<String> {
    Spanned::unspanned("GITHUB_TOKEN".into())
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Keep the audit log and locks on refs of this git remote.
    pub git: Option<GitStateConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitStateConfig {
    #[serde(default = "default_remote")]
    pub remote: String,
}

/// A notification channel.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub kind: ChannelKind,
    /// The environment variable holding the webhook URL (a secret: never printed).
    pub url_env: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Slack incoming webhook: `{"text": …}`.
    Slack,
    /// Generic webhook: JSON with the message and the run context.
    Webhook,
    /// Written to the run's log only.
    Log,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The component's folder.
    pub path: Option<String>,
    /// Its specification document.
    pub spec: Option<String>,
    /// Components that must be at a stage before this one may enter it.
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// Values for templates: `{{ vars.name }}`.
    #[serde(default)]
    pub vars: NamedMap<serde_json::Value>,
}

/// One quality gate, as written: an `id` and exactly one gate kind.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub id: Spanned<String>,
    /// Passes when the command exits 0 (argv, never a shell).
    pub run: Option<Vec<String>>,
    /// Passes when the report's line coverage is at least `min` percent.
    pub coverage: Option<CoverageGate>,
    /// Passes when the component has been in its current stage this long, with no rollback.
    pub stable_for: Option<Duration>,
    /// Passes when the Prometheus query's value is at least `min`.
    pub uptime: Option<UptimeGate>,
    /// Passes when `release attest` recorded this check (within the window).
    pub attested: Option<AttestedGate>,
    /// Passes when enough distinct people approved the promotion (four eyes).
    pub approvals: Option<ApprovalsGate>,
    /// Passes when now is outside every window.
    pub freeze: Option<Vec<Spanned<FreezeWindow>>>,
    /// Passes when the target stage's rollback runbook was rehearsed (unchanged since).
    pub rollback_tested: Option<RollbackTestedGate>,
    /// Passes when every path exists.
    pub file_exists: Option<Vec<String>>,
    /// Passes when the tracker has no open issue carrying all these labels.
    pub no_open_issues: Option<NoOpenIssuesGate>,
}

/// The gate kinds, in the order SPEC §3 lists them.
pub const GATE_KINDS: &[&str] = &[
    "run",
    "coverage",
    "stable_for",
    "uptime",
    "attested",
    "approvals",
    "freeze",
    "rollback_tested",
    "file_exists",
    "no_open_issues",
];

/// A gate after validation: its id and its one kind.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub id: String,
    pub kind: GateKind,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    Run(Vec<String>),
    Coverage(CoverageGate),
    StableFor(Duration),
    Uptime(UptimeGate),
    Attested(AttestedGate),
    Approvals(ApprovalsGate),
    Freeze(Vec<Spanned<FreezeWindow>>),
    RollbackTested(RollbackTestedGate),
    FileExists(Vec<String>),
    NoOpenIssues(NoOpenIssuesGate),
}

impl GateSpec {
    /// The names of the gate kinds this gate sets (valid when exactly one).
    pub fn kinds_set(&self) -> Vec<&'static str> {
        let set = [
            self.run.is_some(),
            self.coverage.is_some(),
            self.stable_for.is_some(),
            self.uptime.is_some(),
            self.attested.is_some(),
            self.approvals.is_some(),
            self.freeze.is_some(),
            self.rollback_tested.is_some(),
            self.file_exists.is_some(),
            self.no_open_issues.is_some(),
        ];
        GATE_KINDS
            .iter()
            .zip(set)
            .filter_map(|(name, set)| set.then_some(*name))
            .collect()
    }

    /// The validated gate, when exactly one kind is set.
    pub fn to_gate(&self) -> Option<Gate> {
        let mut kinds = [
            self.run.clone().map(GateKind::Run),
            self.coverage.clone().map(GateKind::Coverage),
            self.stable_for.map(GateKind::StableFor),
            self.uptime.clone().map(GateKind::Uptime),
            self.attested.clone().map(GateKind::Attested),
            self.approvals.clone().map(GateKind::Approvals),
            self.freeze.clone().map(GateKind::Freeze),
            self.rollback_tested.clone().map(GateKind::RollbackTested),
            self.file_exists.clone().map(GateKind::FileExists),
            self.no_open_issues.clone().map(GateKind::NoOpenIssues),
        ]
        .into_iter()
        .flatten();
        let kind = kinds.next()?;
        kinds.next().is_none().then(|| Gate {
            id: self.id.value.clone(),
            kind,
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoverageGate {
    /// The coverage report (templated), relative to `release.yaml`.
    pub report: String,
    /// The minimum line coverage, in percent (0–100).
    pub min: Spanned<f64>,
    /// The report's format; detected from its content when omitted.
    pub format: Option<CoverageFormat>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CoverageFormat {
    Cobertura,
    Lcov,
    CoveragePy,
    LlvmCov,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UptimeGate {
    /// Prometheus base URL (its `/api/v1/query` is called).
    pub prometheus: String,
    /// `PromQL` (templated) whose scalar or vector value is compared with `min`.
    pub query: String,
    pub min: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestedGate {
    /// The attested check, e.g. `security-review`.
    pub check: String,
    /// How recent the attestation must be.
    pub within: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsGate {
    /// Distinct approvers needed, never counting the actor promoting.
    pub min: Spanned<u32>,
    pub within: Option<Duration>,
}

/// A window during which promotion is frozen: absolute (`from`/`to`) or `weekly`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// Start, RFC 3339 (absolute window).
    pub from: Option<Timestamp>,
    /// End, RFC 3339 (absolute window).
    pub to: Option<Timestamp>,
    /// A window repeated every week, e.g. `{from: "fri 16:00", to: "mon 08:00"}`.
    pub weekly: Option<WeeklyWindow>,
    /// IANA time zone of a weekly window (default UTC).
    pub tz: Option<TimeZone>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyWindow {
    pub from: WeeklyTime,
    pub to: WeeklyTime,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackTestedGate {
    /// How recent the successful rehearsal must be.
    pub within: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOpenIssuesGate {
    /// An issue blocks when it carries all of these labels (templated).
    pub labels: Vec<String>,
}

impl Config {
    pub fn stages(&self) -> impl Iterator<Item = &str> {
        self.header.stages.iter().map(|s| s.value.as_str())
    }

    pub fn has_stage(&self, stage: &str) -> bool {
        self.stages().any(|s| s == stage)
    }

    /// The validated gates guarding entry into `stage`.
    pub fn gates_for(&self, stage: &str) -> Vec<Gate> {
        self.gates
            .get(stage)
            .map(|gates| gates.iter().filter_map(GateSpec::to_gate).collect())
            .unwrap_or_default()
    }
}
