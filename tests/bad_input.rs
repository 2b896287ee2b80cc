//! Bad input (SPEC §9): a corpus of broken `release.yaml` files and runbooks, each checked
//! through `release runbook validate`. Every case must exit 2 and name the file, line and
//! column of the problem, say what is wrong and, where a valid name is close, suggest it.
//! Each transcript is snapshotted so that a reviewer sees exactly what a user would.
//!
//! Runbook cases replace `runbooks/production/rollback.yaml` in a project made by
//! `release init`. Config cases replace `release.yaml` with a small file and every runbook
//! with one that reads nothing from the config, so that each transcript shows only the
//! problem under test.
//!

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::harness::{Run, TestEnv};

const RUNBOOK: &str = "runbooks/production/rollback.yaml";
const CONFIG: &str = "release.yaml";

/// A runbook that uses no channel, stage, component or template variable.
const NOOP_RUNBOOK: &str = "steps:\n  - id: noop\n    run: [\"true\"]\n";

/// How long a refusal of a hostile file may take, process start included (the parser's
/// own work is budgeted far below this).
const FAST: Duration = Duration::from_secs(2);

/// A project from `release init` with `file` replaced by `content`. When `file` is
/// `release.yaml`, the runbooks are replaced by [`NOOP_RUNBOOK`].
fn project_with(file: &str, content: &[u8]) -> TestEnv {
    let env = TestEnv::initialized();
    if file == CONFIG {
        for stage in ["development", "staging", "production"] {
            for kind in ["rollback", "promote"] {
                env.write(&format!("runbooks/{stage}/{kind}.yaml"), NOOP_RUNBOOK);
            }
        }
    }
    std::fs::write(env.join(file), content).expect("write the bad file");
    env
}

fn validate(env: &TestEnv) -> Run {
    env.release(&["runbook", "validate"])
}

/// Exit 2, the error count of the summary line, and each expected fragment on stderr.
#[track_caller]
fn assert_refused(run: &Run, errors: usize, expected: &[&str]) {
    run.assert_code(2);
    let summary = format!(
        "\n{errors} {} in ",
        if errors == 1 { "error" } else { "errors" }
    );
    run.assert_stderr_contains(&summary);
    for fragment in expected {
        run.assert_stderr_contains(fragment);
    }
}

/// One case: `content` (without its first newline, so that cases can start their raw
/// string on a line of their own) is written to `file`. `at` is `LINE:COLUMN: message`,
/// checked as `file:LINE:COLUMN: message`; `expected` are further fragments (hints).
#[track_caller]
fn check(name: &str, file: &str, content: &str, errors: usize, at: &str, expected: &[&str]) {
    let content = content.strip_prefix('\n').unwrap_or(content);
    let env = project_with(file, content.as_bytes());
    let run = validate(&env);
    let at = format!("{file}:{at}");
    let mut all = vec![at.as_str()];
    all.extend_from_slice(expected);
    assert_refused(&run, errors, &all);
    insta::assert_snapshot!(name, run.transcript());
}

/// Each case becomes a test named after it, whose snapshot has the same name.
macro_rules! cases {
    ($(
        $(#[$meta:meta])*
        $name:ident: $file:expr, $errors:expr, $content:expr,
            at $at:expr $(, $expected:expr)*;
    )+) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            check(stringify!($name), $file, $content, $errors, $at, &[$($expected),*]);
        }
    )+};
}

// ---------------------------------------------------------------------------------------
// YAML syntax

