//! `cache_clear` against real servers on loopback: a `redis-server` started per test on a
//! free port, and a wiremock HTTP server for purge requests. The library's functions are
//! driven directly; the binary runs dry-runs (and, once it can execute the action, real
//! runs) with the Redis URL and header secrets in its environment.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use release::actions::cache_clear::{PurgeRequest, clear_redis};
use release::engine::context::{StepOutputs, Templater, base_context};
use release::project::runbook::HttpPurge;
use release::project::spanned::Spanned;
use serde_json::Value;
use tokio::sync::watch;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{Run, TestEnv};

const PASSWORD: &str = "s3cret-redis-pass-9f2";
const TOKEN: &str = "purge-token-7c1e-secret";
const COMPONENT: &str = "player_experience";
const AUDIT: &str = ".release/audit.jsonl";

// ---------------------------------------------------------------------------------------
// A real Redis
// ---------------------------------------------------------------------------------------

/// A `redis-server` of its own on a free loopback port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    password: Option<&'static str>,
    /// Its working folder (a replica's primary writes its snapshot there).
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl RedisServer {
    fn start() -> Self {
        Self::start_with(None)
    }

    fn start_with(password: Option<&'static str>) -> Self {
        Self::start_args(password, &[])
    }

    /// A server started with more arguments (`--replicaof …`).
    fn start_args(password: Option<&'static str>, extra: &[String]) -> Self {
        // Another process may take the free port between the probe and the start: retry.
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(password) = password {
                command.args(["--requirepass", password]);
            }
            let child = command.spawn().expect("redis-server is installed");
            let mut server = Self {
                child,
                port,
                password,
                _dir: dir,
            };
            if server.wait_ready() {
                return server;
            }
            let _ = server.child.kill();
        }
        panic!("redis-server did not start");
    }

    /// Polls with PING until the server answers (PONG, or NOAUTH when it wants a password).
    fn wait_ready(&mut self) -> bool {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut answer = [0u8; 64];
                if stream.write_all(b"PING\r\n").is_ok()
                    && let Ok(n) = stream.read(&mut answer)
                {
                    let answer = String::from_utf8_lossy(&answer[..n]);
                    if answer.starts_with("+PONG") || answer.starts_with("-NOAUTH") {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn url(&self) -> String {
        match self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("url")
            .get_connection()
            .expect("connect")
    }

    /// `n` keys named `PREFIX:i`.
    fn fill(&self, prefix: &str, n: usize) {
        let mut con = self.connection();
        let mut mset = redis::cmd("MSET");
        for i in 0..n {
            mset.arg(format!("{prefix}:{i}")).arg(i);
        }
        mset.query::<()>(&mut con).expect("MSET");
    }

    /// 1,200 keys matching `px:*` (more than two SCAN batches) and 50 that do not.
    fn fill_standard(&self) {
        self.fill("px", 1_200);
        self.fill("other", 30);
        self.fill("pxx", 10);
        self.fill("orch:px", 10);
    }

    fn dbsize(&self) -> u64 {
        redis::cmd("DBSIZE")
            .query(&mut self.connection())
            .expect("DBSIZE")
    }

    fn count(&self, pattern: &str) -> usize {
        let keys: Vec<String> = redis::cmd("KEYS") // fine in a test; the action never does this
            .arg(pattern)
            .query(&mut self.connection())
            .expect("KEYS");
        keys.len()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

// ---------------------------------------------------------------------------------------
// The binary with secrets in its environment
// ---------------------------------------------------------------------------------------

/// Runs `release ARGS` as the harness does (cleared environment, pinned HOME…), plus `vars`.
fn release_with_env(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Run {
    env.release_with_env(args, vars)
}

/// The same, off the async runtime (a test's mock server keeps answering meanwhile).
async fn release_async(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let dir = env.path().to_path_buf();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let home = env.join(".home");
    tokio::task::spawn_blocking(move || {
        let output = Command::cargo_bin("release")
            .expect("release binary")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("USER", "tester")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .envs(vars)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run release");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("release task")
}

/// `release run rb/cache.yaml --component player_experience --stage staging EXTRA…`
fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "rb/cache.yaml",
        "--component",
        COMPONENT,
        "--stage",
        "staging",
    ];
    args.extend_from_slice(extra);
    args
}

/// A project whose `rb/cache.yaml` is this runbook.
fn project(runbook: &str) -> TestEnv {
    let env = TestEnv::initialized();
    env.write("rb/cache.yaml", runbook);
    env
}

/// Clears the component's keys (`px:*`), then writes what the step printed to a file.
const REDIS_RUNBOOK: &str = r#"steps:
  - id: caches
    cache_clear: { redis: { url_env: REDIS_URL, pattern: "{{ vars.redis_prefix }}:*" } }
  - id: record
    run: [sh, -c, 'printf %s "$1" > deleted.txt', record, "{{ steps.caches.stdout }}"]
"#;

fn records(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(env.join(AUDIT))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `step.finished` record of `step`.
fn finished(env: &TestEnv, step: &str) -> Value {
    records(env)
        .into_iter()
        .rfind(|r| r["kind"] == "step.finished" && r["data"]["step"] == step)
        .unwrap_or_else(|| panic!("no step.finished for {step}"))
}

/// `secret` appears nowhere the user or the log can see.
#[track_caller]
fn assert_hidden(env: &TestEnv, run: &Run, secret: &str) {
    let audit = std::fs::read_to_string(env.join(AUDIT)).unwrap_or_default();
    assert!(
        !run.stdout.contains(secret),
        "stdout shows it\n{}",
        run.transcript()
    );
    assert!(
        !run.stderr.contains(secret),
        "stderr shows it\n{}",
        run.transcript()
    );
    assert!(!audit.contains(secret), "the audit log holds it:\n{audit}");
}

// ---------------------------------------------------------------------------------------
// Redis through the library
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn redis_deletes_matching_keys_in_batches_and_keeps_the_others() {
    let redis = RedisServer::start();
    redis.fill_standard();
    let deleted = clear_redis(&redis.url(), "REDIS_URL", "px:*", false)
        .await
        .unwrap();
    assert_eq!(deleted, 1_200);
    assert_eq!(redis.count("px:*"), 0);
    assert_eq!(redis.dbsize(), 50, "keys not matching must stay");
    // Nothing left to delete: a second run deletes nothing and succeeds.
    let again = clear_redis(&redis.url(), "REDIS_URL", "px:*", false).await;
    assert_eq!(again, Ok(0));
}

#[tokio::test]
async fn redis_dry_run_counts_without_deleting() {
    let redis = RedisServer::start();
    redis.fill_standard();
    let counted = clear_redis(&redis.url(), "REDIS_URL", "px:*", true).await;
    assert_eq!(counted, Ok(1_200));
    assert_eq!(redis.dbsize(), 1_250, "a dry-run deleted keys");
    assert_eq!(
        clear_redis(&redis.url(), "REDIS_URL", "nothing:*", true).await,
        Ok(0)
    );
}

#[tokio::test]
async fn redis_unreachable_is_named_by_its_variable_not_its_url() {
    let port = closed_port();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    for dry_run in [true, false] {
        let error = clear_redis(&url, "REDIS_URL", "px:*", dry_run)
            .await
            .unwrap_err();
        assert!(
            error.contains("cannot connect to the Redis in REDIS_URL"),
            "{error}"
        );
        assert!(!error.contains(PASSWORD), "{error}");
        assert!(!error.contains(&port.to_string()), "{error}");
        assert!(!error.contains("127.0.0.1"), "{error}");
    }
}

#[tokio::test]
async fn redis_password_is_used_and_never_shown() {
    let redis = RedisServer::start_with(Some(PASSWORD));
    redis.fill("px", 3);
    assert_eq!(
        clear_redis(&redis.url(), "CACHE_URL", "px:*", true).await,
        Ok(3)
    );

    let wrong = format!("redis://:not-the-password-1@127.0.0.1:{}", redis.port);
    let error = clear_redis(&wrong, "CACHE_URL", "px:*", true)
        .await
        .unwrap_err();
    assert!(
        error.contains("the Redis in CACHE_URL refused the credentials"),
        "{error}"
    );
    assert!(!error.contains("not-the-password-1"), "{error}");

    let none = format!("redis://127.0.0.1:{}", redis.port);
    let error = clear_redis(&none, "CACHE_URL", "px:*", true)
        .await
        .unwrap_err();
    assert!(error.contains("needs a password"), "{error}");
    // With a database, selecting it is the command refused: the same hint.
    let error = clear_redis(&format!("{none}/3"), "CACHE_URL", "px:*", true)
        .await
        .unwrap_err();
    assert!(
        error.contains("the Redis in CACHE_URL needs a password and the URL has none"),
        "{error}"
    );
    assert_eq!(redis.dbsize(), 3);
}

/// Something else than Redis on the port: its parser's complaint, on one line.
#[tokio::test]
async fn a_server_that_is_not_redis_is_said_on_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.0 400 Bad Request\r\nServer: x\r\n\r\n<html>\n<p>no</p>\n</html>\n",
            );
        }
    });
    let error = clear_redis(
        &format!("redis://127.0.0.1:{port}"),
        "CACHE_URL",
        "px:*",
        true,
    )
    .await
    .unwrap_err();
    assert!(
        error.starts_with("cannot connect to the Redis in CACHE_URL: Incompatible type"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[tokio::test]
async fn redis_url_that_does_not_parse_is_named_by_its_variable() {
    let value = "htp:/cache.internal:6379/hunter2";
    let error = clear_redis(value, "REDIS_URL", "px:*", true)
        .await
        .unwrap_err();
    assert!(error.contains("the value of REDIS_URL"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

// ---------------------------------------------------------------------------------------
// HTTP purge through the library
// ---------------------------------------------------------------------------------------

fn purge(server: &MockServer) -> HttpPurge {
    HttpPurge {
        method: Spanned::unspanned("PURGE".into()),
        url: format!("{}/cache/{{{{ vars.redis_prefix }}}}?all=1", server.uri()),
        headers: [("Surrogate-Key".to_owned(), "{{ component }}".to_owned())].into(),
        headers_env: [("X-Api-Key".to_owned(), "PURGE_TOKEN".to_owned())].into(),
    }
}

fn templater() -> Templater {
    let base = base_context(&serde_json::json!({
        "component": COMPONENT,
        "vars": { "redis_prefix": "px" },
    }));
    Templater::new(&base, &StepOutputs::default())
}

/// Renders `purge` with the test's templates and `PURGE_TOKEN` = [`TOKEN`].
fn request(purge: &HttpPurge) -> Result<PurgeRequest, String> {
    // The binary chooses rustls's provider at start-up; a library caller does it too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let templates = templater();
    PurgeRequest::build(
        purge,
        |t| templates.render(t),
        |var| {
            if var == "PURGE_TOKEN" {
                Ok(TOKEN.to_owned())
            } else {
                Err(format!("environment variable {var} is not set"))
            }
        },
    )
}

fn no_cancel() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    std::mem::forget(tx);
    rx
}

#[tokio::test]
async fn purge_sends_method_path_and_headers() {
    let server = MockServer::start().await;
    Mock::given(method("PURGE"))
        .and(path("/cache/px"))
        .and(header("surrogate-key", COMPONENT))
        .and(header("x-api-key", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_string("purged 12 objects"))
        .expect(1)
        .mount(&server)
        .await;
    let request = request(&purge(&server)).unwrap();
    let answer = request
        .send(Duration::from_secs(5), no_cancel())
        .await
        .unwrap();
    assert_eq!((answer.status, answer.attempts), (200, 1));
    assert_eq!(answer.body, "purged 12 objects");
    let received = server.received_requests().await.unwrap();
    assert_eq!(received[0].url.query(), Some("all=1"));
}

#[tokio::test]
async fn purge_is_described_with_its_url_and_without_secrets() {
    let server = MockServer::start().await;
    let shown = request(&purge(&server)).unwrap().describe();
    let port = server.address().port();
    assert_eq!(
        shown,
        format!(
            "send PURGE http://127.0.0.1:{port}/cache/px?all=1 with headers Surrogate-Key, X-Api-Key (from PURGE_TOKEN)"
        )
    );
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn purge_retries_a_5xx_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("PURGE"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PURGE"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let answer = request(&purge(&server))
        .unwrap()
        .send(Duration::from_secs(5), no_cancel())
        .await
        .unwrap();
    assert_eq!((answer.status, answer.attempts), (204, 2));
}

#[tokio::test]
async fn purge_fails_on_a_4xx_without_retrying() {
    let server = MockServer::start().await;
    Mock::given(method("PURGE"))
        .respond_with(ResponseTemplate::new(403).set_body_string("bad key\nmore"))
        .expect(1)
        .mount(&server)
        .await;
    let error = request(&purge(&server))
        .unwrap()
        .send(Duration::from_secs(5), no_cancel())
        .await
        .unwrap_err();
    let port = server.address().port();
    assert_eq!(
        error,
        format!("PURGE http://127.0.0.1:{port}/cache/px?all=1 answered 403: bad key")
    );
}

#[tokio::test]
async fn purge_fails_when_every_attempt_is_a_5xx() {
    let server = MockServer::start().await;
    Mock::given(method("PURGE"))
        .respond_with(ResponseTemplate::new(502))
        .expect(3)
        .mount(&server)
        .await;
    let error = request(&purge(&server))
        .unwrap()
        .send(Duration::from_secs(5), no_cancel())
        .await
        .unwrap_err();
    assert!(
        error.ends_with("answered 502 (after 3 attempts)"),
        "{error}"
    );
}

#[tokio::test]
async fn purge_names_a_missing_header_variable() {
    let server = MockServer::start().await;
    let mut spec = purge(&server);
    spec.headers_env = [("Authorization".to_owned(), "CDN_TOKEN".to_owned())].into();
    let error = request(&spec).unwrap_err();
    assert_eq!(
        error,
        "environment variable CDN_TOKEN is not set: it holds header Authorization"
    );
}

// ---------------------------------------------------------------------------------------
// Dry-runs through the binary
// ---------------------------------------------------------------------------------------

#[test]
fn dry_run_counts_the_keys_deletes_nothing_and_hides_the_password() {
    let redis = RedisServer::start_with(Some(PASSWORD));
    redis.fill_standard();
    let env = project(REDIS_RUNBOOK);
    let run = release_with_env(
        &env,
        &run_args(&["--dry-run"]),
        &[("REDIS_URL", &redis.url())],
    );
    run.assert_code(0)
        .assert_stdout_contains("delete 1200 keys matching px:*");
    assert_eq!(redis.dbsize(), 1_250, "the dry-run deleted keys");
    let data = &finished(&env, "caches")["data"];
    assert_eq!(data["verdict"], "ready", "{data}");
    assert_eq!(data["fidelity"], "simulated", "{data}");
    assert_eq!(
        data["preflight"]["would"], "delete 1200 keys matching px:*",
        "{data}"
    );
    // The next step reads the count: only the real run knows it.
    let record = &finished(&env, "record")["data"];
    assert_eq!(
        (&record["verdict"], &record["fidelity"]),
        (&"warn".into(), &"unverifiable".into())
    );
    assert_hidden(&env, &run, PASSWORD);
    assert!(!env.join("deleted.txt").exists());
}

/// The dry-run asks, without deleting anything, whether the real run could delete: a
/// read-only replica, or a user whose ACL lacks UNLINK, blocks it (both used to read
/// `ready` and fail on the day). A user who may not ask (no ACL DRYRUN) is told so.
#[test]
fn dry_run_blocks_where_the_real_run_could_not_delete() {
    let primary = RedisServer::start();
    primary.fill_standard();
    let replica = RedisServer::start_args(
        None,
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.dbsize() < 1_250 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let env = project(REDIS_RUNBOOK);
    let run = release_with_env(
        &env,
        &run_args(&["--dry-run"]),
        &[("REDIS_URL", &replica.url())],
    );
    run.assert_code(1).assert_stdout_contains(
        "the Redis in REDIS_URL is a read-only replica (ROLE `slave`): the real run's UNLINK would be refused; point REDIS_URL at the primary",
    );

    let mut admin = primary.connection();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "reader",
            "on",
            ">reader-password",
            "~*",
            "+@read",
            "+ping",
            "+acl|whoami",
            "+acl|dryrun",
        ])
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "plain",
            "on",
            ">plain-password",
            "~*",
            "+@read",
            "+ping",
            "+unlink",
        ])
        .query::<()>(&mut admin)
        .unwrap();
    let url = |user: &str| format!("redis://{user}:{user}-password@127.0.0.1:{}", primary.port);
    let run = release_with_env(
        &env,
        &run_args(&["--dry-run"]),
        &[("REDIS_URL", &url("reader"))],
    );
    run.assert_code(1)
        .assert_stdout_contains("the URL's user may not delete these keys (")
        .assert_stdout_contains("unlink");
    assert_hidden(&env, &run, "reader-password");
    let run = release_with_env(
        &env,
        &run_args(&["--dry-run"]),
        &[("REDIS_URL", &url("plain"))],
    );
    run.assert_code(0).assert_stdout_contains(
        "not checked: whether it is a read-only replica (ROLE is refused here); the permission to UNLINK (ACL DRYRUN is refused here)",
    );
    assert_eq!(primary.dbsize(), 1_250, "nothing was deleted");
}

/// A pattern that renders to nothing would match only a key named "": refused, dry and
/// real, naming the template (the dry-run used to say it matched every key).
#[test]
fn a_pattern_that_renders_to_nothing_is_refused() {
    let redis = RedisServer::start();
    redis.fill_standard();
    let env = project(
        "params:\n  pattern: { default: \"\" }\nsteps:\n  - id: caches\n    cache_clear: { redis: { url_env: REDIS_URL, pattern: \"{{ params.pattern }}\" } }\n",
    );
    for extra in [&["--dry-run"][..], &["--reason", "r"][..]] {
        let run = release_with_env(&env, &run_args(extra), &[("REDIS_URL", &redis.url())]);
        run.assert_code(1).assert_stdout_contains(
            "the pattern `{{ params.pattern }}` renders to nothing; give it a value (e.g. `px:*`)",
        );
    }
    assert_eq!(redis.dbsize(), 1_250);
}

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl {args:?}");
}

/// Managed Redis often speaks only TLS (`rediss://`): the server's certificate is checked
/// against the system's CAs (or `SSL_CERT_FILE`), and one that is not trusted is said so
/// with the fix. (`rediss://` used to be "not a usable Redis URL".)
#[test]
fn redis_over_tls_is_counted_and_cleared_and_an_untrusted_certificate_named() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=release test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    let tls_port = free_port();
    let server = RedisServer::start_args(
        None,
        &[
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            dir.join("srv.pem").display().to_string(),
            "--tls-key-file".into(),
            dir.join("srv.key").display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    server.fill_standard();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = dir.join("ca.pem").display().to_string();
    let env = project(REDIS_RUNBOOK);
    let trusted = [("REDIS_URL", url.as_str()), ("SSL_CERT_FILE", ca.as_str())];
    release_with_env(&env, &run_args(&["--dry-run"]), &trusted)
        .assert_code(0)
        .assert_stdout_contains("delete 1200 keys matching px:*");
    release_with_env(&env, &run_args(&["--reason", "tls"]), &trusted).assert_code(0);
    assert_eq!(server.count("px:*"), 0);
    assert_eq!(server.dbsize(), 50);

    let run = release_with_env(&env, &run_args(&["--dry-run"]), &[("REDIS_URL", &url)]);
    run.assert_code(1).assert_stdout_contains(
        "cannot connect to the Redis in REDIS_URL: the server's TLS certificate is not trusted (UnknownIssuer): add the CA that signed it to the system's trust store, or name its PEM file in SSL_CERT_FILE",
    );
}

#[test]
fn dry_run_blocks_when_the_url_variable_is_missing() {
    let env = project(REDIS_RUNBOOK);
    let run = release_with_env(&env, &run_args(&["--dry-run"]), &[]);
    run.assert_code(1)
        .assert_stdout_contains("environment variable REDIS_URL is not set")
        .assert_stdout_contains("delete the keys matching px:*");
    assert_eq!(finished(&env, "caches")["data"]["verdict"], "blocked");
}

#[test]
fn dry_run_blocks_on_an_unreachable_redis_naming_the_variable() {
    let env = project(REDIS_RUNBOOK);
    let port = closed_port();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let run = release_with_env(&env, &run_args(&["--dry-run"]), &[("REDIS_URL", &url)]);
    run.assert_code(1)
        .assert_stdout_contains("cannot connect to the Redis in REDIS_URL");
    assert_hidden(&env, &run, PASSWORD);
    assert_hidden(&env, &run, &format!("127.0.0.1:{port}"));
    let data = &finished(&env, "caches")["data"];
    assert_eq!(data["verdict"], "blocked", "{data}");
}

#[test]
fn dry_run_warns_when_the_pattern_matches_every_key() {
    let redis = RedisServer::start();
    redis.fill("any", 7);
    let env = project(
        "steps:
  - id: caches
    cache_clear: { redis: { url_env: REDIS_URL, pattern: '*' } }
",
    );
    let run = release_with_env(
        &env,
        &run_args(&["--dry-run"]),
        &[("REDIS_URL", &redis.url())],
    );
    run.assert_code(0)
        .assert_stdout_contains("delete 7 keys matching *")
        .assert_stdout_contains("matches every key");
    assert_eq!(finished(&env, "caches")["data"]["verdict"], "warn");
    assert_eq!(redis.dbsize(), 7);
}

const HTTP_RUNBOOK: &str = r#"steps:
  - id: purge
    cache_clear:
      http:
        method: PURGE
        url: "BASE/cache/{{ vars.redis_prefix }}"
        headers: { Surrogate-Key: "{{ component }}" }
        headers_env: { X-Api-Key: PURGE_TOKEN }
"#;

/// The HTTP runbook, its URL pointing at `server`.
fn http_project(server: &MockServer) -> TestEnv {
    project(&HTTP_RUNBOOK.replace("BASE", &server.uri()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_dry_run_renders_the_request_and_sends_nothing() {
    let server = MockServer::start().await;
    let env = http_project(&server);
    let run = release_async(&env, &run_args(&["--dry-run"]), &[("PURGE_TOKEN", TOKEN)]).await;
    let port = server.address().port();
    run.assert_code(0).assert_stdout_contains(&format!(
        "send PURGE http://127.0.0.1:{port}/cache/px with headers Surrogate-Key, X-Api-Key (from PURGE_TOKEN)"
    ));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        0,
        "the dry-run sent a request"
    );
    let data = &finished(&env, "purge")["data"];
    assert_eq!(data["verdict"], "ready", "{data}");
    assert_eq!(data["fidelity"], "checked", "{data}");
    assert_hidden(&env, &run, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_dry_run_blocks_when_a_header_variable_is_missing() {
    let server = MockServer::start().await;
    let env = http_project(&server);
    let run = release_async(&env, &run_args(&["--dry-run"]), &[]).await;
    run.assert_code(1).assert_stdout_contains(
        "environment variable PURGE_TOKEN is not set: it holds header X-Api-Key",
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[test]
fn run_dry_run_checks_the_executable() {
    let env = project(
        "steps:
  - id: here
    cache_clear: { run: [sh, -c, 'touch purged'] }
  - id: missing
    needs: []
    cache_clear: { run: [no-such-purge-tool-4d2, --all] }
",
    );
    let run = release_with_env(&env, &run_args(&["--dry-run"]), &[]);
    run.assert_code(1)
        .assert_stdout_contains("`no-such-purge-tool-4d2` is not found");
    let here = &finished(&env, "here")["data"];
    assert_eq!(
        (&here["verdict"], &here["fidelity"]),
        (&"ready".into(), &"checked".into())
    );
    assert_eq!(finished(&env, "missing")["data"]["verdict"], "blocked");
    assert!(!env.join("purged").exists(), "the dry-run ran the command");
}

// ---------------------------------------------------------------------------------------
// Real runs through the binary
// ---------------------------------------------------------------------------------------

#[test]
fn real_run_deletes_the_keys_and_passes_the_count_on() {
    let redis = RedisServer::start_with(Some(PASSWORD));
    redis.fill_standard();
    let env = project(REDIS_RUNBOOK);
    let run = release_with_env(
        &env,
        &run_args(&["--reason", "test", "--no-progress"]),
        &[("REDIS_URL", &redis.url())],
    );
    run.assert_code(0)
        .assert_stderr_contains("deleted 1200 keys matching px:*");
    assert_eq!(redis.count("px:*"), 0);
    assert_eq!(redis.dbsize(), 50);
    assert_eq!(env.read("deleted.txt"), "1200");
    assert_eq!(finished(&env, "caches")["data"]["outcome"], "succeeded");
    assert_hidden(&env, &run, PASSWORD);
}

#[test]
fn real_run_fails_on_an_unreachable_redis_naming_the_variable() {
    let env = project(REDIS_RUNBOOK);
    let port = closed_port();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let run = release_with_env(
        &env,
        &run_args(&["--reason", "test", "--no-progress"]),
        &[("REDIS_URL", &url)],
    );
    run.assert_code(1)
        .assert_stderr_contains("cannot connect to the Redis in REDIS_URL");
    let data = &finished(&env, "caches")["data"];
    assert_eq!(data["outcome"], "failed", "{data}");
    assert_hidden(&env, &run, PASSWORD);
    assert_hidden(&env, &run, &format!("127.0.0.1:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_run_sends_the_purge_with_the_secret_header() {
    let server = MockServer::start().await;
    Mock::given(method("PURGE"))
        .and(path("/cache/px"))
        .and(header("surrogate-key", COMPONENT))
        .and(header("x-api-key", TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let env = http_project(&server);
    let run = release_async(
        &env,
        &run_args(&["--reason", "test", "--no-progress"]),
        &[("PURGE_TOKEN", TOKEN)],
    )
    .await;
    run.assert_code(0);
    assert_eq!(finished(&env, "purge")["data"]["outcome"], "succeeded");
    assert_hidden(&env, &run, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_run_fails_when_the_purge_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("PURGE"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let env = http_project(&server);
    let run = release_async(
        &env,
        &run_args(&["--reason", "test", "--no-progress"]),
        &[("PURGE_TOKEN", TOKEN)],
    )
    .await;
    run.assert_code(1).assert_stderr_contains("answered 401");
    assert_eq!(finished(&env, "purge")["data"]["outcome"], "failed");
    assert_hidden(&env, &run, TOKEN);
}
