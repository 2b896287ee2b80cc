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
