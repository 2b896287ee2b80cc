//! `git_revert`: reverts commits with libgit2 (git2), one revert commit per commit, newest
//! first (or one commit with `squash: true`), then optionally pushes.
//!
//! Design and invariants:
//! - Every revert is computed in memory first ([`revert_in_memory`]): a three-way merge of
//!   trees with the reverted commit's tree as the ancestor, the tree so far as ours and its
//!   parent's tree as theirs. That is what libgit2's `git_revert_commit` does, but on
//!   trees, so reverts chain (each result is the next one's base) without a commit, a ref
//!   or the index. `Repository::revert` is never used: it leaves REVERT state behind.
//!   When every path changed on one side only, the merge takes whole entries and reads
//!   only the folders on changed paths; otherwise libgit2's full merge (with rename
//!   detection) decides. The tests check the shortcut against the full merge.
//! - Both runs open the repository with an in-memory (mempack) object store in front of
//!   its own: the merged blobs, trees and commits they write stay in memory. The dry-run
//!   never writes a ref, the index, a work-tree file or an object, so it is `simulated`.
//!   (Writing an object that already exists makes libgit2 refresh that file's
//!   modification time, as git does; no API leaves that out.)
//! - The real run repeats every check (branch, clean tree, author) before changing
//!   anything, recomputes the plan, refuses conflicts and untracked files in the way, makes
//!   the commits in memory, writes the objects they reach to `.git/objects`, checks the
//!   changed files out safely (libgit2 finds every obstacle before it writes a file), and
//!   only then moves the branch, compare-and-swap against the HEAD it planned from. A
//!   failure before that point leaves refs, index and work tree as they were.
//! - "Clean" is proven cheaply when it can be, as git's index refresh does: the index's
//!   cached tree is HEAD's and every tracked file's stat data matches (or its content,
//!   where the stat data cannot vouch for it). Anything else goes to libgit2's status.
//!   The stat calls start first, on a thread of their own, from the index file as read
//!   directly, while libgit2 starts (its first use loads OpenSSL's CA bundle) and the
//!   reverts are computed; their result counts only if it read the very index libgit2
//!   then loads.
//! - Reverting a commit whose changes are already undone changes nothing: it is skipped, so
//!   re-running a rollback after a failed push creates no second revert and pushes.
//! - All git2 work runs in `spawn_blocking`.
//!
//! Fidelity to `git revert` (checked by a differential property test against the git CLI):
//! the same trees, messages (`Revert "<subject>"`, `Reapply "…"` for a revert of a revert,
//! the mainline parent named for a merge) and conflicting files, with file renames detected
//! as git does (libgit2's rename conflicts are reported under git's names, and those where
//! both sides agree are resolved as git resolves them). One difference: libgit2 has no
//! directory-rename detection, so where git stops with a "file location" conflict (a file
//! added to a folder that the revert renames away), `git_revert` leaves the file where it
//! is, as git does with `merge.directoryRenames=false`.

mod filters;
mod index_file;
mod plan;
mod push;
mod select;
mod sign;
#[cfg(test)]
mod tests;
mod worktree;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use git2::{Oid, Repository};

pub use plan::{
    Change, ChangeKind, Conflict, ConflictKind, RevertPlan, RevertStep, StepResult,
    revert_in_memory, squash_message,
};
pub use push::{PushTarget, push_branch, resolve_remote};
pub use select::{parse_commit_specs, select_commits};
pub use worktree::{
    CleanCommands, DirtyFile, StatScan, WorkTreeCheck, check_branch, dirty_files, held_locks,
    paths_in_the_way,
};

use super::{Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Verdict};
use crate::engine::process::Line;
use crate::project::runbook::{Commits, GitRevertAction};

/// Why a revert cannot be planned or done. Each message names the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    #[error("{0}")]
    Refused(String),
    /// libgit2's message without its class and code, which mean nothing to the user.
    #[error("{context}: {}", .source.message())]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
}

impl RevertError {
    pub(crate) fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> RevertError {
        let context = context.into();
        move |source| RevertError::Git { context, source }
    }
}

/// The most files listed for one revert in the dry-run's account.
const FILES_SHOWN: usize = 50;

/// The step's inputs, rendered and owned, so they can move to a blocking thread.
#[derive(Clone, Debug)]
struct Request {
    root: PathBuf,
    specs: Vec<String>,
    touching: Option<String>,
    mainline: Option<u32>,
    squash: bool,
    push: bool,
    remote: String,
    branch: String,
    run_id: String,
    /// The step's `timeout`: how long a signing program may wait for a passphrase.
    timeout: Option<Duration>,
}

