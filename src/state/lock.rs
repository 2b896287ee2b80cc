//! One run at a time per component and stage (SPEC §8): a lock file under `.release/locks/`
//! holding the run id, pid, host, actor and start time, removed when the run ends. A lock
//! whose process is gone on this host is taken over (and the caller records that); a lock
//! from another host is only removed by `release unlock`.
//!
//! A pid alone does not name a process for ever: after a reboot or a container restart,
//! or simply in time, it is reused. A holder is *confirmed* only when its pid is alive and
//! the process there is not younger than the lock (read from `/proc`). A lock taken before
//! this host booted is dead whatever its pid shows now, and is taken over. A live pid that
//! is younger than the lock, or that runs another program, cannot be confirmed: the run is
//! refused, and `release unlock` may remove it (as it may a lock from another host). A
//! confirmed live holder on this host is never removed: stop it first.
//!
//! A lock file that is not a lock record (empty, torn) blocks like any lock; no holder is
//! made up for it, and `release unlock … --corrupt` removes it (or `--lock-id` with the run
//! id the file still names, if any).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockHolder {
    pub run: String,
    pub pid: u32,
    pub host: String,
    pub actor: String,
    pub started_at: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_corrupt() {
            // The stand-in for a lock file that is not a lock record: see [`read`].
            return write!(
                f,
                "the lock file {}, whose content is not a lock record",
                self.host
            );
        }
        write!(
            f,
            "run {} by {} (pid {} on {}, since {})",
            self.run, self.actor, self.pid, self.host, self.started_at
        )
    }
}

/// A lock this process holds; released by [`Lock::release`] or, as a last resort, on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    run: String,
    released: bool,
}

/// How the lock was obtained.
#[derive(Debug)]
pub enum Acquired {
    Free(Lock),
    /// The previous holder's process is gone from this host.
    TookOver {
        lock: Lock,
        previous: LockHolder,
    },
}

/// The `run` of the stand-in holder of a corrupt lock file (never a run id: those start
/// with `r` and a date).
const CORRUPT: &str = "(corrupt lock file)";

impl LockHolder {
    /// True for the stand-in of a lock file that is not a lock record.
    pub fn is_corrupt(&self) -> bool {
        self.pid == 0 && self.run == CORRUPT
    }

