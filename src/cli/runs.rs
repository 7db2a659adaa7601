//! `dr runs`: the runs kept in the state directory, as text or JSON.

use std::path::Path;

use serde_json::{Value, json};

use crate::checkpoint::{RunMode, RunSummary, StateStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunsFormat {
    /// One line per run.
    Text,
    /// A JSON array of runs.
    Json,
}

/// Lists the runs in `store` (kept at `location`, for the message when there are none).
pub fn runs(store: &dyn StateStore, location: &Path, format: RunsFormat) -> Result<i32, String> {
    let runs = store.list_runs().map_err(|e| e.to_string())?;
    match format {
        RunsFormat::Json => {
            let listed: Vec<Value> = runs.iter().map(run_json).collect();
            println!("{}", serde_json::to_string_pretty(&listed).map_err(|e| e.to_string())?);
        }
        RunsFormat::Text if runs.is_empty() => println!("No runs in {}.", location.display()),
        RunsFormat::Text => {
            for run in runs {
                println!("{}", run_line(&run));
            }
        }
    }
    Ok(0)
}

fn run_line(run: &RunSummary) -> String {
    let counts: Vec<String> = run.step_counts.iter().map(|(s, n)| format!("{n} {s:?}").to_lowercase()).collect();
    let problem = run.problem.as_ref().map(|p| format!(" ({p})")).unwrap_or_default();
    format!(
        "{}  {:<12} {}  {}  {}{problem}",
        run.run_id,
        run.status.to_string(),
        run.plan_name,
        run.updated_at,
        counts.join(", ")
    )
}

/// One run for machines, in camelCase like every JSON drplan prints.
fn run_json(run: &RunSummary) -> Value {
    let (mode, rollback_of) = match &run.mode {
        Some(RunMode::Apply) => (Some("apply"), None),
        Some(RunMode::Rollback { of }) => (Some("rollback"), Some(of.clone())),
        None => (None, None),
    };
    let steps: serde_json::Map<String, Value> =
        run.step_counts.iter().map(|(status, n)| (format!("{status:?}").to_lowercase(), json!(n))).collect();
    json!({
        "runId": run.run_id,
        "plan": run.plan_name,
        "mode": mode,
        "rollbackOf": rollback_of,
        "status": run.status.to_string(),
        "problem": run.problem,
        "createdAt": run.created_at,
        "updatedAt": run.updated_at,
        "steps": steps,
    })
}
