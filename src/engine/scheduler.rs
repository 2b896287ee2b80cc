//! The dispatcher: owns the state of every step, starts what may start, and is the only
//! writer of the run's audit records.
//!
//! Rules (SPEC §4, §6):
//! - a step may start when every step it needs has finished; at most `max_parallel` run;
//! - `when: success` runs when every need succeeded or was skipped (a failed need with
//!   `continue_on_error` counts as satisfied); `failure` when some step of the run has
//!   failed; `always` whatever happened; otherwise the step is skipped;
//! - `if` false skips the step; a declined `confirm` stops the run (no new step starts);
//! - `step.started` is durable before the step's action begins; if the audit log cannot
//!   be written, no further step starts and running ones are stopped (fail closed);
//! - SIGINT/SIGTERM/SIGHUP: running steps' process groups get SIGTERM, then SIGKILL after
//!   the grace period; no new step starts; the run ends `interrupted`. SIGHUP (the ssh
//!   session or the terminal went away) is handled like SIGTERM: steps run in their own
//!   process groups, so the kernel's hang-up would never reach them, and dying at once
//!   would leave them running, the lock held and the run unrecorded.
//! - A dry-run interrupted during a `plan` command stops that command's process group the
//!   same way, and still records the step's `step.finished`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use super::context::{StepOutputs, Templater, base_context, reads_step_output};
use super::process::Line;
use super::reporter::Reporter;
use super::{Report, Request, RunOutcome, StepReport, confirm};
use crate::actions::{
    self, Execution, Fidelity, Outcome, Preflight, RunInfo, StepContext, Verdict,
};
use crate::project::graph::StepGraph;
use crate::project::runbook::{Step, When};
use crate::state::audit::{AuditLog, Entry};

enum Event {
    Line(usize, Line),
    Done(usize, Finished),
}

struct Finished {
    execution: Execution,
    attempts: u32,
    duration: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done(Outcome),
}

/// SIGINT, SIGTERM and SIGHUP as one stream.
pub struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl Signals {
    pub fn install() -> Self {
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
            hangup: signal(SignalKind::hangup()).ok(),
        }
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            () = next(&mut self.interrupt) => {}
            () = next(&mut self.terminate) => {}
            () = next(&mut self.hangup) => {}
        }
    }
}

pub struct Dispatcher<'a> {
    request: &'a Request,
    audit: &'a AuditLog,
    reporter: Reporter,
    run_id: String,
    needs: Vec<Vec<usize>>,
    state: Vec<State>,
    /// Skipped because something it needed did not succeed: that skip is not a success
    /// for the steps that need it in turn (a failure carries down the chain).
    skipped_for_failure: Vec<bool>,
    reports: Vec<StepReport>,
    /// `steps.<id>` of the template context.
    outputs: StepOutputs,
    /// The rest of the template context, converted once.
    context: minijinja::Value,
    cancel: watch::Sender<bool>,
    signals: Signals,
    /// Why the run stopped early (audit failure, declined, interrupt).
    error: Option<String>,
    run_info: Arc<RunInfo>,
}

