//! Loading and validating `release.yaml` and runbooks, reporting every problem in one pass.
//!
//! Each file is parsed once into a spanned tree. Its header and then each component,
//! channel, gate and step are deserialized on their own, so that one mistake does not hide
//! the next; then the cross-references (stages, components, channels, `needs`, template
//! variables) are checked against what did parse. Every problem becomes a [`Diagnostic`]
//! with the file, line and column and, wherever one exists, the fix.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use regex::Regex;

use super::config::{
    Channel, ChannelKind, Component, Config, ConfigHeader, FreezeWindow, GATE_KINDS, GateSpec,
    IncidentTracker,
};
use super::diagnostic::{Diagnostic, SourceFile};
use super::graph::{Cycle, StepGraph};
use super::named_map::NamedMap;
use super::runbook::{
    ACTIONS, Action, CacheClearAction, GitRevertAction, HealthCheckAction, IncidentIssueAction,
    MigrationRollbackAction, Param, RunAction, Runbook, RunbookHeader, Step, StepSpec,
};
use super::spanned::Spanned;
use super::yaml::{self, Node, Span, from_node, nearest, suggest, suggest_among};
use crate::template::{self, Scope, ScopeKind};

/// The top-level keys of `release.yaml`.
pub const CONFIG_KEYS: &[&str] = &[
    "version",
    "stages",
    "audit",
    "runbooks",
    "repository",
    "incidents",
    "github",
    "notify",
    "components",
    "gates",
    "state",
];

/// The top-level keys of a runbook.
pub const RUNBOOK_KEYS: &[&str] = &["name", "description", "params", "confirm", "steps"];

/// Fields of a step other than its action.
const STEP_FIELDS: &[&str] = &[
    "id",
    "name",
    "needs",
    "when",
    "if",
    "confirm",
    "timeout",
    "retry",
    "continue_on_error",
];

/// Collects the diagnostics of one file.
struct Checker<'a> {
    file: &'a SourceFile,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a SourceFile) -> Self {
        Self {
            file,
            diagnostics: Vec::new(),
        }
    }

    fn hint(&mut self, span: Span, message: impl Into<String>, hint: impl Into<String>) {
        let d = Diagnostic::error(self.file, span, message).with_hint(hint);
        self.diagnostics.push(d);
    }

    fn warning(&mut self, span: Span, message: impl Into<String>, hint: impl Into<String>) {
        let d = Diagnostic::warning(self.file, span, message).with_hint(hint);
        self.diagnostics.push(d);
    }

    fn push_de_error(&mut self, mut e: yaml::DeError, context: &str) {
        if e.key.as_deref() == Some("needs") && e.message.contains("found a string") {
            e.hint = Some("`needs` is a list: write `needs: [step-id]`".into());
        }
        let message = if context.is_empty() {
            e.to_string()
        } else {
            format!("{context}: {e}")
        };
        let d = Diagnostic::error(self.file, e.span, message).with_optional_hint(e.hint);
        self.diagnostics.push(d);
    }

    /// Deserializes `T` from a node so that every bad value is reported, and not only the
    /// first serde meets: after each error, the entry or list item it is about is taken out
    /// and the rest tried again (a required key taken out this way is not then reported as
    /// missing). With `partial`, what deserialized from the sound rest comes back even when
    /// some values failed, so that it can still be checked further (the errors are recorded
    /// all the same).
    fn de_fields<T: for<'de> serde::Deserialize<'de>>(
        &mut self,
        node: &Node,
        context: &str,
        partial: bool,
    ) -> Option<T> {
        /// Bounds the work on a hostile object; far more than a mistyped one holds.
        const MAX_TRIES: usize = 64;
        let mut tree: Option<Node> = None;
        let mut removed: Vec<(Span, String)> = Vec::new();
        let mut reported: Vec<(Span, String)> = Vec::new();
        for _ in 0..MAX_TRIES {
            let e = match from_node::<T>(tree.as_ref().unwrap_or(node)) {
                Ok(value) => return (reported.is_empty() || partial).then_some(value),
                Err(e) => e,
            };
            let tree = tree.get_or_insert_with(|| node.clone());
            // A required key is not "missing" when it was taken out above, or when what
            // was taken out is its misspelling (already reported with the fix).
            let taken_out = e.missing.is_some_and(|m| {
                removed
                    .iter()
                    .any(|(span, key)| *span == e.span && (key == m || nearest(key, [m]).is_some()))
            });
            let key = (e.span, e.message.clone());
            let progress = remove_node(tree, e.span, e.missing.is_some());
            if !taken_out && !reported.contains(&key) {
                reported.push(key);
                self.push_de_error(e, context);
            }
            match progress {
                Some(removal) => removed.push(removal),
                None => return None,
            }
        }
        None
    }

    /// Reports every key written twice in a mapping (with where it was first written) and
    /// keeps the first, so that validation goes on.
    fn duplicate_keys(&mut self, node: &mut Node) {
        match &mut node.value {
            yaml::Value::Map(entries) => {
                let mut seen: HashMap<String, Span> = HashMap::new();
                let mut keep = Vec::with_capacity(entries.len());
                for (key, value) in std::mem::take(entries) {
                    let name = key.scalar_text().unwrap_or_default().to_owned();
                    if let Some(first) = seen.get(&name) {
                        self.hint(
                            key.span,
                            format!("duplicate key `{name}`"),
                            format!(
                                "`{name}` is already set at line {}; a key may appear once in a mapping: remove or merge one",
                                first.line
                            ),
                        );
                    } else {
                        seen.insert(name, key.span);
                        keep.push((key, value));
                    }
                }
                for (_, value) in &mut keep {
                    self.duplicate_keys(value);
                }
                *entries = keep;
            }
            yaml::Value::Seq(items) => items.iter_mut().for_each(|n| self.duplicate_keys(n)),
            _ => {}
        }
    }

    /// Parses the file (`what` it is: "a runbook", "release.yaml"), or records why it
    /// cannot be.
    fn parse(&mut self, what: &str) -> Option<Node> {
        match yaml::parse(&self.file.text) {
            Ok(mut node) => {
                self.duplicate_keys(&mut node);
                Some(node)
            }
            Err(e) => {
                let message = match e.message.strip_prefix(yaml::ONE_DOCUMENT) {
                    Some(rest) => format!("{what}{rest}"),
                    None => format!("invalid YAML: {}", e.message),
                };
                let d = Diagnostic::error(self.file, e.span, message).with_optional_hint(e.hint);
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// Reports keys of a mapping that are not in `valid`, with the nearest valid one.
    fn unknown_keys(&mut self, node: &Node, valid: &[&str], what: &str) {
        for (key, _) in node.entries() {
            let name = key.scalar_text().unwrap_or_default();
            if !valid.contains(&name) {
                self.hint(
                    key.span,
                    format!("unknown key `{name}` in {what}"),
                    suggest(name, valid),
                );
            }
        }
    }
}

/// Takes out of `node` the mapping entry whose key or value is at `span`, or the list item
/// at `span`, the deepest one first; with `whole_map`, only a mapping value at `span` (one
/// that misses a required key) goes, with the entry or item holding it. Returns the span of
/// the mapping (or list) it was in and the key taken out (empty for a list item).
fn remove_node(node: &mut Node, span: Span, whole_map: bool) -> Option<(Span, String)> {
    let own = node.span;
    let hit = |n: &Node| n.span == span && (!whole_map || n.is_map());
    match &mut node.value {
        yaml::Value::Map(entries) => {
            for (_, value) in entries.iter_mut() {
                if let Some(found) = remove_node(value, span, whole_map) {
                    return Some(found);
                }
            }
            let at = entries
                .iter()
                .position(|(k, v)| hit(v) || (!whole_map && k.span == span))?;
            let (key, _) = entries.remove(at);
            Some((own, key.scalar_text().unwrap_or_default().to_owned()))
        }
        yaml::Value::Seq(items) => {
            for item in items.iter_mut() {
                if let Some(found) = remove_node(item, span, whole_map) {
                    return Some(found);
                }
            }
            let at = items.iter().position(hit)?;
            items.remove(at);
            Some((own, String::new()))
        }
        _ => None,
    }
}

fn read_source(path: &Path, display: &Path) -> Result<SourceFile, Diagnostic> {
    let bytes = super::read_limited(path)
        .map_err(|e| Diagnostic::about_file(display, e.message).with_optional_hint(e.hint))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&bytes[..at]);
            let line = valid.matches('\n').count() + 1;
            let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let lossy = String::from_utf8_lossy(bytes).into_owned();
            let file = SourceFile::new(display, &lossy);
            let span = Span {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
                offset: valid.len(),
                len: 1,
            };
            return Err(Diagnostic::error(
                &file,
                span,
                format!("not UTF-8 text: invalid byte 0x{:02x}", bytes[at]),
            )
            .with_hint("save the file as UTF-8"));
        }
    };
    Ok(SourceFile::new(display, &text))
}