impl Request {
    fn new(action: &GitRevertAction, ctx: &StepContext<'_>) -> Result<Self, String> {
        let t = ctx.templates;
        let raw: Vec<&String> = match &action.commits {
            Commits::One(one) => vec![one],
            Commits::List(list) => list.iter().collect(),
        };
        let specs = raw
            .into_iter()
            .map(|s| t.render(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot render `commits`: {e}"))?;
        let touching = action
            .touching
            .as_deref()
            .map(|p| t.render(p))
            .transpose()
            .map_err(|e| format!("cannot render `touching`: {e}"))?;
        let repository = &ctx.config.header.repository;
        Ok(Self {
            root: ctx.root.to_path_buf(),
            specs,
            touching,
            mainline: action.mainline,
            squash: action.squash,
            push: action.push,
            remote: repository.remote.clone(),
            branch: repository.branch.clone(),
            run_id: ctx.run.id.clone(),
            timeout: ctx.timeout,
        })
    }
}

/// Starts libgit2 on a thread of its own and returns at once. libgit2's first use loads
/// OpenSSL's CA bundle, which takes a few milliseconds (more than a one-commit revert's
/// own checks); a run with a `git_revert` step can call this as it starts, so that the
/// step finds libgit2 ready instead of waiting for it.
pub fn warm_up() {
    let _ = std::thread::Builder::new()
        .name("git_revert-warm-up".into())
        .spawn(set_up_libgit2);
}

/// Starts libgit2 (once per process) with git's own habits: an object read is not hashed
/// again to check its id (git leaves that to `git fsck`), and a tree or commit written is
/// not checked, entry by entry, for objects that exist (those written here are made of
/// entries of trees that exist). Both checks cost a lookup or a SHA-1 per object.
fn set_up_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        git2::opts::strict_hash_verification(false);
        git2::opts::strict_object_creation(false);
    });
}

/// Phase timings at debug level (`-vv` or `RUST_LOG=release=debug`).
struct Phases(std::time::Instant);

impl Phases {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    fn mark(&self, phase: &str) {
        tracing::debug!(elapsed = ?self.0.elapsed(), "git_revert: {phase}");
    }
}

/// A repository path (bytes, `/`-separated) as a path on this system.
fn bytes_path(path: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(path))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(path).into_owned())
    }
}

fn short(oid: Oid) -> String {
    let mut s = oid.to_string();
    s.truncate(8);
    s
}

fn open(root: &std::path::Path) -> Result<Repository, RevertError> {
    set_up_libgit2();
    let repo = Repository::discover(root).map_err(|e| {
        RevertError::Refused(format!(
            "{} is not inside a git repository ({}); run `git init` there, or move the project into one",
            root.display(),
            e.message()
        ))
    })?;
    if repo.is_bare() {
        return Err(RevertError::Refused(format!(
            "the repository at {} is bare: there is no work tree to revert in",
            repo.path().display()
        )));
    }
    Ok(repo)
}

/// What [`check_repository`] found.
struct Checked<T> {
    /// HEAD, when every check passed; else every problem.
    head: Result<Oid, RevertError>,
    /// What `meanwhile` returned, when it ran.
    early: Option<T>,
    /// Files only a filter driver's clean command, not run, could call clean or modified.
    unverified: Vec<(String, String)>,
}

