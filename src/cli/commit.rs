//! `dr commit RUN`: shows what accepting a succeeded run frees (and, with
//! `--delete-snapshots`, which VolumeSnapshots go), asks, and commits through `crate::ops`.

use std::sync::Arc;

use crate::checkpoint::StateStore;
use crate::ops::commit::{self, CommitOptions, Pending, Review};
use crate::ops::{Frontend, TargetOptions};
use crate::steps::kube::cleanup::RunSnapshot;
use crate::steps::kube::commit::RetainedVolume;

pub async fn commit(
    run_id: &str,
    targets: &TargetOptions,
    store: Arc<dyn StateStore>,
    options: CommitOptions,
    auto_approve: bool,
    ui: &dyn Frontend,
) -> Result<i32, String> {
    match commit::review(run_id, targets, store, options).await? {
        Review::AlreadyCommitted => {
            eprintln!("Run {run_id} is already committed.");
            Ok(0)
        }
        Review::Cleanup(pending) => delete_snapshots(pending, auto_approve, ui).await,
        Review::Commit(pending) => {
            print_review(run_id, &pending.volumes);
            if options.delete_snapshots {
                print_snapshots(&pending.snapshots);
            }
            if pending.changes_anything() && !auto_approve && !ui.confirm("\nDo you want to commit this run?")? {
                eprintln!("Commit cancelled.");
                return Ok(1);
            }
            pending.commit().await?;
            eprintln!("Run {run_id} committed; it can no longer be rolled back.");
            Ok(0)
        }
    }
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
async fn delete_snapshots(pending: Pending, auto_approve: bool, ui: &dyn Frontend) -> Result<i32, String> {
    let run_id = pending.run_id.clone();
    println!("Run {run_id} has nothing left to commit; cleaning up");
    print_snapshots(&pending.snapshots);
    if pending.snapshots.is_empty() {
        return Ok(0);
    }
    if !auto_approve && !ui.confirm("\nDo you want to delete these snapshots?")? {
        eprintln!("Cancelled.");
        return Ok(1);
    }
    let count = pending.snapshots.len();
    pending.commit().await?;
    eprintln!("Deleted the {} of run {run_id}.", crate::diag::plural(count, "VolumeSnapshot"));
    Ok(0)
}
