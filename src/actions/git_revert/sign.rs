//! Signing the revert commits as `git commit` signs when `commit.gpgSign` is on: `openpgp`
//! (`gpg`), X.509 (`gpgsm`) or SSH (`ssh-keygen -Y sign`), chosen by `gpg.format`, with
//! git's config keys, git's programs and git's arguments. libgit2 signs nothing itself:
//! it stores the signature it is given in the commit's `gpgsig` header.
//!
//! Unlike a step's processes, the signing program stays in release's process group, as git
//! runs it: it may ask for a passphrase on the terminal (ssh-keygen reads `/dev/tty`, which
//! would stop it in a group of its own). Ctrl-C reaches it directly, and a deadline (the
//! step's `timeout`, else two minutes) kills it if nobody answers.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use git2::{Config, Repository};

use super::RevertError;
use crate::engine::process::{resolve_program, why_not_runnable};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    OpenPgp,
    X509,
    Ssh,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::OpenPgp => "openpgp",
            Format::X509 => "x509",
            Format::Ssh => "ssh",
        }
    }
}

/// The key `user.signingKey` names, as git reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    /// A key id (or, unset, the committer's `Name <email>`) for gpg or gpgsm.
    Id(String),
    /// An SSH key file (`~/` expanded): the private key, or the public one of an agent's.
    File(PathBuf),
    /// An SSH public key written in the config (`key::ssh-…`, or `ssh-…`): its private
    /// key is in ssh-agent.
    Literal(String),
}

/// How git would sign a commit in this repository.
#[derive(Clone, Debug)]
pub(super) struct Signer {
    format: Format,
    program: String,
    key: Key,
    /// Where git runs the program and resolves a relative key path: the work tree's top.
    cwd: PathBuf,
}

/// How long a signing program may take when the step sets no `timeout`: time for a
/// passphrase or a hardware key's touch, not for a run left waiting unattended.
const SIGNING_TIMEOUT: Duration = Duration::from_secs(120);

/// The signer git's config asks for; `None` when `commit.gpgSign` is off (git's default).
pub(super) fn configured(repo: &Repository) -> Result<Option<Signer>, String> {
    let config = repo
        .config()
        .and_then(|mut c| c.snapshot())
        .map_err(|e| format!("cannot read git's config: {}", e.message()))?;
    if !config.get_bool("commit.gpgsign").unwrap_or(false) {
        return Ok(None);
    }
    let format = match config.get_string("gpg.format").ok().as_deref() {
        None | Some("openpgp") => Format::OpenPgp,
        Some("x509") => Format::X509,
        Some("ssh") => Format::Ssh,
        Some(other) => {
            return Err(format!(
                "commit.gpgSign is on, but gpg.format is `{other}`, which git does not know either; set it to openpgp, x509 or ssh"
            ));
        }
    };
    let cwd = repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf();
    let program = program(&config, format);
    // As a path, `~/` expanded as git's `interpolate_path` does (libgit2's `get_path`); a
    // `key::` literal comes back as written.
    let signing_key = config
        .get_path("user.signingkey")
        .map(|p| p.display().to_string())
        .or_else(|_| config.get_string("user.signingkey"))
        .ok();
    let key = match (format, signing_key) {
        (Format::Ssh, None) => {
            return Err(
                "commit.gpgSign is on with gpg.format ssh, but user.signingKey is not set (gpg.ssh.defaultKeyCommand is not run); set it to your key (`git config user.signingKey ~/.ssh/id_ed25519.pub`)".into(),
            );
        }
        (Format::Ssh, Some(key)) => ssh_key(&key, &cwd),
        (_, Some(key)) => Key::Id(key),
        (_, None) => Key::Id(committer(repo)?),
    };
    Ok(Some(Signer {
        format,
        program,
        key,
        cwd,
    }))
}

/// `gpg.<format>.program`, else (for `openpgp`) the older `gpg.program`, else git's default.
/// Read as paths (`~/` expanded), as git reads them.
fn program(config: &Config, format: Format) -> String {
    let path = |key: &str| config.get_path(key).ok().map(|p| p.display().to_string());
    let own = path(&format!("gpg.{}.program", format.name()));
    let legacy = || match format {
        Format::OpenPgp => path("gpg.program"),
        _ => None,
    };
    own.or_else(legacy).unwrap_or_else(|| {
        match format {
            Format::OpenPgp => "gpg",
            Format::X509 => "gpgsm",
            Format::Ssh => "ssh-keygen",
        }
        .to_owned()
    })
}

