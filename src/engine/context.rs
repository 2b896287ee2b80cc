//! The template context of a run (SPEC §4) and rendering against it.
//!
//! The run's context is converted once; `steps.<id>` is a shared map the dispatcher fills
//! as steps finish and templates read on lookup, so starting a step costs the same at the
//! thousandth step as at the first (nothing is copied per step).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use minijinja::Environment;
use minijinja::value::{Enumerator, Object, Value};

use crate::template;

/// `steps.<id>.outcome` / `steps.<id>.stdout` of the steps finished so far.
#[derive(Debug, Default, Clone)]
pub struct StepOutputs(Arc<RwLock<BTreeMap<String, Value>>>);

impl StepOutputs {
    /// `stdout` is kept without its trailing newlines, as `$(…)` in a shell does: a value
    /// looked up by one step reaches the next one's argv as the bare value.
    pub fn record(&self, step: &str, outcome: &str, stdout: &str) {
        let stdout = stdout.trim_end_matches(['\n', '\r']);
        let value = minijinja::context! { outcome => outcome, stdout => stdout };
        if let Ok(mut map) = self.0.write() {
            map.insert(step.to_owned(), value);
        }
    }
}

impl Object for StepOutputs {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.read().ok()?.get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .0
            .read()
            .map(|m| m.keys().map(|k| Value::from(k.as_str())).collect())
            .unwrap_or_default();
        Enumerator::Values(keys)
    }
}

/// Renders a step's templates with the run's context and the outcomes so far.
pub struct Templater {
    env: Environment<'static>,
    context: Value,
}

impl Templater {
    /// `base` is the run's context converted once with [`base_context`].
    pub fn new(base: &Value, steps: &StepOutputs) -> Self {
        Self {
            env: template::environment(),
            context: minijinja::context! { steps => Value::from_object(steps.clone()), ..base.clone() },
        }
    }

    /// Renders one string; plain strings are returned as they are.
    pub fn render(&self, text: &str) -> Result<String, String> {
        if !template::is_template(text) {
            return Ok(text.to_owned());
        }
        self.env.render_str(text, &self.context).map_err(|e| {
            let used = template::template_variables(&self.env, text).unwrap_or_default();
            self.describe_with(&e, &used)
        })
    }

    /// Renders `text` with each value it prints replaced by what `mark` makes of it (the
    /// value is `mark`'s to keep): scripts keep their values out of the shell's text.
    pub fn render_with(
        &self,
        text: &str,
        mark: impl Fn(String) -> String + Send + Sync + 'static,
    ) -> Result<String, String> {
        let mut env = self.env.clone();
        env.set_formatter(move |out, _, value| {
            std::fmt::Write::write_str(out, &mark(value.to_string())).map_err(|_| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "cannot write")
            })
        });
        env.render_str(text, &self.context).map_err(|e| {
            let used = template::template_variables(&self.env, text).unwrap_or_default();
            self.describe_with(&e, &used)
        })
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
            .map_err(|e| {
                let used = compiled.undeclared_variables(true);
                self.describe_with(&e, &used)
            })
    }

    /// The error, naming the variable that has no value when that is what went wrong.
    fn describe_with<'s>(
        &self,
        error: &minijinja::Error,
        used: impl IntoIterator<Item = &'s String>,
    ) -> String {
        match template::missing_variable(error, used, &self.context) {
            Some(part) => format!("`{part}` has no value here"),
            None => describe(error),
        }
    }
}

/// The run's context (all of SPEC §4 but `steps`), as templates read it.
pub fn base_context(context: &serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(context))
}

fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// True when any template in `value` reads an earlier step's output.
pub fn reads_step_output(value: &serde_json::Value) -> bool {
    !outputs_read(value).is_empty()
}

/// The steps whose output (`steps.<id>.stdout`) the templates in `value` read.
pub fn outputs_read(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(
        value: &serde_json::Value,
        env: &Environment<'_>,
        ids: &mut std::collections::BTreeSet<String>,
    ) {
        match value {
            serde_json::Value::String(s) if template::is_template(s) => {
                for var in template::template_variables(env, s).unwrap_or_default() {
                    if let Some(id) = var
                        .strip_prefix("steps.")
                        .and_then(|v| v.strip_suffix(".stdout"))
                    {
                        ids.insert(id.to_owned());
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, env, ids)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, env, ids)),
            _ => {}
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    walk(value, &template::environment(), &mut ids);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_read_when_rendered() {
        let base = base_context(&serde_json::json!({ "component": "api" }));
        let steps = StepOutputs::default();
        let t = Templater::new(&base, &steps);
        steps.record("build", "succeeded", "v1.2\n");
        assert_eq!(
            t.render("{{ component }} {{ steps.build.outcome }} [{{ steps.build.stdout }}]")
                .unwrap(),
            "api succeeded [v1.2]"
        );
        assert!(t.render("{{ steps.nope.outcome }}").is_err());
        assert!(t.condition("steps.build.outcome == 'succeeded'").unwrap());
    }

    /// A value missing at run time is named, in templates and in `if:` alike.
    #[test]
    fn the_missing_variable_is_named() {
        let base = base_context(&serde_json::json!({ "component": "api", "params": {} }));
        let steps = StepOutputs::default();
        let t = Templater::new(&base, &steps);
        assert_eq!(
            t.render("{{ component }}/{{ steps.nope.stdout }}")
                .unwrap_err(),
            "`steps.nope` has no value here"
        );
        assert_eq!(
            t.render("{{ params.commit }}").unwrap_err(),
            "`params.commit` has no value here"
        );
        assert_eq!(
            t.condition("spec.db.migrate").unwrap_err(),
            "`spec` has no value here"
        );
        // Other errors are told as minijinja tells them.
        assert!(
            t.render("{{ 1 / 0 }}")
                .is_err_and(|e| !e.contains("has no value"))
        );
    }
}
