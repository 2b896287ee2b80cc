//! `release.yaml` and runbooks: typed models, loading, validation and diagnostics.

pub mod config;
pub mod diagnostic;
pub mod duration;
pub mod graph;
pub mod named_map;
pub mod runbook;
pub mod spanned;
pub mod time;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use crate::error::Error;
use config::Config;
use diagnostic::Diagnostic;
use runbook::Runbook;

pub const CONFIG_FILE: &str = "release.yaml";

/// A loaded, valid project: `release.yaml` and where it lives.
#[derive(Debug)]
pub struct Project {
    /// The folder of `release.yaml`; relative paths in it are relative to this.
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    /// Warnings found while loading (errors make loading fail).
    pub warnings: Vec<Diagnostic>,
}

/// Where `release.yaml` is: `--config FILE`, else the current directory (after `-C`) or its
/// nearest ancestor that has one. A `release.yaml` that is not a file (a folder, a pipe)
/// stops the search with an error naming it, rather than being passed over for a parent's.
pub fn find_config(cwd: &Path, config: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(file) = config {
        let file = cwd.join(file);
        return match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => Ok(file),
            Ok(m) => Err(Error::InvalidInput {
                message: format!(
                    "--config {} is {}, not a file",
                    display_path(cwd, &file).display(),
                    kind_of(&m.file_type())
                ),
                hint: Some(if m.is_dir() {
                    "--config takes the release.yaml file itself; use `-C DIR` to run in a folder"
                        .into()
                } else {
                    "point --config at the release.yaml file".into()
                }),
            }),
            Err(_) => Err(Error::ConfigNotFound {
                searched: file,
                explicit: true,
            }),
        };
    }
    for dir in cwd.ancestors() {
        let path = dir.join(CONFIG_FILE);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(path),
            Ok(m) => return Err(not_a_file(cwd, &path, &m.file_type())),
            Err(_) => {}
        }
    }
    Err(Error::ConfigNotFound {
        searched: cwd.to_path_buf(),
        explicit: false,
    })
}

/// `release.yaml` exists but is a folder (or a pipe, a device): an error naming it.
pub fn not_a_file(cwd: &Path, path: &Path, kind: &std::fs::FileType) -> Error {
    Error::InvalidInput {
        message: format!(
            "{} exists but is {}, not a file",
            display_path(cwd, path).display(),
            kind_of(kind)
        ),
        hint: Some(format!(
            "{CONFIG_FILE} must be a file: remove or rename what is there, then run `release init`"
        )),
    }
}

/// "a folder", "a named pipe (FIFO)", … for messages about files that are not regular files.
pub fn kind_of(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a file"
    } else {
        "not a regular file"
    }
}

/// Why a configuration file or runbook could not be read.
#[derive(Debug)]
pub struct ReadError {
    pub message: String,
    pub hint: Option<String>,
}

/// Reads a configuration file or runbook, never more than [`yaml::MAX_FILE_BYTES`] + 1 bytes:
/// anything but a regular file (a pipe, `/dev/zero`) is refused before it is opened, and a
/// file that grows past the limit while read is refused as soon as it crosses it.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| ReadError {
        message: format!("cannot read: {e}"),
        hint: None,
    };
    let metadata = std::fs::metadata(path).map_err(cannot)?;
    if !metadata.is_file() {
        let kind = kind_of(&metadata.file_type());
        return Err(ReadError {
            message: format!("cannot read: this is {kind}, not a file"),
            hint: Some(if metadata.is_dir() {
                "give the path of a YAML file".into()
            } else {
                "release.yaml and runbooks must be regular files".into()
            }),
        });
    }
    let too_big = |message: String| ReadError {
        message,
        hint: Some("configuration and runbooks are meant to be small: split it".into()),
    };
    if metadata.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(too_big(format!(
            "file is {} bytes, over the limit of {} bytes (1 MiB)",
            metadata.len(),
            yaml::MAX_FILE_BYTES
        )));
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0) + 1);
    file.take(yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > yaml::MAX_FILE_BYTES {
        return Err(too_big(format!(
            "file is over the limit of {} bytes (1 MiB): reading stopped there",
            yaml::MAX_FILE_BYTES
        )));
    }
    Ok(bytes)
}

/// The path to show for `path`: relative to the current directory when below it.
pub fn display_path(cwd: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(cwd)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

impl Project {
    /// Finds and validates `release.yaml`.
    pub fn load(cwd: &Path, config: Option<&Path>) -> Result<Project, Error> {
        let config_path = find_config(cwd, config)?;
        let display = display_path(cwd, &config_path);
        let (config, diagnostics) = validate::load_config(&config_path, &display);
        let config = match config {
            Some(config) if !diagnostics.iter().any(Diagnostic::is_error) => config,
            _ => return Err(Error::Invalid(diagnostics)),
        };
        let root = config_path
            .parent()
            .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf);
        Ok(Project {
            root,
            config_path,
            config,
            warnings: diagnostics,
        })
    }

    /// The runbooks folder.
    pub fn runbooks_dir(&self) -> PathBuf {
        self.root.join(&self.config.header.runbooks)
    }

    /// The runbooks folder as the audit log names runbooks: relative to the project root.
    pub fn runbooks_label(&self) -> String {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        display_path(&real(&self.root), &real(&self.runbooks_dir()))
            .display()
            .to_string()
    }

    /// `runbooks/<stage>/<kind>.yaml`.
    pub fn runbook_path(&self, stage: &str, kind: &str) -> PathBuf {
        self.runbooks_dir().join(stage).join(format!("{kind}.yaml"))
    }

    /// Every YAML file under the runbooks folder, sorted.
    pub fn runbook_files(&self) -> Vec<PathBuf> {
        yaml_files(&self.runbooks_dir(), &mut Vec::new())
    }

    /// Loads and validates one runbook.
    pub fn load_runbook(
        &self,
        cwd: &Path,
        path: &Path,
    ) -> Result<(Runbook, Vec<Diagnostic>), Vec<Diagnostic>> {
        let display = display_path(cwd, path);
        match validate::load_runbook(path, &display, Some(&self.config)) {
            (Some(runbook), warnings) => Ok((runbook, warnings)),
            (None, diagnostics) => Err(diagnostics),
        }
    }
}

/// Every YAML file (`.yaml`, `.yml`) under `dir`, sorted; the folders that cannot be read
/// are added to `unreadable` with the reason (a missing `dir` itself is not one).
pub fn yaml_files(dir: &Path, unreadable: &mut Vec<(PathBuf, std::io::Error)>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(_) => collect_yaml(dir, &mut files, unreadable, 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => unreadable.push((dir.to_path_buf(), e)),
    }
    files.sort();
    files
}

fn collect_yaml(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    unreadable: &mut Vec<(PathBuf, std::io::Error)>,
    depth: usize,
) {
    if depth > 8 {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            unreadable.push((dir.to_path_buf(), e));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out, unreadable, depth + 1);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}