impl<'a> Dispatcher<'a> {
    pub fn new(
        request: &'a Request,
        audit: &'a AuditLog,
        reporter: Reporter,
        run_id: String,
    ) -> Self {
        let steps = &request.runbook.steps;
        let index = |id: &str| steps.iter().position(|s| s.id == id);
        let needs = steps
            .iter()
            .map(|s| s.needs.iter().filter_map(|n| index(n)).collect())
            .collect();
        let run_info = RunInfo {
            id: run_id.clone(),
            actor: audit.actor().to_owned(),
            component: request.component.clone(),
            stage: request.stage.clone(),
            reason: request.reason.clone().unwrap_or_default(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            dry_run: request.dry_run,
            origin: request
                .resumed
                .as_ref()
                .map_or_else(|| run_id.clone(), |r| r.origin.clone()),
        };
        let mut context = request.context.clone();
        context["run"] = json!({
            "id": run_info.id,
            "actor": run_info.actor,
            "reason": run_info.reason,
            "started_at": run_info.started_at,
            "dry_run": run_info.dry_run,
        });
        Self {
            request,
            audit,
            reporter,
            run_id,
            needs,
            state: vec![State::Pending; steps.len()],
            skipped_for_failure: vec![false; steps.len()],
            reports: steps
                .iter()
                .map(|s| StepReport {
                    id: s.id.clone(),
                    outcome: None,
                    duration_ms: 0,
                    attempts: 0,
                    error: None,
                    stdout: None,
                    preflight: None,
                    from_run: None,
                    marked_done: false,
                })
                .collect(),
            outputs: StepOutputs::default(),
            context: base_context(&context),
            cancel: watch::channel(false).0,
            signals: Signals::install(),
            error: None,
            run_info: Arc::new(run_info),
        }
        .with_done_steps()
    }

    /// A resumed run: the steps done earlier count as succeeded, with what they printed.
    fn with_done_steps(mut self) -> Self {
        let Some(resumed) = &self.request.resumed else {
            return self;
        };
        for (i, step) in self.request.runbook.steps.iter().enumerate() {
            let Some(done) = resumed.done.get(&step.id) else {
                continue;
            };
            self.state[i] = State::Done(Outcome::Succeeded);
            let report = &mut self.reports[i];
            report.outcome = Some(Outcome::Succeeded);
            report.stdout = recorded_stdout(&done.stdout);
            report.from_run.clone_from(&done.run);
            report.marked_done = done.run.is_none();
            self.outputs
                .record(&step.id, outcome_name(Outcome::Succeeded), &done.stdout);
        }
        self
    }

    fn steps(&self) -> &'a [Step] {
        &self.request.runbook.steps
    }

    /// Appends a record that announces no side effect: written now, made durable by the
    /// next [`announce`](Self::announce) (SPEC §7). False when it could not be written.
    fn append(&mut self, kind: &'static str, data: Value) -> bool {
        self.record(kind, data, false)
    }

    /// Appends a record and makes it, and every one before it, durable: before a side
    /// effect (a real step's start) and at the end of the run.
    fn announce(&mut self, kind: &'static str, data: Value) -> bool {
        self.record(kind, data, true)
    }

    fn record(&mut self, kind: &'static str, data: Value, durable: bool) -> bool {
        let entry = Entry {
            run: self.run_id.clone(),
            kind,
            component: Some(self.request.component.clone()),
            stage: Some(self.request.stage.clone()),
            data,
        };
        let append = || {
            if durable {
                self.audit.append(entry)
            } else {
                self.audit.append_deferred(entry)
            }
        };
        match tokio::task::block_in_place(append) {
            Ok(appended) => {
                if let Some(repaired) = appended.repaired {
                    self.reporter.warn(&repaired.to_string());
                }
                true
            }
            Err(e) => {
                // Fail closed: nothing more starts, running steps are stopped.
                self.error = Some(format!(
                    "the audit log could not be written, so the run stopped: {e}"
                ));
                let _ = self.cancel.send(true);
                false
            }
        }
    }

    fn templater(&self) -> Templater {
        Templater::new(&self.context, &self.outputs)
    }

    /// Runs the whole runbook (or its dry-run) and returns the report.
    pub async fn run(mut self) -> Report {
        let started = Instant::now();
        let request = self.request;
        let mut data = json!({
            "command": request.command,
            "runbook": request.runbook_path,
            "runbook_sha256": request.runbook_sha256,
            "params": request.params,
            "dry_run": request.dry_run,
            "reason": request.reason,
            "purpose": request.purpose,
            // The template context's promotion commits, which a resume gives back as they
            // were (a promotion since must not change what a resumed step reverts).
            "promotion": request.context.get("promotion"),
        });
        if let Some(resumed) = &request.resumed {
            // Here too, so that the chain is known even if `run.resumed` never got written.
            data["resumes"] = Value::from(resumed.resumes.as_str());
        }
        let started_ok = self.append("run.started", data);
        let resumed_ok = started_ok
            && request
                .resumed
                .as_ref()
                .is_none_or(|resumed| self.start_resumed(resumed));
        let outcome = if !resumed_ok {
            RunOutcome::Failed
        } else if request.dry_run {
            self.dry_run().await
        } else {
            self.real_run().await
        };
        self.reporter.finish();
        self.announce(
            "run.finished",
            json!({ "outcome": outcome, "error": self.error }),
        );
        Report {
            run: self.run_id.clone(),
            component: request.component.clone(),
            stage: request.stage.clone(),
            runbook: request.runbook_path.clone(),
            dry_run: request.dry_run,
            outcome,
            duration_ms: millis(started.elapsed()),
            steps: self.reports,
            error: self.error,
            resumes: request.resumed.as_ref().map(|r| r.resumes.clone()),
        }
    }

