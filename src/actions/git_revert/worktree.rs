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
    if proven_clean(repo).unwrap_or(false) {
        return Ok(Vec::new());
    }
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

/// What the stat data of one tracked file says.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stat {
    Clean,
    /// Changed, or a case left to the full status.
    Differs,
}

/// Settings that decide how a file's stat data compares with its index entry.
struct StatRules {
    /// Entries written at or after the index (racily clean) cannot be trusted.
    index_mtime: (i64, i64),
    trust_ctime: bool,
    file_mode: bool,
    /// Content filters (attributes, autocrlf) may apply: hashing a file proves nothing.
    filters: bool,
}

#[cfg(unix)]
fn check_entry(entry: &git2::IndexEntry, workdir: &Path, rules: &StatRules) -> Stat {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    // Assume-valid, intent-to-add, skip-worktree, and anything but a plain file: the full
    // status knows what they mean.
    if entry.flags & 0x8000 != 0 || entry.flags_extended & 0x6000 != 0 {
        return Stat::Differs;
    }
    match entry.mode & 0o170_000 {
        0o160_000 => return Stat::Clean, // a submodule: not part of the check
        0o100_000 => {}
        _ => return Stat::Differs,
    }
    let path = workdir.join(std::ffi::OsStr::from_bytes(&entry.path));
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Stat::Differs;
    };
    if !meta.file_type().is_file()
        || (rules.file_mode && (entry.mode & 0o100 != 0) != (meta.mode() & 0o100 != 0))
    {
        return Stat::Differs;
    }
    // The index keeps 32 bits of each field, as git does.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the index stores 32-bit fields"
    )]
    let same = meta.size() as u32 == entry.file_size
        && meta.mtime() as i32 == entry.mtime.seconds()
        && meta.mtime_nsec() as u32 == entry.mtime.nanoseconds()
        && meta.ino() as u32 == entry.ino
        && (!rules.trust_ctime
            || (meta.ctime() as i32 == entry.ctime.seconds()
                && meta.ctime_nsec() as u32 == entry.ctime.nanoseconds()));
    let racy = (
        i64::from(entry.mtime.seconds()),
        i64::from(entry.mtime.nanoseconds()),
    ) >= rules.index_mtime;
    if same && !racy {
        return Stat::Clean;
    }
    if rules.filters {
        return Stat::Differs;
    }
    match git2::Oid::hash_file(git2::ObjectType::Blob, &path) {
        Ok(id) if id == entry.id => Stat::Clean,
        Ok(_) | Err(_) => Stat::Differs,
    }
}

/// True when attributes or `core.autocrlf` may filter content between the index and the
/// work tree.
fn filters_possible(
    repo: &Repository,
    config: &git2::Config,
    entries: &[git2::IndexEntry],
) -> bool {
    let autocrlf = config
        .get_string("core.autocrlf")
        .is_ok_and(|v| !v.eq_ignore_ascii_case("false"));
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .map(|d| d.join("git/attributes"));
    autocrlf
        || config.get_string("core.attributesfile").is_ok()
        || repo.path().join("info/attributes").exists()
        || xdg.is_some_and(|p| p.exists())
        || Path::new("/etc/gitattributes").exists()
        || entries
            .iter()
            .any(|e| e.path == b".gitattributes" || e.path.ends_with(b"/.gitattributes"))
}

/// The cheap proof that the work tree is clean, as git's own index refresh gives it:
/// nothing staged (the index's tree is HEAD's, known at once from the index's tree cache),
/// and every tracked file's stat data matching its index entry, or its content matching
/// where the stat data cannot vouch for it. `false` proves nothing: the full status decides.
#[cfg(unix)]
fn proven_clean(repo: &Repository) -> Result<bool, git2::Error> {
    use std::os::unix::fs::MetadataExt;
    let Some(workdir) = repo.workdir() else {
        return Ok(false);
    };
    let mut index = repo.index()?;
    if index.has_conflicts() {
        return Ok(false);
    }
    let head_tree = repo.head()?.peel_to_tree()?;
    // Writes nothing when the tree cache is valid; otherwise the folders' trees (which the
    // dry-run keeps in memory).
    if index.write_tree()? != head_tree.id() {
        return Ok(false);
    }
    let Ok(index_meta) = std::fs::metadata(repo.path().join("index")) else {
        return Ok(false);
    };
    let config = repo.config()?.snapshot()?;
    let entries: Vec<git2::IndexEntry> = index.iter().collect();
    let rules = StatRules {
        index_mtime: (index_meta.mtime(), index_meta.mtime_nsec()),
        trust_ctime: config.get_bool("core.trustctime").unwrap_or(true),
        file_mode: config.get_bool("core.filemode").unwrap_or(true),
        filters: filters_possible(repo, &config, &entries),
    };
    // Like git's preloaded index: the stat calls are spread over threads.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8);
    let chunk = entries.len().div_ceil(threads).max(256);
    let worst = std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                let rules = &rules;
                scope.spawn(move || {
                    part.iter()
                        .map(|e| check_entry(e, workdir, rules))
                        .find(|s| *s == Stat::Differs)
                        .unwrap_or(Stat::Clean)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Stat::Differs))
            .max()
            .unwrap_or(Stat::Clean)
    });
    Ok(worst == Stat::Clean)
}

#[cfg(not(unix))]
fn proven_clean(_repo: &Repository) -> Result<bool, git2::Error> {
    Ok(false)
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

/// Makes the index and the work tree match `tree`, changing only the files that differ
/// from HEAD. libgit2 looks for every obstacle before it writes a file: on failure nothing
/// changed.
pub(super) fn checkout(repo: &Repository, head: Oid, tree: Oid) -> Result<(), RevertError> {
    let head_tree = repo
        .find_commit(head)
        .and_then(|c| c.tree())
        .map_err(RevertError::git("cannot read HEAD's tree"))?;
    let tree = repo
        .find_tree(tree)
        .map_err(RevertError::git("cannot read the reverted tree"))?;
    let diff = repo
        .diff_tree_to_tree(Some(&head_tree), Some(&tree), None)
        .map_err(RevertError::git("cannot compare the reverted tree"))?;
    let mut obstacles = Vec::new();
    let result = {
        let mut builder = CheckoutBuilder::new();
        builder.safe().disable_pathspec_match(true);
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(path) = file.path() {
                    builder.path(path);
                }
            }
        }
        builder
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
            format!(
                "cannot update the work tree: {}; nothing was changed",
                e.message()
            )
        } else {
            format!(
                "files in the work tree are in the way: {}; move or commit them, then run again; nothing was changed",
                obstacles.join(", ")
            )
        })
    })
}
