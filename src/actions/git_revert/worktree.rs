//! The work tree a revert needs (on the configured branch, clean, nothing in the way of
//! the files the revert creates) and the safe checkout of the reverted tree.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use git2::build::CheckoutBuilder;
use git2::{CheckoutNotificationType, ErrorCode, Oid, Repository, Status, StatusOptions, Tree};

use super::index_file::{self, Entry, Stamp};
use super::{ChangeKind, RevertError, short};

/// A tracked file whose content differs from HEAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyFile {
    pub path: String,
    /// `modified`, `deleted`, `staged`, `staged and modified`, `staged and deleted`, or
    /// `conflicted`.
    pub how: &'static str,
}

impl fmt::Display for DirtyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path, self.how)
    }
}

/// Whether the work-tree check may run filter drivers' clean commands (git LFS). The real
/// run does, as `git status` does; a dry-run runs no process but declared `plan` commands
/// (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanCommands {
    Run,
    NotRun,
}

/// What the work-tree check found.
#[derive(Debug, Default)]
pub struct WorkTreeCheck {
    /// The tracked files modified or staged.
    pub dirty: Vec<DirtyFile>,
    /// Files that look modified to libgit2 but go through a filter driver (path, driver):
    /// only its clean command can tell, and it was not run ([`CleanCommands::NotRun`]).
    pub unverified: Vec<(String, String)>,
}

/// The tracked files modified or staged (untracked and ignored files do not count).
/// `scan` is the stat check started before the repository was opened, if any.
pub fn dirty_files(
    repo: &Repository,
    scan: Option<StatScan>,
    clean: CleanCommands,
) -> Result<WorkTreeCheck, RevertError> {
    if proven_clean(repo, scan).unwrap_or(false) {
        return Ok(WorkTreeCheck::default());
    }
    check_index(repo)?;
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
    // libgit2 cannot run filter drivers (git LFS): a file it sees as modified may be its
    // index entry once cleaned as git cleans it.
    let mut filters: Option<bool> = None;
    let mut unverified = Vec::new();
    let mut clean_through_driver = |entry: &git2::StatusEntry<'_>| {
        let has_filters = *filters.get_or_insert_with(|| {
            super::filters::configured(repo).is_ok_and(|keys| !keys.is_empty())
        });
        if !has_filters {
            return false;
        }
        let path = entry.path_bytes();
        match clean {
            CleanCommands::Run => entry
                .index_to_workdir()
                .is_some_and(|delta| super::filters::cleans_to(repo, path, delta.old_file().id())),
            CleanCommands::NotRun => match super::filters::clean_command(repo, path) {
                Some((driver, _)) => {
                    unverified.push((String::from_utf8_lossy(path).into_owned(), driver));
                    true
                }
                None => false,
            },
        }
    };
    let dirty = statuses
        .iter()
        .filter_map(|entry| {
            let status = entry.status();
            if status == Status::WT_MODIFIED && clean_through_driver(&entry) {
                return None;
            }
            let how = if status.contains(Status::CONFLICTED) {
                "conflicted"
            } else {
                let deleted = status.contains(Status::WT_DELETED);
                match (status.intersects(staged), status.intersects(modified)) {
                    (true, true) if deleted => "staged and deleted",
                    (true, true) => "staged and modified",
                    (true, false) => "staged",
                    (false, true) if deleted => "deleted",
                    (false, true) => "modified",
                    (false, false) => return None,
                }
            };
            Some(DirtyFile {
                path: String::from_utf8_lossy(entry.path_bytes()).into_owned(),
                how,
            })
        })
        .collect();
    Ok(WorkTreeCheck { dirty, unverified })
}

/// The index entry flag of a file left out of the work tree (`flags_extended`).
const SKIP_WORKTREE: u16 = 0x4000;

/// Refuses what libgit2 cannot revert in, with git's command to leave it: an index it
/// cannot read (split, or sparse), or tracked files marked skip-worktree (a sparse
/// checkout), which its status and checkout take for deleted files.
fn check_index(repo: &Repository) -> Result<(), RevertError> {
    let index = repo
        .index()
        .map_err(|e| RevertError::Refused(unreadable_index(&e)))?;
    let mut skipped = index
        .iter()
        .filter(|entry| entry.flags_extended & SKIP_WORKTREE != 0);
    let Some(first) = skipped.next() else {
        return Ok(());
    };
    let first = String::from_utf8_lossy(&first.path).into_owned();
    let left_out = match skipped.count() {
        0 => format!("{first} is left out of the work tree"),
        more => format!("{first} and {more} more tracked files are left out of the work tree"),
    };
    Err(RevertError::Refused(format!(
        "{left_out} (skip-worktree: a sparse checkout), and libgit2 cannot revert in such a work tree; run `git sparse-checkout disable` (or `git update-index --no-skip-worktree PATH` for files marked by hand), then run again"
    )))
}

