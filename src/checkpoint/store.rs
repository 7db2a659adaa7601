//! The store interface: where runs are kept and how a run claims its target.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::record::{RunRecord, RunSummary, SummaryStatus};

/// Keeps run records and hands out exclusive locks (Terraform's `statemgr.Full` + `Locker`).
///
/// Object safe, so the CLI can hold a `Box<dyn StateStore>` and a Kubernetes-backed
/// store (ConfigMap records, Lease lock) can replace [`super::LocalDirStore`].
/// Writers are expected to hold the lock for the run's [`RunRecord::lock_key`].
pub trait StateStore: Send + Sync {
    /// Claims `key` for the holder described by `info`; held until the guard is dropped or unlocked.
    ///
    /// Fails with [`StoreError::Locked`] naming the current holder when someone else has it.
    fn lock(&self, key: &str, info: &LockInfo) -> Result<Box<dyn LockGuard>, StoreError>;

    /// Stores a new run; fails with [`StoreError::RunExists`] if its id is taken.
    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// Replaces an existing run atomically: a reader sees the old record or the new one, never a mix.
    fn save_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// Saves `run` like [`StateStore::save_run`], told that only the header and the records
    /// of the `changed` steps can differ from this process's last save of it: a store that
    /// writes differences may skip comparing the rest (a fleet's run has thousands of steps
    /// and a save per transition). The default saves the whole run.
    fn save_run_changed(&self, run: &RunRecord, changed: &BTreeSet<String>) -> Result<(), StoreError> {
        let _ = changed;
        self.save_run(run)
    }

    fn load_run(&self, run_id: &str) -> Result<RunRecord, StoreError>;

    /// Every run, newest first. A run that cannot be read is listed as corrupt rather
    /// than failing the listing.
    fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError>;

    /// The newest readable run of `plan_name`, if any.
    fn latest_run(&self, plan_name: &str) -> Result<Option<RunRecord>, StoreError> {
        let newest = self
            .list_runs()?
            .into_iter()
            .find(|run| run.plan_name == plan_name && run.status != SummaryStatus::Corrupt);
        newest.map(|run| self.load_run(&run.run_id)).transpose()
    }
}

/// A held lock. Dropping it releases the lock; [`LockGuard::unlock`] does the same but reports failures.
pub trait LockGuard: Send + Sync + fmt::Debug {
    /// Who holds the lock: what was passed to [`StateStore::lock`].
    fn info(&self) -> &LockInfo;

    /// The previous holder, when the lock was taken over from a process that died holding it.
    /// The CLI should warn: that run was interrupted and may need `dr resume`.
    fn took_over_from(&self) -> Option<&LockInfo>;

    fn unlock(self: Box<Self>) -> Result<(), StoreError>;
}

/// Who holds a lock, stored in it so the next contender can say who is in the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// `user@host`.
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub run_id: String,
    /// RFC 3339 UTC.
    pub since: String,
    /// What the holder is doing, e.g. `apply`, `resume`, `rollback`.
    pub operation: String,
}

impl LockInfo {
    /// Describes this process running `operation` for `run_id`, starting now.
    pub fn current(run_id: &str, operation: &str) -> LockInfo {
        let host = this_host();
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        LockInfo {
            holder: format!("{user}@{host}"),
            pid: std::process::id(),
            host,
            run_id: run_id.to_string(),
            since: super::now_rfc3339(),
            operation: operation.to_string(),
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {} on {}) since {}, running `{}` for run {}",
            self.holder, self.pid, self.host, self.since, self.operation, self.run_id
        )
    }
}

/// This machine's name, as the kernel knows it; compared with a lock's `host` to decide
/// whether its pid can be checked here.
pub(super) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// The state directory of a run record's path (`DIR/runs/RUN/run.json`).
fn state_dir_of(record: &std::path::Path) -> &std::path::Path {
    record.ancestors().nth(3).filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location} is locked by {holder}.\nWait for that run to finish. {if_gone}")]
    Locked {
        /// Where the lock lives, e.g. the lock file's path.
        location: String,
        /// Boxed to keep `Result<_, StoreError>` small.
        holder: Box<LockInfo>,
        /// What to do if the holder is gone for good (this depends on the store).
        if_gone: String,
    },

    #[error(
        "the lock {location} was taken over by {holder} after this process failed to renew it; \
         this process stopped writing run {run_id} so the new holder's record is not overwritten"
    )]
    LockLost { location: String, holder: String, run_id: String },

    #[error(
        "no run {run_id} in {location}: the Kubernetes state store keeps each run in a ConfigMap of \
         its namespace; `dr runs` with the same --state-store lists them"
    )]
    RunNotInCluster { run_id: String, location: String },

    #[error(
        "run {run_id} in {location} was changed by another writer since this process read it \
         (resourceVersion {expected} is stale); not overwritten. Another `dr` may have taken the run's \
         lock over; check `dr runs` and resume from the stored record"
    )]
    Conflict { run_id: String, location: String, expected: String },

    #[error(
        "run {run_id} needs {bytes} bytes, more than the {limit} bytes a ConfigMap can hold, so it \
         was not written to {location}. Keep runs of this plan in a local --state-store, or split the \
         plan so each run captures less"
    )]
    TooLarge { run_id: String, location: String, bytes: usize, limit: usize },

    #[error("cannot {action} {location} through the Kubernetes API: {reason}")]
    Kubernetes { action: &'static str, location: String, reason: String },

    #[error("run {run_id} already exists at {}", path.display())]
    RunExists { run_id: String, path: PathBuf },

    #[error(
        "no run {run_id} in the state directory {}: {} does not exist. Runs are kept in the \
         directory given by --state-dir, or else DRPLAN_STATE_DIR, or else .drplan in the current \
         directory; `dr runs` (with the same --state-dir) lists them",
        state_dir_of(path).display(), path.display()
    )]
    RunNotFound { run_id: String, path: PathBuf },

    #[error("{run_id:?} is not a run id (letters, digits, '.', '_' and '-', not starting with '.')")]
    InvalidRunId { run_id: String },

    #[error("{} is corrupt: {reason}; it was not used", path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("{} is not a drplan run this version can read: {reason}", path.display())]
    Foreign { path: PathBuf, reason: String },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot encode run {run_id}: {source}")]
    Encode {
        run_id: String,
        #[source]
        source: serde_json::Error,
    },
}
