use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::commands::Context;
use crate::error::Error;
use crate::project::config::Config;
use crate::project::diagnostic::{Diagnostic, Severity, plural};
use crate::project::runbook::{Runbook, When};
use crate::project::{self, Project, display_path, validate};

/// Check and draw runbooks.
#[derive(Debug, clap::Args)]
pub struct RunbookArgs {
    #[command(subcommand)]
    pub command: RunbookCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunbookCommand {
    Validate(ValidateArgs),
    Graph(GraphArgs),
}

/// Validate release.yaml and runbooks, reporting every problem at once (exit 2 if any).
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Runbook files; default: every YAML file under the runbooks folder.
    pub paths: Vec<PathBuf>,
}

/// Print a runbook's step graph.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The runbook file.
    pub path: PathBuf,

    /// Mermaid (for Markdown) or Graphviz dot.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

pub fn cmd_runbook(ctx: &Context<'_>, args: &RunbookArgs) -> Result<i32, Error> {
    match &args.command {
        RunbookCommand::Validate(a) => cmd_validate(ctx, a),
        RunbookCommand::Graph(a) => cmd_graph(ctx, a),
    }
}

fn cmd_validate(ctx: &Context<'_>, args: &ValidateArgs) -> Result<i32, Error> {
    let config_path = project::find_config(&ctx.cwd, ctx.global.config.as_deref())?;
    let config_display = display_path(&ctx.cwd, &config_path);
    let (config, mut diagnostics) = validate::load_config_and_layout(&config_path, &config_display);
    let root = config_path.parent().unwrap_or(&ctx.cwd).to_path_buf();
    let real_config = std::fs::canonicalize(&config_path).ok();
    let is_config =
        |p: &Path| real_config.is_some() && std::fs::canonicalize(p).ok() == real_config;

    // Without a readable release.yaml, runbooks are still checked (syntax, keys, types,
    // graph) in the default folder; only the checks against the config are skipped.
    let runbooks_dir = root.join(
        config
            .as_ref()
            .map_or_else(|| PathBuf::from("runbooks"), |c| c.header.runbooks.clone()),
    );
    let mut unreadable = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    if args.paths.is_empty() {
        // A `runbooks:` folder that does not exist is already an error of release.yaml.
        let folder_refused = diagnostics
            .iter()
            .any(|d| d.is_error() && d.message.starts_with("`runbooks`"));
        if let Some(config) = config.as_ref().filter(|_| !folder_refused) {
            diagnostics.extend(check_layout(ctx, config, &runbooks_dir));
        }
        files = project::yaml_files(&runbooks_dir, &mut unreadable);
    } else {
        for given in &args.paths {
            let path = ctx.cwd.join(given);
            let display = display_path(&ctx.cwd, &path);
            if is_config(&path) {
                let mut d = Diagnostic::about_file(
                    &display,
                    "this is the project config, not a runbook: it is validated as release.yaml",
                )
                .with_hint(
                    "give runbook files, or no path to validate release.yaml and every runbook",
                );
                d.severity = Severity::Warning;
                diagnostics.push(d);
            } else if path.is_dir() {
                let found = project::yaml_files(&path, &mut unreadable);
                if found.is_empty() && unreadable.is_empty() {
                    diagnostics.push(
                        Diagnostic::about_file(&display, "this folder holds no runbook (no .yaml file)")
                            .with_hint("give runbook files, or no path to validate every runbook of release.yaml"),
                    );
                }
                files.extend(found);
            } else {
                files.push(path);
            }
        }
    }
    for (dir, e) in unreadable {
        diagnostics.push(
            Diagnostic::about_file(
                &display_path(&ctx.cwd, &dir),
                format!("cannot read this folder: {e}"),
            )
            .with_hint("its runbooks cannot be checked: fix its permissions"),
        );
    }
    files.retain(|f| !is_config(f));
    files.dedup();
    for file in &files {
        let (_, d) = validate::load_runbook(file, &display_path(&ctx.cwd, file), config.as_ref());
        diagnostics.extend(d);
    }
    tracing::debug!(files = files.len(), "validated runbooks");

    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    ctx.output.diagnostics(&diagnostics);
    if errors > 0 {
        return Ok(2);
    }
    if !ctx.output.json {
        let runbooks = files.len();
        ctx.output.result(&format!(
            "ok: {} and {runbooks} {} valid",
            config_display.display(),
            plural(runbooks, "runbook is", "runbooks are")
        ));
    }
    Ok(0)
}

