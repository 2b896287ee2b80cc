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

/// For an undefined-value error, the first part of a variable the template reads (`used`,
/// dotted paths) that `context` has no value for (`params.x` of `params.x.y`): minijinja's
/// own message names none.
pub fn missing_variable<'s>(
    error: &minijinja::Error,
    used: impl IntoIterator<Item = &'s String>,
    context: &minijinja::Value,
) -> Option<String> {
    if error.kind() != minijinja::ErrorKind::UndefinedError {
        return None;
    }
    used.into_iter().find_map(|path| {
        let mut value = context.clone();
        let mut end = 0;
        for segment in path.split('.') {
            end += segment.len() + usize::from(end > 0);
            value = value
                .get_attr(segment)
                .unwrap_or(minijinja::Value::UNDEFINED);
            if value.is_undefined() {
                return Some(path[..end].to_owned());
            }
        }
        None
    })
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
    let template = env.template_from_str(text).ok()?;
    let error = template.render(placeholder_context(vars)).err()?;
    is_unknown_callable(&error).then(|| describe_unknown(&error))
}

/// The same as [`unknown_callables`] for an `if:` expression.
pub fn unknown_callables_in_expression(
    env: &Environment<'_>,
    expr: &str,
    vars: &BTreeSet<String>,
) -> Option<String> {
    let expression = env.compile_expression(expr).ok()?;
    let error = expression.eval(placeholder_context(vars)).err()?;
    is_unknown_callable(&error).then(|| describe_unknown(&error))
}

fn is_unknown_callable(error: &minijinja::Error) -> bool {
    matches!(
        error.kind(),
        minijinja::ErrorKind::UnknownFilter
            | minijinja::ErrorKind::UnknownTest
            | minijinja::ErrorKind::UnknownFunction
            | minijinja::ErrorKind::UnknownMethod
    )
}

/// A context where every dotted path in `vars` holds a placeholder string.
pub fn placeholder_context(vars: &BTreeSet<String>) -> minijinja::Value {
    placeholder_context_with(vars, "x")
}

