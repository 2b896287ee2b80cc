//! GitHub issues through octocrab, at `github.api_url` (GitHub, GitHub Enterprise's
//! `https://HOST/api/v3`, or a test server), with the personal token read from the variable
//! `github.token_env` names.
//!
//! Answers are read into the few fields used here rather than octocrab's full models, so
//! that a field GitHub Enterprise leaves out (or adds) never fails a production rollback's
//! incident step. Reads and edits (GET, PATCH) are retried on 5xx answers and dropped
//! connections; opening an issue (POST) is not, since a retry could open it twice: the
//! caller looks for its marker again instead ([`super::Tracker::open_or_reuse`]).
//!
//! The token never appears in an error: messages are built from the status and GitHub's
//! message, and every one is scrubbed of the token before it leaves this module.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use octocrab::service::middleware::retry::RetryConfig;
use octocrab::{Octocrab, Page};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Checked, Issue, IssueState, NewIssue, Opened, compose_body, split_body};
use crate::actions::secret_from_env;
use crate::project::config::GithubConfig;
use crate::state::redact::REDACTED;

/// Issues per page when listing (GitHub's maximum).
const PER_PAGE: u32 = 100;
/// At most this many pages are read when listing (10 000 issues).
const MAX_PAGES: usize = 100;
/// At most this many pages of the newest open issues are read when a marker is not found
/// among the issues with its labels (1 000 issues): someone changed the labels by hand.
const UNLABELLED_PAGES: usize = 10;
/// Attempts for a GET or PATCH that meets a 5xx answer or a dropped connection.
const ATTEMPTS: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct GithubTracker {
    /// Built on first use: octocrab's client needs the Tokio runtime it will run on.
    client: Arc<OnceLock<Octocrab>>,
    api_url: String,
    owner: String,
    name: String,
    /// `host[:port]` of the API, for messages.
    host: String,
    token_env: String,
    /// Kept only to scrub it from any message.
    token: String,
}

impl fmt::Debug for GithubTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubTracker")
            .field("repo", &self.repo())
            .field("host", &self.host)
            .field("token_env", &self.token_env)
            .finish_non_exhaustive()
    }
}

/// The fields of a repository that the check reads.
#[derive(Debug, Deserialize)]
struct ApiRepository {
    #[serde(default)]
    archived: bool,
    has_issues: Option<bool>,
    permissions: Option<ApiPermissions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "the shape of GitHub's `permissions` object"
)]
struct ApiPermissions {
    admin: bool,
    maintain: bool,
    push: bool,
    triage: bool,
}

/// The fields of an issue used here.
#[derive(Debug, Deserialize)]
struct ApiIssue {
    number: u64,
    title: String,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<ApiLabel>,
    state: String,
    html_url: String,
    created_at: Option<String>,
    /// Present when the "issue" is a pull request (the issues API lists both).
    pull_request: Option<serde_json::Value>,
}

/// GitHub answers label objects; a label may also be a bare name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ApiLabel {
    Object { name: String },
    Name(String),
}

impl ApiIssue {
    fn into_issue(self) -> Issue {
        let (body, marker) = split_body(self.body.as_deref().unwrap_or_default());
        Issue {
            number: self.number,
            title: self.title,
            body,
            marker,
            labels: self
                .labels
                .into_iter()
                .map(|l| match l {
                    ApiLabel::Object { name } | ApiLabel::Name(name) => name,
                })
                .collect(),
            state: if self.state.eq_ignore_ascii_case("closed") {
                IssueState::Closed
            } else {
                IssueState::Open
            },
            location: self.html_url,
            created_at: self.created_at,
        }
    }
}

/// What a request is about, for the message of a 404.
#[derive(Clone, Copy)]
enum Subject {
    Repository,
    Issue(u64),
}

/// True when a request may be sent again: a 5xx answer, or no answer at all.
fn is_transient(error: &octocrab::Error) -> bool {
    match error {
        octocrab::Error::GitHub { source, .. } => source.status_code.is_server_error(),
        octocrab::Error::Service { .. }
        | octocrab::Error::Hyper { .. }
        | octocrab::Error::Other { .. } => true,
        _ => false,
    }
}

