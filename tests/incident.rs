//! Incident trackers and the `incident_issue` action: the local tracker's files, GitHub
//! through a GitHub-compatible REST server on loopback (stateful: issues opened are listed,
//! edited and closed), the run marker that makes a resumed run reuse its issue, the honest
//! dry-run, and the token that never shows.
//!
//! Most tests call the library (`release::trackers`, the action's `preflight`/`execute`);
//! the dry-run is also driven through the binary. Real runs through the binary wait for the
//! action to be enabled in `actions::can_execute`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use assert_cmd::cargo::CommandCargoExt;
use release::actions::{Fidelity, Outcome, RunInfo, StepAction, StepContext, Verdict};
use release::engine::context::{StepOutputs, Templater, base_context};
use release::engine::process::Line;
use release::project::Project;
use release::project::runbook::IncidentIssueAction;
use release::trackers::{
    GithubTracker, Issue, IssueState, LocalTracker, NewIssue, Opened, Tracker, run_marker,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::{Run, TestEnv};

const TOKEN: &str = "ghp_T0kenThatMustNeverShow_0123456789";
const REPO: &str = "octo/shop";

// ---------------------------------------------------------------------------------------
// A GitHub-compatible REST server: the endpoints the tracker uses, with complete objects
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct State {
    /// The server's address, for the URLs in its answers.
    base: String,
    issues: Vec<Value>,
    has_issues: bool,
    /// Simulates a token that may open issues but not label them (GitHub drops labels).
    drop_labels: bool,
    /// Comments posted: (issue number, body).
    comments: Vec<(usize, String)>,
    /// Answers listings this late (read at once, sent later: a slow GitHub, so that
    /// processes racing each other all list before any of them opens).
    list_delay: Option<std::time::Duration>,
}

/// Routes every request like GitHub's REST API for one repository.
struct FakeGithub {
    state: Arc<Mutex<State>>,
    /// A path before `/repos` (GitHub Enterprise serves the API under `/api/v3`).
    prefix: String,
}

struct Github {
    server: MockServer,
    state: Arc<Mutex<State>>,
    prefix: String,
}

fn user(base: &str) -> Value {
    let u = format!("{base}/users/release-bot");
    json!({
        "login": "release-bot", "id": 1, "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://avatars.example.com/u/1", "gravatar_id": "",
        "url": u, "html_url": "https://github.example.com/release-bot",
        "followers_url": format!("{u}/followers"), "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"), "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"), "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"), "type": "User", "site_admin": false
    })
}

fn label(base: &str, id: usize, name: &str) -> Value {
    json!({
        "id": id, "node_id": format!("LA_{id}"), "url": format!("{base}/repos/{REPO}/labels/{name}"),
        "name": name, "description": null, "color": "ededed", "default": false
    })
}

fn repository(base: &str, has_issues: bool) -> Value {
    let url = format!("{base}/repos/{REPO}");
    json!({
        "id": 42, "node_id": "R_42", "name": "shop", "full_name": REPO, "private": true,
        "owner": user(base), "html_url": format!("https://github.example.com/{REPO}"),
        "description": "the shop", "fork": false, "url": url,
        "issues_url": format!("{url}/issues{{/number}}"), "labels_url": format!("{url}/labels{{/name}}"),
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
        "pushed_at": "2025-01-01T00:00:00Z", "default_branch": "main",
        "has_issues": has_issues, "archived": false, "disabled": false, "visibility": "private",
        "open_issues_count": 0,
        "permissions": { "admin": false, "maintain": false, "push": true, "triage": true, "pull": true }
    })
}

impl FakeGithub {
    fn issue(base: &str, number: usize, title: &str, body: &str, labels: &[String]) -> Value {
        let url = format!("{base}/repos/{REPO}/issues/{number}");
        json!({
            "id": 1000 + number, "node_id": format!("I_{number}"), "url": url,
            "repository_url": format!("{base}/repos/{REPO}"),
            "labels_url": format!("{url}/labels{{/name}}"), "comments_url": format!("{url}/comments"),
            "events_url": format!("{url}/events"),
            "html_url": format!("https://github.example.com/{REPO}/issues/{number}"),
            "number": number, "state": "open", "state_reason": null, "title": title, "body": body,
            "user": user(base),
            "labels": labels.iter().enumerate().map(|(i, l)| label(base, i + 1, l)).collect::<Vec<_>>(),
            "assignee": null, "assignees": [], "milestone": null, "locked": false,
            "active_lock_reason": null, "comments": 0, "author_association": "OWNER",
            "closed_at": null, "closed_by": null,
            "created_at": format!("2025-01-01T00:00:{:02}Z", number % 60),
            "updated_at": format!("2025-01-01T00:00:{:02}Z", number % 60)
        })
    }

