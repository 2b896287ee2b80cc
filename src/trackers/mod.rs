//! Incident trackers: where `incident_issue` steps open issues, where `no_open_issues` gates
//! look, and where `gates --file-blockers` files its blocker issues.
//!
//! Two trackers behind one enum: [`local::LocalTracker`] (Markdown files under
//! `.release/incidents/`, the default) and [`github::GithubTracker`] (GitHub or GitHub
//! Enterprise issues through octocrab).
//!
//! Issues that `release` opens carry a hidden marker, an HTML comment such as
//! `<!-- release:run=<run id> step=<step id> -->` on the last line of the body: whoever
//! opens an issue looks for an open one carrying its marker first, so a resumed run (or a
//! gate evaluated again) reuses its issue instead of opening a second one. Markers are found
//! by listing open issues (by label on GitHub) and comparing the marker line of each body
//! exactly (a body that quotes another marker is not that issue), never with the search API,
//! whose index lags behind by minutes.

pub mod github;
pub mod local;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::project::config::{Config, IncidentTracker};

pub use github::GithubTracker;
pub use local::LocalTracker;

/// An issue to open.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NewIssue {
    pub title: String,
    /// The text people read; the marker is added below it.
    pub body: String,
    pub labels: Vec<String>,
    /// The hidden marker that lets the opener find this issue again (see [`run_marker`]).
    pub marker: String,
    /// The run that opens it (recorded in the local tracker's front matter).
    pub run_id: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    #[default]
    Open,
    Closed,
}

impl IssueState {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueState::Open => "open",
            IssueState::Closed => "closed",
        }
    }
}

/// An issue as a tracker holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// The issue number: GitHub's, or the local file's sequence number.
    pub number: u64,
    pub title: String,
    /// The text people read, without the marker.
    pub body: String,
    /// The marker found at the end of the body, if any.
    pub marker: Option<String>,
    pub labels: Vec<String>,
    pub state: IssueState,
    /// Where people find it: the issue's web URL, or the local file's path.
    pub location: String,
    /// When it was opened (RFC 3339), when the tracker says.
    pub created_at: Option<String>,
}

impl Issue {
    /// True when the issue carries every one of `labels` (compared without regard to case,
    /// as GitHub does).
    pub fn has_labels(&self, labels: &[String]) -> bool {
        labels
            .iter()
            .all(|wanted| self.labels.iter().any(|l| l.eq_ignore_ascii_case(wanted)))
    }

    /// True for a blocker issue that `release gates --file-blockers` opened (its marker
    /// is a [`blocker_marker`]): the tool's own report of failing gates, not a problem of
    /// the component that a `no_open_issues` gate asks about.
    pub fn is_blocker(&self) -> bool {
        self.marker
            .as_deref()
            .is_some_and(|m| m.starts_with(&format!("{MARKER_START}blocker=")))
    }

    /// A one-line reference for people: `#12` and where it is.
    pub fn reference(&self) -> String {
        format!("#{} {}", self.number, self.location)
    }
}

/// What a tracker's check found: a summary, and what may go wrong although it is usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub summary: String,
    pub warning: Option<String>,
}

/// Whether [`Tracker::open_or_reuse`] opened a new issue or found the one it had opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    New,
    Reused,
}

/// The marker of the issue a run's step opens: a resumed run with the same run id finds it.
pub fn run_marker(run_id: &str, step_id: &str) -> String {
    marker(&[("run", run_id), ("step", step_id)])
}

/// The marker of the blocker issue of `component` for `stage` (one per component and
/// stage, opened by `release gates --file-blockers`).
pub fn blocker_marker(component: &str, stage: &str) -> String {
    marker(&[("blocker", &format!("{component}/{stage}"))])
}

/// The labels of a blocker issue.
pub fn blocker_labels(component: &str, stage: &str) -> Vec<String> {
    vec![
        format!("component:{component}"),
        format!("target:{stage}"),
        "blocker".into(),
        "quality-gate-failure".into(),
    ]
}

/// A marker from `key=value` pairs: `<!-- release:k1=v1 k2=v2 -->`. Values are cleaned of
/// spaces and of anything that could end the comment early.
pub fn marker(pairs: &[(&str, &str)]) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_whitespace() || c == '>' {
                    '_'
                } else {
                    c
                }
            })
            .collect::<String>()
            .replace("--", "__")
    };
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect();
    format!("{MARKER_START}{} -->", fields.join(" "))
}