cases! {
    yaml_unclosed_bracket: RUNBOOK, 1, r"
name: broken
steps:
  - id: a
    run: [echo, hi
",
        at "4:10: invalid YAML: unclosed bracket '['",
        "help: the `[` opened at line 4, column 10 is never closed: add `]`";

    // The parser notices on the next line; the hint names where the bracket opened.
    yaml_unclosed_bracket_before_more_lines: CONFIG, 1, r"
version: 1
stages: [development, staging
components:
  web: {}
",
        at "3:11: invalid YAML: ",
        "help: the `[` opened at line 2, column 9 is never closed: add `]`";

    yaml_unclosed_brace: CONFIG, 1, r"
version: 1
repository: { remote: origin, branch: main
components:
  web: {}
",
        at "3:11: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'",
        "help: the `{` opened at line 2, column 13 is never closed: add `}`";

    yaml_bad_indentation: RUNBOOK, 1, r"
name: broken
steps:
  - id: a
    run: [echo]
   needs: []
",
        at "5:4: invalid YAML: while parsing a block collection, did not find expected '-' indicator";

    yaml_tab_indentation: RUNBOOK, 1, "name: broken\nsteps:\n\t- id: a\n\t  run: [echo]\n",
        at "3:1: invalid YAML: tabs disallowed",
        "help: YAML indentation must use spaces, not tabs";

    yaml_duplicate_key_in_a_step: RUNBOOK, 1, r#"
steps:
  - id: a
    run: ["true"]
    id: b
"#,
        at "4:5: duplicate key `id`",
        "help: `id` is already set at line 2";

    yaml_duplicate_top_level_key: CONFIG, 1, r"
version: 1
stages: [development, staging, production]
version: 1
",
        at "3:1: duplicate key `version`",
        "help: `version` is already set at line 1";

    yaml_runbook_is_a_list: RUNBOOK, 1, r#"
- id: a
  run: ["true"]
"#,
        at "1:1: a runbook must be a mapping with `steps:`";

    yaml_empty_release_yaml: CONFIG, 1, "",
        at "1:1: release.yaml must be a mapping",
        "help: start from `release init`";
}

// ---------------------------------------------------------------------------------------
// Runbooks: top level, steps, graph

cases! {
    runbook_unknown_top_level_key: RUNBOOK, 2, r#"
name: x
step:
  - id: a
    run: ["true"]
"#,
        at "2:1: unknown key `step` in the runbook",
        "help: did you mean `steps`?",
        "runbooks/production/rollback.yaml:1:1: the runbook has no `steps`";

    runbook_empty_steps: RUNBOOK, 1, r"
name: x
steps: []
",
        at "2:8: `steps` is empty",
        "help: add at least one step";

    runbook_steps_not_a_list: RUNBOOK, 1, r#"
name: x
steps:
  revert:
    run: ["true"]
"#,
        at "3:3: `steps` must be a list of steps",
        "help: write each step as `- id: …`";

    step_not_a_mapping: RUNBOOK, 1, r#"
steps:
  - revert
  - id: b
    run: ["true"]
"#,
        at "2:5: step 1 must be a mapping";

    step_unknown_key: RUNBOOK, 1, r#"
steps:
  - id: a
    nedds: [b]
    run: ["true"]
  - id: b
    run: ["true"]
"#,
        at "3:5: step `a`: unknown key `nedds`",
        "help: did you mean `needs`?";

    step_misspelt_action: RUNBOOK, 1, r#"
params:
  commit: { required: true }
steps:
  - id: revert
    git_revrt: { commits: "{{ params.commit }}" }
"#,
        at "5:5: step `revert`: unknown key `git_revrt`",
        "help: did you mean `git_revert`?";

    step_without_action: RUNBOOK, 1, r"
steps:
  - id: a
    name: nothing to do
",
        at "2:9: step `a` has no action",
        "help: add exactly one of: run, notify, git_revert, migration_rollback, cache_clear, verify, health_check, incident_issue";

    step_with_two_actions: RUNBOOK, 1, r#"
steps:
  - id: a
    run: ["true"]
    notify: { channel: slack, message: hi }
"#,
        at "2:9: step `a` has 2 actions (run, notify)",
        "help: a step has exactly one action";

    step_duplicate_ids: RUNBOOK, 1, r#"
steps:
  - id: a
    run: ["true"]
  - id: a
    run: ["false"]
"#,
        at "4:9: duplicate step id `a`",
        "help: first used at line 2";

    step_invalid_id: RUNBOOK, 1, r#"
steps:
  - id: Revert_All
    run: ["true"]
"#,
        at "2:9: invalid step id `Revert_All`",
        "^[a-z0-9][a-z0-9_-]*$";

    step_missing_id: RUNBOOK, 1, r#"
steps:
  - name: revert
    run: ["true"]
"#,
        at "2:5: step 1: missing required key `id`",
        "help: add `id:` here";

    step_needs_unknown_step: RUNBOOK, 1, r#"
steps:
  - id: revert
    run: ["true"]
  - id: verify
    needs: [revrt]
    run: ["true"]
"#,
        at "5:13: step `verify` needs unknown step `revrt`",
        "help: did you mean `revert`?";

    step_needs_itself: RUNBOOK, 1, r#"
steps:
  - id: a
    needs: [a]
    run: ["true"]
"#,
        at "3:13: step `a` needs itself",
        "help: remove it from `needs`";

    step_needs_not_a_list: RUNBOOK, 1, r#"
steps:
  - id: revert
    run: ["true"]
  - id: b
    needs: revert
    run: ["true"]
"#,
        at "5:12: step `b`: `needs`: expected a list, found a string";

    steps_in_a_cycle: RUNBOOK, 1, r#"
steps:
  - id: first
    needs: [third]
    run: ["true"]
  - id: second
    needs: [first]
    run: ["true"]
  - id: third
    needs: [second]
    run: ["true"]
"#,
        at "3:12: steps wait for each other in a cycle: first -> second -> third -> first",
        "help: each step here waits for the one before it";

    step_unknown_when: RUNBOOK, 1, r#"
steps:
  - id: a
    when: allways
    run: ["true"]
"#,
        at "3:11: step `a`: `when`: unknown value `allways`",
        "help: did you mean `always`? (valid: `success`, `failure`, `always`)";

    step_when_of_the_wrong_type: RUNBOOK, 1, r#"
steps:
  - id: a
    when: [always]
    run: ["true"]
"#,
        at "3:11: step `a`: `when`: expected one of `success`, `failure`, `always`, found a list";

    step_timeout_without_unit: RUNBOOK, 1, r#"
steps:
  - id: a
    timeout: 30
    run: ["true"]
"#,
        at "3:14: step `a`: `timeout`: `30` has no unit: write e.g. `30s`, `30m` or `30d`";

    step_timeout_unknown_unit: RUNBOOK, 1, r#"
steps:
  - id: a
    timeout: 7days
    run: ["true"]
"#,
        at "3:14: step `a`: `timeout`: unknown unit `days` in `7days`",
        "units: ms, s, m, h, d, w";

    step_timeout_zero: RUNBOOK, 1, r#"
steps:
  - id: a
    timeout: 0s
    run: ["true"]
"#,
        at "3:14: step `a`: a timeout of 0 always expires";

    step_retry_zero_attempts: RUNBOOK, 1, r#"
steps:
  - id: a
    retry: { attempts: 0 }
    run: ["true"]
"#,
        at "3:24: step `a`: `attempts: 0` never runs the step",
        "help: attempts counts the first run too: write at least 1";

    step_retry_backoff_below_one: RUNBOOK, 1, r#"
steps:
  - id: a
    retry: { attempts: 3, backoff: 0.5 }
    run: ["true"]
"#,
        at "3:36: step `a`: `backoff: 0.5` would shrink the delay";
}

// ---------------------------------------------------------------------------------------
// Runbooks: parameters, templates, `if`

cases! {
    param_required_with_default: RUNBOOK, 1, r#"
params:
  commit: { required: true, default: HEAD }
steps:
  - id: a
    run: [echo, "{{ params.commit }}"]
"#,
        at "2:38: parameter `commit` is required and has a default",
        "help: a default makes it optional";

    param_invalid_name: RUNBOOK, 1, r#"
params:
  commit-sha: { required: true }
steps:
  - id: a
    run: ["true"]
"#,
        at "2:3: invalid parameter name `commit-sha`",
        "help: parameter names are identifiers";

    // The parameter is still declared: its use is not reported as undeclared.
    param_unknown_key: RUNBOOK, 1, r#"
params:
  commit: { requird: true }
steps:
  - id: a
    run: [echo, "{{ params.commit }}"]
"#,
        at "2:13: parameter `commit`: unknown key `requird`",
        "help: did you mean `required`?";

    template_unknown_param: RUNBOOK, 1, r#"
params:
  commit: { required: true }
steps:
  - id: revert
    git_revert: { commits: "{{ params.comit }}" }
"#,
        at "5:28: unknown parameter `params.comit`",
        "help: did you mean `commit`? (declared parameters: `commit`)";

    template_unknown_component_var: RUNBOOK, 1, r#"
steps:
  - id: health
    health_check: { url: "{{ vars.health_ur }}", expect_status: 200, attempts: 3, interval: 1s, timeout: 1s }
"#,
        at "3:26: `vars.health_ur` is not defined for components `player_experience`, `orchestration`",
        "help: did you mean `vars.health_url`?";

    template_unknown_variable: RUNBOOK, 1, r#"
steps:
  - id: hi
    notify: { channel: slack, message: "rolling back {{ compnent }}" }
"#,
        at "3:40: unknown template variable `compnent`",
        "help: did you mean `component`?";

    template_unknown_run_field: RUNBOOK, 1, r#"
steps:
  - id: hi
    notify: { channel: slack, message: "why: {{ run.reasn }}" }
"#,
        at "3:40: unknown template variable `run.reasn`",
        "help: did you mean `reason`?";

    template_unknown_repository_field: RUNBOOK, 1, r#"
steps:
  - id: push
    confirm: "Push to {{ repository.remot }}?"
    run: ["true"]
"#,
        at "3:14: unknown template variable `repository.remot`",
        "help: did you mean `remote`?";

    template_step_output_read_too_early: RUNBOOK, 1, r#"
steps:
  - id: report
    run: [echo, "{{ steps.lookup.stdout }}"]
  - id: lookup
    run: [date]
"#,
        at "3:17: `steps.lookup` is read before step `lookup` is sure to have finished",
        "help: add `lookup` to this step's `needs`";

    template_step_output_of_a_parallel_step: RUNBOOK, 1, r#"
steps:
  - id: lookup
    needs: []
    run: [date]
  - id: report
    needs: []
    run: [echo, "{{ steps.lookup.stdout }}"]
"#,
        at "7:17: `steps.lookup` is read before step `lookup` is sure to have finished",
        "help: add `lookup` to this step's `needs`";

    template_step_reads_its_own_output: RUNBOOK, 1, r#"
steps:
  - id: lookup
    run: [echo, "{{ steps.lookup.stdout }}"]
"#,
        at "3:17: step `lookup` reads its own output",
        "help: a step's outcome and output exist only after it finished: read them in a later step";

    template_unknown_step: RUNBOOK, 1, r#"
steps:
  - id: lookup
    run: [date]
  - id: report
    run: [echo, "{{ steps.lokup.stdout }}"]
"#,
        at "5:17: `steps.lokup` names no step of this runbook",
        "help: did you mean `lookup`?";

    template_unknown_step_field: RUNBOOK, 1, r#"
steps:
  - id: lookup
    run: [date]
  - id: report
    run: [echo, "{{ steps.lookup.exit_code }}"]
"#,
        at "5:17: steps have no field `exit_code`",
        "help: a step's fields are `outcome`, `stdout`";

    // Filters are looked up when a template renders: validate must find a typo first.
    template_unknown_filter: RUNBOOK, 1, r#"
steps:
  - id: shout
    run: [echo, "{{ component | uper }}"]
"#,
        at "3:17: template calls unknown filter",
        "uper",
        "`upper`";

    template_syntax_error: RUNBOOK, 1, r#"
steps:
  - id: hi
    notify: { channel: slack, message: "rolling back {{ component }" }
"#,
        at "3:40: template syntax error: unexpected `}`",
        "help: templates use minijinja (Jinja2) syntax";

    if_invalid_expression: RUNBOOK, 1, r#"
params:
  migration: { default: "" }
steps:
  - id: migrate
    if: "params.migration =="
    run: [echo, migrate]
"#,
        at "5:9: `if` is not a valid expression: unexpected end of input",
        "help: write an expression such as `params.migration`";

    if_unknown_variable: RUNBOOK, 1, r#"
params:
  migration: { default: "" }
steps:
  - id: migrate
    if: params.migraton
    run: [echo, migrate]
"#,
        at "5:9: unknown parameter `params.migraton`",
        "help: did you mean `migration`?";
}

// ---------------------------------------------------------------------------------------
// Runbooks: actions and their references to release.yaml

cases! {
    notify_unknown_channel: RUNBOOK, 1, r"
steps:
  - id: hi
    notify: { channel: slak, message: hello }
",
        at "3:24: unknown notify channel `slak`",
        "help: did you mean `slack`? (valid: `slack`, `ops`, `console`)";

    // Columns count characters, in the heading and in the snippet alike.
    notify_unknown_channel_after_non_ascii_text: RUNBOOK, 1, r#"
steps:
  - id: hi
    notify: { message: "é", channel: slak }
"#,
        at "3:38: unknown notify channel `slak`",
        "[runbooks/production/rollback.yaml:3:38]";

    verify_not_a_mapping: RUNBOOK, 1, r"
steps:
  - id: check
    verify: production
",
        at "3:13: step `check`: `verify`: expected a mapping of keys, found a string";

    verify_unknown_stage: RUNBOOK, 1, r"
steps:
  - id: check
    verify: { stage: prod }
",
        at "3:22: unknown stage `prod` in `verify`",
        "help: did you mean `production`?";

    git_revert_unknown_key: RUNBOOK, 1, r"
steps:
  - id: revert
    git_revert: { comits: abc123 }
",
        at "3:19: step `revert`: `git_revert`: unknown key `comits`",
        "help: did you mean `commits`?";

    run_script_without_shell: RUNBOOK, 1, r#"
steps:
  - id: purge
    run: { script: "rm -rf /tmp/cache/*" }
"#,
        at "3:10: step `purge`: `script` runs through a shell only when `shell: true` is written",
        "help: add `shell: true`, or write the command as `argv: [...]`";

    run_empty_command: RUNBOOK, 1, r"
steps:
  - id: nothing
    run: []
",
        at "3:10: step `nothing`: `run` is an empty command";

    cache_clear_two_backends: RUNBOOK, 1, r#"
steps:
  - id: caches
    cache_clear:
      redis: { url_env: REDIS_URL, pattern: "px:*" }
      http: { method: PURGE, url: "http://cdn.example/all" }
"#,
        at "4:7: step `caches`: `cache_clear` needs exactly one of `redis`, `http`, `run` (2 given)";

    health_check_bad_status: RUNBOOK, 1, r#"
steps:
  - id: health
    health_check: { url: "http://x/health", expect_status: 2000, attempts: 3, interval: 1s, timeout: 1s }
"#,
        at "3:60: step `health`: 2000 is not an HTTP status",
        "help: write a status between 100 and 599";

    health_check_bad_regex: RUNBOOK, 1, r#"
steps:
  - id: health
    health_check: { url: "http://x/health", expect_status: 200, expect_body_regex: "status\": (ok", attempts: 3, interval: 1s, timeout: 1s }
"#,
        at "3:84: step `health`: invalid `expect_body_regex`",
        "unclosed group";
}

// ---------------------------------------------------------------------------------------
// release.yaml: top level, components

cases! {
    config_unknown_top_level_key: CONFIG, 1, r"
version: 1
component:
  web: {}
",
        at "2:1: unknown key `component` in release.yaml",
        "help: did you mean `components`?";

    config_unsupported_version: CONFIG, 1, r"
version: 2
",
        at "1:10: unsupported version 2",
        "help: this release understands `version: 1`";

    // A bad value is reported once, not also as a missing key.
    config_version_not_a_number: CONFIG, 1, r#"
version: "one"
"#,
        at "1:10: `version`: expected a whole number (0 or more), found a string";

    config_missing_version: CONFIG, 1, r"
components:
  web: {}
",
        at "1:1: missing required key `version`";

    config_unknown_incident_tracker: CONFIG, 1, r"
version: 1
incidents: jira
",
        at "2:12: `incidents`: unknown value `jira`",
        "help: valid: `local`, `github`";

    config_incidents_github_without_section: CONFIG, 1, r"
version: 1
incidents: github
",
        at "2:12: `incidents: github` needs a `github:` section",
        "help: add `github: { repo: owner/name, token_env: GITHUB_TOKEN }`";

    config_github_repo_not_owner_name: CONFIG, 1, r"
version: 1
github: { repo: just-a-name }
",
        at "2:17: `just-a-name` is not a repository name",
        "help: write it as `owner/name`";

    config_stage_listed_twice: CONFIG, 1, r"
version: 1
stages: [development, staging, production, staging]
",
        at "2:44: stage `staging` is listed twice";

    config_invalid_stage_name: CONFIG, 1, r"
version: 1
stages: [dev, Prod]
",
        at "2:15: invalid stage name `Prod`",
        "^[a-z][a-z0-9_-]*$";

    component_unknown_dependency: CONFIG, 1, r"
version: 1
components:
  web: {}
  api:
    depends_on: [webb]
",
        at "5:18: component `api` depends on unknown component `webb`",
        "help: did you mean `web`?";

    component_depends_on_itself: CONFIG, 1, r"
version: 1
components:
  api:
    depends_on: [api]
",
        at "4:18: component `api` depends on itself";

    component_dependency_cycle: CONFIG, 1, r"
version: 1
components:
  web:
    depends_on: [api]
  api:
    depends_on: [db]
  db:
    depends_on: [web]
",
        at "3:3: components depend on each other in a cycle: web -> api -> db -> web (`a -> b`: a depends on b)";

    // Every cycle, not only the first; a component caught in a knot off the shortest
    // loop is named too.
    component_dependency_cycles_each_reported: CONFIG, 2, r"
version: 1
components:
  web:
    depends_on: [api]
  api:
    depends_on: [web]
  db:
    depends_on: [cache, queue]
  cache:
    depends_on: [db]
  queue:
    depends_on: [search]
  search:
    depends_on: [db]
",
        at "3:3: components depend on each other in a cycle: web -> api -> web",
        "release.yaml:7:3: components depend on each other in a cycle: db -> cache -> db (`a -> b`: a depends on b) (also caught in it: `queue`, `search`)";

    component_invalid_name: CONFIG, 1, r"
version: 1
components:
  Player: {}
",
        at "3:3: invalid component name `Player`",
        "^[a-z][a-z0-9_-]*$";

    component_unknown_key: CONFIG, 1, r"
version: 1
components:
  web:
    depend_on: [api]
  api: {}
",
        at "4:5: component `web`: unknown key `depend_on`",
        "help: did you mean `depends_on`?";
}

// ---------------------------------------------------------------------------------------
// release.yaml: notification channels

cases! {
    channel_without_url_env: CONFIG, 1, r"
version: 1
notify:
  slack: { kind: slack }
",
        at "3:3: channel `slack` has no `url_env`",
        "help: add `url_env: VARIABLE`";

    channel_url_env_not_a_variable_name: CONFIG, 1, r#"
version: 1
notify:
  ops: { kind: webhook, url_env: "https://hooks.example.com/T000/B000" }
"#,
        at "3:34: `https://hooks.example.com/T000/B000` is not an environment variable name",
        "never the secret itself";

    channel_unknown_kind: CONFIG, 1, r"
version: 1
notify:
  teams: { kind: teams, url_env: TEAMS_URL }
",
        at "3:18: channel `teams`: `kind`: unknown value `teams`",
        "help: valid: `slack`, `webhook`, `log`";

    channel_log_with_url_env: CONFIG, 1, r"
version: 1
notify:
  console: { kind: log, url_env: CONSOLE_URL }
",
        at "3:34: channel `console` is `kind: log`: it takes no `url_env`";
}

// ---------------------------------------------------------------------------------------
// release.yaml: gates

cases! {
    gates_for_unknown_stage: CONFIG, 1, r"
version: 1
gates:
  prodution:
    - { id: tests, run: [make, test] }
",
        at "3:3: gates for unknown stage `prodution`",
        "help: did you mean `production`?";

    gate_without_id: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { run: [make, test] }
",
        at "4:7: gate 1 of stage `staging`: missing required key `id`",
        "help: add `id:` here";

    gate_without_kind: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: tests }
",
        at "4:13: gate `tests` has no kind",
        "help: add exactly one of: run, coverage, stable_for";

    gate_with_two_kinds: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: both, run: [make, test], stable_for: 1d }
",
        at "4:13: gate `both` has 2 kinds (run, stable_for)",
        "help: a gate has exactly one kind";

    gate_unknown_kind: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: coverage, coverge: { report: cov.xml, min: 50 } }
",
        at "4:23: gate `coverage` of stage `staging`: unknown key `coverge`",
        "help: did you mean `coverage`?";

    gate_duplicate_id: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: tests, run: [make, test] }
    - { id: tests, run: [make, lint] }
