//! Templates (minijinja, strict undefined) and the check of every variable they use against
//! the context SPEC §4 defines, so that a typo is found by `release runbook validate`, not
//! halfway through a rollback.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};

/// The environment every template is parsed and rendered with: undefined is an error.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// True when the text contains template syntax at all (plain strings skip the parser).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A template that does not parse.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    /// 1-based line within the template text.
    pub line: Option<usize>,
}

fn syntax_error(error: &minijinja::Error) -> SyntaxError {
    SyntaxError {
        message: error
            .detail()
            .map_or_else(|| error.kind().to_string(), str::to_owned),
        line: error.line(),
    }
}

/// The variables a template reads, as dotted paths (`vars.health_url`, `params.commit`).
pub fn template_variables(
    env: &Environment<'_>,
    text: &str,
) -> Result<BTreeSet<String>, SyntaxError> {
    let template = env.template_from_str(text).map_err(|e| syntax_error(&e))?;
    Ok(template.undeclared_variables(true).into_iter().collect())
}

/// The variables an `if:` expression reads.
pub fn expression_variables(
    env: &Environment<'_>,
    expr: &str,
) -> Result<BTreeSet<String>, SyntaxError> {
    let expression = env.compile_expression(expr).map_err(|e| syntax_error(&e))?;
    Ok(expression.undeclared_variables(true).into_iter().collect())
}

/// Filters, tests and functions a template calls that do not exist. Found by rendering it
/// once with a placeholder for every variable it reads: a name is looked up when called,
/// so only the branches this render takes are checked (templates here are short).
pub fn unknown_callables(
    env: &Environment<'_>,
    text: &str,
    vars: &BTreeSet<String>,
) -> Option<String> {
    let mut context = serde_json::Map::new();
    for path in vars {
        let mut map = &mut context;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entry = map.entry((*part).to_owned()).or_insert_with(|| {
                if last {
                    "x".into()
                } else {
                    serde_json::Value::Object(serde_json::Map::new())
                }
            });
            if last {
                break;
            }
            if !entry.is_object() {
                *entry = serde_json::Value::Object(serde_json::Map::new());
            }
            let serde_json::Value::Object(next) = entry else {
                break;
            };
            map = next;
        }
    }
    let template = env.template_from_str(text).ok()?;
    let context =
        minijinja::Value::from(minijinja::value::Serde(serde_json::Value::Object(context)));
    let error = template.render(context).err()?;
    matches!(
        error.kind(),
        minijinja::ErrorKind::UnknownFilter
            | minijinja::ErrorKind::UnknownTest
            | minijinja::ErrorKind::UnknownFunction
            | minijinja::ErrorKind::UnknownMethod
    )
    .then(|| describe_unknown(&error))
}

/// The builtin filters (minijinja with its default features), for suggestions.
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "default",
    "d",
    "dictsort",
    "escape",
    "e",
    "first",
    "float",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
];

/// "unknown filter `uper` (did you mean `upper`?)" from minijinja's error.
fn describe_unknown(error: &minijinja::Error) -> String {
    let what = error.kind().to_string();
    // minijinja's detail reads like "filter uper is unknown".
    let name = error
        .detail()
        .and_then(|d| d.split_whitespace().nth(1))
        .map(str::to_owned);
    match name {
        Some(name) => {
            let near = (error.kind() == minijinja::ErrorKind::UnknownFilter)
                .then(|| crate::project::yaml::nearest(&name, FILTERS.iter().copied()))
                .flatten()
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            format!("{what} `{name}`{near}")
        }
        None => what,
    }
}

/// What a template may read where it is written.
pub struct Scope<'a> {
    pub kind: ScopeKind,
    /// Declared runbook parameters.
    pub params: &'a [&'a str],
    /// For each component, the names of its `vars`.
    pub component_vars: &'a [(&'a str, Vec<&'a str>)],
    /// Step ids guaranteed to have finished before this one (its ancestors).
    pub steps_before: &'a BTreeSet<&'a str>,
    /// Every step id of the runbook.
    pub all_steps: &'a [&'a str],
    /// The step the template belongs to.
    pub current: Option<&'a str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// A runbook step: the whole context of SPEC §4.
    Step,
    /// A gate in `release.yaml`: component, stage, spec, vars, repository.
    Gate,
}

const RUN_FIELDS: &[&str] = &["id", "actor", "reason", "started_at", "dry_run"];
const REPOSITORY_FIELDS: &[&str] = &["remote", "branch"];
const PROMOTION_FIELDS: &[&str] = &["commit", "previous_commit"];
const STEP_FIELDS: &[&str] = &["outcome", "stdout"];

