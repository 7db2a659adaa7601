//! `apply`: runs a plan (or a saved plan) against live (or simulated) clusters, after
//! showing it and getting approval, with a checkpoint per transition.

use std::path::Path;

use super::plan::{self, Prepared, SavedPlan};
use super::run::{self, Ended, RunOptions};
use super::target::{self, TargetOptions};
use super::{Frontend, Notice};
use crate::graph;
use crate::lang;
use crate::state::{self, report::PlanReport};

/// What `apply` was asked besides the plan and its targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Run without asking for approval.
    pub auto_approve: bool,
}

/// `apply PLAN` or `apply SAVED_PLAN`.
pub async fn apply(
    plan_path: &Path,
    targets: &TargetOptions,
    run_options: &RunOptions,
    options: ApplyOptions,
    ui: &dyn Frontend,
) -> Result<Ended, String> {
    if let Some(saved) = plan::read_saved(plan_path) {
        return apply_saved(saved?, targets, run_options, ui).await;
    }
    let (loaded, diags) = lang::load_plan(plan_path);
    ui.diagnostics(&diags);
    let Some(loaded) = loaded.filter(|_| !diags.has_errors()) else { return Ok(Ended::Refused) };
    let targets = target::connect(plan_path, &target::plan_clusters(&loaded), targets).await?;
    // Locked before reading live state: a concurrent run of the plan would be seen half
    // done, and the plan expanded against it (the loser must fail naming the holder).
    let lock = run::lock_run(run_options.store.as_ref(), loaded.plan.name(), &targets)?;
    let prepared = plan::prepare(&loaded, &targets, ui).await?;
    let report = prepared.report();
    ui.notice(Notice::Review(&report.text()));
    if let Some(ended) = refuse_or_skip(&report, ui) {
        return Ok(ended);
    }
    if !options.auto_approve && !ui.confirm("\nDo you want to perform these actions?")? {
        ui.notice(Notice::Note("Apply cancelled."));
        return Ok(Ended::Refused);
    }
    let bytes = std::fs::read(plan_path).map_err(|e| format!("reading {}: {e}", plan_path.display()))?;
    let mut record = run::new_record(&prepared, loaded.plan.name(), loaded.plan.accept_data_loss, &bytes, &targets);
    record.run_id = lock.run_id;
    let end = run::run_locked(prepared.graph, record, (lock.key, lock.guard), &targets, run_options, ui).await?;
    Ok(Ended::Ran(Box::new(end)))
}

/// Applies a saved plan: it was reviewed already, so no prompt, but it is refused when
/// any object it read has changed since.
async fn apply_saved(
    saved: SavedPlan,
    targets: &TargetOptions,
    run_options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<Ended, String> {
    let targets = target::connect(&saved.plan_path, &saved.clusters, targets).await?;
    let graph = graph::saved::from_json(&saved.graph)?;
    let live = plan::fetch_live(&targets, &state::needs_of(&graph), ui).await?;
    let stale = plan::stale_objects(&saved, &live);
    if !stale.is_empty() {
        let mut message = String::from("error: the saved plan is stale; these objects changed since it was made:");
        for change in &stale {
            message.push_str(&format!("\n  - {change}"));
        }
        message.push_str("\nNothing was changed. Run `dr plan` again, review it, and apply the new plan.");
        ui.notice(Notice::Note(&message));
        return Ok(Ended::Refused);
    }
    let (states, changes) = state::predict(&graph, &live);
    let prepared = Prepared { graph, live, states, changes };
    if let Some(ended) = refuse_or_skip(&prepared.report(), ui) {
        return Ok(ended);
    }
    let mut record = run::new_record(&prepared, &saved.plan_name, saved.accept_data_loss, &[], &targets);
    record.plan_digest = saved.plan_digest.clone();
    let end = run::start_run(prepared.graph, record, &targets, run_options, ui).await?;
    Ok(Ended::Ran(Box::new(end)))
}

/// Blocked steps stop an apply before it starts; a plan with nothing to do ends it.
fn refuse_or_skip(report: &PlanReport<'_>, ui: &dyn Frontend) -> Option<Ended> {
    let blocked = report.blocked();
    if !blocked.is_empty() {
        for (id, why) in blocked {
            ui.notice(Notice::Note(&format!("error: step {id} is blocked: {why}")));
        }
        ui.notice(Notice::Note("Nothing was changed."));
        return Some(Ended::Refused);
    }
    (report.to_do() == 0).then(|| {
        ui.notice(Notice::Note("Nothing to apply."));
        Ended::NothingToDo
    })
}
