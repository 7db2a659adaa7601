//! The questions expansion and safety checks ask about a cluster.

use std::collections::BTreeSet;

use crate::lang::Quantity;
use crate::steps::{ReclaimPolicy, WorkloadKind, WorkloadRef};

/// What drplan needs to know about a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadFacts {
    pub replicas: u32,
    /// StatefulSet volume claim templates.
    pub claim_templates: Vec<ClaimTemplateFacts>,
    /// Claims named in the pod template's volumes.
    pub pod_claims: Vec<PodClaim>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClaimTemplateFacts {
    pub name: String,
    pub size: Option<Quantity>,
    pub storage_class: Option<String>,
}

/// A pod-template volume backed by a claim.
#[derive(Clone, Debug, PartialEq)]
pub struct PodClaim {
    pub volume: String,
    pub claim: String,
}

/// What drplan needs to know about a claim.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimFacts {
    /// Actual capacity when bound, else the request.
    pub size: Option<Quantity>,
    pub storage_class: Option<String>,
    pub volume_name: Option<String>,
}

/// What drplan needs to know about a PersistentVolume.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeFacts {
    pub name: String,
    pub reclaim_policy: Option<ReclaimPolicy>,
    pub zone: Option<String>,
    pub driver: Option<String>,
    pub capacity: Option<Quantity>,
}

/// The namespaces drplan knows of in a cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceFacts {
    /// Namespaces that exist (listed, or holding objects).
    pub known: BTreeSet<String>,
    /// Whether `known` is every namespace (the source listed its `Namespace` objects), so
    /// a namespace not in it does not exist.
    pub complete: bool,
}

/// What drplan needs to know about a VolumeSnapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotFacts {
    pub ready_to_use: bool,
    /// The claim it was taken of, if it names one.
    pub source_claim: Option<String>,
}

/// API versions and kinds of the GitOps objects that reconcile workloads, read with the
/// workloads (optional: their CRDs may not be installed).
pub const RECONCILER_KINDS: [(&str, &str); 3] = [
    ("argoproj.io/v1alpha1", "Application"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
];

/// Something other than drplan that reconciles a workload, and would put back what a
/// plan changes unless it is paused.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reconciler {
    /// An Argo CD Application tracking the workload (tracking annotation or label).
    ArgoCd { namespace: String, name: String, automated: bool, self_heal: bool },
    /// A Flux Kustomization or HelmRelease (its labels on the workload); `suspended`
    /// when its `spec.suspend` is true.
    Flux { kind: String, namespace: String, name: String, suspended: bool },
    /// The custom resource named by the workload's controller owner reference: its
    /// operator reconciles the workload.
    Operator { api_version: String, kind: String, namespace: String, name: String },
}

/// Whether a reconciler would undo a plan's change to a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fight {
    /// It puts the workload back (self-heal, Flux's drift correction, an operator).
    Reverts,
    /// It syncs but does not revert changes made in the cluster (Argo CD automated
    /// sync without self-heal): only a new Git revision would undo the change.
    SyncsOnly,
    /// It does nothing on its own.
    Idle,
}

impl Reconciler {
    pub fn fight(&self) -> Fight {
        match self {
            Reconciler::ArgoCd { automated: true, self_heal: true, .. } => Fight::Reverts,
            Reconciler::ArgoCd { automated: true, self_heal: false, .. } => Fight::SyncsOnly,
            Reconciler::ArgoCd { .. } => Fight::Idle,
            Reconciler::Flux { suspended, .. } => {
                if *suspended {
                    Fight::Idle
                } else {
                    Fight::Reverts
                }
            }
            Reconciler::Operator { .. } => Fight::Reverts,
        }
    }

    /// The object that switches it, as (apiVersion, kind, namespace, name).
    pub fn object(&self) -> (String, String, String, String) {
        match self {
            Reconciler::ArgoCd { namespace, name, .. } => {
                ("argoproj.io/v1alpha1".into(), "Application".into(), namespace.clone(), name.clone())
            }
            Reconciler::Flux { kind, namespace, name, .. } => {
                let api_version =
                    if kind == "HelmRelease" { "helm.toolkit.fluxcd.io/v2" } else { "kustomize.toolkit.fluxcd.io/v1" };
                (api_version.into(), kind.clone(), namespace.clone(), name.clone())
            }
            Reconciler::Operator { api_version, kind, namespace, name } => {
                (api_version.clone(), kind.clone(), namespace.clone(), name.clone())
            }
        }
    }
}

impl std::fmt::Display for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reconciler::ArgoCd { namespace, name, automated, self_heal } => {
                let policy = match (automated, self_heal) {
                    (true, true) => "automated sync with selfHeal",
                    (true, false) => "automated sync without selfHeal",
                    _ => "manual sync",
                };
                write!(f, "Argo CD Application {namespace}/{name} ({policy})")
            }
            Reconciler::Flux { kind, namespace, name, suspended } => {
                write!(f, "Flux {kind} {namespace}/{name}{}", if *suspended { " (suspended)" } else { "" })
            }
            Reconciler::Operator { kind, namespace, name, .. } => {
                write!(f, "the operator of {kind} {namespace}/{name} (its controller owner reference)")
            }
        }
    }
}

/// Read-only questions about the clusters of a plan, by cluster name.
///
/// Implemented from manifests now and from the live API later; everything that
/// expands or checks plans goes through this trait only.
pub trait ClusterFacts {
    fn workload(&self, cluster: &str, namespace: &str, workload: &WorkloadRef) -> Option<WorkloadFacts>;
    fn claim(&self, cluster: &str, namespace: &str, name: &str) -> Option<ClaimFacts>;
    fn volume(&self, cluster: &str, name: &str) -> Option<VolumeFacts>;
    /// Workloads whose pods use the claim (pod volumes or StatefulSet claim templates).
    fn claim_users(&self, cluster: &str, namespace: &str, claim: &str) -> Vec<WorkloadRef>;

    /// Names of the workloads of a kind in a namespace (for "did you mean" hints).
    fn workload_names(&self, _cluster: &str, _namespace: &str, _kind: WorkloadKind) -> Vec<String> {
        Vec::new()
    }

    /// The namespaces known in a cluster.
    fn namespaces(&self, _cluster: &str) -> NamespaceFacts {
        NamespaceFacts::default()
    }
    /// A VolumeSnapshot (`None` when it does not exist, or snapshots were not read).
    fn snapshot(&self, cluster: &str, namespace: &str, name: &str) -> Option<SnapshotFacts>;

    /// Who else reconciles the workload (GitOps tools, operators).
    fn reconcilers(&self, _cluster: &str, _namespace: &str, _workload: &WorkloadRef) -> Vec<Reconciler> {
        Vec::new()
    }

    /// The PV a claim is bound to.
    fn volume_of_claim(&self, cluster: &str, namespace: &str, claim: &str) -> Option<VolumeFacts> {
        let name = self.claim(cluster, namespace, claim)?.volume_name?;
        self.volume(cluster, &name)
    }
}
