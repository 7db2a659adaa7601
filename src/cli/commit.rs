//! `dr commit RUN`: accept a succeeded run and free what it kept for rollback; with
//! `--delete-snapshots`, also delete the VolumeSnapshots it took.

use super::StateArgs;
use super::apply::{TargetArgs, confirm, reconnect};
use crate::checkpoint::{LockInfo, RunMode, RunStatus};
use crate::graph;
use crate::steps::kube::cleanup::{self, RunSnapshot};
use crate::steps::kube::commit::{self, RetainedVolume};

/// What `dr commit` was asked to do besides committing.
#[derive(Clone, Copy, Debug)]
pub struct CommitOptions {
    pub auto_approve: bool,
    pub delete_snapshots: bool,
}

pub async fn commit(
    run_id: &str,
    target_args: &TargetArgs,
    state: &StateArgs,
    options: CommitOptions,
) -> Result<i32, String> {
    let store = state.store();
    let mut record = store.load_run(run_id).map_err(|e| e.to_string())?;
    match (&record.mode, record.status) {
        // A rolled-back (or already committed) run has nothing left to commit, but its
        // snapshots may still be there.
        (RunMode::Apply, RunStatus::RolledBack | RunStatus::Committed) if options.delete_snapshots => {
            let lock =
                store.lock(&record.lock_key(), &LockInfo::current(run_id, "commit")).map_err(|e| e.to_string())?;
            let targets = reconnect(&record, target_args).await?;
            let code = delete_snapshots(run_id, &targets.clients, options.auto_approve).await?;
            drop(lock);
            return Ok(code);
        }
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
    let snapshots = match options.delete_snapshots {
        true => cleanup::snapshots_of(&targets.clients, run_id).await?,
        false => Vec::new(),
    };
    if options.delete_snapshots {
        print_snapshots(&snapshots);
    }
    let releasable: Vec<&RetainedVolume> = volumes.iter().filter(|v| v.keep_because.is_none()).collect();
    let changes = !releasable.is_empty() || !snapshots.is_empty();
    if changes && !options.auto_approve && !confirm("\nDo you want to commit this run?")? {
        eprintln!("Commit cancelled.");
        return Ok(1);
    }
    for volume in releasable {
        commit::release(&targets.clients, volume).await?;
    }
    for snapshot in &snapshots {
        cleanup::delete(&targets.clients, snapshot).await?;
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

fn print_snapshots(snapshots: &[RunSnapshot]) {
    println!("and deletes the VolumeSnapshots it took:");
    if snapshots.is_empty() {
        println!("  (none left)");
    }
    for s in snapshots {
        let content = match (&s.content, s.content_policy.as_deref()) {
            (Some(content), Some("Retain")) => {
                format!(" and content {content} (deletionPolicy Retain -> Delete, so the provider's snapshot goes too)")
            }
            (Some(content), _) => format!(" and content {content}"),
            (None, _) => String::new(),
        };
        println!("  - VolumeSnapshot {}/{} [{}]{content}", s.namespace, s.name, s.cluster);
    }
}

/// `dr commit --delete-snapshots` of a run that was rolled back (or committed before).
async fn delete_snapshots(
    run_id: &str,
    clients: &std::collections::BTreeMap<String, kube::Client>,
    auto_approve: bool,
) -> Result<i32, String> {
    let snapshots = cleanup::snapshots_of(clients, run_id).await?;
    println!("Run {run_id} has nothing left to commit; cleaning up");
    print_snapshots(&snapshots);
    if snapshots.is_empty() {
        return Ok(0);
    }
    if !auto_approve && !confirm("\nDo you want to delete these snapshots?")? {
        eprintln!("Cancelled.");
        return Ok(1);
    }
    for snapshot in &snapshots {
        cleanup::delete(clients, snapshot).await?;
    }
    eprintln!("Deleted the {} of run {run_id}.", crate::diag::plural(snapshots.len(), "VolumeSnapshot"));
    Ok(0)
}
