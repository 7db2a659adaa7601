//! The run's step runner: cloud steps go to [`super`], every other step to the
//! Kubernetes runner unchanged.

use std::sync::Arc;
use std::time::Duration;

use super::CloudAccess;
use super::efs;
use crate::exec::{ErrorKind, StepContext, StepError, StepRunner};
use crate::graph::Step;
use crate::steps::kube::KubeRunner;
use crate::steps::{Action, WaitCondition, WaitParams};

pub struct PlanRunner {
    pub kube: KubeRunner,
    pub cloud: Arc<CloudAccess>,
}

/// Whether a step talks to a cloud API rather than a cluster.
pub fn is_cloud(action: &Action) -> bool {
    match action {
        Action::EbsSnapshot(_)
        | Action::EbsCopySnapshot(_)
        | Action::EbsCreateVolume(_)
        | Action::EfsDeleteReplication(_)
        | Action::EfsCreateReplication(_)
        | Action::EfsSetOverwriteProtection(_) => true,
        Action::Wait(w) => matches!(
            w.condition,
            WaitCondition::EfsReplicationDeleted { .. }
                | WaitCondition::EfsReplicationSynced { .. }
                | WaitCondition::EbsSnapshotCompleted { .. }
        ),
        _ => false,
    }
}

/// Whether this build executes a cloud step (EFS; EBS steps are graphed only).
pub fn executes(action: &Action) -> bool {
    match action {
        Action::EfsDeleteReplication(_) | Action::EfsCreateReplication(_) | Action::EfsSetOverwriteProtection(_) => {
            true
        }
        Action::Wait(w) => matches!(
            w.condition,
            WaitCondition::EfsReplicationDeleted { .. } | WaitCondition::EfsReplicationSynced { .. }
        ),
        _ => false,
    }
}

impl StepRunner for PlanRunner {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<(), StepError> {
        match step.action() {
            Some(action) if is_cloud(action) => self.run_cloud(step, action, ctx).await,
            _ => self.kube.run(step, ctx).await,
        }
    }
}

impl PlanRunner {
    async fn run_cloud(&self, step: &Step, action: &Action, ctx: &StepContext) -> Result<(), StepError> {
        match action {
            Action::EfsDeleteReplication(p) => efs::delete_replication(&self.cloud.efs(&p.region).await, ctx, p).await,
            Action::EfsCreateReplication(p) => efs::create_replication(&self.cloud.efs(&p.region).await, ctx, p).await,
            Action::EfsSetOverwriteProtection(p) => efs::set_protection(&self.cloud.efs(&p.region).await, ctx, p).await,
            Action::Wait(WaitParams { condition, timeout, .. }) => {
                let limit = timeout.as_ref().map(|t| t.value.0).unwrap_or(self.kube.default_timeout);
                within(limit, &step.id, self.wait(condition, ctx)).await
            }
            other => Err(StepError::new(
                ErrorKind::Unsupported,
                format!("`{}` steps cannot be executed by this build yet", other.kind_name()),
            )),
        }
    }

    async fn wait(&self, condition: &WaitCondition, ctx: &StepContext) -> Result<(), StepError> {
        match condition {
            WaitCondition::EfsReplicationDeleted { region, file_system_id } => {
                efs::wait_replication_deleted(&self.cloud.efs(region).await, ctx, region, file_system_id).await
            }
            WaitCondition::EfsReplicationSynced { region, file_system_id } => {
                efs::wait_synced(&self.cloud.efs(region).await, ctx, region, file_system_id).await
            }
            _ => Err(StepError::new(ErrorKind::Unsupported, "this wait cannot be executed by this build yet")),
        }
    }
}

/// Bounds a wait by its timeout; a timeout is a failure, not a retry.
async fn within<F: std::future::Future<Output = Result<(), StepError>>>(
    limit: Duration,
    id: &str,
    work: F,
) -> Result<(), StepError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(StepError::failed(format!("step `{id}` timed out after {}", humantime::format_duration(limit))))
    })
}

/// What a rollback leaves as it is: the cloud steps of `record` that changed something.
/// Deleting a replication cannot be undone (EFS keeps no configuration to restore; going
/// back is the failback plan), and a replication or protection change is left for the
/// operator to review rather than reverted behind their back.
pub fn not_undone(applied: &crate::graph::StepGraph, record: &crate::checkpoint::RunRecord) -> Vec<String> {
    use crate::checkpoint::StepStatus;
    let mut notes = Vec::new();
    for (_, step) in applied.steps() {
        let status = record.steps.get(&step.id).map(|s| s.status).unwrap_or_default();
        if !matches!(status, StepStatus::Succeeded | StepStatus::Failed | StepStatus::Running) {
            continue;
        }
        let note = match step.action() {
            Some(Action::EfsDeleteReplication(p)) => format!(
                "step `{}` deleted the EFS replication from {} ({}): this cannot be undone; replicate again with a failback plan",
                step.id, p.source_file_system_id, p.region
            ),
            Some(Action::EfsCreateReplication(p)) => format!(
                "step `{}` created the EFS replication {} → {}: rollback leaves it in place (deleting it would make the destination writable); delete it by hand if it must go",
                step.id,
                p.source_file_system_id,
                p.destination_file_system_id.as_deref().unwrap_or("a new file system")
            ),
            Some(Action::EfsSetOverwriteProtection(p)) => format!(
                "step `{}` changed the replication overwrite protection of {}: rollback leaves it as it is",
                step.id, p.file_system_id
            ),
            _ => continue,
        };
        notes.push(note);
    }
    notes
}