    /// Records and says which steps a resumed run does not run again, and why.
    fn start_resumed(&mut self, resumed: &super::Resumed) -> bool {
        let (mut skipped, mut earlier, mut marked) = (Vec::new(), Vec::new(), Vec::new());
        for step in self.steps() {
            if let Some(done) = resumed.done.get(&step.id) {
                skipped.push(step.id.as_str());
                if done.run.is_some() {
                    earlier.push(step.id.as_str());
                } else {
                    marked.push(step.id.as_str());
                }
            }
        }
        let mut text = format!("resuming run {}", resumed.resumes);
        for (what, steps) in [
            ("succeeded before, not run again", &earlier),
            ("marked done", &marked),
        ] {
            if !steps.is_empty() {
                text = format!("{text}; {what}: {}", steps.join(", "));
            }
        }
        self.reporter.note(&text);
        self.append(
            "run.resumed",
            json!({ "resumes": resumed.resumes, "skipped": skipped, "marked_done": marked }),
        )
    }

    async fn real_run(&mut self) -> RunOutcome {
        let steps = self.steps();
        if let Some(crate::project::runbook::RunbookConfirm::TypeComponent) =
            self.request.runbook.confirm
            && !self.request.yes
        {
            let (component, stage) = (self.request.component.clone(), self.request.stage.clone());
            let name = self
                .request
                .runbook
                .name
                .clone()
                .unwrap_or_else(|| self.request.runbook_path.clone());
            let answer = self
                .prompt(move || confirm::type_component(&component, &stage, &name))
                .await;
            match answer {
                Some(true) => {}
                Some(false) => {
                    self.error = Some("the component name was not typed: nothing ran".into());
                    return RunOutcome::Declined;
                }
                None => return RunOutcome::Interrupted,
            }
        }

        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        let mut running = 0usize;
        let mut any_failed = false;
        let mut stop: Option<RunOutcome> = None;
        loop {
            if stop.is_none() && self.error.is_none() {
                stop = self
                    .start_ready(&events_tx, &mut running, &mut any_failed)
                    .await;
            }
            if running == 0 {
                break;
            }
            tokio::select! {
                Some(event) = events.recv() => match event {
                    Event::Line(i, line) => self.reporter.step_output(&steps[i].id, &line.text),
                    Event::Done(i, finished) => {
                        running -= 1;
                        let failed = self.finish_step(i, &finished);
                        if failed && !steps[i].continue_on_error {
                            any_failed = true;
                        }
                    }
                },
                () = self.signals.recv() => {
                    if stop != Some(RunOutcome::Interrupted) {
                        stop = Some(RunOutcome::Interrupted);
                        self.reporter.note("interrupted: stopping the running steps (SIGTERM, then SIGKILL after 3s)");
                        let _ = self.cancel.send(true);
                    }
                }
            }
        }
        match stop {
            Some(outcome) => outcome,
            None if self.error.is_some() || any_failed => RunOutcome::Failed,
            None => RunOutcome::Succeeded,
        }
    }