/// What git signs with when `user.signingKey` is unset: the committer's `Name <email>`,
/// as git finds the committer (its config, or `GIT_COMMITTER_NAME` and `_EMAIL`).
fn committer(repo: &Repository) -> Result<String, String> {
    let committer = repo.committer_from_env().map_err(|_| {
        "commit.gpgSign is on, but neither user.signingKey nor the committer (user.name, user.email) names a key".to_owned()
    })?;
    Ok(format!(
        "{} <{}>",
        String::from_utf8_lossy(committer.name_bytes()),
        String::from_utf8_lossy(committer.email_bytes())
    ))
}

/// `user.signingKey` for SSH (`~/` already expanded): a public key written out (`key::…`,
/// or git's older `ssh-…`) or a key file, a relative path from the work tree's top.
fn ssh_key(value: &str, cwd: &Path) -> Key {
    if let Some(literal) = value.strip_prefix("key::") {
        return Key::Literal(literal.to_owned());
    }
    if value.starts_with("ssh-") {
        return Key::Literal(value.to_owned());
    }
    Key::File(cwd.join(value))
}

impl Signer {
    /// What the dry-run can tell without signing (which may ask for a passphrase): the
    /// program is found, an SSH key file exists, ssh-agent is there for a key it must hold.
    /// Returns what would sign.
    pub(super) fn check(&self) -> Result<String, String> {
        if resolve_program(&self.program, &self.cwd).is_none() {
            return Err(format!(
                "commit.gpgSign is on, but {}: install it or set gpg.{}.program",
                why_not_runnable(&self.program, &self.cwd),
                self.format.name()
            ));
        }
        match &self.key {
            Key::File(path) if !path.is_file() => Err(format!(
                "commit.gpgSign is on, but the SSH key of user.signingKey ({}) is not found; fix user.signingKey",
                path.display()
            )),
            Key::Literal(_) if std::env::var_os("SSH_AUTH_SOCK").is_none() => Err(
                "commit.gpgSign is on and user.signingKey is a public key, whose private key ssh-agent must hold, but SSH_AUTH_SOCK is not set: start ssh-agent and `ssh-add` the key".into(),
            ),
            _ => Ok(format!(
                "the commits would be signed as git signs them ({}; the key is not tried: it may ask for a passphrase)",
                self.describe()
            )),
        }
    }

    fn describe(&self) -> String {
        match &self.key {
            Key::Id(id) => format!("{} key {id}, with {}", self.format.name(), self.program),
            Key::File(path) => format!("ssh key {}, with {}", path.display(), self.program),
            Key::Literal(_) => format!("ssh key from ssh-agent, with {}", self.program),
        }
    }

    /// The signature of `payload` (a commit as libgit2 would write it), made as git makes
    /// it, without its last newline (libgit2 adds the header's own). The program is killed
    /// past `timeout` (the step's, else [`SIGNING_TIMEOUT`]).
    pub(super) fn sign(
        &self,
        payload: &str,
        timeout: Option<Duration>,
    ) -> Result<String, RevertError> {
        let limit = timeout.unwrap_or(SIGNING_TIMEOUT);
        let signature = match &self.key {
            Key::Id(id) => self.sign_gpg(payload, id, limit)?,
            Key::File(path) => self.sign_ssh(payload, path, false, limit)?,
            Key::Literal(key) => {
                let file = temp_file(".git_signing_key_tmp", key.as_bytes())?;
                self.sign_ssh(payload, file.path(), true, limit)?
            }
        };
        Ok(signature.trim_end_matches('\n').to_owned())
    }

