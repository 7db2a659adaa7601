//! The checkpoint data: one [`RunRecord`] per run, one [`StepRecord`] per step.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use super::now_rfc3339;

/// The version of the `run.json` layout this build writes. Version 2 added the journal
/// (`journal.jsonl` beside `run.json`, and `journalSeq` in it); version 1 files are still read.
pub const FORMAT_VERSION: u32 = 2;

/// The `kind` marker of a run file, so a stray JSON file is never mistaken for a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunKind {
    #[default]
    DrplanRun,
}

/// Everything needed to resume or roll back one run of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub kind: RunKind,
    pub format: u32,
    pub run_id: String,
    pub plan_name: String,
    /// Hex SHA-256 of the plan file bytes ([`super::digest`]); resume refuses a changed plan.
    pub plan_digest: String,
    /// What the run acts on, e.g. the kube contexts joined; part of the lock key.
    pub target: String,
    pub mode: RunMode,
    pub status: RunStatus,
    pub created_at: String,
    pub updated_at: String,
    /// The expanded plan the run executes; opaque here.
    pub plan: serde_json::Value,
    /// How each cluster of the plan was reached (kubeconfig file, context, server URL;
    /// never credentials), so resume, rollback and commit reach the same clusters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, crate::cluster::ClusterTarget>,
    pub steps: BTreeMap<String, StepRecord>,
}

impl RunRecord {
    /// A new running record with a fresh id and no steps yet.
    pub fn new(
        plan_name: &str,
        plan_digest: String,
        target: String,
        mode: RunMode,
        plan: serde_json::Value,
    ) -> RunRecord {
        let now = now_rfc3339();
        RunRecord {
            kind: RunKind::DrplanRun,
            format: FORMAT_VERSION,
            run_id: super::new_run_id(plan_name),
            plan_name: plan_name.to_string(),
            plan_digest,
            target,
            mode,
            status: RunStatus::Running,
            created_at: now.clone(),
            updated_at: now,
            plan,
            clusters: BTreeMap::new(),
            steps: BTreeMap::new(),
        }
    }

    /// The key runs of this plan against this target lock: two such runs must not interleave.
    pub fn lock_key(&self) -> String {
        format!("{}@{}", self.plan_name, self.target)
    }

    /// Marks the record as changed now; call before saving.
    pub fn touch(&mut self) {
        self.updated_at = now_rfc3339();
    }

    /// How many steps are in each status.
    pub fn step_counts(&self) -> BTreeMap<StepStatus, usize> {
        let mut counts = BTreeMap::new();
        for step in self.steps.values() {
            *counts.entry(step.status).or_insert(0) += 1;
        }
        counts
    }
}

/// Whether a run moves the cluster forward or undoes an earlier run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunMode {
    Apply,
    /// Undoes the run with id `of`.
    Rollback {
        of: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped by a signal or a crash; resumable.
    Interrupted,
    RolledBack,
    /// Succeeded and verified: the original volumes kept for rollback were released.
    Committed,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::Committed => "committed",
        })
    }
}

/// The progress of one step, and what it captured for rollback.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// What the step saw before changing it: original replicas, saved manifests,
    /// snapshot and PV names, original reclaim policy. Secret data is redacted on save.
    pub captured: BTreeMap<String, serde_json::Value>,
}

impl StepRecord {
    /// Moves to `Running` and counts an attempt.
    pub fn start(&mut self) {
        self.status = StepStatus::Running;
        self.attempts += 1;
        self.started_at = Some(now_rfc3339());
        self.finished_at = None;
        self.error = None;
    }

    /// Moves to a final status (`Succeeded`, `Skipped`, `Compensated`...).
    pub fn finish(&mut self, status: StepStatus) {
        self.status = status;
        self.finished_at = Some(now_rfc3339());
    }

    pub fn fail(&mut self, error: impl Into<String>) {
        self.finish(StepStatus::Failed);
        self.error = Some(error.into());
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Its rollback is in progress.
    Compensating,
    /// Its rollback finished.
    Compensated,
}

/// One line of a run listing. A run whose file cannot be used is still listed, as
/// [`SummaryStatus::Corrupt`], with the reason in `problem`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    /// Empty when the run is corrupt.
    pub plan_name: String,
    pub mode: Option<RunMode>,
    pub status: SummaryStatus,
    pub problem: Option<String>,
    /// For a corrupt run, the file's modification time (or empty when unknown).
    pub created_at: String,
    pub updated_at: String,
    pub step_counts: BTreeMap<StepStatus, usize>,
}

impl RunSummary {
    pub fn of(record: &RunRecord) -> RunSummary {
        RunSummary {
            run_id: record.run_id.clone(),
            plan_name: record.plan_name.clone(),
            mode: Some(record.mode.clone()),
            status: SummaryStatus::Run(record.status),
            problem: None,
            created_at: record.created_at.clone(),
            updated_at: record.updated_at.clone(),
            step_counts: record.step_counts(),
        }
    }

    pub fn corrupt(run_id: &str, problem: String, modified_at: String) -> RunSummary {
        RunSummary {
            run_id: run_id.to_string(),
            plan_name: String::new(),
            mode: None,
            status: SummaryStatus::Corrupt,
            problem: Some(problem),
            created_at: modified_at.clone(),
            updated_at: modified_at,
            step_counts: BTreeMap::new(),
        }
    }
}

/// A run's status as listed: its own, or `corrupt` when its file cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryStatus {
    Run(RunStatus),
    Corrupt,
}

impl fmt::Display for SummaryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SummaryStatus::Run(status) => status.fmt(f),
            SummaryStatus::Corrupt => f.write_str("corrupt"),
        }
    }
}

/// Serialized as its display string (`"running"`, `"corrupt"`), like [`RunStatus`].
impl Serialize for SummaryStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_their_display_names() {
        for status in [RunStatus::Running, RunStatus::Interrupted, RunStatus::RolledBack] {
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(status.to_string()));
        }
        assert_eq!(serde_json::to_value(SummaryStatus::Corrupt).unwrap(), serde_json::json!("corrupt"));
    }

    #[test]
    fn modes_are_tagged() {
        let rollback = RunMode::Rollback { of: "r1".into() };
        assert_eq!(serde_json::to_value(&rollback).unwrap(), serde_json::json!({"type": "rollback", "of": "r1"}));
        assert_eq!(serde_json::to_value(RunMode::Apply).unwrap(), serde_json::json!({"type": "apply"}));
    }

    #[test]
    fn step_transitions_count_attempts_and_clear_old_errors() {
        let mut step = StepRecord::default();
        step.start();
        step.fail("timeout");
        assert_eq!((step.status, step.attempts, step.error.as_deref()), (StepStatus::Failed, 1, Some("timeout")));
        step.start();
        step.finish(StepStatus::Succeeded);
        assert_eq!((step.status, step.attempts, step.error.as_deref()), (StepStatus::Succeeded, 2, None));
        assert!(step.finished_at.is_some());
    }
}
