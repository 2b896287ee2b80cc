//! `cache_clear`: deletes the Redis keys matching a pattern (SCAN + UNLINK in batches,
//! never KEYS, which blocks the server), sends a purge request, or runs a command.
//!
//! Secrets: the Redis URL and the `headers_env` values come from environment variables and
//! never reach a message. Errors name the variable ("the Redis in `REDIS_URL`"); anything a
//! library says about a failure is scrubbed of the URL and its credentials first.
//!
//! The dry-run of `redis` is a simulation: it runs the same SCAN and counts what the real
//! run would delete. The dry-run of `http` renders the request and sends nothing.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::watch;

use super::http::{self, Answer};
use super::{
    Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Stop, Verdict, bounded,
};
use crate::engine::process::Line;
use crate::project::runbook::{CacheClearAction, HttpPurge, RedisCache, RunAction};

/// Keys asked for per SCAN (a hint to the server) and so, at most about, per UNLINK.
pub const BATCH: usize = 500;
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Redis command may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// A purge request's timeout when the step sets none.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A progress line every this many keys deleted.
const PROGRESS_EVERY: u64 = 10_000;
/// The part of an error answer's body quoted in the error.
const BODY_IN_ERROR: usize = 200;

impl StepAction for CacheClearAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        match (&self.redis, &self.http, &self.run) {
            (Some(redis), _, _) => preflight_redis(redis, ctx).await,
            (None, Some(purge), _) => preflight_http(purge, ctx),
            (None, None, Some(argv)) => RunAction::Argv(argv.clone()).preflight(ctx).await,
            (None, None, None) => blocked(
                "`cache_clear` needs one of `redis`, `http`, `run`".into(),
                String::new(),
            ),
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        match (&self.redis, &self.http, &self.run) {
            (Some(redis), _, _) => execute_redis(redis, ctx).await,
            (None, Some(purge), _) => execute_http(purge, ctx).await,
            (None, None, Some(argv)) => RunAction::Argv(argv.clone()).execute(ctx).await,
            (None, None, None) => failed("`cache_clear` needs one of `redis`, `http`, `run`"),
        }
    }
}

fn blocked(reason: String, would: String) -> Preflight {
    Preflight {
        verdict: Verdict::Blocked,
        fidelity: Fidelity::Checked,
        reason,
        would,
        output: None,
    }
}

fn unverifiable(would: String) -> Preflight {
    Preflight {
        verdict: Verdict::Warn,
        fidelity: Fidelity::Unverifiable,
        reason: "its inputs come from an earlier step's output, known only in a real run".into(),
        would,
        output: None,
    }
}

fn failed(error: impl Into<String>) -> Execution {
    Execution {
        outcome: Outcome::Failed,
        error: Some(error.into()),
        stdout: String::new(),
        interrupted: false,
    }
}

fn send_line(ctx: &StepContext<'_>, text: String) {
    let _ = ctx.lines.send(Line {
        stderr: false,
        text,
    });
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// The Redis a URL points to, named for people by the variable that held the URL.
struct Redis<'a> {
    url: &'a str,
    url_env: &'a str,
}

