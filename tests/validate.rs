//! `runbook validate` and `runbook graph` on valid projects.

use std::path::Path;

use crate::harness::TestEnv;

#[test]
fn the_repository_itself_validates() {
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    env.release_in(repo, &["runbook", "validate"])
        .assert_code(0)
        .assert_stdout_contains("ok: release.yaml and 6 runbooks are valid");
}

#[test]
fn json_output_is_an_empty_list_when_valid() {
    let env = TestEnv::initialized();
    let run = env.release(&["--json", "runbook", "validate"]);
    run.assert_code(0);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(value, serde_json::json!([]));
}

#[test]
fn explicit_paths_are_validated_alone() {
    let env = TestEnv::initialized();
    env.write(
        "ops/extra.yaml",
        "steps:\n  - id: hello\n    run: [echo, \"{{ component }}\"]\n",
    );
    env.write("runbooks/staging/rollback.yaml", "not: [valid\n");
    env.release(&["runbook", "validate", "ops/extra.yaml"])
        .assert_code(0)
        .assert_stdout_contains("1 runbook is valid");
    env.release(&["runbook", "validate"]).assert_code(2);
}

#[test]
fn layout_problems_are_warnings() {
    let env = TestEnv::initialized();
    std::fs::remove_file(env.join("runbooks/staging/rollback.yaml")).unwrap();
    env.write(
        "runbooks/prod/rollback.yaml",
        "steps:\n  - id: a\n    run: [true]\n",
    );
    let run = env.release(&["runbook", "validate"]);
    run.assert_code(0)
        .assert_stderr_contains("warning")
        .assert_stderr_contains("stage `staging` has no rollback runbook")
        .assert_stderr_contains("folder `prod` is not a stage")
        .assert_stderr_contains("did you mean `production`?");
    // -q hides warnings.
    let run = env.release(&["-q", "runbook", "validate"]);
    run.assert_code(0);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn graph_mermaid_shows_parallel_branches() {
    let env = TestEnv::initialized();
    let run = env.release(&["runbook", "graph", "runbooks/production/rollback.yaml"]);
    run.assert_code(0);
    let out = &run.stdout;
    assert!(out.starts_with("flowchart TD\n"), "{out}");
    // s0 notify-start, s1 revert, s2 migration, s3 caches, s4 verify, s5 health, s6 incident
    for edge in [
        "s0 --> s1",
        "s1 --> s2",
        "s1 --> s3",
        "s2 --> s4",
        "s3 --> s4",
        "s4 --> s5",
        "s5 -.-> s6",
    ] {
        assert!(out.contains(edge), "missing {edge} in\n{out}");
    }
    assert!(
        !out.contains("s2 --> s3"),
        "caches must not wait for migration"
    );
    assert!(out.contains("if params.migration"));
    assert!(out.contains("when always"));
}

#[test]
fn graph_dot() {
    let env = TestEnv::initialized();
    let run = env.release(&[
        "runbook",
        "graph",
        "runbooks/production/rollback.yaml",
        "--format",
        "dot",
    ]);
    run.assert_code(0);
    let out = &run.stdout;
    assert!(out.starts_with("digraph runbook {"), "{out}");
    assert!(out.contains("\"revert\" -> \"caches\";"));
    assert!(out.contains("\"migration\" -> \"verify\";"));
    assert!(out.contains("\"caches\" -> \"verify\";"));
    assert!(out.contains("style=dashed"), "when: always is drawn dashed");
    assert!(out.trim_end().ends_with('}'));
}

#[test]
fn graph_json_has_the_steps_their_needs_and_the_graph() {
    let env = TestEnv::initialized();
    let run = env.release(&[
        "--json",
        "runbook",
        "graph",
        "runbooks/production/rollback.yaml",
    ]);
    run.assert_code(0);
    let graph: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(graph["format"], "mermaid");
    assert!(graph["graph"].as_str().unwrap().contains("s1 --> s3"));
    let steps = graph["steps"].as_array().unwrap();
    let caches = steps.iter().find(|s| s["id"] == "caches").unwrap();
    assert_eq!(caches["action"], "cache_clear");
    assert_eq!(caches["needs"], serde_json::json!(["revert"]));
    let revert = steps.iter().find(|s| s["id"] == "revert").unwrap();
    assert_eq!(revert["asks_first"], true);
    let incident = steps.iter().find(|s| s["id"] == "incident").unwrap();
    assert_eq!(incident["when"], "always");
    let migration = steps.iter().find(|s| s["id"] == "migration").unwrap();
    assert_eq!(migration["if"], "params.migration");
}

#[test]
fn graph_of_an_invalid_runbook_fails_with_diagnostics() {
    let env = TestEnv::initialized();
    env.write("bad.yaml", "steps:\n  - id: a\n    needs: [b]\n    run: [x]\n  - id: b\n    needs: [a]\n    run: [y]\n");
    env.release(&["runbook", "graph", "bad.yaml"])
        .assert_code(2)
        .assert_stderr_contains("bad.yaml:3:12")
        .assert_stderr_contains("cycle: a -> b -> a");
    env.release(&["runbook", "graph", "missing.yaml"])
        .assert_code(2)
        .assert_stderr_contains("missing.yaml")
        .assert_stderr_contains("cannot read");
}

#[test]
fn the_minimal_example_validates() {
    let env = TestEnv::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal");
    env.release_in(&example, &["runbook", "validate"])
        .assert_code(0)
        .assert_stdout_contains("1 runbook is valid")
        .assert_stderr_contains("stage `staging` has no rollback runbook");
}

#[test]
fn a_folder_named_release_yaml_stops_discovery() {
    let env = TestEnv::initialized();
    std::fs::create_dir_all(env.join("sub/release.yaml")).unwrap();
    env.release_in(&env.join("sub"), &["runbook", "validate"])
        .assert_code(2)
        .assert_stderr_contains("release.yaml exists but is a folder, not a file");
    env.release(&["--config", "sub/release.yaml", "runbook", "validate"])
        .assert_code(2)
        .assert_stderr_contains("--config sub/release.yaml is a folder, not a file")
        .assert_stderr_contains("use `-C DIR`");
}

#[test]
fn a_rollback_runbook_that_is_a_folder_is_an_error() {
    let env = TestEnv::initialized();
    std::fs::remove_file(env.join("runbooks/production/rollback.yaml")).unwrap();
    std::fs::create_dir(env.join("runbooks/production/rollback.yaml")).unwrap();
    env.release(&["runbook", "validate"])
        .assert_code(2)
        .assert_stderr_contains(
            "error: runbooks/production/rollback.yaml: the rollback runbook of stage `production` is a folder, not a file",
        );
}

#[test]
fn a_rollback_yml_is_told_to_be_renamed() {
    let env = TestEnv::initialized();
    std::fs::rename(
        env.join("runbooks/staging/rollback.yaml"),
        env.join("runbooks/staging/rollback.yml"),
    )
    .unwrap();
    env.release(&["runbook", "validate"])
        .assert_code(0)
        .assert_stderr_contains("stage `staging` has no rollback runbook")
        .assert_stderr_contains(
            "help: rename runbooks/staging/rollback.yml to rollback.yaml: only that name is used",
        );
}

#[test]
fn a_folder_given_to_validate_validates_its_runbooks() {
    let env = TestEnv::initialized();
    env.release(&["runbook", "validate", "runbooks/staging"])
        .assert_code(0)
        .assert_stdout_contains("ok: release.yaml and 2 runbooks are valid");
    std::fs::create_dir(env.join("empty")).unwrap();
    env.release(&["runbook", "validate", "empty"])
        .assert_code(2)
        .assert_stderr_contains("error: empty: this folder holds no runbook (no .yaml file)");
}

#[test]
fn release_yaml_is_never_validated_as_a_runbook() {
    let env = TestEnv::initialized();
    let run = env.release(&["runbook", "validate", "release.yaml"]);
    run.assert_code(0)
        .assert_stderr_contains("this is the project config, not a runbook")
        .assert_stdout_contains("ok: release.yaml and 0 runbooks are valid");
    assert!(!run.stderr.contains("unknown key"), "{}", run.stderr);
    // Nor when the runbooks folder is the project's own folder.
    let config = env
        .read("release.yaml")
        .replace("runbooks: runbooks", "runbooks: .");
    env.write("release.yaml", &config);
    let run = env.release(&["runbook", "validate"]);
    assert!(!run.stderr.contains("unknown key"), "{}", run.stderr);
}

#[test]
fn a_missing_runbooks_folder_is_an_error() {
    let env = TestEnv::initialized();
    let config = env
        .read("release.yaml")
        .replace("runbooks: runbooks", "runbooks: runbok");
    env.write("release.yaml", &config);
    let run = env.release(&["runbook", "validate"]);
    run.assert_code(2)
        .assert_stderr_contains("`runbooks`: folder `runbok` cannot be read")
        .assert_stderr_contains("1 error in 1 file: nothing was run");
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}