    /// Starts every step that may start now; returns how the run must stop, if it must.
    async fn start_ready(
        &mut self,
        events: &mpsc::UnboundedSender<Event>,
        running: &mut usize,
        any_failed: &mut bool,
    ) -> Option<RunOutcome> {
        let steps = self.steps();
        let mut progressed = true;
        while progressed {
            progressed = false;
            for i in 0..steps.len() {
                if self.state[i] != State::Pending || *running >= self.request.max_parallel {
                    continue;
                }
                if !self.needs[i]
                    .iter()
                    .all(|&n| matches!(self.state[n], State::Done(_)))
                {
                    continue;
                }
                progressed = true;
                let step = &steps[i];
                let needs_ok = self.needs[i].iter().all(|&n| match self.state[n] {
                    State::Done(Outcome::Succeeded) => true,
                    State::Done(Outcome::Skipped) => !self.skipped_for_failure[n],
                    State::Done(_) => steps[n].continue_on_error,
                    _ => false,
                });
                let go = match step.when {
                    When::Success => needs_ok,
                    When::Failure => *any_failed,
                    When::Always => true,
                };
                if !go {
                    let why = match step.when {
                        When::Success => "a step it needs did not succeed".to_owned(),
                        _ => self.why_no_failure(),
                    };
                    self.skipped_for_failure[i] = step.when == When::Success;
                    self.skip(i, &why);
                    continue;
                }
                let templates = self.templater();
                if let Some(condition) = &step.condition {
                    match templates.condition(condition) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.skip(i, "`if` is false");
                            continue;
                        }
                        Err(e) => {
                            self.fail_now(i, format!("cannot evaluate `if`: {e}"));
                            // A failure like any other: `when: failure` steps run, the run fails.
                            if !step.continue_on_error {
                                *any_failed = true;
                            }
                            continue;
                        }
                    }
                }
                if let Some(question) = &step.confirm
                    && !self.request.yes
                {
                    let question = templates
                        .render(question)
                        .unwrap_or_else(|_| question.clone());
                    match self.prompt(move || confirm::ask(&question)).await {
                        Some(true) => {}
                        Some(false) => {
                            self.state[i] = State::Done(Outcome::Declined);
                            self.reports[i].outcome = Some(Outcome::Declined);
                            self.append("step.finished", json!({ "step": step.id, "outcome": Outcome::Declined, "duration_ms": 0, "error": "declined at the confirmation" }));
                            self.reporter.step_finished(
                                &step.id,
                                Outcome::Declined,
                                Duration::ZERO,
                                Some("declined: the run stops here"),
                            );
                            self.error =
                                Some(format!("step `{}` was declined: the run stopped", step.id));
                            return Some(RunOutcome::Declined);
                        }
                        None => return Some(RunOutcome::Interrupted),
                    }
                }
                if !self.announce("step.started", json!({ "step": step.id })) {
                    return Some(RunOutcome::Failed);
                }
                self.reporter
                    .step_started(&step.id, step.name.as_deref().unwrap_or(&step.id));
                self.state[i] = State::Running;
                *running += 1;
                self.spawn_step(i, templates, events.clone());
            }
        }
        None
    }

    /// Why a `when: failure` step is skipped: nothing failed the run, though a step with
    /// `continue_on_error` may have failed (it is recorded `failed`, so say so).
    fn why_no_failure(&self) -> String {
        let tolerated: Vec<String> = self
            .steps()
            .iter()
            .zip(&self.state)
            .filter(|(step, state)| {
                step.continue_on_error
                    && matches!(state, State::Done(Outcome::Failed | Outcome::TimedOut))
            })
            .map(|(step, _)| format!("`{}`", step.id))
            .collect();
        if tolerated.is_empty() {
            "no step of the run failed".into()
        } else {
            format!(
                "no step failed the run ({} failed with continue_on_error)",
                tolerated.join(", ")
            )
        }
    }

    /// Asks a question off the runtime, with the bars suspended; `None` if interrupted
    /// (a signal, or Ctrl-C read as a key at the prompt: never an answer).
    async fn prompt(
        &mut self,
        ask: impl FnOnce() -> confirm::Answer + Send + 'static,
    ) -> Option<bool> {
        let bars = self.reporter.aside();
        let (answered, answer) = tokio::sync::oneshot::channel();
        // A thread of its own, not the runtime's blocking pool: a signal ends the run while
        // the read may still be blocked, and the runtime waits for its pool when it ends.
        // Should no thread start, the question is not asked: no.
        let _ = std::thread::Builder::new()
            .name("prompt".into())
            .spawn(move || {
                let answer = ask();
                drop(bars);
                let _ = answered.send(answer);
            });
        let answer = tokio::select! {
            answer = answer => answer.unwrap_or(confirm::Answer::No),
            () = self.signals.recv() => confirm::Answer::Interrupted,
        };
        match answer {
            confirm::Answer::Yes => Some(true),
            confirm::Answer::No => Some(false),
            confirm::Answer::Interrupted => {
                // The prompt may still be blocked in its read: its guard has not run yet.
                confirm::restore_terminal();
                self.error = Some("interrupted at a confirmation: nothing more ran".into());
                None
            }
        }
    }

    fn spawn_step(&self, i: usize, templates: Templater, events: mpsc::UnboundedSender<Event>) {
        let step = self.steps()[i].clone();
        let shared = Shared {
            root: self.request.root.clone(),
            config: self.request.config.clone(),
            run: self.run_info.clone(),
        };
        let cancel = self.cancel.subscribe();
        tokio::spawn(async move {
            let finished = run_step(
                i,
                &step,
                &shared,
                Arc::new(templates),
                cancel,
                events.clone(),
            )
            .await;
            let _ = events.send(Event::Done(i, finished));
        });
    }

    fn skip(&mut self, i: usize, why: &str) {
        let id = &self.steps()[i].id;
        self.state[i] = State::Done(Outcome::Skipped);
        self.reports[i].outcome = Some(Outcome::Skipped);
        self.reports[i].error = Some(why.to_owned());
        self.outputs.record(id, "skipped", "");
        self.append("step.finished", json!({ "step": id, "outcome": Outcome::Skipped, "duration_ms": 0, "error": null, "reason": why }));
        self.reporter
            .step_finished(id, Outcome::Skipped, Duration::ZERO, Some(why));
    }

    /// A step that fails before it can start (its `if` cannot be evaluated).
    fn fail_now(&mut self, i: usize, error: String) {
        let finished = Finished {
            execution: Execution {
                outcome: Outcome::Failed,
                error: Some(error),
                stdout: String::new(),
                interrupted: false,
            },
            attempts: 0,
            duration: Duration::ZERO,
        };
        self.append("step.started", json!({ "step": self.steps()[i].id }));
        self.finish_step(i, &finished);
    }

    /// Records a finished step; true when it failed.
    fn finish_step(&mut self, i: usize, finished: &Finished) -> bool {
        let id = self.steps()[i].id.clone();
        let outcome = finished.execution.outcome;
        self.state[i] = State::Done(outcome);
        let report = &mut self.reports[i];
        report.outcome = Some(outcome);
        report.duration_ms = millis(finished.duration);
        report.attempts = finished.attempts;
        report.error.clone_from(&finished.execution.error);
        report.stdout = recorded_stdout(&finished.execution.stdout);
        self.outputs
            .record(&id, outcome_name(outcome), &finished.execution.stdout);
        let mut data = json!({
            "step": id,
            "outcome": outcome,
            "duration_ms": millis(finished.duration),
            "error": finished.execution.error,
            "attempts": finished.attempts,
        });
        if let Some(stdout) = &self.reports[i].stdout {
            // What the step produced (the revert's commits, the incident's path…) is
            // part of the record: the terminal's copy of it does not last.
            data["stdout"] = Value::from(stdout.as_str());
        }
        self.append("step.finished", data);
        self.reporter.step_finished(
            &id,
            outcome,
            finished.duration,
            finished.execution.error.as_deref(),
        );
        matches!(outcome, Outcome::Failed | Outcome::TimedOut)
    }

    /// Every step's preflight, in graph order; nothing else runs.
    async fn dry_run(&mut self) -> RunOutcome {
        let steps = self.steps();
        let order = StepGraph::new(self.needs.clone()).topological_order();
        let mut blocked = false;
        for i in order {
            let step = &steps[i];
            if !self.append("step.started", json!({ "step": step.id })) {
                return RunOutcome::Failed;
            }
            let started = Instant::now();
            let (preflight, interrupted) = self.preflight_step(step).await;
            let duration = started.elapsed();
            let outcome = if preflight.verdict == Verdict::Blocked || interrupted {
                blocked = true;
                Outcome::Failed
            } else {
                Outcome::Succeeded
            };
            let error = if interrupted {
                Some("interrupted during the dry-run".to_owned())
            } else {
                (preflight.verdict == Verdict::Blocked).then(|| preflight.reason.clone())
            };
            self.outputs.record(&step.id, outcome_name(outcome), "");
            let recorded = self.append(
                "step.finished",
                json!({
                    "step": step.id,
                    "outcome": outcome,
                    "duration_ms": millis(duration),
                    "error": error,
                    "verdict": if interrupted { Verdict::Blocked } else { preflight.verdict },
                    "fidelity": preflight.fidelity,
                    "preflight": { "reason": preflight.reason, "would": preflight.would, "output": preflight.output },
                }),
            );
            self.reporter.preflight(&step.id, &preflight);
            let report = &mut self.reports[i];
            report.outcome = Some(outcome);
            report.duration_ms = millis(duration);
            report.error = error;
            report.preflight = Some(preflight);
            if interrupted {
                self.error = Some("interrupted during the dry-run".into());
                return RunOutcome::Interrupted;
            }
            if !recorded {
                return RunOutcome::Failed;
            }
        }
        if blocked {
            RunOutcome::Blocked
        } else {
            RunOutcome::Succeeded
        }
    }

    /// One step's dry-run: its `if` where it can be known, and its action's preflight.
    /// True with it when a signal came while it ran: its `plan` processes were stopped
    /// (the preflight sees the cancellation and ends their group: TERM, grace, KILL).
    async fn preflight_step(&mut self, step: &Step) -> (Preflight, bool) {
        let templates = self.templater();
        // An `if` over `steps.*` reads what only a real run knows: never evaluate it
        // here (the dry-run's outcomes are not the real ones), preflight the action.
        let mut runs_only_if = None;
        if let Some(condition) = step.condition.as_deref() {
            if condition_reads_steps(condition) {
                runs_only_if = Some(condition.trim());
            } else {
                match templates.condition(condition) {
                    Ok(true) => {}
                    Ok(false) => {
                        let preflight = Preflight {
                            verdict: Verdict::Ready,
                            fidelity: Fidelity::Checked,
                            reason: "`if` is false with these inputs: the real run would skip it"
                                .into(),
                            would: "nothing".into(),
                            output: None,
                        };
                        return (preflight, false);
                    }
                    Err(e) => {
                        let preflight = Preflight {
                            verdict: Verdict::Blocked,
                            fidelity: Fidelity::Checked,
                            reason: format!("cannot evaluate `if`: {e}"),
                            would: String::new(),
                            output: None,
                        };
                        return (preflight, false);
                    }
                }
            }
        }
        let (lines, _) = mpsc::unbounded_channel();
        let ctx = StepContext {
            step_id: &step.id,
            root: &self.request.root,
            templates: &templates,
            timeout: step.timeout.map(|t| t.0),
            cancel: self.cancel.subscribe(),
            lines,
            reads_step_output: reads_step_output(
                &serde_json::to_value(&step.action).unwrap_or_default(),
            ),
            config: &self.request.config,
            run: &self.run_info,
        };
        let preflight = actions::preflight(&step.action, &ctx);
        tokio::pin!(preflight);
        let mut preflight = tokio::select! {
            p = &mut preflight => p,
            () = self.signals.recv() => {
                self.reporter.note(
                    "interrupted: stopping the dry-run's plan command (SIGTERM, then SIGKILL after 3s)",
                );
                let _ = self.cancel.send(true);
                // The cancelled preflight ends its processes itself; one that does not
                // listen (a request) is not waited for beyond the grace period.
                let cut = tokio::time::timeout(
                    super::process::GRACE + Duration::from_secs(1),
                    &mut preflight,
                )
                .await;
                let preflight = cut.unwrap_or_else(|_| Preflight {
                    verdict: Verdict::Blocked,
                    fidelity: Fidelity::Checked,
                    reason: "interrupted before its preflight finished".into(),
                    would: String::new(),
                    output: None,
                });
                return (preflight, true);
            }
        };
        if let Some(condition) = runs_only_if
            && preflight.verdict != Verdict::Blocked
        {
            preflight.reason = format!(
                "runs only if `{condition}`, known only in a real run; {}",
                preflight.reason
            );
            preflight.verdict = Verdict::Warn;
            preflight.fidelity = Fidelity::Unverifiable;
        } else if let Some(condition) = runs_only_if {
            preflight.reason = format!("{} (it runs only if `{condition}`)", preflight.reason);
        }
        (preflight, false)
    }
}

