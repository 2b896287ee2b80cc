//! The work tree a revert needs (on the configured branch, clean, nothing in the way of
//! the files the revert creates) and the safe checkout of the reverted tree.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{CheckoutNotificationType, ErrorCode, Oid, Repository, Status, StatusOptions, Tree};

use super::index_file::{self, Entry, Stamp};
use super::{ChangeKind, RevertError, short};

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
/// `scan` is the stat check started before the repository was opened, if any.
pub fn dirty_files(
    repo: &Repository,
    scan: Option<StatScan>,
) -> Result<Vec<DirtyFile>, RevertError> {
    if proven_clean(repo, scan).unwrap_or(false) {
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

/// What the stat data of one tracked file says, before the repository's settings are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stat {
    Clean,
    /// Changed, or a case left to the full status.
    Differs,
    /// Settings or the file's content decide.
    Unsure {
        /// Size, mtime and inode match.
        same: bool,
        /// The ctime differs (ignored with `core.trustctime=false`).
        ctime_differs: bool,
        /// The executable bit differs (ignored with `core.filemode=false`).
        mode_differs: bool,
    },
}

/// Settings that decide how a file's stat data compares with its index entry.
struct StatRules {
    trust_ctime: bool,
    file_mode: bool,
    /// Content filters (attributes, autocrlf) may apply: hashing a file proves nothing.
    filters: bool,
}

/// The stat data of the work tree's tracked files against the index file, as read
/// directly ([`index_file`](super::index_file)).
struct Scanned {
    git_dir: std::path::PathBuf,
    workdir: std::path::PathBuf,
    stamp: Stamp,
    entries: Vec<Entry>,
    /// The entries whose stat data does not settle it, by position (a thread stops at the
    /// first that `Differs`: nothing more is needed then).
    unsure: Vec<(usize, Stat)>,
}

/// The stat check, started on a thread of its own before the repository is opened:
/// libgit2's first use (OpenSSL's CA bundle) costs about as much as the stat calls, and
/// they need only the index file. [`dirty_files`] takes its result when it agrees with the
/// repository libgit2 opened, and does the check itself otherwise.
pub struct StatScan(std::thread::JoinHandle<Option<Scanned>>);

impl StatScan {
    /// Starts the check for the repository around `root` when it is a plain one (a `.git`
    /// folder in `root` or above).
    pub fn start(root: &Path) -> Option<Self> {
        let top = root.ancestors().find(|d| d.join(".git").is_dir())?;
        let workdir = top.to_path_buf();
        std::thread::Builder::new()
            .name("git_revert-stat".into())
            .spawn(move || {
                let git_dir = workdir.join(".git");
                let (entries, stamp) = read_index(&git_dir.join("index"))?;
                // One thread: libgit2 starts on the other core meanwhile.
                let unsure = scan_entries(&entries, &workdir, stamp.mtime, 1);
                Some(Scanned {
                    git_dir,
                    workdir,
                    stamp,
                    entries,
                    unsure,
                })
            })
            .ok()
            .map(Self)
    }

    /// The scan, if it read the index that `index` (libgit2's, just loaded) holds, in the
    /// repository `repo` opened, and the file is still the one read (`now`).
    fn finish(self, repo: &Repository, index: &git2::Index, now: Stamp) -> Option<Scanned> {
        let scanned = self.0.join().ok()??;
        let same_dir = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let ends_agree = |at: usize| {
            let (Some(ours), Some(theirs)) = (scanned.entries.get(at), index.get(at)) else {
                return false;
            };
            ours.path == theirs.path && ours.id == theirs.id.as_bytes()
        };
        let agrees = scanned.stamp == now
            && scanned.entries.len() == index.len()
            && (scanned.entries.is_empty() || (ends_agree(0) && ends_agree(index.len() - 1)))
            && same_dir(&scanned.git_dir, repo.path())
            && repo
                .workdir()
                .is_some_and(|w| same_dir(&scanned.workdir, w));
        if !agrees {
            tracing::debug!(
                "git_revert: the early stat scan does not match the repository: redone"
            );
        }
        agrees.then_some(scanned)
    }
}

#[cfg(unix)]
fn read_index(path: &Path) -> Option<(Vec<Entry>, Stamp)> {
    index_file::read(path)
}

#[cfg(not(unix))]
fn read_index(_path: &Path) -> Option<(Vec<Entry>, Stamp)> {
    None
}

/// The stat data of one tracked file against its entry, before any setting is known.
/// `index_mtime` is the index file's: entries written at or after it (racily clean) cannot
/// be trusted. `path` is the work tree's path with a trailing `/`, and is given back so.
#[cfg(unix)]
fn check_entry(entry: &Entry, path: &mut Vec<u8>, index_mtime: (i64, i64)) -> Stat {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    // Assume-valid, intent-to-add, skip-worktree, a conflict stage, and anything but a
    // plain file: the full status knows what they mean.
    if entry.flags & 0xb000 != 0 || entry.flags_extended & 0x6000 != 0 {
        return Stat::Differs;
    }
    match entry.mode & 0o170_000 {
        0o160_000 => return Stat::Clean, // a submodule: not part of the check
        0o100_000 => {}
        _ => return Stat::Differs,
    }
    let base = path.len();
    path.extend_from_slice(&entry.path);
    let meta = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(path));
    path.truncate(base);
    let Ok(meta) = meta else {
        return Stat::Differs;
    };
    if !meta.file_type().is_file() {
        return Stat::Differs;
    }
    // The index keeps 32 bits of each field, as git does.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the index stores 32-bit fields, as git truncates them"
    )]
    let (same, ctime_differs) = (
        meta.size() as u32 == entry.size
            && meta.mtime() as u32 == entry.mtime.0
            && meta.mtime_nsec() as u32 == entry.mtime.1
            && meta.ino() as u32 == entry.ino,
        meta.ctime() as u32 != entry.ctime.0 || meta.ctime_nsec() as u32 != entry.ctime.1,
    );
    let mode_differs = (entry.mode & 0o100 != 0) != (meta.mode() & 0o100 != 0);
    let racy = (i64::from(entry.mtime.0), i64::from(entry.mtime.1)) >= index_mtime;
    if same && !ctime_differs && !mode_differs && !racy {
        return Stat::Clean;
    }
    Stat::Unsure {
        same: same && !racy,
        ctime_differs,
        mode_differs,
    }
}

