//! Showing operations as they go, on a terminal: the [`Console`] frontend of `crate::ops`
//! (notices, diagnostics, approval prompts), each run's steps (a live view on a terminal,
//! timestamped lines otherwise, JSON lines for machines) and the final summary.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::checkpoint::StepStatus;
use crate::diag::Diagnostics;
use crate::exec::Event;
use crate::ops::{Frontend, Notice, RunView};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A live view on a terminal, plain lines otherwise.
    Auto,
    /// Timestamped lines.
    Plain,
    /// One JSON object per event.
    Json,
}

impl Output {
    fn resolve(self) -> Output {
        match self {
            Output::Auto if std::io::stderr().is_terminal() => Output::Auto,
            Output::Auto => Output::Plain,
            other => other,
        }
    }
}

/// The terminal frontend of operations: notices and diagnostics on standard error,
/// approval asked on the terminal, runs shown in the chosen [`Output`].
#[derive(Debug, Clone, Copy)]
pub struct Console {
    pub output: Output,
}

impl Frontend for Console {
    fn notice(&self, notice: Notice<'_>) {
        match notice {
            Notice::Note(text) => eprintln!("{text}"),
            Notice::Warning(text) => eprintln!("warning: {text}"),
            Notice::Review(text) => eprint!("{text}"),
        }
    }

    fn diagnostics(&self, diags: &Diagnostics) {
        print_diagnostics(diags);
    }

    fn confirm(&self, question: &str) -> Result<bool, String> {
        confirm(question)
    }

    fn show_run(&self, run_id: &str) -> RunView {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (cancel_tx, cancel) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nInterrupted: letting running steps finish; no new step starts. Resume later with `dr resume`."
                );
                let _ = cancel_tx.send(true);
            }
        });
        let shown = tokio::spawn(render(events_rx, self.output, run_id.to_string()));
        RunView { events, shown, cancel }
    }

    fn run_ended(&self, outcome: &crate::exec::Outcome, elapsed: Duration) {
        summary(&mut std::io::stderr(), outcome, elapsed);
        finished(self.output, outcome, elapsed);
    }
}

/// Diagnostics on standard error, in colour on a terminal unless NO_COLOR is set.
pub fn print_diagnostics(diags: &Diagnostics) {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    for diag in diags.iter() {
        eprint!("{}", diag.render(color));
        eprintln!();
    }
}

/// Asks for "yes" on a terminal; refuses to prompt otherwise.
pub fn confirm(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("standard input is not a terminal, so drplan cannot ask for approval; review the plan and pass --auto-approve".into());
    }
    eprint!("{question} Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer.trim() == "yes")
}

/// Consumes events until the executor drops its sender; JSON events carry `run_id`.
pub async fn render(mut events: mpsc::UnboundedReceiver<Event>, output: Output, run_id: String) {
    match output.resolve() {
        Output::Auto => live(&mut events).await,
        Output::Plain => {
            while let Some(event) = events.recv().await {
                eprintln!("{} {}", crate::checkpoint::now_rfc3339(), crate::diag::escape(&line(&event)));
            }
        }
        Output::Json => {
            while let Some(event) = events.recv().await {
                let mut event = json(&event);
                event["run"] = serde_json::json!(run_id);
                // A reader that went away must not stop the run (its checkpoints matter more).
                let _ = writeln!(std::io::stdout(), "{event}");
            }
        }
    }
}

async fn live(events: &mut mpsc::UnboundedReceiver<Event>) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    while let Some(event) = events.recv().await {
        match &event {
            Event::Started { id, description } => {
                let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
                bar.set_message(crate::diag::escape(&format!("{id}: {description}")).into_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(id.clone(), bar);
            }
            Event::Retrying { id, .. } => {
                if let Some(bar) = bars.get(id) {
                    bar.set_message(crate::diag::escape(&line(&event)).into_owned());
                }
            }
            Event::Finished { id, .. } => {
                if let Some(bar) = bars.remove(id) {
                    bar.finish_and_clear();
                }
                let _ = multi.println(crate::diag::escape(&line(&event)));
            }
        }
    }
}

fn mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded | StepStatus::Compensated => "✓",
        StepStatus::Skipped => "-",
        _ => "✗",
    }
}

fn line(event: &Event) -> String {
    match event {
        Event::Started { id, description } => format!("started  {id}: {description}"),
        Event::Retrying { id, attempt, error, delay } => {
            format!("retrying {id} (attempt {attempt} failed: {error}; next in {})", humantime::format_duration(*delay))
        }
        Event::Finished { id, status: StepStatus::Skipped, .. } => {
            format!("{} {id} (skipped: not needed)", mark(StepStatus::Skipped))
        }
        Event::Finished { id, status, elapsed, error } => {
            let error = error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
            format!("{} {id} ({}){error}", mark(*status), format_secs(*elapsed))
        }
    }
}

fn json(event: &Event) -> serde_json::Value {
    let now = crate::checkpoint::now_rfc3339();
    match event {
        Event::Started { id, description } => {
            serde_json::json!({"time": now, "event": "started", "step": id, "description": description})
        }
        Event::Retrying { id, attempt, error, delay } => serde_json::json!({
            "time": now, "event": "retrying", "step": id, "attempt": attempt, "error": error, "delaySeconds": delay.as_secs_f64()
        }),
        Event::Finished { id, status, elapsed, error } => serde_json::json!({
            "time": now, "event": "finished", "step": id, "status": format!("{status:?}").to_lowercase(),
            "seconds": elapsed.as_secs_f64(), "error": error
        }),
    }
}

pub fn format_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The final summary: each step's duration, then the outcome and what to do next.
pub fn summary(out: &mut dyn Write, outcome: &crate::exec::Outcome, total: Duration) {
    let _ = writeln!(out, "\nSteps ({} ran in this invocation):", outcome.durations.len());
    let width = outcome.durations.keys().map(String::len).max().unwrap_or(0);
    let mut by_time: Vec<_> = outcome.durations.iter().collect();
    by_time.sort_by_key(|(id, _)| outcome.record.steps.get(*id).and_then(|s| s.started_at.clone()));
    for (id, elapsed) in by_time {
        let status = outcome.record.steps.get(id).map(|s| s.status).unwrap_or_default();
        let _ = writeln!(out, "  {} {id:<width$}  {:>8}", mark(status), format_secs(*elapsed));
        let captured = outcome.record.steps.get(id).map(|s| &s.captured);
        for line in captured.map(|c| crate::steps::kube::exec_output_lines(c, 8)).unwrap_or_default() {
            let _ = writeln!(out, "      │ {}", crate::diag::escape(&line));
        }
    }
    let _ = writeln!(out, "\nRun {}: {} in {}", outcome.record.run_id, outcome.status, format_secs(total));
}

/// With `--output json`, the run's last event: its outcome and how long this invocation took.
pub fn finished(output: Output, outcome: &crate::exec::Outcome, total: Duration) {
    if output != Output::Json {
        return;
    }
    let failed: serde_json::Map<String, serde_json::Value> =
        outcome.failed.iter().map(|(id, error)| (id.to_string(), serde_json::json!(error.to_string()))).collect();
    let event = serde_json::json!({
        "time": crate::checkpoint::now_rfc3339(), "event": "run", "run": outcome.record.run_id,
        "status": outcome.status.to_string(), "seconds": total.as_secs_f64(), "failed": failed,
    });
    let _ = writeln!(std::io::stdout(), "{event}");
}