/// What a stage or component name matches ([`is_name`]); `release schema` says the same.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9_-]*$";
/// What a step or gate id matches.
pub const ID_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";

/// A stage or component name: [`NAME_PATTERN`].
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A step or gate id: [`ID_PATTERN`].
fn is_step_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Loads and validates `release.yaml`, returning every diagnostic (errors and warnings) and
/// the config as far as it could be read: whoever uses it must check the diagnostics for
/// errors first (`Project::load` does); `runbook validate` uses a partial config to go on
/// checking runbooks.
pub fn load_config(path: &Path, display: &Path) -> (Option<Config>, Vec<Diagnostic>) {
    match read_source(path, display) {
        Ok(file) => check_config_in(&file, None),
        Err(d) => (None, vec![d]),
    }
}

/// As [`load_config`], and also checks what release.yaml names on disk (the `runbooks:`
/// folder): for `release runbook validate`, while other commands may run a runbook from
/// anywhere.
pub fn load_config_and_layout(path: &Path, display: &Path) -> (Option<Config>, Vec<Diagnostic>) {
    match read_source(path, display) {
        Ok(file) => check_config_in(&file, path.parent()),
        Err(d) => (None, vec![d]),
    }
}

/// Validates the text of a `release.yaml` (see [`load_config`]).
pub fn check_config_source(file: &SourceFile) -> (Option<Config>, Vec<Diagnostic>) {
    check_config_in(file, None)
}

/// Validates a `release.yaml`; with the folder it is in, also what it names on disk.
fn check_config_in(file: &SourceFile, dir: Option<&Path>) -> (Option<Config>, Vec<Diagnostic>) {
    check_file(
        file,
        "release.yaml",
        "release.yaml must be a mapping",
        "start from `release init`, or write at least `version: 1` and `components:`",
        |c, root| check_config(c, root, dir),
    )
}

/// Parses a file, checks that it is a mapping, runs `check` on it, and returns what it
/// built with the file's diagnostics in the order a reader meets them.
fn check_file<T>(
    file: &SourceFile,
    what: &str,
    not_a_map: &str,
    hint: &str,
    check: impl FnOnce(&mut Checker<'_>, &Node) -> Option<T>,
) -> (Option<T>, Vec<Diagnostic>) {
    let mut c = Checker::new(file);
    let value = match c.parse(what) {
        Some(root) if root.is_map() => check(&mut c, &root),
        Some(root) => {
            c.hint(root.span, not_a_map, hint);
            None
        }
        None => None,
    };
    c.diagnostics.sort_by_key(|d| (d.line, d.column));
    (value, c.diagnostics)
}

fn check_config(c: &mut Checker<'_>, root: &Node, dir: Option<&Path>) -> Option<Config> {
    c.unknown_keys(root, CONFIG_KEYS, "release.yaml");
    let header_node = Node::new(
        root.span,
        yaml::Value::Map(
            root.entries()
                .filter(|(k, _)| {
                    k.as_str().is_some_and(|k| {
                        CONFIG_KEYS.contains(&k) && !["notify", "components", "gates"].contains(&k)
                    })
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    );
    let header: Option<ConfigHeader> = c.de_fields(&header_node, "", true);
    let notify: NamedMap<Channel> = named_entries(c, root, "notify", "channel", None);
    let components: NamedMap<Component> =
        named_entries(c, root, "components", "component", Some(Component::default));
    let gates: NamedMap<Vec<GateSpec>> = gate_entries(c, root);

    let stages: Vec<Spanned<String>> = header
        .as_ref()
        .map(|h| h.stages.clone())
        .unwrap_or_default();
    if let Some(header) = &header {
        check_header(c, header, root);
        if let Some(dir) = dir {
            check_runbooks_folder(c, header, root, dir);
        }
    }
    check_empty_strings(c, root);
    check_channels(c, &notify);
    check_components(c, &components);
    let stage_names: Vec<&str> = stages.iter().map(|s| s.value.as_str()).collect();
    check_gates(c, root, &gates, &stage_names, &components);

    Some(Config {
        header: header?,
        notify,
        components,
        gates,
    })
}

/// Deserializes each entry of the mapping under `key` on its own. With `fallback`, an entry
/// with a mistake is kept (as much of it as is sound, else the fallback), so that later
/// checks still know its name and do not report it as undeclared.
fn named_entries<T: for<'de> serde::Deserialize<'de>>(
    c: &mut Checker<'_>,
    root: &Node,
    key: &str,
    what: &str,
    fallback: Option<fn() -> T>,
) -> NamedMap<T> {
    let mut out = NamedMap::default();
    let Some(node) = root.get(key) else {
        return out;
    };
    if matches!(node.value, yaml::Value::Null) {
        return out;
    }
    if !node.is_map() {
        c.hint(
            node.span,
            format!("`{key}` must be a mapping of {what} names"),
            format!("write `{key}:` followed by indented `name: …` entries"),
        );
        return out;
    }
    for (name_node, value) in node.entries() {
        let name = name_node.scalar_text().unwrap_or_default().to_owned();
        let context = format!("{what} `{name}`");
        let value = if let Some(fallback) = fallback {
            Some(
                c.de_fields::<T>(value, &context, true)
                    .unwrap_or_else(fallback),
            )
        } else {
            c.de_fields::<T>(value, &context, false)
        };
        if let Some(v) = value {
            out.push(
                Spanned {
                    span: name_node.span,
                    value: name,
                },
                v,
            );
        }
    }
    out
}

fn gate_entries(c: &mut Checker<'_>, root: &Node) -> NamedMap<Vec<GateSpec>> {
    let mut out = NamedMap::default();
    let Some(node) = root.get("gates") else {
        return out;
    };
    if matches!(node.value, yaml::Value::Null) {
        return out;
    }
    if !node.is_map() {
        c.hint(
            node.span,
            "`gates` must be a mapping from stage names to lists of gates",
            "write `gates:` then `  staging:` then `    - { id: tests, run: [make, test] }`",
        );
        return out;
    }
    for (stage_node, list) in node.entries() {
        let stage = stage_node.scalar_text().unwrap_or_default().to_owned();
        if !matches!(list.value, yaml::Value::Seq(_)) {
            c.hint(
                list.span,
                format!("the gates of stage `{stage}` must be a list"),
                "write each gate as `- { id: …, <kind>: … }`",
            );
            continue;
        }
        let gates = list
            .items()
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let label = g.get("id").and_then(Node::scalar_text).map_or_else(
                    || format!("gate {} of stage `{stage}`", i + 1),
                    |id| format!("gate `{id}` of stage `{stage}`"),
                );
                c.de_fields::<GateSpec>(g, &label, false)
            })
            .collect();
        out.push(
            Spanned {
                span: stage_node.span,
                value: stage,
            },
            gates,
        );
    }
    out
}

fn check_header(c: &mut Checker<'_>, header: &ConfigHeader, root: &Node) {
    if header.version.value != 1 {
        c.hint(
            header.version.span,
            format!("unsupported version {}", header.version.value),
            "this release understands `version: 1`",
        );
    }
    if header.stages.is_empty() {
        c.hint(
            root.get("stages").map_or(root.span, |n| n.span),
            "`stages` is empty",
            "list the stages in promotion order, e.g. [development, staging, production]",
        );
    }
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for stage in &header.stages {
        if !is_name(&stage.value) {
            c.hint(
                stage.span,
                format!("invalid stage name `{}`", stage.value),
                format!("stage names match {NAME_PATTERN} (lowercase, digits, `_`, `-`)"),
            );
        }
        if let Some(first) = seen.insert(&stage.value, stage.span) {
            c.hint(
                stage.span,
                format!("stage `{}` is listed twice", stage.value),
                format!("first listed at line {}; remove one", first.line),
            );
        }
    }
    if header.incidents.value == IncidentTracker::Github && header.github.is_none() {
        c.hint(
            header.incidents.span,
            "`incidents: github` needs a `github:` section",
            "add `github: { repo: owner/name, token_env: GITHUB_TOKEN }`",
        );
    }
    if let Some(github) = &header.github {
        let repo = &github.repo;
        let parts: Vec<&str> = repo.value.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            c.hint(
                repo.span,
                format!("`{}` is not a repository name", repo.value),
                "write it as `owner/name`",
            );
        }
        check_env_name(c, &github.token_env);
        if !(github.api_url.starts_with("http://") || github.api_url.starts_with("https://")) {
            let span = root
                .get("github")
                .and_then(|g| g.get("api_url"))
                .map_or(root.span, |n| n.span);
            c.hint(
                span,
                format!("`{}` is not an http(s) URL", github.api_url),
                "write e.g. `https://api.github.com` or `https://github.example.com/api/v3`",
            );
        }
    }
}

/// Paths and names that may be left out (they have defaults) but not written empty.
fn check_empty_strings(c: &mut Checker<'_>, root: &Node) {
    let fields: [(&[&str], &str); 5] = [
        (
            &["audit", "path"],
            "write the audit log's path, e.g. `.release/audit.jsonl`, or leave `audit:` out",
        ),
        (
            &["runbooks"],
            "write the runbooks folder, e.g. `runbooks`, or leave the key out",
        ),
        (
            &["repository", "remote"],
            "write the remote `git_revert` pushes to, e.g. `origin`, or leave the key out",
        ),
        (
            &["repository", "branch"],
            "write the branch `git_revert` works on, e.g. `main`, or leave the key out",
        ),
        (
            &["state", "git", "remote"],
            "write the remote that holds the shared state, e.g. `origin`",
        ),
    ];
    for (path, hint) in fields {
        let node = path.iter().try_fold(root, |node, key| node.get(key));
        if let Some(node) = node.filter(|n| n.as_str().is_some_and(|s| s.trim().is_empty())) {
            c.hint(node.span, format!("`{}` is empty", path.join(".")), hint);
        }
    }
    for (name, component) in root
        .get("components")
        .map(Node::entries)
        .into_iter()
        .flatten()
    {
        for key in ["path", "spec"] {
            if let Some(node) = component
                .get(key)
                .filter(|n| n.as_str().is_some_and(|s| s.trim().is_empty()))
            {
                c.hint(
                    node.span,
                    format!(
                        "component `{}`: `{key}` is empty",
                        name.scalar_text().unwrap_or_default()
                    ),
                    format!(
                        "write the component's {}, or leave `{key}` out",
                        if key == "path" {
                            "folder"
                        } else {
                            "specification document"
                        }
                    ),
                );
            }
        }
    }
}

/// A `runbooks:` folder written in release.yaml must exist.
fn check_runbooks_folder(c: &mut Checker<'_>, header: &ConfigHeader, root: &Node, dir: &Path) {
    let Some(node) = root.get("runbooks") else {
        return;
    };
    if header.runbooks.as_os_str().is_empty() {
        return; // reported as empty
    }
    let folder = dir.join(&header.runbooks);
    match std::fs::metadata(&folder) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => c.hint(
            node.span,
            format!(
                "`runbooks`: `{}` is {}, not a folder",
                header.runbooks.display(),
                super::kind_of(&m.file_type())
            ),
            "name the folder that holds `<stage>/rollback.yaml`",
        ),
        Err(e) => c.hint(
            node.span,
            format!("`runbooks`: folder `{}` cannot be read: {e}", header.runbooks.display()),
            "create it (`release init` writes the default runbooks under `runbooks/`), or fix the path",
        ),
    }
}