/// A variable a template may not read, with the fix.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownVariable {
    pub message: String,
    pub hint: String,
}

impl Scope<'_> {
    fn roots(&self) -> &'static [&'static str] {
        match self.kind {
            ScopeKind::Step => &[
                "component",
                "stage",
                "spec",
                "vars",
                "params",
                "repository",
                "run",
                "promotion",
                "steps",
            ],
            ScopeKind::Gate => &["component", "stage", "spec", "vars", "repository"],
        }
    }

    /// Checks one dotted path read by a template.
    pub fn check(&self, path: &str) -> Result<(), UnknownVariable> {
        let parts: Vec<&str> = path.split('.').collect();
        let root = parts[0];
        let rest = &parts[1..];
        if !self.roots().contains(&root) {
            return Err(unknown(
                format!("unknown template variable `{root}`"),
                root,
                self.roots(),
                "the variables are",
            ));
        }
        match (root, rest) {
            ("component" | "stage" | "spec", [field, ..]) => Err(UnknownVariable {
                message: format!("`{root}` is a string: it has no field `{field}`"),
                hint: format!(
                    "use `{{{{ {root} }}}}`, or a filter such as `{{{{ {root} | upper }}}}`"
                ),
            }),
            ("run", [field, ..]) => fixed_field(root, field, RUN_FIELDS, rest),
            ("repository", [field, ..]) => fixed_field(root, field, REPOSITORY_FIELDS, rest),
            ("promotion", [field, ..]) => fixed_field(root, field, PROMOTION_FIELDS, rest),
            ("params", [name, ..]) => {
                if self.params.contains(name) {
                    no_deeper(&format!("params.{name}"), &rest[1..])
                } else if self.params.is_empty() {
                    Err(UnknownVariable {
                        message: format!("unknown parameter `params.{name}`"),
                        hint: format!(
                            "this runbook declares no parameters: add `params: {{ {name}: {{ description: \"…\" }} }}`"
                        ),
                    })
                } else {
                    Err(unknown(
                        format!("unknown parameter `params.{name}`"),
                        name,
                        self.params,
                        "declared parameters:",
                    ))
                }
            }
            ("vars", [name, ..]) => self.check_var(name),
            ("steps", [id, more @ ..]) => self.check_step(id, more),
            // `vars` with nothing after it, and any root not listed: nothing more to check.
            _ => Ok(()),
        }
    }

    fn check_var(&self, name: &str) -> Result<(), UnknownVariable> {
        if self.component_vars.is_empty() {
            return Err(UnknownVariable {
                message: format!("`vars.{name}` is used but release.yaml defines no components"),
                hint: format!("add the component and its `vars: {{ {name}: … }}` to release.yaml"),
            });
        }
        let missing: Vec<&str> = self
            .component_vars
            .iter()
            .filter(|(_, vars)| !vars.contains(&name))
            .map(|(component, _)| *component)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let all_vars: BTreeSet<&str> = self
            .component_vars
            .iter()
            .flat_map(|(_, vars)| vars.iter().copied())
            .collect();
        let suggestion = crate::project::yaml::nearest(name, all_vars.iter().copied())
            .map(|n| format!("did you mean `vars.{n}`? Otherwise "))
            .unwrap_or_default();
        Err(UnknownVariable {
            message: format!(
                "`vars.{name}` is not defined for component{} {}",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: format!(
                "{suggestion}add `{name}` to their `vars:` in release.yaml (the runbook runs for every component)"
            ),
        })
    }

    fn check_step(&self, id: &str, rest: &[&str]) -> Result<(), UnknownVariable> {
        if !self.all_steps.contains(&id) {
            return Err(unknown(
                format!("`steps.{id}` names no step of this runbook"),
                id,
                self.all_steps,
                "steps:",
            ));
        }
        if self.current == Some(id) {
            return Err(UnknownVariable {
                message: format!("step `{id}` reads its own output"),
                hint: "a step's outcome and output exist only after it finished: read them in a later step".into(),
            });
        }
        if !self.steps_before.contains(id) {
            return Err(UnknownVariable {
                message: format!(
                    "`steps.{id}` is read before step `{id}` is sure to have finished"
                ),
                hint: format!(
                    "add `{id}` to this step's `needs` (directly or through a step that needs it)"
                ),
            });
        }
        match rest {
            [] => Ok(()),
            [field] if STEP_FIELDS.contains(field) => Ok(()),
            [field, ..] => Err(unknown(
                format!("steps have no field `{field}`"),
                field,
                STEP_FIELDS,
                "a step's fields are",
            )),
        }
    }
}