    fn corrupt(path: &Path) -> Self {
        Self {
            run: CORRUPT.into(),
            pid: 0,
            host: path.display().to_string(),
            actor: "unknown".into(),
            started_at: "unknown".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", describe_held(component, stage, holder, unconfirmed.as_deref()))]
    Held {
        component: String,
        stage: String,
        holder: Box<LockHolder>,
        /// True when the holder runs on another host (its liveness cannot be checked).
        other_host: bool,
        /// Why a live pid on this host may not be the holder (reused pid).
        unconfirmed: Option<String>,
    },
    #[error("lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The lock file of a component at a stage.
pub fn lock_path(dir: &Path, component: &str, stage: &str) -> PathBuf {
    dir.join(format!("{component}.{stage}.lock"))
}

fn describe_held(
    component: &str,
    stage: &str,
    holder: &LockHolder,
    unconfirmed: Option<&str>,
) -> String {
    let mut text = format!("{component} at {stage} is locked by {holder}");
    if let Some(why) = unconfirmed {
        text.push_str(", but ");
        text.push_str(why);
    }
    text
}

impl LockError {
    /// How to get past a held lock: always the exact command when the holder cannot be
    /// confirmed alive (another host, a reused pid, a corrupt file).
    pub fn hint(&self) -> Option<String> {
        let LockError::Held {
            component,
            stage,
            holder,
            other_host,
            unconfirmed,
        } = self
        else {
            return None;
        };
        let unlock =
            |how: &str| format!("release unlock {component} --stage {stage} {how} --reason \"…\"");
        Some(if holder.is_corrupt() {
            format!(
                "no run can be named from it; if no run of {component} at {stage} is going on: {}",
                unlock("--corrupt")
            )
        } else if *other_host {
            format!(
                "it runs on another host; if it is dead: {}",
                unlock(&format!("--lock-id {}", holder.run))
            )
        } else if unconfirmed.is_some() {
            format!(
                "if run {} is not running any more: {}",
                holder.run,
                unlock(&format!("--lock-id {}", holder.run))
            )
        } else {
            format!(
                "wait for it to finish, or stop it (pid {}: {})",
                holder.pid,
                process_command(holder.pid).unwrap_or_else(|| "its command is unknown".into())
            )
        })
    }
}

/// What is known of the process at a lock's pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// No such process, or one from before this host booted.
    Dead,
    /// Alive and not younger than the lock: the holder, as far as can be told.
    Alive,
    /// A live process that may not be the holder; why.
    Unconfirmed(String),
}

/// Slack (seconds) for the lock's whole seconds and the clock-tick rounding of `/proc`.
const SLACK: i64 = 5;

/// Whether `holder` (a lock of this host) is still running.
pub fn liveness(holder: &LockHolder) -> Liveness {
    if holder.pid == 0 || !alive(holder.pid) {
        return Liveness::Dead;
    }
    let Some(process) = ProcessInfo::read(holder.pid) else {
        return Liveness::Alive;
    };
    let Ok(taken) = chrono::DateTime::parse_from_rfc3339(&holder.started_at) else {
        return Liveness::Alive;
    };
    let taken = taken.timestamp();
    if taken + SLACK < process.boot_time {
        return Liveness::Dead;
    }
    let command = process_command(holder.pid).unwrap_or_default();
    if process.started > taken + SLACK {
        return Liveness::Unconfirmed(format!(
            "pid {} is now `{command}`, started at {}, after the lock was taken: the pid was probably reused",
            holder.pid,
            chrono::DateTime::from_timestamp(process.started, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        ));
    }
    if let Some(other) = process
        .program
        .filter(|p| Some(p) != own_program().as_ref())
    {
        return Liveness::Unconfirmed(format!(
            "pid {} is now `{command}` (program {other}), not a `release`: the pid was probably reused",
            holder.pid
        ));
    }
    Liveness::Alive
}

/// Start time (seconds since the epoch) and program of a live process, from `/proc`.
struct ProcessInfo {
    started: i64,
    boot_time: i64,
    /// The executable's file name, when it can be read (not for other users' processes).
    program: Option<String>,
}

impl ProcessInfo {
    fn read(pid: u32) -> Option<Self> {
        // USER_HZ: what /proc counts in, 100 on every Linux architecture.
        const TICKS: i64 = 100;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Field 22, counted after the parenthesised command (which may hold spaces).
        let (_, rest) = stat.rsplit_once(')')?;
        let ticks: i64 = rest.split_whitespace().nth(19)?.parse().ok()?;
        let boot_time: i64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(Self {
            started: boot_time + ticks / TICKS,
            boot_time,
            program: program_name(&format!("/proc/{pid}/exe")),
        })
    }
}

fn program_name(link: &str) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    let name = target.file_name()?.to_string_lossy().into_owned();
    Some(name.trim_end_matches(" (deleted)").to_owned())
}

fn own_program() -> Option<String> {
    program_name("/proc/self/exe")
}

/// A process's command line, shortened for a message.
fn process_command(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut text = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        return None;
    }
    if text.chars().count() > 80 {
        text = text.chars().take(79).collect::<String>() + "…";
    }
    Some(text)
}

/// True when `pid` is a live process on this host.
fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// Reads the holder of a lock, if any. A file that is not a lock record still blocks: its
/// holder is a stand-in ([`LockHolder::is_corrupt`]) that names the file, nothing more.
pub fn read(dir: &Path, component: &str, stage: &str) -> Result<Option<LockHolder>, LockError> {
    let path = lock_path(dir, component, stage);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).unwrap_or_else(|_| LockHolder::corrupt(&path)),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Ok(Some(LockHolder::corrupt(&path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Io { path, source }),
    }
}

/// Whether a run on `host` could take the lock of `component` at `stage`: `Ok(None)` when
/// it is free, `Ok(Some(previous))` when its holder is gone from this host (a run would take
/// it over), [`LockError::Held`] when it blocks (a live holder, another host's, a reused
/// pid, a corrupt file).
pub fn check(
    dir: &Path,
    component: &str,
    stage: &str,
    host: &str,
) -> Result<Option<LockHolder>, LockError> {
    let Some(current) = read(dir, component, stage)? else {
        return Ok(None);
    };
    let same_host = !current.is_corrupt() && current.host == host;
    let unconfirmed = match same_host.then(|| liveness(&current)) {
        Some(Liveness::Dead) => return Ok(Some(current)),
        Some(Liveness::Unconfirmed(why)) => Some(why),
        Some(Liveness::Alive) | None => None,
    };
    Err(LockError::Held {
        component: component.to_owned(),
        stage: stage.to_owned(),
        other_host: !same_host && !current.is_corrupt(),
        holder: Box::new(current),
        unconfirmed,
    })
}

/// Takes the lock of `component` at `stage` for `holder`'s run.
pub fn acquire(
    dir: &Path,
    component: &str,
    stage: &str,
    holder: &LockHolder,
) -> Result<Acquired, LockError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Serialise acquisitions, so that two processes never both take over a stale lock.
    let guard_path = dir.join(".guard");
    let guard = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard_path)
        .map_err(io(&guard_path))?;
    guard.lock().map_err(io(&guard_path))?;

    let path = lock_path(dir, component, stage);
    let previous = check(dir, component, stage, &holder.host)?;
    let text = serde_json::to_string_pretty(holder).unwrap_or_default() + "\n";
    let temp = dir.join(format!(".{component}.{stage}.{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&temp)
        .map_err(io(&temp))?;
    file.write_all(text.as_bytes()).map_err(io(&temp))?;
    file.sync_all().map_err(io(&temp))?;
    std::fs::rename(&temp, &path).map_err(io(&path))?;
    drop(guard);
    let lock = Lock {
        path,
        run: holder.run.clone(),
        released: false,
    };
    Ok(match previous {
        None => Acquired::Free(lock),
        Some(previous) => Acquired::TookOver { lock, previous },
    })
}

impl Lock {
    /// Removes the lock file if it is still this run's.
    pub fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        remove_if_held_by(&self.path, &self.run)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.released {
            let _ = remove_if_held_by(&self.path, &self.run);
        }
    }
}

