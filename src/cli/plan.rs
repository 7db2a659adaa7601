//! `dr plan`: renders what a plan would do to the live clusters (text, JSON or a
//! pull-request review in Markdown) and saves it with `--out`; the planning itself is
//! `crate::ops::plan`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::ops::plan::{self, Planned};
use crate::ops::{Frontend, TargetOptions, target};
use crate::state;
use crate::state::markdown;
use crate::state::output::PlanOutput;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    /// The versioned document of `schemas/plan-output.schema.json`.
    Json,
    /// One pull-request comment for review (under GitHub's 65,536-character limit).
    Markdown,
}

/// Exit codes like `terraform plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
/// With `--format markdown`, a plan that cannot be computed still prints a review that
/// says so, for the pull request.
pub async fn plan(
    plan_path: &Path,
    targets: &TargetOptions,
    namespace: Option<&str>,
    out: Option<&Path>,
    format: PlanFormat,
    ui: &dyn Frontend,
) -> Result<i32, String> {
    let result = match plan::plan(plan_path, targets, namespace, ui).await {
        Ok(Ok(planned)) => render(plan_path, planned, targets, out, format).map(Ok),
        Ok(Err(diags)) => Ok(Err(diags)),
        Err(message) => Err(message),
    };
    if format == PlanFormat::Markdown {
        let message = match &result {
            Err(message) => Some(message.clone()),
            Ok(Err(diags)) => Some(diags.iter().map(|d| d.render(false)).collect::<Vec<_>>().join("\n")),
            Ok(Ok(_)) => None,
        };
        if let Some(message) = message {
            print!("{}", markdown::render_error(&plan_path.display().to_string(), &message));
        }
    }
    result.map(|r| r.unwrap_or(1))
}

fn render(
    plan_path: &Path,
    planned: Planned,
    targets: &TargetOptions,
    out: Option<&Path>,
    format: PlanFormat,
) -> Result<i32, String> {
    let report = planned.prepared.report();
    let objectives = planned.loaded.plan.objectives.as_ref();
    match format {
        PlanFormat::Text => {
            print_text(&report)?;
            planned.cloud.notes.iter().for_each(|n| eprintln!("{}", crate::diag::escape(n)));
        }
        PlanFormat::Json => {
            let output = PlanOutput::new(&report, objectives);
            println!("{}", serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?);
        }
        PlanFormat::Markdown => {
            let output = PlanOutput::new(&report, objectives);
            let context = markdown::ReviewContext {
                plan_path: &plan_path.display().to_string(),
                state: state_source(plan_path, &planned, targets),
                now: std::time::SystemTime::now(),
            };
            print!("{}", markdown::render(&report, &output, &context));
        }
    }
    if let Some(out) = out {
        plan::save(plan_path, &planned, out)?;
        eprintln!("Saved the plan to {}; apply exactly this with `dr apply {}`.", out.display(), out.display());
    }
    planned.cloud.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    let code = planned.detailed_status();
    // The process ends right after this: freeing every object read (a tenth of the run
    // time for a thousand StatefulSets) would only delay the exit.
    let Planned { prepared, targets, .. } = planned;
    drop(targets);
    std::mem::forget(prepared);
    Ok(code)
}

/// Which state the plan was computed against, for the review: the dumps `--sim` loaded
/// or the live contexts.
fn state_source(plan_path: &Path, planned: &Planned, targets: &TargetOptions) -> markdown::StateSource {
    if targets.sim {
        let mut dirs: Vec<PathBuf> = target::sim_dump_dirs(plan_path, &planned.clusters).into_values().collect();
        dirs.dedup();
        return markdown::StateSource::dump(dirs);
    }
    let contexts = planned.targets.contexts.iter().map(|(c, ctx)| (c.clone(), ctx.clone())).collect();
    markdown::StateSource::Live(contexts)
}

/// Streams the review text to standard output (megabytes for a large plan).
fn print_text(report: &state::report::PlanReport<'_>) -> Result<(), String> {
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    report.write_text(&mut stdout).and_then(|()| stdout.flush()).map_err(|e| format!("writing the plan: {e}"))
}
