//! `resume`: continues an interrupted or failed run with the steps it was approved with.

use super::run::{self, Ended, RunOptions};
use super::target::{self, TargetOptions};
use super::{Frontend, Notice};
use crate::checkpoint::{LockInfo, RunMode};
use crate::graph;

pub async fn resume(
    run_id: &str,
    targets: &TargetOptions,
    run_options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<Ended, String> {
    let store = &run_options.store;
    let record = store.load_run(run_id).map_err(|e| e.to_string())?;
    if record.mode != RunMode::Apply {
        return Err(format!("run {run_id} is a rollback; resume it with `dr rollback {run_id}`"));
    }
    let lock = store.lock(&record.lock_key(), &LockInfo::current(run_id, "resume")).map_err(|e| e.to_string())?;
    if let Some(previous) = lock.took_over_from() {
        ui.notice(Notice::Warning(&format!(
            "took over the lock of process {} on {} (it died while running {})",
            previous.pid, previous.host, previous.operation
        )));
    }
    let graph = graph::saved::from_json(&record.plan)?;
    let targets = target::reconnect(&record, targets).await?;
    ui.notice(Notice::Note(&format!("Resuming run {run_id}")));
    let end = run::execute(graph, record, &targets, run_options, ui).await;
    drop(lock);
    end.map(|end| Ended::Ran(Box::new(end)))
}
