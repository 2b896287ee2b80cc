//! The reverts computed in memory: each one a three-way merge of trees, chained.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use git2::{Commit, Delta, DiffFindOptions, MergeOptions, Oid, Repository, Tree};

use super::{RevertError, short};

/// What a revert does to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// A file became a symlink or the reverse.
    TypeChanged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self.kind {
            ChangeKind::Added => "A",
            ChangeKind::Modified => "M",
            ChangeKind::Deleted => "D",
            ChangeKind::TypeChanged => "T",
        };
        write!(f, "{letter} {}", self.path)
    }
}

/// How a file conflicts, seen from the branch ("here") and the revert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// Changed here after the reverted commit, and by the revert.
    BothModified,
    /// Modified here after the reverted commit, which had added it: the revert deletes it.
    DeletedByRevert,
    /// Deleted here after the reverted commit, which the revert would change back.
    DeletedHere,
    /// Added here and by the revert, with different contents.
    BothAdded,
    /// A file renamed on one side and changed (or renamed again) on the other.
    Renamed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub path: String,
    pub kind: ConflictKind,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.kind {
            ConflictKind::BothModified => "changed on the branch since, and by the revert",
            ConflictKind::DeletedByRevert => "modified on the branch since, deleted by the revert",
            ConflictKind::DeletedHere => "deleted on the branch since, changed by the revert",
            ConflictKind::BothAdded => "added on the branch and by the revert",
            ConflictKind::Renamed => "renamed on one side, changed on the other",
        };
        write!(f, "{} ({how})", self.path)
    }
}

/// What one revert gives, computed on the result of the reverts before it.
#[derive(Clone, Debug)]
pub enum StepResult {
    /// A clean revert: the tree after it and the files it changes.
    Applied { tree: Oid, changes: Vec<Change> },
    /// Reverting the commit changes nothing: its changes are already undone, or, when it is
    /// not `on_branch` (not HEAD nor one of its ancestors), the branch never had them.
    Empty { on_branch: bool },
    /// The files that conflict. Later reverts are computed as if this one were left out.
    Conflicted(Vec<Conflict>),
}

/// One commit to revert and what reverting it gives.
#[derive(Clone, Debug)]
pub struct RevertStep {
    /// The commit reverted.
    pub commit: Oid,
    /// The parent its changes are reverted against (none for a root commit).
    pub parent: Option<Oid>,
    /// The reverted commit's subject line.
    pub subject: String,
    /// The revert commit's message, as `git revert` writes it.
    pub message: String,
    pub result: StepResult,
}

impl RevertStep {
    /// The first line of the revert commit's message.
    pub fn title(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }
}

/// Every revert, in order, and where they lead.
#[derive(Clone, Debug)]
pub struct RevertPlan {
    /// The commit the reverts start from (HEAD).
    pub head: Oid,
    pub steps: Vec<RevertStep>,
    /// The tree after every clean revert (HEAD's tree when none changes anything).
    pub tree: Oid,
}

impl RevertPlan {
    pub fn has_conflicts(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.result, StepResult::Conflicted(_)))
    }

    /// The reverts that change something, with the tree after each.
    pub fn applied(&self) -> impl Iterator<Item = (&RevertStep, Oid)> {
        self.steps.iter().filter_map(|s| match &s.result {
            StepResult::Applied { tree, .. } => Some((s, *tree)),
            _ => None,
        })
    }

    /// The first revert that conflicts, where `git revert` would stop.
    pub fn first_conflict(&self) -> Option<(&RevertStep, &[Conflict])> {
        self.steps.iter().find_map(|s| match &s.result {
            StepResult::Conflicted(c) => Some((s, c.as_slice())),
            _ => None,
        })
    }
}

/// The message of the one commit a `squash: true` revert makes.
pub fn squash_message(plan: &RevertPlan) -> String {
    let applied: Vec<&RevertStep> = plan.applied().map(|(s, _)| s).collect();
    if let [only] = applied.as_slice() {
        return only.message.clone();
    }
    let mut message = format!("Revert {} commits\n\n", applied.len());
    for step in &applied {
        message.push_str(step.title());
        message.push('\n');
    }
    message.push_str("\nThis reverts commits ");
    let shas: Vec<String> = applied.iter().map(|s| s.commit.to_string()).collect();
    message.push_str(&shas.join(", "));
    message.push_str(".\n");
    message
}

