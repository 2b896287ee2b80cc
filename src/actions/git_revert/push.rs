//! Pushing the branch to the configured remote: credentials from ssh-agent, a token
//! variable (`GIT_TOKEN`, then `GITHUB_TOKEN`) or git's credential helpers, and rejected
//! updates reported as such. Tokens are never shown: URLs are printed without user info.

use std::cell::RefCell;

use git2::{Cred, CredentialType, ErrorCode, PushOptions, RemoteCallbacks, Repository};

use super::{RevertError, short};

/// The variables a token for HTTPS remotes is read from, in this order.
const TOKEN_VARIABLES: [&str; 2] = ["GIT_TOKEN", "GITHUB_TOKEN"];

/// The remote as the dry-run resolved it.
#[derive(Clone, Debug)]
pub struct PushTarget {
    /// The push URL, without user info.
    pub url: String,
    /// What may make the push fail, known without the network.
    pub warnings: Vec<String>,
}

/// A URL for people: user info (which may hold a token) removed.
fn shown_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        format!("{scheme}://{host}{path}")
    } else {
        url.to_owned()
    }
}

/// The folder a local remote URL names, relative paths taken from the work tree's top (the
/// folder git runs in), as git does; `None` for a network URL.
fn local_remote(repo: &Repository, url: &str) -> Option<std::path::PathBuf> {
    let path = if let Some(rest) = url.strip_prefix("file://") {
        rest
    } else if url.contains("://") {
        return None;
    } else {
        // `host:path` (scp-like) has a colon before any slash.
        if let Some(colon) = url.find(':')
            && !url[..colon].contains('/')
        {
            return None;
        }
        url
    };
    let path = std::path::Path::new(path);
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    let base = repo.workdir().unwrap_or_else(|| repo.path());
    Some(base.join(path))
}

fn token() -> Option<String> {
    TOKEN_VARIABLES
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|t| !t.trim().is_empty()))
}

/// The remote's push URL, and what the dry-run can tell about the push without the network.
pub fn resolve_remote(
    repo: &Repository,
    name: &str,
    branch: &str,
) -> Result<PushTarget, RevertError> {
    let remote = repo.find_remote(name).map_err(|_| {
        RevertError::Refused(format!(
            "remote `{name}` (release.yaml's repository.remote) is not configured in this repository; add it with `git remote add {name} URL` or change repository.remote"
        ))
    })?;
    let url = remote
        .pushurl_bytes()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| remote.url_bytes());
    let url = Some(String::from_utf8_lossy(url).into_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            RevertError::Refused(format!(
                "remote `{name}` has no URL; set one with `git remote set-url {name} URL`"
            ))
        })?;
    if let Some(path) = local_remote(repo, &url) {
        match std::fs::metadata(&path) {
            Err(_) => {
                return Err(RevertError::Refused(format!(
                    "remote `{name}` is the folder {}, which does not exist; fix it with `git remote set-url {name} PATH`",
                    path.display()
                )));
            }
            Ok(meta)
                if !meta.is_dir()
                    || Repository::open_bare(&path).is_err()
                        && Repository::open(&path).is_err() =>
            {
                return Err(RevertError::Refused(format!(
                    "remote `{name}` is {}, which is not a git repository; fix it with `git remote set-url {name} PATH`",
                    path.display()
                )));
            }
            Ok(_) => {}
        }
    }
    let mut warnings = Vec::new();
    let tracking = format!("refs/remotes/{name}/{branch}");
    if let (Ok(theirs), Ok(ours)) = (repo.refname_to_id(&tracking), repo.refname_to_id("HEAD"))
        && theirs != ours
        && !repo.graph_descendant_of(ours, theirs).unwrap_or(true)
    {
        warnings.push(format!(
            "as of the last fetch, {name}/{branch} has commits that {branch} lacks ({}): the push would be rejected; pull first",
            short(theirs)
        ));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let has_userinfo = url.split_once("://").is_some_and(|(_, rest)| {
            rest.split('/')
                .next()
                .is_some_and(|authority| authority.contains('@'))
        });
        let has_helper = repo
            .config()
            .ok()
            .and_then(|c| c.get_string("credential.helper").ok())
            .is_some_and(|h| !h.is_empty());
        if token().is_none() && !has_helper && !has_userinfo {
            warnings.push(format!(
                "no credentials for pushing over HTTPS: set {} (or {}), or configure a git credential helper",
                TOKEN_VARIABLES[0], TOKEN_VARIABLES[1]
            ));
        }
    } else if let Some(host) = ssh_host(&url) {
        if std::env::var_os("SSH_AUTH_SOCK").is_none() {
            warnings.push(
                "SSH_AUTH_SOCK is not set: no ssh-agent to authenticate the push over SSH".into(),
            );
        }
        if let Some(settings) = ssh_config_alias(host) {
            warnings.push(format!(
                "`{host}` is a Host entry of ~/.ssh/config ({settings}), which libgit2 does not read: the push would connect to `{host}` as a host name; put the real host in the push URL (`git remote set-url --push {name} USER@HOST:PATH`)"
            ));
        }
    }
    Ok(PushTarget {
        url: shown_url(&url),
        warnings,
    })
}