/// The runbooks folder's layout: a folder per stage, each with a rollback runbook.
fn check_layout(ctx: &Context<'_>, config: &Config, runbooks_dir: &Path) -> Vec<Diagnostic> {
    let warning = |path: &Path, message: String| {
        let mut d = Diagnostic::about_file(&display_path(&ctx.cwd, path), message);
        d.severity = Severity::Warning;
        d
    };
    let mut out = Vec::new();
    let stages: Vec<&str> = config.stages().filter(|s| validate::is_name(s)).collect();
    if let Ok(entries) = std::fs::read_dir(runbooks_dir) {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if !stages.contains(&name.as_str()) {
                out.push(
                    warning(
                        &dir,
                        format!("folder `{name}` is not a stage of release.yaml: `rollback` and `promote` never look here"),
                    )
                    .with_hint(crate::project::yaml::suggest_among(&name, &stages)),
                );
            }
        }
    }
    for stage in &stages {
        let path = runbooks_dir.join(stage).join("rollback.yaml");
        let display = display_path(&ctx.cwd, &path);
        match std::fs::metadata(&path) {
            // A pipe or a device is refused when read, like any runbook.
            Ok(m) if !m.is_dir() => {}
            Ok(m) => out.push(
                Diagnostic::about_file(
                    &display,
                    format!(
                        "the rollback runbook of stage `{stage}` is {}, not a file",
                        project::kind_of(&m.file_type())
                    ),
                )
                .with_hint("remove or rename it, and write the runbook there (`release init` writes a default one)"),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let yml = path.with_extension("yml");
                if yml.is_file() {
                    out.push(
                        warning(
                            &path,
                            format!("stage `{stage}` has no rollback runbook: `release rollback` will refuse it"),
                        )
                        .with_hint(format!(
                            "rename {} to rollback.yaml: only that name is used",
                            display_path(&ctx.cwd, &yml).display()
                        )),
                    );
                } else {
                    out.push(
                        warning(
                            &path,
                            format!("stage `{stage}` has no rollback runbook: `release rollback` will refuse it"),
                        )
                        .with_hint("`release init` writes a default one"),
                    );
                }
            }
            Err(e) => out.push(
                Diagnostic::about_file(
                    &display,
                    format!("cannot read the rollback runbook of stage `{stage}`: {e}"),
                )
                .with_hint("check the permissions of the file and of its folders"),
            ),
        }
    }
    out
}

fn cmd_graph(ctx: &Context<'_>, args: &GraphArgs) -> Result<i32, Error> {
    let project = Project::load(&ctx.cwd, ctx.global.config.as_deref())?;
    let path = ctx.cwd.join(&args.path);
    let (runbook, _warnings) = project
        .load_runbook(&ctx.cwd, &path)
        .map_err(Error::Invalid)?;
    let (format, text) = match args.format {
        GraphFormat::Mermaid => ("mermaid", mermaid(&runbook)),
        GraphFormat::Dot => ("dot", dot(&runbook)),
    };
    if ctx.output.json {
        ctx.output.json_value(&graph_json(&runbook, format, &text));
    } else {
        print!("{text}");
    }
    Ok(0)
}

/// `--json`: the steps and their edges, and the graph as text in the format asked for.
fn graph_json(runbook: &Runbook, format: &str, text: &str) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = runbook
        .steps
        .iter()
        .map(|step| {
            serde_json::json!({
                "id": step.id,
                "action": step.action.name(),
                "needs": step.needs,
                "when": step.when,
                "if": step.condition,
                "asks_first": step.confirm.is_some(),
            })
        })
        .collect();
    serde_json::json!({
        "name": runbook.name,
        "steps": steps,
        "format": format,
        "graph": text,
    })
}

fn step_label(step: &crate::project::runbook::Step) -> String {
    let mut label = format!("{}\n{}", step.id, step.action.name());
    if let Some(condition) = &step.condition {
        let _ = write!(label, "\nif {condition}");
    }
    match step.when {
        When::Success => {}
        When::Failure => label.push_str("\nwhen failure"),
        When::Always => label.push_str("\nwhen always"),
    }
    if step.confirm.is_some() {
        label.push_str("\nasks first");
    }
    label
}

/// Mermaid flowchart; node ids are `s<index>` since step ids may hold `-`.
pub fn mermaid(runbook: &Runbook) -> String {
    let mut out = String::from("flowchart TD\n");
    for (i, step) in runbook.steps.iter().enumerate() {
        let label = step_label(step)
            .replace('"', "#quot;")
            .replace('\n', "<br/>");
        let _ = writeln!(out, "    s{i}[\"{label}\"]");
    }
    for (i, step) in runbook.steps.iter().enumerate() {
        for need in &step.needs {
            if let Some(j) = runbook.steps.iter().position(|s| &s.id == need) {
                let arrow = if step.when == When::Success {
                    "-->"
                } else {
                    "-.->"
                };
                let _ = writeln!(out, "    s{j} {arrow} s{i}");
            }
        }
    }
    out
}

/// Graphviz dot.
pub fn dot(runbook: &Runbook) -> String {
    let title = runbook.name.as_deref().unwrap_or("runbook");
    let mut out = format!(
        "digraph runbook {{\n    label={};\n    rankdir=TB;\n    node [shape=box];\n",
        quote(title)
    );
    for step in &runbook.steps {
        let style = if step.when == When::Success {
            ""
        } else {
            ", style=dashed"
        };
        let _ = writeln!(
            out,
            "    {} [label={}{style}];",
            quote(&step.id),
            quote(&step_label(step))
        );
    }
    for step in &runbook.steps {
        for need in &step.needs {
            let _ = writeln!(out, "    {} -> {};", quote(need), quote(&step.id));
        }
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}
