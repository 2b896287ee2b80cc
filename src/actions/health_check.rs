//! `health_check`: polls a URL until it answers the expected status (and body) or the
//! attempts run out, reporting each attempt. Its preflight is one GET, reported, and never
//! blocks on the answer: the service may well be down, which is why one rolls back.

use regex::Regex;

use std::sync::Mutex;

use super::http::{self, shown_url};
use super::{
    Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Stop, Verdict, bounded,
};
use crate::engine::process::Line;
use crate::project::runbook::HealthCheckAction;

/// The expectations, rendered.
struct Check {
    url: String,
    /// The URL as shown: without its user info, where a password may sit.
    shown: String,
    status: u16,
    body: Option<String>,
    regex: Option<Regex>,
}

impl Check {
    fn new(action: &HealthCheckAction, ctx: &StepContext<'_>) -> Result<Self, String> {
        let t = ctx.templates;
        let url = t.render(&action.url)?;
        reqwest::Url::parse(&url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let body = action
            .expect_body
            .as_deref()
            .map(|b| t.render(b))
            .transpose()?;
        let regex = action
            .expect_body_regex
            .as_ref()
            .map(|r| {
                let text = t.render(&r.value)?;
                Regex::new(&text).map_err(|e| format!("invalid expect_body_regex: {e}"))
            })
            .transpose()?;
        Ok(Self {
            shown: shown_url(&url),
            url,
            status: action.expect_status.value,
            body,
            regex,
        })
    }

    /// `None` when healthy, else what is wrong with this answer.
    fn judge(&self, status: u16, body: &str) -> Option<String> {
        if status != self.status {
            return Some(format!("status {status}, expected {}", self.status));
        }
        if let Some(want) = &self.body
            && !body.contains(want.as_str())
        {
            return Some(format!("status {status} but the body lacks {want:?}"));
        }
        if let Some(re) = &self.regex
            && !re.is_match(body)
        {
            return Some(format!(
                "status {status} but the body does not match /{}/",
                re.as_str()
            ));
        }
        None
    }

    /// One GET: Ok((status, body)) or why it got no whole answer. A 3xx is an answer
    /// (redirects are not followed), judged against `expect_status` like any other.
    async fn probe(&self, client: &reqwest::Client) -> Result<(u16, String), String> {
        match client.get(&self.url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| response.url().join(l).ok());
                let body = http::read_body(response)
                    .await
                    .map_err(|e| format!("status {status}, but {e}"))?;
                match location {
                    // Not followed: said, so that the fix (the URL it points to) is plain.
                    Some(to) if status != self.status && (300..400).contains(&status) => {
                        Err(format!(
                            "status {status}, expected {}: a redirect to {} (not followed: use that URL)",
                            self.status,
                            shown_url(to.as_str())
                        ))
                    }
                    _ => Ok((status, body)),
                }
            }
            Err(e) => Err(http::failure(&e)),
        }
    }
}

fn failed(error: String) -> Execution {
    Execution {
        outcome: Outcome::Failed,
        error: Some(error),
        stdout: String::new(),
        interrupted: false,
    }
}

impl StepAction for HealthCheckAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        if ctx.reads_step_output {
            // The URL or the expected body is only known in a real run: a GET now would
            // probe something else.
            return Preflight {
                verdict: Verdict::Warn,
                fidelity: Fidelity::Unverifiable,
                reason: "its inputs come from an earlier step's output, known only in a real run; nothing was sent".into(),
                would: format!(
                    "GET {} up to {} times, {} apart, until it answers {}",
                    http::shown_template(&self.url), // not rendered in a dry-run
                    self.attempts.value,
                    self.interval,
                    self.expect_status.value
                ),
                output: None,
            };
        }
        let check = match Check::new(self, ctx) {
            Ok(c) => c,
            Err(e) => {
                return Preflight {
                    verdict: Verdict::Blocked,
                    fidelity: Fidelity::Checked,
                    reason: e,
                    would: String::new(),
                    output: None,
                };
            }
        };
        let would = format!(
            "GET {} up to {} times, {} apart, until it answers {}",
            check.shown, self.attempts.value, self.interval, check.status
        );
        let client = match http::client(self.timeout.0) {
            Ok(c) => c,
            Err(e) => {
                return Preflight {
                    verdict: Verdict::Blocked,
                    fidelity: Fidelity::Checked,
                    reason: e,
                    would,
                    output: None,
                };
            }
        };
        let (verdict, reason) = match check.probe(&client).await {
            Ok((status, body)) => match check.judge(status, &body) {
                None => (Verdict::Ready, format!("one GET: healthy now ({status})")),
                Some(problem) => (
                    Verdict::Warn,
                    format!("one GET: not healthy now ({problem}); the real run polls it"),
                ),
            },
            Err(e) => (
                Verdict::Warn,
                format!("one GET to {}: {e}; the real run polls it", check.shown),
            ),
        };
        Preflight {
            verdict,
            fidelity: Fidelity::Checked,
            reason,
            would,
            output: None,
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        let check = match Check::new(self, ctx) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let client = match http::client(self.timeout.0) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let attempts = self.attempts.value.max(1);
        // The last problem seen, for the message when the step's timeout cuts the polling.
        let last = Mutex::new(String::new());
        let polling = async {
            for attempt in 1..=attempts {
                let problem = match check.probe(&client).await {
                    Ok((status, body)) => match check.judge(status, &body) {
                        None => {
                            let _ = ctx.lines.send(Line {
                                stderr: false,
                                text: format!("attempt {attempt}/{attempts}: healthy ({status})"),
                            });
                            return Ok(body);
                        }
                        Some(problem) => problem,
                    },
                    Err(e) => e,
                };
                let _ = ctx.lines.send(Line {
                    stderr: true,
                    text: format!("attempt {attempt}/{attempts}: {problem}"),
                });
                *last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = problem;
                if attempt < attempts {
                    tokio::time::sleep(self.interval.0).await;
                }
            }
            Err(())
        };
        let result = bounded(polling, ctx.timeout, ctx.cancel.clone()).await;
        let last = last
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(Ok(body)) => Execution {
                outcome: Outcome::Succeeded,
                error: None,
                stdout: body,
                interrupted: false,
            },
            Ok(Err(())) => failed(format!(
                "{} not healthy after {attempts} attempt{}: {last}",
                check.shown,
                if attempts == 1 { "" } else { "s" }
            )),
            Err(Stop::TimedOut(t)) => Execution {
                outcome: Outcome::TimedOut,
                error: Some(format!(
                    "{} not healthy within the step's timeout ({}){}",
                    check.shown,
                    crate::engine::reporter::human_duration(t),
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    }
                )),
                stdout: String::new(),
                interrupted: false,
            },
            Err(Stop::Interrupted) => Execution {
                interrupted: true,
                ..failed("interrupted while polling".into())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_status_body_and_regex() {
        let check = Check {
            url: "http://x".into(),
            shown: "http://x".into(),
            status: 200,
            body: Some("ok".into()),
            regex: Some(Regex::new(r#""version":\s*"2"#).unwrap()),
        };
        assert!(
            check
                .judge(200, r#"{"status":"ok","version": "2.1"}"#)
                .is_none()
        );
        assert!(check.judge(503, "ok").unwrap().contains("status 503"));
        assert!(
            check
                .judge(200, r#"{"version":"2"}"#)
                .unwrap()
                .contains("lacks")
        );
        assert!(
            check
                .judge(200, r#"ok "version":"1""#)
                .unwrap()
                .contains("does not match")
        );
    }
}
