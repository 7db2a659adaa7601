//! `dr commit RUN`: accept a succeeded run and free what it kept for rollback.

use super::apply::{RunArgs, TargetArgs, confirm, reconnect, store};
use crate::checkpoint::{LockInfo, RunMode, RunStatus};
use crate::graph;
use crate::steps::kube::commit::{self, RetainedVolume};

pub async fn commit(
    run_id: &str,
    target_args: &TargetArgs,
    run_args: &RunArgs,
    auto_approve: bool,
) -> Result<i32, String> {
    let store = store(run_args);
    let mut record = store.load_run(run_id).map_err(|e| e.to_string())?;
    match (&record.mode, record.status) {
        (_, RunStatus::Committed) => {
            eprintln!("Run {run_id} is already committed.");
            return Ok(0);
        }
        (RunMode::Apply, RunStatus::Succeeded) => {}
        (RunMode::Rollback { .. }, _) => return Err(format!("run {run_id} is a rollback; commit the runs you keep")),
        (_, status) => {
            return Err(format!(
                "run {run_id} is {status}; only a succeeded run can be committed (resume it, or roll it back)"
            ));
        }
    }
    let lock = store.lock(&record.lock_key(), &LockInfo::current(run_id, "commit")).map_err(|e| e.to_string())?;
    let applied = graph::saved::from_json(&record.plan)?;
    let mut volumes = commit::retained_by(&applied, &record);
    let targets = reconnect(&record, target_args).await?;
    commit::inspect(&targets.clients, &mut volumes).await?;
    print_review(run_id, &volumes);
    let releasable: Vec<&RetainedVolume> = volumes.iter().filter(|v| v.keep_because.is_none()).collect();
    if !releasable.is_empty() && !auto_approve && !confirm("\nDo you want to commit this run?")? {
        eprintln!("Commit cancelled.");
        return Ok(1);
    }
    for volume in releasable {
        commit::release(&targets.clients, volume).await?;
    }
    record.status = RunStatus::Committed;
    record.touch();
    store.save_run(&record).map_err(|e| e.to_string())?;
    drop(lock);
    eprintln!("Run {run_id} committed; it can no longer be rolled back.");
    Ok(0)
}

fn print_review(run_id: &str, volumes: &[RetainedVolume]) {
    println!("Committing run {run_id} releases the original volumes it kept for rollback:");
    if volumes.is_empty() {
        println!("  (none: the run retained no volume)");
    }
    for v in volumes {
        let size = v.size.as_deref().map(|s| format!(", {s}")).unwrap_or_default();
        match &v.keep_because {
            Some(why) => println!("  = PV {} [{}]{size}: kept, {why}", v.pv, v.cluster),
            None if v.original_policy == "Delete" => println!(
                "  - PV {} [{}]{size}: reclaim policy Retain -> Delete; Kubernetes deletes it and its disk",
                v.pv, v.cluster
            ),
            None => println!("  ~ PV {} [{}]{size}: reclaim policy Retain -> {}", v.pv, v.cluster, v.original_policy),
        }
    }
}
