//! The in-memory revert against `git revert` itself: random histories, random commits and
//! ranges, the same trees and messages (or the same conflicting files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use git2::{Oid, Repository, Signature, Time};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

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

/// Reverts `selection(kind, picks)` of `history` both ways and compares: the trees and
/// messages of the commits made (up to the first conflict), the final tree, or the
/// conflicting files; and each revert's list of changed files against a full diff.
fn compare_with_git(history: &[Vec<Op>], kind: u8, picks: &[usize]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("repo");
    let (repo, commits) = make_history(&origin, history);
    let specs = selection(kind, picks, &commits);
    let selected = select_commits(&repo, &specs, None, &origin, None).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let plan = revert_in_memory(&repo, &head, &selected, None).unwrap();

    // Each revert's list of changed files is what a full diff of the trees gives.
    let mut before = head.tree_id();
    for (step, tree) in plan.applied() {
        let StepResult::Applied { changes, .. } = &step.result else {
            unreachable!()
        };
        let diff = repo
            .diff_tree_to_tree(
                Some(&repo.find_tree(before).unwrap()),
                Some(&repo.find_tree(tree).unwrap()),
                None,
            )
            .unwrap();
        let expected: Vec<(String, ChangeKind)> = diff
            .deltas()
            .map(|d| {
                let kind = match d.status() {
                    git2::Delta::Added => ChangeKind::Added,
                    git2::Delta::Deleted => ChangeKind::Deleted,
                    git2::Delta::Typechange => ChangeKind::TypeChanged,
                    _ => ChangeKind::Modified,
                };
                let file = if kind == ChangeKind::Deleted {
                    d.old_file()
                } else {
                    d.new_file()
                };
                (file.path().unwrap().display().to_string(), kind)
            })
            .collect();
        let ours: Vec<(String, ChangeKind)> =
            changes.iter().map(|c| (c.path.clone(), c.kind)).collect();
        prop_assert_eq!(ours, expected);
        before = tree;
    }
    let clone = dir.path().join("clone");
    git_ok(
        dir.path(),
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let (created, conflict) = git_cli_revert(&clone, &selected);

    // The reverts git made before it stopped (or all of them) match ours one by one.
    let first_conflict = plan
        .steps
        .iter()
        .position(|s| matches!(s.result, StepResult::Conflicted(_)));
    let ours: Vec<(Oid, String)> = plan.steps[..first_conflict.unwrap_or(plan.steps.len())]
        .iter()
        .filter_map(|s| match &s.result {
            StepResult::Applied { tree, .. } => Some((*tree, s.message.trim_end().to_owned())),
            _ => None,
        })
        .collect();
    prop_assert_eq!(&ours, &created, "specs {:?}", specs);
    match (plan.first_conflict(), conflict) {
        (None, None) => prop_assert_eq!(
            plan.tree,
            git_ok(&clone, &["rev-parse", "HEAD^{tree}"])
                .trim()
                .parse::<Oid>()
                .unwrap()
        ),
        (Some((_, files)), Some(theirs)) => {
            let ours: BTreeSet<String> = files.iter().map(|c| c.path.clone()).collect();
            prop_assert_eq!(ours, theirs, "specs {:?}", specs);
        }
        (ours, theirs) => {
            prop_assert!(false, "ours {:?}, git's {:?} for {:?}", ours, theirs, specs);
        }
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES raises the count for a longer hunt (e.g. PROPTEST_CASES=1000).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(32),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The in-memory reverts give what `git revert` gives: tree after tree, message after
    /// message; or both stop on the same conflicting files.
    #[test]
    fn in_memory_revert_matches_git_revert(
        history in prop::collection::vec(prop::collection::vec(op(), 1..4), 5..15),
        kind in any::<u8>(),
        picks in prop::collection::vec(any::<usize>(), 3),
    ) {
        compare_with_git(&history, kind, &picks)?;
    }
}

/// Cases the property test found, kept: each once diverged from git.
#[test]
fn regressions_match_git_revert() {
    type Case<'a> = (&'a [&'a [Op]], u8, [usize; 3]);
    let cases: [Case; 6] = [
        // Renamed back onto a path where the same content was added again: clean in git.
        (
            &[
                &[(0, 15, 127, 177)],
                &[(0, 138, 0, 0)],
                &[(7, 25, 11, 44)],
                &[(0, 25, 127, 153)],
                &[(37, 142, 95, 187), (196, 3, 224, 95)],
                &[(14, 17, 132, 168)],
                &[(249, 62, 110, 62)],
            ],
            0,
            [2, 2, 2],
        ),
        // A folder emptied by the revert goes (no empty tree is written).
        (
            &[
                &[(0, 198, 0, 0)],
                &[(0, 67, 0, 0)],
                &[(0, 23, 0, 0)],
                &[(7, 128, 0, 0)],
                &[(239, 67, 86, 241)],
            ],
            1,
            [1, 4, 4],
        ),
        // A rename/delete conflict: reported under the file's new name, as git does.
        (
            &[
                &[(0, 2, 0, 0)],
                &[(0, 4, 0, 0)],
                &[(7, 153, 0, 0)],
                &[(127, 187, 11, 220)],
                &[(118, 187, 61, 209), (86, 108, 114, 134)],
            ],
            1,
            [0, 2, 4],
        ),
        // The revert renames a.txt (changed on the branch since) back to dir/d.txt, where
        // the branch has since added the same content: git keeps the agreed dir/d.txt and
        // drops a.txt, cleanly.
        (
            &[
                &[(0, 44, 0, 0)],
                &[(0, 4, 0, 0)],
                &[(0, 58, 40, 215), (0, 87, 0, 0)],
                &[(127, 197, 0, 0)],
                &[(0, 109, 0, 0)],
                &[(0, 84, 0, 0)],
                &[(7, 83, 9, 152)],
                &[(0, 0, 0, 0)],
                &[(0, 0, 0, 0)],
                &[(8, 0, 0, 0)],
                &[(0, 0, 0, 0)],
                &[(231, 108, 0, 0)],
                &[(0, 49, 0, 0)],
                &[(0, 153, 88, 215)],
            ],
            26,
            [16_995_991_299_150_392_934, 3_020_828_358_258_248_328, 0],
        ),
        // Renamed b.txt -> e.txt, then e.txt -> dir/c.txt; reverting the first renames
        // e.txt back to b.txt while the branch renamed it to dir/c.txt: git lists the old
        // name e.txt as conflicting too.
        (
            &[
                &[(0, 66, 0, 0)],
                &[(199, 151, 170, 188)],
                &[(199, 199, 106, 6)],
                &[(0, 0, 0, 0)],
                &[(0, 0, 0, 0)],
            ],
            0,
            [15_304_943_270_497_432_556, 0, 0],
        ),
        // Renamed b.txt -> dir/d.txt, later deleted: dir/ is the same on the branch and
        // in the revert, but reverting the rename deletes dir/d.txt on both sides, which
        // rename detection pairs with b.txt: a rename/delete conflict (the shortcut merge
        // once took it as clean).
        (
            &[
                &[(0, 54, 0, 0)],
                &[(0, 16, 0, 0)],
                &[(0, 37, 0, 0)],
                &[(87, 211, 57, 74)],
                &[(71, 103, 0, 0)],
            ],
            100,
            [
                58_813_792_272_387_725,
                18_323_765_834_155_488_598,
                3_671_483_603_280_403_900,
            ],
        ),
    ];
    for (history, kind, picks) in cases {
        let history: Vec<Vec<Op>> = history.iter().map(|c| c.to_vec()).collect();
        compare_with_git(&history, kind, &picks).unwrap();
    }
}

/// A revert that renames a file back to where the branch has since added the same
/// content, while the branch also changed the file (here so that merging the change
/// would even conflict): git keeps the agreed file, drops the renamed one, and reports no
/// conflict. So does `git_revert`.
#[test]
fn rename_back_onto_an_agreed_file_matches_git() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    std::fs::create_dir_all(path.join("dir")).unwrap();
    let lines = |first: &str| {
        std::iter::once(first.to_owned())
            .chain((2..=12).map(|n| format!("line {n}")))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    git_ok(&path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("dir/d.txt"), lines("first")).unwrap();
    std::fs::write(path.join("e.txt"), "e\n").unwrap();
    git_ok(&path, &["add", "."]);
    git_ok(&path, &["commit", "-qm", "base"]);
    git_ok(&path, &["mv", "dir/d.txt", "a.txt"]);
    std::fs::write(path.join("a.txt"), lines("renamed")).unwrap();
    git_ok(&path, &["commit", "-qam", "rename"]);
    let renamed = git_ok(&path, &["rev-parse", "HEAD"]).trim().to_owned();
    std::fs::write(path.join("a.txt"), lines("changed since")).unwrap();
    std::fs::create_dir_all(path.join("dir")).unwrap();
    std::fs::write(path.join("dir/d.txt"), lines("first")).unwrap();
    git_ok(&path, &["add", "."]);
    git_ok(&path, &["commit", "-qm", "change and add back"]);

    let repo = Repository::open(&path).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let plan = revert_in_memory(&repo, &head, &[Oid::from_str(&renamed).unwrap()], None).unwrap();
    assert!(!plan.has_conflicts(), "{plan:?}");
    git_ok(&path, &["revert", "--no-edit", &renamed]);
    assert_eq!(
        plan.tree.to_string(),
        git_ok(&path, &["rev-parse", "HEAD^{tree}"]).trim()
    );
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
    let request = request(dir.path(), vec![format!("{}..{}", commits[0], commits[5])]);
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

/// The stat scan started before the repository is opened gives what the check gives
/// alone, and counts for nothing once the index it read has changed.
#[test]
fn the_early_stat_scan_agrees_with_the_plain_check() {
    let dir = tempfile::tempdir().unwrap();
    let history: Vec<Vec<Op>> = (0..4).map(|i| vec![(0, i, i, i)]).collect();
    let (repo, _) = make_history(dir.path(), &history);
    git_ok(dir.path(), &["reset", "-q", "--hard"]);
    let dirty = |scan: Option<StatScan>| -> Vec<String> {
        dirty_files(&repo, scan, CleanCommands::NotRun)
            .unwrap()
            .dirty
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert!(dirty(StatScan::start(dir.path())).is_empty());
    assert!(dirty(None).is_empty());
    // From a folder inside the work tree too.
    assert!(dirty(StatScan::start(&dir.path().join("dir"))).is_empty());

    std::fs::write(dir.path().join("a.txt"), "changed\n").unwrap();
    let modified = vec!["a.txt (modified)".to_owned()];
    assert_eq!(dirty(StatScan::start(dir.path())), modified);
    assert_eq!(dirty(None), modified);

    // The scan reads the index before it is staged: its result is set aside.
    let scan = StatScan::start(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(50));
    git_ok(dir.path(), &["add", "a.txt"]);
    assert_eq!(dirty(scan), vec!["a.txt (staged)".to_owned()]);
    // Staged when the scan starts: the index's tree cache no longer vouches for it.
    assert_eq!(
        dirty(StatScan::start(dir.path())),
        vec!["a.txt (staged)".to_owned()]
    );
    // Committed: clean again, with the cache valid for the new HEAD.
    git_ok(dir.path(), &["commit", "-qm", "a"]);
    let repo = git2::Repository::open(dir.path()).unwrap();
    assert!(
        dirty_files(&repo, StatScan::start(dir.path()), CleanCommands::Run)
            .unwrap()
            .dirty
            .is_empty()
    );
}

/// A step's request on `main` of the repository at `root`, for `specs`, without push.
fn request(root: &Path, specs: Vec<String>) -> Request {
    Request {
        root: root.to_path_buf(),
        specs,
        touching: None,
        mainline: None,
        squash: false,
        push: false,
        remote: "origin".into(),
        branch: "main".into(),
        run_id: "r1".into(),
        timeout: None,
    }
}

/// Three commits for the checkout tests, checked out: each edits e.txt and adds a file
/// (a.txt, b.txt, dir/c.txt), and the last deletes a.txt, so going back brings it back.
fn three_commits(dir: &Path) -> (Repository, Vec<Oid>) {
    let history: Vec<Vec<Op>> = vec![
        vec![(0, 0, 0, 0), (5, 4, 0, 0)],
        vec![(0, 1, 1, 1), (5, 4, 0, 1)],
        vec![(0, 2, 2, 2), (5, 4, 0, 2), (7, 0, 1, 1)],
    ];
    let made = make_history(dir, &history);
    git_ok(dir, &["reset", "-q", "--hard"]);
    assert!(!dir.join("a.txt").exists(), "HEAD has no a.txt");
    made
}

/// The files of [`FILES`] in `dir`, with their bytes.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    FILES
        .iter()
        .filter_map(|f| Some(((*f).to_owned(), std::fs::read(dir.join(f)).ok()?)))
        .collect()
}

/// A checkout that writes the files but cannot write the index (its lock taken by another
/// git process meanwhile) puts the files back as HEAD has them, so that "nothing was
/// changed" is true; the index and the other process's lock are left alone.
#[test]
fn a_checkout_that_cannot_write_the_index_puts_the_files_back() {
    let dir = tempfile::tempdir().unwrap();
    // Going back to the first commit changes e.txt, deletes b.txt and dir/c.txt, and adds
    // a.txt back.
    let (repo, commits) = three_commits(dir.path());
    let index_before = std::fs::read(dir.path().join(".git/index")).unwrap();
    let files_before = files_in(dir.path());
    let head = commits[2];
    let target = repo.find_commit(commits[0]).unwrap().tree_id();
    let lock = dir.path().join(".git/index.lock");
    std::fs::write(&lock, b"another git").unwrap();

    let refused = worktree::checkout(&repo, head, target)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("the files are back as they were; nothing was changed"),
        "{refused}"
    );
    assert_eq!(
        files_before,
        files_in(dir.path()),
        "every file as HEAD has it"
    );
    assert_eq!(std::fs::read(&lock).unwrap(), b"another git");
    assert_eq!(
        std::fs::read(dir.path().join(".git/index")).unwrap(),
        index_before
    );
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(git_ok(dir.path(), &["status", "--porcelain"]), "");
}

/// A branch that cannot move after the checkout (another git process holds its lock) puts
/// back only the files the revert wrote, in the index and the work tree: a file edited by
/// hand meanwhile keeps its edit.
#[test]
fn a_branch_that_cannot_move_puts_back_only_the_files_the_revert_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, commits) = three_commits(dir.path());
    let head = commits[2];
    // Back to the second commit: dir/c.txt goes, e.txt changes, a.txt comes back.
    let target = repo.find_commit(commits[1]).unwrap().tree_id();
    let changes = worktree::checkout(&repo, head, target).unwrap();
    assert!(
        dir.path().join("a.txt").exists(),
        "the checkout wrote a.txt"
    );
    std::fs::write(dir.path().join("b.txt"), "edited by hand\n").unwrap();
    std::fs::write(dir.path().join(".git/refs/heads/main.lock"), "").unwrap();
    let request = request(dir.path(), Vec::new());

    let refused = move_branch(&repo, &request, [head, commits[0]], "t", &changes)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("main is locked by another git process"),
        "{refused}"
    );
    assert!(
        refused.contains("the files it wrote are back as HEAD has them"),
        "{refused}"
    );
    std::fs::remove_file(dir.path().join(".git/refs/heads/main.lock")).unwrap();
    assert_eq!(
        repo.head().unwrap().target(),
        Some(head),
        "the branch did not move"
    );
    assert_eq!(
        git_ok(dir.path(), &["status", "--porcelain"]),
        " M b.txt\n",
        "only the edit made by hand is left"
    );
}