/// A URL written without a template must be an http(s) URL (one with a template is
/// checked when rendered).
fn check_url(c: &mut Checker<'_>, node: Option<&Node>, label: &str, example: &str) {
    let Some((node, text)) = node.and_then(|n| n.as_str().map(|t| (n, t))) else {
        return;
    };
    if template::is_template(text) {
        return;
    }
    let problem = match reqwest::Url::parse(text.trim()) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Some(format!("`{}:` is not http or https", url.scheme()))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("it has no host".to_owned()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Some(problem) = problem {
        c.hint(
            node.span,
            format!("{label}`{text}` is not an http(s) URL: {problem}"),
            format!("write a full URL, e.g. `{example}`"),
        );
    }
}

fn check_env_name(c: &mut Checker<'_>, name: &Spanned<String>) {
    if !is_identifier(&name.value) {
        c.hint(
            name.span,
            format!("`{}` is not an environment variable name", name.value),
            "name the variable that holds the secret (e.g. `SLACK_WEBHOOK_URL`), never the secret itself",
        );
    }
}

fn check_channels(c: &mut Checker<'_>, notify: &NamedMap<Channel>) {
    for (name, channel) in notify.iter() {
        match (channel.kind, &channel.url_env) {
            (ChannelKind::Slack | ChannelKind::Webhook, None) => c.hint(
                name.span,
                format!("channel `{name}` has no `url_env`"),
                "add `url_env: VARIABLE` naming the environment variable that holds the webhook URL",
            ),
            (ChannelKind::Log, Some(env)) => c.hint(
                env.span,
                format!("channel `{name}` is `kind: log`: it takes no `url_env`"),
                "remove `url_env`, or use `kind: webhook`",
            ),
            (_, Some(env)) => check_env_name(c, env),
            (ChannelKind::Log, None) => {}
        }
    }
}

fn check_components(c: &mut Checker<'_>, components: &NamedMap<Component>) {
    let names: Vec<&str> = components.names().collect();
    let valid_names: Vec<&str> = names.iter().copied().filter(|n| is_name(n)).collect();
    for (name, component) in components.iter() {
        if !is_name(&name.value) {
            c.hint(
                name.span,
                format!("invalid component name `{name}`"),
                format!("component names match {NAME_PATTERN} (lowercase letters, digits, `_`, `-`; starting with a letter)"),
            );
        }
        for dep in &component.depends_on {
            if dep.value == name.value {
                c.hint(
                    dep.span,
                    format!("component `{name}` depends on itself"),
                    "remove it from `depends_on`",
                );
            } else if !components.contains(&dep.value) {
                c.hint(
                    dep.span,
                    format!("component `{name}` depends on unknown component `{dep}`"),
                    suggest_among(&dep.value, &valid_names),
                );
            }
        }
    }
    // Dependency cycles: a component can then never be promoted.
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let needs = components
        .iter()
        .map(|(name, comp)| {
            comp.depends_on
                .iter()
                .filter(|d| d.value != name.value)
                .filter_map(|d| index.get(d.value.as_str()).copied())
                .collect()
        })
        .collect();
    for found in StepGraph::new(needs).cycles() {
        // The graph gives running order (dependencies first); follow `depends_on` instead,
        // from the component written first.
        let mut cycle = found.path;
        cycle.reverse();
        let first = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, i)| **i)
            .map_or(0, |(p, _)| p);
        cycle.rotate_left(first);
        let path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
        let others = also_caught(&found.others, |i| names[i]);
        let first = components
            .iter()
            .nth(cycle[0])
            .map_or(Span::default(), |(n, _)| n.span);
        c.hint(
            first,
            format!(
                "components depend on each other in a cycle: {} -> {} (`a -> b`: a depends on b){others}",
                path.join(" -> "),
                path[0]
            ),
            "a component may only depend on components that do not depend on it: remove one `depends_on` entry",
        );
    }
}

