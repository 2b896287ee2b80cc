//! The CLI frame: help, version, usage errors, completions, man page, schema, global flags.

use crate::harness::TestEnv;

#[test]
fn version_and_help_exit_zero_on_stdout() {
    let env = TestEnv::new();
    let run = env.release(&["--version"]);
    run.assert_code(0)
        .assert_stdout_contains(concat!("release ", env!("CARGO_PKG_VERSION")));
    let run = env.release(&["--help"]);
    run.assert_code(0);
    for command in ["init", "runbook", "schema", "completions", "man"] {
        run.assert_stdout_contains(command);
    }
    for flag in [
        "-C <DIR>",
        "--config <FILE>",
        "--json",
        "--yes",
        "--verbose",
        "--quiet",
        "--no-progress",
    ] {
        run.assert_stdout_contains(flag);
    }
}

#[test]
fn usage_errors_exit_two_on_stderr() {
    let env = TestEnv::new();
    let run = env.release(&["frobnicate"]);
    run.assert_code(2)
        .assert_stderr_contains("unrecognized subcommand");
    assert!(run.stdout.is_empty());
    env.release(&["runbook", "graph"]).assert_code(2);
    env.release(&["runbook", "graph", "x.yaml", "--format", "svg"])
        .assert_code(2)
        .assert_stderr_contains("mermaid");
}

#[test]
fn completions_for_each_shell() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = env.release(&["completions", shell]);
        run.assert_code(0);
        assert!(run.stdout.contains("release"), "{shell}: {}", run.stdout);
        assert!(
            run.stdout.contains("validate"),
            "{shell} completes subcommands"
        );
    }
}

#[test]
fn man_page_is_roff() {
    let env = TestEnv::new();
    let run = env.release(&["man"]);
    run.assert_code(0);
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH release"),
        "{}",
        &run.stdout[..200]
    );
    run.assert_stdout_contains("runbook");
}

#[test]
fn schema_describes_both_files() {
    let env = TestEnv::new();
    let run = env.release(&["schema"]);
    run.assert_code(0);
    let both: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let config = &both["config"];
    for key in [
        "version",
        "stages",
        "components",
        "gates",
        "notify",
        "incidents",
        "github",
    ] {
        assert!(
            config["properties"].get(key).is_some(),
            "config schema lacks {key}"
        );
    }
    let runbook = &both["runbook"];
    assert!(runbook["properties"].get("steps").is_some());
    let text = serde_json::to_string(runbook).unwrap();
    for action in [
        "git_revert",
        "migration_rollback",
        "cache_clear",
        "health_check",
        "incident_issue",
    ] {
        assert!(text.contains(action), "runbook schema lacks {action}");
    }

    let config_only: serde_json::Value =
        serde_json::from_str(&env.release(&["schema", "config"]).stdout).unwrap();
    assert_eq!(config_only["properties"], config["properties"]);

    env.release(&["schema", "--write", "schemas"])
        .assert_code(0);
    for file in ["schemas/release.schema.json", "schemas/runbook.schema.json"] {
        let _: serde_json::Value = serde_json::from_str(&env.read(file)).expect(file);
    }
}

#[test]
fn schema_agrees_with_the_validator_on_scalars_ids_and_one_action() {
    let env = TestEnv::new();
    let runbook: serde_json::Value =
        serde_json::from_str(&env.release(&["schema", "runbook"]).stdout).unwrap();
    let step = &runbook["$defs"]["StepSpec"];
    // `if: true` and `confirm: yes` are read as text by the loader: the schema allows them.
    for key in ["if", "confirm", "name"] {
        let types = step["properties"][key]["type"].as_array().unwrap();
        assert!(
            types.contains(&"boolean".into()) && types.contains(&"number".into()),
            "{key}: {types:?}"
        );
    }
    assert_eq!(step["properties"]["id"]["pattern"], "^[a-z0-9][a-z0-9_-]*$");
    // Exactly one action: one `oneOf` branch per action key.
    let branches = step["oneOf"].as_array().unwrap();
    assert_eq!(branches.len(), 8);
    assert!(branches.contains(&serde_json::json!({ "required": ["git_revert"] })));

    let config: serde_json::Value =
        serde_json::from_str(&env.release(&["schema", "config"]).stdout).unwrap();
    assert_eq!(config["properties"]["version"]["const"], 1);
    assert_eq!(
        config["$defs"]["Map_of_Component"]["propertyNames"]["pattern"],
        "^[a-z][a-z0-9_-]*$"
    );
    assert_eq!(
        config["$defs"]["GateSpec"]["oneOf"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn missing_config_says_how_to_make_one() {
    let env = TestEnv::new();
    env.release(&["runbook", "validate"])
        .assert_code(2)
        .assert_stderr_contains("no release.yaml found")
        .assert_stderr_contains("release init");
    env.release(&["--config", "nope.yaml", "runbook", "validate"])
        .assert_code(2)
        .assert_stderr_contains("nope.yaml");
    env.release(&["-C", "no/such/dir", "runbook", "validate"])
        .assert_code(2)
        .assert_stderr_contains("no such folder");
}

#[test]
fn dash_c_and_config_choose_the_project() {
    let env = TestEnv::new();
    env.release(&["-C", ".", "init"]).assert_code(0);
    std::fs::create_dir_all(env.join("elsewhere")).unwrap();
    let elsewhere = env.join("elsewhere");
    // Found in the parent folder.
    env.release_in(&elsewhere, &["runbook", "validate"])
        .assert_code(0)
        .assert_stdout_contains("6 runbooks are valid");
    // -C from somewhere else entirely.
    let other = TestEnv::new();
    other
        .release(&["-C", env.path().to_str().unwrap(), "runbook", "validate"])
        .assert_code(0);
    // --config names the file.
    std::fs::rename(env.join("release.yaml"), env.join("custom.yaml")).unwrap();
    env.release(&["runbook", "validate"]).assert_code(2);
    env.release(&["--config", "custom.yaml", "runbook", "validate"])
        .assert_code(0);
}

#[test]
fn no_colour_without_a_terminal() {
    let env = TestEnv::initialized();
    env.write(
        "runbooks/staging/rollback.yaml",
        "steps:\n  - id: a\n    nedds: []\n    run: [true]\n",
    );
    let run = env.release(&["runbook", "validate"]);
    run.assert_code(2);
    assert!(
        !run.stderr.contains('\x1b'),
        "escape codes in {:?}",
        run.stderr
    );
}
