//! The DR plan document: metadata, clusters, objectives and steps (intents and actions).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, Quantity, Spanned};
use crate::diag::Span;
use crate::steps::{Action, ObjectRef, VolumeSpec, WorkloadRef};

pub const API_VERSION: &str = "drplan.dev/v1alpha1";
pub const KIND: &str = "DrPlan";

/// A disaster-recovery plan: what to do, in which order, to which clusters.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "drplan DR plan")]
pub struct Plan {
    /// Always `drplan.dev/v1alpha1`.
    pub api_version: String,
    /// Always `DrPlan`.
    pub kind: String,
    pub metadata: Metadata,
    /// The clusters the plan acts on, by kube context. Steps name one with `cluster:`;
    /// a plan with one cluster may omit it.
    pub clusters: Vec<ClusterTarget>,
    /// Recovery objectives the run is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
    /// Accept data loss for every step of the plan: PVCs may be deleted without a
    /// ready snapshot taken in the same run. Say so only when you mean it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_data_loss: bool,
    /// Intents and explicit steps, in any order; `after:` orders them.
    pub steps: Vec<StepEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A cluster the plan acts on.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterTarget {
    /// Name used by steps (`cluster: dr`).
    pub name: Spanned<String>,
    /// kubeconfig context; defaults to the current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Namespace for steps that do not name one; defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Cloud region of the cluster, for cloud steps and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Recovery time and recovery point objectives.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Objectives {
    /// Longest acceptable time from start to recovered service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Spanned<Duration>>,
    /// Largest acceptable window of lost writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Spanned<Duration>>,
}

/// One entry of `steps:`: an id, its dependencies, and exactly one intent or action key.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepEntry {
    /// Unique id, referenced by `after:`.
    pub id: Spanned<String>,
    /// Ids of steps (or intents) that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Spanned<String>>,
    /// Ids of steps that must wait for this one: the way to slot a step into the
    /// middle of an intent (`before: [failback/cutover]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub body: EntryBody,
    /// Span of the whole entry.
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
    /// Span of the kind key (`restoreClaims:`, `scale:`...).
    #[serde(skip)]
    #[schemars(skip)]
    pub kind_span: Span,
}

/// The kind of an entry: a high-level intent or one explicit action.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EntryBody {
    Intent(Intent),
    Action(Action),
}

/// High-level intents: each expands into a sub-graph of actions.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Intent {
    /// Snapshot a workload's claims, delete them and recreate them from the snapshots
    /// (optionally bigger), with the workload (and its operator) scaled to zero meanwhile.
    RestoreClaims(RestoreClaims),
    /// Bind an existing disk through a static PV (claimRef, zone affinity, Retain) to a
    /// new claim and point a workload at it.
    RebindVolume(RebindVolume),
    /// Fail over to the EFS replica: delete the replication so the copy becomes writable.
    EfsFailover(EfsFailover),
    /// Fail back: replicate the DR copy into the original file system, then reverse.
    EfsFailback(EfsFailback),
    /// Snapshot etcd, stop the API server, restore etcd from the snapshot, start it again.
    EtcdRestore(EtcdRestore),
    /// Save and delete an object for the duration of other steps, then restore it.
    SetAside(SetAside),
    /// Pause a GitOps controller or operator for the duration of other steps, then
    /// resume it as it was.
    PauseReconciliation(PauseReconciliation),
}