fn check_gates(
    c: &mut Checker<'_>,
    root: &Node,
    gates: &NamedMap<Vec<GateSpec>>,
    stages: &[&str],
    components: &NamedMap<Component>,
) {
    let env = template::environment();
    let components = component_scopes(components);
    let scope = Scope {
        kind: ScopeKind::Gate,
        params: &[],
        components: Some(&components),
        steps_before: &|_| false,
        all_steps: &template::StepIds::default(),
        current: None,
    };
    let gate_nodes = root.get("gates");
    for (stage, list) in gates.iter() {
        if !stages.is_empty() && !stages.contains(&stage.value.as_str()) {
            c.hint(
                stage.span,
                format!("gates for unknown stage `{stage}`"),
                suggest_among(
                    &stage.value,
                    &stages
                        .iter()
                        .copied()
                        .filter(|s| is_name(s))
                        .collect::<Vec<_>>(),
                ),
            );
        } else if stages.first() == Some(&stage.value.as_str()) {
            c.warning(
                stage.span,
                format!("gates for `{stage}` never run"),
                format!("`{stage}` is the first stage: nothing is promoted into it. Gates guard entry into a stage."),
            );
        }
        let nodes = gate_nodes
            .and_then(|g| g.get(&stage.value))
            .map(Node::items)
            .unwrap_or_default();
        let mut ids: HashMap<&str, Span> = HashMap::new();
        for gate in list {
            check_gate(c, gate, &mut ids);
            // Templates in the gate's values.
            if let Some(node) = nodes
                .iter()
                .find(|n| n.get("id").and_then(Node::scalar_text) == Some(&gate.id.value))
            {
                check_templates_in(c, &env, node, &scope, &["id"]);
                check_url(
                    c,
                    node.get("uptime").and_then(|u| u.get("prometheus")),
                    &format!("gate `{}`: ", gate.id.value),
                    "http://prometheus.example.com:9090",
                );
            }
        }
    }
}

fn check_gate<'g>(c: &mut Checker<'_>, gate: &'g GateSpec, ids: &mut HashMap<&'g str, Span>) {
    let id = &gate.id;
    if !is_step_id(&id.value) {
        c.hint(
            id.span,
            format!("invalid gate id `{id}`"),
            format!("gate ids match {ID_PATTERN}"),
        );
    }
    if let Some(first) = ids.insert(&id.value, id.span) {
        c.hint(
            id.span,
            format!("duplicate gate id `{id}`"),
            format!(
                "first used at line {}; give each gate of a stage its own id",
                first.line
            ),
        );
    }
    let kinds = gate.kinds_set();
    match kinds.as_slice() {
        [] => c.hint(
            id.span,
            format!("gate `{id}` has no kind"),
            format!("add exactly one of: {}", GATE_KINDS.join(", ")),
        ),
        [_] => {}
        many => c.hint(
            id.span,
            format!("gate `{id}` has {} kinds ({})", many.len(), many.join(", ")),
            "a gate has exactly one kind: split it into one gate per kind",
        ),
    }
    if let Some(run) = &gate.run
        && run.is_empty()
    {
        c.hint(
            id.span,
            format!("gate `{id}`: `run` is an empty command"),
            "write the program and its arguments, e.g. [make, test]",
        );
    }
    if let Some(coverage) = &gate.coverage
        && !(0.0..=100.0).contains(&coverage.min.value)
    {
        c.hint(
            coverage.min.span,
            format!(
                "gate `{id}`: coverage `min: {}` is not a percentage",
                coverage.min.value
            ),
            "write a percentage between 0 and 100, e.g. `min: 80`",
        );
    }
    if let Some(approvals) = &gate.approvals
        && approvals.min.value == 0
    {
        c.hint(
            approvals.min.span,
            format!("gate `{id}`: `min: 0` approvals always passes"),
            "require at least 1 approval",
        );
    }
    if let Some(paths) = &gate.file_exists
        && paths.is_empty()
    {
        c.hint(
            id.span,
            format!("gate `{id}`: `file_exists` lists no path"),
            "list the paths that must exist",
        );
    }
    check_gate_no_ops(c, gate);
    if let Some(windows) = &gate.freeze {
        for window in windows {
            check_freeze_window(c, id, window.span, window);
        }
    }
}

/// Gate values that make it always pass, or block on anything.
fn check_gate_no_ops(c: &mut Checker<'_>, gate: &GateSpec) {
    let id = &gate.id;
    // Gates that can never mean anything: what is wrong, and the fix.
    let meaningless = [
        (
            gate.freeze.as_ref().is_some_and(Vec::is_empty),
            "`freeze` lists no window, so it always passes",
            "list the windows, e.g. `freeze: [{ weekly: { from: \"fri 16:00\", to: \"mon 08:00\" } }]`, or remove the gate",
        ),
        (
            gate.attested
                .as_ref()
                .is_some_and(|a| a.check.trim().is_empty()),
            "`attested` has an empty `check`",
            "name the check `release attest` records, e.g. `check: security-review`",
        ),
        (
            gate.file_exists
                .as_ref()
                .is_some_and(|paths| paths.iter().any(|p| p.trim().is_empty())),
            "`file_exists` lists an empty path",
            "remove it, or write the path, e.g. `\"src/{{ component }}/README.md\"`",
        ),
        (
            gate.uptime
                .as_ref()
                .is_some_and(|u| u.query.trim().is_empty()),
            "`uptime` has an empty `query`",
            "write the PromQL, e.g. `avg_over_time(up{job=\"{{ component }}\"}[7d])`",
        ),
        (
            gate.rollback_tested
                .as_ref()
                .is_some_and(|t| t.within.0.is_zero()),
            "`rollback_tested` within 0s can never pass",
            "give the window a length, e.g. `within: 30d`",
        ),
    ];
    for (_, what, fix) in meaningless.into_iter().filter(|(found, ..)| *found) {
        c.hint(id.span, format!("gate `{id}`: {what}"), fix);
    }
    if let Some(issues) = &gate.no_open_issues {
        if issues.labels.is_empty() {
            c.hint(
                id.span,
                format!("gate `{id}`: `no_open_issues` lists no label, so any open issue blocks"),
                "list the labels a blocking issue carries, e.g. `labels: [critical, \"component:{{ component }}\"]`",
            );
        } else if issues.labels.iter().any(|l| l.trim().is_empty()) {
            c.hint(
                id.span,
                format!("gate `{id}`: `no_open_issues` has an empty label"),
                "remove it, or write the label",
            );
        }
    }
}

fn check_freeze_window(c: &mut Checker<'_>, id: &Spanned<String>, at: Span, w: &FreezeWindow) {
    let absolute = w.from.is_some() || w.to.is_some();
    match (absolute, &w.weekly) {
        (true, Some(_)) => c.hint(
            at,
            format!("gate `{id}`: a freeze window is either absolute (`from`/`to`) or `weekly`, not both"),
            "split it into two windows",
        ),
        (false, None) => c.hint(
            at,
            format!("gate `{id}`: a freeze window needs `from` and `to`, or `weekly`"),
            "e.g. `{ from: 2026-12-24T00:00:00Z, to: 2026-12-27T00:00:00Z, reason: holidays }` or `{ weekly: { from: \"fri 16:00\", to: \"mon 08:00\" }, tz: Europe/Paris }`",
        ),
        (true, None) => match (&w.from, &w.to) {
            (Some(from), Some(to)) if from >= to => c.hint(
                at,
                format!("gate `{id}`: freeze window ends ({}) before it starts ({})", to.0.to_rfc3339(), from.0.to_rfc3339()),
                "swap `from` and `to`",
            ),
            (Some(_), Some(_)) => {
                if w.tz.is_some() {
                    c.hint(at, format!("gate `{id}`: `tz` applies to weekly windows only"), "RFC 3339 times carry their own offset: remove `tz`");
                }
            }
            _ => c.hint(at, format!("gate `{id}`: an absolute freeze window needs both `from` and `to`"), "add the missing bound"),
        },
        (false, Some(weekly)) => {
            if weekly.from == weekly.to {
                c.hint(at, format!("gate `{id}`: weekly freeze window starts and ends at {}", weekly.from), "give it a length");
            }
        }
    }
}