/// The checks every run repeats before anything changes: the branch, no operation in
/// progress, a clean work tree. All problems at once. `meanwhile` runs once HEAD is known
/// to be fine and before the work tree check, so that its work overlaps the stat scan
/// started early (`scan`).
fn check_repository<T>(
    repo: &Repository,
    branch: &str,
    scan: Option<StatScan>,
    clean: CleanCommands,
    meanwhile: impl FnOnce(Oid) -> T,
) -> Checked<T> {
    let mut problems = Vec::new();
    let head = match check_branch(repo, branch) {
        Ok(head) => Some(head),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let state = repo.state();
    if state != git2::RepositoryState::Clean {
        problems.push(format!(
            "a git operation is in progress ({state:?}); finish it or abort it first (e.g. `git merge --abort`, `git revert --abort`)"
        ));
    }
    let early = head.filter(|_| problems.is_empty()).map(meanwhile);
    let mut unverified = Vec::new();
    match dirty_files(repo, scan, clean) {
        Ok(check) => {
            if !check.dirty.is_empty() {
                let files = check
                    .dirty
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                problems.push(format!(
                    "work tree is dirty: {files}; commit or stash them first"
                ));
            }
            unverified = check.unverified;
        }
        Err(e) => problems.push(e.to_string()),
    }
    let head = match (head, problems.is_empty()) {
        (Some(head), true) => Ok(head),
        _ => Err(RevertError::Refused(problems.join("; "))),
    };
    Checked {
        head,
        early,
        unverified,
    }
}

/// The dry-run's note on the files it could not check ([`Checked::unverified`]).
fn unverified_message(files: &[(String, String)]) -> Option<String> {
    if files.is_empty() {
        return None;
    }
    let listed: Vec<String> = files
        .iter()
        .map(|(path, driver)| format!("{path} (`{driver}`)"))
        .collect();
    Some(format!(
        "cannot tell whether {} {} modified: libgit2 sees a change, and only the filter driver's clean command can tell, which a dry-run does not run (the real run runs it, and refuses a modified file); `git status` runs it and refreshes the index, after which a rehearsal can tell",
        listed.join(", "),
        if files.len() == 1 { "is" } else { "are" }
    ))
}

/// The author and committer of the revert commits, as git finds them: `user.name` and
/// `user.email` from git's config, overridden by `GIT_AUTHOR_NAME`, `GIT_AUTHOR_EMAIL`,
/// `GIT_AUTHOR_DATE` and their `GIT_COMMITTER_*` twins, `EMAIL` as the last resort. With
/// neither date set, both carry the same time, as git's do. (git 2.22's `author.*` and
/// `committer.*` keys are not read: libgit2 does not know them.)
fn identities(
    repo: &Repository,
) -> Result<(git2::Signature<'static>, git2::Signature<'static>), git2::Error> {
    let author = repo.author_from_env()?;
    let committer = repo.committer_from_env()?;
    let dated = |var: &str| std::env::var_os(var).is_some();
    if dated("GIT_AUTHOR_DATE") || dated("GIT_COMMITTER_DATE") {
        return Ok((author, committer));
    }
    let committer = match (committer.name(), committer.email()) {
        (Ok(name), Ok(email)) => git2::Signature::new(name, email, &author.when())?,
        _ => committer,
    };
    Ok((author, committer))
}

fn signature_problem(repo: &Repository) -> Option<String> {
    identities(repo).err().map(|e| {
        format!(
            "git has no author for the revert commits ({}); set it with `git config user.name \"Your Name\"` and `git config user.email you@example.com` (or GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL and the GIT_COMMITTER_* pair, as git reads them)",
            e.message()
        )
    })
}

/// The planned reverts, as the dry-run shows them and the real run announces them.
fn describe_plan(plan: &RevertPlan, request: &Request) -> String {
    let applied = plan.applied().count();
    let mut out = String::new();
    if plan.has_conflicts() {
        let n = plan.steps.len();
        let _ = write!(
            out,
            "revert {n} {} on {} (from {}), newest first, but a revert conflicts",
            if n == 1 { "commit" } else { "commits" },
            request.branch,
            short(plan.head)
        );
    } else {
        let commits = if request.squash && applied > 1 {
            format!("1 revert commit (squashing {applied} reverts)")
        } else if applied == 1 {
            "1 revert commit".to_owned()
        } else {
            format!("{applied} revert commits")
        };
        let _ = write!(
            out,
            "create {commits} on {} (from {}), newest first",
            request.branch,
            short(plan.head)
        );
        if request.push {
            let _ = write!(
                out,
                ", then push {0} to {1}/{0}",
                request.branch, request.remote
            );
        }
    }
    out.push(':');
    for step in &plan.steps {
        let _ = write!(
            out,
            "\n    {} (reverts {}): ",
            step.title(),
            short(step.commit)
        );
        match &step.result {
            StepResult::Applied { changes, .. } => {
                let shown: Vec<String> = changes
                    .iter()
                    .take(FILES_SHOWN)
                    .map(ToString::to_string)
                    .collect();
                out.push_str(&shown.join(", "));
                if changes.len() > FILES_SHOWN {
                    let _ = write!(out, " and {} more files", changes.len() - FILES_SHOWN);
                }
            }
            StepResult::Empty { on_branch: true } => {
                out.push_str("nothing: its changes are already undone, so it is skipped");
            }
            StepResult::Empty { on_branch: false } => {
                let _ = write!(
                    out,
                    "nothing: it is not on {0}, and {0} does not have its changes, so it is skipped",
                    request.branch
                );
            }
            StepResult::Conflicted(conflicts) => {
                let shown: Vec<String> =
                    conflicts.iter().map(|c| format!("CONFLICT {c}")).collect();
                out.push_str(&shown.join(", "));
            }
        }
    }
    if request.squash && applied > 1 {
        let message = squash_message(plan);
        let _ = write!(
            out,
            "\n    as one commit: {}",
            message.lines().next().unwrap_or_default()
        );
    }
    out
}

/// The dry-run's reason when the plan has conflicts: every conflicting file, revert by revert.
fn describe_conflicts(plan: &RevertPlan, branch: &str) -> String {
    let parts: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|step| match &step.result {
            StepResult::Conflicted(conflicts) => Some(format!(
                "reverting {} ({}) conflicts in {} {}: {}",
                short(step.commit),
                step.subject,
                conflicts.len(),
                if conflicts.len() == 1 {
                    "file"
                } else {
                    "files"
                },
                conflicts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => None,
        })
        .collect();
    format!(
        "{}; {branch} changed these files after the reverted commit: include the newer commits that touch them, or revert by hand with `git revert` and resolve",
        parts.join("; ")
    )
}

fn blocked(reason: String, fidelity: Fidelity, would: String) -> Preflight {
    Preflight {
        verdict: Verdict::Blocked,
        fidelity,
        reason,
        would,
        output: None,
    }
}

/// Frees a repository on a thread of its own: unmapping a large pack's windows takes
/// about a millisecond, which the step's result need not wait for.
fn drop_later(repo: Repository) {
    // Should no thread start, the closure and the repository are dropped here.
    let _ = std::thread::Builder::new()
        .name("git_revert-free".into())
        .spawn(move || drop(repo));
}

/// The repository, with an in-memory object store in front of its own: the merged blobs
/// and trees written from now on stay in memory, never in `.git/objects`.
fn with_memory_store(repo: Repository) -> Result<Repository, String> {
    let odb = repo
        .odb()
        .map_err(|e| format!("cannot open the object database: {}", e.message()))?;
    odb.add_new_mempack_backend(i32::MAX)
        .map_err(|e| format!("cannot set up the in-memory object store: {}", e.message()))?;
    drop(odb);
    Ok(repo)
}

fn open_in_memory(root: &std::path::Path) -> Result<Repository, String> {
    with_memory_store(open(root).map_err(|e| e.to_string())?)
}

/// What the dry-run learns: HEAD, the remote, every problem, and the plan when there is
/// one to compute.
struct Checks {
    head: Option<Oid>,
    target: Option<PushTarget>,
    problems: Vec<String>,
    /// The files the dry-run could not check ([`unverified_message`]): a warning.
    unverified: Option<String>,
    plan: Option<Result<RevertPlan, RevertError>>,
    /// How the commits would be signed (`commit.gpgSign`), for the dry-run's account.
    signing: Option<String>,
}

fn check_all(
    repo: &Repository,
    request: &Request,
    scan: Option<StatScan>,
    reads_step_output: bool,
    phases: &Phases,
) -> Checks {
    phases.mark("repository open");
    let mut problems = Vec::new();
    let Checked {
        head,
        early: plan,
        unverified,
    } = check_repository(repo, &request.branch, scan, CleanCommands::NotRun, |head| {
        let plan = (!reads_step_output).then(|| compute_plan(repo, request, head));
        phases.mark("reverts computed");
        plan
    });
    let head = head.map_err(|e| problems.push(e.to_string())).ok();
    phases.mark("branch and work tree checked");
    problems.extend(signature_problem(repo));
    problems.extend(held_locks(repo, &request.branch));
    let signing = match sign::configured(repo) {
        Ok(Some(signer)) => signer.check().map_err(|e| problems.push(e)).ok(),
        Ok(None) => None,
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let target = if request.push {
        resolve_remote(repo, &request.remote, &request.branch)
            .map_err(|e| problems.push(e.to_string()))
            .ok()
    } else {
        None
    };
    Checks {
        head,
        target,
        problems,
        unverified: unverified_message(&unverified),
        plan: plan.flatten(),
        signing,
    }
}

/// Everything the dry-run checks, on a repository whose new objects stay in memory.
fn preflight_blocking(request: &Request, reads_step_output: bool) -> Preflight {
    let phases = Phases::start();
    let scan = StatScan::start(&request.root);
    let repo = match open_in_memory(&request.root) {
        Ok(repo) => repo,
        Err(e) => return blocked(e, Fidelity::Checked, String::new()),
    };
    let preflight = preflight_in(&repo, request, scan, reads_step_output, &phases);
    drop_later(repo);
    preflight
}

fn preflight_in(
    repo: &Repository,
    request: &Request,
    scan: Option<StatScan>,
    reads_step_output: bool,
    phases: &Phases,
) -> Preflight {
    let Checks {
        head,
        target,
        mut problems,
        unverified,
        plan,
        signing,
    } = check_all(repo, request, scan, reads_step_output, phases);
    if reads_step_output && problems.is_empty() {
        let tree = match &unverified {
            None => format!("the work tree is clean and on {}", request.branch),
            Some(note) => format!("the work tree is on {}, but {note}", request.branch),
        };
        return Preflight {
            verdict: Verdict::Warn,
            fidelity: Fidelity::Unverifiable,
            reason: format!(
                "the commits come from an earlier step's output, known only in a real run; {tree}"
            ),
            would: format!("revert those commits on {}", request.branch),
            output: None,
        };
    }
    // The files it could not check are told with the problems too: a rehearsal after
    // their fix would still warn of them.
    let refuse = |mut problems: Vec<String>, fidelity, would| {
        problems.extend(unverified.clone());
        blocked(problems.join("; "), fidelity, would)
    };
    let Some(head) = head.filter(|_| !reads_step_output) else {
        return refuse(problems, Fidelity::Checked, String::new());
    };
    let plan = plan.unwrap_or_else(|| compute_plan(repo, request, head));
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            problems.insert(0, e.to_string());
            return refuse(problems, Fidelity::Checked, String::new());
        }
    };
    let mut would = describe_plan(&plan, request);
    if let Some(signing) = signing.filter(|_| plan.applied().next().is_some()) {
        would.push('\n');
        would.push_str(&signing);
    }
    if plan.has_conflicts() {
        problems.insert(0, describe_conflicts(&plan, &request.branch));
    } else {
        match check_written(repo, &plan) {
            Ok(files) => {
                if let Some(refusal) = filters::unsupported(&files) {
                    problems.push(refusal);
                } else if let Some(note) = filters::describe(&files) {
                    would.push('\n');
                    would.push_str(&note);
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        match paths_in_the_way(repo, plan.head, plan.tree) {
            Ok(paths) if !paths.is_empty() => problems.push(in_the_way_message(&paths)),
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return refuse(problems, Fidelity::Simulated, would);
    }
    phases.mark("preflight done");
    ready(&plan, request, target.as_ref(), unverified, would)
}

/// The commits selected and their reverts, computed from `head`.
fn compute_plan(
    repo: &Repository,
    request: &Request,
    head: Oid,
) -> Result<RevertPlan, RevertError> {
    let commits = select_commits(
        repo,
        &request.specs,
        request.touching.as_deref(),
        &request.root,
        request.mainline,
    )?;
    let head = repo
        .find_commit(head)
        .map_err(RevertError::git("cannot read HEAD"))?;
    revert_in_memory(repo, &head, &commits, request.mainline).map_err(|e| match e {
        // A merge reads the files' contents: a partial clone may lack them.
        RevertError::Git { source, .. } if lacks_object(&source) => {
            let what = format!(
                "objects the {} {} ({})",
                if commits.len() == 1 {
                    "revert"
                } else {
                    "reverts"
                },
                if commits.len() == 1 { "needs" } else { "need" },
                source.message()
            );
            lacking_contents(repo, &what, &commits)
        }
        e => e,
    })
}

/// True for libgit2's error on an object the repository does not have.
fn lacks_object(e: &git2::Error) -> bool {
    e.code() == git2::ErrorCode::NotFound && e.class() == git2::ErrorClass::Odb
}

/// True for a partial clone (`git clone --filter=…`): git fetches the objects it left out
/// when a command needs them; libgit2 cannot.
fn is_partial_clone(repo: &Repository) -> bool {
    let Ok(config) = repo.config() else {
        return false;
    };
    if config.get_string("extensions.partialclone").is_ok() {
        return true;
    }
    config
        .entries(Some(r"remote\..*\.promisor"))
        .is_ok_and(|mut entries| {
            let mut promisor = false;
            while let Some(Ok(entry)) = entries.next() {
                promisor |= entry
                    .value()
                    .is_ok_and(|v| git2::Config::parse_bool(v).unwrap_or(false));
            }
            promisor
        })
}

/// The refusal for file contents the repository lacks (`what`), with git's command that
/// fetches them in a partial clone: `git show` of the `commits` reverted reads both sides
/// of each of their changes, which makes git fetch what it left out.
fn lacking_contents(repo: &Repository, what: &str, commits: &[Oid]) -> RevertError {
    if !is_partial_clone(repo) {
        return RevertError::Refused(format!(
            "the repository lacks {what}; it is damaged or incomplete: `git fsck` names what is missing"
        ));
    }
    // Whole shas: the command is pasted, and a short one may be ambiguous in a big history.
    let shas: Vec<String> = commits.iter().map(ToString::to_string).collect();
    RevertError::Refused(format!(
        "this repository is a partial clone and lacks {what}; git fetches such contents when a command needs them, libgit2 cannot: fetch them with `git show -m --format= {} >/dev/null`, then run again",
        shas.join(" ")
    ))
}

/// Refuses a revert that writes a file whose contents the repository lacks (a partial
/// clone's left-out blob): the checkout would fail halfway. Merged contents are in the
/// object database already (in memory until a real run writes them).
fn check_contents(
    repo: &Repository,
    plan: &RevertPlan,
    written: &[(Vec<u8>, Oid)],
) -> Result<(), RevertError> {
    let odb = repo
        .odb()
        .map_err(RevertError::git("cannot open the object database"))?;
    let missing: Vec<String> = written
        .iter()
        .filter(|(_, oid)| !odb.exists(*oid))
        .map(|(path, oid)| format!("{} ({})", String::from_utf8_lossy(path), short(*oid)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let commits: Vec<Oid> = plan.applied().map(|(step, _)| step.commit).collect();
    let what = format!(
        "the contents of {} {} the revert writes: {}",
        missing.len(),
        if missing.len() == 1 { "file" } else { "files" },
        missing.join(", ")
    );
    Err(lacking_contents(repo, &what, &commits))
}

/// The preflight of a plan that nothing blocks: ready, or a warning when there is nothing
/// to revert, the push may fail, or files could not be checked (`unverified`).
fn ready(
    plan: &RevertPlan,
    request: &Request,
    target: Option<&PushTarget>,
    unverified: Option<String>,
    would: String,
) -> Preflight {
    let applied = plan.applied().count();
    let mut notes = Vec::new();
    let mut warned = unverified.is_some();
    let elsewhere: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.result, StepResult::Empty { on_branch: false }))
        .map(|s| short(s.commit))
        .collect();
    if applied == 0 && !elsewhere.is_empty() {
        warned = true;
        notes.push(format!(
            "nothing to revert: {} {} not on {}, which does not have {} changes; check the commits given (from another branch?)",
            elsewhere.join(", "),
            if elsewhere.len() == 1 { "is" } else { "are" },
            request.branch,
            if elsewhere.len() == 1 { "its" } else { "their" },
        ));
    } else if applied == 0 {
        warned = true;
        notes.push(format!(
            "nothing to revert: the changes of every selected commit are already undone on {}",
            request.branch
        ));
    } else {
        notes.push(format!(
            "{applied} {} computed in memory on {} without conflicts",
            if applied == 1 { "revert" } else { "reverts" },
            request.branch
        ));
    }
    notes.extend(unverified);
    if let Some(target) = target {
        warned |= !target.warnings.is_empty();
        notes.extend(target.warnings.iter().cloned());
        notes.push(format!("remote {} is {}", request.remote, target.url));
    }
    Preflight {
        verdict: if warned {
            Verdict::Warn
        } else {
            Verdict::Ready
        },
        fidelity: Fidelity::Simulated,
        reason: notes.join("; "),
        would,
        output: None,
    }
}

fn in_the_way_message(paths: &[String]) -> String {
    format!(
        "untracked or ignored files are in the way of the revert, which creates these paths: {}; move or delete them first",
        paths.join(", ")
    )
}

/// What the first, local phase of a real run did.
struct Committed {
    /// The new commits, oldest first (the order they were created in).
    commits: Vec<Oid>,
    /// Progress lines for the log.
    notes: Vec<String>,
    /// Files a filter driver's smudge command could not write ([`filters::smudge`]): the
    /// revert stands, and the push goes on, but the user must hear of it.
    smudge_failed: Option<String>,
}

/// Plans, commits, checks out, and moves the branch. Changes nothing when it fails.
fn commit_blocking(request: &Request) -> Result<Committed, RevertError> {
    let phases = Phases::start();
    let scan = StatScan::start(&request.root);
    let repo = open(&request.root)?;
    // As in the dry-run, new objects go to memory first; the new commits' objects are
    // written to the repository once everything is known to work ([`persist`]).
    let repo = with_memory_store(repo).map_err(RevertError::Refused)?;
    phases.mark("repository open");
    let committed = commit_in(&repo, request, scan, &phases);
    drop_later(repo);
    committed
}

fn commit_in(
    repo: &Repository,
    request: &Request,
    scan: Option<StatScan>,
    phases: &Phases,
) -> Result<Committed, RevertError> {
    // The plan is computed while the stat scan runs; its errors come after the checks'.
    // Filter drivers' clean commands run, as `git status` runs them: nothing is unverified.
    let Checked {
        head, early: plan, ..
    } = check_repository(repo, &request.branch, scan, CleanCommands::Run, |head| {
        let plan = compute_plan(repo, request, head);
        phases.mark("reverts computed");
        plan
    });
    let head = head?;
    phases.mark("branch and work tree checked");
    if let Some(problem) = signature_problem(repo).or_else(|| held_locks(repo, &request.branch)) {
        return Err(RevertError::Refused(problem));
    }
    let signer = sign::configured(repo).map_err(RevertError::Refused)?;
    if let Some(signer) = &signer {
        signer.check().map_err(RevertError::Refused)?;
    }
    if request.push {
        resolve_remote(repo, &request.remote, &request.branch)?;
    }
    let plan = plan.unwrap_or_else(|| compute_plan(repo, request, head))?;
    if plan.has_conflicts() {
        return Err(RevertError::Refused(format!(
            "{}; nothing was changed",
            describe_conflicts(&plan, &request.branch)
        )));
    }
    let filtered = check_written(repo, &plan)?;
    if let Some(refusal) = filters::unsupported(&filtered) {
        return Err(RevertError::Refused(refusal));
    }
    let in_the_way = paths_in_the_way(repo, plan.head, plan.tree)?;
    if !in_the_way.is_empty() {
        return Err(RevertError::Refused(format!(
            "{}; nothing was changed",
            in_the_way_message(&in_the_way)
        )));
    }
    let mut notes: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|step| match step.result {
            StepResult::Empty { on_branch: true } => Some(format!(
                "{} is already undone on {}: skipped",
                short(step.commit),
                request.branch
            )),
            StepResult::Empty { on_branch: false } => Some(format!(
                "{0} is not on {1}, and {1} does not have its changes: skipped",
                short(step.commit),
                request.branch
            )),
            _ => None,
        })
        .collect();
    let to_commit: Vec<(String, Oid)> = if request.squash {
        if plan.applied().count() == 0 {
            Vec::new()
        } else {
            vec![(squash_message(&plan), plan.tree)]
        }
    } else {
        plan.applied()
            .map(|(step, tree)| (step.message.clone(), tree))
            .collect()
    };
    let signing = signer.as_ref().map(|s| (s, request.timeout));
    let created = write_commits(repo, head, &to_commit, signing)?;
    phases.mark("commits written");
    for (oid, (message, _)) in created.iter().zip(&to_commit) {
        notes.push(format!(
            "{} {}",
            short(*oid),
            message.lines().next().unwrap_or_default()
        ));
    }
    if let Some(&new_head) = created.last() {
        let disk = Repository::open(repo.path()).map_err(RevertError::git(
            "cannot open the repository to write the commits",
        ))?;
        persist(repo, &disk, new_head)?;
        phases.mark("objects written");
        let changes = worktree::checkout(repo, head, plan.tree)?;
        phases.mark("work tree updated");
        let title = to_commit
            .last()
            .and_then(|(m, _)| m.lines().next())
            .unwrap_or_default();
        move_branch(repo, request, [head, new_head], title, &changes)?;
        phases.mark("branch moved");
    }
    let smudge_failed = if filtered.is_empty() || created.is_empty() {
        None
    } else {
        filters::smudge(repo, &filtered).err()
    };
    Ok(Committed {
        commits: created,
        notes,
        smudge_failed,
    })
}

/// Checks the files the revert writes (added or changed, not deleted): in a partial clone,
/// refused when their contents were never fetched ([`check_contents`]). Returns those
/// that go through a filter driver of git's config. Without either, nothing is read.
fn check_written(
    repo: &Repository,
    plan: &RevertPlan,
) -> Result<Vec<filters::Filtered>, RevertError> {
    let partial = is_partial_clone(repo);
    let configured = filters::configured(repo)?;
    if !partial && configured.is_empty() {
        return Ok(Vec::new());
    }
    let written = written_files(repo, plan.head, plan.tree)?;
    if partial {
        check_contents(repo, plan, &written)?;
    }
    if configured.is_empty() {
        return Ok(Vec::new());
    }
    filters::filtered(repo, &configured, &written)
}

/// The files the revert writes (added or changed, not deleted), with their blobs.
fn written_files(
    repo: &Repository,
    head: Oid,
    tree: Oid,
) -> Result<Vec<(Vec<u8>, Oid)>, RevertError> {
    let context = "cannot list the files the revert writes";
    let head_tree = repo
        .find_commit(head)
        .and_then(|c| c.tree())
        .map_err(RevertError::git(context))?;
    let tree = repo.find_tree(tree).map_err(RevertError::git(context))?;
    Ok(plan::tree_changes(repo, &head_tree, &tree)
        .map_err(RevertError::git(context))?
        .into_iter()
        .filter_map(|change| {
            let entry = tree.get_path(&bytes_path(&change.path)).ok()?;
            (entry.kind() == Some(git2::ObjectType::Blob)).then(|| (change.path, entry.id()))
        })
        .collect())
}

/// Copies `tip` and every object it reaches that `disk` lacks (the new commits, trees and
/// merged blobs) from `memory`, whose new objects live in memory, to `disk`, which writes
/// them to `.git/objects`. Parents before children are not needed: nothing refers to
/// these objects until the branch moves.
fn persist(memory: &Repository, disk: &Repository, tip: Oid) -> Result<(), RevertError> {
    let context = "cannot write the revert commits to the repository";
    let from = memory.odb().map_err(RevertError::git(context))?;
    let to = disk.odb().map_err(RevertError::git(context))?;
    let mut pending = vec![tip];
    while let Some(id) = pending.pop() {
        if to.exists(id) {
            continue;
        }
        let object = from.read(id).map_err(RevertError::git(context))?;
        match object.kind() {
            git2::ObjectType::Commit => {
                let commit = memory.find_commit(id).map_err(RevertError::git(context))?;
                pending.push(commit.tree_id());
                pending.extend(commit.parent_ids());
            }
            git2::ObjectType::Tree => {
                let tree = memory.find_tree(id).map_err(RevertError::git(context))?;
                pending.extend(
                    tree.iter()
                        .filter(|e| e.kind() != Some(git2::ObjectType::Commit))
                        .map(|e| e.id()),
                );
            }
            _ => {}
        }
        to.write(object.kind(), object.data())
            .map_err(RevertError::git(context))?;
    }
    Ok(())
}

/// Writes the commits (objects only, no ref), each on the one before, the first on `head`.
fn write_commits(
    repo: &Repository,
    head: Oid,
    commits: &[(String, Oid)],
    signer: Option<(&sign::Signer, Option<Duration>)>,
) -> Result<Vec<Oid>, RevertError> {
    let (author, committer) =
        identities(repo).map_err(RevertError::git("cannot read the author from git config"))?;
    let mut parent = repo
        .find_commit(head)
        .map_err(RevertError::git("cannot read HEAD"))?;
    let mut created = Vec::with_capacity(commits.len());
    for (message, tree) in commits {
        let tree = repo
            .find_tree(*tree)
            .map_err(RevertError::git("cannot read a reverted tree"))?;
        let oid = match signer {
            None => repo.commit(None, &author, &committer, message, &tree, &[&parent]),
            Some((signer, timeout)) => {
                let payload = repo
                    .commit_create_buffer(&author, &committer, message, &tree, &[&parent])
                    .map_err(RevertError::git("cannot write a revert commit"))?;
                let payload = payload.as_str().map_err(|_| {
                    RevertError::Refused(
                        "cannot sign a revert commit that is not UTF-8 text; nothing was changed"
                            .into(),
                    )
                })?;
                let gpgsig = signer.sign(payload, timeout)?;
                repo.commit_signed(payload, &gpgsig, None)
            }
        }
        .map_err(RevertError::git("cannot write a revert commit"))?;
        created.push(oid);
        parent = repo
            .find_commit(oid)
            .map_err(RevertError::git("cannot read the new commit"))?;
    }
    Ok(created)
}

/// Moves the branch from `head` to `new_head`, only if it is still at `head`.
fn move_branch(
    repo: &Repository,
    request: &Request,
    [head, new_head]: [Oid; 2],
    title: &str,
    changes: &[plan::TreeChange],
) -> Result<(), RevertError> {
    let refname = format!("refs/heads/{}", request.branch);
    let log = format!("revert: {title} (release run {})", request.run_id);
    let Err(e) = repo.reference_matching(&refname, new_head, true, head, &log) else {
        return Ok(());
    };
    // Someone moved the branch while we worked, or holds its lock: the files the revert
    // wrote go back to HEAD's, and no other file is touched.
    let restored = worktree::put_back(repo, changes).is_ok();
    let what = if e.code() == git2::ErrorCode::Locked {
        "is locked by another git process"
    } else {
        "moved while reverting"
    };
    let work_tree = match (restored, repo.head().and_then(|h| h.peel_to_tree())) {
        (true, _) => "the files it wrote are back as HEAD has them".to_owned(),
        (false, Ok(head_tree)) => worktree::unrestored_message(&head_tree, changes),
        (false, Err(_)) => "some files may hold the revert (`git status` shows them)".to_owned(),
    };
    Err(RevertError::Refused(format!(
        "{} {what} ({}); the revert commits were not added to it; {work_tree}",
        request.branch,
        e.message(),
    )))
}

fn failed(error: String, stdout: String) -> Execution {
    Execution {
        outcome: Outcome::Failed,
        error: Some(error),
        stdout,
        interrupted: false,
    }
}

impl StepAction for GitRevertAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        let request = match Request::new(self, ctx) {
            Ok(request) => request,
            Err(reason) => {
                return Preflight {
                    verdict: Verdict::Blocked,
                    fidelity: Fidelity::Checked,
                    reason,
                    would: String::new(),
                    output: None,
                };
            }
        };
        let reads_step_output = ctx.reads_step_output;
        tokio::task::spawn_blocking(move || preflight_blocking(&request, reads_step_output))
            .await
            .unwrap_or_else(|e| Preflight {
                verdict: Verdict::Blocked,
                fidelity: Fidelity::Checked,
                reason: format!("the revert preflight stopped unexpectedly: {e}"),
                would: String::new(),
                output: None,
            })
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        let request = match Request::new(self, ctx) {
            Ok(request) => request,
            Err(e) => return failed(e, String::new()),
        };
        let local = request.clone();
        let committed = match tokio::task::spawn_blocking(move || commit_blocking(&local)).await {
            Ok(Ok(committed)) => committed,
            Ok(Err(e)) => return failed(e.to_string(), String::new()),
            Err(e) => {
                return failed(
                    format!("the revert stopped unexpectedly: {e}"),
                    String::new(),
                );
            }
        };
        for note in &committed.notes {
            let _ = ctx.lines.send(Line {
                stderr: false,
                text: note.clone(),
            });
        }
        if let Some(warning) = &committed.smudge_failed {
            let _ = ctx.lines.send(Line {
                stderr: true,
                text: format!("warning: {warning}"),
            });
        }
        let stdout = committed.commits.iter().fold(String::new(), |mut out, c| {
            let _ = writeln!(out, "{c}");
            out
        });
        if !request.push {
            return Execution {
                outcome: Outcome::Succeeded,
                error: None,
                stdout,
                interrupted: false,
            };
        }
        let kept = if committed.commits.is_empty() {
            String::new()
        } else {
            format!(
                "; the revert commits stay on local {} ({})",
                request.branch,
                committed
                    .commits
                    .iter()
                    .map(|c| short(*c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let remote = request.remote.clone();
        let branch = request.branch.clone();
        let root = request.root.clone();
        let pushing = tokio::task::spawn_blocking(move || {
            let repo = open(&root)?;
            push_branch(&repo, &remote, &branch)
        });
        let mut cancel = ctx.cancel.clone();
        let limit = ctx.timeout.unwrap_or(Duration::MAX);
        let result = tokio::select! {
            r = tokio::time::timeout(limit, pushing) => r,
            _ = cancel.wait_for(|c| *c) => {
                return Execution {
                    outcome: Outcome::Failed,
                    error: Some(format!("interrupted while pushing to {}{kept}", request.remote)),
                    stdout,
                    interrupted: true,
                };
            }
        };
        match result {
            Ok(Ok(Ok(summary))) => {
                let _ = ctx.lines.send(Line {
                    stderr: false,
                    text: summary,
                });
                Execution {
                    outcome: Outcome::Succeeded,
                    error: None,
                    stdout,
                    interrupted: false,
                }
            }
            Ok(Ok(Err(e))) => failed(format!("{e}{kept}"), stdout),
            Ok(Err(e)) => failed(format!("the push stopped unexpectedly: {e}{kept}"), stdout),
            Err(_) => Execution {
                outcome: Outcome::TimedOut,
                error: Some(format!(
                    "the push to {} did not finish within the step's timeout{kept}",
                    request.remote
                )),
                stdout,
                interrupted: false,
            },
        }
    }
}
