//! The in-memory revert against `git revert` itself: random histories, random commits and
//! ranges, the same trees and messages (or the same conflicting files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use git2::{Oid, Repository, Signature, Time};
use proptest::prelude::*;

use super::*;

const FILES: [&str; 5] = ["a.txt", "b.txt", "dir/c.txt", "dir/d.txt", "e.txt"];

/// One change in a commit: (kind, file, line, value) — interpreted by [`apply`].
type Op = (u8, u8, u8, u8);

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .args(["-c", "user.name=Tester", "-c", "user.email=t@example.com"])
        // libgit2 has no directory-rename detection: where git would stop with a "file
        // location" conflict, git_revert leaves the file where it is, as git does with
        // this setting. Everything else is compared as git does it by default.
        .args(["-c", "merge.directoryRenames=false"])
        .args(args)
        .output()
        .expect("git runs")
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Applies one op to the files; content lines come from a small alphabet so that edits
/// of neighbouring commits overlap (conflicts) now and then.
fn apply(files: &mut BTreeMap<&'static str, Vec<String>>, (kind, file, line, value): Op) {
    let name = FILES[file as usize % FILES.len()];
    let value = format!("v{}", value % 6);
    match (kind % 8, files.get_mut(name)) {
        (0..=4, Some(lines)) => {
            let at = line as usize % lines.len();
            lines[at] = format!("{value} {name}");
        }
        (5 | 6, Some(lines)) => {
            lines.insert(line as usize % (lines.len() + 1), format!("{value} {name}"));
        }
        (_, Some(_)) => {
            // Half the time a rename (to a free name), else a delete.
            let lines = files.remove(name).unwrap_or_default();
            let to = FILES[(file as usize + 1 + line as usize % 4) % FILES.len()];
            if value.ends_with(['0', '2', '4']) && !files.contains_key(to) {
                files.insert(to, lines);
            }
        }
        (_, None) => {
            let lines = (0..12 + line % 8)
                .map(|i| format!("{name} line {i} {value}"))
                .collect();
            files.insert(name, lines);
        }
    }
}

fn write_tree(repo: &Repository, files: &BTreeMap<&'static str, Vec<String>>) -> Oid {
    let mut root = repo.treebuilder(None).unwrap();
    let mut dir = repo.treebuilder(None).unwrap();
    for (name, lines) in files {
        let blob = repo
            .blob(format!("{}\n", lines.join("\n")).as_bytes())
            .unwrap();
        match name.strip_prefix("dir/") {
            Some(base) => dir.insert(base, blob, 0o100_644).map(drop).unwrap(),
            None => root.insert(name, blob, 0o100_644).map(drop).unwrap(),
        }
    }
    if !dir.is_empty() {
        root.insert("dir", dir.write().unwrap(), 0o040_000).unwrap();
    }
    root.write().unwrap()
}

