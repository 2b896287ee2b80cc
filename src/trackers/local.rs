//! The local tracker: one Markdown file per issue under `.release/incidents/`, named
//! `<number>-<title slug>.md`, with YAML front matter (title, labels, state, run id,
//! created time) and the body below it, the marker last:
//!
//! ```text
//! ---
//! title: "Production rollback: api"
//! labels: ["component:api", "rollback", "incident"]
//! state: open
//! run: "20250101T120000Z-3f2a"
//! created: "2025-01-01T12:00:03Z"
//! ---
//!
//! Rollback reason: 5xx spike
//!
//! <!-- release:run=20250101T120000Z-3f2a step=incident -->
//! ```
//!
//! Values are written as YAML double-quoted strings (a run id is never taken for a number or
//! a date), with `\uXXXX` for every character YAML refuses raw, so that every file written
//! reads back; files people edit by hand are read with the same YAML parser.
//! Every write goes to a temporary file first, then is renamed into place, so a reader
//! never sees half a file; every write is made under a lock (`.lock` in the folder), so two
//! runs opening issues at once never share a number, and looking for an issue's marker then
//! opening it is one step (two runs filing the same blocker at once open one issue).

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Checked, Issue, IssueState, NewIssue, Opened, compose_body, split_body};

/// The folder of the local tracker, relative to the project root.
pub const FOLDER: &str = ".release/incidents";

#[derive(Clone, Debug)]
pub struct LocalTracker {
    dir: PathBuf,
    /// The folder as people see it: relative to the project root when it is the default.
    shown: PathBuf,
}

/// The front matter as read (hand-edited files included: unknown keys are kept out of the
/// way, not refused).
#[derive(Clone, Debug, Default, Deserialize)]
struct FrontMatter {
    title: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    state: IssueState,
    run: Option<String>,
    created: Option<String>,
    updated: Option<String>,
    closed: Option<String>,
}

/// One issue file: its path, number, front matter and stored body (marker included).
#[derive(Clone, Debug)]
struct Record {
    path: PathBuf,
    number: u64,
    front: FrontMatter,
    stored_body: String,
}

impl Record {
    fn to_issue(&self) -> Issue {
        let (body, marker) = split_body(&self.stored_body);
        Issue {
            number: self.number,
            title: self.front.title.clone(),
            body,
            marker,
            labels: self.front.labels.clone(),
            state: self.front.state,
            location: self.path.display().to_string(),
            created_at: self.front.created.clone(),
        }
    }

    fn render(&self) -> String {
        let labels: Vec<String> = self.front.labels.iter().map(|l| quote(l)).collect();
        let mut text = String::from("---\n");
        let _ = writeln!(text, "title: {}", quote(&self.front.title));
        let _ = writeln!(text, "labels: [{}]", labels.join(", "));
        let _ = writeln!(text, "state: {}", self.front.state.as_str());
        for (key, value) in [
            ("run", &self.front.run),
            ("created", &self.front.created),
            ("updated", &self.front.updated),
            ("closed", &self.front.closed),
        ] {
            if let Some(value) = value {
                let _ = writeln!(text, "{key}: {}", quote(value));
            }
        }
        text.push_str("---\n\n");
        text.push_str(&self.stored_body);
        text
    }
}

/// `value` as a YAML double-quoted scalar on one line. Every character YAML does not allow
/// unescaped (controls, DEL, C1 controls, U+FFFE/U+FFFF) and every line break YAML 1.1
/// knows (NEL, U+2028/U+2029) is written `\uXXXX`, and the byte order mark too: whatever a
/// title or label holds, the file reads back.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            '\0'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The number a file name starts with: `0012-title.md` → 12.
fn number_of(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".md")?;
    let digits = stem.split('-').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A file-name-safe form of a title: lowercase ASCII letters and digits joined by dashes.
fn slug(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "issue".into()
    } else {
        slug.into()
    }
}

