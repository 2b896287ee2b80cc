use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::commands::Context;
use crate::error::Error;
use crate::project::diagnostic::{Diagnostic, plural};
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
    let (config, mut diagnostics) = validate::load_config(&config_path, &config_display);
    let root = config_path.parent().unwrap_or(&ctx.cwd).to_path_buf();

    let mut checked = 1;
    if let Some(config) = config {
        let runbooks_dir = root.join(&config.header.runbooks);
        let files: Vec<PathBuf> = if args.paths.is_empty() {
            let project = Project {
                root: root.clone(),
                config_path: config_path.clone(),
                config,
                warnings: Vec::new(),
            };
            diagnostics.extend(check_layout(ctx, &project, &runbooks_dir));
            let files = project.runbook_files();
            for file in &files {
                let (_, d) =
                    validate::load_runbook(file, &display_path(&ctx.cwd, file), &project.config);
                diagnostics.extend(d);
            }
            checked += files.len();
            files
        } else {
            let files: Vec<PathBuf> = args.paths.iter().map(|p| ctx.cwd.join(p)).collect();
            for file in &files {
                let (_, d) = validate::load_runbook(file, &display_path(&ctx.cwd, file), &config);
                diagnostics.extend(d);
            }
            checked += files.len();
            files
        };
        tracing::debug!(files = files.len(), "validated runbooks");
    }

    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    ctx.output.diagnostics(&diagnostics);
    if errors > 0 {
        return Ok(2);
    }
    if !ctx.output.json {
        let runbooks = checked - 1;
        ctx.output.result(&format!(
            "ok: {} and {runbooks} {} valid",
            config_display.display(),
            plural(runbooks, "runbook is", "runbooks are")
        ));
    }
    Ok(0)
}

/// The runbooks folder's layout: a folder per stage, each with a rollback runbook.
fn check_layout(ctx: &Context<'_>, project: &Project, runbooks_dir: &Path) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let stages: Vec<&str> = project.config.stages().collect();
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
                let mut d = Diagnostic::about_file(
                    &display_path(&ctx.cwd, &dir),
                    format!("folder `{name}` is not a stage of release.yaml: `rollback` and `promote` never look here"),
                )
                .with_hint(crate::project::yaml::suggest(&name, &stages));
                d.severity = crate::project::diagnostic::Severity::Warning;
                out.push(d);
            }
        }
    }
    for stage in &stages {
        let path = project.runbook_path(stage, "rollback");
        if !path.is_file() {
            let mut d = Diagnostic::about_file(
                &display_path(&ctx.cwd, &path),
                format!(
                    "stage `{stage}` has no rollback runbook: `release rollback` will refuse it"
                ),
            )
            .with_hint("`release init` writes a default one");
            d.severity = crate::project::diagnostic::Severity::Warning;
            out.push(d);
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
    let text = match args.format {
        GraphFormat::Mermaid => mermaid(&runbook),
        GraphFormat::Dot => dot(&runbook),
    };
    print!("{text}");
    Ok(0)
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
