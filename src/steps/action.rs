//! The explicit step kinds (actions) and their parameters.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::refs::*;
use crate::lang::{Duration, Quantity, Spanned};

/// One concrete action. Intents expand into these; plans may also write them directly.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Scale a workload (usually to 0), remembering its current replicas for `scaleBack`.
    Scale(ScaleParams),
    /// Scale a workload back to the replicas recorded by the `scale` step before it.
    ScaleBack(WorkloadParams),
    /// Take a CSI VolumeSnapshot of a claim.
    SnapshotPvc(SnapshotPvcParams),
    /// Wait for a condition, failing after `timeout`.
    Wait(WaitParams),
    /// Set the reclaim policy of the PersistentVolume bound to a claim.
    SetReclaimPolicy(ReclaimParams),
    /// Delete a claim (refused unless a ready snapshot of it was taken earlier in the run).
    DeletePvc(DeletePvcParams),
    /// Recreate a claim under the same name from a VolumeSnapshot, optionally bigger.
    RestorePvc(RestorePvcParams),
    /// Create a static PersistentVolume for an existing disk and a claim bound to it.
    BindStaticPv(StaticPvParams),
    /// Expand a claim in place.
    ResizePvc(ResizePvcParams),
    /// Capture an object's manifest into the run's checkpoint.
    SaveObject(ObjectParams),
    /// Delete an object (refused unless it was saved earlier in the run).
    DeleteObject(ObjectParams),
    /// Recreate an object from the manifest saved earlier in the run.
    RestoreObject(ObjectParams),
    /// Point a workload's pod volume at another claim.
    SetWorkloadClaim(SetWorkloadClaimParams),
    /// Run a command in a pod's container (for example `etcdctl`).
    Exec(ExecParams),
    /// Delete a pod owned by a controller and wait until its replacement is Ready.
    RestartPod(RestartPodParams),
    /// Create an EBS snapshot of a volume.
    EbsSnapshot(EbsSnapshotParams),
    /// Copy an EBS snapshot to another region.
    EbsCopySnapshot(EbsCopySnapshotParams),
    /// Create an EBS volume from a snapshot in one availability zone.
    EbsCreateVolume(EbsCreateVolumeParams),
    /// Delete an EFS replication configuration; its destination becomes writable.
    EfsDeleteReplication(EfsDeleteReplicationParams),
    /// Create an EFS replication configuration to another region or file system.
    EfsCreateReplication(EfsCreateReplicationParams),
    /// Set EFS replication overwrite protection on a file system.
    EfsSetOverwriteProtection(EfsProtectionParams),
    /// Pause a controller with a JSON merge patch on the object it reads (an Argo CD
    /// Application, a Flux Kustomization, an operator's resource), saving the values the
    /// patch replaces to the checkpoint first.
    PauseReconciler(ReconcilerParams),
    /// Write back the values the `pauseReconciler` step before it saved (removing what was
    /// not there): the controller runs again exactly as it did before.
    ResumeReconciler(ReconcilerParams),
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcilerParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The object whose fields switch the controller.
    pub object: ObjectRef,
    /// JSON merge patch (RFC 7386) that pauses the controller; `null` removes a field.
    pub patch: serde_json::Value,
}

/// Where a checkpoint keeps the values a `pauseReconciler` step replaced (a merge patch
/// that writes them back).
pub const PAUSE_ORIGINAL: &str = "original";

impl ReconcilerParams {
    /// What the patch does, field by field (`remove a.b`, `set a.c=true`), for descriptions.
    pub fn patched_fields(&self) -> Vec<String> {
        self.leaves()
            .into_iter()
            .map(|(path, value)| match value {
                serde_json::Value::Null => format!("remove {path}"),
                other => format!("set {path}={other}"),
            })
            .collect()
    }

    /// The fields the patch sets, as `a.b.c`.
    pub fn patched_paths(&self) -> Vec<String> {
        self.leaves().into_iter().map(|(path, _)| path).collect()
    }

    fn leaves(&self) -> Vec<(String, &serde_json::Value)> {
        let mut leaves = Vec::new();
        collect_leaves(&self.patch, String::new(), &mut leaves);
        leaves
    }
}