/// A repository with one commit per entry of `history`, checked out on `main`.
fn make_history(dir: &Path, history: &[Vec<Op>]) -> (Repository, Vec<Oid>) {
    let repo = Repository::init(dir).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let mut files = BTreeMap::new();
    let mut commits: Vec<Oid> = Vec::new();
    for (n, ops) in history.iter().enumerate() {
        let before = files.clone();
        for op in ops {
            apply(&mut files, *op);
        }
        if files == before || files.is_empty() {
            let n8 = u8::try_from(n).expect("few commits");
            apply(&mut files, (2, n8, 0, n8));
        }
        let tree = repo.find_tree(write_tree(&repo, &files)).unwrap();
        let when = Time::new(
            1_700_000_000 + i64::try_from(n).expect("few commits") * 60,
            0,
        );
        let sig = Signature::new("Tester", "t@example.com", &when).unwrap();
        let parents: Vec<git2::Commit<'_>> = commits
            .last()
            .map(|p| repo.find_commit(*p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let oid = repo
            .commit(
                Some("HEAD"),
                &sig,
                &sig,
                &format!("change {n}\n\nbody {n}\n"),
                &tree,
                &parents,
            )
            .unwrap();
        commits.push(oid);
    }
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    (repo, commits)
}

/// What `git revert --no-edit COMMITS…` gives: the new commits' (tree, message), oldest
/// first, and the conflicting files if it stopped on a conflict. Empty reverts are skipped
/// (`git revert --skip`), as `git_revert` does.
fn git_cli_revert(clone: &Path, commits: &[Oid]) -> (Vec<(Oid, String)>, Option<BTreeSet<String>>) {
    let start = git_ok(clone, &["rev-parse", "HEAD"]).trim().to_owned();
    let mut args = vec!["revert".to_owned(), "--no-edit".to_owned()];
    args.extend(commits.iter().map(ToString::to_string));
    let mut out = git(clone, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut conflict = None;
    while !out.status.success() {
        let unmerged = git_ok(clone, &["diff", "--name-only", "--diff-filter=U"]);
        if !unmerged.trim().is_empty() {
            conflict = Some(unmerged.lines().map(str::to_owned).collect());
            break;
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("nothing to commit"),
            "git revert failed: {text}"
        );
        // The empty revert was the last one when no sequence is left to skip in.
        if !clone.join(".git/sequencer").exists() {
            break;
        }
        out = git(clone, &["revert", "--skip"]);
    }
    // One git call for every new commit: tree, then message, NUL-terminated.
    let log = git_ok(
        clone,
        &[
            "log",
            "--reverse",
            "--format=%T%n%B%x00",
            &format!("{start}..HEAD"),
        ],
    );
    let created = log
        .split('\0')
        .map(|entry| entry.trim_start_matches('\n'))
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (tree, message) = entry.split_once('\n').unwrap();
            (Oid::from_str(tree).unwrap(), message.trim_end().to_owned())
        })
        .collect();
    (created, conflict)
}

/// Which commits to revert: a single one, a list, or a range `A..B`, as `commits:` text.
fn selection(kind: u8, picks: &[usize], commits: &[Oid]) -> Vec<String> {
    let at = |i: usize| commits[i % commits.len()].to_string();
    match kind % 3 {
        0 => vec![at(picks[0])],
        1 => vec![picks.iter().map(|&i| at(i)).collect::<Vec<_>>().join(", ")],
        _ => {
            let (a, b) = (picks[0] % commits.len(), picks[1] % commits.len());
            let (from, to) = (a.min(b), a.max(b));
            if from == to {
                vec![at(from)]
            } else {
                vec![format!("{}..{}", at(from), at(to))]
            }
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// The in-memory reverts give what `git revert` gives: tree after tree, message after
    /// message; or both stop on the same conflicting files.
    #[test]
    fn in_memory_revert_matches_git_revert(
        history in prop::collection::vec(prop::collection::vec(op(), 1..4), 5..15),
        kind in any::<u8>(),
        picks in prop::collection::vec(any::<usize>(), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("repo");
        let (repo, commits) = make_history(&origin, &history);
        let specs = selection(kind, &picks, &commits);
        let selected = select_commits(&repo, &specs, None, &origin, None).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let plan = revert_in_memory(&repo, &head, &selected, None).unwrap();

        let clone = dir.path().join("clone");
        git_ok(dir.path(), &["clone", "-q", origin.to_str().unwrap(), clone.to_str().unwrap()]);
        let (created, conflict) = git_cli_revert(&clone, &selected);

        // The reverts git made before it stopped (or all of them) match ours one by one.
        let first_conflict = plan.steps.iter().position(|s| matches!(s.result, StepResult::Conflicted(_)));
        let ours: Vec<(Oid, String)> = plan.steps[..first_conflict.unwrap_or(plan.steps.len())]
            .iter()
            .filter_map(|s| match &s.result {
                StepResult::Applied { tree, .. } => Some((*tree, s.message.trim_end().to_owned())),
                _ => None,
            })
            .collect();
        prop_assert_eq!(&ours, &created, "specs {:?}", specs);
        match (plan.first_conflict(), conflict) {
            (None, None) => prop_assert_eq!(plan.tree, git_ok(&clone, &["rev-parse", "HEAD^{tree}"]).trim().parse::<Oid>().unwrap()),
            (Some((_, files)), Some(theirs)) => {
                let ours: BTreeSet<String> = files.iter().map(|c| c.path.clone()).collect();
                prop_assert_eq!(ours, theirs, "specs {:?}", specs);
            }
            (ours, theirs) => prop_assert!(false, "ours {:?}, git's {:?} for {:?}", ours, theirs, specs),
        }
    }
}

#[test]
fn merge_commits_need_mainline_and_match_git_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    std::fs::create_dir_all(&path).unwrap();
    git_ok(&path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("a.txt"), "one\n").unwrap();
    git_ok(&path, &["add", "."]);
    git_ok(&path, &["commit", "-qm", "base"]);
    git_ok(&path, &["switch", "-qc", "side"]);
    std::fs::write(path.join("b.txt"), "side\n").unwrap();
    git_ok(&path, &["add", "."]);
    git_ok(&path, &["commit", "-qm", "side work"]);
    git_ok(&path, &["switch", "-q", "main"]);
    std::fs::write(path.join("a.txt"), "one\ntwo\n").unwrap();
    git_ok(&path, &["commit", "-qam", "main work"]);
    git_ok(
        &path,
        &["merge", "-q", "--no-ff", "-m", "Merge side", "side"],
    );

    let repo = Repository::open(&path).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let merge = vec![head.id()];
    let refused = revert_in_memory(&repo, &head, &merge, None).unwrap_err();
    assert!(refused.to_string().contains("set `mainline:`"), "{refused}");
    let out_of_range = revert_in_memory(&repo, &head, &merge, Some(3)).unwrap_err();
    assert!(
        out_of_range.to_string().contains("out of range"),
        "{out_of_range}"
    );

    let plan = revert_in_memory(&repo, &head, &merge, Some(1)).unwrap();
    git_ok(&path, &["revert", "--no-edit", "-m", "1", "HEAD"]);
    assert_eq!(
        plan.tree.to_string(),
        git_ok(&path, &["rev-parse", "HEAD^{tree}"]).trim()
    );
    assert_eq!(
        plan.steps[0].message.trim_end(),
        git_ok(&path, &["log", "-1", "--format=%B"]).trim_end()
    );
}

#[test]
fn reverting_a_revert_says_reapply_like_git() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, commits) = make_history(dir.path(), &[vec![(4, 0, 0, 0)], vec![(0, 0, 1, 1)]]);
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let plan = revert_in_memory(&repo, &head, &commits[1..], None).unwrap();
    assert_eq!(plan.steps[0].title(), "Revert \"change 1\"");
    let sig = repo
        .signature()
        .unwrap_or_else(|_| Signature::now("T", "t@e").unwrap());
    let tree = repo.find_tree(plan.tree).unwrap();
    let revert = repo
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            &plan.steps[0].message,
            &tree,
            &[&head],
        )
        .unwrap();
    let head = repo.find_commit(revert).unwrap();
    let again = revert_in_memory(&repo, &head, &[revert], None).unwrap();
    assert_eq!(again.steps[0].title(), "Reapply \"change 1\"");
    assert_eq!(
        again.tree,
        repo.find_commit(commits[1]).unwrap().tree_id(),
        "reapplying gives back the reverted commit's tree"
    );
}