fn component_scopes(components: &NamedMap<Component>) -> Vec<template::ComponentScope<'_>> {
    components
        .iter()
        .map(|(name, comp)| template::ComponentScope {
            name: name.value.as_str(),
            vars: comp
                .vars
                .iter()
                .map(|(k, v)| (k.value.as_str(), v))
                .collect(),
            has_spec: comp.spec.is_some(),
        })
        .collect()
}

/// Checks every templated string below `node` (skipping the keys in `skip` at its top).
fn check_templates_in(
    c: &mut Checker<'_>,
    env: &minijinja::Environment<'_>,
    node: &Node,
    scope: &Scope<'_>,
    skip: &[&str],
) {
    for (key, value) in node.entries() {
        if key.as_str().is_some_and(|k| skip.contains(&k)) {
            continue;
        }
        value.visit_strings(&mut |string_node, text| {
            if template::is_template(text) {
                match template::template_variables(env, text) {
                    Ok(vars) => {
                        check_variables(c, string_node.span, &vars, scope);
                        if let Some(problem) = template::unknown_callables(env, text, &vars) {
                            c.hint(
                                string_node.span,
                                format!("template calls {problem}"),
                                "see the filters, tests and functions of minijinja (Jinja2): e.g. `upper`, `lower`, `default`, `join`, `replace`, `trim`",
                            );
                        }
                    }
                    Err(e) => template_syntax(c, string_node.span, &e),
                }
            }
        });
    }
}

fn template_syntax(c: &mut Checker<'_>, span: Span, e: &template::SyntaxError) {
    let line = e
        .line
        .filter(|&l| l > 1)
        .map(|l| format!(" (line {l} of the template)"))
        .unwrap_or_default();
    c.hint(
        span,
        format!("template syntax error{line}: {}", e.message),
        "templates use minijinja (Jinja2) syntax: `{{ params.commit }}`, `{% if … %}…{% endif %}`",
    );
}

fn check_variables(c: &mut Checker<'_>, span: Span, vars: &BTreeSet<String>, scope: &Scope<'_>) {
    for var in vars {
        for e in scope.check(var) {
            c.hint(span, e.message, e.hint);
        }
    }
}

/// Loads and validates a runbook against the (valid) configuration; without one (when
/// release.yaml cannot be read), its syntax, keys, types and graph only.
pub fn load_runbook(
    path: &Path,
    display: &Path,
    config: Option<&Config>,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    match read_source(path, display) {
        Ok(file) => check_runbook_source(&file, config),
        Err(d) => (None, vec![d]),
    }
}

/// Validates the text of a runbook (see [`load_runbook`]). The runbook comes back only
/// when it has no error.
pub fn check_runbook_source(
    file: &SourceFile,
    config: Option<&Config>,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    let (runbook, diagnostics) = check_file(
        file,
        "a runbook",
        "a runbook must be a mapping with `steps:`",
        "start from one written by `release init`",
        |c, root| check_runbook(c, root, config),
    );
    let runbook = runbook.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    (runbook, diagnostics)
}

