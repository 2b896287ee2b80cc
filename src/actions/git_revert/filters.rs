//! Filter drivers: `filter=NAME` in `.gitattributes` with `filter.NAME.smudge` in git's
//! config (git LFS is one). libgit2 runs only its built-in filters (line endings, `ident`),
//! so its checkout leaves such a file as the repository stores it (for LFS, the pointer).
//! git runs the driver's smudge command instead; so does a real run, on the files its
//! checkout wrote, once the branch has moved.
//!
//! The command is the user's own git config, run as git runs it (`sh -c`, in the work
//! tree, the blob on stdin, the file's content on stdout). The path is never shell text:
//! `%f` becomes `"$1"`, and the path is passed as that argument.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use git2::{Oid, Repository};

use super::{RevertError, bytes_path};

/// A file the revert wrote whose `filter` attribute names a driver configured in git's
/// config.
#[derive(Debug)]
pub(super) struct Filtered {
    pub(super) path: Vec<u8>,
    /// The driver's name, as in `filter=NAME`.
    pub(super) driver: String,
    /// `filter.NAME.smudge`; `None` when the driver has only a `process` command, which
    /// speaks a protocol only git does.
    pub(super) smudge: Option<String>,
    blob: Oid,
}

impl Filtered {
    fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// The `filter.NAME.smudge` and `filter.NAME.process` keys of git's config: usually none.
pub(super) fn configured(repo: &Repository) -> Result<Vec<String>, RevertError> {
    let context = "cannot read git's config for filter drivers";
    let config = repo.config().map_err(RevertError::git(context))?;
    let mut configured = Vec::new();
    let mut entries = config
        .entries(Some(r"^filter\..*\.(smudge|process)$"))
        .map_err(RevertError::git(context))?;
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(RevertError::git(context))?;
        if let Ok(name) = entry.name() {
            configured.push(name.to_owned());
        }
    }
    Ok(configured)
}

/// The files among `written` (paths with their new blobs) that go through one of the
/// `configured` filter drivers.
pub(super) fn filtered(
    repo: &Repository,
    configured: &[String],
    written: &[(Vec<u8>, Oid)],
) -> Result<Vec<Filtered>, RevertError> {
    let config = repo.config().map_err(RevertError::git(
        "cannot read git's config for filter drivers",
    ))?;
    let mut out = Vec::new();
    for (path, blob) in written {
        let Some(driver) = driver_of(repo, path)
            .map_err(RevertError::git("cannot read the `filter` attribute"))?
        else {
            continue;
        };
        let key = |what: &str| format!("filter.{driver}.{what}");
        let has = |what: &str| {
            configured
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&key(what)))
        };
        if !has("smudge") && !has("process") {
            continue;
        }
        out.push(Filtered {
            path: path.clone(),
            driver: driver.clone(),
            smudge: config.get_string(&key("smudge")).ok(),
            blob: *blob,
        });
    }
    Ok(out)
}

/// The driver named by the `filter` attribute of `path`, if any: `filter` set as a plain
/// flag (`filter`, `-filter`) names none.
fn driver_of(repo: &Repository, path: &[u8]) -> Result<Option<String>, git2::Error> {
    let attr = repo.get_attr_bytes(
        &bytes_path(path),
        "filter",
        git2::AttrCheckFlags::FILE_THEN_INDEX,
    )?;
    Ok(match git2::AttrValue::from_bytes(attr) {
        git2::AttrValue::String(driver) => Some(driver.to_owned()),
        _ => None,
    })
}

/// A refusal for the files whose driver has no smudge command, before anything changes.
pub(super) fn unsupported(files: &[Filtered]) -> Option<String> {
    let without: Vec<&Filtered> = files.iter().filter(|f| f.smudge.is_none()).collect();
    let first = without.first()?;
    let paths: Vec<String> = without.iter().map(|f| f.display_path()).collect();
    Some(format!(
        "{} go through the filter driver `{}`, which has only a `filter.{}.process` command (a protocol only git speaks) and no `filter.{}.smudge`; set a smudge command, or revert these commits with `git revert`; nothing was changed",
        paths.join(", "),
        first.driver,
        first.driver,
        first.driver
    ))
}

/// The dry-run's account of the smudge commands a real run will run, if any.
pub(super) fn describe(files: &[Filtered]) -> Option<String> {
    if files.is_empty() {
        return None;
    }
    let paths: Vec<String> = files
        .iter()
        .map(|f| format!("{} (`{}`)", f.display_path(), f.driver))
        .collect();
    Some(format!(
        "then, as git's checkout does, the filter drivers' smudge commands write {} (not run in a dry-run)",
        paths.join(", ")
    ))
}