",
        at "5:13: duplicate gate id `tests`",
        "help: first used at line 4";

    gate_coverage_over_100: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: coverage, coverage: { report: cov.xml, min: 150 } }
",
        at "4:57: gate `coverage`: coverage `min: 150` is not a percentage",
        "help: write a percentage between 0 and 100";

    gate_stable_for_without_unit: CONFIG, 1, r"
version: 1
gates:
  production:
    - { id: stable, stable_for: 7 }
",
        at "4:33: gate `stable` of stage `production`: `stable_for`: `7` has no unit";

    gate_template_unknown_variable: CONFIG, 2, r#"
version: 1
gates:
  staging:
    - { id: tests, run: [make, test, "{{ params.commit }}", "{{ componet }}"] }
"#,
        at "4:38: unknown template variable `params`",
        "help: the variables are `component`, `stage`, `spec`, `vars`, `repository`",
        "release.yaml:4:61: unknown template variable `componet`",
        "help: did you mean `component`?";

    freeze_bad_rfc3339: CONFIG, 1, r#"
version: 1
gates:
  production:
    - id: holidays
      freeze:
        - { from: "2026-12-24 18:00", to: "2026-12-27T00:00:00Z", reason: holidays }
"#,
        at "6:19: gate `holidays` of stage `production`: `from`: `2026-12-24 18:00` is not an RFC 3339 time",
        "write e.g. `2026-12-24T18:00:00+01:00`";

    freeze_bad_weekly_time: CONFIG, 1, r#"
