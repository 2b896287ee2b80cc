//! Child processes of steps: each in its own process group, so that a timeout or an
//! interrupt reaches every process the step started (SIGTERM, then SIGKILL after a grace
//! period), with stdout and stderr streamed line by line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::{mpsc, watch};

/// How long a process group has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// Output kept for `steps.<id>.stdout`; the rest is streamed but not kept.
const MAX_CAPTURE: usize = 1024 * 1024;

/// The last lines of stderr kept for the error message.
const STDERR_TAIL: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
    /// The program could not be started.
    SpawnFailed(String),
}

#[derive(Debug, Clone)]
pub struct ProcessResult {
    pub exit: Exit,
    pub stdout: String,
    pub stderr_tail: Vec<String>,
}

impl ProcessResult {
    pub fn succeeded(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// A one-line account of a failure, with the last line of stderr.
    pub fn describe_failure(&self, program: &str) -> String {
        let why = match &self.exit {
            Exit::Code(code) => format!("`{program}` exited with {code}"),
            Exit::Signal(signal) => format!("`{program}` was killed by signal {signal}"),
            Exit::TimedOut => format!("`{program}` timed out (its process group was killed)"),
            Exit::Cancelled => format!("`{program}` was interrupted"),
            Exit::SpawnFailed(e) => return format!("cannot start `{program}`: {e}"),
        };
        match self.stderr_tail.last() {
            Some(line) => format!("{why}: {line}"),
            None => why,
        }
    }
}

/// A line of output, for progress.
#[derive(Debug, Clone)]
pub struct Line {
    pub stderr: bool,
    pub text: String,
}

/// Runs `argv` to completion, the timeout, or cancellation.
pub async fn run_process(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Option<Duration>,
    mut cancel: watch::Receiver<bool>,
    lines: mpsc::UnboundedSender<Line>,
) -> ProcessResult {
    let failed = |e: String| ProcessResult {
        exit: Exit::SpawnFailed(e),
        stdout: String::new(),
        stderr_tail: Vec::new(),
    };
    let Some((program, rest)) = argv.split_first() else {
        return failed("empty command".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(e.to_string()),
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);

    let (stdout_task, stderr_task) = spawn_readers(&mut child, lines);

    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let cancelled = async {
        while !*cancel.borrow() {
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let exit = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => status_exit(status),
            Err(e) => Exit::SpawnFailed(e.to_string()),
        },
        () = deadline => {
            terminate_group(&mut child, pgid).await;
            Exit::TimedOut
        }
        () = cancelled => {
            terminate_group(&mut child, pgid).await;
            Exit::Cancelled
        }
    };
    // Processes the step left behind keep its output open: give them a moment, then end
    // the group so that the step really is over.
    let readers = async { (stdout_task.await, stderr_task.await) };
    tokio::pin!(readers);
    let (out, err) =
        if let Ok(done) = tokio::time::timeout(Duration::from_secs(1), &mut readers).await {
            done
        } else {
            signal_group(pgid, Signal::KILL);
            readers.await
        };
    // A process left behind with its output elsewhere (`nohup … >/dev/null &`) holds no
    // pipe but is still the step's: it ends with the step. (The group's id could name
    // another group only if the whole pid space wrapped around since the leader exited,
    // a moment ago.)
    signal_group(pgid, Signal::KILL);
    ProcessResult {
        exit,
        stdout: out.unwrap_or_default(),
        stderr_tail: err.unwrap_or_default(),
    }
}

/// Streams the child's stdout (kept, up to [`MAX_CAPTURE`]) and stderr (its last lines
/// kept) line by line. Both pipes are drained to the end whatever the bytes: a reader that
/// stopped early would close its pipe, and the step's tool would die of SIGPIPE midway.
fn spawn_readers(
    child: &mut tokio::process::Child,
    lines: mpsc::UnboundedSender<Line>,
) -> (
    tokio::task::JoinHandle<String>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let stdout = child.stdout.take().map(BufReader::new);
    let stderr = child.stderr.take().map(BufReader::new);
    let out_lines = lines.clone();
    let stdout_task = tokio::spawn(async move {
        let mut captured = String::new();
        if let Some(mut reader) = stdout {
            let mut buf = Vec::new();
            while let Some(line) = next_line(&mut reader, &mut buf).await {
                keep(&mut captured, &line);
                let _ = out_lines.send(Line {
                    stderr: false,
                    text: line,
                });
            }
        }
        captured
    });
    let stderr_task = tokio::spawn(async move {
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        if let Some(mut reader) = stderr {
            let mut buf = Vec::new();
            while let Some(line) = next_line(&mut reader, &mut buf).await {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                let _ = lines.send(Line {
                    stderr: true,
                    text: line,
                });
            }
        }
        tail.into_iter().collect::<Vec<_>>()
    });
    (stdout_task, stderr_task)
}

/// The longest line passed on whole; a longer one comes in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// The next line of a tool's output without its line ending, or `None` at the end (or on
/// a read error). Bytes that are not UTF-8 (a Latin-1 table name, binary output) become
/// U+FFFD instead of ending the reading.
async fn next_line<R>(reader: &mut R, buf: &mut Vec<u8>) -> Option<String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    buf.clear();
    let read = reader
        .take(MAX_LINE as u64)
        .read_until(b'\n', buf)
        .await
        .ok()?;
    if read == 0 {
        return None;
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Some(String::from_utf8_lossy(buf).into_owned())
}

/// Appends a line to the captured stdout, never past [`MAX_CAPTURE`].
fn keep(captured: &mut String, line: &str) {
    let room = MAX_CAPTURE.saturating_sub(captured.len());
    // A line cut at a character boundary leaves up to 3 bytes: nothing goes after it.
    if room < 4 {
        return;
    }
    if line.len() < room {
        captured.push_str(line);
        captured.push('\n');
    } else {
        let cut = (0..=room)
            .rev()
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(0);
        captured.push_str(&line[..cut]);
    }
}

fn status_exit(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH: the group is already gone.
        let _ = kill_process_group(pgid, signal);
    }
}

/// SIGTERM to the group, then SIGKILL if the leader has not exited after the grace period.
async fn terminate_group(child: &mut tokio::process::Child, pgid: Option<Pid>) {
    signal_group(pgid, Signal::TERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        signal_group(pgid, Signal::KILL);
        let _ = child.wait().await;
    }
    // Whatever else is left of the group goes too.
    signal_group(pgid, Signal::KILL);
}

/// Where `program` would be found: a path as given (relative to `cwd`), or on PATH.
pub fn resolve_program(program: &str, cwd: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = cwd.join(program);
        return executable(&path).then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| executable(p))
    })
}