#[cfg(not(unix))]
fn check_entry(_entry: &Entry, _path: &mut Vec<u8>, _index_mtime: (i64, i64)) -> Stat {
    Stat::Differs
}

/// The entries whose stat data does not show them clean, with what it shows; stops at the
/// first that `Differs`. Like git's preloaded index, the stat calls are spread over
/// `threads` threads.
fn scan_entries(
    entries: &[Entry],
    workdir: &Path,
    index_mtime: (i64, i64),
    threads: usize,
) -> Vec<(usize, Stat)> {
    let chunk = entries.len().div_ceil(threads.max(1)).max(256);
    let mut root = workdir.as_os_str().as_encoded_bytes().to_vec();
    if root.last() != Some(&b'/') {
        root.push(b'/');
    }
    let root = &root;
    let scan = |from: usize, part: &[Entry]| {
        let mut unsure = Vec::new();
        let mut path = Vec::with_capacity(root.len() + 256);
        path.extend_from_slice(root);
        for (i, entry) in part.iter().enumerate() {
            match check_entry(entry, &mut path, index_mtime) {
                Stat::Clean => {}
                Stat::Differs => return vec![(from + i, Stat::Differs)],
                stat @ Stat::Unsure { .. } => unsure.push((from + i, stat)),
            }
        }
        unsure
    };
    std::thread::scope(|scope| {
        let mut parts = entries.chunks(chunk).enumerate();
        let first = parts.next();
        let handles: Vec<_> = parts
            .map(|(n, part)| scope.spawn(move || scan(n * chunk, part)))
            .collect();
        let mut unsure = first.map(|(_, part)| scan(0, part)).unwrap_or_default();
        for handle in handles {
            match handle.join() {
                Ok(found) => unsure.extend(found),
                Err(_) => unsure.push((0, Stat::Differs)),
            }
        }
        unsure
    })
}

