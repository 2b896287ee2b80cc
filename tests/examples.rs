//! The README's quickstart, exactly as written, on a copy of the repository's example files.

use std::path::Path;

use crate::harness::TestEnv;

fn with_repository_example() -> TestEnv {
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    env.write(
        "release.yaml",
        &std::fs::read_to_string(repo.join("release.yaml")).unwrap(),
    );
    env.write(
        "examples/quickstart.yaml",
        &std::fs::read_to_string(repo.join("examples/quickstart.yaml")).unwrap(),
    );
    env
}

#[test]
fn quickstart_dry_run_then_run_then_audit() {
    let env = with_repository_example();
    let target = ["--component", "orchestration", "--stage", "staging"];
    let mut dry = vec!["run", "examples/quickstart.yaml"];
    dry.extend(target);
    dry.push("--dry-run");
    let run = env.release(&dry);
    run.assert_code(0)
        .assert_stdout_contains("nothing blocked")
        .assert_stdout_contains("| would build orchestration");
    assert!(
        !env.join(".release/flaky-count").exists(),
        "the dry-run ran a step"
    );

    let mut real = vec!["run", "examples/quickstart.yaml"];
    real.extend(target);
    real.extend(["--reason", "trying it"]);
    let run = env.release(&real);
    run.assert_code(0)
        .assert_stdout_contains("succeeded")
        .assert_stdout_contains("only-on-friday  skipped");
    // The flaky step failed once and was retried.
    assert_eq!(env.read(".release/flaky-count").trim(), "2");

    let run = env.release(&["audit", "verify"]);
    run.assert_code(0).assert_stdout_contains("ok: ");
    let run = env.release(&["audit", "log", "--kind", "run."]);
    run.assert_code(0);
    assert_eq!(
        run.stdout.lines().count(),
        4,
        "two runs, started and finished: {}",
        run.stdout
    );
}