/// True when an `if` expression reads `steps.*` (an earlier step's outcome or output).
fn condition_reads_steps(condition: &str) -> bool {
    let expr = condition
        .trim()
        .trim_start_matches("{{")
        .trim_end_matches("}}");
    crate::template::expression_variables(&crate::template::environment(), expr)
        .is_ok_and(|vars| vars.iter().any(|v| v == "steps" || v.starts_with("steps.")))
}

/// True when a recorded stdout ([`recorded_stdout`]) was cut: it is not what the step
/// printed.
pub fn is_cut(recorded: &str) -> bool {
    recorded.ends_with(NOT_RECORDED)
}

/// The end of the note that says a recorded stdout was cut.
const NOT_RECORDED: &str = " more bytes not recorded]\n";

/// What a step printed, as recorded: `None` when nothing; at most [`MAX_RECORDED`]
/// bytes, cut on a character boundary with a note saying so.
fn recorded_stdout(stdout: &str) -> Option<String> {
    if stdout.trim().is_empty() {
        return None;
    }
    Some(cut_to(stdout, MAX_RECORDED))
}

/// Whether a line is the note [`cut_to`] ends a cut text with.
pub fn is_cut_note(line: &str) -> bool {
    line.starts_with("[… ") && format!("{line}\n").ends_with(NOT_RECORDED)
}