const MARKER_START: &str = "<!-- release:";

/// The body a tracker stores: the text, a blank line, then the marker on its own line.
pub fn compose_body(body: &str, marker: Option<&str>) -> String {
    let text = body.trim_end();
    match marker {
        Some(marker) if text.is_empty() => format!("{marker}\n"),
        Some(marker) => format!("{text}\n\n{marker}\n"),
        None => format!("{text}\n"),
    }
}

/// Splits a stored body into the text and its marker (the last line that is one).
pub fn split_body(stored: &str) -> (String, Option<String>) {
    let stored = stored.replace("\r\n", "\n");
    let mut lines: Vec<&str> = stored.lines().collect();
    let position = lines.iter().rposition(|line| {
        let line = line.trim();
        line.starts_with(MARKER_START) && line.ends_with("-->")
    });
    let marker = position.map(|i| lines.remove(i).trim().to_owned());
    let text = lines.join("\n").trim_end().to_owned();
    (text, marker)
}

/// The configured tracker.
#[derive(Clone, Debug)]
pub enum Tracker {
    Local(LocalTracker),
    Github(GithubTracker),
}

impl Tracker {
    /// The tracker `release.yaml` chooses (`incidents:`), for the project rooted at `root`.
    /// GitHub needs its token now: the error names the variable that is missing.
    pub fn from_config(config: &Config, root: &Path) -> Result<Tracker, String> {
        match config.header.incidents.value {
            IncidentTracker::Local => Ok(Tracker::Local(LocalTracker::in_project(root))),
            IncidentTracker::Github => {
                let github = config.header.github.as_ref().ok_or(
                    "`incidents: github` needs a `github:` section (repo, api_url, token_env) in release.yaml",
                )?;
                GithubTracker::from_config(github).map(Tracker::Github)
            }
        }
    }

    /// What and where the tracker is, for people: `GitHub owner/name`, or the folder.
    pub fn describe(&self) -> String {
        match self {
            Tracker::Local(t) => t.describe(),
            Tracker::Github(t) => t.describe(),
        }
    }

    /// Checks, changing nothing, that issues can be opened: the folder is writable (or can
    /// be created), or the token is accepted and the repository readable (one GET).
    pub async fn check(&self) -> Result<Checked, String> {
        match self {
            Tracker::Local(t) => t.check(),
            Tracker::Github(t) => t.check().await,
        }
    }

    /// The open issues carrying `marker`, oldest first, among the open issues labelled
    /// `labels` on GitHub (every open issue in the local tracker).
    pub async fn find_all_open_with_marker(
        &self,
        labels: &[String],
        marker: &str,
    ) -> Result<Vec<Issue>, String> {
        match self {
            Tracker::Local(t) => t.find_all_open_with_marker(marker),
            Tracker::Github(t) => t.find_all_open_with_marker(labels, marker).await,
        }
    }

    /// The oldest open issue carrying `marker` (see [`Tracker::find_all_open_with_marker`]).
    pub async fn find_open_with_marker(
        &self,
        labels: &[String],
        marker: &str,
    ) -> Result<Option<Issue>, String> {
        match self {
            Tracker::Local(t) => t.find_open_with_marker(marker),
            Tracker::Github(t) => t.find_open_with_marker(labels, marker).await,
        }
    }

    /// The open issues carrying all of `labels` (all open issues when `labels` is empty).
    pub async fn list_open_with_labels(&self, labels: &[String]) -> Result<Vec<Issue>, String> {
        match self {
            Tracker::Local(t) => t.list_open_with_labels(labels),
            Tracker::Github(t) => t.list_open_with_labels(labels).await,
        }
    }

    /// Opens a new issue (see [`Tracker::open_or_reuse`] to avoid duplicates).
    pub async fn open(&self, issue: &NewIssue) -> Result<Issue, String> {
        match self {
            Tracker::Local(t) => {
                let issue = issue.clone();
                off_runtime(t, move |t| t.open(&issue)).await
            }
            Tracker::Github(t) => t.open(issue).await,
        }
    }

    /// Replaces the body of `issue`, keeping its marker.
    pub async fn update(&self, issue: &Issue, body: &str) -> Result<Issue, String> {
        match self {
            Tracker::Local(t) => {
                let (issue, body) = (issue.clone(), body.to_owned());
                off_runtime(t, move |t| t.update(&issue, &body)).await
            }
            Tracker::Github(t) => t.update(issue, body).await,
        }
    }