fn collect_leaves<'v>(value: &'v serde_json::Value, path: String, out: &mut Vec<(String, &'v serde_json::Value)>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                collect_leaves(child, child_path, out);
            }
        }
        _ => out.push((path, value)),
    }
}

/// The merge patch that writes back what `patch` would replace in `object`: for every
/// field it sets, the object's current value, or `null` where there is none.
pub fn restoring_patch(patch: &serde_json::Value, object: &serde_json::Value) -> serde_json::Value {
    match patch.as_object() {
        Some(map) if !map.is_empty() => {
            let mut restore = serde_json::Map::new();
            for (key, child) in map {
                let current = object.get(key).unwrap_or(&serde_json::Value::Null);
                let restored = if child.is_object() && current.is_object() {
                    restoring_patch(child, current)
                } else {
                    current.clone()
                };
                restore.insert(key.clone(), restored);
            }
            serde_json::Value::Object(restore)
        }
        _ => object.clone(),
    }
}

/// `target` with a JSON merge patch (RFC 7386) applied.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let Some(changes) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let Some(map) = target.as_object_mut() {
        for (key, value) in changes {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScaleParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub workload: WorkloadRef,
    /// Target replicas; 0 to quiesce.
    #[serde(default)]
    pub replicas: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub workload: WorkloadRef,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotPvcParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub claim: Spanned<String>,
    /// VolumeSnapshotClass to use.
    pub snapshot_class: String,
    /// Name of the VolumeSnapshot; `{claim}` and `{run}` are substituted.
    #[serde(default = "default_snapshot_name")]
    pub snapshot_name: String,
}