    fn list(state: &State, request: &Request) -> ResponseTemplate {
        let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
        let wanted_state = query.get("state").map_or("open", String::as_str);
        let labels: Vec<String> = query
            .get("labels")
            .map(|l| l.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let per_page: usize = query.get("per_page").map_or(30, |p| p.parse().unwrap());
        let page: usize = query.get("page").map_or(1, |p| p.parse().unwrap());
        let mut matching: Vec<&Value> = state
            .issues
            .iter()
            .filter(|i| wanted_state == "all" || i["state"] == wanted_state)
            .filter(|i| {
                labels.iter().all(|wanted| {
                    i["labels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l["name"].as_str().unwrap().eq_ignore_ascii_case(wanted))
                })
            })
            .collect();
        if query.get("direction").map(String::as_str) == Some("desc") {
            matching.reverse();
        }
        let items: Vec<&Value> = matching
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .copied()
            .collect();
        let mut response = ResponseTemplate::new(200).set_body_json(&items);
        if page * per_page < matching.len() {
            // Absolute, as GitHub writes it (the request's own URL lacks the host).
            let mut next = request.url.clone();
            let pairs: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| *k != "page")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            next.query_pairs_mut()
                .clear()
                .extend_pairs(pairs)
                .append_pair("page", &(page + 1).to_string());
            let next = format!(
                "{}/repos/{REPO}/issues?{}",
                state.base,
                next.query().unwrap_or_default()
            );
            response = response.insert_header("link", format!("<{next}>; rel=\"next\"").as_str());
        }
        response
    }

    fn create(state: &mut State, request: &Request) -> ResponseTemplate {
        if !state.has_issues {
            return ResponseTemplate::new(410)
                .set_body_json(json!({ "message": "Issues are disabled for this repo" }));
        }
        let body: Value = request.body_json().unwrap();
        let title = body["title"].as_str().unwrap_or_default();
        if title.is_empty() {
            return ResponseTemplate::new(422).set_body_json(json!({
                "message": "Validation Failed",
                "errors": [{ "resource": "Issue", "code": "missing_field", "field": "title" }]
            }));
        }
        let labels: Vec<String> = if state.drop_labels {
            Vec::new()
        } else {
            body["labels"]
                .as_array()
                .map(|l| l.iter().map(|l| l.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        let number = state.issues.len() + 1;
        let issue = Self::issue(
            &state.base,
            number,
            title,
            body["body"].as_str().unwrap_or_default(),
            &labels,
        );
        state.issues.push(issue.clone());
        ResponseTemplate::new(201).set_body_json(issue)
    }

    fn comment(state: &mut State, number: usize, request: &Request) -> ResponseTemplate {
        if !state.issues.iter().any(|i| i["number"] == number) {
            return ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" }));
        }
        let body: Value = request.body_json().unwrap();
        let text = body["body"].as_str().unwrap_or_default().to_owned();
        state.comments.push((number, text.clone()));
        let id = state.comments.len();
        let url = format!("{}/repos/{REPO}/issues/comments/{id}", state.base);
        ResponseTemplate::new(201).set_body_json(json!({
            "id": id, "node_id": format!("IC_{id}"), "url": url,
            "html_url": format!("https://github.example.com/{REPO}/issues/{number}#issuecomment-{id}"),
            "issue_url": format!("{}/repos/{REPO}/issues/{number}", state.base),
            "body": text, "user": user(&state.base), "author_association": "OWNER",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"
        }))
    }

    fn edit(state: &mut State, number: usize, request: &Request) -> ResponseTemplate {
        let Some(issue) = state
            .issues
            .iter_mut()
            .find(|i| i["number"] == number && i.get("pull_request").is_none())
        else {
            return ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" }));
        };
        let change: Value = request.body_json().unwrap();
        for key in ["title", "body"] {
            if let Some(value) = change.get(key) {
                issue[key] = value.clone();
            }
        }
        if let Some(new_state) = change.get("state") {
            issue["state"] = new_state.clone();
            if new_state == "closed" {
                issue["closed_at"] = json!("2025-01-02T00:00:00Z");
                issue["state_reason"] = json!("completed");
            }
        }
        ResponseTemplate::new(200).set_body_json(issue.clone())
    }
}

impl Respond for FakeGithub {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let authorized = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {TOKEN}").as_str());
        if !authorized {
            return ResponseTemplate::new(401).set_body_json(json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest"
            }));
        }
        let Some(path) = request.url.path().strip_prefix(&self.prefix) else {
            return ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" }));
        };
        let mut state = self.state.lock().unwrap();
        let repo = format!("/repos/{REPO}");
        let not_found =
            || ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" }));
        let Some(rest) = path.strip_prefix(&repo) else {
            return not_found();
        };
        let method = request.method.as_str();
        match (method, rest) {
            ("GET", "") => {
                ResponseTemplate::new(200).set_body_json(repository(&state.base, state.has_issues))
            }
            ("GET", "/issues") => {
                let answer = Self::list(&state, request);
                match state.list_delay {
                    Some(delay) => answer.set_delay(delay),
                    None => answer,
                }
            }
            ("POST", "/issues") => Self::create(&mut state, request),
            ("POST", rest) if rest.starts_with("/issues/") && rest.ends_with("/comments") => {
                match rest["/issues/".len()..rest.len() - "/comments".len()].parse() {
                    Ok(number) => Self::comment(&mut state, number, request),
                    Err(_) => not_found(),
                }
            }
            ("PATCH", rest) if rest.starts_with("/issues/") => {
                match rest["/issues/".len()..].parse() {
                    Ok(number) => Self::edit(&mut state, number, request),
                    Err(_) => not_found(),
                }
            }
            _ => not_found(),
        }
    }
}

impl Github {
    async fn start() -> Self {
        Self::start_at("").await
    }

    /// A server answering under `prefix` (e.g. `/api/v3`).
    async fn start_at(prefix: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            base: format!("{}{prefix}", server.uri()),
            has_issues: true,
            ..State::default()
        }));
        Mock::given(wiremock::matchers::any())
            .respond_with(FakeGithub {
                state: state.clone(),
                prefix: prefix.to_owned(),
            })
            .mount(&server)
            .await;
        Self {
            server,
            state,
            prefix: prefix.to_owned(),
        }
    }

    fn api_url(&self) -> String {
        format!("{}{}", self.server.uri(), self.prefix)
    }

    fn tracker(&self) -> Tracker {
        self.tracker_with(REPO, TOKEN)
    }

    fn tracker_with(&self, repo: &str, token: &str) -> Tracker {
        Tracker::Github(GithubTracker::new(repo, &self.api_url(), "GITHUB_TOKEN", token).unwrap())
    }

    /// The requests received with this method whose path ends with `suffix`.
    async fn requests(&self, method: &str, suffix: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.url.path().ends_with(suffix))
            .collect()
    }

    async fn all_requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap()
    }

    fn issues(&self) -> Vec<Value> {
        self.state.lock().unwrap().issues.clone()
    }

    /// Adds a pull request, which GitHub's issues API lists among the issues.
    fn add_pull_request(&self, labels: &[&str]) {
        let mut state = self.state.lock().unwrap();
        let number = state.issues.len() + 1;
        let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut pr = FakeGithub::issue(&state.base, number, "a pull request", "", &labels);
        pr["pull_request"] =
            json!({ "url": format!("{}/repos/{REPO}/pulls/{number}", state.base) });
        state.issues.push(pr);
    }
}

/// The issue files of the local tracker.
fn incident_files(env: &TestEnv) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(env.join(".release/incidents")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "md")
        })
        .collect();
    names.sort();
    names
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn new_issue(title: &str, labels: &[&str], run: &str) -> NewIssue {
    NewIssue {
        title: title.into(),
        body: format!("Rollback reason: 5xx spike\nRun: {run}"),
        labels: strings(labels),
        marker: run_marker(run, "incident"),
        run_id: run.into(),
    }
}