version: 1
gates:
  production:
    - id: weekend
      freeze:
        - { weekly: { from: "fri 4pm", to: "mon 08:00" } }
"#,
        at "6:29: gate `weekend` of stage `production`: `from`: `4pm` is not a time of day (HH:MM)",
        "e.g. `fri 16:00`";

    freeze_bad_weekday: CONFIG, 1, r#"
version: 1
gates:
  production:
    - id: weekend
      freeze:
        - { weekly: { from: "fryday 16:00", to: "mon 08:00" } }
"#,
        at "6:29: gate `weekend` of stage `production`: `from`: `fryday` is not a day of the week";

    freeze_unknown_time_zone: CONFIG, 1, r#"
version: 1
gates:
  production:
    - id: weekend
      freeze:
        - { weekly: { from: "fri 16:00", to: "mon 08:00" }, tz: Europe/Pariss }
"#,
        at "6:65: gate `weekend` of stage `production`: `tz`: unknown time zone `Europe/Pariss`",
        "did you mean `Europe/Paris`?";

    // Located at the window that is wrong, not at the gate.
    freeze_window_ends_before_it_starts: CONFIG, 1, r#"
version: 1
gates:
  production:
    - id: holidays
      freeze:
        - { from: "2026-01-02T00:00:00Z", to: "2026-01-03T00:00:00Z" }
        - { from: "2026-12-27T00:00:00Z", to: "2026-12-24T00:00:00Z", reason: holidays }
