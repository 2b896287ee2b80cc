//! `git_revert` through the binary (SPEC §4, §6): a project that is also a git repository
//! with a bare `origin`, a runbook of one `git_revert` step, real and dry runs. The git CLI
//! builds the histories and checks the results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Run, TestEnv};

/// A project folder that is a git repository on `main`, with a bare `origin` elsewhere.
struct Repo {
    env: TestEnv,
    origin: tempfile::TempDir,
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const RUNBOOK: &str = "rb/revert.yaml";

fn runbook(options: &str) -> String {
    format!(
        "name: revert
description: revert commits
params:
  commit: {{ description: \"commit(s)\", required: true }}
steps:
  - id: revert
    git_revert: {{ commits: \"{{{{ params.commit }}}}\"{options} }}
  - id: shas
    run: [sh, -c, 'printf %s \"$1\" > .release/shas.txt', sh, \"{{{{ steps.revert.stdout }}}}\"]
"
    )
}

/// `run rb/revert.yaml … --set commit=COMMITS [--dry-run]`
fn run_args(commits: &str, dry_run: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        RUNBOOK,
        "--component",
        "orchestration",
        "--stage",
        "staging",
        "--reason",
        "r",
    ]
    .map(String::from)
    .to_vec();
    args.push("--set".into());
    args.push(format!("commit={commits}"));
    if dry_run {
        args.push("--dry-run".into());
    }
    args
}

impl Repo {
    /// `release init`, `git init`, the runbook (with extra `git_revert` keys), and a first
    /// commit pushed to origin.
    fn new(options: &str) -> Self {
        let env = TestEnv::initialized();
        let origin = tempfile::Builder::new()
            .prefix("release-origin-")
            .tempdir()
            .expect("temp dir");
        git_in(origin.path(), &["init", "-q", "--bare", "-b", "main"]);
        let repo = Self { env, origin };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Tester"]);
        repo.git(&["config", "user.email", "tester@example.com"]);
        repo.git(&[
            "remote",
            "add",
            "origin",
            repo.origin_path().to_str().unwrap(),
        ]);
        repo.env.write(RUNBOOK, &runbook(options));
        // The harness's HOME lives in the project folder: keep it out of git too.
        repo.env.write(".gitignore", ".release/\n.home/\n");
        repo.commit_files("project", &[("a.txt", "one\ntwo\nthree\n")]);
        repo.git(&["push", "-q", "origin", "main"]);
        repo
    }

    fn origin_path(&self) -> PathBuf {
        self.origin.path().to_path_buf()
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(self.env.path(), args)
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Writes (or with `None`, deletes) files and commits everything as `subject`.
    fn commit(&self, subject: &str, files: &[(&str, Option<&str>)]) -> String {
        for (path, content) in files {
            match content {
                Some(content) => {
                    self.env.write(path, content);
                }
                None => std::fs::remove_file(self.env.join(path)).expect("remove"),
            }
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", subject]);
        self.head()
    }

    fn commit_files(&self, subject: &str, files: &[(&str, &str)]) -> String {
        let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(*c))).collect();
        self.commit(subject, &files)
    }

    /// `release run rb/revert.yaml … --set commit=COMMITS [--dry-run]`
    fn release(&self, commits: &str, dry_run: bool) -> Run {
        self.release_at(self.env.path(), commits, dry_run, &[])
    }

    /// The same in `dir` (a clone or a worktree of the project), with extra variables.
    fn release_at(&self, dir: &Path, commits: &str, dry_run: bool, vars: &[(&str, &str)]) -> Run {
        let mut command = self.env.command();
        command
            .current_dir(dir)
            .args(run_args(commits, dry_run))
            .envs(vars.iter().copied());
        Run::of(&mut command)
    }

    /// Every ref, HEAD, the index's bytes and every work-tree file's bytes.
    fn state(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        out.insert("refs".into(), self.git(&["for-each-ref"]).into_bytes());
        out.insert(
            "HEAD".into(),
            std::fs::read(self.env.join(".git/HEAD")).expect("HEAD"),
        );
        out.insert(
            "index".into(),
            std::fs::read(self.env.join(".git/index")).expect("index"),
        );
        let root = self.env.path();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                if rel == ".git" || rel == ".release" || rel == ".home" {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(rel, std::fs::read(&path).expect("read"));
                }
            }
        }
        out
    }

    /// The subjects of the last `n` commits, newest first.
    fn subjects(&self, n: usize) -> Vec<String> {
        self.git(&["log", &format!("-{n}"), "--format=%s"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn status(&self) -> String {
        self.git(&["status", "--porcelain"])
    }
}

fn output(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

#[track_caller]
fn assert_mentions(run: &Run, needle: &str) {
    assert!(
        output(run).contains(needle),
        "output lacks {needle:?}\n{}",
        run.transcript()
    );
}

/// A project with three commits after the first: B edits a.txt and adds b.txt, C adds
/// c.txt, D deletes b.txt.
fn with_history(options: &str) -> (Repo, [String; 3]) {
    let repo = Repo::new(options);
    let b = repo.commit_files(
        "edit a, add b",
        &[("a.txt", "one\nTWO\nthree\n"), ("b.txt", "bee\n")],
    );
    let c = repo.commit_files("add c", &[("c.txt", "sea\n")]);
    let d = repo.commit("delete b", &[("b.txt", None)]);
    (repo, [b, c, d])
}

#[test]
fn dry_run_changes_nothing_and_reports_the_files() {
    let (repo, [b, _, d]) = with_history("");
    let before = repo.state();
    let objects_before = repo.git(&["count-objects", "-v"]);
    let run = repo.release(&format!("{b}~1..{d}"), true);
    run.assert_code(0);
    assert_mentions(&run, "simulated");
    assert_mentions(&run, "create 3 revert commits on main");
    assert_mentions(&run, "Revert \"delete b\"");
    assert_mentions(&run, "A b.txt");
    assert_mentions(&run, "D c.txt");
    assert_mentions(&run, "M a.txt, D b.txt");
    assert!(
        before == repo.state(),
        "the dry-run changed a ref, the index or a file"
    );
    assert_eq!(
        objects_before,
        repo.git(&["count-objects", "-v"]),
        "the dry-run wrote objects to .git/objects"
    );
}

#[test]
fn real_revert_creates_revert_commits_newest_first() {
    let (repo, [b, _, d]) = with_history("");
    let run = repo.release(&format!("{b}~1..{d}"), false);
    run.assert_code(0);
    assert_eq!(
        repo.subjects(3),
        [
            "Revert \"edit a, add b\"",
            "Revert \"add c\"",
            "Revert \"delete b\""
        ]
    );
    let message = repo.git(&["log", "-1", "--format=%B", "HEAD~2"]);
    assert_eq!(
        message.trim_end(),
        format!("Revert \"delete b\"\n\nThis reverts commit {d}.")
    );
    let author = repo.git(&["log", "-1", "--format=%an <%ae> / %cn <%ce>"]);
    assert_eq!(
        author.trim(),
        "Tester <tester@example.com> / Tester <tester@example.com>"
    );
    // The branch, index and work tree are at the state before B.
    assert_eq!(repo.env.read("a.txt"), "one\ntwo\nthree\n");
    assert!(!repo.env.join("b.txt").exists() && !repo.env.join("c.txt").exists());
    assert_eq!(repo.status(), "", "index and work tree match the new HEAD");
    assert_eq!(
        repo.git(&["rev-parse", "HEAD^{tree}"]),
        repo.git(&["rev-parse", &format!("{b}~1^{{tree}}")])
    );
    assert!(!repo.env.join(".git/REVERT_HEAD").exists());
    // `steps.revert.stdout`: the new commits, one per line, in the order made (without
    // the last newline, as `$(…)` gives it).
    let made = repo.git(&["rev-list", "--reverse", "HEAD~3..HEAD"]);
    assert_eq!(repo.env.read(".release/shas.txt"), made.trim_end());
}

#[test]
fn squash_makes_one_commit() {
    let (repo, [b, _, d]) = with_history(", squash: true");
    let start = repo.head();
    repo.release(&format!("{b}~1..{d}"), false).assert_code(0);
    assert_eq!(
        repo.git(&["rev-list", "--count", &format!("{start}..HEAD")])
            .trim(),
        "1"
    );
    let message = repo.git(&["log", "-1", "--format=%B"]);
    assert!(message.starts_with("Revert 3 commits\n"), "{message}");
    assert!(message.contains(d.as_str()), "{message}");
    assert_eq!(
        repo.git(&["rev-parse", "HEAD^{tree}"]),
        repo.git(&["rev-parse", &format!("{b}~1^{{tree}}")])
    );
    assert_eq!(repo.status(), "");
}

#[test]
fn a_list_and_a_single_commit_are_accepted() {
    let (repo, [b, c, d]) = with_history("");
    // Given oldest first with a comma and spaces: reverted newest first anyway.
    repo.release(&format!("{c}, {d}"), false).assert_code(0);
    assert_eq!(
        repo.subjects(2),
        ["Revert \"add c\"", "Revert \"delete b\""]
    );
    repo.release(&b[..10], false).assert_code(0);
    assert_eq!(repo.subjects(1), ["Revert \"edit a, add b\""]);
    assert_eq!(repo.status(), "");
}

#[test]
fn push_lands_on_the_bare_remote() {
    let (repo, [_, c, _]) = with_history(", push: true");
    let run = repo.release(&c, false);
    run.assert_code(0);
    let local = repo.head();
    let remote = git_in(&repo.origin_path(), &["rev-parse", "refs/heads/main"]);
    assert_eq!(remote.trim(), local);
    assert_eq!(repo.subjects(1), ["Revert \"add c\""]);
}

#[test]
fn a_relative_remote_is_taken_from_the_work_tree_even_with_dash_c() {
    let (repo, [_, c, _]) = with_history(", push: true");
    // A bare remote inside the project, named by a relative path, as `git remote add
    // origin ./remote.git` writes it.
    git_in(
        repo.env.path(),
        &["init", "-q", "--bare", "-b", "main", "remote.git"],
    );
    std::fs::write(repo.env.join(".git/info/exclude"), "remote.git/\n").unwrap();
    repo.git(&["remote", "set-url", "origin", "./remote.git"]);
    repo.git(&["push", "-q", "origin", "main"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let project = repo.env.path().to_str().unwrap().to_owned();
    // From another folder, with `-C`.
    let from_elsewhere = |dry_run: bool| {
        let mut args = vec!["-C".to_owned(), project.clone()];
        args.extend(run_args(&c, dry_run));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        repo.env.release_in(elsewhere.path(), &args)
    };
    from_elsewhere(true).assert_code(0);
    from_elsewhere(false).assert_code(0);
    let remote = git_in(
        &repo.env.join("remote.git"),
        &["rev-parse", "refs/heads/main"],
    );
    assert_eq!(remote.trim(), repo.head());
    let tracking = repo.git(&["rev-parse", "refs/remotes/origin/main"]);
    assert_eq!(
        tracking.trim(),
        repo.head(),
        "the tracking branch follows the push"
    );

    // A remote folder that does not exist blocks the dry-run, naming it.
    repo.git(&["remote", "set-url", "origin", "./gone.git"]);
    let run = from_elsewhere(true);
    run.assert_code(1);
    assert_mentions(&run, "gone.git, which does not exist");
}

#[test]
fn dry_run_with_push_resolves_the_remote() {
    let (repo, [_, c, _]) = with_history(", push: true");
    let run = repo.release(&c, true);
    run.assert_code(0);
    assert_mentions(&run, "then push main to origin/main");
    assert_mentions(
        &run,
        &format!("remote origin is {}", repo.origin_path().display()),
    );
    repo.git(&["remote", "remove", "origin"]);
    let run = repo.release(&c, true);
    run.assert_code(1);
    assert_mentions(
        &run,
        "remote `origin` (release.yaml's repository.remote) is not configured",
    );
}

/// An SSH remote named by a `Host` alias of `~/.ssh/config` works for git (OpenSSH reads
/// the file) but not for libgit2: the dry-run warns before the real run's push would fail.
#[test]
fn a_host_alias_of_the_ssh_config_is_warned_of() {
    let (repo, [_, c, _]) = with_history(", push: true");
    repo.git(&["remote", "set-url", "origin", "gh-work:org/repo.git"]);
    let plain = repo.release(&c, true);
    plain.assert_code(0);
    assert!(
        !output(&plain).contains("Host entry"),
        "{}",
        plain.transcript()
    );
    repo.env.write(
        ".home/.ssh/config",
        "Host *\n  ServerAliveInterval 30\n\nHost gh-work\n  HostName github.com\n  User git\n  IdentityFile ~/.ssh/work\n",
    );
    let run = repo.release(&c, true);
    run.assert_code(0);
    assert_mentions(
        &run,
        "`gh-work` is a Host entry of ~/.ssh/config (HostName, User, IdentityFile), which libgit2 does not read",
    );
    assert_mentions(&run, "`git remote set-url --push origin USER@HOST:PATH`");
}

#[test]
fn rejected_push_is_reported_and_the_commits_stay_local() {
    let (repo, [_, c, _]) = with_history(", push: true");
    repo.git(&["push", "-q", "origin", "main"]);
    // Someone else pushes first.
    let other = tempfile::tempdir().unwrap();
    let clone = other.path().join("clone");
    git_in(
        other.path(),
        &[
            "clone",
            "-q",
            repo.origin_path().to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    std::fs::write(clone.join("other.txt"), "theirs\n").unwrap();
    git_in(&clone, &["add", "."]);
    git_in(
        &clone,
        &[
            "-c",
            "user.name=O",
            "-c",
            "user.email=o@example.com",
            "commit",
            "-qm",
            "other",
        ],
    );
    git_in(&clone, &["push", "-q", "origin", "main"]);
    let theirs = git_in(&clone, &["rev-parse", "HEAD"]);

    let run = repo.release(&c, false);
    run.assert_code(1);
    assert_mentions(&run, "rejected (non-fast-forward)");
    assert_mentions(&run, "git pull --rebase origin main");
    assert_mentions(&run, "the revert commits stay on local main");
    assert_eq!(
        git_in(&repo.origin_path(), &["rev-parse", "refs/heads/main"]),
        theirs,
        "the remote is untouched"
    );
    assert_eq!(repo.subjects(1), ["Revert \"add c\""]);
}

#[test]
fn dirty_tree_is_refused_naming_the_files() {
    let (repo, [_, c, _]) = with_history("");
    repo.commit_files("add d", &[("d.txt", "dee\n")]);
    repo.env.write("a.txt", "changed\n");
    repo.env.write("c.txt", "staged\n");
    repo.git(&["add", "c.txt"]);
    std::fs::remove_file(repo.env.join("d.txt")).unwrap();
    let before = repo.state();
    for dry_run in [true, false] {
        let run = repo.release(&c, dry_run);
        run.assert_code(1);
        assert_mentions(
            &run,
            "work tree is dirty: a.txt (modified), c.txt (staged), d.txt (deleted); commit or stash them first",
        );
        assert!(
            before == repo.state(),
            "nothing changed (dry-run {dry_run})"
        );
    }
}

/// A lock file of git's (a git process at work, or one a crashed process left) is refused
/// before anything changes, dry and real, naming the file and the command that removes it.
/// libgit2 would find the index's lock only after writing the work tree.
#[test]
fn a_git_lock_file_is_refused_before_anything_changes() {
    let (repo, [_, c, _]) = with_history("");
    for lock in [".git/index.lock", ".git/refs/heads/main.lock"] {
        repo.env.write(lock, "");
        let before = repo.state();
        for dry_run in [true, false] {
            let run = repo.release(&c, dry_run);
            run.assert_code(1);
            assert_mentions(&run, &format!("{lock} exists: another git process"));
            assert_mentions(
                &run,
                &format!("remove it (`rm {}`)", repo.env.join(lock).display()),
            );
            assert!(before == repo.state(), "nothing changed");
        }
        std::fs::remove_file(repo.env.join(lock)).unwrap();
    }
    repo.release(&c, false).assert_code(0);
    assert_eq!(repo.subjects(1), ["Revert \"add c\""]);
}

/// The author and committer come from git's environment variables when they are set (CI
/// jobs often set them instead of git's config), as `git revert` takes them; with no date
/// given, both carry the same time.
#[test]
fn author_and_committer_follow_gits_environment_variables() {
    let (repo, [_, c, d]) = with_history("");
    repo.git(&["config", "--unset", "user.name"]);
    repo.git(&["config", "--unset", "user.email"]);
    let nobody = repo.release(&d, true);
    nobody.assert_code(1);
    assert_mentions(&nobody, "git has no author for the revert commits");
    let vars = [
        ("GIT_AUTHOR_NAME", "Ci Author"),
        ("GIT_AUTHOR_EMAIL", "author@ci.example"),
        ("GIT_AUTHOR_DATE", "1700000000 +0000"),
        ("GIT_COMMITTER_NAME", "Ci Bot"),
        ("GIT_COMMITTER_EMAIL", "bot@ci.example"),
    ];
    repo.release_at(repo.env.path(), &d, false, &vars)
        .assert_code(0);
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae> %at | %cn <%ce>"])
            .trim(),
        "Ci Author <author@ci.example> 1700000000 | Ci Bot <bot@ci.example>"
    );
    // An author alone is not enough: git wants a committer too.
    repo.release_at(repo.env.path(), &c, false, &vars[..2])
        .assert_code(1);
    repo.release_at(
        repo.env.path(),
        &c,
        false,
        &[vars[0], vars[1], vars[3], vars[4]],
    )
    .assert_code(0);
    let times = repo.git(&["log", "-1", "--format=%at %ct"]);
    let (authored, committed) = times.trim().split_once(' ').unwrap();
    assert_eq!(authored, committed, "one time for both");
}

#[test]
fn untracked_and_ignored_files_do_not_count() {
    let (repo, [_, c, _]) = with_history("");
    repo.env.write("notes.txt", "mine\n");
    repo.env.write("build/out.o", "ignored\n");
    repo.env.write(".git/info/exclude", "build/\n");
    repo.release(&c, false).assert_code(0);
    assert_eq!(repo.subjects(1), ["Revert \"add c\""]);
    assert_eq!(repo.env.read("notes.txt"), "mine\n");
    assert_eq!(repo.status(), "?? notes.txt\n");
}

#[test]
fn an_untracked_file_in_the_way_is_refused() {
    let (repo, [_, _, d]) = with_history("");
    // Reverting D brings b.txt back, where an untracked b.txt now stands.
    repo.env.write("b.txt", "precious\n");
    let before = repo.state();
    for dry_run in [true, false] {
        let run = repo.release(&d, dry_run);
        run.assert_code(1);
        assert_mentions(&run, "untracked or ignored files are in the way");
        assert_mentions(&run, "b.txt; move or delete them first");
        assert!(before == repo.state());
    }
}

#[test]
fn wrong_or_detached_branch_is_refused() {
    let (repo, [_, c, _]) = with_history("");
    repo.git(&["switch", "-q", "-c", "feature"]);
    let before = repo.state();
    for dry_run in [true, false] {
        let run = repo.release(&c, dry_run);
        run.assert_code(1);
        assert_mentions(
            &run,
            "the work tree is on branch `feature`, but release.yaml's repository.branch is `main`",
        );
        assert!(before == repo.state());
    }
    repo.git(&["switch", "-q", "--detach", "main"]);
    let run = repo.release(&c, false);
    run.assert_code(1);
    assert_mentions(&run, "HEAD is detached at");
    assert_mentions(&run, "git switch main");
}

#[test]
fn touching_keeps_only_the_commits_that_change_the_path() {
    let repo = Repo::new(", touching: src/api");
    let start = repo.head();
    repo.commit_files("api one", &[("src/api/x.rs", "1\n")]);
    repo.commit_files("web one", &[("src/web/y.rs", "1\n")]);
    repo.commit_files("api two", &[("src/api/x.rs", "2\n")]);
    repo.commit_files("web two", &[("src/web/y.rs", "2\n")]);
    let end = repo.head();
    let run = repo.release(&format!("{start}..{end}"), true);
    run.assert_code(0);
    assert_mentions(&run, "create 2 revert commits");
    repo.release(&format!("{start}..{end}"), false)
        .assert_code(0);
    assert_eq!(
        repo.subjects(3),
        ["Revert \"api one\"", "Revert \"api two\"", "web two"]
    );
    assert!(!repo.env.join("src/api/x.rs").exists());
    assert_eq!(repo.env.read("src/web/y.rs"), "2\n");
}

#[test]
fn conflicts_are_reported_file_by_file_and_nothing_changes() {
    let repo = Repo::new("");
    let old = repo.commit_files(
        "old change",
        &[("a.txt", "one\nTWO\nthree\n"), ("b.txt", "bee\n")],
    );
    repo.commit_files(
        "newer change",
        &[("a.txt", "one\n2\nthree\n"), ("b.txt", "BEE\n")],
    );
    let before = repo.state();
    let run = repo.release(&old, true);
    run.assert_code(1);
    assert_mentions(&run, "blocked");
    assert_mentions(&run, "conflicts in 2 files");
    assert_mentions(
        &run,
        "a.txt (changed on the branch since, and by the revert)",
    );
    assert_mentions(
        &run,
        "b.txt (modified on the branch since, deleted by the revert)",
    );
    assert_mentions(&run, "CONFLICT a.txt");
    assert!(before == repo.state());
    let run = repo.release(&old, false);
    run.assert_code(1);
    assert_mentions(&run, "conflicts in 2 files");
    assert!(before == repo.state());
}

#[test]
fn unknown_commit_and_merge_without_mainline_are_blocked() {
    let (repo, _) = with_history("");
    let run = repo.release("deadbeef", true);
    run.assert_code(1);
    assert_mentions(&run, "commit `deadbeef` is not in the repository");
    repo.git(&["switch", "-q", "-c", "side"]);
    repo.commit_files("side work", &[("s.txt", "s\n")]);
    repo.git(&["switch", "-q", "main"]);
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    let run = repo.release("HEAD", true);
    run.assert_code(1);
    assert_mentions(&run, "is a merge of 2 parents; set `mainline:`");
}

/// A CI-style checkout (`git clone --depth 2`) of B, C, D: the clone's history stops at C,
/// which git and libgit2 then take for a root commit, so its revert would delete every
/// file instead of undoing its change. Refused, dry and real, until its parent is fetched.
#[test]
fn a_commit_where_a_shallow_clone_stops_is_refused_until_its_parent_is_fetched() {
    let (repo, [_, c, d]) = with_history("");
    repo.git(&["push", "-q", "origin", "main"]);
    let clone = tempfile::Builder::new()
        .prefix("release-shallow-")
        .tempdir()
        .expect("temp dir");
    let url = format!("file://{}", repo.origin_path().display());
    git_in(clone.path(), &["clone", "-q", "--depth", "2", &url, "."]);
    git_in(clone.path(), &["config", "user.name", "Tester"]);
    git_in(
        clone.path(),
        &["config", "user.email", "tester@example.com"],
    );
    let shallow = std::fs::read_to_string(clone.path().join(".git/shallow")).expect("shallow");
    assert_eq!(shallow.trim(), c, "the clone stops at C");
    let release =
        |commits: &str, dry_run: bool| repo.release_at(clone.path(), commits, dry_run, &[]);
    let head = git_in(clone.path(), &["rev-parse", "HEAD"]);
    let stops = format!("shallow clone and {} is where its history stops", &c[..8]);
    for dry_run in [true, false] {
        let run = release(&c, dry_run);
        run.assert_code(1);
        assert_mentions(&run, &stops);
        assert_mentions(&run, "`git fetch --deepen=1`");
        assert_eq!(git_in(clone.path(), &["rev-parse", "HEAD"]), head);
        assert_eq!(git_in(clone.path(), &["status", "--porcelain"]), "");
    }
    // Named among others, it is refused all the same.
    assert_mentions(release(&format!("{d} {c}"), true).assert_code(1), &stops);
    // D's parent is in the clone: D reverts as usual, named or as the range C..D.
    release(&d, true).assert_code(0);
    release(&format!("{c}..{d}"), true).assert_code(0);
    // In a linked worktree of the clone too: git keeps `shallow` in the common folder.
    let linked = tempfile::Builder::new()
        .prefix("release-linked-")
        .tempdir()
        .expect("temp dir");
    let worktree = linked.path().join("wt");
    git_in(clone.path(), &["switch", "-q", "-c", "parking"]);
    git_in(
        clone.path(),
        &["worktree", "add", "-q", worktree.to_str().unwrap(), "main"],
    );
    let run = repo.release_at(&worktree, &c, true, &[]);
    run.assert_code(1);
    assert_mentions(&run, &stops);
    git_in(
        clone.path(),
        &["worktree", "remove", "--force", worktree.to_str().unwrap()],
    );
    git_in(clone.path(), &["switch", "-q", "main"]);
    git_in(clone.path(), &["fetch", "-q", "--deepen=1"]);
    release(&c, false).assert_code(0);
    assert_eq!(
        git_in(
            clone.path(),
            &["show", "--name-status", "--format=", "HEAD"]
        ),
        "D\tc.txt\n",
        "only C's own change is undone"
    );
    assert_eq!(git_in(clone.path(), &["status", "--porcelain"]), "");
}

/// The command a refusal gives between "fetch them with `" and "`", run by `sh` in `dir`.
fn run_printed_fix(run: &Run, dir: &Path) {
    let out = output(run);
    let fix = out
        .split("fetch them with `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no fix in\n{}", run.transcript()));
    let status = Command::new("sh")
        .args(["-c", fix])
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .expect("sh runs");
    assert!(status.success(), "{fix} failed");
}

/// A partial clone (`git clone --filter=blob:none`, as CI checkouts may be) has every
/// commit and tree but only the contents of the files checked out: git fetches the others
/// when a command needs them, libgit2 cannot. A revert that needs one is blocked, dry and
/// real, with git's command that fetches them; once that has run, the revert goes through.
#[test]
fn a_partial_clone_lacking_what_the_revert_needs_is_refused_with_the_command_that_fetches_it() {
    let (repo, [b, _, d]) = with_history("");
    // After B changed a.txt's second line, a fourth: reverting B merges a.txt's contents.
    repo.commit_files("extend a", &[("a.txt", "one\nTWO\nthree\nfour\n")]);
    repo.git(&["push", "-q", "origin", "main"]);
    git_in(
        &repo.origin_path(),
        &["config", "uploadpack.allowFilter", "true"],
    );
    let clone = tempfile::Builder::new()
        .prefix("release-partial-")
        .tempdir()
        .expect("temp dir");
    let dir = clone.path();
    let url = format!("file://{}", repo.origin_path().display());
    git_in(dir, &["clone", "-q", "--filter=blob:none", &url, "."]);
    git_in(dir, &["config", "user.name", "Tester"]);
    git_in(dir, &["config", "user.email", "tester@example.com"]);
    let release = |commits: &str, dry_run: bool| repo.release_at(dir, commits, dry_run, &[]);
    let head = git_in(dir, &["rev-parse", "HEAD"]);

    // D's revert writes b.txt back, which no checkout of this clone held.
    for dry_run in [true, false] {
        let run = release(&d, dry_run);
        run.assert_code(1);
        assert_mentions(
            &run,
            "partial clone and lacks the contents of 1 file the revert writes: b.txt",
        );
        assert_eq!(git_in(dir, &["rev-parse", "HEAD"]), head, "nothing moved");
        assert_eq!(git_in(dir, &["status", "--porcelain"]), "");
    }
    run_printed_fix(&release(&d, true), dir);
    release(&d, false).assert_code(0);
    assert_eq!(std::fs::read_to_string(dir.join("b.txt")).unwrap(), "bee\n");

    // B's revert merges a.txt, whose versions before and at B were never fetched.
    let run = release(&b, true);
    run.assert_code(1);
    assert_mentions(&run, "partial clone and lacks objects the revert needs");
    run_printed_fix(&run, dir);
    release(&b, false).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "one\ntwo\nthree\nfour\n"
    );
    assert_eq!(git_in(dir, &["status", "--porcelain"]), "");
}

/// `program ARGS` in `dir` with `vars`, which must succeed; its stdout.
fn run_ok(program: &str, args: &[&str], dir: &Path, vars: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .envs(vars.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the gpg-agent that gpg started for a home of its own when the test ends, even by
/// a panic.
struct StopAgent<'a>(&'a Path);

impl Drop for StopAgent<'_> {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.0)
            .status();
    }
}

/// With `commit.gpgSign` on, the revert commits are signed as git signs them, with an SSH
/// key (`gpg.format ssh`: ssh-keygen) and with an `openpgp` one (gpg, in a home of its own):
/// `git verify-commit` accepts both. The dry-run says how they would be signed. A key that
/// cannot sign fails the step before anything changes, with a command that tries the key.
#[test]
fn revert_commits_are_signed_when_git_config_asks_for_it() {
    let (repo, [b, c, d]) = with_history("");
    let keys = tempfile::Builder::new()
        .prefix("release-keys-")
        .tempdir()
        .expect("temp dir");
    let key = keys.path().join("id_ed25519");
    let key_text = key.to_str().unwrap();
    run_ok(
        "ssh-keygen",
        &[
            "-q", "-t", "ed25519", "-N", "", "-C", "tester", "-f", key_text,
        ],
        keys.path(),
        &[],
    );
    let public = std::fs::read_to_string(keys.path().join("id_ed25519.pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("tester@example.com {public}")).unwrap();
    repo.git(&["config", "commit.gpgSign", "true"]);
    repo.git(&["config", "gpg.format", "ssh"]);
    repo.git(&["config", "user.signingKey", &format!("{key_text}.pub")]);
    repo.git(&[
        "config",
        "gpg.ssh.allowedSignersFile",
        allowed.to_str().unwrap(),
    ]);

    let dry = repo.release(&d, true);
    dry.assert_code(0);
    assert_mentions(
        &dry,
        &format!("would be signed as git signs them (ssh key {key_text}.pub, with ssh-keygen;"),
    );
    repo.release(&d, false).assert_code(0);
    repo.git(&["verify-commit", "HEAD"]);

    // OpenPGP, git's default format, with the committer's identity as the key.
    let gnupg = tempfile::Builder::new()
        .prefix("gpg-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let home = [("GNUPGHOME", gnupg.path().to_str().unwrap())];
    let _agent = StopAgent(gnupg.path());
    run_ok(
        "gpg",
        &[
            "--batch",
            "--quiet",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Tester <tester@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        keys.path(),
        &home,
    );
    repo.git(&["config", "--unset", "gpg.format"]);
    repo.git(&["config", "--unset", "user.signingKey"]);
    repo.release_at(repo.env.path(), &c, false, &home)
        .assert_code(0);
    run_ok("git", &["verify-commit", "HEAD"], repo.env.path(), &home);
    assert!(
        repo.git(&["cat-file", "commit", "HEAD"])
            .contains("\ngpgsig -----BEGIN PGP SIGNATURE-----\n"),
        "a gpgsig header"
    );

    // A key gpg does not hold: nothing changes, and the message says how to try the key.
    repo.git(&["config", "user.signingKey", "DEADBEEF"]);
    let head = repo.head();
    let failed = repo.release_at(repo.env.path(), &b, false, &home);
    failed.assert_code(1);
    assert_mentions(
        &failed,
        "signing the revert commit failed (openpgp key DEADBEEF, with gpg)",
    );
    assert_mentions(
        &failed,
        "`echo test | gpg -bsau DEADBEEF` tries the same key",
    );
    assert_eq!(repo.head(), head, "nothing moved");
    assert_eq!(repo.status(), "");
}

#[test]
fn a_revert_already_undone_is_skipped_so_a_rerun_only_pushes() {
    let (repo, [_, c, _]) = with_history(", push: true");
    repo.git(&["push", "-q", "origin", "main"]);
    // A first run reverted c but could not push (here: done by hand without pushing).
    repo.git(&["revert", "--no-edit", &c]);
    let reverted = repo.head();
    let run = repo.release(&c, true);
    run.assert_code(0);
    assert_mentions(&run, "nothing to revert");
    repo.release(&c, false).assert_code(0);
    assert_eq!(repo.head(), reverted, "no second revert commit");
    assert_eq!(
        git_in(&repo.origin_path(), &["rev-parse", "refs/heads/main"]).trim(),
        reverted
    );
}

/// A commit from another branch whose changes the branch never had: reverting it changes
/// nothing, and the run says that it is not on the branch (a sha copied from the wrong
/// branch), not that its changes are already undone.
#[test]
fn a_commit_the_branch_never_had_is_named_as_such() {
    let (repo, _) = with_history("");
    repo.git(&["switch", "-q", "-c", "side"]);
    let side = repo.commit_files("side work", &[("s.txt", "s\n")]);
    repo.git(&["switch", "-q", "main"]);
    let head = repo.head();
    let short = &side[..8];
    let dry = repo.release(&side, true);
    dry.assert_code(0);
    assert_mentions(
        &dry,
        &format!("nothing to revert: {short} is not on main, which does not have its changes"),
    );
    let real = repo.release(&side, false);
    real.assert_code(0);
    assert_mentions(
        &real,
        &format!("{short} is not on main, and main does not have its changes: skipped"),
    );
    assert_eq!(repo.head(), head, "no revert commit");
}

#[test]
fn a_same_size_edit_right_after_a_commit_is_dirty() {
    let (repo, [_, c, _]) = with_history("");
    // Same size as the committed "one\nTWO\nthree\n", written at once.
    repo.env.write("a.txt", "one\nTwo\nthree\n");
    let run = repo.release(&c, false);
    run.assert_code(1);
    assert_mentions(&run, "work tree is dirty: a.txt (modified)");
}

#[test]
fn reverts_that_remove_a_folder_or_change_a_mode_leave_a_clean_tree() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::new("");
    let start = repo.head();
    repo.commit_files(
        "add docs",
        &[("docs/a.md", "a\n"), ("docs/deep/b.md", "b\n")],
    );
    repo.commit_files("add script", &[("run.sh", "echo hi\n")]);
    std::fs::set_permissions(
        repo.env.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    repo.git(&["add", "run.sh"]);
    repo.git(&["commit", "-q", "-m", "make it executable"]);
    // A file where a folder was: `docs` becomes a file.
    repo.git(&["rm", "-q", "-r", "docs"]);
    repo.commit_files("docs as a file", &[("docs", "see the wiki\n")]);
    let end = repo.head();

    repo.release(&format!("{end}~1..{end}"), false)
        .assert_code(0);
    assert!(
        repo.env.join("docs/deep/b.md").is_file(),
        "the folder is back"
    );
    assert_eq!(repo.status(), "");
    repo.release(&format!("{end}~1"), false).assert_code(0);
    let mode = std::fs::metadata(repo.env.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "the executable bit is reverted");
    assert_eq!(repo.status(), "");
    let run = repo.release(&format!("{start}..{start}~0"), true);
    run.assert_code(1);
    assert_mentions(&run, "is empty");
    assert_mentions(
        &run,
        &format!("to revert {start} alone, give `{start}` without `..`"),
    );
    repo.release(&format!("{end}~3"), false).assert_code(0);
    assert!(!repo.env.join("docs").exists(), "the whole folder is gone");
    assert_eq!(repo.status(), "");
}

// The real run against `git revert`, on random histories

/// The paths the random histories touch: text files in and out of folders, a script whose
/// executable bit flips, a symbolic link, a file that git stores with CRLF in the work tree
/// (`.gitattributes`), and `box`, which is a folder or a file by turns.
const PATHS: [&str; 6] = [
    "x.txt",
    "y.txt",
    "sub/z.txt",
    "sub/deep/w.txt",
    "tool.sh",
    "win.bat",
];

/// One change of a random history: (kind, path, line, value).
type Change = (u8, u8, u8, u8);

/// Applies one change to the work tree; `git add -A` and a commit follow.
fn apply_change(root: &Path, (kind, path, line, value): Change) {
    use std::os::unix::fs::PermissionsExt;
    let name = PATHS[usize::from(path) % PATHS.len()];
    let file = root.join(name);
    let text = std::fs::read_to_string(&file).ok();
    match kind % 10 {
        // Edit a line, or add one: lines from a small alphabet, so that commits overlap
        // and some reverts conflict.
        0..=4 => {
            let mut lines: Vec<String> = text
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            let new = format!("v{} {name}", value % 5);
            let at = usize::from(line) % (lines.len() + 1);
            if at < lines.len() && kind % 2 == 0 {
                lines[at] = new;
            } else {
                lines.insert(at, new);
            }
            // Written as git's checkout writes it (`eol=crlf`), so that only the revert's
            // own writes are compared.
            let eol = if name == "win.bat" { "\r\n" } else { "\n" };
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, lines.join(eol) + eol).unwrap();
        }
        5 => {
            // As `git rm` does: the folders it leaves empty go too.
            if std::fs::remove_file(&file).is_ok() {
                let mut dir = file.parent();
                while let Some(d) = dir.filter(|d| *d != root) {
                    if std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
            }
        }
        6 => {
            if let Ok(meta) = std::fs::symlink_metadata(&file)
                && meta.is_file()
            {
                let mode = meta.permissions().mode() ^ 0o111;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        7 => {
            let symlink = root.join("link");
            let _ = std::fs::remove_file(&symlink);
            if value % 3 != 0 {
                std::os::unix::fs::symlink(format!("target-{}", value % 3), symlink).unwrap();
            }
        }
        _ => {
            let boxed = root.join("box");
            if boxed.is_dir() {
                std::fs::remove_dir_all(&boxed).unwrap();
                std::fs::write(&boxed, format!("box as a file {}\n", value % 3)).unwrap();
            } else {
                let _ = std::fs::remove_file(&boxed);
                std::fs::create_dir_all(boxed.join("in")).unwrap();
                std::fs::write(boxed.join("in/file"), format!("inside {}\n", value % 3)).unwrap();
            }
        }
    }
}

/// What a user sees of the work tree: every file's bytes and executable bit, every link's
/// target and every folder, outside `.git`, `.release` and `.home`.
fn work_tree(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if [".git", ".release", ".home"].contains(&rel.as_str()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path);
                "folder".to_owned()
            } else {
                format!(
                    "mode {:o}: {:?}",
                    meta.permissions().mode() & 0o111,
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                )
            };
            out.insert(rel, what);
        }
    }
    out
}

/// The entries that differ between two work trees, each as `path: ours | theirs`.
fn differences(ours: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> Vec<String> {
    let none = String::from("(none)");
    let paths: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (a, b) = (
                ours.get(path).unwrap_or(&none),
                theirs.get(path).unwrap_or(&none),
            );
            (a != b).then(|| format!("{path}: {a} | {b}"))
        })
        .collect()
}

/// A new project with `.gitattributes` and one commit per entry of `history` that changes
/// something; the commits made, oldest first.
fn with_random_history(history: &[Vec<Change>]) -> (Repo, Vec<String>) {
    let repo = Repo::new("");
    repo.env.write(".gitattributes", "*.bat text eol=crlf\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "attributes"]);
    let mut commits = Vec::new();
    for (i, changes) in history.iter().enumerate() {
        for &change in changes {
            apply_change(repo.env.path(), change);
        }
        repo.git(&["add", "-A"]);
        if repo.git(&["status", "--porcelain"]).is_empty() {
            continue;
        }
        repo.git(&["commit", "-q", "-m", &format!("change {i}")]);
        commits.push(repo.head());
    }
    (repo, commits)
}

/// `git revert --no-edit SPEC` in a copy of the project: the copy (kept while the folder
/// lives), whether git succeeded, and what it said.
fn git_revert_in_a_copy(repo: &Repo, spec: &str) -> (tempfile::TempDir, PathBuf, bool, String) {
    let copy = tempfile::Builder::new()
        .prefix("release-git-")
        .tempdir()
        .unwrap();
    let cli = copy.path().join("repo");
    let copied = Command::new("cp")
        .arg("-a")
        .args([repo.env.path(), &cli])
        .status()
        .unwrap();
    assert!(copied.success(), "cp -a");
    let git = Command::new("git")
        .current_dir(&cli)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // libgit2 has no directory-rename detection (see the unit property test).
        .args([
            "-c",
            "merge.directoryRenames=false",
            "revert",
            "--no-edit",
            spec,
        ])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&git.stdout).into_owned() + &String::from_utf8_lossy(&git.stderr);
    (copy, cli, git.status.success(), said)
}

/// Builds `history` on a new project, reverts the pick (one commit, or a range) with
/// `git revert` in a copy and with `release run` in the project, and compares what each
/// leaves: the commits' trees and subjects, the work tree, a clean status; or, when git
/// stops on a conflict, a refusal that changed nothing. The dry-run first: it must
/// foresee git's outcome and change nothing.
fn compare_real_run_with_git(
    history: &[Vec<Change>],
    pick: (usize, usize),
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prelude::*;
    let (repo, commits) = with_random_history(history);
    prop_assume!(!commits.is_empty());
    let (a, b) = (pick.0 % commits.len(), pick.1 % commits.len());
    let spec = if a == b {
        commits[a].clone()
    } else {
        let (from, to) = (a.min(b), a.max(b));
        format!("{}..{}", commits[from], commits[to])
    };
    let base = repo.head();
    let (_copy, cli, git_ok, git_said) = git_revert_in_a_copy(&repo, &spec);
    // git stops where a revert changes nothing (already undone on the branch), where
    // git_revert skips it: not what this test compares.
    prop_assume!(git_ok || git_said.contains("CONFLICT"));

    // `Repo::state` reads through links; these histories have dangling ones.
    let state = || {
        let mut all = work_tree(repo.env.path());
        all.insert("refs".into(), repo.git(&["for-each-ref"]));
        all.insert("HEAD".into(), repo.env.read(".git/HEAD"));
        let index = std::fs::read(repo.env.join(".git/index")).unwrap();
        all.insert("index".into(), format!("{index:?}"));
        all
    };
    let before = state();
    // The rehearsal agrees with git and changes nothing.
    let dry = repo.release(&spec, true);
    prop_assert_eq!(
        dry.code,
        i32::from(!git_ok),
        "the dry-run of {} against git's {}:\n{}",
        spec,
        git_said,
        dry.transcript()
    );
    prop_assert_eq!(
        differences(&state(), &before),
        Vec::<String>::new(),
        "the dry-run of {} changed something (after | before)",
        spec
    );
    let run = repo.release(&spec, false);
    if !git_ok {
        prop_assert_eq!(
            run.code,
            1,
            "git conflicted on {}, release did not fail:\n{}\n{}",
            spec,
            git_said,
            run.transcript()
        );
        prop_assert_eq!(
            differences(&state(), &before),
            Vec::<String>::new(),
            "a refused revert changed something (after | before)"
        );
        return Ok(());
    }
    prop_assert_eq!(
        run.code,
        0,
        "git reverted {} cleanly:\n{}",
        spec,
        run.transcript()
    );
    let made = |dir: &Path| git_in(dir, &["log", "--format=%T %s", &format!("{base}..HEAD")]);
    prop_assert_eq!(made(repo.env.path()), made(&cli), "commits of {}", spec);
    prop_assert_eq!(
        differences(&work_tree(repo.env.path()), &work_tree(&cli)),
        Vec::<String>::new(),
        "the work tree after {} (release | git)",
        spec
    );
    prop_assert_eq!(repo.status(), "", "status after {}", spec);
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(12),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// A real run leaves what `git revert` leaves: the same commits (trees and subjects),
    /// the same files, bytes, modes and links, a clean status; or both stop on a conflict.
    #[test]
    fn a_real_run_leaves_what_git_revert_leaves(
        history in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<Change>(), 1..4), 3..9),
        pick in proptest::prelude::any::<(usize, usize)>(),
    ) {
        compare_real_run_with_git(&history, pick)?;
    }
}

#[test]
fn an_index_libgit2_cannot_use_is_refused_with_the_command_that_fixes_it() {
    let repo = Repo::new("");
    repo.commit_files("add docs", &[("docs/guide.md", "read me\n")]);
    let change = repo.commit_files("edit a", &[("a.txt", "one\nTWO\nthree\n")]);
    let head = repo.head();
    // Each refusal leaves everything as it was, the index's bytes included.
    let refused = |dry_run: bool| {
        let before = repo.state();
        let run = repo.release(&change, dry_run);
        run.assert_code(1);
        assert!(repo.state() == before, "a refusal changed something");
        run
    };

    // A split index (core.splitIndex).
    repo.git(&["update-index", "--split-index"]);
    let run = refused(true);
    assert_mentions(&run, "the index is split (core.splitIndex)");
    assert_mentions(
        &run,
        "`git config core.splitIndex false && git update-index --no-split-index`",
    );
    assert!(
        !output(&run).contains("class="),
        "libgit2's class is noise:\n{}",
        run.transcript()
    );
    repo.git(&["update-index", "--no-split-index"]);
    repo.release(&change, true).assert_code(0);

    // A sparse checkout: files marked skip-worktree are not in the work tree, and libgit2
    // would take them for deleted ones.
    repo.git(&[
        "sparse-checkout",
        "set",
        "--cone",
        "--no-sparse-index",
        "rb",
    ]);
    assert!(
        !repo.env.join("docs/guide.md").exists(),
        "docs/ is left out"
    );
    let run = repo.release(&change, false);
    run.assert_code(1);
    assert_mentions(
        &run,
        "docs/guide.md and 6 more tracked files are left out of the work tree (skip-worktree",
    );
    assert_mentions(&run, "`git sparse-checkout disable`");
    assert!(
        !output(&run).contains("dirty"),
        "nothing is dirty:\n{}",
        run.transcript()
    );

    // The same with a sparse index, which libgit2 cannot read at all.
    repo.git(&["sparse-checkout", "set", "--cone", "--sparse-index", "rb"]);
    let run = refused(true);
    assert_mentions(&run, "the index is sparse");
    assert_mentions(&run, "`git sparse-checkout disable`");

    repo.git(&["sparse-checkout", "disable"]);
    assert_eq!(repo.head(), head);
    repo.release(&change, false).assert_code(0);
    assert_eq!(repo.env.read("a.txt"), "one\ntwo\nthree\n");
    assert_eq!(repo.status(), "");
}

#[test]
fn files_of_a_filter_driver_are_smudged_as_git_does() {
    let repo = Repo::new("");
    // A driver of git's config (git LFS is one): stored lower case, checked out upper
    // case. The smudge command also notes the path it was given (`%f`).
    repo.git(&["config", "filter.upper.clean", "tr A-Z a-z"]);
    repo.git(&[
        "config",
        "filter.upper.smudge",
        "tr a-z A-Z && echo %f >> .release/smudged.txt",
    ]);
    let name = "it's an up.up";
    repo.env.write(".gitattributes", "*.up filter=upper\n");
    repo.commit_files("add", &[(name, "hello\n")]);
    let change = repo.commit_files("change", &[(name, "world\n")]);
    // The work tree as git's checkout leaves it.
    std::fs::remove_file(repo.env.join(name)).unwrap();
    std::fs::create_dir_all(repo.env.join(".release")).unwrap();
    repo.git(&["checkout", "--", name]);
    assert_eq!(repo.env.read(name), "WORLD\n");
    std::fs::remove_file(repo.env.join(".release/smudged.txt")).unwrap();

    let run = repo.release(&change, true);
    run.assert_code(0);
    assert_mentions(
        &run,
        "the filter drivers' smudge commands write it's an up.up (`upper`) (not run in a dry-run)",
    );
    assert!(!repo.env.join(".release/smudged.txt").exists());
    let run = repo.release(&change, false);
    run.assert_code(0);
    assert_eq!(
        repo.env.read(name),
        "HELLO\n",
        "smudged, as git checks it out"
    );
    assert_eq!(repo.env.read(".release/smudged.txt"), format!("{name}\n"));
    assert_eq!(repo.status(), "");
    assert_eq!(repo.git(&["show", &format!("HEAD:{name}")]), "hello\n");
    // The index holds the smudged file's stat data: the next revert finds the tree clean.
    let revert = repo.head();
    repo.release(&revert, true).assert_code(0);

    // A smudge command that fails: the revert stands (and would be pushed), and the
    // user is told which files hold the stored content, and the fix.
    repo.git(&[
        "config",
        "filter.upper.smudge",
        "echo no LFS server >&2; exit 3",
    ]);
    let run = repo.release(&revert, false);
    run.assert_code(0);
    assert_mentions(
        &run,
        "warning: the revert commits are made, but the filter driver's smudge command failed for it's an up.up",
    );
    assert_mentions(&run, "no LFS server");
    assert_mentions(
        &run,
        "run `git checkout -- 'it'\\''s an up.up'` once the driver works",
    );
    assert_eq!(repo.git(&["show", &format!("HEAD:{name}")]), "world\n");

    // A driver with only a `process` command (a protocol only git speaks) is refused
    // before anything changes.
    repo.git(&["config", "--unset", "filter.upper.smudge"]);
    repo.git(&["config", "filter.upper.process", "upper-filter-process"]);
    let before = repo.state();
    let head = repo.head();
    for dry_run in [true, false] {
        let run = repo.release(&head, dry_run);
        run.assert_code(1);
        assert_mentions(
            &run,
            "go through the filter driver `upper`, which has only a `filter.upper.process` command",
        );
    }
    assert!(repo.state() == before, "nothing changed");
}

/// A filtered file whose stat data changed looks modified to libgit2; only the driver's
/// clean command can tell. The real run runs it, as `git status` does; a dry-run runs no
/// process (SPEC §6), so it says what it could not check, as a warning, and how to settle
/// it.
#[test]
fn a_dry_run_runs_no_clean_command_and_says_which_files_it_could_not_check() {
    let repo = Repo::new("");
    repo.git(&[
        "config",
        "filter.upper.clean",
        "echo %f >> .release/cleaned.txt; tr A-Z a-z",
    ]);
    repo.git(&["config", "filter.upper.smudge", "tr a-z A-Z"]);
    repo.env.write(".gitattributes", "*.up filter=upper\n");
    repo.commit_files("add", &[("x.up", "hello\n")]);
    let change = repo.commit_files("change", &[("x.up", "world\n")]);
    std::fs::remove_file(repo.env.join("x.up")).unwrap();
    std::fs::create_dir_all(repo.env.join(".release")).unwrap();
    repo.git(&["checkout", "--", "x.up"]);
    assert_eq!(repo.env.read("x.up"), "WORLD\n");
    let cleaned = repo.env.join(".release/cleaned.txt");
    let _ = std::fs::remove_file(&cleaned);
    // The same content, another modification time: the index's stat data no longer
    // vouches for the file.
    let touched = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(repo.env.join("x.up"))
        .status()
        .unwrap();
    assert!(touched.success());

    let before = repo.state();
    let run = repo.release(&change, true);
    run.assert_code(0);
    assert_mentions(&run, "warn");
    assert_mentions(
        &run,
        "cannot tell whether x.up (`upper`) is modified: libgit2 sees a change, and only the filter driver's clean command can tell, which a dry-run does not run",
    );
    assert_mentions(&run, "`git status` runs it and refreshes the index");
    assert!(!cleaned.exists(), "the dry-run ran the clean command");
    assert!(repo.state() == before, "nothing changed");

    // What the message says: `git status` settles it, and the rehearsal is clean again.
    repo.git(&["status", "--porcelain"]);
    std::fs::remove_file(&cleaned).unwrap();
    let run = repo.release(&change, true);
    run.assert_code(0);
    assert!(
        !output(&run).contains("cannot tell whether"),
        "{}",
        run.transcript()
    );
    assert!(!cleaned.exists());

    // The real run runs the clean command, finds the file unmodified, and reverts.
    Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(repo.env.join("x.up"))
        .status()
        .unwrap();
    let run = repo.release(&change, false);
    run.assert_code(0);
    assert_eq!(repo.env.read(".release/cleaned.txt"), "x.up\n");
    assert_eq!(repo.env.read("x.up"), "HELLO\n");
    assert_eq!(repo.git(&["show", "HEAD:x.up"]), "hello\n");
}