fn authorization(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// The fake's answers are what octocrab's own models accept
// ---------------------------------------------------------------------------------------

#[test]
fn fake_answers_are_complete_github_objects() {
    let issue = FakeGithub::issue("http://x", 7, "t", "b", &strings(&["incident"]));
    let parsed: octocrab::models::issues::Issue = serde_json::from_value(issue).unwrap();
    assert_eq!(
        (parsed.number, parsed.labels[0].name.as_str()),
        (7, "incident")
    );
    let repo: octocrab::models::Repository =
        serde_json::from_value(repository("http://x", true)).unwrap();
    assert_eq!(repo.full_name.as_deref(), Some(REPO));
}

// ---------------------------------------------------------------------------------------
// GitHub tracker
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn github_open_sends_title_body_labels_and_the_token() {
    let github = Github::start().await;
    let issue = github
        .tracker()
        .open(&new_issue(
            "Production rollback: api",
            &["component:api", "rollback"],
            "r-1",
        ))
        .await
        .unwrap();
    assert_eq!(issue.number, 1);
    assert_eq!(
        issue.location,
        "https://github.example.com/octo/shop/issues/1"
    );
    assert_eq!(issue.labels, ["component:api", "rollback"]);
    assert_eq!(issue.body, "Rollback reason: 5xx spike\nRun: r-1");
    assert_eq!(
        issue.marker.as_deref(),
        Some("<!-- release:run=r-1 step=incident -->")
    );
    let posts = github.requests("POST", "/repos/octo/shop/issues").await;
    assert_eq!(posts.len(), 1);
    assert_eq!(authorization(&posts[0]), format!("Bearer {TOKEN}"));
    assert_eq!(
        posts[0].body_json::<Value>().unwrap(),
        json!({
            "title": "Production rollback: api",
            "body": "Rollback reason: 5xx spike\nRun: r-1\n\n<!-- release:run=r-1 step=incident -->\n",
            "labels": ["component:api", "rollback"]
        })
    );
}

#[tokio::test]
async fn github_same_run_reuses_its_issue_and_another_run_opens_a_second() {
    let github = Github::start().await;
    let tracker = github.tracker();
    let labels = ["component:api", "incident"];
    let (first, how) = tracker
        .open_or_reuse(&new_issue("A", &labels, "r-1"))
        .await
        .unwrap();
    assert_eq!((first.number, how), (1, Opened::New));
    // The resumed run: same run id, same step.
    let (again, how) = tracker
        .open_or_reuse(&new_issue("A", &labels, "r-1"))
        .await
        .unwrap();
    assert_eq!((again.number, how), (1, Opened::Reused));
    assert_eq!(again.location, first.location);
    assert_eq!(github.requests("POST", "/issues").await.len(), 1);
    // Looking for the marker lists issues by label (never the search API).
    let lists = github.requests("GET", "/repos/octo/shop/issues").await;
    assert!(!lists.is_empty());
    let queries: Vec<BTreeMap<String, String>> = lists
        .iter()
        .map(|l| l.url.query_pairs().into_owned().collect())
        .collect();
    assert!(queries.iter().all(|q| q["state"] == "open"), "{queries:?}");
    assert_eq!(
        queries[0].get("labels").map(String::as_str),
        Some("component:api,incident")
    );
    assert!(github.requests("GET", "/search/issues").await.is_empty());
    // Another run opens its own.
    let (second, how) = tracker
        .open_or_reuse(&new_issue("A", &labels, "r-2"))
        .await
        .unwrap();
    assert_eq!((second.number, how), (2, Opened::New));
    assert_eq!(github.issues().len(), 2);
    // A closed issue is not reused.
    tracker.close(&second).await.unwrap();
    let (third, how) = tracker
        .open_or_reuse(&new_issue("A", &labels, "r-2"))
        .await
        .unwrap();
    assert_eq!((third.number, how), (3, Opened::New));
}

#[tokio::test]
async fn github_marker_is_found_even_when_github_dropped_the_labels() {
    let github = Github::start().await;
    github.state.lock().unwrap().drop_labels = true;
    let tracker = github.tracker();
    let issue = new_issue("A", &["incident"], "r-1");
    let (first, _) = tracker.open_or_reuse(&issue).await.unwrap();
    assert!(first.labels.is_empty());
    let (again, how) = tracker.open_or_reuse(&issue).await.unwrap();
    assert_eq!((again.number, how), (first.number, Opened::Reused));
    assert_eq!(github.issues().len(), 1);
}

#[tokio::test]
async fn github_lists_open_issues_by_labels_then_updates_and_closes_them() {
    let github = Github::start().await;
    let tracker = github.tracker();
    let blocker = tracker
        .open(&new_issue(
            "Blocked: api to production",
            &["component:api", "blocker"],
            "g-1",
        ))
        .await
        .unwrap();
    tracker
        .open(&new_issue("B", &["component:web", "blocker"], "g-2"))
        .await
        .unwrap();
    tracker
        .open(&new_issue("C", &["component:api", "minor"], "g-3"))
        .await
        .unwrap();
    github.add_pull_request(&["component:api", "blocker"]);
    let numbers = |issues: Vec<Issue>| {
        let mut n: Vec<u64> = issues.iter().map(|i| i.number).collect();
        n.sort_unstable();
        n
    };
    let found = tracker
        .list_open_with_labels(&strings(&["component:api", "blocker"]))
        .await
        .unwrap();
    assert_eq!(numbers(found.clone()), [1], "pull requests are not issues");
    assert_eq!(found[0].title, "Blocked: api to production");
    assert_eq!(
        numbers(
            tracker
                .list_open_with_labels(&strings(&["blocker"]))
                .await
                .unwrap()
        ),
        [1, 2]
    );
    assert_eq!(
        numbers(tracker.list_open_with_labels(&[]).await.unwrap()),
        [1, 2, 3]
    );

    let updated = tracker
        .update(&blocker, "Still failing: coverage 61% < 80%")
        .await
        .unwrap();
    assert_eq!(updated.body, "Still failing: coverage 61% < 80%");
    assert_eq!(updated.marker, blocker.marker, "the marker is kept");
    let patches = github.requests("PATCH", "/repos/octo/shop/issues/1").await;
    assert_eq!(
        patches[0].body_json::<Value>().unwrap(),
        json!({ "body": "Still failing: coverage 61% < 80%\n\n<!-- release:run=g-1 step=incident -->\n" })
    );
    assert_eq!(authorization(&patches[0]), format!("Bearer {TOKEN}"));

    let closed = tracker.close(&updated).await.unwrap();
    assert_eq!(closed.state, IssueState::Closed);
    let patches = github.requests("PATCH", "/repos/octo/shop/issues/1").await;
    assert_eq!(
        patches[1].body_json::<Value>().unwrap(),
        json!({ "state": "closed" })
    );
    assert!(
        tracker
            .list_open_with_labels(&strings(&["component:api", "blocker"]))
            .await
            .unwrap()
            .is_empty()
    );

    let missing = Issue {
        number: 99,
        ..closed
    };
    let error = tracker.close(&missing).await.unwrap_err();
    assert!(
        error.contains("issue #99 not found in octo/shop"),
        "{error}"
    );
}

#[tokio::test]
async fn github_listing_follows_every_page() {
    let github = Github::start().await;
    {
        let mut state = github.state.lock().unwrap();
        for n in 1..=230 {
            let labels = strings(if n % 2 == 0 {
                &["critical"]
            } else {
                &["minor"]
            });
            let issue = FakeGithub::issue(&state.base, n, &format!("issue {n}"), "", &labels);
            state.issues.push(issue);
        }
    }
    let tracker = github.tracker();
    assert_eq!(tracker.list_open_with_labels(&[]).await.unwrap().len(), 230);
    assert_eq!(
        github.requests("GET", "/issues").await.len(),
        3,
        "three pages of 100"
    );
    assert_eq!(
        tracker
            .list_open_with_labels(&strings(&["critical"]))
            .await
            .unwrap()
            .len(),
        115
    );
}

#[tokio::test]
async fn github_marker_is_found_beyond_the_newest_hundred_when_labels_were_changed() {
    let github = Github::start().await;
    let marker = run_marker("r-1", "incident");
    {
        // Issue 60 carries the marker, but its labels were taken off by hand; 150 issues
        // were opened since.
        let mut state = github.state.lock().unwrap();
        for n in 1..=210 {
            let body = if n == 60 {
                format!("text\n\n{marker}\n")
            } else {
                String::new()
            };
            let issue = FakeGithub::issue(&state.base, n, &format!("issue {n}"), &body, &[]);
            state.issues.push(issue);
        }
    }
    let tracker = github.tracker();
    let found = tracker
        .find_open_with_marker(&strings(&["incident"]), &marker)
        .await
        .unwrap();
    assert_eq!(found.map(|i| i.number), Some(60));
    // One listing by label, then the newest issues page by page until the marker shows
    // (on the second page: the third is not read).
    assert_eq!(github.requests("GET", "/issues").await.len(), 3);
    let (again, how) = tracker
        .open_or_reuse(&new_issue("A", &["incident"], "r-1"))
        .await
        .unwrap();
    assert_eq!((again.number, how), (60, Opened::Reused));
    assert_eq!(github.issues().len(), 210, "no second issue");
}

#[tokio::test]
async fn github_enterprise_api_under_a_path() {
    let github = Github::start_at("/api/v3").await;
    let tracker = github.tracker();
    let checked = tracker.check().await.unwrap();
    assert_eq!(
        checked.summary,
        "repository octo/shop is readable with the token in GITHUB_TOKEN"
    );
    let (issue, _) = tracker
        .open_or_reuse(&new_issue("A", &["incident"], "r-1"))
        .await
        .unwrap();
    assert_eq!(issue.number, 1);
    assert!(
        github
            .all_requests()
            .await
            .iter()
            .all(|r| r.url.path().starts_with("/api/v3/repos/octo/shop")),
        "every request goes under the enterprise path"
    );
}

#[tokio::test]
async fn github_check_is_one_get_of_the_repository() {
    let github = Github::start().await;
    let checked = github.tracker().check().await.unwrap();
    assert_eq!(checked.warning, None);
    let requests = github.all_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method.as_str(), "GET");
    assert_eq!(requests[0].url.path(), "/repos/octo/shop");
    assert_eq!(authorization(&requests[0]), format!("Bearer {TOKEN}"));

    github.state.lock().unwrap().has_issues = false;
    let error = github.tracker().check().await.unwrap_err();
    assert_eq!(error, "issues are disabled in repository octo/shop");
    let error = github
        .tracker()
        .open(&new_issue("A", &[], "r"))
        .await
        .unwrap_err();
    assert_eq!(error, "issues are disabled in repository octo/shop");
}

