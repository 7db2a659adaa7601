//! Committing a run: once the restored workloads are verified, the original volumes the
//! run kept for rollback (reclaim policy set to `Retain`) get their original policy
//! back. For `Delete` that frees them: Kubernetes deletes the volume and its disk.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::checkpoint::{RunRecord, StepStatus};
use crate::graph::StepGraph;
use crate::steps::{Action, ReclaimPolicy};

/// One volume the run retained, and what committing does to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedVolume {
    pub cluster: String,
    pub pv: String,
    /// The policy it had before the run.
    pub original_policy: String,
    /// Its capacity, for the reviewer.
    pub size: Option<String>,
    /// Why it must stay as it is, if so (bound again, already gone...).
    pub keep_because: Option<String>,
}

/// The volumes a run's `setReclaimPolicy: Retain` steps retained, from their captures.
pub fn retained_by(applied: &StepGraph, record: &RunRecord) -> Vec<RetainedVolume> {
    let mut volumes = Vec::new();
    for (_, step) in applied.steps() {
        let Some(Action::SetReclaimPolicy(p)) = step.action() else { continue };
        let Some(done) = record.steps.get(&step.id).filter(|s| s.status == StepStatus::Succeeded) else { continue };
        let text = |key: &str| done.captured.get(key).and_then(Value::as_str).map(String::from);
        let (Some(pv), Some(original_policy)) = (text("pv"), text("originalPolicy")) else { continue };
        if p.policy == ReclaimPolicy::Retain && original_policy != "Retain" {
            let cluster = step.cluster.clone();
            volumes.push(RetainedVolume { cluster, pv, original_policy, size: None, keep_because: None });
        }
    }
    volumes
}

/// Reads each volume: only a `Released` one (its claim deleted and replaced) is freed; a
/// volume bound again (a rollback, or by hand) is still in use and stays retained.
pub async fn inspect(clients: &BTreeMap<String, Client>, volumes: &mut [RetainedVolume]) -> Result<(), String> {
    for volume in volumes {
        let api = volumes_of(clients, &volume.cluster)?;
        let pv = api.get_opt(&volume.pv).await.map_err(|e| format!("reading PV {}: {e}", volume.pv))?;
        let Some(pv) = pv else {
            volume.keep_because = Some("already gone".into());
            continue;
        };
        let spec = pv.spec.unwrap_or_default();
        volume.size = spec.capacity.and_then(|c| c.get("storage").map(|q| q.0.clone()));
        let phase = pv.status.and_then(|s| s.phase).unwrap_or_default();
        if phase != "Released" {
            let claim = spec.claim_ref.and_then(|c| c.name).unwrap_or_default();
            volume.keep_because = Some(format!("it is {phase} (claim {claim}), not Released"));
        } else if spec.persistent_volume_reclaim_policy.as_deref() != Some("Retain") {
            volume.keep_because = Some("its policy was changed since the run; left alone".into());
        }
    }
    Ok(())
}

/// Gives one inspected, releasable volume its original reclaim policy back.
pub async fn release(clients: &BTreeMap<String, Client>, volume: &RetainedVolume) -> Result<(), String> {
    let api = volumes_of(clients, &volume.cluster)?;
    let patch = Patch::Merge(json!({ "spec": { "persistentVolumeReclaimPolicy": volume.original_policy } }));
    match api.patch(&volume.pv, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        // Freed by an earlier, interrupted commit: nothing left to do.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("setting reclaim policy of PV {} to {}: {e}", volume.pv, volume.original_policy)),
    }
}

fn volumes_of(clients: &BTreeMap<String, Client>, cluster: &str) -> Result<Api<PersistentVolume>, String> {
    let client = clients.get(cluster).ok_or_else(|| format!("no connection to cluster {cluster}"))?;
    Ok(Api::all(client.clone()))
}
