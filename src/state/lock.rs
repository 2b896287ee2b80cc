//! One run at a time per component and stage (SPEC §8): a lock file under `.release/locks/`
//! holding the run id, pid, host, actor and start time, removed when the run ends. A lock
//! whose process is gone on this host is taken over (and the caller records that); a lock
//! from another host is only removed by `release unlock`.

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

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{component} at {stage} is locked by {holder}")]
    Held {
        component: String,
        stage: String,
        holder: Box<LockHolder>,
        /// True when the holder runs on another host (its liveness cannot be checked).
        other_host: bool,
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

/// Reads the holder of a lock, if any.
pub fn read(dir: &Path, component: &str, stage: &str) -> Result<Option<LockHolder>, LockError> {
    let path = lock_path(dir, component, stage);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(serde_json::from_str(&text).ok().or_else(|| {
            // An unreadable lock (torn write) still blocks, with what can be said of it.
            Some(LockHolder {
                run: "unknown".into(),
                pid: 0,
                host: "unknown".into(),
                actor: "unknown".into(),
                started_at: "unknown".into(),
            })
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Io { path, source }),
    }
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
    let mut previous = None;
    if let Some(current) = read(dir, component, stage)? {
        let same_host = current.host == holder.host;
        if same_host && current.pid != 0 && !alive(current.pid) {
            previous = Some(current);
        } else {
            return Err(LockError::Held {
                component: component.to_owned(),
                stage: stage.to_owned(),
                other_host: !same_host,
                holder: Box::new(current),
            });
        }
    }
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

/// Removes a lock by the run id it holds (`release unlock`). Returns the holder removed.
pub fn force_remove(
    dir: &Path,
    component: &str,
    stage: &str,
    run: &str,
) -> Result<Option<LockHolder>, LockError> {
    let Some(holder) = read(dir, component, stage)? else {
        return Ok(None);
    };
    if holder.run != run && holder.run != "unknown" {
        return Err(LockError::Held {
            component: component.to_owned(),
            stage: stage.to_owned(),
            holder: Box::new(holder),
            other_host: false,
        });
    }
    let path = lock_path(dir, component, stage);
    std::fs::remove_file(&path).map_err(|source| LockError::Io { path, source })?;
    Ok(Some(holder))
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
            started_at: "2026-11-24T00:00:00Z".into(),
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
        assert!(force_remove(dir.path(), "api", "staging", "wrong").is_err());
        assert_eq!(
            force_remove(dir.path(), "api", "staging", "far")
                .unwrap()
                .unwrap()
                .run,
            "far"
        );
    }
}