impl Redis<'_> {
    fn name(&self) -> String {
        format!("the Redis in {}", self.url_env)
    }

    /// A library's message, on one line (a table cell), without the URL or its password.
    fn scrub(&self, text: &str) -> String {
        let text = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let mut text = text.replace(self.url, "(the URL)");
        if let Some(password) = reqwest::Url::parse(self.url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty())
        {
            text = text.replace(&password, "…");
        }
        text
    }

    /// What went wrong talking to the server, as a sentence naming it by its variable.
    fn describe(&self, error: &redis::RedisError) -> String {
        let name = self.name();
        match (error.kind(), error.code()) {
            (redis::ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => {
                format!("{name} refused the credentials in the URL")
            }
            (_, Some("NOAUTH")) => format!(
                "{name} needs a password and the URL has none (redis://:PASSWORD@HOST:PORT)"
            ),
            // Selecting the database (`/3`) is the first command, and the one refused.
            _ if error.to_string().contains("Authentication required") => format!(
                "{name} needs a password and the URL has none (redis://:PASSWORD@HOST:PORT/DB)"
            ),
            (redis::ErrorKind::Io, _) => {
                let why = self.scrub(&error.to_string());
                format!(
                    "cannot connect to {name}: {}",
                    http::certificate_hint(&why).unwrap_or(why)
                )
            }
            _ => format!("{name}: {}", self.scrub(&error.to_string())),
        }
    }

    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = redis::Client::open(self.url).map_err(|e| {
            let why = e
                .detail()
                .map_or_else(|| e.category().to_owned(), |d| self.scrub(d));
            format!(
                "the value of {} is not a usable Redis URL ({why}); expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or rediss://… for TLS",
                self.url_env
            )
        })?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| match (e.kind(), e.code()) {
                (redis::ErrorKind::AuthenticationFailed, _) | (_, Some(_)) => self.describe(&e),
                _ => {
                    let why = self.scrub(&e.to_string());
                    format!(
                        "cannot connect to {}: {}",
                        self.name(),
                        http::certificate_hint(&why).unwrap_or(why)
                    )
                }
            })
    }

    /// SCANs the keys matching `pattern` and hands each batch to `batch`, which returns how
    /// many it counted; the total is returned. Keys deleted during the scan cannot confuse
    /// it: SCAN returns every key present for its whole duration at least once.
    async fn scan<F, Fut>(&self, pattern: &str, mut batch: F) -> Result<u64, String>
    where
        F: FnMut(redis::aio::MultiplexedConnection, Vec<Vec<u8>>) -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        let mut connection = self.connect().await?;
        // The connection proves the server answers; a PING proves it accepts us (AUTH).
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.describe(&e))?;
        let mut cursor: u64 = 0;
        let mut total = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut connection)
                .await
                .map_err(|e| format!("SCAN failed: {}", self.describe(&e)))?;
            if !keys.is_empty() {
                total += batch(connection.clone(), keys).await?;
            }
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }

    /// How many distinct keys match (SCAN can return a key twice while the server resizes
    /// its table).
    async fn count(&self, pattern: &str) -> Result<u64, String> {
        Ok(self.count_keys(pattern).await?.0)
    }

    /// [`Self::count`], and one of the keys (to check the permission to delete it).
    async fn count_keys(&self, pattern: &str) -> Result<(u64, Option<Vec<u8>>), String> {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut sample = None;
        let n = self
            .scan(pattern, |_, keys| {
                if sample.is_none() {
                    sample = keys.first().cloned();
                }
                let new = keys.into_iter().filter(|k| seen.insert(k.clone())).count();
                std::future::ready(Ok(new as u64))
            })
            .await?;
        Ok((n, sample))
    }

    /// Whether the real run could delete `key` here, asked without deleting anything: a
    /// read-only replica (`ROLE`) refuses every UNLINK, and a user's ACL may lack it
    /// (`ACL DRYRUN`, Redis 7). `Ok(None)`: it could; `Ok(Some(note))`: what could not be
    /// asked (a user without the admin commands); `Err`: it could not.
    async fn can_delete(&self, key: &[u8]) -> Result<Option<String>, String> {
        let mut connection = self.connect().await?;
        // ROLE is an admin command: a user without it leaves the question open.
        let role: Option<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await.ok();
        if let Some(redis::Value::Array(parts)) = &role
            && let Some(redis::Value::BulkString(kind)) = parts.first()
            && kind.as_slice() != b"master"
        {
            return Err(format!(
                "{} is a read-only replica (ROLE `{}`): the real run's UNLINK would be refused; \
                 point {} at the primary",
                self.name(),
                String::from_utf8_lossy(kind),
                self.url_env
            ));
        }
        let user: Result<String, _> = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut connection)
            .await;
        let answer: Result<String, _> = match user {
            Ok(user) => {
                redis::cmd("ACL")
                    .arg("DRYRUN")
                    .arg(&user)
                    .arg("UNLINK")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
            }
            Err(e) => Err(e),
        };
        let unlink_known = match answer {
            Ok(ok) if ok == "OK" => true,
            Ok(denied) => {
                return Err(format!(
                    "{}: the URL's user may not delete these keys ({}): the real run's \
                     UNLINK would be refused",
                    self.name(),
                    self.scrub(denied.trim())
                ));
            }
            // ACL itself not permitted to this user, or a Redis before 7.
            Err(_) => false,
        };
        let unchecked: Vec<&str> = [
            (role.is_none()).then_some("whether it is a read-only replica (ROLE is refused here)"),
            (!unlink_known).then_some("the permission to UNLINK (ACL DRYRUN is refused here)"),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok((!unchecked.is_empty()).then(|| format!("not checked: {}", unchecked.join("; "))))
    }

    /// Deletes the matching keys batch by batch (UNLINK: the memory is freed in the
    /// background); `deleted` counts them as they go, so that a timeout can tell how far
    /// it got.
    async fn delete(
        &self,
        pattern: &str,
        deleted: &AtomicU64,
        progress: impl Fn(u64),
    ) -> Result<u64, String> {
        self.scan(pattern, |mut connection, keys| {
            let progress = &progress;
            async move {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| {
                        format!(
                            "UNLINK failed after {} were deleted: {}",
                            count_keys(deleted.load(Ordering::Relaxed)),
                            self.describe(&e)
                        )
                    })?;
                let before = deleted.fetch_add(n, Ordering::Relaxed);
                if (before + n) / PROGRESS_EVERY > before / PROGRESS_EVERY {
                    progress(before + n);
                }
                Ok(n)
            }
        })
        .await
    }
}

