//! `release init`: writes the shipped files, never overwrites, and is idempotent.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::TestEnv;

const SHIPPED: &[&str] = &[
    "release.yaml",
    "runbooks/development/rollback.yaml",
    "runbooks/development/promote.yaml",
    "runbooks/staging/rollback.yaml",
    "runbooks/staging/promote.yaml",
    "runbooks/production/rollback.yaml",
    "runbooks/production/promote.yaml",
];

fn snapshot_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn init_writes_the_shipped_files_and_they_validate() {
    let env = TestEnv::new();
    let run = env.release(&["init"]);
    run.assert_code(0);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in SHIPPED {
        run.assert_stdout_contains(&format!("wrote  {file}"));
        assert_eq!(
            env.read(file),
            std::fs::read_to_string(repo.join(file)).unwrap(),
            "{file} is not the repository's own"
        );
    }
    assert_eq!(env.read(".gitignore"), ".release/\n");
    env.release(&["runbook", "validate"])
        .assert_code(0)
        .assert_stdout_contains("ok: release.yaml and 6 runbooks are valid");
}

#[test]
fn init_twice_changes_nothing() {
    let env = TestEnv::new();
    env.release(&["init"]).assert_code(0);
    let before = snapshot_tree(env.path());
    let run = env.release(&["init"]);
    run.assert_code(0);
    for file in SHIPPED {
        run.assert_stdout_contains(&format!("kept   {file} (exists; not overwritten)"));
    }
    run.assert_stdout_contains("kept   .gitignore");
    assert_eq!(before, snapshot_tree(env.path()));
}

#[test]
fn init_never_overwrites_and_keeps_gitignore() {
    let env = TestEnv::new();
    env.write("release.yaml", "version: 1\n# mine\n");
    env.write(".gitignore", "target/\n*.log");
    let run = env.release(&["init"]);
    run.assert_code(0)
        .assert_stdout_contains("kept   release.yaml")
        .assert_stdout_contains("wrote  runbooks/production/rollback.yaml")
        .assert_stdout_contains("added  .release/ to .gitignore");
    assert_eq!(env.read("release.yaml"), "version: 1\n# mine\n");
    assert_eq!(env.read(".gitignore"), "target/\n*.log\n.release/\n");
}

#[test]
fn init_refuses_a_folder_named_release_yaml() {
    let env = TestEnv::new();
    std::fs::create_dir(env.join("release.yaml")).unwrap();
    env.release(&["init"])
        .assert_code(2)
        .assert_stderr_contains("error: release.yaml exists but is a folder, not a file")
        .assert_stderr_contains("help: remove or rename release.yaml");
    assert!(!env.join("runbooks").exists(), "nothing is written");
}

#[test]
fn init_json_lists_what_it_wrote_and_kept() {
    let env = TestEnv::new();
    env.write("release.yaml", "version: 1\n# mine\n");
    let run = env.release(&["--json", "init"]);
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(report["kept"], serde_json::json!(["release.yaml"]));
    let wrote: Vec<&str> = report["wrote"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(wrote.len(), SHIPPED.len() - 1, "{wrote:?}");
    assert!(wrote.contains(&"runbooks/production/rollback.yaml"));
    assert_eq!(report["gitignore"], "added");
    assert_eq!(env.read("release.yaml"), "version: 1\n# mine\n");
}

/// `--config FILE init` writes FILE and the project around it, where the other commands
/// given the same `--config` look.
#[test]
fn init_with_config_writes_the_project_next_to_it() {
    let env = TestEnv::new();
    let run = env.release(&["--config", "deploy/rel.yaml", "init"]);
    run.assert_code(0)
        .assert_stdout_contains("wrote  deploy/rel.yaml")
        .assert_stdout_contains("wrote  deploy/runbooks/production/rollback.yaml")
        .assert_stdout_contains("added  .release/ to deploy/.gitignore")
        .assert_stdout_contains("release --config deploy/rel.yaml runbook validate");
    assert!(
        !env.join("release.yaml").exists(),
        "nothing in the current folder"
    );
    assert!(
        !env.join("runbooks").exists(),
        "nothing in the current folder"
    );
    assert_eq!(env.read("deploy/.gitignore"), ".release/\n");
    env.release(&["--config", "deploy/rel.yaml", "runbook", "validate"])
        .assert_code(0);
}
