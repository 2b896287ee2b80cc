//! HTTP for actions: one client configuration (rustls, timeouts), retries on 5xx and
//! connection errors, and URLs shown without the parts that carry secrets.

use std::time::Duration;

use tokio::sync::watch;

/// Attempts for a request that fails with a 5xx or a connection error.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled each time.
const FIRST_DELAY: Duration = Duration::from_millis(300);

pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    // rustls needs its crypto provider chosen once per process; `run` does it at start-up,
    // this covers library callers (tests, benchmarks). Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("release/", env!("CARGO_PKG_VERSION")))
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
}

/// Sends the request built by `build`, retrying 5xx answers and connection errors with
/// backoff, until it gets a non-5xx answer, runs out of attempts, or is cancelled.
/// Errors never contain the URL (it may hold a secret): `shown` names the target.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    shown: &str,
    mut cancel: watch::Receiver<bool>,
) -> Result<Answer, String> {
    let mut delay = FIRST_DELAY;
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        match build().send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                if status < 500 || attempt == ATTEMPTS {
                    return Ok(Answer {
                        status,
                        body,
                        attempts: attempt,
                    });
                }
                last_error = format!("{shown} answered {status}");
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                last_error = format!("{shown}: {kind}");
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