/// Counts (`dry_run`) or deletes the keys matching `pattern` in the Redis at `url`, which
/// was read from the variable `url_env` (named in errors instead of the URL). Returns how
/// many keys matched or were deleted.
pub async fn clear_redis(
    url: &str,
    url_env: &str,
    pattern: &str,
    dry_run: bool,
) -> Result<u64, String> {
    let redis = Redis { url, url_env };
    if dry_run {
        redis.count(pattern).await
    } else {
        redis.delete(pattern, &AtomicU64::new(0), |_| {}).await
    }
}

/// Said of a count cut short: the UNLINK under way when the step stopped may have run on
/// the server all the same.
const IN_FLIGHT: &str = ", and perhaps the batch under way";

/// A pattern that rendered to nothing matches only a key named "" (SCAN's MATCH), which
/// is never what was meant: refused, naming the template.
fn non_empty(pattern: &str, template: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err(format!(
            "the pattern `{template}` renders to nothing; give it a value (e.g. `px:*`)"
        ));
    }
    Ok(())
}

fn count_keys(n: u64) -> String {
    if n == 1 {
        "1 key".into()
    } else {
        format!("{n} keys")
    }
}

async fn preflight_redis(spec: &RedisCache, ctx: &StepContext<'_>) -> Preflight {
    let url_env = spec.url_env.value.as_str();
    let pattern = match ctx.templates.render(&spec.pattern) {
        Ok(p) => p,
        Err(e) => return blocked(format!("cannot render the pattern: {e}"), String::new()),
    };
    let url = match super::secret_from_env(url_env) {
        Ok(url) => url,
        Err(e) => {
            return blocked(
                format!("{e}: it holds the Redis URL"),
                format!("delete the keys matching {pattern}"),
            );
        }
    };
    if ctx.reads_step_output {
        return unverifiable(format!("delete the keys matching {pattern}"));
    }
    if let Err(e) = non_empty(&pattern, &spec.pattern) {
        return blocked(e, String::new());
    }
    let redis = Redis { url: &url, url_env };
    let would = format!("delete the keys matching {pattern}");
    let counted = async {
        let (n, sample) = redis.count_keys(&pattern).await?;
        let note = match sample {
            Some(key) => redis.can_delete(&key).await?,
            None => None,
        };
        Ok::<_, String>((n, note))
    };
    match bounded(counted, ctx.timeout, ctx.cancel.clone()).await {
        Ok(Ok((n, note))) => {
            let mut reason = format!(
                "{} {} {pattern} in {} now (counted with SCAN; nothing deleted)",
                count_keys(n),
                if n == 1 { "matches" } else { "match" },
                redis.name()
            );
            if let Some(note) = note {
                let _ = write!(reason, "; {note}");
            }
            // Allowed (a cache of its own), but worth a second look before the day.
            let everything = pattern.chars().all(|c| c == '*');
            if everything {
                reason.push_str("; the pattern matches every key in the database");
            }
            Preflight {
                verdict: if everything {
                    Verdict::Warn
                } else {
                    Verdict::Ready
                },
                fidelity: Fidelity::Simulated,
                reason,
                would: format!("delete {} matching {pattern}", count_keys(n)),
                output: None,
            }
        }
        Ok(Err(e)) => blocked(e, would),
        Err(Stop::TimedOut(t)) => blocked(
            format!(
                "counting the keys in {} took longer than the step's timeout ({})",
                redis.name(),
                crate::engine::reporter::human_duration(t)
            ),
            would,
        ),
        Err(Stop::Interrupted) => blocked("interrupted".into(), would),
    }
}

