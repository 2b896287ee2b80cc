//! Runs the real `release` binary in a temporary folder with a cleared environment: pinned
//! HOME, no global git config, no colour, so that output is the same on every machine.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::CommandCargoExt;

pub(crate) struct TestEnv {
    dir: tempfile::TempDir,
}

/// What a run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Runs `command` to the end and keeps what it did.
    pub(crate) fn of(command: &mut std::process::Command) -> Run {
        let output = command.output().expect("run release");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// For snapshots: exit code, then stdout and stderr.
    pub(crate) fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub(crate) fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "unexpected exit code\n{}",
            self.transcript()
        );
        self
    }

    #[track_caller]
    pub(crate) fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.transcript()
        );
        self
    }

    #[track_caller]
    pub(crate) fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.transcript()
        );
        self
    }
}

impl TestEnv {
    /// An empty folder.
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("release-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join(".home")).expect("home");
        Self { dir }
    }

    /// A folder after `release init`: release.yaml and the default runbooks.
    pub(crate) fn initialized() -> Self {
        let env = Self::new();
        env.release(&["init"]).assert_code(0);
        env
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file (creating folders), replacing what was there.
    pub(crate) fn write(&self, relative: &str, content: &str) -> &Self {
        let path = self.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
        self
    }

    pub(crate) fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.join(relative)).expect("read")
    }

    /// Runs `release ARGS` in the folder.
    pub(crate) fn release(&self, args: &[&str]) -> Run {
        self.release_in(self.path(), args)
    }

    /// Runs `release ARGS` in another folder, with this environment.
    pub(crate) fn release_in(&self, cwd: &Path, args: &[&str]) -> Run {
        let mut command = self.command();
        command.current_dir(cwd).args(args);
        Run::of(&mut command)
    }

    /// Runs `release ARGS` in the folder with extra environment variables.
    pub(crate) fn release_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut command = self.command();
        command.args(args).envs(vars.iter().copied());
        Run::of(&mut command)
    }

    /// `release` as every test runs it, in the folder: a cleared environment with PATH, a
    /// pinned HOME, USER `tester`, no global or system git config, no colour, UTC, and no
    /// standard input.
    pub(crate) fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::cargo_bin("release").expect("release binary");
        command
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.join(".home"))
            .env("USER", "tester")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::null());
        command
    }
}