/// Runs each file's smudge command and writes what it prints over the file libgit2
/// checked out, then records the file's new stat data in the index, so that the next
/// clean check sees the file as git does. All files are tried; the failures come back as
/// one message with the fix.
pub(super) fn smudge(repo: &Repository, files: &[Filtered]) -> Result<(), String> {
    let Some(workdir) = repo.workdir() else {
        return Ok(());
    };
    let mut index = repo
        .index()
        .map_err(|e| format!("cannot open the index: {}", e.message()))?;
    let mut failed = Vec::new();
    let mut written = Vec::new();
    for file in files {
        let Some(command) = &file.smudge else {
            continue;
        };
        match smudge_one(repo, workdir, file, command) {
            Ok(()) => written.push(file),
            Err(why) => failed.push(format!("{} ({why})", file.display_path())),
        }
    }
    // A file as new as the index is "racily clean": its stat data proves nothing, and a
    // check that cannot run the driver would hash the smudged content. Let the clock move
    // on (the file system's is coarse) before the stat data is taken and the index written.
    std::thread::sleep(std::time::Duration::from_millis(20));
    for file in written {
        if let Err(why) = restamp(&mut index, workdir, &file.path) {
            failed.push(format!("{} ({why})", file.display_path()));
        }
    }
    index
        .write()
        .map_err(|e| format!("cannot write the index: {}", e.message()))?;
    if failed.is_empty() {
        return Ok(());
    }
    let mut checkout: Vec<String> = ["git", "checkout", "--"].map(String::from).to_vec();
    checkout.extend(files.iter().map(Filtered::display_path));
    Err(format!(
        "the revert commits are made, but the filter driver's smudge command failed for {}; these files hold the content as stored in the repository: run `{}` once the driver works",
        failed.join(", "),
        crate::actions::run::show_argv(&checkout)
    ))
}

fn smudge_one(
    repo: &Repository,
    workdir: &Path,
    file: &Filtered,
    command: &str,
) -> Result<(), String> {
    let blob = repo
        .find_blob(file.blob)
        .map_err(|e| format!("cannot read its blob: {}", e.message()))?;
    let smudged = run_filter(workdir, command, &file.path, blob.content().to_vec())?;
    std::fs::write(workdir.join(bytes_path(&file.path)), smudged)
        .map_err(|e| format!("cannot write it: {e}"))
}

/// Runs a driver's command as git does (`sh -c` in the work tree, `%f` the path, given as
/// an argument), `input` on stdin; what it printed.
fn run_filter(
    workdir: &Path,
    command: &str,
    path: &[u8],
    input: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let script = command.replace("%f", "\"$1\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg("sh")
        .arg(bytes_path(path))
        .current_dir(workdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`sh` cannot start: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("`{command}`: {e}"))?;
    // A command that exits without reading all of its input is judged by its status.
    let _ = feeder.join();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr.lines().next().unwrap_or_default().trim();
        return Err(format!("`{command}` {}: {said}", output.status));
    }
    Ok(output.stdout)
}

/// Sets the index entry's stat data to the file's, as `git update-index --refresh` does.
#[cfg(not(unix))]
fn restamp(_index: &mut git2::Index, _workdir: &Path, _path: &[u8]) -> Result<(), String> {
    Ok(())
}

/// Sets the index entry's stat data to the file's, as `git update-index --refresh` does.
#[cfg(unix)]
fn restamp(index: &mut git2::Index, workdir: &Path, path: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(mut entry) = index.get_path(&bytes_path(path), 0) else {
        return Ok(());
    };
    let meta = std::fs::symlink_metadata(workdir.join(bytes_path(path)))
        .map_err(|e| format!("cannot read it back: {e}"))?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the index stores 32-bit stat fields, truncated as git truncates them"
    )]
    {
        entry.ctime = git2::IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32);
        entry.mtime = git2::IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32);
        entry.dev = meta.dev() as u32;
        entry.ino = meta.ino() as u32;
        entry.uid = meta.uid();
        entry.gid = meta.gid();
        entry.file_size = meta.size() as u32;
    }
    index
        .add(&entry)
        .map_err(|e| format!("cannot record it in the index: {}", e.message()))
}

/// The filter driver `path` goes through, when it has a clean command: its name and
/// `filter.NAME.clean`.
pub(super) fn clean_command(repo: &Repository, path: &[u8]) -> Option<(String, String)> {
    let driver = driver_of(repo, path).ok()??;
    let key = format!("filter.{driver}.clean");
    let command = repo.config().ok()?.get_string(&key).ok()?;
    Some((driver, command))
}

/// Whether the work-tree file at `path`, put through its filter driver's clean command as
/// git would, is the blob `id`. libgit2 hashes the file as it is, so a smudged file (an
/// LFS file's content) whose stat data changed looks modified to it.
pub(super) fn cleans_to(repo: &Repository, path: &[u8], id: Oid) -> bool {
    let Some(workdir) = repo.workdir() else {
        return false;
    };
    let Some((_, command)) = clean_command(repo, path) else {
        return false;
    };
    let Ok(content) = std::fs::read(workdir.join(bytes_path(path))) else {
        return false;
    };
    run_filter(workdir, &command, path, content)
        .ok()
        .and_then(|cleaned| Oid::hash_object(git2::ObjectType::Blob, &cleaned).ok())
        .is_some_and(|cleaned| cleaned == id)
}
