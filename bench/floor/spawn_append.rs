//! Floor of `bench/engine.sh`: the least work a 100-step audited chain of `true` can do.
//! Spawns /bin/true STEPS times one after the other and, around each, appends one
//! LINE-byte line (2 lines a step: "started" and "finished") into the file given as the
//! first argument, with the audit log's durability: an fdatasync before each spawn (it
//! covers the line before too) and one at the end. No parsing, hashing, locking or
//! scheduling.
//!
//! LINE=0 appends nothing: the cost of the spawns alone.
//!
//! usage: spawn_append FILE [STEPS=100] [LINE=300]
use std::fs::OpenOptions;
use std::io::Write;
use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: spawn_append FILE [STEPS] [LINE]");
    let steps: usize = args.next().map_or(100, |s| s.parse().expect("STEPS"));
    let size: usize = args.next().map_or(300, |s| s.parse().expect("LINE"));
    let mut line = vec![b'x'; size];
    if let Some(last) = line.last_mut() {
        *last = b'\n';
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let append = |file: &mut std::fs::File, durable: bool| {
        if size == 0 {
            return;
        }
        file.write_all(&line).expect("write");
        if durable {
            file.sync_data().expect("fdatasync");
        }
    };
    for _ in 0..steps {
        append(&mut file, true);
        let status = Command::new("/bin/true").status().expect("spawn /bin/true");
        assert!(status.success());
        append(&mut file, false);
    }
    if size > 0 {
        file.sync_data().expect("fdatasync");
    }
}
