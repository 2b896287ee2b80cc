//! The real append path of `bench/audit.sh`: N records through `release`'s own
//! `AuditLog::append` (the call the engine makes for every record: file lock, tail check,
//! redaction, serde_json, SHA-256, write, fdatasync, unlock), timed in-process, so that
//! neither process start-up nor `/bin/true` is counted. Linked against the library of
//! `cargo build --release` (target/release/librelease.rlib) by bench/audit.sh; no
//! change to the crate is needed.
//!
//! Records alternate `step.started` / `step.finished` with the data the engine writes.
//! Prints `appends=… secs=… appends_per_s=… us_per_append=… mean_line_bytes=…`.
//!
//! usage: audit_append FILE [N=5000] [ACTOR=bench@example.com]
use std::path::PathBuf;
use std::time::Instant;

use release::state::audit::{AuditLog, Entry};
use release::state::redact::Redactor;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().expect("usage: audit_append FILE [N] [ACTOR]"));
    let n: u64 = args.next().map_or(5000, |s| s.parse().expect("N"));
    let actor = args.next().unwrap_or_else(|| "bench@example.com".into());
    let log = AuditLog::new(path.clone(), actor, Redactor::default());
    let run = "r20260105T090100Z-377a4f".to_owned();
    let entry = |i: u64| {
        let step = format!("s{:04}", i / 2);
        let (kind, data) = if i % 2 == 0 {
            ("step.started", json!({ "step": step }))
        } else {
            (
                "step.finished",
                json!({ "step": step, "outcome": "succeeded", "duration_ms": 3, "error": null, "attempts": 1 }),
            )
        };
        Entry {
            run: run.clone(),
            kind,
            component: Some("player_experience".into()),
            stage: Some("production".into()),
            data,
        }
    };
    let started = Instant::now();
    for i in 0..n {
        log.append(entry(i)).expect("append");
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).expect("stat").len();
    println!(
        "appends={n} secs={secs:.4} appends_per_s={:.0} us_per_append={:.1} mean_line_bytes={}",
        n as f64 / secs,
        secs * 1e6 / n as f64,
        bytes / n
    );
}