/// Why the index cannot be read, and the fix.
fn unreadable_index(error: &git2::Error) -> String {
    let message = error.message();
    if message.contains("extension: 'link'") {
        "the index is split (core.splitIndex), a format libgit2 cannot read; run `git config core.splitIndex false && git update-index --no-split-index`, then run again".to_owned()
    } else if message.contains("extension: 'sdir'") {
        "the index is sparse (a sparse checkout with --sparse-index), a format libgit2 cannot read; run `git sparse-checkout disable`, then run again".to_owned()
    } else {
        format!(
            "cannot read the index ({message}); `git status` shows whether git can, and `git update-index --index-version 2` rewrites it in its plainest format"
        )
    }
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
    index: index_file::Index,
    /// The entries whose stat data does not settle it, by position (the scan stops at the
    /// first that `Differs`: nothing more is needed then).
    unsure: Vec<(usize, Stat)>,
}

/// Entries per unit of work: a thread takes the next unit until none is left.
const CHUNK: usize = 128;

/// The stat calls of one scan, shared by its thread and by whoever waits for it
/// ([`StatScan::finish`] helps rather than waits).
struct Work {
    workdir: PathBuf,
    /// The index file as read (by the scan's thread, first), or `None` when it could not be.
    index: OnceLock<Option<(index_file::Index, Stamp)>>,
    /// The next unit to take.
    next: AtomicUsize,
    /// Set when a file `Differs` (or the scan is no longer wanted): the rest is skipped.
    stop: AtomicBool,
}

impl Work {
    fn new(workdir: PathBuf, index: OnceLock<Option<(index_file::Index, Stamp)>>) -> Self {
        Self {
            workdir,
            index,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Takes units until none is left; what this thread found.
    fn drain(&self) -> Vec<(usize, Stat)> {
        let Some(Some((index, stamp))) = self.index.get() else {
            return Vec::new();
        };
        let entries = &index.entries;
        let mut dirs = Dirs::open(&self.workdir);
        let mut unsure = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let from = self
                .next
                .fetch_add(1, Ordering::Relaxed)
                .saturating_mul(CHUNK);
            let Some(part) = entries.get(from..) else {
                break;
            };
            for (i, entry) in part.iter().take(CHUNK).enumerate() {
                match check_entry(entry, &mut dirs, stamp.mtime) {
                    Stat::Clean => {}
                    Stat::Differs => {
                        self.stop.store(true, Ordering::Relaxed);
                        return vec![(from + i, Stat::Differs)];
                    }
                    stat @ Stat::Unsure { .. } => unsure.push((from + i, stat)),
                }
            }
        }
        unsure
    }
}

/// The stat check, started on a thread of its own before the repository is opened:
/// libgit2's first use (OpenSSL's CA bundle) costs about as much as the stat calls, and
/// they need only the index file. [`dirty_files`] takes its result when it read the index
/// file that is there now, in the repository libgit2 opened, and does the check itself
/// otherwise.
pub struct StatScan {
    git_dir: PathBuf,
    work: Arc<Work>,
    thread: std::thread::JoinHandle<Vec<(usize, Stat)>>,
}

impl StatScan {
    /// Starts the check for the repository around `root` when it is a plain one (a `.git`
    /// folder in `root` or above).
    pub fn start(root: &Path) -> Option<Self> {
        let top = root.ancestors().find(|d| d.join(".git").is_dir())?;
        let git_dir = top.join(".git");
        let work = Arc::new(Work::new(top.to_path_buf(), OnceLock::new()));
        let (shared, index_file) = (Arc::clone(&work), git_dir.join("index"));
        let thread = std::thread::Builder::new()
            .name("git_revert-stat".into())
            .spawn(move || {
                let index = shared.index.get_or_init(|| read_index(&index_file));
                if index.is_some() {
                    shared.drain()
                } else {
                    Vec::new()
                }
            })
            .ok()?;
        Some(Self {
            git_dir,
            work,
            thread,
        })
    }