/// The commit's subject as git reads it: its first line.
fn subject(commit: &Commit<'_>) -> String {
    let message = String::from_utf8_lossy(commit.message_bytes());
    message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// `git revert`'s message: `Revert "<subject>"` (or `Reapply "<subject>"` for a revert of a
/// revert), a blank line, `This reverts commit <sha>.`, naming the mainline parent for
/// a merge.
fn revert_message(commit: &Commit<'_>, subject: &str, parent: Option<Oid>) -> String {
    let title = match subject.strip_prefix("Revert \"") {
        Some(original) if !original.starts_with("Revert \"") => format!("Reapply \"{original}"),
        _ => format!("Revert \"{subject}\""),
    };
    let mut message = format!("{title}\n\nThis reverts commit {}", commit.id());
    if commit.parent_count() > 1
        && let Some(parent) = parent
    {
        let _ = write!(message, ", reversing\nchanges made to {parent}");
    }
    message.push_str(".\n");
    message
}

/// The parent (0-based) whose changes a revert of `commit` undoes.
fn reverted_parent(
    commit: &Commit<'_>,
    mainline: Option<u32>,
) -> Result<Option<usize>, RevertError> {
    let parents = commit.parent_count();
    match (parents, mainline) {
        (0, None) => Ok(None),
        (0, Some(m)) => Err(RevertError::Refused(format!(
            "`mainline: {m}` is set but {} is a root commit (it has no parent); remove `mainline`",
            short(commit.id())
        ))),
        (1, None | Some(1)) => Ok(Some(0)),
        (1, Some(m)) => Err(RevertError::Refused(format!(
            "`mainline: {m}` is set but {} is not a merge (it has one parent); use `mainline: 1` or remove it",
            short(commit.id())
        ))),
        (n, None) => Err(RevertError::Refused(format!(
            "{} is a merge of {n} parents; set `mainline:` to the parent number (1 to {n}) whose side to keep, usually 1",
            short(commit.id())
        ))),
        (n, Some(m)) if m == 0 || m as usize > n => Err(RevertError::Refused(format!(
            "`mainline: {m}` is out of range: merge {} has {n} parents (1 to {n})",
            short(commit.id())
        ))),
        (_, Some(m)) => Ok(Some(m as usize - 1)),
    }
}

/// The files renamed from `from` to `to`, by their old path, found as the merge finds them.
fn renames(
    repo: &Repository,
    from: &Tree<'_>,
    to: &Tree<'_>,
    out: &mut HashMap<String, Vec<String>>,
) -> Result<(), RevertError> {
    let mut diff = repo
        .diff_tree_to_tree(Some(from), Some(to), None)
        .map_err(RevertError::git("cannot compare trees"))?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))
        .map_err(RevertError::git("cannot find renames"))?;
    for delta in diff.deltas().filter(|d| d.status() == Delta::Renamed) {
        if let (Some(old), Some(new)) =
            (delta.old_file().path_bytes(), delta.new_file().path_bytes())
        {
            out.entry(String::from_utf8_lossy(old).into_owned())
                .or_default()
                .push(String::from_utf8_lossy(new).into_owned());
        }
    }
    Ok(())
}