"#,
        at "7:11: gate `holidays`: freeze window ends (2026-12-24T00:00:00+00:00) before it starts (2026-12-27T00:00:00+00:00)",
        "help: swap `from` and `to`";
}

// ---------------------------------------------------------------------------------------
// Review findings: validation that must not miss, mislead or blow up

cases! {
    // The scanner gives up on the line above the tab; the tab itself is pointed at.
    yaml_tab_on_the_line_below_the_report: RUNBOOK, 1, "name: t\nsteps:\n  - id: a\n\trun: [echo]\n",
        at "4:1: invalid YAML: ",
        "help: YAML indentation must use spaces, not tabs";

    yaml_unclosed_quote: RUNBOOK, 1, r#"
name: t
steps:
  - id: a
    run: [echo, "unterminated]
  - id: b
"#,
        at "4:17: invalid YAML: unclosed quote",
        "help: the `\"` opened at line 4, column 17 is never closed: add the closing `\"`";

    yaml_two_documents: RUNBOOK, 1, "---\nname: t\nsteps:\n  - id: a\n    run: [echo]\n---\nname: u\n",
        at "6:1: a runbook is one YAML document; a second one starts at line 6: remove the `---`";

    if_unknown_filter: RUNBOOK, 1, r#"
params:
  migration: { default: "" }
steps:
  - id: migrate
    if: "params.migration | lenght > 0"
    run: [echo, "{{ params.migration }}"]
"#,
        at "5:9: `if` calls unknown filter `lenght` (did you mean `length`?)";

    if_unknown_test: RUNBOOK, 1, r#"
params:
  migration: { default: "" }
steps:
  - id: migrate
    if: "params.migration is definedd"
    run: [echo, "{{ params.migration }}"]
"#,
        at "5:9: `if` calls unknown test `definedd` (did you mean `defined`?)";

    // Both problems of one variable: read too early, and a field steps do not have.
    template_step_read_early_with_a_bad_field: RUNBOOK, 2, r#"
steps:
  - { id: a, run: ["true"] }
  - { id: b, needs: [], run: [echo, "{{ steps.a.output }}"] }
"#,
        at "3:37: `steps.a` is read before step `a` is sure to have finished",
        "runbooks/production/rollback.yaml:3:37: steps have no field `output`";

    // The whole path is checked, not only `vars.health_url`.
    template_nested_var_missing: RUNBOOK, 1, r#"
steps:
  - id: a
    run: [echo, "{{ vars.health_url.port }}"]
"#,
        at "3:17: `vars.health_url.port` is not defined for components `player_experience`, `orchestration`";

    template_nested_var_and_spec_missing_for_some_components: CONFIG, 2, r#"
version: 1
components:
  api: { spec: api.md, vars: { db: { host: h, port: 5432 } } }
  web: { vars: { db: { host: h2 } } }
gates:
  staging:
    - { id: docs, file_exists: ["{{ spec }}", "db-{{ vars.db.port }}.md"] }
"#,
        at "7:33: `spec` is not defined for component `web`",
        "help: add `spec: path/to/spec.md` to them in release.yaml (gates are evaluated for every component)",
        "release.yaml:7:47: `vars.db.port` is not defined for component `web`",
        "help: add `port` to their `vars.db` in release.yaml (gates are evaluated for every component)";

    // A component with a mistake keeps its name and what is sound: no follow-on errors.
    component_typo_keeps_its_name: CONFIG, 1, r#"
version: 1
components:
  api: { spek: api.md, vars: { port: 1 } }
gates:
  staging:
    - { id: up, run: [check, "{{ component }}:{{ vars.port }}"] }
"#,
        at "3:10: component `api`: unknown key `spek`",
        "help: did you mean `spec`?";

    config_empty_paths: CONFIG, 5, r#"
version: 1
audit: { path: "" }
runbooks: ""
repository: { remote: "", branch: "" }
components:
  api: { path: "" }
"#,
        at "2:16: `audit.path` is empty",
        "release.yaml:3:11: `runbooks` is empty",
        "release.yaml:4:23: `repository.remote` is empty",
        "release.yaml:4:35: `repository.branch` is empty",
        "release.yaml:6:16: component `api`: `path` is empty";

    steps_in_two_cycles: RUNBOOK, 2, r#"
steps:
  - { id: a, needs: [b], run: ["true"] }
  - { id: b, needs: [a], run: ["true"] }
  - { id: e, needs: [f], run: ["true"] }
  - { id: f, needs: [e], run: ["true"] }
"#,
        at "2:21: steps wait for each other in a cycle: a -> b -> a",
        "runbooks/production/rollback.yaml:4:21: steps wait for each other in a cycle: e -> f -> e";

    // `b` and `c` wait for the step above them because they have no `needs`.
    steps_in_a_cycle_through_implicit_needs: RUNBOOK, 1, r#"
steps:
  - id: a
    needs: [c]
    run: ["true"]
  - id: b
    run: ["true"]
  - id: c
    run: ["true"]
"#,
        at "3:12: steps wait for each other in a cycle: a -> b -> c -> a",
        "`b` waits for `a` and `c` waits for `b` only because they have no `needs`",
        "or move `a` below `c`";

    every_bad_field_of_a_gate_is_reported: CONFIG, 4, r#"
version: 1
gates:
  staging:
    - { id: tz, freeze: [ { weekly: { from: "fri 16:00", to: "mon 25:00" }, tz: Europe/Pariss, reason: x } ] }
    - { id: ap, approvals: { min: -1, within: 3q } }
"#,
        at "4:62: gate `tz` of stage `staging`: `to`: `25:00` is not a time of day",
        "release.yaml:4:81: gate `tz` of stage `staging`: `tz`: unknown time zone `Europe/Pariss`",
        "release.yaml:5:35: gate `ap` of stage `staging`: `min`: -1 is out of range",
        "release.yaml:5:47: gate `ap` of stage `staging`: `within`: unknown unit `q` in `3q`";

    health_check_url_not_a_url: RUNBOOK, 1, r#"
steps:
  - { id: e, health_check: { url: "not a url" } }
"#,
        at "2:35: step `e`: `not a url` is not an http(s) URL",
        "help: write a full URL";

    cache_clear_url_not_http: RUNBOOK, 1, r#"
steps:
  - { id: f, cache_clear: { http: { method: PURGE, url: "ftp://cdn.example.com/x" } } }
"#,
        at "2:57: step `f`: `ftp://cdn.example.com/x` is not an http(s) URL: `ftp:` is not http or https";

    cache_clear_header_names_that_cannot_be_sent: RUNBOOK, 2, r#"
steps:
  - { id: f, cache_clear: { http: { url: "https://cdn.example.com/x", headers: { "Bad Header": x }, headers_env: { "Other:Bad": PURGE_TOKEN } } } }
"#,
        at "2:80: step `f`: `Bad Header` is not a valid header name",
        "help: header names are letters, digits and `-` (no spaces or colons), e.g. `X-Purge-Token`",
        "2:114: step `f`: `Other:Bad` is not a valid header name";

    cache_clear_redis_without_pattern_is_one_error: RUNBOOK, 1, r"
steps:
  - { id: r, cache_clear: { redis: { url_env: REDIS_URL } } }
",
        at "2:36: step `r`: `redis`: missing required key `pattern`";

    gate_uptime_prometheus_not_a_url: CONFIG, 1, r#"
version: 1
gates:
  staging:
    - { id: up, uptime: { prometheus: "not a url", query: up, min: 0.9 } }
"#,
        at "4:39: gate `up`: `not a url` is not an http(s) URL";

    gates_that_can_never_mean_anything: CONFIG, 3, r#"
version: 1
gates:
  staging:
    - { id: f, file_exists: [""] }
    - { id: u, uptime: { prometheus: "http://127.0.0.1:9090", query: "", min: 0.9 } }
    - { id: r, rollback_tested: { within: 0s } }
"#,
        at "4:13: gate `f`: `file_exists` lists an empty path",
        "5:13: gate `u`: `uptime` has an empty `query`",
        "6:13: gate `r`: `rollback_tested` within 0s can never pass";

    gate_freeze_without_windows: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: fr, freeze: [] }
",
        at "4:13: gate `fr`: `freeze` lists no window, so it always passes";

    gate_attested_empty_check: CONFIG, 1, r#"
version: 1
gates:
  staging:
    - { id: at, attested: { check: "" } }
"#,
        at "4:13: gate `at`: `attested` has an empty `check`";

    gate_no_open_issues_without_labels: CONFIG, 1, r"
version: 1
gates:
  staging:
    - { id: no, no_open_issues: { labels: [] } }
",
        at "4:13: gate `no`: `no_open_issues` lists no label, so any open issue blocks";

    // Each name once, and only valid ones.
    suggestions_without_duplicates_or_invalid_names: RUNBOOK, 3, r#"
steps:
  - { id: a, run: ["true"] }
  - { id: a, run: ["true"] }
  - { id: B, needs: [zz], run: ["true"] }
"#,
        at "3:11: duplicate step id `a`",
        "help: valid: `a`\n";
}