fn fixed_field(
    root: &str,
    field: &str,
    fields: &[&str],
    rest: &[&str],
) -> Result<(), UnknownVariable> {
    if !fields.contains(&field) {
        return Err(unknown(
            format!("unknown template variable `{root}.{field}`"),
            field,
            fields,
            &format!("`{root}` has"),
        ));
    }
    no_deeper(&format!("{root}.{field}"), &rest[1..])
}

fn no_deeper(path: &str, rest: &[&str]) -> Result<(), UnknownVariable> {
    match rest.first() {
        None => Ok(()),
        Some(field) => Err(UnknownVariable {
            message: format!("`{path}` is a value: it has no field `{field}`"),
            hint: format!("use `{{{{ {path} }}}}`"),
        }),
    }
}

fn unknown(message: String, given: &str, valid: &[&str], intro: &str) -> UnknownVariable {
    let list = valid
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = match crate::project::yaml::nearest(given, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? ({intro} {list})"),
        None => format!("{intro} {list}"),
    };
    UnknownVariable { message, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(
        kind: ScopeKind,
        params: &'a [&'a str],
        vars: &'a [(&'a str, Vec<&'a str>)],
        before: &'a BTreeSet<&'a str>,
        all: &'a [&'a str],
    ) -> Scope<'a> {
        Scope {
            kind,
            params,
            component_vars: vars,
            steps_before: before,
            all_steps: all,
            current: None,
        }
    }

    #[test]
    fn variables_come_back_as_dotted_paths() {
        let env = environment();
        let vars = template_variables(
            &env,
            "{{ vars.health_url }} {{ params.commit }} {{ run.id }}",
        )
        .unwrap();
        assert!(vars.contains("vars.health_url"), "{vars:?}");
        assert!(vars.contains("params.commit"));
        assert!(vars.contains("run.id"));
        let vars = expression_variables(
            &env,
            "params.migration and steps.revert.outcome == 'succeeded'",
        )
        .unwrap();
        assert!(vars.contains("params.migration"), "{vars:?}");
        assert!(vars.contains("steps.revert.outcome"), "{vars:?}");
    }

    #[test]
    fn unknown_filters_are_found() {
        let env = environment();
        let vars = BTreeSet::from(["component".to_string(), "params.commit".to_string()]);
        assert!(
            unknown_callables(&env, "{{ component | upper }} {{ params.commit }}", &vars).is_none()
        );
        let found = unknown_callables(&env, "{{ component | uper }}", &vars).unwrap();
        assert_eq!(found, "unknown filter `uper` (did you mean `upper`?)");
        assert!(unknown_callables(&env, "{{ nope(component) }}", &vars).is_some());
    }

    #[test]
    fn syntax_errors_are_reported() {
        let env = environment();
        assert!(template_variables(&env, "{{ vars.x ").is_err());
        assert!(expression_variables(&env, "params.x ==").is_err());
    }

    #[test]
    fn checks_each_root() {
        let before = BTreeSet::from(["revert"]);
        let vars = vec![("a", vec!["health_url"]), ("b", vec!["health_url", "x"])];
        let s = scope(
            ScopeKind::Step,
            &["commit"],
            &vars,
            &before,
            &["revert", "health"],
        );
        assert!(s.check("component").is_ok());
        assert!(s.check("params.commit").is_ok());
        assert!(s.check("vars.health_url").is_ok());
        assert!(s.check("run.reason").is_ok());
        assert!(s.check("steps.revert.stdout").is_ok());
        assert!(s.check("promotion.previous_commit").is_ok());

        let e = s.check("params.comit").unwrap_err();
        assert!(e.hint.contains("did you mean `commit`"), "{e:?}");
        let e = s.check("vars.x").unwrap_err();
        assert!(e.message.contains("`a`"), "{e:?}");
        let e = s.check("steps.health.outcome").unwrap_err();
        assert!(e.hint.contains("needs"), "{e:?}");
        let e = s.check("steps.nope").unwrap_err();
        assert!(e.message.contains("names no step"), "{e:?}");
        let e = s.check("compnent").unwrap_err();
        assert!(e.hint.contains("did you mean `component`"), "{e:?}");
        assert!(s.check("run.reasn").unwrap_err().hint.contains("`reason`"));

        let g = scope(ScopeKind::Gate, &[], &vars, &before, &[]);
        assert!(g.check("component").is_ok());
        assert!(g.check("params.commit").is_err());
    }
}