/// The conflicting files, where `git revert` reports them. libgit2 records a conflict on
/// a renamed file under each of its names (the old one holding only the ancestor); git
/// records it under the name the file has after the rename, so the old names are mapped
/// (and kept as well when each side renamed the file to a different name, as git does).
fn conflicts(
    repo: &Repository,
    index: &git2::Index,
    [ancestor, ours, theirs]: [&Tree<'_>; 3],
) -> Result<Vec<Conflict>, RevertError> {
    let path = |e: &git2::IndexEntry| String::from_utf8_lossy(&e.path).into_owned();
    let mut found = Vec::new();
    for conflict in index
        .conflicts()
        .map_err(RevertError::git("cannot read the conflicts"))?
    {
        found.push(conflict.map_err(RevertError::git("cannot read a conflict"))?);
    }
    let mut renamed = HashMap::new();
    if found
        .iter()
        .any(|c| c.ancestor.is_some() && (c.our.is_none() || c.their.is_none()))
    {
        renames(repo, ancestor, ours, &mut renamed)?;
        renames(repo, ancestor, theirs, &mut renamed)?;
    }
    let mut out = Vec::new();
    for conflict in &found {
        let kind = match (&conflict.ancestor, &conflict.our, &conflict.their) {
            (Some(_), Some(_), Some(_)) => ConflictKind::BothModified,
            (Some(_), Some(_), None) => ConflictKind::DeletedByRevert,
            (Some(_), None, Some(_)) => ConflictKind::DeletedHere,
            (None, Some(_), Some(_)) => ConflictKind::BothAdded,
            _ => ConflictKind::Renamed,
        };
        let one_sided = conflict.our.is_none() || conflict.their.is_none();
        if let Some(new_names) = conflict
            .ancestor
            .as_ref()
            .filter(|_| one_sided)
            .and_then(|a| renamed.get(&path(a)))
        {
            out.extend(new_names.iter().map(|name| Conflict {
                path: name.clone(),
                kind: ConflictKind::Renamed,
            }));
            // Renamed differently on each side: git keeps the old name too (its ancestor
            // only), so it lists all three.
            if new_names.iter().any(|n| *n != new_names[0]) {
                out.extend(conflict.ancestor.as_ref().map(|a| Conflict {
                    path: path(a),
                    kind: ConflictKind::Renamed,
                }));
            }
            continue;
        }
        let entry = conflict
            .our
            .as_ref()
            .or(conflict.their.as_ref())
            .or(conflict.ancestor.as_ref());
        out.extend(entry.map(|e| Conflict {
            path: path(e),
            kind,
        }));
    }
    // One line per file: a rename's own description gives way to a plainer one.
    out.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then((a.kind == ConflictKind::Renamed).cmp(&(b.kind == ConflictKind::Renamed)))
    });
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// One file that differs between two trees, its path as git stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TreeChange {
    pub(crate) path: Vec<u8>,
    pub(crate) kind: ChangeKind,
}

/// The files that differ between two trees, in path order. Unlike a generic diff, folders
/// whose trees are identical are never read: the cost follows the change, not the tree.
pub(crate) fn tree_changes(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
) -> Result<Vec<TreeChange>, git2::Error> {
    let mut out = Vec::new();
    diff_level(repo, Some(old), Some(new), &[], &mut out)?;
    Ok(out)
}

fn diff_level(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: Option<&Tree<'_>>,
    prefix: &[u8],
    out: &mut Vec<TreeChange>,
) -> Result<(), git2::Error> {
    if let (Some(a), Some(b)) = (old, new)
        && a.id() == b.id()
    {
        return Ok(());
    }
    let (a, b) = (entries(old), entries(new));
    let mut names: Vec<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let subtree = |entry: Option<&(Oid, i32)>| match entry {
            Some(&(id, TREE_MODE)) => repo.find_tree(id).map(Some),
            _ => Ok(None),
        };
        let (x, y) = (a.get(name), b.get(name));
        if x == y {
            continue;
        }
        let (xt, yt) = (subtree(x)?, subtree(y)?);
        if xt.is_some() || yt.is_some() {
            diff_level(repo, xt.as_ref(), yt.as_ref(), &path, out)?;
        }
        let kind = match (x.filter(|_| xt.is_none()), y.filter(|_| yt.is_none())) {
            (Some(_), None) => ChangeKind::Deleted,
            (None, Some(_)) => ChangeKind::Added,
            (Some((_, xm)), Some((_, ym))) if xm & 0o170_000 != ym & 0o170_000 => {
                ChangeKind::TypeChanged
            }
            (Some(_), Some(_)) => ChangeKind::Modified,
            (None, None) => continue,
        };
        out.push(TreeChange { path, kind });
    }
    Ok(())
}

fn changes(repo: &Repository, old: &Tree<'_>, new: &Tree<'_>) -> Result<Vec<Change>, RevertError> {
    Ok(tree_changes(repo, old, new)
        .map_err(RevertError::git("cannot list the changed files"))?
        .into_iter()
        .map(|c| Change {
            path: String::from_utf8_lossy(&c.path).into_owned(),
            kind: c.kind,
        })
        .collect())
}