/// A runbook that never ends (a device, a pipe) is refused without being read.
#[test]
fn runbook_that_is_not_a_file_is_refused_fast() {
    let env = TestEnv::initialized();
    std::fs::remove_file(env.join(RUNBOOK)).expect("remove");
    std::os::unix::fs::symlink("/dev/zero", env.join(RUNBOOK)).expect("symlink");
    let fifo = env.join("runbooks/staging/rollback.yaml");
    std::fs::remove_file(&fifo).expect("remove");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let run = validate_timed(&env);
    assert_refused(
        &run,
        2,
        &[
            "error: runbooks/production/rollback.yaml: cannot read: this is a character device, not a file",
            "error: runbooks/staging/rollback.yaml: cannot read: this is a named pipe (FIFO), not a file",
            "help: release.yaml and runbooks must be regular files",
        ],
    );
    insta::assert_snapshot!(
        "runbook_that_is_not_a_file_is_refused_fast",
        run.transcript()
    );
}

/// The same mistake pasted in thousands of steps: fast, and a short report.
#[test]
fn thousands_of_the_same_mistake_give_a_short_report() {
    let mut content = String::from("name: t\nsteps:\n");
    for i in 0..4000 {
        let _ = writeln!(content, "  - id: s{i}");
        content.push_str("    run: [echo, \"{{ steps.zz.outcome }}\"]\n");
    }
    let env = project_with(RUNBOOK, content.as_bytes());
    let run = validate_timed(&env);
    assert_refused(
        &run,
        4000,
        &[
            "help: steps: `s0`, `s1`, `s2`, `s3`, `s4` … and 3995 more",
            "  … and 3997 more errors like this in runbooks/production/rollback.yaml: `steps.zz` names no step of this runbook",
        ],
    );
    assert!(run.stderr.len() < 4000, "{} bytes", run.stderr.len());
    insta::assert_snapshot!(
        "thousands_of_the_same_mistake_give_a_short_report",
        run.transcript()
    );
}

/// Many values and no anchor at all: too many values, not an alias bomb.
#[test]
fn many_values_without_anchors_are_not_called_an_alias_bomb() {
    let mut content = String::from("name: t\nsteps:\n");
    for i in 0..18000 {
        let _ = write!(content, "  - id: s{i}\n    run: [echo, \"{i}\"]\n");
    }
    let env = project_with(RUNBOOK, content.as_bytes());
    let run = validate_timed(&env);
    assert_refused(
        &run,
        1,
        &["invalid YAML: refused: too many values (more than 100000)"],
    );
    assert!(!run.stderr.contains("alias"), "{}", run.stderr);
}

