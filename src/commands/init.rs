use std::io::Write as _;
use std::path::Path;

use crate::commands::Context;
use crate::error::Error;

/// Write release.yaml, the default runbooks of each stage, and `.release/` in .gitignore.
/// Never overwrites a file: what exists is left as it is, and said so.
#[derive(Debug, clap::Args)]
pub struct InitArgs {}

/// The files `init` writes, embedded from the repository's own `release.yaml` and
/// `runbooks/` so that what ships is what is tested.
pub const FILES: &[(&str, &str)] = &[
    ("release.yaml", include_str!("../../release.yaml")),
    (
        "runbooks/development/rollback.yaml",
        include_str!("../../runbooks/development/rollback.yaml"),
    ),
    (
        "runbooks/development/promote.yaml",
        include_str!("../../runbooks/development/promote.yaml"),
    ),
    (
        "runbooks/staging/rollback.yaml",
        include_str!("../../runbooks/staging/rollback.yaml"),
    ),
    (
        "runbooks/staging/promote.yaml",
        include_str!("../../runbooks/staging/promote.yaml"),
    ),
    (
        "runbooks/production/rollback.yaml",
        include_str!("../../runbooks/production/rollback.yaml"),
    ),
    (
        "runbooks/production/promote.yaml",
        include_str!("../../runbooks/production/promote.yaml"),
    ),
];

const GITIGNORE_LINE: &str = ".release/";

pub fn cmd_init(ctx: &Context<'_>, _args: &InitArgs) -> Result<i32, Error> {
    // With `--config FILE`, the configuration is FILE and the project (runbooks,
    // .gitignore) is FILE's folder, as every other command reads it.
    let config = ctx
        .global
        .config
        .as_deref()
        .map_or_else(|| ctx.cwd.join("release.yaml"), |c| ctx.cwd.join(c));
    let root = config
        .parent()
        .map_or_else(|| ctx.cwd.clone(), Path::to_path_buf);
    let target = |relative: &str| {
        if relative == "release.yaml" {
            config.clone()
        } else {
            root.join(relative)
        }
    };
    let shown = |path: &Path| {
        crate::project::display_path(&ctx.cwd, path)
            .display()
            .to_string()
    };
    // Something that is not a file where a file goes (a folder named release.yaml) would
    // be "kept" and then never found: refuse before writing anything.
    for path in FILES
        .iter()
        .map(|(r, _)| target(r))
        .chain([root.join(".gitignore")])
    {
        if let Ok(metadata) = std::fs::metadata(&path)
            && !metadata.is_file()
        {
            let relative = shown(&path);
            return Err(Error::InvalidInput {
                message: format!(
                    "{relative} exists but is {}, not a file",
                    crate::project::kind_of(&metadata.file_type())
                ),
                hint: Some(format!(
                    "remove or rename {relative}, then run `release init` again"
                )),
            });
        }
    }
    // Each file, and whether it was written (or kept as it was).
    let mut files: Vec<(String, bool)> = Vec::new();
    for (relative, content) in FILES {
        let path = target(relative);
        if path.exists() {
            files.push((shown(&path), false));
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        write_new(&path, content)?;
        files.push((shown(&path), true));
    }
    let gitignore = root.join(".gitignore");
    let ignored = add_to_gitignore(&gitignore)?;
    let which = |written: bool| -> Vec<&str> {
        files
            .iter()
            .filter(|(_, w)| *w == written)
            .map(|(r, _)| r.as_str())
            .collect()
    };
    if ctx.output.json {
        ctx.output.json_value(&serde_json::json!({
            "wrote": which(true),
            "kept": which(false),
            "gitignore": if ignored { "added" } else { "kept" },
        }));
        return Ok(0);
    }
    for (relative, written) in &files {
        ctx.output.result(&if *written {
            format!("wrote  {relative}")
        } else {
            format!("kept   {relative} (exists; not overwritten)")
        });
    }
    let gitignore = shown(&gitignore);
    if ignored {
        ctx.output.result(&format!(
            "added  {GITIGNORE_LINE} to {gitignore} (the audit log and locks stay out of git)"
        ));
    } else {
        ctx.output.result(&format!(
            "kept   {gitignore} (already lists {GITIGNORE_LINE})"
        ));
    }
    if files.iter().any(|(_, written)| *written) {
        let config = shown(&config);
        let validate = match ctx.global.config {
            Some(_) => format!("release --config {config} runbook validate"),
            None => "release runbook validate".to_owned(),
        };
        ctx.output.result(&format!(
            "next:  edit {config} (components, channels, gates), then run `{validate}`"
        ));
    }
    Ok(0)
}

/// Creates the file, failing rather than overwriting if it appeared meanwhile.
fn write_new(path: &Path, content: &str) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    file.write_all(content.as_bytes())
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Appends `.release/` to .gitignore unless a line already ignores it. True if it wrote.
fn add_to_gitignore(path: &Path) -> Result<bool, Error> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    let listed = existing
        .lines()
        .map(str::trim)
        .any(|l| matches!(l, ".release" | ".release/" | "/.release" | "/.release/"));
    if listed {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(file, "{separator}{GITIGNORE_LINE}")
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(true)
}