/// Why `program` cannot be run, for a preflight that found no [`resolve_program`]: a path
/// that exists but is a folder or lacks the execute bit is named as such, not "not found".
pub fn why_not_runnable(program: &str, cwd: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let explain = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some(if meta.is_dir() {
            format!(
                "`{program}` is a directory ({}), not a program",
                path.display()
            )
        } else if meta.permissions().mode() & 0o111 == 0 {
            format!(
                "`{program}` exists but is not executable: chmod +x {}",
                path.display()
            )
        } else {
            format!("`{program}` ({}) cannot be run", path.display())
        })
    };
    if program.contains('/') {
        let relative = program.trim_start_matches("./");
        return explain(&cwd.join(relative)).unwrap_or_else(|| {
            format!(
                "`{program}` is not found (no such file under {})",
                cwd.display()
            )
        });
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find_map(|p| explain(&p))
        })
        .unwrap_or_else(|| format!("`{program}` is not found on PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_never_grows_past_its_cap() {
        let mut captured = String::new();
        keep(&mut captured, "first");
        assert_eq!(captured, "first\n");
        // A line longer than the room left is cut to the room, at a character boundary.
        let long = "é".repeat(MAX_CAPTURE);
        keep(&mut captured, &long);
        assert!(captured.len() <= MAX_CAPTURE, "{}", captured.len());
        assert!(captured.len() >= MAX_CAPTURE - 1);
        keep(&mut captured, "more");
        assert!(!captured.ends_with("more\n"));
    }

    #[tokio::test]
    async fn lines_are_read_lossily_and_long_ones_in_pieces() {
        let mut input: Vec<u8> = b"caf\xe9\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\nend");
        let mut reader = BufReader::new(&input[..]);
        let mut buf = Vec::new();
        assert_eq!(
            next_line(&mut reader, &mut buf).await.unwrap(),
            "caf\u{fffd}"
        );
        assert_eq!(
            next_line(&mut reader, &mut buf).await.unwrap().len(),
            MAX_LINE
        );
        assert_eq!(
            next_line(&mut reader, &mut buf).await.unwrap(),
            "x".repeat(10)
        );
        assert_eq!(next_line(&mut reader, &mut buf).await.unwrap(), "end");
        assert_eq!(next_line(&mut reader, &mut buf).await, None);
    }

    #[test]
    fn a_program_that_cannot_run_is_named_for_what_it_is() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("deploy.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(dir.path().join("tools")).unwrap();
        assert!(resolve_program("./deploy.sh", dir.path()).is_none());
        let why = why_not_runnable("./deploy.sh", dir.path());
        assert!(
            why.contains("exists but is not executable: chmod +x"),
            "{why}"
        );
        let why = why_not_runnable("./tools", dir.path());
        assert!(why.contains("is a directory"), "{why}");
        let why = why_not_runnable("./nope", dir.path());
        assert!(why.contains("not found"), "{why}");
        let why = why_not_runnable("no-such-program-anywhere", dir.path());
        assert!(why.contains("not found on PATH"), "{why}");
    }
}