/// The host of an SSH remote URL (`ssh://[user@]host[:port]/path` or scp-like
/// `[user@]host:path`); `None` for any other URL.
fn ssh_host(url: &str) -> Option<&str> {
    let lower = url.to_ascii_lowercase();
    let authority = if lower.starts_with("ssh://") || lower.starts_with("git+ssh://") {
        let rest = url.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    } else if !url.contains("://") && !url.starts_with('/') {
        let colon = url.find(':')?;
        if url[..colon].contains('/') {
            return None;
        }
        &url[..colon]
    } else {
        return None;
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// The settings `~/.ssh/config` gives `host` that change where or as whom ssh connects
/// ([`alias_settings`]); `None` when there are none or no such file. OpenSSH applies them;
/// libgit2's SSH (libssh2) reads no such file.
fn ssh_config_alias(host: &str) -> Option<String> {
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read_to_string(std::path::Path::new(&home).join(".ssh/config")).ok()?;
    alias_settings(&text, host)
}

/// In an ssh config `text`, the keys among `HostName`, `Port`, `User`, `IdentityFile`,
/// `ProxyCommand` and `ProxyJump` set in a `Host` block whose line names `host` exactly (a
/// pattern like `*` is not counted: it holds defaults, not an alias).
fn alias_settings(text: &str, host: &str) -> Option<String> {
    const CHANGES: [&str; 6] = [
        "hostname",
        "port",
        "user",
        "identityfile",
        "proxycommand",
        "proxyjump",
    ];
    let mut in_block = false;
    let mut found: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        let (key, value) = line
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or((line, ""));
        let value = value.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
        let lower = key.to_ascii_lowercase();
        if lower == "host" {
            in_block = value.split_whitespace().any(|p| p == host);
        } else if lower == "match" {
            in_block = false;
        } else if in_block
            && CHANGES.contains(&lower.as_str())
            && !found.iter().any(|f| f.eq_ignore_ascii_case(key))
        {
            found.push(key);
        }
    }
    (!found.is_empty()).then(|| found.join(", "))
}

/// The kinds of credentials offered so far, so that a refused one is not offered again
/// (libgit2 asks again after each refusal).
#[derive(Default)]
struct Tried(Vec<&'static str>);

impl Tried {
    /// True the first time `kind` is asked for.
    fn first(&mut self, kind: &'static str) -> bool {
        if self.0.contains(&kind) {
            return false;
        }
        self.0.push(kind);
        true
    }
}

/// The remote to push to, and the folder it names when that is a relative path: libgit2
/// takes a relative path from the process's folder, git from the work tree's top, so such
/// a remote is opened on the folder git means (the caller then moves the tracking branch).
fn open_remote<'r>(
    repo: &'r Repository,
    name: &str,
) -> Result<(git2::Remote<'r>, Option<std::path::PathBuf>), RevertError> {
    let cannot = || RevertError::git(format!("cannot open remote `{name}`"));
    let remote = repo.find_remote(name).map_err(cannot())?;
    let url = remote
        .pushurl_bytes()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| remote.url_bytes());
    let url = String::from_utf8_lossy(url).into_owned();
    let relative = Some(url.as_str())
        .filter(|u| !u.starts_with("file://") && !std::path::Path::new(u).is_absolute())
        .and_then(|u| local_remote(repo, u));
    match &relative {
        Some(path) => {
            let anonymous = repo
                .remote_anonymous(&path.to_string_lossy())
                .map_err(cannot())?;
            Ok((anonymous, relative))
        }
        None => Ok((remote, None)),
    }
}