/// Splits a file into its front matter and what follows it.
fn parse(text: &str) -> Result<(FrontMatter, String), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or("it does not start with front matter (`---`)")?;
    let mut offset = 0;
    let mut end = None;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let (yaml_end, body_start) = end.ok_or("its front matter has no closing `---`")?;
    let front: FrontMatter = serde_saphyr::from_str(&rest[..yaml_end])
        .map_err(|e| format!("its front matter is not valid: {e}"))?;
    let body = rest[body_start..]
        .strip_prefix("\r\n")
        .or_else(|| rest[body_start..].strip_prefix('\n'))
        .unwrap_or(&rest[body_start..]);
    Ok((front, body.to_owned()))
}

/// True when this process may create files in `dir` (the permission bits against the
/// effective user and groups; a read-only mount or an ACL is only found when writing).
fn can_create_in(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return true;
    }
    let mode = meta.mode();
    if meta.uid() == uid.as_raw() {
        return mode & 0o300 == 0o300;
    }
    let gid = meta.gid();
    let in_group = rustix::process::getegid().as_raw() == gid
        || rustix::process::getgroups()
            .is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid));
    if in_group {
        mode & 0o030 == 0o030
    } else {
        mode & 0o003 == 0o003
    }
}

impl LocalTracker {
    /// The tracker of the project rooted at `root`: `<root>/.release/incidents/`.
    pub fn in_project(root: &Path) -> Self {
        Self {
            dir: root.join(FOLDER),
            shown: PathBuf::from(FOLDER),
        }
    }