#[test]
fn the_dry_run_writes_no_object_ref_or_index() {
    let dir = tempfile::tempdir().unwrap();
    let history: Vec<Vec<Op>> = (0..6)
        .map(|i| vec![(0, i, i, i), (2, i + 1, 0, i)])
        .collect();
    let (repo, commits) = make_history(dir.path(), &history);
    let mut config = repo.config().unwrap();
    config.set_str("user.name", "Tester").unwrap();
    config.set_str("user.email", "t@example.com").unwrap();
    git_ok(dir.path(), &["reset", "-q", "--hard"]);
    let snapshot = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(d).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    };
    let before = snapshot(dir.path());
    let request = Request {
        root: dir.path().to_path_buf(),
        specs: vec![format!("{}..{}", commits[0], commits[5])],
        touching: None,
        mainline: None,
        squash: false,
        push: false,
        remote: "origin".into(),
        branch: "main".into(),
        run_id: "r1".into(),
    };
    let preflight = preflight_blocking(&request, false);
    assert_eq!(preflight.fidelity, Fidelity::Simulated, "{preflight:?}");
    assert!(
        preflight.would.contains("Revert \"change 5\""),
        "{preflight:?}"
    );
    let after = snapshot(dir.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file (object, ref, lock) appeared or went"
    );
    assert!(
        before == after,
        "every file under the repository is byte-identical"
    );
}