    /// Closes `issue` (closing a closed issue changes nothing).
    pub async fn close(&self, issue: &Issue) -> Result<Issue, String> {
        match self {
            Tracker::Local(t) => {
                let issue = issue.clone();
                off_runtime(t, move |t| t.close(&issue)).await
            }
            Tracker::Github(t) => t.close(issue).await,
        }
    }

    /// Closes every open issue carrying `marker` (see [`Tracker::find_all_open_with_marker`]),
    /// and returns them: duplicates opened before they could be told apart go too.
    pub async fn close_all_with_marker(
        &self,
        labels: &[String],
        marker: &str,
    ) -> Result<Vec<Issue>, String> {
        let mut closed = Vec::new();
        for issue in self.find_all_open_with_marker(labels, marker).await? {
            closed.push(self.close(&issue).await?);
        }
        Ok(closed)
    }

    /// The open issue carrying the new issue's marker if there is one, else a new issue;
    /// never a second issue carrying the same marker, even when processes do this at once:
    /// the local tracker looks and opens under its folder's lock; on GitHub, which cannot
    /// do that, whoever opened a duplicate closes it ([`GithubTracker::open_or_reuse`]).
    /// When opening fails in a way that may have opened it all the same (the connection
    /// dropped before the answer), the marker is looked for once more before giving up.
    pub async fn open_or_reuse(&self, issue: &NewIssue) -> Result<(Issue, Opened), String> {
        match self {
            Tracker::Local(t) => {
                let issue = issue.clone();
                off_runtime(t, move |t| t.open_or_reuse(&issue)).await
            }
            Tracker::Github(t) => t.open_or_reuse(issue).await,
        }
    }
}

/// Runs a local tracker's write off the async runtime: it waits for the folder's lock
/// (another process opening an issue), and that wait must not stop the runtime, whose
/// timers and signals end a step (its timeout, Ctrl-C). A write cut short that way still
/// finishes; the issue it opens carries its marker, so a resumed run finds it.
async fn off_runtime<T: Send + 'static>(
    tracker: &LocalTracker,
    work: impl FnOnce(&LocalTracker) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let tracker = tracker.clone();
    tokio::task::spawn_blocking(move || work(&tracker))
        .await
        .map_err(|e| format!("the local tracker stopped: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_one_html_comment() {
        assert_eq!(
            run_marker("20250101T000000Z-ab12", "incident"),
            "<!-- release:run=20250101T000000Z-ab12 step=incident -->"
        );
        let m = marker(&[("blocker", "api/prod uction --> x")]);
        assert_eq!(m, "<!-- release:blocker=api/prod_uction_____x -->");
    }

    #[test]
    fn bodies_round_trip_with_their_marker() {
        let m = run_marker("r1", "s");
        let stored = compose_body("Reason: x\nImpact: y\n", Some(&m));
        assert_eq!(stored, format!("Reason: x\nImpact: y\n\n{m}\n"));
        assert_eq!(
            split_body(&stored),
            ("Reason: x\nImpact: y".into(), Some(m.clone()))
        );
        assert_eq!(split_body("no marker"), ("no marker".into(), None));
        assert_eq!(compose_body("", Some(&m)), format!("{m}\n"));
        assert_eq!(split_body(&format!("{m}\n")), (String::new(), Some(m)));
    }

    #[test]
    fn labels_match_without_regard_to_case() {
        let issue = Issue {
            number: 1,
            title: "t".into(),
            body: String::new(),
            marker: None,
            labels: vec!["Critical".into(), "component:api".into()],
            state: IssueState::Open,
            location: "x".into(),
            created_at: None,
        };
        assert!(issue.has_labels(&["critical".into()]));
        assert!(issue.has_labels(&[]));
        assert!(!issue.has_labels(&["critical".into(), "component:web".into()]));
        assert!(!issue.is_blocker());
        let blocker = Issue {
            marker: Some(blocker_marker("api", "staging")),
            ..issue.clone()
        };
        assert!(blocker.is_blocker());
        let run = Issue {
            marker: Some(run_marker("r1", "blocker")),
            ..issue
        };
        assert!(!run.is_blocker());
    }
}