/// libgit2's three-way merge of whole trees (with rename detection): the merged tree, or
/// the conflicting files.
fn full_merge(
    repo: &Repository,
    [ancestor, ours, theirs]: [&Tree<'_>; 3],
    options: &MergeOptions,
) -> Result<Result<Oid, Vec<Conflict>>, RevertError> {
    let mut index = repo
        .merge_trees(ancestor, ours, theirs, Some(options))
        .map_err(RevertError::git("cannot merge"))?;
    if index.has_conflicts() && !resolve_agreed(repo, &mut index, [ancestor, ours, theirs])? {
        return Ok(Err(conflicts(repo, &index, [ancestor, ours, theirs])?));
    }
    index
        .write_tree_to(repo)
        .map(Ok)
        .map_err(RevertError::git("cannot write the merged tree"))
}

/// Resolves the conflicts libgit2 reports where both sides in fact agree, as git does:
/// when every conflict is either the same file added on both sides (a file renamed on one
/// side onto a path where the other side added the same content), or a file one side
/// removed and the other left untouched (the old name of that rename), or changed where
/// the removing side renamed it onto such an agreed path. In that last case git's merge
/// (ort) takes the agreed content and drops the change: once both sides hold the same file
/// at the rename's target, that path is settled before the rename is looked at, so the
/// change merged into the rename is not used. All or nothing: true when the index has no
/// conflict left.
fn resolve_agreed(
    repo: &Repository,
    index: &mut git2::Index,
    [ancestor, ours, theirs]: [&Tree<'_>; 3],
) -> Result<bool, RevertError> {
    let Ok(found) = index
        .conflicts()
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
    else {
        return Ok(false);
    };
    let same = |a: &git2::IndexEntry, b: &git2::IndexEntry| a.id == b.id && a.mode == b.mode;
    // Paths both sides added with the same content.
    let agreed: Vec<&[u8]> = found
        .iter()
        .filter_map(|c| match (&c.ancestor, &c.our, &c.their) {
            (None, Some(our), Some(their)) if our.path == their.path && same(our, their) => {
                Some(our.path.as_slice())
            }
            _ => None,
        })
        .collect();
    // The renames of the side that removed a file, found only when needed.
    let mut renamed: [Option<HashMap<String, Vec<String>>>; 2] = [None, None];
    let mut renamed_onto_agreed = |side: usize, old: &[u8]| -> Result<bool, RevertError> {
        if agreed.is_empty() {
            return Ok(false);
        }
        if renamed[side].is_none() {
            let mut map = HashMap::new();
            renames(repo, ancestor, [ours, theirs][side], &mut map)?;
            renamed[side] = Some(map);
        }
        Ok(renamed[side]
            .as_ref()
            .and_then(|map| map.get(String::from_utf8_lossy(old).as_ref()))
            .is_some_and(|targets| targets.iter().any(|t| agreed.contains(&t.as_bytes()))))
    };
    let mut resolved = Vec::with_capacity(found.len());
    for conflict in &found {
        match (&conflict.ancestor, &conflict.our, &conflict.their) {
            (_, Some(our), Some(their)) if our.path == their.path && same(our, their) => {
                resolved.push((
                    our.path.clone(),
                    Some(git2::IndexEntry {
                        ctime: our.ctime,
                        mtime: our.mtime,
                        dev: our.dev,
                        ino: our.ino,
                        mode: our.mode,
                        uid: our.uid,
                        gid: our.gid,
                        file_size: our.file_size,
                        id: our.id,
                        flags: our.flags & !0x3000, // stage 0: merged
                        flags_extended: our.flags_extended,
                        path: our.path.clone(),
                    }),
                ));
            }
            (Some(base), Some(kept), None) | (Some(base), None, Some(kept))
                if base.path == kept.path && same(base, kept) =>
            {
                resolved.push((base.path.clone(), None));
            }
            (Some(base), Some(kept), None) if base.path == kept.path => {
                if !renamed_onto_agreed(1, &base.path)? {
                    return Ok(false);
                }
                resolved.push((base.path.clone(), None));
            }
            (Some(base), None, Some(kept)) if base.path == kept.path => {
                if !renamed_onto_agreed(0, &base.path)? {
                    return Ok(false);
                }
                resolved.push((base.path.clone(), None));
            }
            _ => return Ok(false),
        }
    }
    for (path, entry) in resolved {
        if index.conflict_remove(&super::bytes_path(&path)).is_err() {
            return Ok(false);
        }
        if let Some(entry) = entry
            && index.add(&entry).is_err()
        {
            return Ok(false);
        }
    }
    Ok(!index.has_conflicts())
}

/// A tree entry as a merge compares it: what it holds and its mode.
type Entry = Option<(Oid, i32)>;

const TREE_MODE: i32 = 0o040_000;

fn entries(tree: Option<&Tree<'_>>) -> HashMap<Vec<u8>, (Oid, i32)> {
    tree.map(|t| {
        t.iter()
            .map(|e| (e.name_bytes().to_vec(), (e.id(), e.filemode())))
            .collect()
    })
    .unwrap_or_default()
}

/// True when `both` (what each side made of `base`) differs from `base` by changed files
/// only: no file or folder added or removed at any depth. A file removed on both sides may
/// be one side's rename source, one added on both sides its target: rename detection
/// decides those, even inside a folder both sides left identical.
fn changed_files_only(
    repo: &Repository,
    base: &Tree<'_>,
    both: &Tree<'_>,
) -> Result<bool, git2::Error> {
    if base.id() == both.id() {
        return Ok(true);
    }
    let (b, o) = (entries(Some(base)), entries(Some(both)));
    if b.len() != o.len() {
        return Ok(false);
    }
    for (name, &(bid, bmode)) in &b {
        let Some(&(oid, omode)) = o.get(name) else {
            return Ok(false);
        };
        match (bmode == TREE_MODE, omode == TREE_MODE) {
            (true, true) => {
                if !changed_files_only(repo, &repo.find_tree(bid)?, &repo.find_tree(oid)?)? {
                    return Ok(false);
                }
            }
            (false, false) => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// The three-way merge when every path changed on one side at most: whole entries are
/// taken, untouched folders are never read, only the folders on a changed path are
/// written. `None` when a path needs more (changed on both sides, or a shape where
/// rename detection could decide otherwise: deleted on both sides, added on both sides,
/// also inside a folder both sides changed the same way): then the full merge decides.
/// Where it answers, it answers what the full merge would, since renames only matter where
/// both sides touched a path.
fn trivial_merge(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    ours: &Tree<'_>,
    theirs: &Tree<'_>,
) -> Result<Option<Oid>, git2::Error> {
    let base_id = base.map(Tree::id);
    if let Some(base) = base.filter(|_| ours.id() == theirs.id()) {
        return Ok(changed_files_only(repo, base, ours)?.then(|| ours.id()));
    }
    if base_id == Some(ours.id()) {
        return Ok(Some(theirs.id()));
    }
    if base_id == Some(theirs.id()) {
        return Ok(Some(ours.id()));
    }
    let (b, o, t) = (entries(base), entries(Some(ours)), entries(Some(theirs)));
    let mut names: Vec<&Vec<u8>> = b.keys().chain(o.keys()).chain(t.keys()).collect();
    names.sort();
    names.dedup();
    let mut builder = repo.treebuilder(Some(ours))?;
    for name in names {
        let (be, oe, te): (Entry, Entry, Entry) = (
            b.get(name).copied(),
            o.get(name).copied(),
            t.get(name).copied(),
        );
        let merged = match (be, oe, te) {
            // Rename detection could pair these with an addition elsewhere.
            (Some(_), None, None) | (None, Some(_), Some(_)) => return Ok(None),
            // The same folder on both sides: what it holds decides (see above).
            (Some((bid, TREE_MODE)), Some((oid, TREE_MODE)), Some(_)) if oe == te => {
                if !changed_files_only(repo, &repo.find_tree(bid)?, &repo.find_tree(oid)?)? {
                    return Ok(None);
                }
                oe
            }
            // A folder became a file, or a file a folder, the same way on both sides.
            (Some((_, bm)), Some((_, om)), Some(_))
                if oe == te && (bm == TREE_MODE) != (om == TREE_MODE) =>
            {
                return Ok(None);
            }
            _ if oe == te => oe,
            _ if be == oe => te,
            _ if be == te => oe,
            (Some((bid, TREE_MODE)), Some((oid, TREE_MODE)), Some((tid, TREE_MODE))) => {
                let (bt, ot, tt) = (
                    repo.find_tree(bid)?,
                    repo.find_tree(oid)?,
                    repo.find_tree(tid)?,
                );
                match trivial_merge(repo, Some(&bt), &ot, &tt)? {
                    // git keeps no empty folders: a folder left empty goes.
                    Some(id) if repo.find_tree(id)?.is_empty() => None,
                    Some(id) => Some((id, TREE_MODE)),
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        if merged != oe {
            match merged {
                Some((id, mode)) => {
                    builder.insert(name.as_slice(), id, mode)?;
                }
                None => builder.remove(name.as_slice())?,
            }
        }
    }
    builder.write().map(Some)
}

fn empty_tree(repo: &Repository) -> Result<Tree<'_>, git2::Error> {
    let id = repo.treebuilder(None)?.write()?;
    repo.find_tree(id)
}

/// Computes every revert in memory, newest first as given: each one merges the reverted
/// commit's tree (ancestor), the tree so far (ours) and the parent's tree (theirs), and the
/// clean result becomes the next one's base. Writes objects (merged blobs, trees) to the
/// object database, which the dry-run keeps in memory; never a ref, the index or a file.
pub fn revert_in_memory(
    repo: &Repository,
    head: &Commit<'_>,
    commits: &[Oid],
    mainline: Option<u32>,
) -> Result<RevertPlan, RevertError> {
    let options = MergeOptions::new();
    let mut current = head
        .tree()
        .map_err(RevertError::git("cannot read HEAD's tree"))?;
    let mut steps = Vec::with_capacity(commits.len());
    for &oid in commits {
        let commit = repo
            .find_commit(oid)
            .map_err(RevertError::git(format!("cannot read commit {oid}")))?;
        let parent = reverted_parent(&commit, mainline)?
            .map(|n| commit.parent(n))
            .transpose()
            .map_err(RevertError::git(format!("cannot read the parent of {oid}")))?;
        // A root commit is reverted against the empty tree: everything it added goes.
        let parent_tree = parent
            .as_ref()
            .map_or_else(|| empty_tree(repo), Commit::tree)
            .map_err(RevertError::git(format!(
                "cannot read the parent tree of {oid}"
            )))?;
        let commit_tree = commit
            .tree()
            .map_err(RevertError::git(format!("cannot read the tree of {oid}")))?;
        let subject = subject(&commit);
        let message = revert_message(&commit, &subject, parent.as_ref().map(Commit::id));
        let fast = trivial_merge(repo, Some(&commit_tree), &current, &parent_tree).map_err(
            RevertError::git(format!("cannot compute the revert of {oid}")),
        )?;
        // The shortcut must agree with the full merge: the tests check it on every revert.
        #[cfg(test)]
        if let Some(fast) = fast {
            let full = full_merge(repo, [&commit_tree, &current, &parent_tree], &options);
            assert_eq!(full.ok(), Some(Ok(fast)), "trivial merge differs for {oid}");
        }
        let merged =
            match fast {
                Some(tree) => Ok(tree),
                None => full_merge(repo, [&commit_tree, &current, &parent_tree], &options)
                    .map_err(|e| match e {
                        RevertError::Git { source, .. } => RevertError::Git {
                            context: format!("cannot compute the revert of {oid}"),
                            source,
                        },
                        refused @ RevertError::Refused(_) => refused,
                    })?,
            };
        let result = match merged {
            Err(conflicts) => StepResult::Conflicted(conflicts),
            Ok(id) if id == current.id() => StepResult::Empty {
                on_branch: oid == head.id()
                    || repo.graph_descendant_of(head.id(), oid).unwrap_or(true),
            },
            Ok(id) => {
                let tree = repo
                    .find_tree(id)
                    .map_err(RevertError::git("cannot read a reverted tree"))?;
                let changes = changes(repo, &current, &tree)?;
                current = tree;
                StepResult::Applied { tree: id, changes }
            }
        };
        steps.push(RevertStep {
            commit: oid,
            parent: parent.as_ref().map(Commit::id),
            subject,
            message,
            result,
        });
    }
    Ok(RevertPlan {
        head: head.id(),
        steps,
        tree: current.id(),
    })
}
