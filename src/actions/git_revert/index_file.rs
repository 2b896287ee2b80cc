//! The git index file read directly, for the quick clean check only: the entries' paths,
//! stat data, modes and flags, and the tree cache's root, without libgit2. That lets the
//! work tree's stat data be checked while libgit2 starts (its first use loads OpenSSL's CA
//! bundle, which costs as much as the stat calls), and spares the dry-run libgit2's load
//! of the whole index. The caller uses what is read here only while the file's stamp
//! (size, times, inode) is still the one read. Anything unusual (another version, a split
//! or sparse index, a short file) gives `None`, leaving the check to libgit2; the tests
//! check the entries against libgit2's in every index version.

use std::io::Read as _;
use std::path::Path;

/// One index entry, as stored (32-bit stat fields, as git truncates them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) ctime: (u32, u32),
    pub(crate) mtime: (u32, u32),
    pub(crate) ino: u32,
    pub(crate) mode: u32,
    pub(crate) size: u32,
    pub(crate) id: [u8; 20],
    pub(crate) flags: u16,
    pub(crate) flags_extended: u16,
    pub(crate) path: Vec<u8>,
}

impl Entry {
    pub(crate) fn from_git2(entry: &git2::IndexEntry) -> Self {
        let mut id = [0; 20];
        let bytes = entry.id.as_bytes();
        let n = bytes.len().min(20);
        id[..n].copy_from_slice(&bytes[..n]);
        #[expect(
            clippy::cast_sign_loss,
            reason = "libgit2 hands the index's unsigned 32-bit times over as signed"
        )]
        Self {
            ctime: (entry.ctime.seconds() as u32, entry.ctime.nanoseconds()),
            mtime: (entry.mtime.seconds() as u32, entry.mtime.nanoseconds()),
            ino: entry.ino,
            mode: entry.mode,
            size: entry.file_size,
            id,
            flags: entry.flags,
            flags_extended: entry.flags_extended,
            path: entry.path.clone(),
        }
    }
}

/// What identifies one version of the index file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
    pub(crate) ino: u64,
}

#[cfg(unix)]
pub(crate) fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
    }
}

/// What the quick check needs of an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) entries: Vec<Entry>,
    /// The tree the whole index makes, from the cache git and libgit2 keep in the `TREE`
    /// extension, when that cache is valid for the root and covers every entry.
    pub(crate) tree: Option<[u8; 20]>,
}

/// The index file at `path`, and the file's stamp as read.
#[cfg(unix)]
pub(crate) fn read(path: &Path) -> Option<(Index, Stamp)> {
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
    file.read_to_end(&mut data).ok()?;
    if data.len() as u64 != meta.len() {
        return None;
    }
    Some((parse(&data)?, stamp(&meta)))
}

/// The trailing checksum (SHA-1).
const HASH: usize = 20;

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.data.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    /// A NUL-terminated string (the NUL consumed, not returned).
    fn until_nul(&mut self) -> Option<&[u8]> {
        let rest = self.data.get(self.at..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        let out = &rest[..len];
        self.at += len + 1;
        Some(out)
    }

    /// Index v4's prefix length: git's `decode_varint`.
    fn varint(&mut self) -> Option<usize> {
        let mut c = *self.take(1)?.first()?;
        let mut value = usize::from(c & 0x7f);
        while c & 0x80 != 0 {
            value = value.checked_add(1)?.checked_mul(128)?;
            c = *self.take(1)?.first()?;
            value |= usize::from(c & 0x7f);
        }
        Some(value)
    }
}

/// The entries and cached tree of an index file's bytes (versions 2 to 4, SHA-1); `None`
/// for anything else or anything this does not follow.
pub(crate) fn parse(data: &[u8]) -> Option<Index> {
    let mut c = Cursor { data, at: 0 };
    if c.take(4)? != b"DIRC" {
        return None;
    }
    let version = c.u32()?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = usize::try_from(c.u32()?).ok()?;
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(data.len() / 62));
    let mut previous: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = c.at;
        let ctime = (c.u32()?, c.u32()?);
        let mtime = (c.u32()?, c.u32()?);
        let _dev = c.u32()?;
        let ino = c.u32()?;
        let mode = c.u32()?;
        let _uid = c.u32()?;
        let _gid = c.u32()?;
        let size = c.u32()?;
        let id: [u8; 20] = c.take(20)?.try_into().ok()?;
        let flags = c.u16()?;
        let flags_extended = if flags & 0x4000 != 0 {
            if version < 3 {
                return None;
            }
            c.u16()?
        } else {
            0
        };
        let path = if version == 4 {
            let strip = c.varint()?;
            let keep = previous.len().checked_sub(strip)?;
            let mut path = previous[..keep].to_vec();
            path.extend_from_slice(c.until_nul()?);
            path
        } else {
            let path = c.until_nul()?.to_vec();
            // 1 to 8 NULs pad the entry to a multiple of 8 bytes, the name's NUL included.
            let used = c.at - start;
            let padded = (used - 1 + 8) & !7;
            c.take(padded - used)?;
            path
        };
        let name_length = usize::from(flags & 0x0fff);
        if name_length < 0x0fff && name_length != path.len() {
            return None;
        }
        previous.clone_from(&path);
        entries.push(Entry {
            ctime,
            mtime,
            ino,
            mode,
            size,
            id,
            flags,
            flags_extended,
            path,
        });
    }
    // Extensions, then the checksum. A split index keeps its entries elsewhere, a sparse
    // one has folders for entries: neither is for this reader.
    let mut tree = None;
    while data.len().checked_sub(c.at)? > HASH {
        let signature: [u8; 4] = c.take(4)?.try_into().ok()?;
        if &signature == b"link" || &signature == b"sdir" {
            return None;
        }
        let size = usize::try_from(c.u32()?).ok()?;
        let extension = c.take(size)?;
        if &signature == b"TREE" {
            tree = cached_root(extension).filter(|&(_, count)| count == entries.len());
        }
    }
    (data.len() - c.at == HASH).then(|| Index {
        entries,
        tree: tree.map(|(id, _)| id),
    })
}

