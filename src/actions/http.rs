//! HTTP for actions: one client configuration (rustls, timeouts, no redirects), retries on
//! 5xx and connection errors, bodies read whole or not at all, errors that name their
//! cause, and URLs shown without the parts that carry secrets.

use std::time::Duration;

use tokio::sync::watch;

/// Attempts for a request that fails with a 5xx or a connection error.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled each time.
const FIRST_DELAY: Duration = Duration::from_millis(300);
/// The most of an answer's body kept (for `expect_body`, error messages, step output); the
/// rest is not read.
pub const MAX_BODY: usize = 1024 * 1024;

pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    // rustls needs its crypto provider chosen once per process; `run` does it at start-up,
    // this covers library callers (tests, benchmarks). Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        // Clearly shorter than the request's: a connection that never came up is a
        // connection error (sent again), not a request that timed out (maybe received).
        .connect_timeout((timeout / 2).min(Duration::from_secs(5)))
        .user_agent(concat!("release/", env!("CARGO_PKG_VERSION")))
        // A redirect is answered, not followed: following one turns a webhook's POST into
        // a GET that delivers nothing while the 200 at its end reads as delivered, and
        // hands the secret URL (as Referer) and the secret headers to another server.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A URL for people: scheme, host and port only, since webhook paths and queries are secrets.
pub fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            _ => "(a URL)".into(),
        },
        Err(_) => "(not a URL)".into(),
    }
}

/// A URL template as written (not rendered), without the user info of a URL in it.
pub fn shown_template(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let authority_end = text[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| scheme_end + i);
    match text[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &text[..scheme_end], &text[scheme_end + at + 1..]),
        None => text.to_owned(),
    }
}

/// A URL written in a runbook, shown whole but for its user info (a password may sit
/// there). URLs read from `*_env` variables are secrets: those go through
/// [`redacted_url`].
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// What a request ended with.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub attempts: u32,
    /// Where a 3xx answer points (its `Location`), never followed.
    pub location: Option<String>,
}

impl Answer {
    /// What a non-2xx answer means, for a message: `answered 302, a redirect to …` with
    /// the fix, or `answered 404`.
    pub fn status_text(&self, shown_location: impl Fn(&str) -> String) -> String {
        match &self.location {
            Some(to) if (300..400).contains(&self.status) => format!(
                "answered {}, a redirect to {} (release does not follow redirects: \
                 use the URL it points to)",
                self.status,
                shown_location(to)
            ),
            _ => format!("answered {}", self.status),
        }
    }
}

/// Whether a request that got no answer is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Only when it never reached the server (a connection error): a POST that reached it
    /// and timed out may have been acted on, and sending it again could do it twice (a
    /// message posted twice).
    WhenNotSent,
    /// Also after a timeout: the request does the same however often it arrives (a purge).
    Always,
}

/// Sends the request built by `build`, retrying 5xx answers and connection errors (and,
/// with [`Resend::Always`], timeouts) with backoff, until it gets another answer, runs out
/// of attempts, or is cancelled. Errors never contain the URL (it may hold a secret):
/// `shown` names the target.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    shown: &str,
    resend: Resend,
    mut cancel: watch::Receiver<bool>,
) -> Result<Answer, String> {
    let mut delay = FIRST_DELAY;
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        match build().send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
                // The status is the answer here; a body cut off after it changes nothing.
                let body = read_body(response).await.unwrap_or_default();
                if status < 500 || attempt == ATTEMPTS {
                    return Ok(Answer {
                        status,
                        body,
                        attempts: attempt,
                        location,
                    });
                }
                last_error = format!("{shown} answered {status}");
            }
            Err(e) => {
                last_error = format!("{shown}: {}", failure(&e));
                let sent = !e.is_connect();
                if sent && resend == Resend::WhenNotSent {
                    let tries = if attempt > 1 {
                        format!(" (attempt {attempt})")
                    } else {
                        String::new()
                    };
                    return Err(format!(
                        "{last_error}{tries}; it was sent, so it may have arrived: not sent \
                         again, which could deliver it twice"
                    ));
                }
            }
        }
        if attempt < ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = cancel.wait_for(|c| *c) => return Err(format!("{shown}: interrupted")),
            }
            delay *= 2;
        }
    }
    Err(format!("{last_error} (after {ATTEMPTS} attempts)"))
}

/// Reads an answer's body, up to [`MAX_BODY`] (lossily decoded). A body that stops
/// arriving before the timeout, or is cut off, is an error: half an answer proves nothing.
pub async fn read_body(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == MAX_BODY {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return Err("its body did not arrive before the timeout".into());
            }
            Err(e) => return Err(format!("its body was cut off ({})", failure(&e))),
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Why a request got no answer, in words, with the root cause where it tells more than
/// "cannot connect" (a certificate that is not trusted, a refused connection). Never the
/// URL: reqwest's own message holds it, and it may be a secret.
pub fn failure(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "no answer before the timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    };
    let mut root: &dyn std::error::Error = e;
    while let Some(source) = root.source() {
        root = source;
    }
    let cause = root.to_string();
    // reqwest's own message (an error without a source) names the URL.
    if cause.contains("://") || e.is_timeout() {
        return kind.to_owned();
    }
    format!("{kind}: {}", certificate_hint(&cause).unwrap_or(cause))
}

/// rustls's `invalid peer certificate: UnknownIssuer`, said for people with the fix;
/// `None` for any other message.
pub fn certificate_hint(message: &str) -> Option<String> {
    let (_, why) = message.split_once("invalid peer certificate: ")?;
    Some(format!(
        "the server's TLS certificate is not trusted ({why}): add the CA that signed it to \
         the system's trust store, or name its PEM file in SSL_CERT_FILE"
    ))
}
