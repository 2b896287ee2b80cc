//! `notify`: a message to a channel of `release.yaml`: a Slack incoming webhook
//! (`{"text": …}`), a generic webhook (the message and the run's context as JSON), or the
//! run's log. The webhook URL is read from the channel's `url_env` and never shown.

use std::time::Duration;

use serde_json::json;

use super::http::{self, redacted_url};
use super::{
    Execution, Fidelity, Outcome, Preflight, StepAction, StepContext, Stop, Verdict, bounded,
    secret_from_env,
};
use crate::engine::process::Line;
use crate::project::config::{Channel, ChannelKind};
use crate::project::runbook::NotifyAction;

/// How long one request waits for its answer without a step `timeout`; the step's
/// `timeout` bounds the whole step, retries included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn failed(error: String) -> Execution {
    Execution {
        outcome: Outcome::Failed,
        error: Some(error),
        stdout: String::new(),
        interrupted: false,
    }
}

/// The channel, its kind as shown, and (for webhooks) the URL from its variable.
fn resolve<'c>(
    action: &NotifyAction,
    ctx: &'c StepContext<'_>,
) -> Result<(&'c Channel, Option<String>), String> {
    let name = &action.channel.value;
    let channel = ctx
        .config
        .notify
        .get(name)
        .ok_or_else(|| format!("release.yaml has no notify channel `{name}`"))?;
    let url = match (&channel.kind, &channel.url_env) {
        (ChannelKind::Log, _) => None,
        (_, Some(variable)) => {
            let url = secret_from_env(&variable.value)?;
            // Checked here so that the dry-run blocks on it and the real run fails at once
            // instead of retrying a request that cannot be made. The value is never shown.
            let usable = reqwest::Url::parse(&url).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !usable {
                return Err(format!(
                    "the value of {} is not an http(s) URL; set it to channel `{name}`'s webhook URL",
                    variable.value
                ));
            }
            Some(url)
        }
        (_, None) => return Err(format!("channel `{name}` has no url_env")),
    };
    Ok((channel, url))
}

/// The JSON body the channel receives.
fn payload(kind: ChannelKind, message: &str, ctx: &StepContext<'_>) -> serde_json::Value {
    match kind {
        ChannelKind::Slack => json!({ "text": message }),
        ChannelKind::Webhook | ChannelKind::Log => json!({
            "message": message,
            "component": ctx.run.component,
            "stage": ctx.run.stage,
            "run": ctx.run.id,
            "actor": ctx.run.actor,
            "reason": ctx.run.reason,
            "dry_run": ctx.run.dry_run,
            "step": ctx.step_id,
        }),
    }
}

fn kind_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => "slack",
        ChannelKind::Webhook => "webhook",
        ChannelKind::Log => "log",
    }
}

impl StepAction for NotifyAction {
    async fn preflight(&self, ctx: &StepContext<'_>) -> Preflight {
        let blocked = |reason: String| Preflight {
            verdict: Verdict::Blocked,
            fidelity: Fidelity::Checked,
            reason,
            would: String::new(),
            output: None,
        };
        let message = match ctx.templates.render(&self.message) {
            Ok(m) => m,
            Err(e) => return blocked(format!("cannot render the message: {e}")),
        };
        let (channel, url) = match resolve(self, ctx) {
            Ok(found) => found,
            Err(e) => {
                return Preflight {
                    would: format!("post to `{}`: {message}", self.channel.value),
                    ..blocked(e)
                };
            }
        };
        let target = url.as_deref().map(redacted_url).unwrap_or_default();
        let would = match channel.kind {
            ChannelKind::Log => format!("write to the run's log: {message}"),
            kind => format!(
                "post to `{}` ({}, {target}): {message}",
                self.channel.value,
                kind_name(kind)
            ),
        };
        let (verdict, fidelity, reason) = if ctx.reads_step_output {
            (
                Verdict::Warn,
                Fidelity::Unverifiable,
                "the message reads an earlier step's output, known only in a real run".to_owned(),
            )
        } else if channel.kind == ChannelKind::Log {
            (
                Verdict::Ready,
                Fidelity::Checked,
                "the log channel needs nothing".to_owned(),
            )
        } else {
            (
                Verdict::Ready,
                Fidelity::Checked,
                format!(
                    "channel `{}` and its variable are set; nothing was sent",
                    self.channel.value
                ),
            )
        };
        Preflight {
            verdict,
            fidelity,
            reason,
            would,
            output: None,
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Execution {
        let message = match ctx.templates.render(&self.message) {
            Ok(m) => m,
            Err(e) => return failed(format!("cannot render the message: {e}")),
        };
        let (channel, url) = match resolve(self, ctx) {
            Ok(found) => found,
            Err(e) => return failed(e),
        };
        let Some(url) = url else {
            let _ = ctx.lines.send(Line {
                stderr: false,
                text: message.clone(),
            });
            return Execution {
                outcome: Outcome::Succeeded,
                error: None,
                stdout: message,
                interrupted: false,
            };
        };
        // With a step timeout, a request may take all of it; the step's own deadline (a
        // moment sooner) then says the message may have arrived.
        let per_request = ctx
            .timeout
            .map_or(REQUEST_TIMEOUT, |t| t + Duration::from_secs(1));
        let client = match http::client(per_request) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let body = payload(channel.kind, &message, ctx);
        let shown = format!("channel `{}` ({})", self.channel.value, redacted_url(&url));
        let sent = http::send(
            || client.post(&url).json(&body),
            &shown,
            http::Resend::WhenNotSent,
            ctx.cancel.clone(),
        );
        let answer = match bounded(sent, ctx.timeout, ctx.cancel.clone()).await {
            Ok(answer) => answer,
            Err(Stop::TimedOut(t)) => {
                return Execution {
                    outcome: Outcome::TimedOut,
                    error: Some(format!(
                        "{shown}: no answer within the step's timeout ({}); it may have arrived",
                        crate::engine::reporter::human_duration(t)
                    )),
                    stdout: String::new(),
                    interrupted: false,
                };
            }
            Err(Stop::Interrupted) => {
                return Execution {
                    interrupted: true,
                    ..failed(format!("{shown}: interrupted"))
                };
            }
        };
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let _ = ctx.lines.send(Line {
                    stderr: false,
                    text: format!("sent to {shown}"),
                });
                Execution {
                    outcome: Outcome::Succeeded,
                    error: None,
                    stdout: message,
                    interrupted: false,
                }
            }
            Ok(answer) => {
                let status = answer.status_text(|to| {
                    match reqwest::Url::parse(&url).and_then(|u| u.join(to)) {
                        Ok(to) => redacted_url(to.as_str()),
                        Err(_) => "(not a URL)".into(),
                    }
                });
                let detail: String = answer.body.chars().take(200).collect();
                let detail = detail.trim();
                if detail.is_empty() || (300..400).contains(&answer.status) {
                    failed(format!("{shown} {status}"))
                } else {
                    failed(format!("{shown} {status}: {detail}"))
                }
            }
            Err(e) => Execution {
                interrupted: e.ends_with("interrupted"),
                ..failed(e)
            },
        }
    }
}