/// What is known of a step even when it does not deserialize: enough to check the graph.
struct StepOutline<'n> {
    id: Option<(&'n str, Span)>,
    needs: Option<(Vec<(&'n str, Span)>, Span)>,
}

fn outline(node: &Node) -> StepOutline<'_> {
    StepOutline {
        id: node
            .get("id")
            .and_then(|n| n.scalar_text().map(|t| (t, n.span))),
        needs: node.get("needs").map(|n| {
            let items = n
                .items()
                .iter()
                .filter_map(|i| i.scalar_text().map(|t| (t, i.span)))
                .collect();
            (items, n.span)
        }),
    }
}

fn check_runbook(c: &mut Checker<'_>, root: &Node, config: Option<&Config>) -> Option<Runbook> {
    c.unknown_keys(root, RUNBOOK_KEYS, "the runbook");
    let header_node = Node::new(
        root.span,
        yaml::Value::Map(
            root.entries()
                .filter(|(k, _)| {
                    k.as_str()
                        .is_some_and(|k| RUNBOOK_KEYS.contains(&k) && k != "steps" && k != "params")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    );
    let mut header: Option<RunbookHeader> = c.de_fields(&header_node, "", true);
    // Each parameter on its own: one with a mistake is still declared.
    let params = named_entries(c, root, "params", "parameter", Some(Param::default));
    if let Some(header) = &mut header {
        header.params = params;
        check_params(c, header);
    }

    let Some(steps_node) = root.get("steps") else {
        c.hint(
            root.span,
            "the runbook has no `steps`",
            "add `steps:` with at least one step",
        );
        return None;
    };
    let step_nodes = match &steps_node.value {
        yaml::Value::Seq(items) if !items.is_empty() => items.as_slice(),
        yaml::Value::Seq(_) => {
            c.hint(steps_node.span, "`steps` is empty", "add at least one step");
            return None;
        }
        _ => {
            c.hint(
                steps_node.span,
                "`steps` must be a list of steps",
                "write each step as `- id: …` followed by its action",
            );
            return None;
        }
    };

    // Each step on its own: fields, and exactly one action.
    let specs: Vec<Option<StepSpec>> = step_nodes
        .iter()
        .enumerate()
        .map(|(i, node)| check_step_node(c, node, i))
        .collect();

    // The graph, from what is known of every step (even those that did not deserialize).
    let outlines: Vec<StepOutline<'_>> = step_nodes.iter().map(outline).collect();
    let graph = check_graph(c, &outlines);

    check_step_templates(
        c,
        config,
        header.as_ref(),
        step_nodes,
        &specs,
        &outlines,
        graph.as_ref(),
    );

    let header = header?;
    let graph = graph?;
    let mut steps = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let spec = spec?;
        let action = spec.action()?;
        steps.push(Step {
            id: spec.id.value,
            name: spec.name,
            needs: graph
                .needs(i)
                .iter()
                .filter_map(|&n| outlines[n].id.map(|(id, _)| id.to_owned()))
                .collect(),
            when: spec.when,
            condition: spec.condition.map(|c| c.value),
            confirm: spec.confirm,
            timeout: spec.timeout,
            retry: spec.retry,
            continue_on_error: spec.continue_on_error,
            action,
        });
    }
    Some(Runbook {
        name: header.name,
        description: header.description,
        params: header.params,
        confirm: header.confirm,
        steps,
    })
}

/// Parameter names are identifiers; a required parameter has no default.
fn check_params(c: &mut Checker<'_>, header: &RunbookHeader) {
    for (name, param) in header.params.iter() {
        if !is_identifier(&name.value) {
            c.hint(
                name.span,
                format!("invalid parameter name `{name}`"),
                "parameter names are identifiers (letters, digits, `_`) so templates can use `{{ params.name }}`",
            );
        }
        if param.required
            && let Some(default) = &param.default
        {
            c.hint(
                default.span,
                format!("parameter `{name}` is required and has a default"),
                "a default makes it optional: remove `required: true` or the default",
            );
        }
    }
}

/// Templates, `if` expressions and references to release.yaml, step by step: each step
/// may read the steps that are sure to have finished before it.
fn check_step_templates(
    c: &mut Checker<'_>,
    config: Option<&Config>,
    header: Option<&RunbookHeader>,
    step_nodes: &[Node],
    specs: &[Option<StepSpec>],
    outlines: &[StepOutline<'_>],
    graph: Option<&StepGraph>,
) {
    let params: Vec<&str> = header
        .map(|h| h.params.names().collect())
        .unwrap_or_default();
    let components = config.map(|config| component_scopes(&config.components));
    let all_steps = template::StepIds::new(
        outlines
            .iter()
            .filter_map(|o| o.id.map(|(id, _)| id))
            .collect(),
    );
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, o) in outlines.iter().enumerate() {
        if let Some((id, _)) = o.id {
            index.entry(id).or_insert(i);
        }
    }
    let env = template::environment();
    for (i, (node, spec)) in step_nodes.iter().zip(specs).enumerate() {
        // Computed only for the steps whose templates read other steps.
        let ancestors = std::cell::OnceCell::new();
        let before = |id: &str| {
            graph.is_some_and(|g| {
                let ancestors = ancestors.get_or_init(|| g.ancestors(i));
                index.get(id).is_some_and(|&j| ancestors[j])
            })
        };
        let scope = Scope {
            kind: ScopeKind::Step,
            params: &params,
            components: components.as_deref(),
            steps_before: &before,
            all_steps: &all_steps,
            current: outlines[i].id.map(|(id, _)| id),
        };
        check_templates_in(c, &env, node, &scope, &["id", "needs", "when", "if"]);
        if let Some(condition) = node.get("if").filter(|n| n.as_str().is_some()) {
            let text = condition.as_str().unwrap_or_default();
            let expr = text.trim().trim_start_matches("{{").trim_end_matches("}}");
            match template::expression_variables(&env, expr) {
                Ok(vars) => {
                    check_variables(c, condition.span, &vars, &scope);
                    if let Some(problem) =
                        template::unknown_callables_in_expression(&env, expr, &vars)
                    {
                        c.hint(
                            condition.span,
                            format!("`if` calls {problem}"),
                            "see the filters and tests of minijinja (Jinja2): e.g. `length`, `lower`, `default`, `is defined`, `is none`",
                        );
                    }
                }
                Err(e) => c.hint(
                    condition.span,
                    format!("`if` is not a valid expression: {}", e.message),
                    "write an expression such as `params.migration` or `params.impact == 'high'`",
                ),
            }
        }
        if let (Some(spec), Some(config)) = (spec, config) {
            check_step_references(c, spec, config);
        }
    }
}

fn check_step_node(c: &mut Checker<'_>, node: &Node, index: usize) -> Option<StepSpec> {
    let label = node.get("id").and_then(Node::scalar_text).map_or_else(
        || format!("step {}", index + 1),
        |id| format!("step `{id}`"),
    );
    if !node.is_map() {
        c.hint(
            node.span,
            format!("{label} must be a mapping"),
            "write `- id: name` then the action, e.g. `run: [make, deploy]`",
        );
        return None;
    }
    // Unknown keys are reported here with all the valid ones (fields and actions), so that
    // a misspelt action gets its suggestion.
    let valid: Vec<&str> = STEP_FIELDS.iter().chain(ACTIONS).copied().collect();
    let mut clean = true;
    for (key, _) in node.entries() {
        let name = key.scalar_text().unwrap_or_default();
        if !valid.contains(&name) {
            clean = false;
            let hint = match nearest(name, valid.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!(
                    "a step has the fields {} and exactly one action: {}",
                    STEP_FIELDS.join(", "),
                    ACTIONS.join(", ")
                ),
            };
            c.hint(key.span, format!("{label}: unknown key `{name}`"), hint);
        }
    }
    let known = Node::new(
        node.span,
        yaml::Value::Map(
            node.entries()
                .filter(|(k, _)| k.as_str().is_some_and(|k| valid.contains(&k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    );
    let before = c.diagnostics.len();
    let spec: StepSpec = c.de_fields(&known, &label, true)?;
    // A step whose action value was refused has no action left: say nothing more of it.
    let clean = clean && c.diagnostics.len() == before;
    if !is_step_id(&spec.id.value) {
        c.hint(
            spec.id.span,
            format!("invalid step id `{}`", spec.id.value),
            format!("step ids match {ID_PATTERN} (lowercase, digits, `_`, `-`)"),
        );
    }
    match spec.actions_set().as_slice() {
        [] if clean => c.hint(
            spec.id.span,
            format!("{label} has no action"),
            format!("add exactly one of: {}", ACTIONS.join(", ")),
        ),
        [] | [_] => {}
        many => c.hint(
            spec.id.span,
            format!("{label} has {} actions ({})", many.len(), many.join(", ")),
            "a step has exactly one action: split it into one step per action",
        ),
    }
    check_step_values(c, &spec, &label, node);
    Some(spec)
}

fn check_step_values(c: &mut Checker<'_>, spec: &StepSpec, label: &str, node: &Node) {
    let at = |key: &str| node.get(key).map_or(spec.id.span, |n| n.span);
    if let Some(timeout) = &spec.timeout
        && timeout.0.is_zero()
    {
        c.hint(
            at("timeout"),
            format!("{label}: a timeout of 0 always expires"),
            "write a positive duration, e.g. `5m`",
        );
    }
    if let Some(retry) = &spec.retry {
        if retry.attempts.value == 0 {
            c.hint(
                retry.attempts.span,
                format!("{label}: `attempts: 0` never runs the step"),
                "attempts counts the first run too: write at least 1",
            );
        }
        if !(retry.backoff.value >= 1.0 && retry.backoff.value.is_finite()) {
            c.hint(
                retry.backoff.span,
                format!(
                    "{label}: `backoff: {}` would shrink the delay",
                    retry.backoff.value
                ),
                "write 1.0 (constant delay) or more",
            );
        }
    }
    let Some(action) = spec.action() else {
        return;
    };
    let action_node = node.get(action.name()).unwrap_or(node);
    match &action {
        Action::Run(run) => check_run_action(c, run, label, action_node),
        Action::GitRevert(g) => check_git_revert(c, g, label, action_node),
        Action::MigrationRollback(m) => check_migration_rollback(c, m, label, action_node),
        Action::CacheClear(cc) => check_cache_clear(c, cc, label, action_node),
        Action::HealthCheck(h) => check_health_check(c, h, label, action_node),
        Action::IncidentIssue(i) => check_incident_issue(c, i, label, action_node),
        // Their references to release.yaml are checked by `check_step_references`.
        Action::Notify(_) | Action::Verify(_) => {}
    }
}

fn check_run_action(c: &mut Checker<'_>, run: &RunAction, label: &str, action_node: &Node) {
    let s = run.spec();
    match (&s.argv, &s.script) {
        (Some(_), Some(_)) => c.hint(
            action_node.span,
            format!("{label}: `run` has both `argv` and `script`"),
            "keep one: `argv` runs a program directly, `script` runs `sh -c` (with `shell: true`)",
        ),
        (None, None) => c.hint(
            action_node.span,
            format!("{label}: `run` has neither `argv` nor `script`"),
            "write `run: [program, arg]`, or `run: { argv: [...] }`",
        ),
        (Some(argv), None) => {
            if argv.is_empty() {
                c.hint(
                    action_node.span,
                    format!("{label}: `run` is an empty command"),
                    "write the program and its arguments, e.g. [make, deploy]",
                );
            }
            if s.shell {
                c.hint(
                    action_node.span,
                    format!("{label}: `shell: true` goes with `script`, not `argv`"),
                    "remove `shell: true`: argv never goes through a shell",
                );
            }
        }
        (None, Some(script)) => {
            if s.shell
                && let Some(problem) = crate::actions::script::shape_problem(script)
            {
                c.hint(
                    action_node.span,
                    format!("{label}: `script` cannot hold a value where it stands"),
                    problem,
                );
            }
            if !s.shell {
                c.hint(
                    action_node.span,
                    format!(
                        "{label}: `script` runs through a shell only when `shell: true` is written"
                    ),
                    "add `shell: true`, or write the command as `argv: [...]`",
                );
            }
        }
    }
    if s.plan.as_ref().is_some_and(Vec::is_empty) {
        c.hint(
            action_node.span,
            format!("{label}: `plan` is an empty command"),
            "remove `plan`, or write the read-only command",
        );
    }
    for name in s.env.keys() {
        if !is_identifier(name) {
            c.hint(
                action_node.span,
                format!("{label}: `{name}` is not an environment variable name"),
                "use letters, digits and `_`",
            );
        }
    }
}

fn check_git_revert(c: &mut Checker<'_>, g: &GitRevertAction, label: &str, action_node: &Node) {
    if g.mainline == Some(0) {
        c.hint(
            action_node.span,
            format!("{label}: `mainline` counts parents from 1"),
            "write `mainline: 1` for the first parent",
        );
    }
    let empty = match &g.commits {
        super::runbook::Commits::One(s) => s.trim().is_empty(),
        super::runbook::Commits::List(l) => l.is_empty(),
    };
    if empty {
        c.hint(
            action_node.span,
            format!("{label}: `commits` is empty"),
            "write a sha, a list, a range A..B, or `{{ params.commit }}`",
        );
    }
}

fn check_migration_rollback(
    c: &mut Checker<'_>,
    m: &MigrationRollbackAction,
    label: &str,
    action_node: &Node,
) {
    if m.run.is_empty() {
        c.hint(
            action_node.span,
            format!("{label}: `run` is an empty command"),
            "write the migration tool's rollback command",
        );
    }
    if m.plan.as_ref().is_some_and(Vec::is_empty) {
        c.hint(
            action_node.span,
            format!("{label}: `plan` is an empty command"),
            "remove `plan`, or write the tool's offline-SQL command",
        );
    }
}

fn check_cache_clear(c: &mut Checker<'_>, cc: &CacheClearAction, label: &str, action_node: &Node) {
    // Counted as written: a `redis` with a missing field is still the one given.
    let set = ["redis", "http", "run"]
        .iter()
        .filter(|key| action_node.get(key).is_some())
        .count();
    if set != 1 {
        c.hint(
            action_node.span,
            format!(
                "{label}: `cache_clear` needs exactly one of `redis`, `http`, `run` ({set} given)"
            ),
            "e.g. `cache_clear: { redis: { url_env: REDIS_URL, pattern: \"app:*\" } }`",
        );
    }
    if let Some(redis) = &cc.redis {
        check_env_name(c, &redis.url_env);
        if redis.pattern.trim().is_empty() {
            c.hint(
                action_node.span,
                format!("{label}: the Redis `pattern` is empty"),
                "write a SCAN MATCH pattern such as `app:*`",
            );
        }
    }
    if let Some(http) = &cc.http {
        check_url(
            c,
            action_node.get("http").and_then(|h| h.get("url")),
            &format!("{label}: "),
            "https://cdn.example.com/purge",
        );
        if http.method.value.is_empty()
            || !http.method.value.chars().all(|ch| ch.is_ascii_uppercase())
        {
            c.hint(
                http.method.span,
                format!("{label}: `{}` is not an HTTP method", http.method.value),
                "write it in capitals: POST, PURGE, DELETE, GET, PUT, BAN",
            );
        }
        let headers_node = |key: &str| action_node.get("http").and_then(|h| h.get(key));
        for (key, names) in [
            ("headers", http.headers.keys().collect::<Vec<_>>()),
            ("headers_env", http.headers_env.keys().collect()),
        ] {
            for name in names {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    c.hint(
                        headers_node(key).map_or(action_node.span, |n| n.span),
                        format!("{label}: `{name}` is not a valid header name"),
                        "header names are letters, digits and `-` (no spaces or colons), e.g. `X-Purge-Token`",
                    );
                }
            }
        }
        for (name, value) in &http.headers {
            if !crate::template::is_template(value)
                && reqwest::header::HeaderValue::from_str(value).is_err()
            {
                c.hint(
                    headers_node("headers").map_or(action_node.span, |n| n.span),
                    format!(
                        "{label}: the value of header `{name}` holds a character a header cannot"
                    ),
                    "a header value is one line of visible characters",
                );
            }
        }
        for var in http.headers_env.values() {
            if !is_identifier(var) {
                c.hint(
                    action_node.span,
                    format!("{label}: `{var}` is not an environment variable name"),
                    "name the variable holding the header's value",
                );
            }
        }
    }
    if cc.run.as_ref().is_some_and(Vec::is_empty) {
        c.hint(
            action_node.span,
            format!("{label}: `run` is an empty command"),
            "write the purge command",
        );
    }
}

fn check_health_check(c: &mut Checker<'_>, h: &HealthCheckAction, label: &str, action_node: &Node) {
    check_url(
        c,
        action_node.get("url"),
        &format!("{label}: "),
        "http://127.0.0.1:8080/health",
    );
    if !(100..=599).contains(&h.expect_status.value) {
        c.hint(
            h.expect_status.span,
            format!("{label}: {} is not an HTTP status", h.expect_status.value),
            "write a status between 100 and 599, usually 200",
        );
    }
    if h.attempts.value == 0 {
        c.hint(
            h.attempts.span,
            format!("{label}: `attempts: 0` never checks"),
            "write at least 1",
        );
    }
    if h.timeout.0.is_zero() {
        c.hint(
            action_node.span,
            format!("{label}: a timeout of 0 always expires"),
            "write e.g. `timeout: 2s`",
        );
    }
    if let Some(re) = &h.expect_body_regex
        && !template::is_template(&re.value)
        && let Err(e) = Regex::new(&re.value)
    {
        let first = e.to_string().lines().last().unwrap_or_default().to_owned();
        c.hint(
            re.span,
            format!("{label}: invalid `expect_body_regex`: {first}"),
            "write a regular expression (Rust regex syntax), e.g. `\"status\":\\s*\"ok\"`",
        );
    }
}

fn check_incident_issue(
    c: &mut Checker<'_>,
    i: &IncidentIssueAction,
    label: &str,
    action_node: &Node,
) {
    if i.title.trim().is_empty() {
        c.hint(
            action_node.span,
            format!("{label}: the incident `title` is empty"),
            "write a title, e.g. \"Production rollback: {{ component }}\"",
        );
    }
}

/// References from a step to `release.yaml`: channels and stages.
fn check_step_references(c: &mut Checker<'_>, spec: &StepSpec, config: &Config) {
    if let Some(notify) = &spec.notify
        && !config.notify.contains(&notify.channel.value)
    {
        let names: Vec<&str> = config.notify.names().collect();
        let hint = if names.is_empty() {
            format!(
                "release.yaml defines no channels: add `notify: {{ {}: {{ kind: log }} }}`",
                notify.channel.value
            )
        } else {
            suggest_among(&notify.channel.value, &names)
        };
        c.hint(
            notify.channel.span,
            format!("unknown notify channel `{}`", notify.channel.value),
            hint,
        );
    }
    if let Some(verify) = &spec.verify
        && !config.has_stage(&verify.stage.value)
    {
        let stages: Vec<&str> = config.stages().filter(|s| is_name(s)).collect();
        c.hint(
            verify.stage.span,
            format!("unknown stage `{}` in `verify`", verify.stage.value),
            suggest_among(&verify.stage.value, &stages),
        );
    }
}

/// Checks ids and `needs`, and builds the graph when they are sound.
fn check_graph(c: &mut Checker<'_>, outlines: &[StepOutline<'_>]) -> Option<StepGraph> {
    let mut first_seen: HashMap<&str, (usize, Span)> = HashMap::new();
    let mut sound = true;
    for (i, o) in outlines.iter().enumerate() {
        match o.id {
            None => sound = false, // reported when the step was deserialized
            Some((id, span)) => {
                if let Some((_, first)) = first_seen.get(id) {
                    c.hint(
                        span,
                        format!("duplicate step id `{id}`"),
                        format!("first used at line {}; step ids must be unique", first.line),
                    );
                    sound = false;
                } else {
                    first_seen.insert(id, (i, span));
                }
            }
        }
    }
    // Suggested ids: valid ones only, each once (the candidate list dedupes).
    let ids: Vec<&str> = outlines
        .iter()
        .filter_map(|o| o.id.map(|(id, _)| id))
        .filter(|id| is_step_id(id))
        .collect();
    let mut needs = Vec::with_capacity(outlines.len());
    let mut hints: HashMap<&str, String> = HashMap::new();
    for (i, o) in outlines.iter().enumerate() {
        let mut mine = Vec::new();
        match &o.needs {
            None if i > 0 => mine.push(i - 1),
            None => {}
            Some((list, _)) => {
                for (need, span) in list {
                    if Some(*need) == o.id.map(|(id, _)| id) {
                        c.hint(
                            *span,
                            format!("step `{need}` needs itself"),
                            "remove it from `needs`",
                        );
                        sound = false;
                    } else if let Some((index, _)) = first_seen.get(need) {
                        mine.push(*index);
                    } else {
                        let label = o.id.map_or_else(
                            || format!("step {}", i + 1),
                            |(id, _)| format!("step `{id}`"),
                        );
                        let hint = hints
                            .entry(*need)
                            .or_insert_with(|| suggest_among(need, &ids))
                            .clone();
                        c.hint(*span, format!("{label} needs unknown step `{need}`"), hint);
                        sound = false;
                    }
                }
            }
        }
        needs.push(mine);
    }
    let graph = StepGraph::new(needs);
    for cycle in graph.cycles() {
        report_cycle(c, outlines, &cycle);
        sound = false;
    }
    sound.then_some(graph)
}

/// The members of a knot that are not on the cycle shown, as the message's tail.
fn also_caught<'n>(others: &[usize], name: impl Fn(usize) -> &'n str) -> String {
    if others.is_empty() {
        return String::new();
    }
    let list: Vec<String> = others.iter().map(|&i| format!("`{}`", name(i))).collect();
    format!(" (also caught in it: {})", list.join(", "))
}

/// One cycle of steps, in running order, saying which waits are implicit (a step without
/// `needs` waits for the step written above it) and how to break it.
fn report_cycle(c: &mut Checker<'_>, outlines: &[StepOutline<'_>], cycle: &Cycle) {
    let name = |i: usize| outlines[i].id.map_or("?", |(id, _)| id);
    let names: Vec<&str> = cycle.path.iter().map(|&i| name(i)).collect();
    let first = cycle.path[0];
    let span = outlines[first].needs.as_ref().map_or_else(
        || outlines[first].id.map_or(Span::default(), |(_, s)| s),
        |(_, s)| *s,
    );
    let others = also_caught(&cycle.others, name);
    // Each step of the walk waits for the one before it; which of those waits are written?
    let mut written: Vec<String> = Vec::new();
    let mut implicit: Vec<(usize, usize)> = Vec::new();
    for (k, &step) in cycle.path.iter().enumerate() {
        let before = cycle.path[(k + cycle.path.len() - 1) % cycle.path.len()];
        if outlines[step].needs.is_some() {
            written.push(format!(
                "`{}` in the `needs` of `{}`",
                name(before),
                name(step)
            ));
        } else {
            implicit.push((step, before));
        }
    }
    let hint = if implicit.is_empty() {
        "each step here waits for the one before it, so none can start: remove one of these `needs`"
            .to_owned()
    } else {
        let waits: Vec<String> = implicit
            .iter()
            .map(|&(step, before)| format!("`{}` waits for `{}`", name(step), name(before)))
            .collect();
        let quiet: Vec<String> = implicit
            .iter()
            .map(|&(s, _)| format!("`{}`", name(s)))
            .collect();
        let mut hint = format!(
            "each step here waits for the one before it, so none can start; {} only because {} no `needs` (a step without `needs` waits for the step written above it). Give {} `needs: []` (or the steps it must wait for)",
            waits.join(" and "),
            if implicit.len() == 1 {
                "it has"
            } else {
                "they have"
            },
            if quiet.len() == 1 {
                quiet[0].clone()
            } else {
                format!("one of {}", quiet.join(", "))
            },
        );
        if !written.is_empty() {
            let _ = write!(hint, ", or remove {}", written.join(" or "));
        }
        // A written need of a step on something below it: moving the step fixes it too.
        let below = cycle
            .path
            .iter()
            .enumerate()
            .filter(|&(_, &step)| outlines[step].needs.is_some())
            .find_map(|(k, &step)| {
                let before = cycle.path[(k + cycle.path.len() - 1) % cycle.path.len()];
                (before > step).then_some((step, before))
            });
        if let Some((step, before)) = below {
            let _ = write!(hint, ", or move `{}` below `{}`", name(step), name(before));
        }
        hint
    };
    c.hint(
        span,
        format!(
            "steps wait for each other in a cycle: {} -> {}{others}",
            names.join(" -> "),
            names[0]
        ),
        hint,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CONFIG: &str = include_str!("../../release.yaml");
    const ROLLBACK: &str = include_str!("../../runbooks/production/rollback.yaml");

    fn config() -> Config {
        let (config, diagnostics) =
            check_config_source(&SourceFile::new(Path::new("release.yaml"), CONFIG));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        config.expect("config")
    }

    fn runbook(text: &str) -> (Option<Runbook>, Vec<Diagnostic>) {
        check_runbook_source(&SourceFile::new(Path::new("r.yaml"), text), Some(&config()))
    }

    #[test]
    fn the_shipped_files_are_valid() {
        let (rb, diagnostics) = runbook(ROLLBACK);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let rb = rb.unwrap();
        let caches = rb.steps.iter().find(|s| s.id == "caches").unwrap();
        assert_eq!(caches.needs, vec!["revert"]);
        let health = rb.steps.iter().find(|s| s.id == "health").unwrap();
        assert_eq!(
            health.needs,
            vec!["verify"],
            "omitted needs = the step above"
        );
        assert_eq!(rb.steps[0].needs, Vec::<String>::new());
    }

    #[test]
    fn every_problem_of_a_file_is_reported() {
        let (rb, d) = runbook(
            "steps:\n  - id: a\n    nedds: [b]\n    run: [x]\n  - id: b\n    run: [y]\n    notify: { channel: console, message: m }\n  - id: c\n    needs: [zz]\n    run: [z]\n",
        );
        assert!(rb.is_none());
        assert_eq!(d.len(), 3, "{d:#?}");
        assert_eq!((d[0].line, d[0].column), (3, 5));
    }

    /// Valid-looking YAML shapes built from the words the loaders know, so that the
    /// generated documents reach deep into validation instead of failing at parse time.
    fn yaml_value() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("id".to_string()),
            Just("run".to_string()),
            Just("needs".to_string()),
            Just("steps".to_string()),
            Just("when".to_string()),
            Just("version".to_string()),
            Just("components".to_string()),
            Just("gates".to_string()),
            Just("notify".to_string()),
            Just("depends_on".to_string()),
            Just("{{ params.x }}".to_string()),
            Just("1".to_string()),
            Just("7d".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            "[a-z_]{1,8}",
        ];
        let leaf = word.prop_map(|w| format!("\"{}\"", w.replace('"', "")));
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("id"),
                            Just("run"),
                            Just("needs"),
                            Just("steps"),
                            Just("when"),
                            Just("version"),
                            Just("components"),
                            Just("gates"),
                            Just("notify"),
                            Just("staging"),
                            Just("coverage"),
                            Just("params"),
                            Just("confirm"),
                            Just("freeze"),
                            Just("vars"),
                            Just("if"),
                            Just("git_revert"),
                            Just("timeout"),
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|v| format!(
                    "{{{}}}",
                    v.iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The checks and the patterns hints and `release schema` show say the same.
        #[test]
        fn names_and_ids_match_their_patterns(s in "[a-zA-Z0-9_. -]{0,6}") {
            let name = regex::Regex::new(NAME_PATTERN).unwrap();
            let id = regex::Regex::new(ID_PATTERN).unwrap();
            prop_assert_eq!(is_name(&s), name.is_match(&s));
            prop_assert_eq!(is_step_id(&s), id.is_match(&s));
        }

        #[test]
        fn arbitrary_bytes_end_in_a_model_or_diagnostics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = String::from_utf8_lossy(&bytes);
            let file = SourceFile::new(Path::new("x.yaml"), &text);
            let (cfg, d) = check_config_source(&file);
            prop_assert!(cfg.is_some() || !d.is_empty());
            let (rb, d) = check_runbook_source(&file, Some(&config()));
            prop_assert!(rb.is_some() != d.iter().any(Diagnostic::is_error));
        }

        #[test]
        fn arbitrary_documents_end_in_a_model_or_diagnostics(doc in yaml_value()) {
            let file = SourceFile::new(Path::new("x.yaml"), &doc);
            let (cfg, d) = check_config_source(&file);
            prop_assert!(cfg.is_some() || !d.is_empty());
            let (rb, d) = check_runbook_source(&file, Some(&config()));
            prop_assert!(rb.is_some() != d.iter().any(Diagnostic::is_error));
            for diagnostic in &d {
                prop_assert!(!diagnostic.message.is_empty());
            }
        }

        #[test]
        fn mutated_default_runbook_never_panics(cut in 0usize..2000, insert in "[ -~\n]{0,12}") {
            let mut text = ROLLBACK.to_string();
            let at = cut.min(text.len());
            let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text.insert_str(at, &insert);
            let (rb, d) = runbook(&text);
            prop_assert!(rb.is_some() != d.iter().any(Diagnostic::is_error));
        }
    }
}
