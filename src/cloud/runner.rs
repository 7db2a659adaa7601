//! The run's step runner: cloud steps go to [`super`], every other step to the
//! Kubernetes runner unchanged.

use std::sync::Arc;
use std::time::Duration;

use super::CloudAccess;
use super::{ebs, efs};
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

/// Whether this build executes a cloud step (all of them now: EFS and EBS).
pub fn executes(action: &Action) -> bool {
    is_cloud(action)
}

impl StepRunner for PlanRunner {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<(), StepError> {
        match step.action() {
            Some(action) if is_cloud(action) => self.run_cloud(step, action, ctx).await,
            Some(Action::BindStaticPv(p)) if p.volume.value.volume_from_step.is_some() => {
                self.kube.run(&with_created_volume(step, ctx)?, ctx).await
            }
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
            Action::EbsSnapshot(p) => ebs::snapshot(&self.cloud.ec2(&p.region).await, ctx, p).await,
            Action::EbsCopySnapshot(p) => ebs::copy_snapshot(&self.cloud.ec2(&p.region).await, ctx, p).await,
            Action::EbsCreateVolume(p) => {
                let limit = self.kube.default_timeout;
                within(limit, &step.id, ebs::create_volume(&self.cloud.ec2(&p.region).await, ctx, p)).await
            }
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
            WaitCondition::EbsSnapshotCompleted { region, snapshot } => {
                ebs::wait_snapshot_completed(&self.cloud.ec2(region).await, ctx, region, snapshot).await
            }
            _ => Err(StepError::new(ErrorKind::Unsupported, "this wait cannot be executed by this build yet")),
        }
    }
}

/// A `bindStaticPv` whose disk is the volume an `ebsCreateVolume` step created: the
/// same step with that volume's id (captured by the step) as its handle.
fn with_created_volume(step: &Step, ctx: &StepContext) -> Result<Step, StepError> {
    let mut resolved = step.clone();
    if let crate::graph::StepKind::Action(Action::BindStaticPv(p)) = &mut resolved.kind {
        let volume = &mut p.volume.value;
        if let Some(from) = volume.volume_from_step.take() {
            volume.volume_handle = ctx
                .captured_in(&from, ebs::VOLUME_ID)
                .and_then(|v| v.as_str().map(String::from))
                .ok_or_else(|| StepError::failed(format!("step `{}`: step `{from}` recorded no volume id", step.id)))?;
        }
    }
    Ok(resolved)
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

/// The rollback's step runner: compensations of cloud steps here (delete the snapshot,
/// copy or volume the original run's step made, found by its run and step tags), the
/// rest to the Kubernetes undo runner.
pub struct UndoPlanRunner {
    pub kube: crate::steps::kube::undo::UndoRunner,
    pub cloud: Arc<CloudAccess>,
}

impl StepRunner for UndoPlanRunner {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<(), StepError> {
        let original = step.id.strip_prefix(crate::steps::kube::undo::UNDO_PREFIX).unwrap_or(&step.id);
        let run = &self.kube.original.run_id;
        let (region, volume) = match step.action() {
            Some(Action::EbsSnapshot(p)) => (&p.region, false),
            Some(Action::EbsCopySnapshot(p)) => (&p.region, false),
            Some(Action::EbsCreateVolume(p)) => (&p.region, true),
            _ => return self.kube.run(step, ctx).await,
        };
        let client = self.cloud.ec2(region).await;
        ebs::delete_made(&client, &step.id, region, run, original, volume).await
    }
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
            Some(Action::EbsCreateVolume(p)) => format!(
                "step `{}` created an EBS volume in {}: rollback deletes it, and with it anything written to it since",
                step.id, p.availability_zone
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