/// [`placeholder_context`] with `value` as the placeholder (`""` takes the other branch of
/// an `{% if %}`).
pub fn placeholder_context_with(vars: &BTreeSet<String>, value: &str) -> minijinja::Value {
    let mut context = serde_json::Map::new();
    for path in vars {
        let mut map = &mut context;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entry = map.entry((*part).to_owned()).or_insert_with(|| {
                if last {
                    value.into()
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
    minijinja::Value::from(minijinja::value::Serde(serde_json::Value::Object(context)))
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

/// The builtin tests (`x is defined`), for suggestions.
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
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
            let known = match error.kind() {
                minijinja::ErrorKind::UnknownFilter => FILTERS,
                minijinja::ErrorKind::UnknownTest => TESTS,
                _ => &[],
            };
            let near = crate::project::yaml::nearest(&name, known.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            format!("{what} `{name}`{near}")
        }
        None => what,
    }
}

/// A component as templates see it: its name, `vars` and whether it has a `spec`.
pub struct ComponentScope<'a> {
    pub name: &'a str,
    pub vars: Vec<(&'a str, &'a serde_json::Value)>,
    pub has_spec: bool,
}

/// The step ids of a runbook, looked up and suggested from once per template variable.
#[derive(Default)]
pub struct StepIds<'a> {
    ids: Vec<&'a str>,
    set: std::collections::HashSet<&'a str>,
    /// The hint for each unknown id already met: a pasted typo costs one search.
    hints: std::cell::RefCell<std::collections::HashMap<String, String>>,
}

impl<'a> StepIds<'a> {
    pub fn new(ids: Vec<&'a str>) -> Self {
        let set = ids.iter().copied().collect();
        Self {
            ids,
            set,
            hints: std::cell::RefCell::default(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn unknown(&self, id: &str) -> UnknownVariable {
        let hint = self
            .hints
            .borrow_mut()
            .entry(id.to_owned())
            .or_insert_with(|| unknown_among(String::new(), id, &self.ids, "steps:").hint)
            .clone();
        UnknownVariable {
            message: format!("`steps.{id}` names no step of this runbook"),
            hint,
        }
    }
}

/// What a template may read where it is written.
pub struct Scope<'a> {
    pub kind: ScopeKind,
    /// Declared runbook parameters.
    pub params: &'a [&'a str],
    /// The components of release.yaml, or `None` when it could not be read (then `vars`
    /// and `spec` are not checked).
    pub components: Option<&'a [ComponentScope<'a>]>,
    /// Whether a step id is guaranteed to have finished before this step (an ancestor).
    pub steps_before: &'a dyn Fn(&str) -> bool,
    /// Every step id of the runbook.
    pub all_steps: &'a StepIds<'a>,
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

    /// "the runbook runs for every component", or the same of gates.
    fn for_every_component(&self) -> &'static str {
        match self.kind {
            ScopeKind::Step => "the runbook runs for every component",
            ScopeKind::Gate => "gates are evaluated for every component",
        }
    }

    /// Checks one dotted path read by a template: every problem with it.
    pub fn check(&self, path: &str) -> Vec<UnknownVariable> {
        let parts: Vec<&str> = path.split('.').collect();
        let root = parts[0];
        let rest = &parts[1..];
        if !self.roots().contains(&root) {
            return vec![unknown(
                format!("unknown template variable `{root}`"),
                root,
                self.roots(),
                "the variables are",
            )];
        }
        let one = |r: Result<(), UnknownVariable>| r.err().into_iter().collect();
        match (root, rest) {
            ("component" | "stage" | "spec", [field, ..]) => vec![UnknownVariable {
                message: format!("`{root}` is a string: it has no field `{field}`"),
                hint: format!(
                    "use `{{{{ {root} }}}}`, or a filter such as `{{{{ {root} | upper }}}}`"
                ),
            }],
            ("spec", []) => one(self.check_spec()),
            ("run", [field, ..]) => one(fixed_field(root, field, RUN_FIELDS, rest)),
            ("repository", [field, ..]) => one(fixed_field(root, field, REPOSITORY_FIELDS, rest)),
            ("promotion", [field, ..]) => one(fixed_field(root, field, PROMOTION_FIELDS, rest)),
            ("params", [name, ..]) => one(self.check_param(name, rest)),
            ("vars", [_, ..]) => one(self.check_var(rest)),
            ("steps", [id, more @ ..]) => self.check_step(id, more),
            // `vars` with nothing after it, and any root not listed: nothing more to check.
            _ => Vec::new(),
        }
    }

    fn check_param(&self, name: &str, rest: &[&str]) -> Result<(), UnknownVariable> {
        if self.params.contains(&name) {
            no_deeper(&format!("params.{name}"), &rest[1..])
        } else if self.params.is_empty() {
            Err(UnknownVariable {
                message: format!("unknown parameter `params.{name}`"),
                hint: format!(
                    "this runbook declares no parameters: add `params: {{ {name}: {{ description: \"…\" }} }}`"
                ),
            })
        } else {
            Err(unknown_among(
                format!("unknown parameter `params.{name}`"),
                name,
                self.params,
                "declared parameters:",
            ))
        }
    }

    /// `spec` is only defined for components that have one.
    fn check_spec(&self) -> Result<(), UnknownVariable> {
        let Some(components) = self.components else {
            return Ok(());
        };
        let missing: Vec<&str> = components
            .iter()
            .filter(|c| !c.has_spec)
            .map(|c| c.name)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(UnknownVariable {
            message: format!("`spec` is not defined for {}", components_list(&missing)),
            hint: format!(
                "add `spec: path/to/spec.md` to them in release.yaml ({})",
                self.for_every_component()
            ),
        })
    }

    /// `vars.a.b.c`: the whole path, in every component's vars.
    fn check_var(&self, path: &[&str]) -> Result<(), UnknownVariable> {
        let Some(components) = self.components else {
            return Ok(());
        };
        let dotted = format!("vars.{}", path.join("."));
        if components.is_empty() {
            return Err(UnknownVariable {
                message: format!("`{dotted}` is used but release.yaml defines no components"),
                hint: format!(
                    "add the component and its `vars: {{ {}: … }}` to release.yaml",
                    path[0]
                ),
            });
        }
        // For each component, how far the path goes before it breaks (None: all the way).
        let mut missing: Vec<&str> = Vec::new();
        let mut deepest_break = usize::MAX;
        for component in components {
            if let Some(depth) = path_break(&component.vars, path) {
                missing.push(component.name);
                deepest_break = deepest_break.min(depth);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // A suggestion at the level where the path breaks, from what some component has.
        let prefix = &path[..deepest_break];
        let mut siblings: BTreeSet<&str> = BTreeSet::new();
        for component in components {
            siblings.extend(keys_at(&component.vars, prefix));
        }
        let written = path[deepest_break];
        let suggestion = crate::project::yaml::nearest(written, siblings.iter().copied())
            .filter(|n| *n != written)
            .map(|n| {
                let mut near: Vec<&str> = prefix.to_vec();
                near.push(n);
                format!("did you mean `vars.{}`? Otherwise ", near.join("."))
            })
            .unwrap_or_default();
        let at = if deepest_break + 1 == path.len() {
            format!("`{}`", path[deepest_break])
        } else {
            format!("`{}` with its fields", path[deepest_break..].join("."))
        };
        let under = if prefix.is_empty() {
            "their `vars:`".to_owned()
        } else {
            format!("their `vars.{}`", prefix.join("."))
        };
        Err(UnknownVariable {
            message: format!(
                "`{dotted}` is not defined for {}",
                components_list(&missing)
            ),
            hint: format!(
                "{suggestion}add {at} to {under} in release.yaml ({})",
                self.for_every_component()
            ),
        })
    }

    fn check_step(&self, id: &str, rest: &[&str]) -> Vec<UnknownVariable> {
        if !self.all_steps.contains(id) {
            return vec![self.all_steps.unknown(id)];
        }
        let mut problems = Vec::new();
        if self.current == Some(id) {
            problems.push(UnknownVariable {
                message: format!("step `{id}` reads its own output"),
                hint: "a step's outcome and output exist only after it finished: read them in a later step".into(),
            });
        } else if !(self.steps_before)(id) {
            problems.push(UnknownVariable {
                message: format!(
                    "`steps.{id}` is read before step `{id}` is sure to have finished"
                ),
                hint: format!(
                    "add `{id}` to this step's `needs` (directly or through a step that needs it)"
                ),
            });
        }
        match rest {
            [] => {}
            [field] if STEP_FIELDS.contains(field) => {}
            [field, ..] => problems.push(unknown(
                format!("steps have no field `{field}`"),
                field,
                STEP_FIELDS,
                "a step's fields are",
            )),
        }
        problems
    }
}

/// Where `path` stops existing in `vars`: the index of the first missing segment.
fn path_break(vars: &[(&str, &serde_json::Value)], path: &[&str]) -> Option<usize> {
    let mut value = match vars.iter().find(|(name, _)| *name == path[0]) {
        Some((_, value)) => *value,
        None => return Some(0),
    };
    for (depth, segment) in path.iter().enumerate().skip(1) {
        match value.get(*segment) {
            Some(next) => value = next,
            None => return Some(depth),
        }
    }
    None
}

/// The keys found at `prefix` in `vars` (the top-level names for an empty prefix).
fn keys_at<'v>(vars: &[(&'v str, &'v serde_json::Value)], prefix: &[&str]) -> Vec<&'v str> {
    let Some((first, more)) = prefix.split_first() else {
        return vars.iter().map(|(name, _)| *name).collect();
    };
    let Some(&(_, mut value)) = vars.iter().find(|(name, _)| name == first) else {
        return Vec::new();
    };
    for segment in more {
        match value.get(*segment) {
            Some(next) => value = next,
            None => return Vec::new(),
        }
    }
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// "component `a`" or "components `a`, `b`, … and 3 more".
fn components_list(names: &[&str]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(crate::project::yaml::MAX_CANDIDATES)
        .map(|c| format!("`{c}`"))
        .collect();
    let more = names.len().saturating_sub(shown.len());
    format!(
        "component{} {}{}",
        if names.len() == 1 { "" } else { "s" },
        shown.join(", "),
        if more > 0 {
            format!(" … and {more} more")
        } else {
            String::new()
        }
    )
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

/// An unknown name among a fixed set (every one is listed).
fn unknown(message: String, given: &str, valid: &[&str], intro: &str) -> UnknownVariable {
    let list = crate::project::yaml::candidates(given, valid.iter().copied(), valid.len());
    with_nearest(message, given, valid, intro, &list)
}

/// An unknown name among names from the user's file (the nearest few are listed).
fn unknown_among(message: String, given: &str, valid: &[&str], intro: &str) -> UnknownVariable {
    let list = crate::project::yaml::candidates(
        given,
        valid.iter().copied(),
        crate::project::yaml::MAX_CANDIDATES,
    );
    with_nearest(message, given, valid, intro, &list)
}

fn with_nearest(
    message: String,
    given: &str,
    valid: &[&str],
    intro: &str,
    list: &str,
) -> UnknownVariable {
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
        components: &'a [ComponentScope<'a>],
        before: &'a dyn Fn(&str) -> bool,
        all: &'a StepIds<'a>,
    ) -> Scope<'a> {
        Scope {
            kind,
            params,
            components: Some(components),
            steps_before: before,
            all_steps: all,
            current: None,
        }
    }

    fn first(problems: Vec<UnknownVariable>) -> UnknownVariable {
        problems.into_iter().next().expect("a problem")
    }

    #[test]
    fn the_missing_part_of_a_variable_is_named() {
        let env = environment();
        let context = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({ "vars": { "url": "https://x" } }),
        ));
        let text = "{{ vars.url }}/{{ vars.health.path }}";
        let error = env.render_str(text, &context).unwrap_err();
        let used = template_variables(&env, text).unwrap();
        assert_eq!(
            missing_variable(&error, &used, &context).as_deref(),
            Some("vars.health")
        );
        let other = env.render_str("{{ 1 / 0 }}", &context).unwrap_err();
        assert_eq!(missing_variable(&other, &used, &context), None);
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
    fn unknown_filters_and_tests_in_expressions_are_found() {
        let env = environment();
        let vars = BTreeSet::from(["params.migration".to_string()]);
        let found =
            unknown_callables_in_expression(&env, "params.migration | lenght > 0", &vars).unwrap();
        assert_eq!(found, "unknown filter `lenght` (did you mean `length`?)");
        let found =
            unknown_callables_in_expression(&env, "params.migration is definedd", &vars).unwrap();
        assert_eq!(found, "unknown test `definedd` (did you mean `defined`?)");
        assert!(
            unknown_callables_in_expression(&env, "params.migration | length > 0", &vars).is_none()
        );
    }

    fn component<'a>(
        name: &'a str,
        vars: &'a serde_json::Value,
        has_spec: bool,
    ) -> ComponentScope<'a> {
        ComponentScope {
            name,
            vars: vars
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.as_str(), v)).collect())
                .unwrap_or_default(),
            has_spec,
        }
    }

    #[test]
    fn checks_each_root() {
        let before = |id: &str| id == "revert";
        let (vars_a, vars_b) = (
            serde_json::json!({ "health_url": "u" }),
            serde_json::json!({ "health_url": "u", "x": 1 }),
        );
        let components = [component("a", &vars_a, true), component("b", &vars_b, true)];
        let ids = StepIds::new(vec!["revert", "health"]);
        let s = scope(ScopeKind::Step, &["commit"], &components, &before, &ids);
        for ok in [
            "component",
            "spec",
            "params.commit",
            "vars.health_url",
            "run.reason",
            "steps.revert.stdout",
            "promotion.previous_commit",
        ] {
            assert!(s.check(ok).is_empty(), "{ok}");
        }

        let e = first(s.check("params.comit"));
        assert!(e.hint.contains("did you mean `commit`"), "{e:?}");
        let e = first(s.check("vars.x"));
        assert!(e.message.contains("`a`"), "{e:?}");
        let e = first(s.check("steps.health.outcome"));
        assert!(e.hint.contains("needs"), "{e:?}");
        let e = first(s.check("steps.nope"));
        assert!(e.message.contains("names no step"), "{e:?}");
        let e = first(s.check("compnent"));
        assert!(e.hint.contains("did you mean `component`"), "{e:?}");
        assert!(first(s.check("run.reasn")).hint.contains("`reason`"));
        // Every problem of one path: read too early, and a field steps do not have.
        assert_eq!(s.check("steps.health.output").len(), 2);

        let none = StepIds::default();
        let g = scope(ScopeKind::Gate, &[], &components, &before, &none);
        assert!(g.check("component").is_empty());
        assert!(!g.check("params.commit").is_empty());
        let e = first(g.check("vars.x"));
        assert!(
            e.hint.contains("gates are evaluated for every component"),
            "{e:?}"
        );
    }

    #[test]
    fn nested_vars_and_spec_are_checked_in_every_component() {
        let before = |_: &str| false;
        let (api, web) = (
            serde_json::json!({ "db": { "host": "h", "port": 5432 } }),
            serde_json::json!({ "db": { "host": "h2" } }),
        );
        let components = [component("api", &api, false), component("web", &web, true)];
        let none = StepIds::default();
        let s = scope(ScopeKind::Step, &[], &components, &before, &none);
        assert!(s.check("vars.db.host").is_empty());
        let e = first(s.check("vars.db.port"));
        assert_eq!(
            e.message,
            "`vars.db.port` is not defined for component `web`"
        );
        assert!(e.hint.contains("add `port` to their `vars.db`"), "{e:?}");
        let e = first(s.check("vars.db.hots"));
        assert!(e.message.contains("components `api`, `web`"), "{e:?}");
        assert!(e.hint.starts_with("did you mean `vars.db.host`?"), "{e:?}");
        let e = first(s.check("spec"));
        assert_eq!(e.message, "`spec` is not defined for component `api`");
    }

    #[test]
    fn long_lists_of_names_are_cut() {
        let before = |_: &str| false;
        let ids: Vec<String> = (0..4000).map(|i| format!("s{i}")).collect();
        let ids = StepIds::new(ids.iter().map(String::as_str).collect());
        let s = scope(ScopeKind::Step, &[], &[], &before, &ids);
        let e = first(s.check("steps.zz.outcome"));
        assert!(e.hint.len() < 120, "{e:?}");
        assert!(e.hint.ends_with("… and 3995 more"), "{e:?}");
    }
}