#[tokio::test]
async fn github_errors_are_clear_and_never_show_the_token() {
    let github = Github::start().await;
    let refused = github
        .tracker_with(REPO, "ghp_WrongTokenAlsoSecret_987")
        .check()
        .await
        .unwrap_err();
    assert!(
        refused.contains("the token in GITHUB_TOKEN was refused"),
        "{refused}"
    );
    assert!(
        !refused.contains("ghp_WrongTokenAlsoSecret_987"),
        "{refused}"
    );

    let missing = github
        .tracker_with("octo/missing", TOKEN)
        .check()
        .await
        .unwrap_err();
    assert_eq!(
        missing,
        "repository octo/missing not found or not visible to this token"
    );
    let error = github
        .tracker_with("octo/missing", TOKEN)
        .open(&new_issue("A", &[], "r"))
        .await
        .unwrap_err();
    assert!(
        error.contains("repository octo/missing not found"),
        "{error}"
    );

    let invalid = github
        .tracker()
        .open(&new_issue("", &[], "r"))
        .await
        .unwrap_err();
    assert!(
        invalid.contains("Validation Failed") && invalid.contains("missing_field"),
        "{invalid}"
    );

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tracker = Tracker::Github(
        GithubTracker::new(
            REPO,
            &format!("http://127.0.0.1:{port}"),
            "GITHUB_TOKEN",
            TOKEN,
        )
        .unwrap(),
    );
    let unreachable = tracker.check().await.unwrap_err();
    assert!(
        unreachable.starts_with(&format!("cannot reach 127.0.0.1:{port}")),
        "{unreachable}"
    );
    for message in [
        &refused,
        &missing,
        &error,
        &invalid,
        &unreachable,
        &format!("{tracker:?}"),
    ] {
        assert!(!message.contains(TOKEN), "{message}");
    }
}

