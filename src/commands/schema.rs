use std::path::PathBuf;

use crate::commands::Context;
use crate::error::Error;
use crate::project::config::Config;
use crate::project::runbook::RunbookSpec;
use crate::project::validate::{ID_PATTERN as ID, NAME_PATTERN as NAME};

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
    scalars_as_text(&mut schema);
    schema["properties"]["version"] = serde_json::json!({
        "description": "Format version; must be 1.",
        "const": 1
    });
    if let Some(map) = schema.pointer_mut("/$defs/Map_of_Component") {
        map["propertyNames"] = serde_json::json!({ "pattern": NAME });
    }
    if let Some(gate) = schema.pointer_mut("/$defs/GateSpec") {
        gate["properties"]["id"]["pattern"] = ID.into();
        gate["oneOf"] = exactly_one_of(crate::project::config::GATE_KINDS);
    }
    schema
}

fn runbook_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RunbookSpec).to_value();
    schema["$id"] = "https://release.invalid/runbook.schema.json".into();
    scalars_as_text(&mut schema);
    if let Some(step) = schema.pointer_mut("/$defs/StepSpec") {
        step["properties"]["id"]["pattern"] = ID.into();
        step["oneOf"] = exactly_one_of(crate::project::runbook::ACTIONS);
    }
    schema
}

/// `oneOf` that holds when exactly one of `keys` is present.
fn exactly_one_of(keys: &[&str]) -> serde_json::Value {
    keys.iter()
        .map(|key| serde_json::json!({ "required": [key] }))
        .collect()
}

/// The loader reads any YAML scalar where it wants text (`if: true`, `default: 3`,
/// `run: [echo, 1]`): a plain string type in the schema accepts numbers and booleans too,
/// so that editors flag nothing the tool accepts. Strings with a pattern, a format or a
/// fixed set of values stay strings.
fn scalars_as_text(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let constrained = ["enum", "const", "pattern", "format"]
                .iter()
                .any(|k| map.contains_key(*k));
            if !constrained && let Some(kind) = map.get_mut("type") {
                match kind {
                    serde_json::Value::String(t) if t == "string" => {
                        *kind = serde_json::json!(["string", "number", "boolean"]);
                    }
                    serde_json::Value::Array(types) if types.iter().any(|t| t == "string") => {
                        types.push("number".into());
                        types.push("boolean".into());
                        types.dedup();
                    }
                    _ => {}
                }
            }
            map.values_mut().for_each(scalars_as_text);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scalars_as_text),
        _ => {}
    }
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
