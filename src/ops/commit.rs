//! `commit`: accepts a succeeded run and frees what it kept for rollback (the original
//! volumes get their reclaim policy back); optionally deletes the VolumeSnapshots it took.
//!
//! Two phases, like plan and apply: [`review`] takes the run's lock and finds what
//! committing changes; the caller shows it, asks, and calls [`Pending::commit`].

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Client;

use super::target::{self, TargetOptions};
use crate::checkpoint::{LockGuard, LockInfo, RunMode, RunRecord, RunStatus, StateStore};
use crate::graph;
use crate::steps::kube::cleanup::{self, RunSnapshot};
use crate::steps::kube::commit::{self, RetainedVolume};

/// What `commit` was asked to do besides committing.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitOptions {
    /// Also delete the VolumeSnapshots the run took (and, for a rolled-back run, only that).
    pub delete_snapshots: bool,
}

/// What committing a run would do, found under the run's lock.
pub enum Review {
    /// Nothing to do: the run was committed before.
    AlreadyCommitted,
    /// A succeeded run to commit.
    Commit(Pending),
    /// A rolled-back (or committed) run whose snapshots are to be deleted.
    Cleanup(Pending),
}

/// A commit or clean-up found by [`review`], holding the run's lock until it is done.
pub struct Pending {
    pub run_id: String,
    /// Volumes the run retained; those without `keep_because` are released.
    pub volumes: Vec<RetainedVolume>,
    /// Snapshots to delete (empty unless asked to).
    pub snapshots: Vec<RunSnapshot>,
    record: RunRecord,
    store: Arc<dyn StateStore>,
    clients: BTreeMap<String, Client>,
    _lock: Box<dyn LockGuard>,
}

impl Pending {
    /// The retained volumes committing gives their original reclaim policy back.
    pub fn releasable(&self) -> impl Iterator<Item = &RetainedVolume> {
        self.volumes.iter().filter(|v| v.keep_because.is_none())
    }

    /// Whether committing changes anything in the clusters.
    pub fn changes_anything(&self) -> bool {
        self.releasable().next().is_some() || !self.snapshots.is_empty()
    }

    /// Releases the volumes, deletes the snapshots and marks the run committed (a
    /// clean-up leaves the run's status as it is).
    pub async fn commit(mut self) -> Result<(), String> {
        for volume in self.releasable() {
            commit::release(&self.clients, volume).await?;
        }
        for snapshot in &self.snapshots {
            cleanup::delete(&self.clients, snapshot).await?;
        }
        if self.record.status == RunStatus::Succeeded {
            self.record.status = RunStatus::Committed;
            self.record.touch();
            self.store.save_run(&self.record).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Finds what committing run `run_id` would change, holding its lock.
pub async fn review(
    run_id: &str,
    targets: &TargetOptions,
    store: Arc<dyn StateStore>,
    options: CommitOptions,
) -> Result<Review, String> {
    let record = store.load_run(run_id).map_err(|e| e.to_string())?;
    let cleanup_only = match (&record.mode, record.status) {
        // A rolled-back (or already committed) run has nothing left to commit, but its
        // snapshots may still be there.
        (RunMode::Apply, RunStatus::RolledBack | RunStatus::Committed) if options.delete_snapshots => true,
        (_, RunStatus::Committed) => return Ok(Review::AlreadyCommitted),
        (RunMode::Apply, RunStatus::Succeeded) => false,
        (RunMode::Rollback { .. }, _) => return Err(format!("run {run_id} is a rollback; commit the runs you keep")),
        (_, status) => {
            return Err(format!(
                "run {run_id} is {status}; only a succeeded run can be committed (resume it, or roll it back)"
            ));
        }
    };
    let lock = store.lock(&record.lock_key(), &LockInfo::current(run_id, "commit")).map_err(|e| e.to_string())?;
    let mut volumes = Vec::new();
    let targets = if cleanup_only {
        target::reconnect(&record, targets).await?
    } else {
        let applied = graph::saved::from_json(&record.plan)?;
        volumes = commit::retained_by(&applied, &record);
        let targets = target::reconnect(&record, targets).await?;
        commit::inspect(&targets.clients, &mut volumes).await?;
        targets
    };
    let snapshots = match options.delete_snapshots {
        true => cleanup::snapshots_of(&targets.clients, run_id).await?,
        false => Vec::new(),
    };
    let pending = Pending {
        run_id: run_id.to_string(),
        volumes,
        snapshots,
        record,
        store,
        clients: targets.clients,
        _lock: lock,
    };
    Ok(if cleanup_only { Review::Cleanup(pending) } else { Review::Commit(pending) })
}