// ---------------------------------------------------------------------------------------
// Local tracker, as `release.yaml` chooses it
// ---------------------------------------------------------------------------------------

const LOCAL_CONFIG: &str = "version: 1\ncomponents:\n  api: {}\n";

fn project(env: &TestEnv) -> Project {
    Project::load(env.path(), None).expect("release.yaml loads")
}

#[tokio::test]
async fn local_is_the_default_and_reuses_a_runs_file() {
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG);
    let project = project(&env);
    let tracker = Tracker::from_config(&project.config, &project.root).unwrap();
    assert!(matches!(tracker, Tracker::Local(_)));
    assert_eq!(tracker.describe(), "the local tracker (.release/incidents)");
    let labels = ["component:api", "incident"];
    let (first, how) = tracker
        .open_or_reuse(&new_issue("Rollback: api", &labels, "r-1"))
        .await
        .unwrap();
    assert_eq!(how, Opened::New);
    let path = env.join(".release/incidents/0001-rollback-api.md");
    assert_eq!(first.location, path.display().to_string());
    let text = env.read(".release/incidents/0001-rollback-api.md");
    assert!(text.starts_with("---\ntitle: \"Rollback: api\"\nlabels: [\"component:api\", \"incident\"]\nstate: open\nrun: \"r-1\"\ncreated: \""), "{text}");
    assert!(text.ends_with("---\n\nRollback reason: 5xx spike\nRun: r-1\n\n<!-- release:run=r-1 step=incident -->\n"), "{text}");

    let (again, how) = tracker
        .open_or_reuse(&new_issue("Rollback: api", &labels, "r-1"))
        .await
        .unwrap();
    assert_eq!(
        (again.location.as_str(), how),
        (first.location.as_str(), Opened::Reused)
    );
    let (second, how) = tracker
        .open_or_reuse(&new_issue("Rollback: api", &labels, "r-2"))
        .await
        .unwrap();
    assert_eq!((second.number, how), (2, Opened::New));
    assert_eq!(
        incident_files(&env),
        ["0001-rollback-api.md", "0002-rollback-api.md"]
    );

    let open = tracker
        .list_open_with_labels(&strings(&["incident"]))
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    tracker.close(&first).await.unwrap();
    let open = tracker
        .list_open_with_labels(&strings(&["incident"]))
        .await
        .unwrap();
    assert_eq!(open.iter().map(|i| i.number).collect::<Vec<_>>(), [2]);
    assert!(
        env.read(".release/incidents/0001-rollback-api.md")
            .contains("\nstate: closed\n")
    );
    let updated = tracker.update(&second, "new text").await.unwrap();
    assert_eq!(
        (updated.body.as_str(), updated.marker.is_some()),
        ("new text", true)
    );
}

#[tokio::test]
async fn local_tracker_in_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::Local(LocalTracker::new(dir.path().join("issues")));
    assert!(
        tracker
            .check()
            .await
            .unwrap()
            .summary
            .contains("can be created")
    );
    assert!(
        !dir.path().join("issues").exists(),
        "checking creates nothing"
    );
    tracker.open(&new_issue("A", &[], "r")).await.unwrap();
    assert!(
        tracker
            .check()
            .await
            .unwrap()
            .summary
            .contains("is writable")
    );
}

#[test]
fn github_tracker_without_its_token_names_the_variable() {
    let env = TestEnv::new();
    env.write(
        "release.yaml",
        "version: 1\nincidents: github\ngithub: { repo: octo/shop, token_env: RELEASE_TEST_TOKEN_NEVER_SET }\ncomponents:\n  api: {}\n",
    );
    let project = project(&env);
    let error = Tracker::from_config(&project.config, &project.root).unwrap_err();
    assert!(
        error.contains("RELEASE_TEST_TOKEN_NEVER_SET is not set"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// The action, called as the engine calls it
// ---------------------------------------------------------------------------------------

/// What a step context borrows: the project, the run, the templates, the channels.
struct Step {
    project: Project,
    run: RunInfo,
    templates: Templater,
    lines: mpsc::UnboundedSender<Line>,
    received: mpsc::UnboundedReceiver<Line>,
    cancel: watch::Receiver<bool>,
    _cancel: watch::Sender<bool>,
}

impl Step {
    fn new(env: &TestEnv, run_id: &str, dry_run: bool) -> Self {
        let run = RunInfo {
            id: run_id.into(),
            actor: "tester@example.com".into(),
            component: "api".into(),
            stage: "production".into(),
            reason: "5xx spike".into(),
            started_at: "2025-03-01T10:00:00Z".into(),
            dry_run,
            origin: run_id.into(),
        };
        let context = json!({
            "component": "api", "stage": "production",
            "params": { "impact": "checkout down" },
            "run": {
                "id": run.id, "actor": run.actor, "reason": run.reason,
                "started_at": run.started_at, "dry_run": dry_run
            }
        });
        let templates = Templater::new(&base_context(&context), &StepOutputs::default());
        let (lines, received) = mpsc::unbounded_channel();
        let (cancel_tx, cancel) = watch::channel(false);
        Self {
            project: project(env),
            run,
            templates,
            lines,
            received,
            cancel,
            _cancel: cancel_tx,
        }
    }

    fn ctx(&self) -> StepContext<'_> {
        StepContext {
            step_id: "incident",
            root: &self.project.root,
            templates: &self.templates,
            timeout: None,
            cancel: self.cancel.clone(),
            lines: self.lines.clone(),
            reads_step_output: false,
            config: &self.project.config,
            run: &self.run,
        }
    }

    /// The context of a step whose templates read an earlier step's output.
    fn ctx_reading_output(&self) -> StepContext<'_> {
        StepContext {
            reads_step_output: true,
            ..self.ctx()
        }
    }

    fn progress(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.received.try_recv() {
            lines.push(line.text);
        }
        lines
    }
}

fn action() -> IncidentIssueAction {
    IncidentIssueAction {
        title: "Production rollback: {{ component }}".into(),
        body: "Rollback reason: {{ run.reason }}\nRollback time: {{ run.started_at }}\nImpact: {{ params.impact }}\nRun: {{ run.id }}".into(),
        labels: strings(&["component:{{ component }}", "rollback", "incident"]),
    }
}

#[tokio::test]
async fn action_local_preflight_renders_and_creates_nothing() {
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG);
    let step = Step::new(&env, "r-1", true);
    let preflight = action().preflight(&step.ctx()).await;
    assert_eq!(preflight.verdict, Verdict::Ready, "{preflight:?}");
    assert_eq!(preflight.fidelity, Fidelity::Checked);
    assert_eq!(
        preflight.reason,
        "folder .release/incidents can be created (its parent is writable)"
    );
    assert_eq!(
        preflight.would,
        "open issue \"Production rollback: api\" with labels component:api, rollback, incident \
         in the local tracker (.release/incidents) (or reuse the one this run's step opened)\n  body:\n    \
         Rollback reason: 5xx spike\n    Rollback time: 2025-03-01T10:00:00Z\n    Impact: checkout down\n    Run: r-1"
    );
    assert!(
        !env.join(".release").exists(),
        "a preflight creates nothing"
    );
}

