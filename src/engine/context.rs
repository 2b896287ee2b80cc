//! The template context of a run (SPEC §4) and rendering against it.

use minijinja::Environment;

use crate::template;

/// Renders a step's templates with the run's context and the outcomes so far.
pub struct Templater {
    env: Environment<'static>,
    context: minijinja::Value,
}

impl Templater {
    pub fn new(context: &serde_json::Value) -> Self {
        Self {
            env: template::environment(),
            context: minijinja::Value::from(minijinja::value::Serde(context)),
        }
    }

    /// Renders one string; plain strings are returned as they are.
    pub fn render(&self, text: &str) -> Result<String, String> {
        if !template::is_template(text) {
            return Ok(text.to_owned());
        }
        self.env
            .render_str(text, &self.context)
            .map_err(|e| describe(&e))
    }

    /// Evaluates an `if:` expression (with or without `{{ }}` around it).
    pub fn condition(&self, expr: &str) -> Result<bool, String> {
        let expr = expr.trim().trim_start_matches("{{").trim_end_matches("}}");
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(&e))?;
        compiled
            .eval(&self.context)
            .map(|v| v.is_true())
            .map_err(|e| describe(&e))
    }
}

fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// True when any template in `value` reads an earlier step's output.
pub fn reads_step_output(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => {
            template::is_template(s)
                && template::template_variables(&template::environment(), s).is_ok_and(|vars| {
                    vars.iter()
                        .any(|v| v.starts_with("steps.") && v.ends_with(".stdout"))
                })
        }
        serde_json::Value::Array(items) => items.iter().any(reads_step_output),
        serde_json::Value::Object(map) => map.values().any(reads_step_output),
        _ => false,
    }
}