impl Intent {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Intent::RestoreClaims(_) => "restoreClaims",
            Intent::RebindVolume(_) => "rebindVolume",
            Intent::EfsFailover(_) => "efsFailover",
            Intent::EfsFailback(_) => "efsFailback",
            Intent::EtcdRestore(_) => "etcdRestore",
            Intent::SetAside(_) => "setAside",
            Intent::PauseReconciliation(_) => "pauseReconciliation",
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            Intent::RestoreClaims(p) => p.cluster.as_deref(),
            Intent::RebindVolume(p) => p.cluster.as_deref(),
            Intent::EtcdRestore(p) => p.cluster.as_deref(),
            Intent::SetAside(p) => p.cluster.as_deref(),
            Intent::PauseReconciliation(p) => p.cluster.as_deref(),
            Intent::EfsFailover(_) | Intent::EfsFailback(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Intent::RestoreClaims(p) => {
                format!("restore the claims of {} from snapshots", p.workload)
            }
            Intent::RebindVolume(p) => {
                format!("bind {} to claim {} through PV {}", p.volume.handle_text(), p.claim, p.pv_name)
            }
            Intent::EfsFailover(p) => format!(
                "fail over EFS {} to {} ({})",
                p.primary.file_system_id, p.replica.file_system_id, p.replica.region
            ),
            Intent::EfsFailback(p) => format!(
                "fail back EFS {} to {} ({})",
                p.replica.file_system_id, p.primary.file_system_id, p.primary.region
            ),
            Intent::EtcdRestore(p) => format!("snapshot and restore etcd in pod {}", p.etcd_pod),
            Intent::SetAside(p) => format!(
                "set {} aside during {}",
                p.object,
                p.during.iter().map(|d| d.value.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Intent::PauseReconciliation(p) => format!(
                "pause {} during {}",
                p.controller_description(),
                p.during.iter().map(|d| d.value.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestoreClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The workload using the claims; scaled to 0 first and back last.
    pub workload: WorkloadRef,
    /// StatefulSet claim template: claims `<template>-<statefulset>-<ordinal>` for
    /// every replica. Give this or `claims`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_template: Option<Spanned<String>>,
    /// Claims by name. Give this or `claimTemplate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<Spanned<String>>>,
    /// VolumeSnapshotClass for the snapshots.
    pub snapshot_class: String,
    /// Restore to this size instead of the original (must not be smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Spanned<Quantity>>,
    /// A controller that would undo the scale-down (an operator): scaled to 0 first,
    /// back last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<WorkloadRef>,
    /// StorageClass for the restored claims; defaults to the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Timeout of each wait (snapshot ready, pods gone, pods ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RebindVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The restored disk.
    pub volume: Spanned<VolumeSpec>,
    /// Name of the static PersistentVolume to create.
    pub pv_name: String,
    /// Name of the claim to bind to it (written as the PV's claimRef).
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The workload to point at the new claim.
    pub workload: WorkloadRef,
    /// Name of the volume in the workload's pod template.
    pub pod_volume: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

/// One side of an EFS replication.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EfsSide {
    pub region: String,
    pub file_system_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EfsFailover {
    /// The original (source) file system.
    pub primary: EfsSide,
    /// The replica that becomes writable.
    pub replica: EfsSide,
    /// `LOCAL_CONFIGURATION_ONLY` when the primary region cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_mode: Option<crate::steps::EfsDeletionMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EfsFailback {
    /// The original file system, to become the source again.
    pub primary: EfsSide,
    /// The replica that served during the disaster.
    pub replica: EfsSide,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdRestore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod running etcd (where `etcdctl`/`etcdutl` run).
    pub etcd_pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The API server workload, scaled to 0 during the restore.
    pub api_server: WorkloadRef,
    /// Where the snapshot is written inside the etcd pod.
    pub snapshot_path: String,
    /// etcd data directory to restore into.
    pub data_dir: String,
    /// Extra `etcdctl` flags (endpoints, certificates), passed as-is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcdctl_args: Vec<String>,
    /// The member's `--name`, needed so the restored member keeps its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_name: Option<String>,
    /// `--initial-cluster` for the restored member (`name=https://peer:2380,...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
    /// `--initial-advertise-peer-urls` for the restored member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_advertise_peer_urls: Option<String>,
    /// A cluster of several members (HA): each is restored from the one snapshot in its
    /// own pod with its own `--name` and peer URL, and `--initial-cluster` lists them all
    /// (unless `initialCluster` is given). `snapshotPath` must then be on a volume every
    /// member mounts (ReadWriteMany). Without it, `etcdPod` is the only member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<EtcdMember>,
    /// Command that swaps the restored directory in place of `dataDir`. The default
    /// runs `sh -c 'mv ...'` and so needs a shell in the container; images without
    /// one (distroless etcd) need a command of their own, e.g. in a debug container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
}

/// One member of an etcd cluster: its pod and its identity.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdMember {
    pub pod: String,
    /// The member's `--name`.
    pub name: String,
    /// The member's `--initial-advertise-peer-urls`.
    pub peer_url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetAside {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub object: ObjectRef,
    /// Ids of the steps or intents during which the object is away.
    pub during: Vec<Spanned<String>>,
}

/// `pauseReconciliation`: one controller to pause (exactly one of `argoCd`, `flux`,
/// `annotate`, `patch`, `operator`) during other steps.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PauseReconciliation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// An Argo CD Application: its `spec.syncPolicy.automated` is saved to the checkpoint
    /// and removed, then written back as it was (an Application that was not automated
    /// stays so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_cd: Option<NamedObject>,
    /// A Flux object: `spec.suspend: true`, then back to what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flux: Option<FluxObject>,
    /// An operator's own pause switch on its resource, e.g. Strimzi's
    /// `strimzi.io/pause-reconciliation: "true"` or CloudNativePG's
    /// `cnpg.io/reconciliationLoop: disabled`: set, then back to the value found
    /// (removed if there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotate: Option<AnnotatePause>,
    /// Any other switch, as a JSON merge patch on the object that holds it (a field of an
    /// operator's resource, say): the values it replaces are saved to the checkpoint and
    /// written back afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchPause>,
    /// The bluntest tool: the operator's Deployment, scaled to 0 (and its pods gone),
    /// then back to its replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<WorkloadRef>,
    /// Namespace of `operator` (default: the cluster's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Ids of the steps or intents during which the controller is paused.
    pub during: Vec<Spanned<String>>,
}

/// An object by name and namespace.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamedObject {
    pub name: String,
    /// Default: `argocd` for Argo CD, `flux-system` for Flux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Flux objects that can be suspended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FluxKind {
    #[default]
    Kustomization,
    HelmRelease,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FluxObject {
    #[serde(default)]
    pub kind: FluxKind,
    pub name: String,
    /// Default: `flux-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnnotatePause {
    /// The operator's resource (for example a Strimzi `Kafka`).
    pub object: ObjectRef,
    /// The annotation, e.g. `strimzi.io/pause-reconciliation`.
    pub key: String,
    /// The value that pauses, e.g. `"true"`.
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchPause {
    pub object: ObjectRef,
    /// JSON merge patch (RFC 7386) that pauses the controller.
    pub patch: serde_json::Value,
}

impl PauseReconciliation {
    /// The controller, as a reviewer reads it.
    pub fn controller_description(&self) -> String {
        if let Some(app) = &self.argo_cd {
            return format!("Argo CD Application {}/{}", app.namespace.as_deref().unwrap_or("argocd"), app.name);
        }
        if let Some(flux) = &self.flux {
            let ns = flux.namespace.as_deref().unwrap_or("flux-system");
            return format!("Flux {:?} {ns}/{}", flux.kind, flux.name);
        }
        if let Some(a) = &self.annotate {
            return format!("the operator of {} ({}={})", a.object, a.key, a.value);
        }
        if let Some(p) = &self.patch {
            return format!("the controller of {}", p.object);
        }
        match &self.operator {
            Some(operator) => format!("operator {operator}"),
            None => "nothing (no controller given)".to_string(),
        }
    }
}

impl Plan {
    pub fn name(&self) -> &str {
        &self.metadata.name.value
    }

    /// The single cluster of a one-cluster plan.
    pub fn only_cluster(&self) -> Option<&ClusterTarget> {
        match self.clusters.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterTarget> {
        self.clusters.iter().find(|c| c.name.value == name)
    }
}
