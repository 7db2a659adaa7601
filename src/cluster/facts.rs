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

    /// The PV a claim is bound to.
    fn volume_of_claim(&self, cluster: &str, namespace: &str, claim: &str) -> Option<VolumeFacts> {
        let name = self.claim(cluster, namespace, claim)?.volume_name?;
        self.volume(cluster, &name)
    }
}
