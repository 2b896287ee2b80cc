use std::path::PathBuf;

use crate::commands::Context;
use crate::error::Error;
use crate::project::config::Config;
use crate::project::runbook::RunbookSpec;

/// Print the JSON Schema of release.yaml and of runbooks, for editors.
///
/// With no argument both are printed as one JSON object `{"config": …, "runbook": …}`;
/// `release schema config` or `release schema runbook` prints one schema; `--write DIR`
/// writes `release.schema.json` and `runbook.schema.json` into DIR.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which schema.
    pub which: Option<Which>,

    /// Write both schemas as files into this folder instead.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Which {
    /// release.yaml
    Config,
    /// runbooks/<stage>/*.yaml
    Runbook,
}

fn config_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Config).to_value();
    schema["$id"] = "https://release.invalid/release.schema.json".into();
    schema
}

fn runbook_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RunbookSpec).to_value();
    schema["$id"] = "https://release.invalid/runbook.schema.json".into();
    schema
}

pub fn cmd_schema(ctx: &Context<'_>, args: &SchemaArgs) -> Result<i32, Error> {
    if let Some(dir) = &args.write {
        let dir = ctx.cwd.join(dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        for (name, schema) in [
            ("release.schema.json", config_schema()),
            ("runbook.schema.json", runbook_schema()),
        ] {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n";
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            ctx.output.result(&format!("wrote {}", path.display()));
        }
        return Ok(0);
    }
    let value = match args.which {
        Some(Which::Config) => config_schema(),
        Some(Which::Runbook) => runbook_schema(),
        None => serde_json::json!({ "config": config_schema(), "runbook": runbook_schema() }),
    };
    ctx.output.json_value(&value);
    Ok(0)
}