/// Pushes `branch` to the same branch on `remote`. Returns a line saying what was pushed.
pub fn push_branch(
    repo: &Repository,
    remote_name: &str,
    branch: &str,
) -> Result<String, RevertError> {
    let target = resolve_remote(repo, remote_name, branch)?;
    let (mut remote, relative) = open_remote(repo, remote_name)?;
    let config = repo
        .config()
        .map_err(RevertError::git("cannot read git config"))?;
    let rejected: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
    let mut tried = Tried::default();
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        if allowed.contains(CredentialType::SSH_KEY) && tried.first("agent") {
            return Cred::ssh_key_from_agent(user);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if tried.first("token")
                && let Some(token) = token()
            {
                return Cred::userpass_plaintext(username.unwrap_or("x-access-token"), &token);
            }
            if tried.first("helper")
                && let Ok(cred) = Cred::credential_helper(&config, url, username)
            {
                return Ok(cred);
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && tried.first("default") {
            return Cred::default();
        }
        Err(git2::Error::from_str(&format!(
            "no accepted credentials: tried ssh-agent, {} / {} and git's credential helpers",
            TOKEN_VARIABLES[0], TOKEN_VARIABLES[1]
        )))
    });
    callbacks.push_update_reference(|refname, status| {
        if let Some(status) = status {
            rejected
                .borrow_mut()
                .push((refname.to_owned(), status.to_owned()));
        }
        Ok(())
    });
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let result = remote.push(&[refspec.as_str()], Some(&mut options));
    drop(options);
    let shown = format!("{remote_name} ({})", target.url);
    match result {
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            return Err(RevertError::Refused(format!(
                "push to {shown} rejected (non-fast-forward): {remote_name}/{branch} has commits that {branch} lacks; fetch and rebase (`git pull --rebase {remote_name} {branch}`), then push again"
            )));
        }
        Err(e) if e.class() == git2::ErrorClass::Http || e.code() == ErrorCode::Auth => {
            return Err(RevertError::Refused(format!(
                "push to {shown} failed: {}; set {} (or {}) for HTTPS, load a key into ssh-agent for SSH, or configure a git credential helper",
                e.message(),
                TOKEN_VARIABLES[0],
                TOKEN_VARIABLES[1]
            )));
        }
        Err(e) => {
            return Err(RevertError::Refused(format!(
                "push to {shown} failed: {}",
                e.message()
            )));
        }
        Ok(()) => {}
    }
    let rejected = rejected.into_inner();
    if !rejected.is_empty() {
        let what: Vec<String> = rejected
            .iter()
            .map(|(r, why)| format!("{r} ({why})"))
            .collect();
        return Err(RevertError::Refused(format!(
            "push to {shown} rejected by the remote: {}; fetch, reconcile and push again",
            what.join(", ")
        )));
    }
    if relative.is_some()
        && let Ok(head) = repo.refname_to_id(&format!("refs/heads/{branch}"))
    {
        // What a named remote's push would have done: the tracking branch follows.
        let _ = repo.reference(
            &format!("refs/remotes/{remote_name}/{branch}"),
            head,
            true,
            "push",
        );
    }
    Ok(format!("pushed {branch} to {shown}"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn ssh_hosts_and_config_aliases_are_read_as_openssh_reads_them() {
        use super::{alias_settings, ssh_host};
        assert_eq!(ssh_host("git@gh-work:org/repo.git"), Some("gh-work"));
        assert_eq!(
            ssh_host("ssh://git@host.example:2222/org/repo"),
            Some("host.example")
        );
        assert_eq!(ssh_host("https://github.com/org/repo"), None);
        assert_eq!(ssh_host("/srv/git/repo.git"), None);
        assert_eq!(ssh_host("../origin"), None);
        let config = "Host *\n  IdentityFile ~/.ssh/default\n\nHost gh-work gh-play\n  HostName github.com\n  User git\n  IdentityFile=~/.ssh/work\nMatch host x\n  Port 22\n";
        assert_eq!(
            alias_settings(config, "gh-work").as_deref(),
            Some("HostName, User, IdentityFile")
        );
        assert_eq!(
            alias_settings(config, "github.com"),
            None,
            "only `*` names it"
        );
        assert_eq!(alias_settings("Host other\n  Port 2\n", "gh-work"), None);
    }

    use super::{local_remote, shown_url};

    #[test]
    fn urls_are_shown_without_user_info() {
        assert_eq!(
            shown_url("https://x-access-token:s3cr3t@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            shown_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(shown_url("/srv/origin.git"), "/srv/origin.git");
    }

    #[test]
    fn local_remotes_are_taken_from_the_work_tree_top() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path().join("w")).unwrap();
        let top = repo.workdir().unwrap().to_path_buf();
        assert_eq!(local_remote(&repo, "../o.git"), Some(top.join("../o.git")));
        assert_eq!(
            local_remote(&repo, "/srv/o.git"),
            Some(std::path::PathBuf::from("/srv/o.git"))
        );
        assert_eq!(
            local_remote(&repo, "file:///srv/o.git"),
            Some(std::path::PathBuf::from("/srv/o.git"))
        );
        for network in [
            "git@github.com:o/r.git",
            "https://h/o.git",
            "ssh://h/o.git",
            "host:o.git",
        ] {
            assert_eq!(local_remote(&repo, network), None, "{network}");
        }
        assert!(
            local_remote(&repo, "./a:b").is_some(),
            "a slash before the colon: a path"
        );
    }
}