async fn execute_redis(spec: &RedisCache, ctx: &StepContext<'_>) -> Execution {
    let url_env = spec.url_env.value.as_str();
    let url = match super::secret_from_env(url_env) {
        Ok(url) => url,
        Err(e) => return failed(format!("{e}: it holds the Redis URL")),
    };
    let pattern = match ctx.templates.render(&spec.pattern) {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot render the pattern: {e}")),
    };
    if let Err(e) = non_empty(&pattern, &spec.pattern) {
        return failed(e);
    }
    let redis = Redis { url: &url, url_env };
    let deleted = AtomicU64::new(0);
    let progress = |n: u64| send_line(ctx, format!("deleted {} so far", count_keys(n)));
    let result = bounded(
        redis.delete(&pattern, &deleted, progress),
        ctx.timeout,
        ctx.cancel.clone(),
    )
    .await;
    let so_far = deleted.load(Ordering::Relaxed);
    match result {
        Ok(Ok(n)) => {
            send_line(ctx, format!("deleted {} matching {pattern}", count_keys(n)));
            Execution {
                outcome: Outcome::Succeeded,
                error: None,
                stdout: n.to_string(),
                interrupted: false,
            }
        }
        Ok(Err(e)) => Execution {
            stdout: so_far.to_string(),
            ..failed(e)
        },
        Err(Stop::TimedOut(t)) => Execution {
            outcome: Outcome::TimedOut,
            error: Some(format!(
                "timed out after {} ({} matching {pattern} deleted by then{IN_FLIGHT})",
                crate::engine::reporter::human_duration(t),
                count_keys(so_far)
            )),
            stdout: so_far.to_string(),
            interrupted: false,
        },
        Err(Stop::Interrupted) => Execution {
            outcome: Outcome::Failed,
            error: Some(format!(
                "interrupted ({} matching {pattern} deleted by then{IN_FLIGHT})",
                count_keys(so_far)
            )),
            stdout: so_far.to_string(),
            interrupted: true,
        },
    }
}

// ---------------------------------------------------------------------------------------
// HTTP purge
// ---------------------------------------------------------------------------------------

/// A purge request, rendered and ready to send.
#[derive(Debug)]
pub struct PurgeRequest {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
    /// Header names, with the variable a secret value comes from.
    header_names: Vec<String>,
    /// The values read from `headers_env` variables, scrubbed from anything shown.
    secrets: Vec<String>,
}