/// True when attributes or `core.autocrlf` may filter content between the index and the
/// work tree.
fn filters_possible(repo: &Repository, config: &git2::Config, entries: &[Entry]) -> bool {
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
fn proven_clean(repo: &Repository, scan: Option<StatScan>) -> Result<bool, git2::Error> {
    let inconclusive = |why: &str| {
        tracing::debug!("git_revert: quick clean check inconclusive ({why}): full status");
        Ok(false)
    };
    let Some(workdir) = repo.workdir() else {
        return Ok(false);
    };
    let mut index = repo.index()?;
    // The file as it is now, should it have changed since the repository loaded it.
    index.read(false)?;
    if index.has_conflicts() {
        return inconclusive("conflicts");
    }
    let head_tree = repo.head()?.peel_to_tree()?;
    // Writes nothing when the tree cache is valid; otherwise the folders' trees (which both
    // runs keep in memory).
    if index.write_tree()? != head_tree.id() {
        return inconclusive("the index differs from HEAD");
    }
    let Ok(index_meta) = std::fs::metadata(repo.path().join("index")) else {
        return inconclusive("no index file");
    };
    let stamp = index_file::stamp(&index_meta);
    let (entries, unsure) = if let Some(scanned) = scan.and_then(|s| s.finish(repo, &index, stamp))
    {
        (scanned.entries, scanned.unsure)
    } else {
        let entries: Vec<Entry> = index.iter().map(|e| Entry::from_git2(&e)).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(8);
        let unsure = scan_entries(&entries, workdir, stamp.mtime, threads);
        (entries, unsure)
    };
    if unsure.is_empty() {
        return Ok(true);
    }
    if unsure.iter().any(|(_, s)| *s == Stat::Differs) {
        return inconclusive("a tracked file's stat data differs");
    }
    let config = repo.config()?.snapshot()?;
    let rules = StatRules {
        trust_ctime: config.get_bool("core.trustctime").unwrap_or(true),
        file_mode: config.get_bool("core.filemode").unwrap_or(true),
        filters: filters_possible(repo, &config, &entries),
    };
    for (at, stat) in unsure {
        let Stat::Unsure {
            same,
            ctime_differs,
            mode_differs,
        } = stat
        else {
            continue;
        };
        if mode_differs && rules.file_mode {
            return inconclusive("a tracked file's mode differs");
        }
        if same && !(ctime_differs && rules.trust_ctime) {
            continue;
        }
        let entry = &entries[at];
        if rules.filters {
            return inconclusive("a tracked file's stat data differs");
        }
        let path = workdir.join(super::bytes_path(&entry.path));
        match git2::Oid::hash_file(git2::ObjectType::Blob, &path) {
            Ok(id) if id.as_bytes() == entry.id => {}
            Ok(_) | Err(_) => return inconclusive("a tracked file's content differs"),
        }
    }
    Ok(true)
}

#[cfg(not(unix))]
fn proven_clean(_repo: &Repository, _scan: Option<StatScan>) -> Result<bool, git2::Error> {
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
    let changes = super::plan::tree_changes(repo, &head_tree, &new_tree)
        .map_err(RevertError::git("cannot compare the reverted tree"))?;
    let mut in_the_way = BTreeSet::new();
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Added) {
        let path = super::bytes_path(&change.path);
        let path = path.as_path();
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
    let changes = super::plan::tree_changes(repo, &head_tree, &tree)
        .map_err(RevertError::git("cannot compare the reverted tree"))?;
    let mut obstacles = Vec::new();
    let result = {
        let mut builder = CheckoutBuilder::new();
        builder.safe().disable_pathspec_match(true);
        for change in changes {
            builder.path(change.path);
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
