//! Which commits to revert: `commits` as rendered (one sha, several separated by spaces
//! or commas, ranges `A..B`), resolved, filtered by `touching`, newest first.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use git2::{Commit, ErrorCode, Oid, Repository, Sort};

use super::{RevertError, short};

/// One item of `commits`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitSpec {
    One(String),
    /// `A..B`: the commits reachable from B and not from A (an empty side is HEAD).
    Range(String, String),
}

/// Splits the rendered `commits` into items.
pub fn parse_commit_specs(rendered: &[String]) -> Result<Vec<CommitSpec>, RevertError> {
    let mut specs = Vec::new();
    for token in rendered
        .iter()
        .flat_map(|r| r.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|t| !t.is_empty())
    {
        if token.contains("...") {
            return Err(RevertError::Refused(format!(
                "`{token}` is a symmetric range, which git_revert does not take; write `A..B` (the commits of B that A lacks)"
            )));
        }
        match token.split_once("..") {
            Some((from, to)) => {
                let side = |s: &str| if s.is_empty() { "HEAD" } else { s }.to_owned();
                specs.push(CommitSpec::Range(side(from), side(to)));
            }
            None => specs.push(CommitSpec::One(token.to_owned())),
        }
    }
    if specs.is_empty() {
        return Err(RevertError::Refused(
            "`commits` is empty once rendered; give a sha, a list, or a range A..B (e.g. --set commit=abc123)".into(),
        ));
    }
    Ok(specs)
}

fn resolve<'r>(repo: &'r Repository, spec: &str) -> Result<Commit<'r>, RevertError> {
    let object = repo.revparse_single(spec).map_err(|e| {
        RevertError::Refused(match e.code() {
            ErrorCode::Ambiguous => format!(
                "`{spec}` is ambiguous: several objects start with it; give more characters of the sha"
            ),
            _ => format!(
                "commit `{spec}` is not in the repository at {}; check the sha, or fetch it first",
                repo.workdir().unwrap_or_else(|| repo.path()).display()
            ),
        })
    })?;
    object.peel_to_commit().map_err(|_| {
        RevertError::Refused(format!(
            "`{spec}` names a {}, not a commit",
            object.kind().map_or("object", |k| k.str())
        ))
    })
}

/// The commits of `from..to`, newest first.
fn walk_range(repo: &Repository, from: &str, to: &str) -> Result<Vec<Oid>, RevertError> {
    let from_commit = resolve(repo, from)?;
    let to_commit = resolve(repo, to)?;
    let mut walk = repo
        .revwalk()
        .map_err(RevertError::git("cannot walk the history"))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
        .and_then(|()| walk.push(to_commit.id()))
        .and_then(|()| walk.hide(from_commit.id()))
        .map_err(RevertError::git(format!("cannot walk {from}..{to}")))?;
    let commits = walk
        .collect::<Result<Vec<_>, _>>()
        .map_err(RevertError::git(format!("cannot walk {from}..{to}")))?;
    if commits.is_empty() {
        // A..B holds the commits after A up to B: to revert A itself, name it alone.
        let hint = if from_commit.id() == to_commit.id() {
            format!("to revert {from} alone, give `{from}` without `..`")
        } else {
            format!("did you mean {to}..{from}?")
        };
        return Err(RevertError::Refused(format!(
            "the range {from}..{to} is empty: {to} has no commit that {from} lacks ({hint})"
        )));
    }
    Ok(commits)
}

/// Orders commits so that every commit comes before its ancestors (newest first), keeping
/// the given order otherwise.
fn newest_first(repo: &Repository, commits: Vec<Oid>) -> Result<Vec<Oid>, RevertError> {
    let n = commits.len();
    if n < 2 {
        return Ok(commits);
    }
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    let descends = |a: Oid, b: Oid| {
        repo.graph_descendant_of(a, b)
            .map_err(RevertError::git("cannot compare commits"))
    };
    for i in 0..n {
        for j in i + 1..n {
            if descends(commits[j], commits[i])? {
                after[j].push(i);
                waiting[i] += 1;
            } else if descends(commits[i], commits[j])? {
                after[i].push(j);
                waiting[j] += 1;
            }
        }
    }
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && waiting[i] == 0) else {
            break;
        };
        done[next] = true;
        order.push(commits[next]);
        for &k in &after[next] {
            waiting[k] -= 1;
        }
    }
    Ok(order)
}

/// `touching` as a path in the repository: relative to the project root, which may be a
/// folder inside the repository.
fn repository_path(repo: &Repository, root: &Path, touching: &str) -> PathBuf {
    let workdir = repo.workdir().unwrap_or_else(|| repo.path());
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let workdir = canonical(workdir);
    let base = canonical(root);
    let joined = base.join(touching);
    let relative = joined.strip_prefix(&workdir).unwrap_or(&joined);
    let mut out = PathBuf::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// True when `commit` changes `path` (a file or a folder) against the parent it is
/// reverted against.
fn changes_path(
    commit: &Commit<'_>,
    parent: Option<usize>,
    path: &Path,
) -> Result<bool, RevertError> {
    if path.as_os_str().is_empty() {
        return Ok(true);
    }
    let entry = |tree: &git2::Tree<'_>| tree.get_path(path).ok().map(|e| (e.id(), e.filemode()));
    let tree = commit.tree().map_err(RevertError::git(format!(
        "cannot read the tree of {}",
        commit.id()
    )))?;
    let before = match parent {
        Some(n) => {
            let parent = commit.parent(n).map_err(RevertError::git(format!(
                "cannot read the parent of {}",
                commit.id()
            )))?;
            let parent_tree = parent.tree().map_err(RevertError::git(format!(
                "cannot read the tree of {}",
                parent.id()
            )))?;
            entry(&parent_tree)
        }
        None => None,
    };
    Ok(entry(&tree) != before)
}

/// The commits where a shallow clone's history stops (`shallow` in git's common folder,
/// one sha per line): their parents were never fetched, so libgit2, like git, takes them
/// for root commits. Empty for a complete repository. Read from the common folder, not
/// with libgit2's `is_shallow`, which looks in a linked worktree's own folder.
fn shallow_boundary(repo: &Repository) -> Result<HashSet<Oid>, RevertError> {
    let path = repo.commondir().join("shallow");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => {
            return Err(RevertError::Refused(format!(
                "cannot read {} (the list of where this shallow clone's history stops): {e}",
                path.display()
            )));
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| Oid::from_str(line.trim()).ok())
        .collect())
}

