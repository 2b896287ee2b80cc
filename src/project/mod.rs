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
/// nearest ancestor that has one.
pub fn find_config(cwd: &Path, config: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(file) = config {
        let file = cwd.join(file);
        return if file.is_file() {
            Ok(file)
        } else {
            Err(Error::ConfigNotFound {
                searched: file,
                explicit: true,
            })
        };
    }
    cwd.ancestors()
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ConfigNotFound {
            searched: cwd.to_path_buf(),
            explicit: false,
        })
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
        let mut files = Vec::new();
        collect_yaml(&self.runbooks_dir(), &mut files, 0);
        files.sort();
        files
    }

    /// Loads and validates one runbook.
    pub fn load_runbook(
        &self,
        cwd: &Path,
        path: &Path,
    ) -> Result<(Runbook, Vec<Diagnostic>), Vec<Diagnostic>> {
        let display = display_path(cwd, path);
        match validate::load_runbook(path, &display, &self.config) {
            (Some(runbook), warnings) => Ok((runbook, warnings)),
            (None, diagnostics) => Err(diagnostics),
        }
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out, depth + 1);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}