    /// A tracker keeping its files in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            shown: dir.clone(),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn describe(&self) -> String {
        format!("the local tracker ({})", self.shown.display())
    }

    /// The folder is writable, or can be created: checked without creating anything.
    pub fn check(&self) -> Result<Checked, String> {
        let (dir, shown) = (&self.dir, self.shown.display());
        if dir.exists() {
            if !dir.is_dir() {
                return Err(format!("{shown} exists and is not a folder"));
            }
            if !can_create_in(dir) {
                return Err(format!("folder {shown} is not writable"));
            }
            return Ok(Checked {
                summary: format!("folder {shown} is writable"),
                warning: None,
            });
        }
        let Some(existing) = dir.ancestors().skip(1).find(|a| a.exists()) else {
            return Err(format!("cannot create {shown}: no parent folder exists"));
        };
        if !existing.is_dir() {
            return Err(format!(
                "cannot create {shown}: {} is not a folder",
                existing.display()
            ));
        }
        if !can_create_in(existing) {
            return Err(format!(
                "cannot create {shown}: {} is not writable",
                existing.display()
            ));
        }
        Ok(Checked {
            summary: format!("folder {shown} can be created (its parent is writable)"),
            warning: None,
        })
    }

    /// Every issue file, by number. Unreadable files are errors when `strict`, skipped
    /// otherwise (with the raw text, so that a marker in a broken file is still noticed).
    fn records(&self, strict: bool) -> Result<Vec<(Option<Record>, String, PathBuf)>, String> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot read folder {}: {e}", self.dir.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| format!("cannot read folder {}: {e}", self.dir.display()))?;
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(number_of) else {
                continue;
            };
            let path = entry.path();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if strict => return Err(format!("cannot read {}: {e}", path.display())),
                Err(_) => continue,
            };
            match parse(&text) {
                Ok((front, stored_body)) => found.push((
                    Some(Record {
                        path: path.clone(),
                        number,
                        front,
                        stored_body,
                    }),
                    text,
                    path,
                )),
                Err(e) if strict => return Err(format!("cannot read {}: {e}", path.display())),
                Err(_) => found.push((None, text, path)),
            }
        }
        found.sort_by_key(|(r, _, p)| (r.as_ref().map_or(0, |r| r.number), p.clone()));
        Ok(found)
    }

    fn record(&self, number: u64) -> Result<Record, String> {
        self.records(false)?
            .into_iter()
            .find_map(|(r, _, _)| r.filter(|r| r.number == number))
            .ok_or_else(|| format!("issue #{number} is not in {}", self.dir.display()))
    }

    /// The open issues whose marker (the last marker line of their body, as GitHub's are
    /// read) is `marker`, oldest first: a body that only quotes a marker, e.g. an incident
    /// whose reason cites a blocker's, is not taken for that issue.
    pub fn find_all_open_with_marker(&self, marker: &str) -> Result<Vec<Issue>, String> {
        let carries = |stored: &str| split_body(stored).1.as_deref() == Some(marker);
        let mut found = Vec::new();
        for (record, text, path) in self.records(false)? {
            match record {
                Some(r) if r.front.state == IssueState::Open && carries(&r.stored_body) => {
                    found.push(r.to_issue());
                }
                None if carries(&text) => {
                    return Err(format!(
                        "{} carries the marker looked for ({marker}) but cannot be read: fix or remove it",
                        path.display()
                    ));
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// The oldest open issue carrying `marker` (see [`Self::find_all_open_with_marker`]).
    pub fn find_open_with_marker(&self, marker: &str) -> Result<Option<Issue>, String> {
        Ok(self.find_all_open_with_marker(marker)?.into_iter().next())
    }

    pub fn list_open_with_labels(&self, labels: &[String]) -> Result<Vec<Issue>, String> {
        Ok(self
            .records(true)?
            .into_iter()
            .filter_map(|(r, _, _)| r)
            .filter(|r| r.front.state == IssueState::Open)
            .map(|r| r.to_issue())
            .filter(|issue| issue.has_labels(labels))
            .collect())
    }

    /// Writes `text` to a temporary file in the folder and returns its path.
    fn write_temporary(&self, text: &str) -> Result<PathBuf, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temporary = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .map_err(|e| {
                let _ = std::fs::remove_file(&temporary);
                format!("cannot write in {}: {e}", self.dir.display())
            })?;
        Ok(temporary)
    }

    /// Runs `work` holding the folder's lock (`.lock`), which every write takes: two runs
    /// opening issues at once never share a number, and a lookup followed by an open is
    /// one step, so two runs filing the same blocker at once open one issue.
    fn locked<T>(&self, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create folder {}: {e}", self.dir.display()))?;
        let lock_path = self.dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|file| file.lock().map(|()| file))
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let result = work();
        drop(lock);
        result
    }

    pub fn open(&self, new: &NewIssue) -> Result<Issue, String> {
        self.locked(|| self.open_locked(new))
    }

    /// The open issue carrying the new issue's marker if there is one, else a new issue:
    /// both under the folder's lock, so that processes doing this at once open one issue.
    pub fn open_or_reuse(&self, new: &NewIssue) -> Result<(Issue, Opened), String> {
        self.locked(|| match self.find_open_with_marker(&new.marker)? {
            Some(found) => Ok((found, Opened::Reused)),
            None => self.open_locked(new).map(|issue| (issue, Opened::New)),
        })
    }

    /// Opens an issue; the caller holds the lock.
    fn open_locked(&self, new: &NewIssue) -> Result<Issue, String> {
        let mut record = Record {
            path: PathBuf::new(),
            number: 0,
            front: FrontMatter {
                title: new.title.clone(),
                labels: new.labels.clone(),
                state: IssueState::Open,
                run: (!new.run_id.is_empty()).then(|| new.run_id.clone()),
                created: Some(now()),
                updated: None,
                closed: None,
            },
            stored_body: compose_body(&new.body, (!new.marker.is_empty()).then_some(&*new.marker)),
        };
        let temporary = self.write_temporary(&record.render())?;
        let result = self.records(false).and_then(|records| {
            let mut number = records
                .iter()
                .filter_map(|(r, _, p)| {
                    r.as_ref()
                        .map(|r| r.number)
                        .or_else(|| p.file_name().and_then(|n| n.to_str()).and_then(number_of))
                })
                .max()
                .unwrap_or(0)
                + 1;
            let slug = slug(&new.title);
            let mut path = self.dir.join(format!("{number:04}-{slug}.md"));
            while path.exists() {
                number += 1;
                path = self.dir.join(format!("{number:04}-{slug}.md"));
            }
            std::fs::rename(&temporary, &path)
                .map(|()| (path.clone(), number))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        });
        let _ = std::fs::remove_file(&temporary);
        let (path, number) = result?;
        record.path = path;
        record.number = number;
        Ok(record.to_issue())
    }

    /// Rewrites an issue's file through a temporary file renamed over it.
    fn rewrite(&self, record: &Record) -> Result<(), String> {
        let temporary = self.write_temporary(&record.render())?;
        std::fs::rename(&temporary, &record.path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!("cannot write {}: {e}", record.path.display())
        })
    }

    pub fn update(&self, issue: &Issue, body: &str) -> Result<Issue, String> {
        self.locked(|| {
            let mut record = self.record(issue.number)?;
            let (_, marker) = split_body(&record.stored_body);
            record.stored_body = compose_body(body, marker.as_deref());
            record.front.updated = Some(now());
            self.rewrite(&record)?;
            Ok(record.to_issue())
        })
    }

    pub fn close(&self, issue: &Issue) -> Result<Issue, String> {
        self.locked(|| {
            let mut record = self.record(issue.number)?;
            if record.front.state == IssueState::Closed {
                return Ok(record.to_issue());
            }
            record.front.state = IssueState::Closed;
            record.front.closed = Some(now());
            self.rewrite(&record)?;
            Ok(record.to_issue())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trackers::run_marker;

    fn new_issue(title: &str, labels: &[&str], run: &str) -> NewIssue {
        NewIssue {
            title: title.into(),
            body: "Reason: 5xx spike\nImpact: \"checkout\"".into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            marker: run_marker(run, "incident"),
            run_id: run.into(),
        }
    }

    fn labels(list: &[&str]) -> Vec<String> {
        list.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn an_issue_is_a_markdown_file_with_front_matter() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let issue = tracker
            .open(&new_issue(
                "Production rollback: api",
                &["component:api", "rollback"],
                "r-1",
            ))
            .unwrap();
        assert_eq!(issue.number, 1);
        let path = dir
            .path()
            .join(".release/incidents/0001-production-rollback-api.md");
        assert_eq!(issue.location, path.display().to_string());
        let text = std::fs::read_to_string(&path).unwrap();
        let created = issue.created_at.clone().unwrap();
        assert_eq!(
            text,
            format!(
                "---\ntitle: \"Production rollback: api\"\nlabels: [\"component:api\", \"rollback\"]\n\
                 state: open\nrun: \"r-1\"\ncreated: \"{created}\"\n---\n\n\
                 Reason: 5xx spike\nImpact: \"checkout\"\n\n<!-- release:run=r-1 step=incident -->\n"
            )
        );
        assert_eq!(issue.body, "Reason: 5xx spike\nImpact: \"checkout\"");
        assert_eq!(
            issue.marker.as_deref(),
            Some("<!-- release:run=r-1 step=incident -->")
        );
        // Nothing else is left in the folder (no temporary file), but the lock.
        let mut names: Vec<String> = std::fs::read_dir(tracker.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".lock", "0001-production-rollback-api.md"]);
    }

    #[test]
    fn the_marker_finds_the_open_issue_of_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("r-1", "incident"))
                .unwrap(),
            None
        );
        let first = tracker.open(&new_issue("A", &["incident"], "r-1")).unwrap();
        let second = tracker.open(&new_issue("B", &["incident"], "r-2")).unwrap();
        assert_eq!(second.number, 2);
        let found = tracker
            .find_open_with_marker(&run_marker("r-1", "incident"))
            .unwrap();
        assert_eq!(found, Some(first.clone()));
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("r-1", "other"))
                .unwrap(),
            None
        );
        tracker.close(&first).unwrap();
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("r-1", "incident"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn lists_open_issues_by_labels_and_closes_them() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        assert!(
            tracker
                .list_open_with_labels(&labels(&["critical"]))
                .unwrap()
                .is_empty()
        );
        let a = tracker
            .open(&new_issue("A", &["critical", "component:api"], "r-1"))
            .unwrap();
        let b = tracker
            .open(&new_issue("B", &["Critical", "component:web"], "r-2"))
            .unwrap();
        tracker
            .open(&new_issue("C", &["minor", "component:api"], "r-3"))
            .unwrap();
        let numbers = |issues: Vec<Issue>| issues.iter().map(|i| i.number).collect::<Vec<_>>();
        assert_eq!(
            numbers(
                tracker
                    .list_open_with_labels(&labels(&["critical"]))
                    .unwrap()
            ),
            [1, 2]
        );
        assert_eq!(
            numbers(
                tracker
                    .list_open_with_labels(&labels(&["critical", "component:api"]))
                    .unwrap()
            ),
            [1]
        );
        assert_eq!(
            numbers(tracker.list_open_with_labels(&[]).unwrap()),
            [1, 2, 3]
        );
        let closed = tracker.close(&a).unwrap();
        assert_eq!(closed.state, IssueState::Closed);
        assert_eq!(tracker.close(&closed).unwrap().state, IssueState::Closed);
        let text = std::fs::read_to_string(&a.location).unwrap();
        assert!(
            text.contains("\nstate: closed\n") && text.contains("\nclosed: \""),
            "{text}"
        );
        assert_eq!(
            numbers(
                tracker
                    .list_open_with_labels(&labels(&["critical"]))
                    .unwrap()
            ),
            [2]
        );
        // A new issue never reuses a number, even after a close.
        assert_eq!(tracker.open(&new_issue("D", &[], "r-4")).unwrap().number, 4);
        let _ = b;
    }

    #[test]
    fn issues_opened_at_once_get_distinct_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let tracker = tracker.clone();
                std::thread::spawn(move || {
                    tracker
                        .open(&new_issue(&format!("title {i}"), &[], &format!("r-{i}")))
                        .unwrap()
                        .number
                })
            })
            .collect();
        let mut numbers: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn runs_filing_the_same_issue_at_once_open_one() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (tracker, start) = (tracker.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    tracker
                        .open_or_reuse(&new_issue("Blocker", &["blocker"], "same"))
                        .unwrap()
                })
            })
            .collect();
        let results: Vec<(Issue, Opened)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            results
                .iter()
                .filter(|(_, how)| *how == Opened::New)
                .count(),
            1
        );
        assert!(results.iter().all(|(issue, _)| issue.number == 1));
        assert_eq!(tracker.list_open_with_labels(&[]).unwrap().len(), 1);
    }

    #[test]
    fn update_replaces_the_body_and_keeps_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let issue = tracker.open(&new_issue("A", &["blocker"], "r-1")).unwrap();
        let updated = tracker
            .update(&issue, "Still failing: coverage 61%")
            .unwrap();
        assert_eq!(updated.body, "Still failing: coverage 61%");
        assert_eq!(updated.marker, issue.marker);
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("r-1", "incident"))
                .unwrap()
                .map(|i| i.body),
            Some("Still failing: coverage 61%".to_owned())
        );
        let text = std::fs::read_to_string(&issue.location).unwrap();
        assert!(text.contains("\nupdated: \""), "{text}");
    }

    #[test]
    fn a_body_quoting_a_marker_is_not_taken_for_its_issue() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let blocker = crate::trackers::blocker_marker("api", "production");
        for (i, body) in [
            format!("Reason: see {blocker} for the gates"),
            format!("Reason:\n{blocker}"),
        ]
        .into_iter()
        .enumerate()
        {
            tracker
                .open(&NewIssue {
                    body,
                    ..new_issue("Rollback", &["incident"], &format!("r-{i}"))
                })
                .unwrap();
        }
        assert_eq!(tracker.find_open_with_marker(&blocker).unwrap(), None);
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("r-1", "incident"))
                .unwrap()
                .map(|i| i.number),
            Some(2)
        );
        // A broken file that only quotes it is no error either; one that carries it is.
        std::fs::write(
            tracker.dir().join("0003-broken.md"),
            format!("no front matter\n{blocker}\n\n{}\n", run_marker("r-9", "s")),
        )
        .unwrap();
        assert_eq!(tracker.find_open_with_marker(&blocker).unwrap(), None);
        let error = tracker
            .find_open_with_marker(&run_marker("r-9", "s"))
            .unwrap_err();
        assert!(
            error.contains("0003-broken.md") && error.contains("fix or remove it"),
            "{error}"
        );
    }

    #[test]
    fn hand_edited_files_are_read_and_broken_ones_reported() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        std::fs::create_dir_all(tracker.dir()).unwrap();
        std::fs::write(
            tracker.dir().join("0007-by-hand.md"),
            "---\ntitle: Written by hand\nlabels: [critical, component:api]\nstate: open\nowner: ops\n---\nText\n",
        )
        .unwrap();
        std::fs::write(tracker.dir().join("README.txt"), "not an issue").unwrap();
        let issues = tracker
            .list_open_with_labels(&labels(&["critical"]))
            .unwrap();
        assert_eq!(issues.len(), 1);
        assert_eq!(
            (issues[0].number, issues[0].title.as_str()),
            (7, "Written by hand")
        );
        assert_eq!(
            tracker.open(&new_issue("Next", &[], "r")).unwrap().number,
            8
        );

        std::fs::write(tracker.dir().join("0009-broken.md"), "no front matter\n").unwrap();
        let error = tracker
            .list_open_with_labels(&labels(&["critical"]))
            .unwrap_err();
        assert!(
            error.contains("0009-broken.md") && error.contains("front matter"),
            "{error}"
        );
        // Looking for a marker skips files that cannot carry it.
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("zz", "s"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn check_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let checked = tracker.check().unwrap();
        assert!(checked.summary.contains("can be created"), "{checked:?}");
        assert!(!dir.path().join(".release").exists());
        std::fs::create_dir_all(tracker.dir()).unwrap();
        assert!(tracker.check().unwrap().summary.contains("is writable"));

        let file = tempfile::tempdir().unwrap();
        std::fs::write(file.path().join(".release"), "a file").unwrap();
        let error = LocalTracker::in_project(file.path()).check().unwrap_err();
        assert!(error.contains("is not a folder"), "{error}");
    }

    #[test]
    fn titles_and_labels_with_characters_yaml_refuses_raw_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = LocalTracker::in_project(dir.path());
        let title = "db\u{7f}down \u{85}\u{9f}\u{fffe}\u{ffff}\u{feff}\u{2028}\"q\" \\ \t\r\n\0 é";
        let issue = tracker
            .open(&new_issue(title, &["critical", "odd\u{80}label"], "r-1"))
            .unwrap();
        let text = std::fs::read_to_string(&issue.location).unwrap();
        assert!(
            text.contains("title: \"db\\u007Fdown \\u0085\\u009F\\uFFFE\\uFFFF\\uFEFF\\u2028\\\"q\\\" \\\\ \\t\\r\\n\\u0000 é\"\n"),
            "{text}"
        );
        let open = tracker
            .list_open_with_labels(&labels(&["critical"]))
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].title, title);
        assert_eq!(open[0].labels, ["critical", "odd\u{80}label"]);
        assert_eq!(
            tracker
                .find_open_with_marker(&run_marker("r-1", "incident"))
                .unwrap()
                .map(|i| i.number),
            Some(1)
        );
        // Closing rewrites the file: it still reads back.
        tracker.close(&issue).unwrap();
        assert!(tracker.list_open_with_labels(&[]).unwrap().is_empty());
    }

    /// Any characters, control characters included (`any::<String>()` leaves them out).
    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::collection::vec(proptest::prelude::any::<char>(), 0..24)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Whatever a title, a label or a run id holds, the front matter written reads back.
        #[test]
        fn any_front_matter_round_trips(
            title in any_text(),
            labels in proptest::collection::vec(any_text(), 0..4),
            run in any_text(),
        ) {
            let record = Record {
                path: PathBuf::new(),
                number: 1,
                front: FrontMatter {
                    title: title.clone(),
                    labels: labels.clone(),
                    state: IssueState::Open,
                    run: Some(run.clone()),
                    created: Some(now()),
                    updated: None,
                    closed: None,
                },
                stored_body: "text\n".into(),
            };
            let text = record.render();
            let (front, body) = parse(&text).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}"))
            })?;
            proptest::prop_assert_eq!(front.title, title);
            proptest::prop_assert_eq!(front.labels, labels);
            proptest::prop_assert_eq!(front.run, Some(run));
            proptest::prop_assert_eq!(body, "text\n");
        }
    }

    #[test]
    fn titles_become_short_file_names() {
        assert_eq!(
            slug("Production rollback: player_experience!"),
            "production-rollback-player-experience"
        );
        assert_eq!(slug("   "), "issue");
        assert_eq!(slug("Été 2025 — résumé"), "t-2025-r-sum");
        assert!(slug(&"x".repeat(500)).len() <= 60);
        assert_eq!(number_of("0012-a-b.md"), Some(12));
        assert_eq!(number_of("12.md"), Some(12));
        assert_eq!(number_of("notes.md"), None);
        assert_eq!(number_of(".tmp-1-2"), None);
    }
}