/// `text` whole when it holds at most `max` bytes, else its first `max` bytes (cut on a
/// character boundary) and a note saying how much was left out.
pub fn cut_to(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n[… {}{NOT_RECORDED}",
        text[..cut].trim_end_matches('\n'),
        text.len() - cut
    )
}

/// The most of a step's stdout its `step.finished` record keeps.
const MAX_RECORDED: usize = 4 * 1024;

/// One step's task: its action, retried as its `retry` says, each attempt under its
/// `timeout`; output lines go to the dispatcher as they come.
/// What every step task shares with the run.
struct Shared {
    root: PathBuf,
    config: Arc<crate::project::config::Config>,
    run: Arc<RunInfo>,
}

async fn run_step(
    index: usize,
    step: &Step,
    shared: &Shared,
    templates: Arc<Templater>,
    mut cancel: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<Event>,
) -> Finished {
    let started = Instant::now();
    let (lines, mut line_rx) = mpsc::unbounded_channel::<Line>();
    let forward_events = events.clone();
    let forward = tokio::spawn(async move {
        while let Some(line) = line_rx.recv().await {
            let _ = forward_events.send(Event::Line(index, line));
        }
    });
    let attempts = step.retry.as_ref().map_or(1, |r| r.attempts.value.max(1));
    let mut delay = step.retry.as_ref().map_or(Duration::ZERO, |r| r.delay.0);
    let backoff = step.retry.as_ref().map_or(1.0, |r| r.backoff.value);
    let mut attempt = 0;
    let execution = loop {
        attempt += 1;
        let ctx = StepContext {
            step_id: &step.id,
            root: &shared.root,
            templates: &templates,
            timeout: step.timeout.map(|t| t.0),
            cancel: cancel.clone(),
            lines: lines.clone(),
            reads_step_output: false,
            config: &shared.config,
            run: &shared.run,
        };
        let execution = actions::execute(&step.action, &ctx).await;
        if execution.outcome == Outcome::Succeeded || execution.interrupted || attempt >= attempts {
            break execution;
        }
        let _ = lines.send(Line {
            stderr: true,
            text: format!(
                "attempt {attempt}/{attempts} failed ({}); next in {}",
                execution.error.as_deref().unwrap_or("failed"),
                super::reporter::human_duration(delay)
            ),
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = cancel.wait_for(|c| *c) => break Execution { interrupted: true, ..execution },
        }
        delay = delay.mul_f64(backoff);
    };
    drop(lines);
    let _ = forward.await;
    Finished {
        execution,
        attempts: attempt,
        duration: started.elapsed(),
    }
}

/// An outcome as written in the audit log and read by templates (`succeeded`…).
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
        Outcome::Declined => "declined",
        Outcome::TimedOut => "timed_out",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