    /// `gpg --status-fd=2 -bsau KEY` (gpgsm alike), the payload on stdin: git's call. A
    /// signature counts only with gpg's `SIG_CREATED` status line, as git checks.
    fn sign_gpg(&self, payload: &str, id: &str, limit: Duration) -> Result<String, RevertError> {
        let mut child = Command::new(&self.program)
            .args(["--status-fd=2", "-bsau", id])
            .current_dir(&self.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.cannot_run(&e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // gpg may exit before reading it all; its status says so below.
            let _ = stdin.write_all(payload.as_bytes());
        }
        let out = self.finish(child, limit)?;
        let status = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !status.contains("[GNUPG:] SIG_CREATED ") {
            return Err(self.failed(&status));
        }
        String::from_utf8(out.stdout).map_err(|_| self.failed("its signature is not text"))
    }

    /// `ssh-keygen -Y sign -n git -f KEY [-U] FILE`, which writes FILE.sig: git's call,
    /// `-U` when the key is a public key whose private half is in ssh-agent.
    fn sign_ssh(
        &self,
        payload: &str,
        key: &Path,
        agent: bool,
        limit: Duration,
    ) -> Result<String, RevertError> {
        let buffer = temp_file(".git_signing_buffer_tmp", payload.as_bytes())?;
        let mut command = Command::new(&self.program);
        command.args(["-Y", "sign", "-n", "git", "-f"]).arg(key);
        if agent {
            command.arg("-U");
        }
        let child = command
            .arg(buffer.path())
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.cannot_run(&e))?;
        let out = self.finish(child, limit);
        let sig = PathBuf::from(format!("{}.sig", buffer.path().display()));
        let signature = std::fs::read_to_string(&sig);
        let _ = std::fs::remove_file(&sig);
        let out = out?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let why = if stderr.contains("usage:") {
                "ssh-keygen -Y sign needs OpenSSH 8.2p1 or later".into()
            } else {
                stderr.into_owned()
            };
            return Err(self.failed(&why));
        }
        signature.map_err(|e| self.failed(&format!("no signature was written ({e})")))
    }

    /// Waits for the signing program, reading what it prints meanwhile; past `limit` (it
    /// may be waiting for a passphrase nobody types) it is killed and nothing is signed.
    fn finish(&self, mut child: Child, limit: Duration) -> Result<Output, RevertError> {
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            pipe.map(|mut pipe| {
                std::thread::spawn(move || {
                    let mut bytes = Vec::new();
                    let _ = pipe.read_to_end(&mut bytes);
                    bytes
                })
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RevertError::Refused(format!(
                        "commit.gpgSign is on, but signing the revert commit ({}) did not finish within {} (is it waiting for a passphrase or a hardware key?); nothing was changed: {}, or give the step a longer `timeout`",
                        self.describe(),
                        if limit.as_secs() >= 1 {
                            format!("{} s", limit.as_secs())
                        } else {
                            format!("{} ms", limit.as_millis())
                        },
                        self.try_command()
                    )));
                }
                Err(e) => return Err(self.cannot_run(&e)),
            }
        };
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Ok(Output {
            status,
            stdout: join(stdout),
            stderr: join(stderr),
        })
    }

    fn cannot_run(&self, e: &std::io::Error) -> RevertError {
        RevertError::Refused(format!(
            "commit.gpgSign is on, but `{}` cannot run ({e}); nothing was changed",
            self.program
        ))
    }

    fn failed(&self, why: &str) -> RevertError {
        let why = why
            .lines()
            .filter(|l| !l.starts_with("[GNUPG:]"))
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_owned();
        RevertError::Refused(format!(
            "commit.gpgSign is on, but signing the revert commit failed ({}){}; nothing was changed: {}, or turn signing off for this repository (`git config commit.gpgSign false`)",
            self.describe(),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            },
            self.try_command()
        ))
    }

    /// A command that signs a test text as the revert would, changing nothing.
    fn try_command(&self) -> String {
        let program = self.program.clone();
        let argv: Vec<String> = match &self.key {
            Key::Id(id) => vec![program, "-bsau".into(), id.clone()],
            Key::File(path) => {
                let mut argv = [program.as_str(), "-Y", "sign", "-n", "git", "-f"]
                    .map(str::to_owned)
                    .to_vec();
                argv.push(path.display().to_string());
                argv
            }
            Key::Literal(_) => {
                return "check that ssh-agent holds the key of user.signingKey (`ssh-add -L` lists them)".into();
            }
        };
        format!(
            "`echo test | {}` tries the same key",
            crate::actions::run::show_argv(&argv)
        )
    }
}