    /// The scan, if it read the index file that is there now (`now`), in the repository
    /// `repo` opened. The calling thread takes a share of the stat calls left.
    fn finish(self, repo: &Repository, now: Stamp) -> Option<Scanned> {
        let Self {
            git_dir,
            work,
            thread,
        } = self;
        let same_dir = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        // The thread reads the index first thing; should it not have yet, it is read here.
        let read = work
            .index
            .get_or_init(|| read_index(&git_dir.join("index")))
            .as_ref()
            .map(|(_, stamp)| *stamp);
        let agrees = read == Some(now)
            && same_dir(&git_dir, repo.path())
            && repo.workdir().is_some_and(|w| same_dir(&work.workdir, w));
        let mut unsure = if agrees {
            work.drain()
        } else {
            tracing::debug!(
                "git_revert: the early stat scan does not match the repository: redone"
            );
            work.stop.store(true, Ordering::Relaxed);
            Vec::new()
        };
        unsure.extend(thread.join().ok()?);
        let (index, _) = Arc::into_inner(work)?.index.into_inner()??;
        agrees.then_some(Scanned { index, unsure })
    }
}

#[cfg(unix)]
fn read_index(path: &Path) -> Option<(index_file::Index, Stamp)> {
    index_file::read(path)
}

#[cfg(not(unix))]
fn read_index(_path: &Path) -> Option<(index_file::Index, Stamp)> {
    None
}

/// The work tree's folders, opened as the scan goes (entries are sorted, so a folder's
/// files come together): each stat call then walks one name, not the whole path.
struct Dirs {
    #[cfg(unix)]
    root: Option<rustix::fd::OwnedFd>,
    #[cfg(unix)]
    current: Option<(Vec<u8>, Option<rustix::fd::OwnedFd>)>,
}

impl Dirs {
    #[cfg(unix)]
    fn open(workdir: &Path) -> Self {
        use rustix::fs::{Mode, OFlags};
        Self {
            root: rustix::fs::open(
                workdir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok(),
            current: None,
        }
    }

    #[cfg(not(unix))]
    fn open(_workdir: &Path) -> Self {
        Self {}
    }

    /// The `lstat` of the tracked file at `path` (relative to the work tree); `None` when
    /// it (or its folder) cannot be read.
    #[cfg(unix)]
    fn lstat(&mut self, path: &[u8]) -> Option<rustix::fs::Stat> {
        use rustix::fs::{AtFlags, Mode, OFlags};
        use std::os::unix::ffi::OsStrExt as _;
        let root = self.root.as_ref()?;
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(at) => (&path[..at], &path[at + 1..]),
            None => (&path[..0], path),
        };
        let name = std::ffi::OsStr::from_bytes(name);
        if dir.is_empty() {
            return rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        }
        if self.current.as_ref().is_none_or(|(open, _)| open != dir) {
            // As `lstat` of the whole path would: links above the file are followed.
            let fd = rustix::fs::openat(
                root,
                std::ffi::OsStr::from_bytes(dir),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok();
            self.current = Some((dir.to_vec(), fd));
        }
        let (_, fd) = self.current.as_ref()?;
        rustix::fs::statat(fd.as_ref()?, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }
}

/// The stat data of one tracked file against its entry, before any setting is known.
/// `index_mtime` is the index file's: entries written at or after it (racily clean) cannot
/// be trusted.
#[cfg(unix)]
fn check_entry(entry: &Entry, dirs: &mut Dirs, index_mtime: (i64, i64)) -> Stat {
    use rustix::fs::FileType;
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
    let Some(meta) = dirs.lstat(&entry.path) else {
        return Stat::Differs;
    };
    if FileType::from_raw_mode(meta.st_mode) != FileType::RegularFile {
        return Stat::Differs;
    }
    // The index keeps 32 bits of each field, as git does.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the index stores 32-bit fields, as git truncates them"
    )]
    let (same, ctime_differs) = (
        meta.st_size as u32 == entry.size
            && meta.st_mtime as u32 == entry.mtime.0
            && meta.st_mtime_nsec as u32 == entry.mtime.1
            && meta.st_ino as u32 == entry.ino,
        meta.st_ctime as u32 != entry.ctime.0 || meta.st_ctime_nsec as u32 != entry.ctime.1,
    );
    let mode_differs = (entry.mode & 0o100 != 0) != (meta.st_mode & 0o100 != 0);
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
fn check_entry(_entry: &Entry, _dirs: &mut Dirs, _index_mtime: (i64, i64)) -> Stat {
    Stat::Differs
}

/// The entries whose stat data does not show them clean, with what it shows; stops at the
/// first that `Differs`. Like git's preloaded index, the stat calls are spread over
/// `threads` threads.
fn scan_entries(
    index: index_file::Index,
    stamp: Stamp,
    workdir: &Path,
    threads: usize,
) -> Option<Scanned> {
    let work = Work::new(workdir.to_path_buf(), OnceLock::from(Some((index, stamp))));
    let unsure = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.max(1))
            .map(|_| scope.spawn(|| work.drain()))
            .collect();
        let mut unsure = work.drain();
        for helper in helpers {
            match helper.join() {
                Ok(found) => unsure.extend(found),
                Err(_) => unsure.push((0, Stat::Differs)),
            }
        }
        unsure
    });
    let (index, _) = work.index.into_inner().flatten()?;
    Some(Scanned { index, unsure })
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
    let head_tree = repo.head()?.peel_to_tree()?.id();
    let Ok(index_meta) = std::fs::metadata(repo.path().join("index")) else {
        return inconclusive("no index file");
    };
    let now = index_file::stamp(&index_meta);
    let scanned = scan.and_then(|s| s.finish(repo, now));
    // The index file's own tree cache shows nothing is staged without libgit2 loading the
    // index; otherwise libgit2 decides, from the file as it is now.
    let staged_checked = scanned
        .as_ref()
        .and_then(|s| s.index.tree)
        .is_some_and(|tree| tree.as_slice() == head_tree.as_bytes());
    let scanned = if staged_checked {
        scanned
    } else {
        let mut index = repo.index()?;
        index.read(false)?;
        if index.has_conflicts() {
            return inconclusive("conflicts");
        }
        // Writes nothing when the tree cache is valid; otherwise the folders' trees (which
        // both runs keep in memory).
        if index.write_tree()? != head_tree {
            return inconclusive("the index differs from HEAD");
        }
        match scanned {
            Some(scanned) if scanned.index.entries.len() == index.len() => Some(scanned),
            _ => {
                let entries = index.iter().map(|e| Entry::from_git2(&e)).collect();
                let threads = std::thread::available_parallelism()
                    .map_or(1, std::num::NonZero::get)
                    .min(8);
                let index = index_file::Index {
                    entries,
                    tree: None,
                };
                scan_entries(index, now, workdir, threads)
            }
        }
    };
    let Some(Scanned { index, unsure, .. }) = scanned else {
        return inconclusive("the index could not be scanned");
    };
    let entries = index.entries;
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

