//! The work tree a revert needs (on the configured branch, clean, nothing in the way of
//! the files the revert creates) and the safe checkout of the reverted tree.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{
    CheckoutNotificationType, Delta, ErrorCode, Oid, Repository, Status, StatusOptions, Tree,
};

use super::{RevertError, short};

/// A tracked file whose content differs from HEAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyFile {
    pub path: String,
    /// `modified`, `staged`, `staged and modified`, or `conflicted`.
    pub how: &'static str,
}

impl fmt::Display for DirtyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path, self.how)
    }
}

/// The tracked files modified or staged (untracked and ignored files do not count).
pub fn dirty_files(repo: &Repository) -> Result<Vec<DirtyFile>, RevertError> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(false)
        .include_ignored(false)
        .exclude_submodules(true)
        .renames_head_to_index(false)
        .renames_index_to_workdir(false);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(RevertError::git("cannot read the work tree's status"))?;
    let staged = Status::INDEX_NEW
        | Status::INDEX_MODIFIED
        | Status::INDEX_DELETED
        | Status::INDEX_RENAMED
        | Status::INDEX_TYPECHANGE;
    let modified =
        Status::WT_MODIFIED | Status::WT_DELETED | Status::WT_RENAMED | Status::WT_TYPECHANGE;
    Ok(statuses
        .iter()
        .filter_map(|entry| {
            let status = entry.status();
            let how = if status.contains(Status::CONFLICTED) {
                "conflicted"
            } else {
                match (status.intersects(staged), status.intersects(modified)) {
                    (true, true) => "staged and modified",
                    (true, false) => "staged",
                    (false, true) => "modified",
                    (false, false) => return None,
                }
            };
            Some(DirtyFile {
                path: String::from_utf8_lossy(entry.path_bytes()).into_owned(),
                how,
            })
        })
        .collect())
}

/// HEAD's commit when HEAD is the branch `branch`; otherwise what is wrong and the fix.
pub fn check_branch(repo: &Repository, branch: &str) -> Result<Oid, RevertError> {
    let head = match repo.head() {
        Ok(head) => head,
        Err(e) if e.code() == ErrorCode::UnbornBranch => {
            let on = repo
                .find_reference("HEAD")
                .ok()
                .and_then(|h| {
                    h.symbolic_target_bytes()
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                })
                .unwrap_or_default();
            return Err(RevertError::Refused(format!(
                "branch `{}` has no commits yet: there is nothing to revert",
                on.trim_start_matches("refs/heads/")
            )));
        }
        Err(e) => return Err(RevertError::git("cannot read HEAD")(e)),
    };
    let at = head.target().map(short).unwrap_or_default();
    if !head.is_branch() {
        return Err(RevertError::Refused(format!(
            "HEAD is detached at {at}, not on branch `{branch}` (release.yaml's repository.branch); switch to it first (`git switch {branch}`)"
        )));
    }
    let on = String::from_utf8_lossy(head.shorthand_bytes()).into_owned();
    if on != branch {
        return Err(RevertError::Refused(format!(
            "the work tree is on branch `{on}`, but release.yaml's repository.branch is `{branch}`; switch to it first (`git switch {branch}`) or change repository.branch"
        )));
    }
    head.target()
        .ok_or_else(|| RevertError::Refused("HEAD does not point to a commit".into()))
}

/// Files not tracked at HEAD under `dir` (on disk), as repository paths.
fn untracked_under(dir: &Path, repo_dir: &str, head_tree: &Tree<'_>, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let repo_path = format!("{repo_dir}/{name}");
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            untracked_under(&entry.path(), &repo_path, head_tree, out);
        } else if head_tree.get_path(Path::new(&repo_path)).is_err() {
            out.insert(repo_path);
        }
    }
}

/// Paths on disk that are not tracked at `head` and stand where the reverted `tree` puts
/// a file: `git revert` would refuse to overwrite them, and so does `git_revert`.
pub fn paths_in_the_way(
    repo: &Repository,
    head: Oid,
    tree: Oid,
) -> Result<Vec<String>, RevertError> {
    let Some(workdir) = repo.workdir() else {
        return Ok(Vec::new());
    };
    let head_tree = repo
        .find_commit(head)
        .and_then(|c| c.tree())
        .map_err(RevertError::git("cannot read HEAD's tree"))?;
    if head_tree.id() == tree {
        return Ok(Vec::new());
    }
    let new_tree = repo
        .find_tree(tree)
        .map_err(RevertError::git("cannot read the reverted tree"))?;
    let diff = repo
        .diff_tree_to_tree(Some(&head_tree), Some(&new_tree), None)
        .map_err(RevertError::git("cannot compare the reverted tree"))?;
    let mut in_the_way = BTreeSet::new();
    for delta in diff.deltas().filter(|d| d.status() == Delta::Added) {
        let Some(path) = delta.new_file().path() else {
            continue;
        };
        // A folder on the way that is a file on disk, not tracked (a tracked one goes).
        let mut blocked_above = false;
        for ancestor in path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
        {
            if let Ok(meta) = std::fs::symlink_metadata(workdir.join(ancestor))
                && !meta.is_dir()
                && head_tree.get_path(ancestor).is_err()
            {
                in_the_way.insert(ancestor.to_string_lossy().into_owned());
                blocked_above = true;
            }
        }
        if blocked_above {
            continue;
        }
        let on_disk = workdir.join(path);
        match std::fs::symlink_metadata(&on_disk) {
            Ok(meta) if meta.is_dir() => {
                untracked_under(
                    &on_disk,
                    &path.to_string_lossy(),
                    &head_tree,
                    &mut in_the_way,
                );
            }
            Ok(_) => {
                in_the_way.insert(path.to_string_lossy().into_owned());
            }
            Err(_) => {}
        }
    }
    Ok(in_the_way.into_iter().collect())
}

/// Makes the index and the work tree match `tree`, changing only what differs from HEAD.
/// libgit2 looks for every obstacle before it writes a file: on failure nothing changed.
pub(super) fn checkout(repo: &Repository, tree: Oid) -> Result<(), RevertError> {
    let tree = repo
        .find_tree(tree)
        .map_err(RevertError::git("cannot read the reverted tree"))?;
    let mut obstacles = Vec::new();
    let result = {
        let mut builder = CheckoutBuilder::new();
        builder
            .safe()
            .notify_on(CheckoutNotificationType::CONFLICT)
            .notify(|_, path, _, _, _| {
                if let Some(path) = path {
                    obstacles.push(path.display().to_string());
                }
                true
            });
        repo.checkout_tree(tree.as_object(), Some(&mut builder))
    };
    result.map_err(|e| {
        RevertError::Refused(if obstacles.is_empty() {
            format!("cannot update the work tree: {}; nothing was changed", e.message())
        } else {
            format!(
                "files in the work tree are in the way: {}; move or commit them, then run again; nothing was changed",
                obstacles.join(", ")
            )
        })
    })
}
