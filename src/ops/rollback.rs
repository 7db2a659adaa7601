//! `rollback`: undoes a run's completed steps in reverse dependency order, as a run of
//! its own (resumable like any run). Given a rollback run, or an apply run whose rollback
//! was interrupted, it continues that rollback.

use std::sync::Arc;

use super::run::{self, Ended, RunOptions};
use super::target::Reach;
use super::{Frontend, Notice};
use crate::checkpoint::{self, LockInfo, RunMode, RunRecord, StepRecord};
use crate::graph;

pub async fn rollback(
    run_id: &str,
    reach: Reach<'_>,
    run_options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<Ended, String> {
    let store = run_options.store.clone();
    let named = store.load_run(run_id).map_err(|e| e.to_string())?;
    let (mut original, existing) = match &named.mode {
        RunMode::Rollback { of } => (store.load_run(of).map_err(|e| e.to_string())?, Some(named.clone())),
        RunMode::Apply => {
            let unfinished = store.list_runs().map_err(|e| e.to_string())?.into_iter().find(|r| {
                r.mode == Some(RunMode::Rollback { of: run_id.to_string() })
                    && r.status != checkpoint::SummaryStatus::Run(checkpoint::RunStatus::Succeeded)
            });
            let existing = unfinished.map(|r| store.load_run(&r.run_id)).transpose().map_err(|e| e.to_string())?;
            (named.clone(), existing)
        }
    };
    if original.status == checkpoint::RunStatus::Committed {
        return Err(format!(
            "run {} was committed: the original volumes it kept for rollback were released, so it cannot be rolled back",
            original.run_id
        ));
    }
    let lock = store
        .lock(&original.lock_key(), &LockInfo::current(&original.run_id, "rollback"))
        .map_err(|e| e.to_string())?;
    let applied = graph::saved::from_json(&original.plan)?;
    // Reached first: a rollback refused for pointing at another cluster records nothing.
    let (clients, cloud) = reach.connections(&original).await?;
    let undo = crate::steps::kube::undo::undo_graph(&applied, &original);
    for id in crate::steps::kube::undo::not_undoable(&applied, &original) {
        let message = format!("Rollback cannot undo step {id}: it ran a command in a pod and names no `undo:` command");
        ui.notice(Notice::Note(&message));
    }
    for warning in crate::cloud::runner::not_undone(&applied, &original) {
        ui.notice(Notice::Warning(&warning));
    }
    let record = match existing {
        Some(record) => record,
        None => {
            let mut saved = graph::saved::to_json(&undo);
            saved["clusters"] = original.plan["clusters"].clone();
            let mode = RunMode::Rollback { of: original.run_id.clone() };
            let mut record =
                RunRecord::new(&original.plan_name, original.plan_digest.clone(), original.target.clone(), mode, saved);
            record.clusters = original.clusters.clone();
            for (_, step) in undo.steps() {
                record.steps.insert(step.id.clone(), StepRecord::default());
            }
            store.create_run(&record).map_err(|e| e.to_string())?;
            record
        }
    };
    let undo = graph::saved::from_json(&record.plan)?;
    ui.notice(Notice::Note(&format!(
        "Rolling back run {} with run {} ({} compensating steps)",
        original.run_id,
        record.run_id,
        undo.len()
    )));
    let kube = crate::steps::kube::undo::UndoRunner {
        clients,
        original: original.clone(),
        applied,
        ready_timeout: run_options.step_timeout,
        watches: Default::default(),
        fresh_lists: Default::default(),
    };
    // Cloud compensations (delete the snapshots and volumes the run made) go to AWS.
    let runner = Arc::new(crate::cloud::runner::UndoPlanRunner { kube, cloud });
    let end = run::execute_with(undo, record, runner, run_options, ui).await?;
    if end.status == checkpoint::RunStatus::Succeeded {
        original.status = checkpoint::RunStatus::RolledBack;
        original.touch();
        store.save_run(&original).map_err(|e| e.to_string())?;
    }
    drop(lock);
    Ok(Ended::Ran(Box::new(end)))
}