fn remove_if_held_by(path: &Path, run: &str) -> Result<(), LockError> {
    let held_by_us = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<LockHolder>(&t).ok())
        .is_some_and(|h| h.run == run);
    if held_by_us {
        std::fs::remove_file(path).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Which lock `release unlock` means.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The lock of this run id.
    Run(&'a str),
    /// A lock file that is not a lock record.
    Corrupt,
}

/// What `release unlock` removed: the holder, or the raw content of a corrupt file.
#[derive(Debug)]
pub enum Removed {
    Holder(LockHolder),
    Corrupt { path: PathBuf, content: String },
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removed::Holder(holder) => write!(f, "the lock of {holder}"),
            Removed::Corrupt { path, .. } => write!(f, "the corrupt lock file {}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("the lock of {component} at {stage} is held by {holder}, not by run {asked}")]
    OtherRun {
        component: String,
        stage: String,
        asked: String,
        holder: Box<LockHolder>,
    },
    #[error("the lock file {path} is a lock record (run {}), not a corrupt file", holder.run)]
    NotCorrupt {
        path: PathBuf,
        holder: Box<LockHolder>,
    },
    #[error(
        "the lock file {path} is corrupt (its content is not a lock record), not the lock of run {asked}"
    )]
    Corrupt { path: PathBuf, asked: String },
    #[error("{holder} is alive on this host: it is not a stale lock, so it stays")]
    Live {
        holder: Box<LockHolder>,
        /// The live process's command line.
        command: Option<String>,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Removes a stale lock (`release unlock`): one of another host, one whose process on this
/// host is gone or cannot be confirmed to be the holder, or a corrupt file. The lock of a
/// live, confirmed holder on this host is never removed: removing it lets a second run go
/// beside the first.
pub fn force_remove(
    dir: &Path,
    component: &str,
    stage: &str,
    target: Target<'_>,
) -> Result<Option<Removed>, UnlockError> {
    let path = lock_path(dir, component, stage);
    // The same guard as `acquire`: no run takes the lock while it is looked at.
    std::fs::create_dir_all(dir).map_err(|source| LockError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let guard_path = dir.join(".guard");
    let io = |source| LockError::Io {
        path: guard_path.clone(),
        source,
    };
    let guard = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard_path)
        .map_err(io)?;
    guard.lock().map_err(io)?;
    let Some(holder) = read(dir, component, stage)? else {
        return Ok(None);
    };
    let removed = match (target, holder.is_corrupt()) {
        (Target::Corrupt, true) => Removed::Corrupt {
            content: std::fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned())
                .unwrap_or_default(),
            path: path.clone(),
        },
        (Target::Corrupt, false) => {
            return Err(UnlockError::NotCorrupt {
                path,
                holder: Box::new(holder),
            });
        }
        (Target::Run(run), true) => {
            return Err(UnlockError::Corrupt {
                path,
                asked: run.to_owned(),
            });
        }
        (Target::Run(run), false) if holder.run != run => {
            return Err(UnlockError::OtherRun {
                component: component.to_owned(),
                stage: stage.to_owned(),
                asked: run.to_owned(),
                holder: Box::new(holder),
            });
        }
        (Target::Run(_), false) => {
            if holder.host == this_host() && liveness(&holder) == Liveness::Alive {
                return Err(UnlockError::Live {
                    command: process_command(holder.pid),
                    holder: Box::new(holder),
                });
            }
            Removed::Holder(holder)
        }
    };
    std::fs::remove_file(&path).map_err(|source| LockError::Io { path, source })?;
    drop(guard);
    Ok(Some(removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str, pid: u32) -> LockHolder {
        LockHolder {
            run: run.into(),
            pid,
            host: this_host(),
            actor: "t@example.com".into(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    #[test]
    fn second_acquire_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::Free(lock) = acquire(
            dir.path(),
            "api",
            "production",
            &holder("r1", std::process::id()),
        )
        .unwrap() else {
            panic!("fresh lock expected");
        };
        let err = acquire(
            dir.path(),
            "api",
            "production",
            &holder("r2", std::process::id()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("run r1"), "{err}");
        lock.release().unwrap();
        assert!(read(dir.path(), "api", "production").unwrap().is_none());
    }

    #[test]
    fn a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that cannot be alive: beyond the kernel's pid_max.
        std::fs::write(
            lock_path(dir.path(), "api", "staging"),
            serde_json::to_string(&holder("old", 4_000_000)).unwrap(),
        )
        .unwrap();
        match acquire(
            dir.path(),
            "api",
            "staging",
            &holder("new", std::process::id()),
        )
        .unwrap()
        {
            Acquired::TookOver { previous, .. } => assert_eq!(previous.run, "old"),
            Acquired::Free(_) => panic!("expected a takeover"),
        }
    }

    #[test]
    fn another_hosts_lock_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = holder("far", 4_000_000);
        other.host = "elsewhere".into();
        std::fs::write(
            lock_path(dir.path(), "api", "staging"),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        let err = acquire(dir.path(), "api", "staging", &holder("new", 1)).unwrap_err();
        assert!(matches!(
            err,
            LockError::Held {
                other_host: true,
                ..
            }
        ));
        assert!(force_remove(dir.path(), "api", "staging", Target::Run("wrong")).is_err());
        assert!(matches!(
            force_remove(dir.path(), "api", "staging", Target::Run("far")).unwrap(),
            Some(Removed::Holder(h)) if h.run == "far"
        ));
    }

    #[test]
    fn a_live_holder_on_this_host_is_never_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let mut me = holder("live", std::process::id());
        me.started_at = chrono::Utc::now().to_rfc3339();
        std::fs::write(
            lock_path(dir.path(), "api", "staging"),
            serde_json::to_string(&me).unwrap(),
        )
        .unwrap();
        assert_eq!(liveness(&me), Liveness::Alive);
        let err = force_remove(dir.path(), "api", "staging", Target::Run("live")).unwrap_err();
        assert!(matches!(err, UnlockError::Live { .. }), "{err}");
        assert!(read(dir.path(), "api", "staging").unwrap().is_some());
    }

    #[test]
    fn a_lock_from_before_boot_is_dead_whatever_its_pid() {
        // This process is alive, but the lock is older than the host's last boot.
        let mut old = holder("old", std::process::id());
        old.started_at = "2000-01-01T00:00:00Z".into();
        assert_eq!(liveness(&old), Liveness::Dead);
    }

    #[test]
    fn a_pid_younger_than_its_lock_is_unconfirmed() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // The parent may resume (vfork) before the kernel has set the child's arguments:
        // wait until its command line reads as `sleep 5`.
        let cmdline = format!("/proc/{}/cmdline", child.id());
        for _ in 0..200 {
            if std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sleep")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut lock = holder("reused", child.id());
        lock.started_at = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
        let state = liveness(&lock);
        let _ = child.kill();
        let _ = child.wait();
        let Liveness::Unconfirmed(why) = state else {
            panic!("expected unconfirmed, got {state:?}");
        };
        assert!(why.contains("sleep 5"), "{why}");
    }

    #[test]
    fn a_corrupt_lock_blocks_and_names_its_file_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(lock_path(dir.path(), "api", "staging"), "").unwrap();
        let err = acquire(dir.path(), "api", "staging", &holder("new", 1)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("api.staging.lock"), "{text}");
        assert!(text.contains("not a lock record"), "{text}");
        assert!(!text.contains("unknown"), "{text}");
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("--corrupt") && hint.contains("--reason"),
            "{hint}"
        );
        assert!(matches!(
            force_remove(dir.path(), "api", "staging", Target::Run("anything")),
            Err(UnlockError::Corrupt { .. })
        ));
        assert!(matches!(
            force_remove(dir.path(), "api", "staging", Target::Corrupt),
            Ok(Some(Removed::Corrupt { .. }))
        ));
    }
}