#[tokio::test]
async fn action_local_execute_writes_the_file_and_a_resumed_run_reuses_it() {
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG);
    let mut step = Step::new(&env, "r-1", false);
    let execution = action().execute(&step.ctx()).await;
    assert_eq!(execution.outcome, Outcome::Succeeded, "{execution:?}");
    let path = env.join(".release/incidents/0001-production-rollback-api.md");
    assert_eq!(execution.stdout, path.display().to_string());
    assert_eq!(
        step.progress(),
        ["wrote incident #1: .release/incidents/0001-production-rollback-api.md"]
    );
    let text = env.read(".release/incidents/0001-production-rollback-api.md");
    for expected in [
        "title: \"Production rollback: api\"\n",
        "labels: [\"component:api\", \"rollback\", \"incident\"]\n",
        "state: open\n",
        "run: \"r-1\"\n",
        "Rollback reason: 5xx spike\nRollback time: 2025-03-01T10:00:00Z\nImpact: checkout down\nRun: r-1\n",
        "<!-- release:run=r-1 step=incident -->",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }

    let again = action().execute(&step.ctx()).await;
    assert_eq!(again.stdout, execution.stdout);
    assert_eq!(
        step.progress(),
        [
            "reusing incident #1, written earlier by this run: .release/incidents/0001-production-rollback-api.md"
        ]
    );
    let other = Step::new(&env, "r-2", false);
    let second = action().execute(&other.ctx()).await;
    assert!(
        second.stdout.ends_with("0002-production-rollback-api.md"),
        "{second:?}"
    );
    assert_eq!(
        incident_files(&env),
        [
            "0001-production-rollback-api.md",
            "0002-production-rollback-api.md"
        ]
    );
}

#[tokio::test]
async fn action_github_without_token_is_blocked_naming_the_variable() {
    let env = TestEnv::new();
    env.write(
        "release.yaml",
        "version: 1\nincidents: github\ngithub: { repo: octo/shop, api_url: \"http://127.0.0.1:9\", token_env: RELEASE_TEST_TOKEN_NEVER_SET }\ncomponents:\n  api: {}\n",
    );
    let step = Step::new(&env, "r-1", true);
    let preflight = action().preflight(&step.ctx()).await;
    assert_eq!(preflight.verdict, Verdict::Blocked);
    assert!(
        preflight
            .reason
            .contains("RELEASE_TEST_TOKEN_NEVER_SET is not set"),
        "{preflight:?}"
    );
    assert!(
        preflight.would.contains("Production rollback: api"),
        "{preflight:?}"
    );
    let execution = action().execute(&step.ctx()).await;
    assert_eq!(execution.outcome, Outcome::Failed);
    assert!(
        execution
            .error
            .unwrap()
            .contains("RELEASE_TEST_TOKEN_NEVER_SET")
    );
}

#[tokio::test]
async fn action_with_a_broken_template_is_blocked() {
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG);
    let step = Step::new(&env, "r-1", true);
    let broken = IncidentIssueAction {
        title: "{{ nope }}".into(),
        ..action()
    };
    let preflight = broken.preflight(&step.ctx()).await;
    assert_eq!(preflight.verdict, Verdict::Blocked);
    assert!(
        preflight.reason.starts_with("cannot render the title"),
        "{preflight:?}"
    );
}