/// Refuses a commit at a shallow clone's boundary. Taken for a root commit, its revert
/// would delete every file it holds instead of undoing its own change (`git revert` does
/// exactly that): the history must be fetched first. CI checkouts are often shallow.
fn refuse_shallow_boundary(repo: &Repository, commits: &[Oid]) -> Result<(), RevertError> {
    let boundary = shallow_boundary(repo)?;
    let cut: Vec<String> = commits
        .iter()
        .filter(|c| boundary.contains(c))
        .map(|c| short(*c))
        .collect();
    if cut.is_empty() {
        return Ok(());
    }
    let what = if let [one] = cut.as_slice() {
        format!(
            "{one} is where its history stops: its parent was never fetched, so a revert would delete every file that commit holds instead of undoing its own change"
        )
    } else {
        format!(
            "{} are where its history stops: their parents were never fetched, so a revert would delete every file those commits hold instead of undoing their own changes",
            cut.join(", ")
        )
    };
    Err(RevertError::Refused(format!(
        "this repository is a shallow clone and {what}; fetch more history first (`git fetch --deepen=1`, or `git fetch --unshallow` for all of it)"
    )))
}

/// Resolves the rendered `commits` to the commits to revert, newest first, without
/// duplicates; with `touching`, keeps only those that change that path (measured against
/// the `mainline` parent for a merge).
pub fn select_commits(
    repo: &Repository,
    rendered: &[String],
    touching: Option<&str>,
    root: &Path,
    mainline: Option<u32>,
) -> Result<Vec<Oid>, RevertError> {
    let specs = parse_commit_specs(rendered)?;
    let mut seen = HashSet::new();
    let mut commits = Vec::new();
    for spec in &specs {
        let found = match spec {
            CommitSpec::One(one) => vec![resolve(repo, one)?.id()],
            CommitSpec::Range(from, to) => walk_range(repo, from, to)?,
        };
        commits.extend(found.into_iter().filter(|c| seen.insert(*c)));
    }
    refuse_shallow_boundary(repo, &commits)?;
    // A single range is already in walk order; anything else is sorted.
    let single_range = matches!(specs.as_slice(), [CommitSpec::Range(..)]);
    if !single_range {
        commits = newest_first(repo, commits)?;
    }
    let Some(touching) = touching.filter(|t| !t.trim().is_empty()) else {
        return Ok(commits);
    };
    let path = repository_path(repo, root, touching.trim());
    let mut kept = Vec::with_capacity(commits.len());
    for oid in &commits {
        let commit = repo
            .find_commit(*oid)
            .map_err(RevertError::git(format!("cannot read commit {oid}")))?;
        // A bad `mainline` is reported when the revert is computed.
        let parents = commit.parent_count();
        let parent = match mainline {
            Some(m) if parents > 1 && m >= 1 && (m as usize) <= parents => Some(m as usize - 1),
            _ => (parents > 0).then_some(0),
        };
        if changes_path(&commit, parent, &path)? {
            kept.push(*oid);
        }
    }
    if kept.is_empty() {
        let listed: Vec<String> = commits.iter().take(5).map(|c| short(*c)).collect();
        return Err(RevertError::Refused(format!(
            "none of the {} selected commits ({}{}) changes `{}`; check `touching:` (it is relative to the project root)",
            commits.len(),
            listed.join(", "),
            if commits.len() > 5 { ", …" } else { "" },
            path.display()
        )));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(text: &[&str]) -> Vec<CommitSpec> {
        parse_commit_specs(&text.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn commits_split_on_spaces_and_commas_and_ranges_default_to_head() {
        assert_eq!(
            specs(&["abc, def  a1..b2", "x.."]),
            vec![
                CommitSpec::One("abc".into()),
                CommitSpec::One("def".into()),
                CommitSpec::Range("a1".into(), "b2".into()),
                CommitSpec::Range("x".into(), "HEAD".into()),
            ]
        );
    }

    #[test]
    fn touching_is_relative_to_the_project_root_inside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let project = dir.path().join("services/api");
        std::fs::create_dir_all(&project).unwrap();
        let path = |t: &str| repository_path(&repo, &project, t);
        assert_eq!(path("src"), Path::new("services/api/src"));
        assert_eq!(path("./src/"), Path::new("services/api/src"));
        assert_eq!(path("../web"), Path::new("services/web"));
        assert_eq!(
            repository_path(&repo, dir.path(), "a.txt"),
            Path::new("a.txt")
        );
    }

    #[test]
    fn empty_and_symmetric_specs_are_refused_with_the_fix() {
        let empty = parse_commit_specs(&[" , ".to_owned()]).unwrap_err();
        assert!(empty.to_string().contains("empty once rendered"), "{empty}");
        let sym = parse_commit_specs(&["a...b".to_owned()]).unwrap_err();
        assert!(sym.to_string().contains("write `A..B`"), "{sym}");
    }
}