impl PurgeRequest {
    /// Renders `purge` with `render` (templates) and reads its `headers_env` values with
    /// `secret` (the environment, in a run). Errors name headers and variables, never a
    /// secret value or the URL's path.
    pub fn build(
        purge: &HttpPurge,
        render: impl Fn(&str) -> Result<String, String>,
        secret: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Self, String> {
        let method = reqwest::Method::from_bytes(purge.method.value.as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP method", purge.method.value))?;
        let url = render(&purge.url).map_err(|e| format!("cannot render the URL: {e}"))?;
        let url = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| "the purge URL is not an http(s) URL".to_owned())?;
        let mut headers = HeaderMap::new();
        let mut header_names = Vec::new();
        let header_name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))
        };
        for (name, template) in &purge.headers {
            let value = render(template)
                .map_err(|e| format!("cannot render the value of header {name}: {e}"))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
            headers.insert(header_name(name)?, value);
            header_names.push(name.clone());
        }
        let mut secrets = Vec::new();
        for (name, variable) in &purge.headers_env {
            let value = secret(variable).map_err(|e| format!("{e}: it holds header {name}"))?;
            let mut header = HeaderValue::from_str(value.trim()).map_err(|_| {
                format!("the value of {variable} is not a valid value for header {name}")
            })?;
            header.set_sensitive(true);
            headers.insert(header_name(name)?, header);
            header_names.push(format!("{name} (from {variable})"));
            secrets.push(value.trim().to_owned());
        }
        Ok(Self {
            method,
            url,
            headers,
            header_names,
            secrets,
        })
    }

    /// The request as people see it: method and the URL as written, without user info.
    pub fn shown(&self) -> String {
        format!("{} {}", self.method, http::shown_url(self.url.as_str()))
    }

    /// What the real run would do: method, URL (written in the runbook, not a secret),
    /// header names (their values come from variables: secrets).
    pub fn describe(&self) -> String {
        let mut text = format!("send {}", self.shown());
        if !self.header_names.is_empty() {
            let _ = write!(text, " with headers {}", self.header_names.join(", "));
        }
        text
    }

    /// Sends the request (retrying 5xx answers and connection errors); `Ok` with the
    /// answer's body when it is a 2xx, else the reason.
    pub async fn send(
        &self,
        timeout: Duration,
        cancel: watch::Receiver<bool>,
    ) -> Result<Answer, String> {
        let client = http::client(timeout)?;
        let shown = self.shown();
        let answer = http::send(
            || {
                client
                    .request(self.method.clone(), self.url.clone())
                    .headers(self.headers.clone())
            },
            &shown,
            http::Resend::Always,
            cancel,
        )
        .await?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        let mut error = format!(
            "{shown} {}",
            // Where a server redirects may hold a signature: shown as scheme://host/… only.
            answer.status_text(|to| match self.url.join(to) {
                Ok(to) => http::redacted_url(to.as_str()),
                Err(_) => "(not a URL)".into(),
            })
        );
        let body = self.scrub(answer.body.trim());
        if let Some(first) = body.lines().next().filter(|l| !l.trim().is_empty()) {
            let first: String = first.chars().take(BODY_IN_ERROR).collect();
            let _ = write!(error, ": {first}");
        }
        if answer.attempts > 1 {
            let _ = write!(error, " (after {} attempts)", answer.attempts);
        }
        Err(error)
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(self.url.as_str(), "(the URL)");
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "…");
        }
        text
    }
}

fn preflight_http(purge: &HttpPurge, ctx: &StepContext<'_>) -> Preflight {
    let would = format!("send a {} purge request", purge.method.value);
    if ctx.reads_step_output {
        // A missing secret blocks even when the request is known only in the real run.
        for (name, variable) in &purge.headers_env {
            if let Err(e) = super::secret_from_env(variable) {
                return blocked(format!("{e}: it holds header {name}"), would);
            }
        }
        return unverifiable(would);
    }
    match PurgeRequest::build(purge, |t| ctx.templates.render(t), super::secret_from_env) {
        Ok(request) => Preflight {
            verdict: Verdict::Ready,
            fidelity: Fidelity::Checked,
            reason: if purge.headers_env.is_empty() {
                "the request renders; nothing was sent".to_owned()
            } else {
                "the request renders and its header variables are set; nothing was sent".to_owned()
            },
            would: request.describe(),
            output: None,
        },
        Err(e) => blocked(e, would),
    }
}

async fn execute_http(purge: &HttpPurge, ctx: &StepContext<'_>) -> Execution {
    let request =
        match PurgeRequest::build(purge, |t| ctx.templates.render(t), super::secret_from_env) {
            Ok(request) => request,
            Err(e) => return failed(e),
        };
    let timeout = ctx.timeout.unwrap_or(HTTP_TIMEOUT);
    let result = bounded(
        request.send(timeout, ctx.cancel.clone()),
        ctx.timeout,
        ctx.cancel.clone(),
    )
    .await;
    match result {
        Ok(Ok(answer)) => {
            send_line(
                ctx,
                format!("{} answered {}", request.shown(), answer.status),
            );
            Execution {
                outcome: Outcome::Succeeded,
                error: None,
                stdout: request.scrub(&answer.body),
                interrupted: false,
            }
        }
        Ok(Err(e)) => Execution {
            interrupted: e.ends_with(": interrupted"),
            ..failed(e)
        },
        Err(Stop::TimedOut(t)) => Execution {
            outcome: Outcome::TimedOut,
            error: Some(format!(
                "{}: no answer within {}",
                request.shown(),
                crate::engine::reporter::human_duration(t)
            )),
            stdout: String::new(),
            interrupted: false,
        },
        Err(Stop::Interrupted) => Execution {
            interrupted: true,
            ..failed(format!("{}: interrupted", request.shown()))
        },
    }
}