pub fn default_snapshot_name() -> String {
    "{claim}-dr-{run}".to_string()
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The condition to wait for.
    #[serde(rename = "for")]
    pub condition: WaitCondition,
    /// How long to wait before the step fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

/// Conditions a `wait` step can wait for.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum WaitCondition {
    /// The VolumeSnapshot taken of this claim in this run reports `readyToUse: true`.
    SnapshotReady { claim: Spanned<String> },
    /// No pod of the workload exists any more.
    PodsGone { workload: WorkloadRef },
    /// All replicas of the workload are ready.
    PodsReady { workload: WorkloadRef },
    /// The claim is Bound.
    PvcBound { claim: String },
    /// A check, not a wait: every claim is safe to delete (no pod uses it, a ready
    /// snapshot of it was taken in this run, its volume is not reclaimed with `Delete`).
    /// The barrier before an intent's first deletion: none is deleted unless all pass.
    ClaimsSafeToDelete { claims: Vec<String> },
    /// The EFS file system has no replication configuration (it is writable).
    EfsReplicationDeleted { region: String, file_system_id: String },
    /// The EFS replication to this destination has caught up.
    EfsReplicationSynced { region: String, file_system_id: String },
    /// The EBS snapshot is `completed`.
    EbsSnapshotCompleted { region: String, snapshot: SnapshotSource },
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReclaimParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The claim whose bound PersistentVolume is changed.
    pub claim: String,
    pub policy: ReclaimPolicy,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeletePvcParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub claim: Spanned<String>,
    /// Delete even without a ready snapshot of the claim taken in this run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_data_loss: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestorePvcParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the claim to create (the same name as the deleted one).
    pub claim: Spanned<String>,
    /// VolumeSnapshot to restore from; `{claim}` and `{run}` are substituted.
    pub snapshot: String,
    /// Requested size; must not be smaller than the snapshot's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Spanned<Quantity>>,
    /// StorageClass of the new claim; defaults to the old claim's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticPvParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the PersistentVolume to create.
    pub pv_name: String,
    pub volume: Spanned<VolumeSpec>,
    /// The claim to create, bound to the PV (by `volumeName` and the PV's `claimRef`).
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// A disk that exists outside Kubernetes, as a CSI volume.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeSpec {
    /// CSI driver, e.g. `ebs.csi.aws.com` or `disk.csi.azure.com`.
    pub driver: String,
    /// The driver's volume handle (EBS volume id, Azure disk resource id, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_handle: String,
    /// Instead of `volumeHandle`: the EBS volume the `ebsCreateVolume` step with this id
    /// created (adds a dependency on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_from_step: Option<String>,
    pub size: Spanned<Quantity>,
    /// Zone the disk lives in; required for zonal disks (written as node affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Whether the disk is zonal. Defaults to true for known block-storage drivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zonal: Option<bool>,
    /// Node label holding the zone; defaults to `topology.kubernetes.io/zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

/// CSI drivers whose volumes live in one zone.
pub const ZONAL_DRIVERS: &[&str] =
    &["ebs.csi.aws.com", "disk.csi.azure.com", "pd.csi.storage.gke.io", "cinder.csi.openstack.org"];

impl VolumeSpec {
    pub fn is_zonal(&self) -> bool {
        self.zonal.unwrap_or_else(|| ZONAL_DRIVERS.contains(&self.driver.as_str()))
    }

    /// The handle, or where it comes from, for descriptions.
    pub fn handle_text(&self) -> String {
        match &self.volume_from_step {
            Some(step) => format!("the volume of step {step}"),
            None => self.volume_handle.clone(),
        }
    }

    pub fn zone_label(&self) -> &str {
        self.zone_label.as_deref().unwrap_or("topology.kubernetes.io/zone")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResizePvcParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub claim: Spanned<String>,
    pub size: Spanned<Quantity>,
    /// What to do when the provider refuses with `VolumeModificationRateExceeded`.
    #[serde(default)]
    pub on_rate_limit: RateLimitFallback,
    /// For `restoreBigger`: the workload whose pods use the claim; scaled to 0 while the
    /// claim is restored, then back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// For `restoreBigger`: a controller that would undo the scale-down (an operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<WorkloadRef>,
    /// For `restoreBigger`: the VolumeSnapshotClass of the snapshot taken before restoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
    /// Timeout of waiting for the resize (and of each wait of the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

/// Fallbacks for a resize the provider refuses because of its modification rate limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitFallback {
    /// Stop and report the provider's error (and when it says to retry).
    #[default]
    Fail,
    /// Stop the workload, snapshot the claim and restore it to a new, bigger volume
    /// (a new volume has no modification history). Needs `workload` and `snapshotClass`.
    RestoreBigger,
}

/// The key under which a step records that its fallback must run (a JSON bool).
pub const FALLBACK_NEEDED: &str = "fallbackNeeded";

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub object: ObjectRef,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetWorkloadClaimParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub workload: WorkloadRef,
    /// Name of the volume in the pod template.
    pub volume: String,
    /// Claim the volume should use.
    pub claim: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod, by name. Or choose it with `workload` (+ `ordinal`) or `selector`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The pod of this workload with this `ordinal` (StatefulSet: pod `NAME-ORDINAL`;
    /// Deployment: the ORDINAL-th of its Ready pods by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinal: Option<u32>,
    /// The first Ready pod (by name) whose labels match all of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<std::collections::BTreeMap<String, String>>,
    /// Defaults to the pod's only container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments (no shell is involved; use `[sh, -c, SCRIPT]`).
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
    /// Idempotency guard: skip the command when this path exists in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Idempotency guard: skip the command when this command exits 0 in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Vec<String>>,
    /// The command is safe to run again (it only reads, or converges): resume may re-run it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// The command that compensates this one on rollback; without it rollback cannot
    /// undo the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Vec<String>>,
}

impl ExecParams {
    /// Whether running the command again after a crash is safe: a guard decides, or the
    /// plan says the command is idempotent.
    pub fn is_rerun_safe(&self) -> bool {
        self.idempotent || self.creates.is_some() || self.unless.is_some()
    }

    /// The pod as the plan chooses it, for descriptions.
    pub fn target(&self) -> String {
        match (&self.workload, &self.selector) {
            (Some(w), _) => format!("pod {} of {w}", self.ordinal.unwrap_or(0)),
            (None, Some(labels)) => {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("the first Ready pod with {}", labels.join(","))
            }
            (None, None) => format!("pod {}", self.pod),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestartPodParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EbsSnapshotParams {
    pub region: String,
    pub volume_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags for the snapshot, besides the run and step tags drplan adds to adopt it after
    /// a crash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EbsCopySnapshotParams {
    pub source_region: String,
    /// Destination region: the copy is made there (the call goes to its endpoint).
    pub region: String,
    pub snapshot: SnapshotSource,
    /// Encrypt the copy (a copy of an encrypted snapshot is always encrypted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// KMS key of the copy in the destination region (id, ARN or alias); needs
    /// `encrypted`. Defaults to the region's EBS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EbsCreateVolumeParams {
    pub region: String,
    pub availability_zone: String,
    pub snapshot: SnapshotSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Spanned<Quantity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Provisioned IOPS (gp3, io1, io2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    /// Throughput in MiB/s (gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EfsDeleteReplicationParams {
    /// Region the call is made in: the source's, or the destination's when the
    /// source region is down.
    pub region: String,
    /// The replication's source file system (EFS identifies a replication by it).
    pub source_file_system_id: String,
    /// `LOCAL_CONFIGURATION_ONLY` deletes only this region's side; use it only when
    /// the other region cannot be reached (its side becomes unrecoverable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_mode: Option<EfsDeletionMode>,
}

/// EFS `DeletionMode` of `DeleteReplicationConfiguration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EfsDeletionMode {
    AllConfigurations,
    LocalConfigurationOnly,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EfsCreateReplicationParams {
    pub region: String,
    pub source_file_system_id: String,
    pub destination_region: String,
    /// Replicate into this existing file system (failback); omit to create a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_file_system_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EfsProtectionParams {
    pub region: String,
    pub file_system_id: String,
    pub protection: OverwriteProtection,
}

impl Action {
    /// The name of the kind as written in plans.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Action::Scale(_) => "scale",
            Action::ScaleBack(_) => "scaleBack",
            Action::SnapshotPvc(_) => "snapshotPvc",
            Action::Wait(_) => "wait",
            Action::SetReclaimPolicy(_) => "setReclaimPolicy",
            Action::DeletePvc(_) => "deletePvc",
            Action::RestorePvc(_) => "restorePvc",
            Action::BindStaticPv(_) => "bindStaticPv",
            Action::ResizePvc(_) => "resizePvc",
            Action::SaveObject(_) => "saveObject",
            Action::DeleteObject(_) => "deleteObject",
            Action::RestoreObject(_) => "restoreObject",
            Action::SetWorkloadClaim(_) => "setWorkloadClaim",
            Action::Exec(_) => "exec",
            Action::RestartPod(_) => "restartPod",
            Action::EbsSnapshot(_) => "ebsSnapshot",
            Action::EbsCopySnapshot(_) => "ebsCopySnapshot",
            Action::EbsCreateVolume(_) => "ebsCreateVolume",
            Action::EfsDeleteReplication(_) => "efsDeleteReplication",
            Action::EfsCreateReplication(_) => "efsCreateReplication",
            Action::EfsSetOverwriteProtection(_) => "efsSetOverwriteProtection",
            Action::PauseReconciler(_) => "pauseReconciler",
            Action::ResumeReconciler(_) => "resumeReconciler",
        }
    }

    /// The cluster this step acts on, when it is a Kubernetes step that names one.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Action::Scale(p) => p.cluster.as_deref(),
            Action::ScaleBack(p) => p.cluster.as_deref(),
            Action::SnapshotPvc(p) => p.cluster.as_deref(),
            Action::Wait(p) => p.cluster.as_deref(),
            Action::SetReclaimPolicy(p) => p.cluster.as_deref(),
            Action::DeletePvc(p) => p.cluster.as_deref(),
            Action::RestorePvc(p) => p.cluster.as_deref(),
            Action::BindStaticPv(p) => p.cluster.as_deref(),
            Action::ResizePvc(p) => p.cluster.as_deref(),
            Action::SaveObject(p) | Action::DeleteObject(p) | Action::RestoreObject(p) => p.cluster.as_deref(),
            Action::SetWorkloadClaim(p) => p.cluster.as_deref(),
            Action::Exec(p) => p.cluster.as_deref(),
            Action::RestartPod(p) => p.cluster.as_deref(),
            Action::PauseReconciler(p) | Action::ResumeReconciler(p) => p.cluster.as_deref(),
            _ => None,
        }
    }

    /// The namespace written on the step, if any.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Action::Scale(p) => p.namespace.as_deref(),
            Action::ScaleBack(p) => p.namespace.as_deref(),
            Action::SnapshotPvc(p) => p.namespace.as_deref(),
            Action::Wait(p) => p.namespace.as_deref(),
            Action::SetReclaimPolicy(p) => p.namespace.as_deref(),
            Action::DeletePvc(p) => p.namespace.as_deref(),
            Action::RestorePvc(p) => p.namespace.as_deref(),
            Action::BindStaticPv(p) => p.namespace.as_deref(),
            Action::ResizePvc(p) => p.namespace.as_deref(),
            Action::SaveObject(p) | Action::DeleteObject(p) | Action::RestoreObject(p) => p.object.namespace.as_deref(),
            Action::SetWorkloadClaim(p) => p.namespace.as_deref(),
            Action::Exec(p) => p.namespace.as_deref(),
            Action::RestartPod(p) => p.namespace.as_deref(),
            Action::PauseReconciler(p) | Action::ResumeReconciler(p) => p.object.namespace.as_deref(),
            _ => None,
        }
    }

    /// Whether the step destroys something that cannot be recreated without a backup.
    ///
    /// Replicating into an existing EFS file system overwrites it, so that counts too.
    pub fn is_destructive(&self) -> bool {
        match self {
            Action::DeletePvc(_) | Action::DeleteObject(_) => true,
            Action::EfsCreateReplication(p) => p.destination_file_system_id.is_some(),
            _ => false,
        }
    }

    /// A typical duration, used to find the critical path before anything has run.
    pub fn estimate(&self) -> std::time::Duration {
        let secs = match self {
            Action::Scale(_) | Action::ScaleBack(_) => 5,
            Action::SnapshotPvc(_) => 5,
            Action::Wait(p) => match p.condition {
                WaitCondition::SnapshotReady { .. } => 120,
                WaitCondition::PodsGone { .. } => 30,
                WaitCondition::PodsReady { .. } => 90,
                WaitCondition::PvcBound { .. } => 30,
                WaitCondition::ClaimsSafeToDelete { .. } => 2,
                WaitCondition::EfsReplicationDeleted { .. } => 300,
                WaitCondition::EfsReplicationSynced { .. } => 1800,
                WaitCondition::EbsSnapshotCompleted { .. } => 600,
            },
            Action::SetReclaimPolicy(_) => 2,
            Action::DeletePvc(_) => 10,
            Action::RestorePvc(_) => 10,
            Action::BindStaticPv(_) => 10,
            Action::ResizePvc(_) => 60,
            Action::SaveObject(_) | Action::DeleteObject(_) | Action::RestoreObject(_) => 2,
            Action::SetWorkloadClaim(_) => 5,
            Action::Exec(p) => p.timeout.as_ref().map(|t| t.as_secs() / 2).unwrap_or(60),
            Action::RestartPod(_) => 60,
            Action::EbsSnapshot(_) => 10,
            Action::EbsCopySnapshot(_) => 900,
            Action::EbsCreateVolume(_) => 60,
            Action::EfsDeleteReplication(_) => 30,
            Action::EfsCreateReplication(_) => 30,
            Action::EfsSetOverwriteProtection(_) => 5,
            Action::PauseReconciler(_) | Action::ResumeReconciler(_) => 2,
        };
        std::time::Duration::from_secs(secs)
    }

    /// A one-line, human description for graphs and plans.
    pub fn describe(&self) -> String {
        match self {
            Action::Scale(p) => format!("scale {} to {}", p.workload, p.replicas),
            Action::ScaleBack(p) => format!("scale {} back to its original replicas", p.workload),
            Action::SnapshotPvc(p) => {
                format!("snapshot PVC {} ({})", p.claim.value, p.snapshot_class)
            }
            Action::Wait(p) => format!("wait until {}", describe_condition(&p.condition)),
            Action::SetReclaimPolicy(p) => {
                format!("set reclaim policy of PV of {} to {}", p.claim, p.policy)
            }
            Action::DeletePvc(p) => format!("delete PVC {}", p.claim.value),
            Action::RestorePvc(p) => match &p.size {
                Some(size) => format!("restore PVC {} from snapshot at {}", p.claim.value, size.value),
                None => format!("restore PVC {} from snapshot", p.claim.value),
            },
            Action::BindStaticPv(p) => {
                format!("create PV {} for {} and bind claim {}", p.pv_name, p.volume.value.handle_text(), p.claim)
            }
            Action::ResizePvc(p) => match p.on_rate_limit {
                RateLimitFallback::Fail => format!("resize PVC {} to {}", p.claim.value, p.size.value),
                RateLimitFallback::RestoreBigger => format!(
                    "resize PVC {} to {} (if the provider's rate limit refuses: restore it bigger)",
                    p.claim.value, p.size.value
                ),
            },
            Action::SaveObject(p) => format!("save {}", p.object),
            Action::DeleteObject(p) => format!("delete {}", p.object),
            Action::RestoreObject(p) => format!("restore {}", p.object),
            Action::SetWorkloadClaim(p) => format!("point volume {} of {} at claim {}", p.volume, p.workload, p.claim),
            Action::Exec(p) => {
                format!("exec in {}: {}", p.target(), crate::steps::redact::redact_command(&p.command))
            }
            Action::RestartPod(p) => format!("restart pod {} and wait until it is Ready", p.pod),
            Action::EbsSnapshot(p) => format!("EBS snapshot of {} in {}", p.volume_id, p.region),
            Action::EbsCopySnapshot(p) => {
                format!("copy {} from {} to {}", describe_source(&p.snapshot), p.source_region, p.region)
            }
            Action::EbsCreateVolume(p) => {
                format!("create EBS volume from {} in {}", describe_source(&p.snapshot), p.availability_zone)
            }
            Action::EfsDeleteReplication(p) => {
                format!("delete the EFS replication from {} (called in {})", p.source_file_system_id, p.region)
            }
            Action::EfsCreateReplication(p) => format!(
                "replicate EFS {} ({}) to {} in {}",
                p.source_file_system_id,
                p.region,
                p.destination_file_system_id.as_deref().unwrap_or("a new file system"),
                p.destination_region
            ),
            Action::EfsSetOverwriteProtection(p) => {
                format!("set overwrite protection of {} to {:?}", p.file_system_id, p.protection)
            }
            Action::PauseReconciler(p) => {
                let fields = p.patched_fields().join(", ");
                format!("pause the controller of {}: {fields} (what was there is saved first)", p.object)
            }
            Action::ResumeReconciler(p) => {
                format!("resume the controller of {}: {} back as it was", p.object, p.patched_paths().join(", "))
            }
        }
    }

    /// Ids of earlier steps whose outputs this step reads (implicit dependencies).
    pub fn output_references(&self) -> Vec<&str> {
        fn from(s: &SnapshotSource) -> Option<&str> {
            match s {
                SnapshotSource::FromStep(id) => Some(id.as_str()),
                SnapshotSource::Id(_) => None,
            }
        }
        match self {
            Action::EbsCopySnapshot(p) => from(&p.snapshot).into_iter().collect(),
            Action::EbsCreateVolume(p) => from(&p.snapshot).into_iter().collect(),
            Action::BindStaticPv(p) => p.volume.value.volume_from_step.as_deref().into_iter().collect(),
            Action::Wait(WaitParams { condition: WaitCondition::EbsSnapshotCompleted { snapshot, .. }, .. }) => {
                from(snapshot).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

fn describe_source(source: &SnapshotSource) -> String {
    match source {
        SnapshotSource::Id(id) => format!("EBS snapshot {id}"),
        SnapshotSource::FromStep(step) => format!("the EBS snapshot of step {step}"),
    }
}

fn describe_condition(condition: &WaitCondition) -> String {
    match condition {
        WaitCondition::SnapshotReady { claim } => {
            format!("the snapshot of {} is readyToUse", claim.value)
        }
        WaitCondition::PodsGone { workload } => format!("all pods of {workload} are gone"),
        WaitCondition::PodsReady { workload } => format!("all pods of {workload} are ready"),
        WaitCondition::PvcBound { claim } => format!("PVC {claim} is Bound"),
        WaitCondition::ClaimsSafeToDelete { claims } => {
            format!("every claim is safe to delete ({})", claims.join(", "))
        }
        WaitCondition::EfsReplicationDeleted { file_system_id, .. } => {
            format!("{file_system_id} has no replication (writable)")
        }
        WaitCondition::EfsReplicationSynced { file_system_id, .. } => {
            format!("replication into {file_system_id} has caught up")
        }
        WaitCondition::EbsSnapshotCompleted { snapshot, .. } => {
            format!("{} is completed", describe_source(snapshot))
        }
    }
}