/// When release.yaml does not parse, the runbooks are still checked on their own.
#[test]
fn runbooks_are_checked_when_release_yaml_does_not_parse() {
    let env = TestEnv::initialized();
    env.write(CONFIG, "version: 1\ncomponents:\n  a: {path: x\n");
    env.write(
        "runbooks/staging/rollback.yaml",
        "name: t\nsteps:\n  - id: a\n    runn: [echo]\n",
    );
    let run = validate(&env);
    assert_refused(
        &run,
        2,
        &[
            "release.yaml:3:6: invalid YAML: unclosed bracket '{'",
            "runbooks/staging/rollback.yaml:4:5: step `a`: unknown key `runn`",
            "2 errors in 2 files",
        ],
    );
    insta::assert_snapshot!(
        "runbooks_are_checked_when_release_yaml_does_not_parse",
        run.transcript()
    );
}

// ---------------------------------------------------------------------------------------
// Files that are refused before they are read as YAML

#[test]
fn file_over_one_mib_is_refused() {
    let mut content = String::from(NOOP_RUNBOOK);
    content.push_str("# ");
    content.push_str(&"x".repeat(1024 * 1024));
    content.push('\n');
    let env = project_with(RUNBOOK, content.as_bytes());
    let run = validate(&env);
    assert_refused(
        &run,
        1,
        &[
            "error: runbooks/production/rollback.yaml: file is 1048617 bytes, over the limit of 1048576 bytes (1 MiB)",
            "help: configuration and runbooks are meant to be small",
        ],
    );
    insta::assert_snapshot!("file_over_one_mib_is_refused", run.transcript());
}

#[test]
fn non_utf8_file_is_refused() {
    let env = project_with(
        RUNBOOK,
        b"name: caf\xe9 rollback\nsteps:\n  - id: a\n    run: [\"true\"]\n",
    );
    let run = validate(&env);
    assert_refused(
        &run,
        1,
        &[
            "error: runbooks/production/rollback.yaml:1:10: not UTF-8 text: invalid byte 0xe9",
            "help: save the file as UTF-8",
        ],
    );
    insta::assert_snapshot!("non_utf8_file_is_refused", run.transcript());
}

/// Nine anchors of nine aliases each: a billion nodes once expanded.
fn billion_laughs() -> String {
    let lols = ["\"lol\""; 9].join(",");
    let mut lines = vec![format!("a: &a [{lols}]")];
    for (prev, name) in ('a'..='i').zip('b'..='j') {
        let aliases = vec![format!("*{prev}"); 9].join(",");
        lines.push(format!("{name}: &{name} [{aliases}]"));
    }
    lines.join("\n") + "\n"
}

/// Runs `validate`, asserting it finished within [`FAST`] and that the refusal is told in
/// the user's terms, not the parser's.
fn validate_timed(env: &TestEnv) -> Run {
    let start = Instant::now();
    let run = validate(env);
    let elapsed = start.elapsed();
    assert!(
        elapsed < FAST,
        "took {elapsed:?}, expected under {FAST:?}\n{}",
        run.transcript()
    );
    for internal in ["budget", "RecordedAnchorEvents", "Depth {"] {
        assert!(!run.stderr.contains(internal), "{}", run.transcript());
    }
    run
}

#[test]
fn alias_bomb_is_refused_fast() {
    let env = project_with(CONFIG, billion_laughs().as_bytes());
    let run = validate_timed(&env);
    assert_refused(
        &run,
        1,
        &[
            "error: release.yaml:5:20: invalid YAML: refused: this file expands to far more values than a configuration holds",
            "an alias bomb?",
            "help: write the values out, or use fewer anchors and aliases",
        ],
    );
    insta::assert_snapshot!("alias_bomb_is_refused_fast", run.transcript());
}

#[test]
fn deep_flow_nesting_is_refused_fast() {
    let content = format!("steps: {}{}\n", "[".repeat(100), "]".repeat(100));
    let env = project_with(RUNBOOK, content.as_bytes());
    let run = validate_timed(&env);
    assert_refused(
        &run,
        1,
        &[
            "error: runbooks/production/rollback.yaml:1:71: invalid YAML: refused: nesting deeper than 64 levels",
            "help: configuration and runbooks need a few levels",
        ],
    );
    insta::assert_snapshot!("deep_flow_nesting_is_refused_fast", run.transcript());
}

#[test]
fn deep_block_nesting_is_refused_fast() {
    // 70 levels of `kN:` mappings, each indented one step more than the one above.
    let content: String = std::iter::once("version: 1\n".to_owned())
        .chain((0..70).map(|level| format!("{}k{level}:\n", "  ".repeat(level))))
        .collect();
    let env = project_with(CONFIG, content.as_bytes());
    let run = validate_timed(&env);
    assert_refused(
        &run,
        1,
        &[
            "error: release.yaml:66:129: invalid YAML: refused: nesting deeper than 64 levels",
            "help: configuration and runbooks need a few levels",
        ],
    );
    insta::assert_snapshot!("deep_block_nesting_is_refused_fast", run.transcript());
}

// ---------------------------------------------------------------------------------------
// Every problem in one pass

#[test]
fn every_problem_of_a_runbook_is_reported_at_once() {
    // Eleven problems, each in a different place; none hides another.
    let env = project_with(
        RUNBOOK,
        br#"params:
  commit: { required: true, default: HEAD }
steps:
  - id: announce
    notify: { channel: slak, message: "rolling back {{ compnent }}" }
  - id: revert
    nedds: [announce]
    git_revert: { commits: "{{ params.comit }}" }
  - id: check
    needs: [revrt]
    verify: { stage: prod }
  - id: health
    timeout: 30
    health_check: { url: "{{ vars.health_ur }}", expect_status: 200, attempts: 3, interval: 1s, timeout: 1s }
  - id: Incident
    incident_issue: { title: "Rollback of {{ component }}", body: "{{ run.reasn }}", labels: [rollback] }
"#,
    );
    let run = validate(&env);
    let at = |place: &str| format!("runbooks/production/rollback.yaml:{place}");
    assert_refused(
        &run,
        11,
        &[
            &at("2:38: parameter `commit` is required and has a default"),
            &at("5:24: unknown notify channel `slak`"),
            &at("5:39: unknown template variable `compnent`"),
            &at("7:5: step `revert`: unknown key `nedds`"),
            &at("8:28: unknown parameter `params.comit`"),
            &at("10:13: step `check` needs unknown step `revrt`"),
            &at("11:22: unknown stage `prod` in `verify`"),
            &at("13:14: step `health`: `timeout`: `30` has no unit"),
            &at("14:26: `vars.health_ur` is not defined"),
            &at("15:9: invalid step id `Incident`"),
            &at("16:67: unknown template variable `run.reasn`"),
        ],
    );
    insta::assert_snapshot!(
        "every_problem_of_a_runbook_is_reported_at_once",
        run.transcript()
    );
}