/// The innermost cause of an error: `Connection refused (os error 111)` rather than
/// `Service Error: client error (Connect)`.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

impl GithubTracker {
    /// The tracker `github:` describes; the token is read from its `token_env` now.
    pub fn from_config(github: &GithubConfig) -> Result<Self, String> {
        let token_env = &github.token_env.value;
        let token = secret_from_env(token_env)
            .map_err(|e| format!("{e} (the GitHub token is read from it: `github.token_env`)"))?;
        Self::new(&github.repo.value, &github.api_url, token_env, &token)
    }

    /// A tracker for `repo` (`owner/name`) at `api_url`, with `token` (read from the
    /// variable `token_env`, which messages name).
    pub fn new(repo: &str, api_url: &str, token_env: &str, token: &str) -> Result<Self, String> {
        // octocrab panics on a header value it cannot build: refuse such a token here.
        let token = token.trim().to_owned();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the token in {token_env} is not a valid token (empty, or holding spaces or control characters)"
            ));
        }
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("github.repo `{repo}` is not `owner/name`"))?;
        let url = reqwest::Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| format!("github.api_url `{api_url}` is not an http(s) URL"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => api_url.to_owned(),
        };
        let api_url = api_url.trim_end_matches('/');
        Ok(Self {
            client: Arc::new(OnceLock::new()),
            api_url: api_url.to_owned(),
            owner: owner.to_owned(),
            name: name.to_owned(),
            host,
            token_env: token_env.to_owned(),
            token,
        })
    }

    /// The client, built on first use (within the runtime that runs the requests).
    fn client(&self) -> Result<&Octocrab, String> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = Octocrab::builder()
            .base_uri(self.api_url.as_str())
            .map_err(|_| format!("github.api_url `{}` is not a valid URI", self.api_url))?
            .personal_token(self.token.clone())
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .set_write_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| {
                self.scrub(format!(
                    "cannot set up the GitHub client: {}",
                    root_cause(&e)
                ))
            })?;
        Ok(self.client.get_or_init(|| client))
    }

    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn describe(&self) -> String {
        format!("GitHub {} (at {})", self.repo(), self.host)
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    /// Removes the token from a message, whatever put it there.
    fn scrub(&self, message: String) -> String {
        if self.token.len() >= 4 && message.contains(&self.token) {
            message.replace(&self.token, REDACTED)
        } else {
            message
        }
    }

    /// A clear message for a failed request: what was refused, and why.
    fn explain(&self, error: &octocrab::Error, doing: &str, subject: Subject) -> String {
        let repo = self.repo();
        let message = match error {
            octocrab::Error::GitHub { source, .. } => {
                let said = source.message.trim();
                match source.status_code.as_u16() {
                    401 => format!(
                        "the token in {} was refused by {} ({said}) while trying to {doing}",
                        self.token_env, self.host
                    ),
                    403 | 429 if said.to_ascii_lowercase().contains("rate limit") => format!(
                        "{} is rate-limiting this token ({said}); try again later",
                        self.host
                    ),
                    403 => format!(
                        "the token in {} may not {doing} in {repo} ({said})",
                        self.token_env
                    ),
                    404 => match subject {
                        Subject::Repository => {
                            format!("repository {repo} not found or not visible to this token")
                        }
                        Subject::Issue(n) => format!(
                            "issue #{n} not found in {repo} (or the repository is not visible to this token)"
                        ),
                    },
                    410 => format!("issues are disabled in repository {repo}"),
                    422 => {
                        let details: Vec<String> = source
                            .errors
                            .iter()
                            .flatten()
                            .map(|e| {
                                e.get("message")
                                    .and_then(|m| m.as_str())
                                    .map_or_else(|| e.to_string(), str::to_owned)
                            })
                            .collect();
                        if details.is_empty() {
                            format!("GitHub refused to {doing} in {repo}: {said}")
                        } else {
                            format!(
                                "GitHub refused to {doing} in {repo}: {said} ({})",
                                details.join("; ")
                            )
                        }
                    }
                    status => format!(
                        "{} answered {status} when asked to {doing} in {repo}: {said}",
                        self.host
                    ),
                }
            }
            octocrab::Error::Json { source, .. } => format!(
                "{} answered with something other than GitHub's JSON when asked to {doing} (at `{}`: {})",
                self.host,
                source.path(),
                source.inner()
            ),
            octocrab::Error::Serde { source, .. } => format!(
                "{} answered with something other than GitHub's JSON when asked to {doing} ({source})",
                self.host
            ),
            other => format!("cannot reach {} ({})", self.host, root_cause(other)),
        };
        self.scrub(message)
    }

    /// Sends an idempotent request, again after a 5xx answer or a dropped connection.
    async fn idempotent<T, F, Fut>(&self, request: F) -> Result<T, octocrab::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, octocrab::Error>>,
    {
        let mut delay = FIRST_DELAY;
        let mut attempt = 1;
        loop {
            match request().await {
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                    tracing::debug!(
                        "GitHub request failed, trying again: {}",
                        self.scrub(e.to_string())
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, route: &str, doing: &str) -> Result<T, String> {
        let client = self.client()?;
        self.idempotent(|| client.get::<T, _, ()>(route, None))
            .await
            .map_err(|e| self.explain(&e, doing, Subject::Repository))
    }

    /// Checks that the token is accepted and the repository readable, with issues enabled
    /// (one GET of the repository).
    pub async fn check(&self) -> Result<Checked, String> {
        let repo: ApiRepository = self.get(&self.route(""), "read the repository").await?;
        let name = self.repo();
        if repo.archived {
            return Err(format!(
                "repository {name} is archived: no issue can be opened in it"
            ));
        }
        if repo.has_issues == Some(false) {
            return Err(format!("issues are disabled in repository {name}"));
        }
        let warning = repo
            .permissions
            .filter(|p| !(p.admin || p.maintain || p.push || p.triage))
            .map(|_| {
                format!(
                    "the token in {} can open issues in {name} but not label them: GitHub drops the labels",
                    self.token_env
                )
            });
        Ok(Checked {
            summary: format!(
                "repository {name} is readable with the token in {}",
                self.token_env
            ),
            warning,
        })
    }

    /// Open issues (not pull requests) with all of `labels`, every page, or only the first
    /// `max_pages`, newest first; with `until`, no page after the first that holds an issue
    /// carrying that marker.
    async fn list_open(
        &self,
        labels: &[String],
        max_pages: usize,
        until: Option<&str>,
    ) -> Result<Vec<Issue>, String> {
        let doing = "list issues";
        let mut query = vec![
            ("state", "open".to_owned()),
            ("sort", "created".to_owned()),
            ("direction", "desc".to_owned()),
            ("per_page", PER_PAGE.to_string()),
        ];
        if !labels.is_empty() {
            query.push(("labels", labels.join(",")));
        }
        let route = self.route("/issues");
        let client = self.client()?;
        let mut page: Page<ApiIssue> = self
            .idempotent(|| client.get(&route, Some(&query)))
            .await
            .map_err(|e| self.explain(&e, doing, Subject::Repository))?;
        let mut issues = Vec::new();
        for pages in 1.. {
            let before = issues.len();
            issues.extend(
                page.take_items()
                    .into_iter()
                    .filter(|i| i.pull_request.is_none())
                    .map(ApiIssue::into_issue),
            );
            let found = until.is_some_and(|marker| {
                issues[before..]
                    .iter()
                    .any(|i| i.marker.as_deref() == Some(marker))
            });
            if found || pages >= max_pages {
                break;
            }
            let next = page.next.clone();
            match self
                .idempotent(|| client.get_page::<ApiIssue>(&next))
                .await
                .map_err(|e| self.explain(&e, doing, Subject::Repository))?
            {
                Some(next) => page = next,
                None => break,
            }
        }
        // A server that ignores the filter must not make a gate see issues it should not.
        issues.retain(|i| i.state == IssueState::Open && i.has_labels(labels));
        Ok(issues)
    }

    pub async fn list_open_with_labels(&self, labels: &[String]) -> Result<Vec<Issue>, String> {
        self.list_open(labels, MAX_PAGES, None).await
    }

    /// The open issues whose body carries `marker`, oldest first: among the issues labelled
    /// `labels`, then, since GitHub drops the labels of a token that may not set them (and
    /// people change labels by hand), among the 1 000 newest open issues.
    pub async fn find_all_open_with_marker(
        &self,
        labels: &[String],
        marker: &str,
    ) -> Result<Vec<Issue>, String> {
        let carries = |issue: &Issue| issue.marker.as_deref() == Some(marker);
        let mut found: Vec<Issue> = self
            .list_open(labels, MAX_PAGES, None)
            .await?
            .into_iter()
            .filter(carries)
            .collect();
        if found.is_empty() && !labels.is_empty() {
            found = self
                .list_open(&[], UNLABELLED_PAGES, Some(marker))
                .await?
                .into_iter()
                .filter(carries)
                .collect();
        }
        found.sort_by_key(|issue| issue.number);
        Ok(found)
    }

    /// The oldest open issue carrying `marker` (see [`Self::find_all_open_with_marker`]).
    pub async fn find_open_with_marker(
        &self,
        labels: &[String],
        marker: &str,
    ) -> Result<Option<Issue>, String> {
        Ok(self
            .find_all_open_with_marker(labels, marker)
            .await?
            .into_iter()
            .next())
    }

    pub async fn open(&self, new: &NewIssue) -> Result<Issue, String> {
        let body = compose_body(&new.body, (!new.marker.is_empty()).then_some(&*new.marker));
        let request = json!({ "title": new.title, "body": body, "labels": new.labels });
        self.client()?
            .post::<_, ApiIssue>(self.route("/issues"), Some(&request))
            .await
            .map(ApiIssue::into_issue)
            .map_err(|e| self.explain(&e, "open an issue", Subject::Repository))
    }

    /// The open issue carrying the new issue's marker if there is one, else a new issue.
    ///
    /// GitHub cannot open an issue only if none carries a marker, so processes that looked
    /// at once may each open one. Each lists the issues carrying the marker again after
    /// opening, keeps the oldest (lowest number) and closes the newer ones as its
    /// duplicates: every issue older than one's own is in one's list, so all converge on the
    /// same survivor. The survivor comes back as reused when it is not the one just opened.
    pub async fn open_or_reuse(&self, new: &NewIssue) -> Result<(Issue, Opened), String> {
        if let Some(found) = self.find_open_with_marker(&new.labels, &new.marker).await? {
            return Ok((found, Opened::Reused));
        }
        let opened = match self.open(new).await {
            Ok(opened) => opened,
            // The connection may have dropped after GitHub opened it: look once more.
            Err(error) => {
                return match self.find_open_with_marker(&new.labels, &new.marker).await {
                    Ok(Some(found)) => Ok((found, Opened::Reused)),
                    _ => Err(error),
                };
            }
        };
        if new.marker.is_empty() {
            return Ok((opened, Opened::New));
        }
        let carrying = match self
            .find_all_open_with_marker(&new.labels, &new.marker)
            .await
        {
            Ok(carrying) => carrying,
            Err(e) => {
                tracing::warn!(
                    "opened issue #{} in {}, but could not look for a duplicate opened at the same time: {e}",
                    opened.number,
                    self.repo()
                );
                return Ok((opened, Opened::New));
            }
        };
        let survivor = match carrying.first() {
            Some(oldest) if oldest.number < opened.number => oldest.clone(),
            _ => return Ok((opened, Opened::New)),
        };
        let mut duplicates: Vec<&Issue> = carrying[1..].iter().collect();
        if !duplicates.iter().any(|d| d.number == opened.number) {
            duplicates.push(&opened);
        }
        for duplicate in duplicates {
            self.close_as_duplicate(duplicate, survivor.number).await;
        }
        Ok((survivor, Opened::Reused))
    }

    /// Closes `duplicate` with the comment `Duplicate of #N`. Failures are warnings: the
    /// survivor is what the caller needs, and the next run closes what is left over.
    async fn close_as_duplicate(&self, duplicate: &Issue, survivor: u64) {
        let number = duplicate.number;
        let route = self.route(&format!("/issues/{number}/comments"));
        let comment = json!({ "body": format!("Duplicate of #{survivor}") });
        // A comment is not sent twice (a retry could post it twice); it only explains.
        let commented = match self.client() {
            Ok(client) => client
                .post::<_, serde_json::Value>(route, Some(&comment))
                .await
                .map(drop)
                .map_err(|e| self.explain(&e, "comment on an issue", Subject::Issue(number))),
            Err(e) => Err(e),
        };
        if let Err(e) = commented {
            tracing::warn!("could not say on issue #{number} that it duplicates #{survivor}: {e}");
        }
        if let Err(e) = self.close(duplicate).await {
            tracing::warn!(
                "issue #{number} duplicates #{survivor} (both opened at once) but could not be closed: {e}; close it by hand"
            );
        }
    }

    async fn patch(
        &self,
        issue: &Issue,
        request: &serde_json::Value,
        doing: &str,
    ) -> Result<Issue, String> {
        let route = self.route(&format!("/issues/{}", issue.number));
        let client = self.client()?;
        self.idempotent(|| client.patch::<ApiIssue, _, _>(&route, Some(request)))
            .await
            .map(ApiIssue::into_issue)
            .map_err(|e| self.explain(&e, doing, Subject::Issue(issue.number)))
    }

    /// Replaces the body of `issue`, keeping its marker.
    pub async fn update(&self, issue: &Issue, body: &str) -> Result<Issue, String> {
        let body = compose_body(body, issue.marker.as_deref());
        self.patch(issue, &json!({ "body": body }), "update an issue")
            .await
    }

    pub async fn close(&self, issue: &Issue) -> Result<Issue, String> {
        self.patch(issue, &json!({ "state": "closed" }), "close an issue")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_token_is_not_shown() {
        let error = GithubTracker::new("noslash", "https://api.github.com", "T", "x").unwrap_err();
        assert!(error.contains("owner/name"), "{error}");
        let error = GithubTracker::new("o/n", "not a url", "T", "x").unwrap_err();
        assert!(error.contains("not an http(s) URL"), "{error}");
        let error = GithubTracker::new("o/n", "https://x", "GH_TOKEN", "ab\ncd").unwrap_err();
        assert!(
            error.contains("GH_TOKEN is not a valid token") && !error.contains("ab"),
            "{error}"
        );
        let tracker = GithubTracker::new(
            "o/n",
            "https://ghe.example.com/api/v3/",
            "GH_TOKEN",
            "ghp_secret_value",
        )
        .unwrap();
        assert_eq!(tracker.describe(), "GitHub o/n (at ghe.example.com)");
        let shown = format!("{tracker:?}");
        assert!(!shown.contains("ghp_secret_value"), "{shown}");
        assert_eq!(
            tracker.scrub("echo ghp_secret_value".into()),
            "echo [redacted]"
        );
    }

    #[test]
    fn issues_are_read_from_github_answers() {
        let answer = json!({
            "number": 3, "title": "t", "body": "text\n\n<!-- release:run=r step=s -->\n",
            "labels": [{"id": 1, "name": "incident", "color": "fff"}, "bare"],
            "state": "open", "html_url": "https://github.com/o/n/issues/3",
            "created_at": "2025-01-01T00:00:00Z", "user": {"login": "x"}
        });
        let issue = serde_json::from_value::<ApiIssue>(answer)
            .unwrap()
            .into_issue();
        assert_eq!(issue.labels, ["incident", "bare"]);
        assert_eq!(issue.body, "text");
        assert_eq!(
            issue.marker.as_deref(),
            Some("<!-- release:run=r step=s -->")
        );
        assert_eq!(issue.state, IssueState::Open);
    }
}
