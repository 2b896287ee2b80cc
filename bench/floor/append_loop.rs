//! Floor of `bench/audit.sh`: N appends of a LINE-byte line, each followed by fdatasync,
//! to one file opened once in append mode. Prints `appends_per_s=…` and `us_per_append=…`.
//!
//! usage: append_loop FILE [N=5000] [LINE=300]
use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: append_loop FILE [N] [LINE]");
    let n: usize = args.next().map_or(5000, |s| s.parse().expect("N"));
    let size: usize = args.next().map_or(300, |s| s.parse().expect("LINE"));
    let mut line = vec![b'x'; size];
    line[size - 1] = b'\n';
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let started = Instant::now();
    for _ in 0..n {
        file.write_all(&line).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let secs = started.elapsed().as_secs_f64();
    println!("appends={n} line_bytes={size} secs={secs:.4} appends_per_s={:.0} us_per_append={:.1}", n as f64 / secs, secs * 1e6 / n as f64);
}