#[tokio::test]
async fn action_reading_step_output_still_checks_the_tracker() {
    // Writable folder: the tracker is checked, the text it cannot know only warns.
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG);
    let step = Step::new(&env, "r-1", true);
    let preflight = action().preflight(&step.ctx_reading_output()).await;
    assert_eq!(
        (preflight.verdict, preflight.fidelity),
        (Verdict::Warn, Fidelity::Unverifiable),
        "{preflight:?}"
    );
    assert!(
        preflight
            .reason
            .starts_with("folder .release/incidents can be created")
            && preflight.reason.contains("earlier step's output"),
        "{preflight:?}"
    );
    assert!(
        !env.join(".release").exists(),
        "a preflight creates nothing"
    );

    // A folder that cannot be created blocks.
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG)
        .write(".release", "a file, not a folder");
    let step = Step::new(&env, "r-1", true);
    let preflight = action().preflight(&step.ctx_reading_output()).await;
    assert_eq!(preflight.verdict, Verdict::Blocked, "{preflight:?}");
    assert!(
        preflight.reason.contains("is not a folder"),
        "{preflight:?}"
    );

    // So does a token that is not set.
    let env = TestEnv::new();
    env.write(
        "release.yaml",
        "version: 1\nincidents: github\ngithub: { repo: octo/shop, api_url: \"http://127.0.0.1:9\", token_env: RELEASE_TEST_TOKEN_NEVER_SET }\ncomponents:\n  api: {}\n",
    );
    let step = Step::new(&env, "r-1", true);
    let preflight = action().preflight(&step.ctx_reading_output()).await;
    assert_eq!(preflight.verdict, Verdict::Blocked, "{preflight:?}");
    assert!(
        preflight
            .reason
            .contains("RELEASE_TEST_TOKEN_NEVER_SET is not set"),
        "{preflight:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Through the binary
// ---------------------------------------------------------------------------------------

const RUNBOOK: &str = r#"name: incident
params:
  impact: { default: "unknown" }
steps:
  - id: incident
    incident_issue:
      title: "Production rollback: {{ component }}"
      labels: ["component:{{ component }}", rollback, incident]
      body: "Rollback reason: {{ run.reason }}\nImpact: {{ params.impact }}\nRun: {{ run.id }}"
"#;

fn github_config(api_url: &str) -> String {
    format!(
        "version: 1\nincidents: github\ngithub: {{ repo: {REPO}, api_url: \"{api_url}\", token_env: GITHUB_TOKEN }}\ncomponents:\n  api: {{}}\n"
    )
}

/// Runs `release ARGS` as the harness does, with extra environment variables, off the
/// async runtime (the fake server answers meanwhile).
async fn release_with_env(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut command = Command::cargo_bin("release").expect("release binary");
    command
        .current_dir(env.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.join(".home"))
        .env("USER", "tester")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("NO_COLOR", "1")
        .env("TZ", "UTC")
        .args(args)
        .stdin(Stdio::null());
    for (key, value) in vars {
        command.env(key, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("run release"))
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn audit_log(env: &TestEnv) -> String {
    std::fs::read_to_string(env.join(".release/audit.jsonl")).unwrap_or_default()
}

fn assert_no_token(env: &TestEnv, run: &Run) {
    assert!(
        !run.stdout.contains(TOKEN),
        "token on stdout\n{}",
        run.transcript()
    );
    assert!(
        !run.stderr.contains(TOKEN),
        "token on stderr\n{}",
        run.transcript()
    );
    assert!(!audit_log(env).contains(TOKEN), "token in the audit log");
}

const DRY_RUN: &[&str] = &[
    "run",
    "rb.yaml",
    "--component",
    "api",
    "--stage",
    "production",
    "--dry-run",
];
const REAL_RUN: &[&str] = &[
    "run",
    "rb.yaml",
    "--component",
    "api",
    "--stage",
    "production",
    "--yes",
    "--reason",
    "5xx spike",
];

#[tokio::test]
async fn dry_run_local_shows_the_issue_and_creates_nothing() {
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG)
        .write("rb.yaml", RUNBOOK);
    let run = release_with_env(&env, DRY_RUN, &[]).await;
    run.assert_code(0)
        .assert_stdout_contains("Production rollback: api")
        .assert_stdout_contains("component:api, rollback, incident")
        .assert_stdout_contains("Impact: unknown");
    assert!(
        !env.join(".release/incidents").exists(),
        "{}",
        run.transcript()
    );
    let log = audit_log(&env);
    assert!(
        log.contains("\"verdict\":\"ready\"") && log.contains("\"fidelity\":\"checked\""),
        "{log}"
    );
}

#[tokio::test]
async fn dry_run_github_reads_the_repository_once_and_opens_nothing() {
    let github = Github::start().await;
    let env = TestEnv::new();
    env.write("release.yaml", &github_config(&github.api_url()))
        .write("rb.yaml", RUNBOOK);
    let run = release_with_env(&env, DRY_RUN, &[("GITHUB_TOKEN", TOKEN)]).await;
    run.assert_code(0)
        .assert_stdout_contains("repository octo/shop is readable")
        .assert_stdout_contains("Production rollback: api");
    let requests = github.all_requests().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].url.path()),
        ("GET", "/repos/octo/shop")
    );
    assert_eq!(authorization(&requests[0]), format!("Bearer {TOKEN}"));
    assert!(github.issues().is_empty());
    assert_no_token(&env, &run);
}

#[tokio::test]
async fn dry_run_github_without_token_is_blocked() {
    let github = Github::start().await;
    let env = TestEnv::new();
    env.write("release.yaml", &github_config(&github.api_url()))
        .write("rb.yaml", RUNBOOK);
    let run = release_with_env(&env, DRY_RUN, &[]).await;
    run.assert_code(1)
        .assert_stdout_contains("GITHUB_TOKEN is not set");
    assert!(github.all_requests().await.is_empty());
}

#[tokio::test]
async fn dry_run_github_with_a_refused_token_is_blocked_without_showing_it() {
    let github = Github::start().await;
    let env = TestEnv::new();
    env.write("release.yaml", &github_config(&github.api_url()))
        .write("rb.yaml", RUNBOOK);
    let wrong = "ghp_SomeOtherSecretToken_42";
    let run = release_with_env(&env, DRY_RUN, &[("GITHUB_TOKEN", wrong)]).await;
    run.assert_code(1)
        .assert_stdout_contains("the token in GITHUB_TOKEN was refused");
    for text in [&run.stdout, &run.stderr, &audit_log(&env)] {
        assert!(!text.contains(wrong), "{}", run.transcript());
    }
}

#[tokio::test]
async fn real_run_local_writes_one_incident_file() {
    let env = TestEnv::new();
    env.write("release.yaml", LOCAL_CONFIG)
        .write("rb.yaml", RUNBOOK);
    let run = release_with_env(&env, REAL_RUN, &[]).await;
    run.assert_code(0);
    assert_eq!(
        incident_files(&env),
        ["0001-production-rollback-api.md"],
        "{}",
        run.transcript()
    );
    let text = env.read(".release/incidents/0001-production-rollback-api.md");
    assert!(text.contains("Rollback reason: 5xx spike"), "{text}");
    assert!(text.contains("<!-- release:run="), "{text}");
    run.assert_stderr_contains(
        "wrote incident #1: .release/incidents/0001-production-rollback-api.md",
    );
}

#[tokio::test]
async fn real_run_github_opens_one_issue_without_showing_the_token() {
    let github = Github::start().await;
    let env = TestEnv::new();
    env.write("release.yaml", &github_config(&github.api_url()))
        .write("rb.yaml", RUNBOOK);
    let run = release_with_env(&env, REAL_RUN, &[("GITHUB_TOKEN", TOKEN)]).await;
    run.assert_code(0);
    let posts = github.requests("POST", "/repos/octo/shop/issues").await;
    assert_eq!(posts.len(), 1, "{}", run.transcript());
    let sent: Value = posts[0].body_json().unwrap();
    assert_eq!(sent["title"], "Production rollback: api");
    assert_eq!(
        sent["labels"],
        json!(["component:api", "rollback", "incident"])
    );
    let body = sent["body"].as_str().unwrap();
    assert!(
        body.starts_with("Rollback reason: 5xx spike\nImpact: unknown\nRun: r"),
        "{body}"
    );
    assert!(body.contains("<!-- release:run="), "{body}");
    run.assert_stderr_contains(
        "opened issue #1 in octo/shop: https://github.example.com/octo/shop/issues/1",
    );
    assert_no_token(&env, &run);
}

