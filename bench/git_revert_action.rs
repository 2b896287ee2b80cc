//! The `git_revert` action alone, in one process, against `git revert` by the git CLI on
//! the same repository in the same loop: the part of `bench/git_revert.sh` that leaves out
//! what every `release` command pays whatever its steps (process start, `release.yaml`,
//! the runbook, the lock, the audit log) and libgit2's one-time start (OpenSSL parsing the
//! system CA bundle, about 8 ms of CPU), which `release run` overlaps with its own start.
//!
//! Linked against the library of `cargo build --release` (target/release/librelease.rlib)
//! by bench/git_revert.sh, as bench/audit_append.rs is; it calls what the engine calls for
//! a step: `actions::preflight` (the dry-run) and `actions::execute` (the real run), with
//! the step of REPO/revert.yaml and `params.commit` set to each SPEC.
//!
//! Each round, for each SPEC: the CLI's `git revert --no-edit SPEC` is timed (a process, as
//! a user would run it), the repository is put back, the action's preflight is timed
//! (it must be `ready`), then its real run (it must succeed and leave a clean work tree),
//! and the repository is put back again. So both see the same HEAD, index and page cache,
//! and the same load. The first preflight of the process, which starts libgit2, is reported
//! on its own (`first_ms`) and counted in no mean; so are the warm-up rounds.
//!
//! Prints one line per SPEC: `spec=… runs=… cli_ms=… cli_sd=… real_ms=… real_sd=…
//! dry_ms=… dry_sd=… first_ms=…` (means and standard deviations in milliseconds).
//!
//! usage: git_revert_action REPO BASE RUNS SPEC [SPEC…]
//!   REPO: a `release init` project in a git work tree, with revert.yaml (one git_revert
//!   step whose `commits` is `{{ params.commit }}`); BASE: the commit to go back to.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use release::actions::{self, Outcome, RunInfo, StepContext, Verdict};
use release::engine::context::{StepOutputs, Templater, base_context};
use release::project::Project;
use serde_json::json;

const WARM_UP: usize = 2;

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// Back to BASE, with no revert of the CLI's left in progress.
fn reset(repo: &Path, base: &str) {
    let _ = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["revert", "--quit"])
        .stderr(Stdio::null())
        .status();
    git(repo, &["reset", "-q", "--hard", base]);
}

fn mean_sd(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        args.len() >= 4,
        "usage: git_revert_action REPO BASE RUNS SPEC [SPEC…]"
    );
    let repo = PathBuf::from(&args[0]);
    let base = args[1].clone();
    let runs: usize = args[2].parse().expect("RUNS is a number");
    let specs = &args[3..];

    let project = Project::load(&repo, None).expect("REPO holds a valid release.yaml");
    let (runbook, _) = project
        .load_runbook(&repo, &repo.join("revert.yaml"))
        .expect("REPO/revert.yaml is a valid runbook");
    let action = &runbook.steps[0].action;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let (lines, _lines_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut first_ms = None;

    for spec in specs {
        let run = |dry_run: bool| RunInfo {
            id: "r20260101T000000Z-bench0".into(),
            actor: "bench@example.com".into(),
            component: "orchestration".into(),
            stage: "staging".into(),
            reason: "bench".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            dry_run,
            origin: "r20260101T000000Z-bench0".into(),
        };
        let (dry_info, real_info) = (run(true), run(false));
        let base_ctx = base_context(&json!({
            "component": "orchestration",
            "stage": "staging",
            "params": { "commit": spec },
        }));
        let templates = Templater::new(&base_ctx, &StepOutputs::default());
        let context = |info| StepContext {
            step_id: "revert",
            root: &project.root,
            templates: &templates,
            timeout: None,
            cancel: cancel.clone(),
            lines: lines.clone(),
            reads_step_output: false,
            config: &project.config,
            run: info,
        };
        let (mut cli, mut real, mut dry) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..WARM_UP + runs {
            reset(&repo, &base);
            let t = Instant::now();
            let status = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["revert", "--no-edit", spec])
                .stdout(Stdio::null())
                .status()
                .expect("git runs");
            let cli_ms = ms(t);
            assert!(status.success(), "git revert {spec} failed");
            reset(&repo, &base);

            let ctx = context(&dry_info);
            let t = Instant::now();
            let preflight = runtime.block_on(actions::preflight(action, &ctx));
            let dry_ms = ms(t);
            assert_eq!(
                preflight.verdict,
                Verdict::Ready,
                "the preflight of {spec} is not ready: {}",
                preflight.reason
            );
            first_ms.get_or_insert(dry_ms);

            let ctx = context(&real_info);
            let t = Instant::now();
            let execution = runtime.block_on(actions::execute(action, &ctx));
            let real_ms = ms(t);
            assert_eq!(
                execution.outcome,
                Outcome::Succeeded,
                "the revert of {spec} failed: {:?}",
                execution.error
            );
            assert_ne!(git(&repo, &["rev-parse", "HEAD"]), git(&repo, &["rev-parse", &base]));
            assert!(git(&repo, &["status", "--porcelain"]).is_empty(), "work tree not clean");

            if round >= WARM_UP {
                cli.push(cli_ms);
                dry.push(dry_ms);
                real.push(real_ms);
            }
        }
        reset(&repo, &base);
        let ((c, cs), (r, rs), (d, ds)) = (mean_sd(&cli), mean_sd(&real), mean_sd(&dry));
        println!(
            "spec={spec} runs={} cli_ms={c:.2} cli_sd={cs:.2} real_ms={r:.2} real_sd={rs:.2} dry_ms={d:.2} dry_sd={ds:.2} first_ms={:.2}",
            cli.len(),
            first_ms.unwrap_or_default()
        );
    }
}