/// The root's record of a `TREE` extension: its tree and the number of entries it covers,
/// when valid. A record is the path (empty for the root), NUL, the entry count in ASCII
/// (`-1` when invalidated), a space, the subtree count, a newline, then the tree's id
/// when valid; the root's comes first.
fn cached_root(extension: &[u8]) -> Option<([u8; 20], usize)> {
    let mut c = Cursor {
        data: extension,
        at: 0,
    };
    if !c.until_nul()?.is_empty() {
        return None;
    }
    let rest = c.data.get(c.at..)?;
    let line_end = rest.iter().position(|&b| b == b'\n')?;
    let (count, _subtrees) = std::str::from_utf8(&rest[..line_end])
        .ok()?
        .split_once(' ')?;
    // An invalidated root (`-1`) does not parse as a count, and has no id.
    let count: usize = count.parse().ok()?;
    c.at += line_end + 1;
    Some((c.take(20)?.try_into().ok()?, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry libgit2 reads from the index at `dir`, as this module stores them.
    fn libgit2_entries(repo: &git2::Repository) -> Vec<Entry> {
        let mut index = repo.index().unwrap();
        index.read(true).unwrap();
        index.iter().map(|e| Entry::from_git2(&e)).collect()
    }

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=T", "-c", "user.email=t@e"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[test]
    fn reads_what_libgit2_reads_in_every_index_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        for (i, name) in [
            "a.txt",
            "dir/b.txt",
            "dir/sub/c.txt",
            "dir/sub/cd.txt",
            "e f.txt",
            &format!("long/{}.txt", "x".repeat(200)),
        ]
        .iter()
        .enumerate()
        {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{i}\n")).unwrap();
        }
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "one"]);
        // An intent-to-add entry needs the extended flags (version 3).
        std::fs::write(root.join("new.txt"), "new\n").unwrap();
        git(root, &["add", "-N", "new.txt"]);
        let repo = git2::Repository::open(root).unwrap();
        for version in ["4", "3", "2"] {
            if version == "2" {
                git(root, &["rm", "-q", "--cached", "new.txt"]);
            }
            git(root, &["update-index", "--index-version", version]);
            let data = std::fs::read(root.join(".git/index")).unwrap();
            assert_eq!(
                u32::from_be_bytes(data[4..8].try_into().unwrap()).to_string(),
                version
            );
            let parsed = parse(&data).expect("parsed");
            assert_eq!(parsed.entries, libgit2_entries(&repo), "version {version}");
            assert_eq!(parsed.entries.len(), if version == "2" { 6 } else { 7 });
        }
        let (index, _) = read(&root.join(".git/index")).unwrap();
        assert_eq!(index.entries.len(), 6);
    }

    /// The cached tree is the one the index makes, and none once git invalidates it.
    #[test]
    fn reads_the_cached_tree_while_git_keeps_it_valid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        for name in ["a.txt", "dir/b.txt", "dir/sub/c.txt"] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, name).unwrap();
        }
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "one"]);
        let repo = git2::Repository::open(root).unwrap();
        let head_tree = repo.head().unwrap().peel_to_tree().unwrap().id();
        let index = |root: &Path| parse(&std::fs::read(root.join(".git/index")).unwrap()).unwrap();
        assert_eq!(
            index(root).tree,
            Some(head_tree.as_bytes().try_into().unwrap())
        );

        // Staging a change invalidates the root's record (and the folders above the file).
        std::fs::write(root.join("dir/sub/c.txt"), "changed").unwrap();
        git(root, &["add", "dir/sub/c.txt"]);
        assert_eq!(index(root).tree, None);
        // A commit writes the cache again, for the new HEAD's tree.
        git(root, &["commit", "-qm", "two"]);
        let head_tree = repo.head().unwrap().peel_to_tree().unwrap().id();
        assert_eq!(
            index(root).tree,
            Some(head_tree.as_bytes().try_into().unwrap())
        );
        assert_eq!(cached_root(b"\0-1 0\n"), None);
        assert_eq!(cached_root(b"\x002 0\n"), None, "no id");
        assert_eq!(
            cached_root(&[b"\x002 0\n".as_slice(), &[7; 20]].concat()),
            Some(([7; 20], 2))
        );
        assert_eq!(
            cached_root(&[b"dir\x002 0\n".as_slice(), &[7; 20]].concat()),
            None
        );
    }

    #[test]
    fn anything_unusual_is_left_to_libgit2() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        std::fs::write(root.join("a.txt"), "a\n").unwrap();
        git(root, &["add", "."]);
        let data = std::fs::read(root.join(".git/index")).unwrap();
        assert!(parse(&data).is_some());
        assert!(parse(&data[..data.len() - 1]).is_none(), "short");
        assert!(
            parse(&[data.as_slice(), b"x"].concat()).is_none(),
            "trailing bytes"
        );
        let mut other = data.clone();
        other[7] = 5;
        assert!(parse(&other).is_none(), "version 5");
        git(root, &["update-index", "--split-index"]);
        let split = std::fs::read(root.join(".git/index")).unwrap();
        assert!(parse(&split).is_none(), "split index");
    }
}