#[test]
fn every_problem_of_release_yaml_is_reported_at_once() {
    // Eight problems in channels, components and gates.
    let env = project_with(
        CONFIG,
        br#"version: 1
notify:
  slack: { kind: slack }
  ops: { kind: webhook, url_env: "https://hooks.example.com/T000" }
components:
  Player: {}
  api:
    depends_on: [webb]
gates:
  prodution:
    - { id: tests, run: [make, test] }
  production:
    - { id: coverage, coverage: { report: cov.xml, min: 150 } }
    - { id: coverage, stable_for: 7d }
    - id: weekend
      freeze:
        - { weekly: { from: "fri 16:00", to: "mon 08:00" }, tz: Europe/Pariss }
"#,
    );
    let run = validate(&env);
    let at = |place: &str| format!("release.yaml:{place}");
    assert_refused(
        &run,
        8,
        &[
            &at("3:3: channel `slack` has no `url_env`"),
            &at("4:34: `https://hooks.example.com/T000` is not an environment variable name"),
            &at("6:3: invalid component name `Player`"),
            &at("8:18: component `api` depends on unknown component `webb`"),
            &at("10:3: gates for unknown stage `prodution`"),
            &at("13:57: gate `coverage`: coverage `min: 150` is not a percentage"),
            &at("14:13: duplicate gate id `coverage`"),
            &at(
                "17:65: gate `weekend` of stage `production`: `tz`: unknown time zone `Europe/Pariss`",
            ),
        ],
    );
    insta::assert_snapshot!(
        "every_problem_of_release_yaml_is_reported_at_once",
        run.transcript()
    );
}

#[test]
fn config_and_runbook_problems_are_reported_together() {
    let env = TestEnv::initialized();
    let config = env.read(CONFIG).replace(
        "depends_on: [player_experience]",
        "depends_on: [player_experiense]",
    );
    env.write(CONFIG, &config);
    env.write(
        "runbooks/staging/promote.yaml",
        "steps:\n  - id: announce\n    notify: { channel: consle, message: hi }\n",
    );
    let line = config
        .lines()
        .position(|l| l.contains("player_experiense"))
        .expect("the edited line")
        + 1;
    let run = validate(&env);
    assert_refused(
        &run,
        2,
        &[
            &format!(
                "release.yaml:{line}:18: component `orchestration` depends on unknown component `player_experiense`"
            ),
            "help: did you mean `player_experience`?",
            "runbooks/staging/promote.yaml:3:24: unknown notify channel `consle`",
            "help: did you mean `console`?",
            "2 errors in 2 files",
        ],
    );
    insta::assert_snapshot!(
        "config_and_runbook_problems_are_reported_together",
        run.transcript()
    );
}

#[test]
fn every_problem_of_one_step_is_reported() {
    let env = project_with(
        RUNBOOK,
        b"steps:\n  - id: Check\n    timeout: 30\n    when: allways\n    run: [\"true\"]\n",
    );
    let run = validate(&env);
    let at = |place: &str| format!("runbooks/production/rollback.yaml:{place}");
    assert_refused(
        &run,
        3,
        &[
            &at("2:9: invalid step id `Check`"),
            &at("3:14: step `Check`: `timeout`: `30` has no unit"),
            &at("4:11: step `Check`: `when`: unknown value `allways`"),
        ],
    );
    insta::assert_snapshot!("every_problem_of_one_step_is_reported", run.transcript());
}

#[test]
fn a_header_problem_does_not_hide_runbook_problems() {
    let env = TestEnv::initialized();
    let config = env
        .read(CONFIG)
        .replace("incidents: local", "incidents: jira");
    env.write(CONFIG, &config);
    env.write(
        "runbooks/development/rollback.yaml",
        "steps:\n  - id: a\n    nedds: []\n    run: [\"true\"]\n",
    );
    let run = validate(&env);
    assert_refused(
        &run,
        2,
        &[
            "`incidents`: unknown value `jira`",
            "runbooks/development/rollback.yaml:3:5: step `a`: unknown key `nedds`",
            "2 errors in 2 files",
        ],
    );
    insta::assert_snapshot!(
        "a_header_problem_does_not_hide_runbook_problems",
        run.transcript()
    );
}

#[test]
fn json_lists_every_problem_on_stdout() {
    let env = project_with(
        RUNBOOK,
        br#"steps:
  - id: a
    nedds: []
    run: ["true"]
  - id: b
    notify: { channel: slak, message: hi }
  - id: c
    timeout: 5
    run: ["true"]
"#,
    );
    let run = env.release(&["--json", "runbook", "validate"]);
    run.assert_code(2);
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    let list = value.as_array().expect("a JSON list");
    assert_eq!(list.len(), 3, "{value:#}");
    for item in list {
        for key in ["file", "line", "column", "message", "hint"] {
            assert!(item.get(key).is_some(), "no `{key}` in {item}");
        }
        assert_eq!(item["file"], RUNBOOK);
        assert_eq!(item["severity"], "error");
    }
    let find = |needle: &str| {
        list.iter()
            .find(|d| d["message"].as_str().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("no diagnostic about {needle:?} in {value:#}"))
    };
    let nedds = find("unknown key `nedds`");
    assert_eq!((&nedds["line"], &nedds["column"]), (&3.into(), &5.into()));
    assert_eq!(nedds["hint"], "did you mean `needs`?");
    let channel = find("unknown notify channel `slak`");
    assert_eq!(
        (&channel["line"], &channel["column"]),
        (&6.into(), &24.into())
    );
    assert!(
        channel["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("did you mean `slack`?")),
        "{channel}"
    );
    let timeout = find("`5` has no unit");
    assert_eq!(
        (&timeout["line"], &timeout["column"]),
        (&8.into(), &14.into())
    );
}

// ---------------------------------------------------------------------------------------
// Findings: what the tool should do and does not yet.

#[test]
fn every_bad_freeze_window_of_a_gate_is_reported() {
    let env = project_with(
        CONFIG,
        br#"version: 1
gates:
  production:
    - id: weekend
      freeze:
        - { weekly: { from: "fri 4pm", to: "mon 08:00" } }
        - { weekly: { from: "fryday 16:00", to: "mon 08:00" } }
"#,
    );
    let run = validate(&env);
    assert_refused(
        &run,
        2,
        &[
            "release.yaml:6:29: ",
            "`4pm` is not a time of day",
            "release.yaml:7:29: ",
            "`fryday` is not a day of the week",
        ],
    );
}
