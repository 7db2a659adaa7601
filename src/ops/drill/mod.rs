//! `drill`: a rehearsed failover that measures what it achieved. It applies the plan
//! (no prompt: drills run unattended), verifies the restored service, measures the
//! achieved RTO and RPO against the plan's `objectives`, then rolls back (the default, so
//! production is left as it was) or commits; and writes JUnit, JSON and Markdown reports
//! with the trend of earlier drills.

pub mod manifests;
pub mod measure;
pub mod report;
pub mod verify;

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::commit::{self, CommitOptions, Review};
use super::run::{self, Ended, RunEnd, RunOptions};
use super::target::{self, Reach, TargetOptions, Targets};
use super::{Frontend, Notice, plan};
use crate::checkpoint::{RunStatus, StepStatus};
use crate::graph;
use crate::lang::{self, Objectives};
use measure::{Outage, StepTiming};
use report::{CheckResult, DrillReport, Measurement, ReportPaths, StepResult};
use verify::Verified;

/// What a drill does once the restored service is verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Then {
    /// Undo the run: production is left as it was.
    #[default]
    Rollback,
    /// Keep the restored state and release what the run kept for rollback.
    Commit,
}

impl Then {
    fn name(self) -> &'static str {
        match self {
            Then::Rollback => "rollback",
            Then::Commit => "commit",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    pub then: Then,
    /// Where the reports and the history file are written.
    pub report_dir: Option<PathBuf>,
}

/// A finished drill: its report, and where it was written.
#[derive(Debug)]
pub struct Drilled {
    pub report: DrillReport,
    pub paths: Option<ReportPaths>,
}

/// Runs a drill of the plan at `plan_path`. An error means the drill could not run (an
/// invalid or blocked plan, nothing to do, unreachable clusters); a drill that ran
/// returns its report, failed or not.
pub async fn drill(
    plan_path: &Path,
    targets: &TargetOptions,
    run_options: &RunOptions,
    options: &DrillOptions,
    ui: &dyn Frontend,
) -> Result<Drilled, String> {
    let started_at = Timestamp::now();
    let (loaded, diags) = lang::load_plan(plan_path);
    ui.diagnostics(&diags);
    let Some(loaded) = loaded.filter(|_| !diags.has_errors()) else {
        return Err(format!("{} has problems; nothing was changed", plan_path.display()));
    };
    let targets = target::connect(plan_path, &target::plan_clusters(&loaded), targets).await?;
    let lock = run::lock_run(run_options.store.as_ref(), loaded.plan.name(), &targets)?;
    let prepared = plan::prepare(&loaded, &targets, ui).await?;
    let review = prepared.report();
    ui.notice(Notice::Review(&review.text()));
    if let Some((id, why)) = review.blocked().into_iter().next() {
        return Err(format!("step {id} is blocked: {why}; nothing was changed"));
    }
    if review.to_do() == 0 {
        return Err("nothing to drill: the clusters are already as the plan leaves them".into());
    }
    // Read before the disruption: deleting the replication ends what it could tell.
    let (efs_points, efs_problems) = verify::efs_recovery_points(&prepared.graph, &targets.cloud).await;
    efs_problems.iter().for_each(|p| ui.notice(Notice::Warning(p)));
    let bytes = std::fs::read(plan_path).map_err(|e| format!("reading {}: {e}", plan_path.display()))?;
    let mut record = run::new_record(&prepared, loaded.plan.name(), loaded.plan.accept_data_loss, &bytes, &targets);
    record.run_id = lock.run_id;
    let end = run::run_locked(prepared.graph, record, (lock.key, lock.guard), &targets, run_options, ui).await?;

    let graph = graph::saved::from_json(&end.record.plan)?;
    let timings = measure::step_timings(&graph, &end.record);
    ui.notice(Notice::Note("\nVerifying the restored service"));
    let mut verified = verify::verify(&graph, &timings, &targets.clients).await;
    verified.recovery_points.extend(efs_points);
    let run_label = crate::steps::kube::label_value(end.run_id());
    for point in &mut verified.recovery_points {
        point.created_at = point.captured_by_run_clock(&run_label, &timings);
    }
    let outage = measure::outage(&graph, &timings);
    let (rto, rpo) = measure_objectives(&end, outage, &verified, loaded.plan.objectives.as_ref());

    let verified_ok = verified.checks.iter().all(|c| c.failure.is_none());
    let (rollback_run_id, then_status) = match options.then {
        Then::Rollback => roll_back(&end, &targets, run_options, ui).await?,
        Then::Commit if end.status == RunStatus::Succeeded && verified_ok => {
            (None, commit_run(end.run_id(), &targets, run_options, ui).await?)
        }
        Then::Commit => {
            ui.notice(Notice::Warning("not committing: the run or its verification failed"));
            (None, "skipped".to_string())
        }
    };

    let mut report = DrillReport {
        version: report::DRILL_REPORT_VERSION,
        plan: loaded.plan.name().to_string(),
        plan_path: plan_path.display().to_string(),
        run_id: end.run_id().to_string(),
        rollback_run_id,
        then: options.then.name().into(),
        target: targets.description(),
        started_at: started_at.to_string(),
        finished_at: Timestamp::now().to_string(),
        run_status: end.status.to_string(),
        then_status,
        passed: false,
        rto,
        rpo,
        steps: timings.iter().map(step_result).collect(),
        verification: verified.checks.iter().map(check_result).collect(),
        history: Vec::new(),
    };
    report.passed = report.failures().is_empty();
    let paths = match &options.report_dir {
        Some(dir) => Some(write(dir, &mut report)?),
        None => None,
    };
    Ok(Drilled { report, paths })
}

/// Achieved RTO and RPO against the objectives. The RTO is measured only when the run
/// restored the service; the RPO is the age, at the disruption, of the oldest recovery
/// point a restore used (zero when it was taken after the disruption).
fn measure_objectives(
    end: &RunEnd,
    outage: Option<Outage>,
    verified: &Verified,
    objectives: Option<&Objectives>,
) -> (Measurement, Measurement) {
    let secs = |d: Option<&lang::Spanned<lang::Duration>>| d.map(|d| d.value.0.as_secs_f64());
    let rto_objective = secs(objectives.and_then(|o| o.rto.as_ref()));
    let rpo_objective = secs(objectives.and_then(|o| o.rpo.as_ref()));
    let rto = match (end.status, outage) {
        (RunStatus::Succeeded, Some(outage)) => Measurement::judge(
            Some(outage.seconds()),
            rto_objective,
            format!(
                "from the first disruptive step ({}) to the end of the last readiness check ({})",
                outage.disrupted_at, outage.restored_at
            ),
        ),
        (status, _) => {
            Measurement::judge(None, rto_objective, format!("the run {status}, so the service was not restored"))
        }
    };
    let rpo = match (outage, verified.recovery_points.iter().min_by_key(|p| p.created_at)) {
        (Some(outage), Some(oldest)) => {
            let age = measure::recovery_point_age(oldest.created_at, outage.disrupted_at);
            let detail = format!(
                "{} restored from {}, captured {}; disruption at {}",
                oldest.restored, oldest.from, oldest.created_at, outage.disrupted_at
            );
            Measurement::judge(Some(age), rpo_objective, detail)
        }
        _ => Measurement::judge(
            None,
            rpo_objective,
            "nothing was restored from a snapshot or replica the drill could read".into(),
        ),
    };
    (rto, rpo)
}

async fn roll_back(
    end: &RunEnd,
    targets: &Targets,
    run_options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<(Option<String>, String), String> {
    ui.notice(Notice::Note(&format!(
        "\nRolling back run {} (a drill leaves the clusters as it found them)",
        end.run_id()
    )));
    match super::rollback::rollback(end.run_id(), Reach::Connected(targets), run_options, ui).await? {
        Ended::Ran(undo) => Ok((Some(undo.run_id().to_string()), undo.status.to_string())),
        other => Ok((None, format!("{other:?}").to_lowercase())),
    }
}

async fn commit_run(
    run_id: &str,
    targets: &Targets,
    run_options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<String, String> {
    ui.notice(Notice::Note(&format!("\nCommitting run {run_id}")));
    let store = run_options.store.clone();
    match commit::review(run_id, Reach::Connected(targets), store, CommitOptions::default()).await? {
        Review::Commit(pending) => pending.commit().await.map(|()| "committed".into()),
        Review::AlreadyCommitted => Ok("committed".into()),
        Review::Cleanup(_) => Err(format!("internal error: run {run_id} cannot be committed")),
    }
}

/// Appends the drill to the history and writes the reports.
fn write(dir: &Path, report: &mut DrillReport) -> Result<ReportPaths, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let history_path = ReportPaths::in_dir(dir).history;
    report::append_history(&history_path, &report.history_entry())?;
    report.history = report::read_history(&history_path).into_iter().filter(|h| h.plan == report.plan).collect();
    report::write_reports(dir, report)
}

fn status_name(status: StepStatus) -> String {
    format!("{status:?}").to_lowercase()
}

fn step_result(timing: &StepTiming) -> StepResult {
    StepResult {
        id: timing.id.clone(),
        kind: timing.kind.to_string(),
        description: timing.description.clone(),
        status: status_name(timing.status),
        seconds: timing.seconds(),
        started_at: timing.started.map(|t| t.to_string()),
        error: timing.error.clone(),
    }
}

fn check_result(check: &verify::Check) -> CheckResult {
    CheckResult { name: check.name.clone(), passed: check.failure.is_none(), failure: check.failure.clone() }
}