/// An incident whose body reads the output of the step before it.
const RUNBOOK_READING_OUTPUT: &str = r#"name: incident
steps:
  - id: prev
    run: [echo, hello]
  - id: incident
    incident_issue:
      title: "Rollback: {{ component }}"
      labels: [incident]
      body: "prev said: {{ steps.prev.stdout }}"
"#;

#[tokio::test]
async fn dry_run_reading_step_output_still_checks_the_token_and_the_repository() {
    let github = Github::start().await;
    let env = TestEnv::new();
    env.write("release.yaml", &github_config(&github.api_url()))
        .write("rb.yaml", RUNBOOK_READING_OUTPUT);
    let run = release_with_env(&env, DRY_RUN, &[]).await;
    run.assert_code(1)
        .assert_stdout_contains("GITHUB_TOKEN is not set");
    assert!(github.all_requests().await.is_empty());

    let run = release_with_env(&env, DRY_RUN, &[("GITHUB_TOKEN", TOKEN)]).await;
    run.assert_code(0)
        .assert_stdout_contains("repository octo/shop is readable")
        .assert_stdout_contains("earlier step's output");
    let requests = github.all_requests().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].url.path()),
        ("GET", "/repos/octo/shop")
    );
    assert!(github.issues().is_empty());
    let log = audit_log(&env);
    assert!(
        log.contains("\"verdict\":\"warn\"") && log.contains("\"fidelity\":\"unverifiable\""),
        "{log}"
    );
    assert_no_token(&env, &run);
}

/// A project whose `api` fails a gate for staging (no README.md), with GitHub issues.
fn github_gates_config(api_url: &str) -> String {
    format!(
        "{}gates:\n  staging:\n    - {{ id: docs, file_exists: [README.md] }}\n",
        github_config(api_url)
    )
}

const FILE_BLOCKERS: &[&str] = &["gates", "api", "--stage", "staging", "--file-blockers"];

/// The open issues of the fake carrying the blocker marker of api for staging.
fn open_blockers(github: &Github) -> Vec<u64> {
    github
        .issues()
        .iter()
        .filter(|i| i["state"] == "open")
        .filter(|i| {
            i["body"]
                .as_str()
                .unwrap_or_default()
                .ends_with("<!-- release:blocker=api/staging -->\n")
        })
        .map(|i| i["number"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn blockers_filed_at_once_on_github_leave_one_issue_open() {
    let github = Github::start().await;
    // Slow listings: the three processes all look before any of them opens.
    github.state.lock().unwrap().list_delay = Some(std::time::Duration::from_millis(400));
    let env = TestEnv::new();
    env.write("release.yaml", &github_gates_config(&github.api_url()));
    let vars = [("GITHUB_TOKEN", TOKEN)];
    let (a, b, c) = tokio::join!(
        release_with_env(&env, FILE_BLOCKERS, &vars),
        release_with_env(&env, FILE_BLOCKERS, &vars),
        release_with_env(&env, FILE_BLOCKERS, &vars),
    );
    for run in [&a, &b, &c] {
        run.assert_code(1);
        assert!(
            run.stdout.contains("blocker issue: opened #1 ")
                || run.stdout.contains("blocker issue: updated #1 "),
            "{}",
            run.transcript()
        );
        assert_no_token(&env, run);
    }
    assert_eq!(open_blockers(&github), [1], "{:#?}", github.issues());
    // The duplicates (if the race opened any) are closed, saying which issue they duplicate.
    let state = github.state.lock().unwrap();
    for issue in state.issues.iter().filter(|i| i["state"] == "closed") {
        let number = usize::try_from(issue["number"].as_u64().unwrap()).unwrap();
        assert!(
            state
                .comments
                .iter()
                .any(|(n, text)| *n == number && text == "Duplicate of #1"),
            "{:?}",
            state.comments
        );
    }
}

#[tokio::test]
async fn passing_gates_close_every_blocker_carrying_the_marker_on_github() {
    let github = Github::start().await;
    {
        // Two blockers for the same component and stage, filed at once by an older version.
        let mut state = github.state.lock().unwrap();
        let labels = strings(&[
            "component:api",
            "target:staging",
            "blocker",
            "quality-gate-failure",
        ]);
        for n in 1..=2 {
            let issue = FakeGithub::issue(
                &state.base,
                n,
                "Quality gates block api → staging",
                "Failing\n\n<!-- release:blocker=api/staging -->\n",
                &labels,
            );
            state.issues.push(issue);
        }
    }
    let env = TestEnv::new();
    env.write("release.yaml", &github_gates_config(&github.api_url()))
        .write("README.md", "# api\n");
    let run = release_with_env(&env, FILE_BLOCKERS, &[("GITHUB_TOKEN", TOKEN)]).await;
    run.assert_code(0).assert_stdout_contains(
        "blocker issue: closed #1 https://github.example.com/octo/shop/issues/1, \
         #2 https://github.example.com/octo/shop/issues/2 (the gates pass now)",
    );
    assert!(open_blockers(&github).is_empty(), "{:#?}", github.issues());
}

/// A step waiting for the local tracker's lock (another process opening an issue) still
/// keeps to its `timeout`: the wait happens off the runtime, whose timers end the step.
#[test]
fn a_held_tracker_lock_does_not_outlast_the_step_timeout() {
    let env = TestEnv::initialized();
    env.write(
        "rb/incident.yaml",
        "steps:\n  - id: incident\n    timeout: 1s\n    incident_issue: { title: \"Rollback: {{ component }}\", body: b, labels: [incident] }\n",
    );
    std::fs::create_dir_all(env.join(".release/incidents")).unwrap();
    let lock = std::fs::File::create(env.join(".release/incidents/.lock")).unwrap();
    lock.lock().unwrap();
    let started = std::time::Instant::now();
    let run = env.release(&[
        "run",
        "rb/incident.yaml",
        "--component",
        "orchestration",
        "--stage",
        "staging",
        "--reason",
        "r",
    ]);
    let took = started.elapsed();
    lock.unlock().unwrap();
    run.assert_code(1);
    assert!(
        took < std::time::Duration::from_secs(5),
        "{took:?}\n{}",
        run.transcript()
    );
}