/// A temporary file holding `bytes`, removed when dropped.
fn temp_file(prefix: &str, bytes: &[u8]) -> Result<tempfile::NamedTempFile, RevertError> {
    let io = |e: std::io::Error| {
        RevertError::Refused(format!(
            "cannot write a temporary file for signing ({e}); nothing was changed"
        ))
    };
    let mut file = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile()
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_are_read_as_git_reads_them() {
        let top = Path::new("/work/tree");
        assert_eq!(
            ssh_key("key::ssh-ed25519 AAAA x", top),
            Key::Literal("ssh-ed25519 AAAA x".into())
        );
        assert_eq!(
            ssh_key("ssh-ed25519 AAAA", top),
            Key::Literal("ssh-ed25519 AAAA".into())
        );
        assert_eq!(ssh_key("/k/id.pub", top), Key::File("/k/id.pub".into()));
        assert_eq!(
            ssh_key("keys/id.pub", top),
            Key::File("/work/tree/keys/id.pub".into()),
            "relative to the work tree's top"
        );
    }

    /// Every key the test relies on is set in the repository's own config, which comes
    /// before the user's global one.
    #[test]
    fn signing_is_read_from_git_config_with_gits_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let mut config = repo
            .config()
            .unwrap()
            .open_level(git2::ConfigLevel::Local)
            .unwrap();
        config.set_str("user.name", "T").unwrap();
        config.set_str("user.email", "t@e").unwrap();
        config.set_bool("commit.gpgsign", false).unwrap();
        assert!(configured(&repo).unwrap().is_none(), "off");
        config.set_bool("commit.gpgsign", true).unwrap();
        config.set_str("gpg.format", "openpgp").unwrap();
        config.set_str("gpg.program", "gpg").unwrap();
        let gpg = configured(&repo).unwrap().unwrap();
        assert_eq!(
            (gpg.format, gpg.program.as_str(), &gpg.key),
            (Format::OpenPgp, "gpg", &Key::Id("T <t@e>".into()))
        );
        config.set_str("gpg.program", "gpg2").unwrap();
        config.set_str("gpg.format", "x509").unwrap();
        config.set_str("gpg.x509.program", "gpgsm").unwrap();
        let x509 = configured(&repo).unwrap().unwrap();
        assert_eq!(
            (x509.format, x509.program.as_str()),
            (Format::X509, "gpgsm")
        );
        config.set_str("gpg.format", "ssh").unwrap();
        // (Unless the user's global config names a key.)
        let unset = configured(&repo).unwrap_err();
        assert!(unset.contains("user.signingKey is not set"), "{unset}");
        config.set_str("user.signingkey", "~/.ssh/id").unwrap();
        let Key::File(home) = configured(&repo).unwrap().unwrap().key else {
            panic!("a file")
        };
        assert!(
            home.ends_with(".ssh/id") && home.is_absolute() && !home.starts_with(dir.path()),
            "`~/` is the home folder: {home:?}"
        );
        config
            .set_str("user.signingkey", "/nowhere/id.pub")
            .unwrap();
        config.set_str("gpg.ssh.program", "sh").unwrap();
        let missing = configured(&repo).unwrap().unwrap().check().unwrap_err();
        assert!(
            missing.contains("/nowhere/id.pub) is not found"),
            "{missing}"
        );
        config.set_str("gpg.ssh.program", "no-such-signer").unwrap();
        let absent = configured(&repo).unwrap().unwrap().check();
        assert!(
            absent
                .unwrap_err()
                .contains("`no-such-signer` is not found on PATH"),
            "program checked first"
        );
        config.set_str("gpg.format", "pgp").unwrap();
        assert!(configured(&repo).unwrap_err().contains("`pgp`"));
    }

    /// A signing program that does not finish is killed at the deadline, and says why.
    #[test]
    fn a_signer_that_hangs_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("slow-gpg");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let signer = Signer {
            format: Format::OpenPgp,
            program: script.display().to_string(),
            key: Key::Id("T <t@e>".into()),
            cwd: dir.path().to_path_buf(),
        };
        let started = Instant::now();
        let err = signer
            .sign("tree 0\n", Some(Duration::from_millis(300)))
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
        assert!(err.contains("did not finish within 300 ms"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
    }
}