/// git's lock files that a real run needs free: the index's, HEAD's and the branch's. One
/// that exists means another git process is at work here, or a crashed one left it: git
/// refuses then, and so does `git_revert`, before it changes anything (libgit2 would find
/// the index's lock only once the work tree is written).
pub fn held_locks(repo: &Repository, branch: &str) -> Option<String> {
    let candidates = [
        repo.path().join("index.lock"),
        repo.path().join("HEAD.lock"),
        repo.commondir()
            .join("refs/heads")
            .join(format!("{branch}.lock")),
    ];
    let held: Vec<String> = candidates
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if held.is_empty() {
        return None;
    }
    Some(format!(
        "git's lock {} {} exists: another git process is working in this repository, or one crashed and left {}; wait for it to finish, or if no git process is running, remove {} (`rm {}`)",
        if held.len() == 1 { "file" } else { "files" },
        held.join(", "),
        if held.len() == 1 { "it" } else { "them" },
        if held.len() == 1 { "it" } else { "them" },
        crate::actions::run::show_argv(&held),
    ))
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
pub(super) fn checkout(
    repo: &Repository,
    head: Oid,
    tree: Oid,
) -> Result<Vec<super::plan::TreeChange>, RevertError> {
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
    let mut result = {
        let mut builder = only(&changes);
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
    // libgit2 cannot run filter drivers (git LFS), so it takes a smudged file whose stat
    // data proves nothing for a modified one. When every obstacle is its index entry once
    // cleaned as git cleans it, nothing is in the way: the same files again, forced.
    if result.is_err()
        && !obstacles.is_empty()
        && obstacles.iter().all(|p| clean_through_filter(repo, p))
    {
        obstacles.clear();
        let mut builder = only(&changes);
        builder.force();
        result = repo.checkout_tree(tree.as_object(), Some(&mut builder));
    }
    let Err(e) = result else {
        return Ok(changes);
    };
    Err(RevertError::Refused(if obstacles.is_empty() {
        // The writing failed, perhaps halfway (or only the index, locked meanwhile):
        // the changed files go back to HEAD's, leaving the index alone.
        format!(
            "cannot update the work tree: {}; {}",
            e.message(),
            match restore(repo, &head_tree, &changes) {
                Ok(()) => restored_message(repo, &head_tree, &changes),
                Err(_) => unrestored_message(&head_tree, &changes),
            }
        )
    } else {
        format!(
            "files in the work tree are in the way: {}; move or commit them, then run again; nothing was changed",
            obstacles.join(", ")
        )
    }))
}

/// After [`restore`]: nothing changed, unless some of the files go through a filter driver
/// (git LFS), which libgit2 cannot run: those hold the content as stored (for LFS, the
/// pointer) until git's checkout smudges them.
fn restored_message(
    repo: &Repository,
    head_tree: &Tree<'_>,
    changes: &[super::plan::TreeChange],
) -> String {
    let stored: Vec<String> = super::filters::configured(repo)
        .ok()
        .filter(|configured| !configured.is_empty())
        .and_then(|configured| {
            let in_head: Vec<(Vec<u8>, Oid)> = changes
                .iter()
                .filter_map(|c| {
                    let entry = head_tree.get_path(&super::bytes_path(&c.path)).ok()?;
                    (entry.kind() == Some(git2::ObjectType::Blob))
                        .then(|| (c.path.clone(), entry.id()))
                })
                .collect();
            super::filters::filtered(repo, &configured, &in_head).ok()
        })
        .unwrap_or_default()
        .iter()
        .map(|f| String::from_utf8_lossy(&f.path).into_owned())
        .collect();
    if stored.is_empty() {
        return "the files are back as they were; nothing was changed".into();
    }
    let mut checkout: Vec<String> = ["git", "checkout", "--"].map(String::from).to_vec();
    checkout.extend(stored.iter().cloned());
    format!(
        "the files are back as HEAD stores them, and nothing else changed, but {} of a filter driver (git LFS) now hold the stored content (for LFS, the pointer): `{}` runs the driver",
        stored.join(", "),
        crate::actions::run::show_argv(&checkout)
    )
}

/// When [`restore`] failed too: what may be left, and git's commands that put it back
/// (HEAD's files checked out again, the files the revert added removed).
pub(super) fn unrestored_message(
    head_tree: &Tree<'_>,
    changes: &[super::plan::TreeChange],
) -> String {
    let (in_head, added): (Vec<_>, Vec<_>) = changes
        .iter()
        .partition(|c| head_tree.get_path(&super::bytes_path(&c.path)).is_ok());
    let paths = |changes: Vec<&super::plan::TreeChange>| -> Vec<String> {
        changes
            .iter()
            .map(|c| String::from_utf8_lossy(&c.path).into_owned())
            .collect()
    };
    let (in_head, added) = (paths(in_head), paths(added));
    let mut fixes = Vec::new();
    if !in_head.is_empty() {
        let mut argv: Vec<String> = ["git", "--literal-pathspecs", "checkout", "-f", "HEAD", "--"]
            .map(String::from)
            .to_vec();
        argv.extend(in_head);
        fixes.push(format!("`{}`", crate::actions::run::show_argv(&argv)));
    }
    if !added.is_empty() {
        let mut argv: Vec<String> = ["rm", "-f", "--"].map(String::from).to_vec();
        argv.extend(added);
        fixes.push(format!("`{}`", crate::actions::run::show_argv(&argv)));
    }
    format!(
        "some files may hold the revert (`git status` shows them); {} put{} them back",
        fixes.join(" and "),
        if fixes.len() == 1 { "s" } else { "" }
    )
}

/// Puts the `changes`' paths back as HEAD has them, without touching the index: after a
/// checkout that failed while or after writing files.
fn restore(
    repo: &Repository,
    head_tree: &Tree<'_>,
    changes: &[super::plan::TreeChange],
) -> Result<(), git2::Error> {
    let mut builder = only(changes);
    builder.force().remove_untracked(true).update_index(false);
    repo.checkout_tree(head_tree.as_object(), Some(&mut builder))
}

/// Puts the `changes`' paths back as the current HEAD has them, in the index and the work
/// tree, leaving every other file alone: after a checkout whose branch could not move.
pub(super) fn put_back(
    repo: &Repository,
    changes: &[super::plan::TreeChange],
) -> Result<(), git2::Error> {
    let mut builder = only(changes);
    builder.force().remove_untracked(true);
    repo.checkout_head(Some(&mut builder))
}

/// A checkout limited to the `changes`' paths, taken literally (no pathspec patterns).
fn only<'cb>(changes: &[super::plan::TreeChange]) -> CheckoutBuilder<'cb> {
    let mut builder = CheckoutBuilder::new();
    builder.disable_pathspec_match(true);
    for change in changes {
        builder.path(&change.path);
    }
    builder
}

/// Whether the tracked file at `path` is its index entry once put through its filter
/// driver's clean command.
fn clean_through_filter(repo: &Repository, path: &str) -> bool {
    let Ok(index) = repo.index() else {
        return false;
    };
    index
        .get_path(Path::new(path), 0)
        .is_some_and(|entry| super::filters::cleans_to(repo, path.as_bytes(), entry.id))
}
