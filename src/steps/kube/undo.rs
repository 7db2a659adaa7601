//! Compensating steps: undoing what an apply run did, step by step, in reverse
//! dependency order, from what each step captured before it changed anything.
//!
//! The aim is the state before the run: original replica counts, the original claims
//! bound again to their retained volumes (so they hold their original data), original
//! reclaim policies and claim references, and nothing the run created left behind.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{Kube, classify, is_already_exists, is_not_found, label_value, workloads};
use crate::checkpoint::{RunRecord, StepStatus};
use crate::exec::{StepContext, StepError, StepRunner};
use crate::graph::{Edge, Step, StepGraph, StepKind};
use crate::steps::{Action, WorkloadRef};

/// Prefix of the ids of compensating steps.
pub const UNDO_PREFIX: &str = "undo:";

/// Whether a step of the original run may have changed something worth undoing.
fn touched(status: StepStatus) -> bool {
    matches!(status, StepStatus::Succeeded | StepStatus::Failed | StepStatus::Running | StepStatus::Compensating)
}

pub fn has_compensation(action: &Action) -> bool {
    matches!(
        action,
        Action::Scale(_)
            | Action::ScaleBack(_)
            | Action::SnapshotPvc(_)
            | Action::SetReclaimPolicy(_)
            | Action::DeletePvc(_)
            | Action::RestorePvc(_)
            | Action::BindStaticPv(_)
            | Action::SetWorkloadClaim(_)
            | Action::DeleteObject(_)
            | Action::PauseReconciler(_)
            | Action::ResumeReconciler(_)
            // Cloud compensations (src/cloud/runner.rs): delete what the step created.
            | Action::EbsSnapshot(_)
            | Action::EbsCopySnapshot(_)
            | Action::EbsCreateVolume(_)
    ) || matches!(action, Action::Exec(p) if p.undo.is_some())
}

/// Steps the run touched that rollback cannot undo: commands run in pods without an
/// `undo:` command. Rollback names them, so nobody assumes they were reversed.
pub fn not_undoable(applied: &StepGraph, record: &RunRecord) -> Vec<String> {
    applied
        .steps()
        .filter(|(_, s)| matches!(s.action(), Some(Action::Exec(p)) if p.undo.is_none()))
        .filter(|(_, s)| record.steps.get(&s.id).is_some_and(|r| touched(r.status)))
        .map(|(_, s)| s.id.clone())
        .collect()
}

/// The graph of compensations: one `undo:` step per step the run touched, each after
/// the compensations of every step that depended on it.
pub fn undo_graph(applied: &StepGraph, record: &RunRecord) -> StepGraph {
    let mut undo = StepGraph::new(applied.plan_name.clone());
    let mut mapping = BTreeMap::new();
    for (index, step) in applied.steps() {
        let status = record.steps.get(&step.id).map(|s| s.status).unwrap_or_default();
        let Some(action) = step.action() else { continue };
        if !touched(status) || !has_compensation(action) {
            continue;
        }
        let mut compensation = step.clone();
        compensation.id = format!("{UNDO_PREFIX}{}", step.id);
        compensation.kind = StepKind::Action(action.clone());
        // A compensation runs because its step ran; it is nobody's fallback.
        compensation.fallback_for = None;
        mapping.insert(index, undo.add_step(compensation));
    }
    for (&original, &compensation) in &mapping {
        for later in descendants(applied, original) {
            if let Some(&later_compensation) = mapping.get(&later) {
                undo.graph.update_edge(later_compensation, compensation, Edge { written_at: None });
            }
        }
    }
    undo
}

fn descendants(graph: &StepGraph, index: petgraph::graph::NodeIndex) -> Vec<petgraph::graph::NodeIndex> {
    let mut seen = vec![false; graph.len()];
    let mut stack: Vec<_> = graph.successors(index).collect();
    let mut out = Vec::new();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut seen[n.index()], true) {
            out.push(n);
            stack.extend(graph.successors(n));
        }
    }
    out
}

/// Runs compensations with what the original run captured.
pub struct UndoRunner {
    pub clients: BTreeMap<String, Client>,
    pub original: RunRecord,
    pub applied: StepGraph,
    /// How long a workload brought back may take to be Ready again (and one stopped, to
    /// have no pods left).
    pub ready_timeout: std::time::Duration,
    /// One watch per cluster, kind and namespace, shared by the rollback's waits.
    pub watches: super::watches::SharedWatches,
    /// Fresh lists shared by concurrent safety checks.
    pub fresh_lists: super::fresh::FreshLists,
}

impl UndoRunner {
    fn captured(&self, step_id: &str, key: &str) -> Option<Value> {
        self.original.steps.get(step_id)?.captured.get(key).cloned()
    }

    fn captured_str(&self, step_id: &str, key: &str) -> Option<String> {
        self.captured(step_id, key).and_then(|v| v.as_str().map(String::from))
    }

    /// The manifest the `saveObject` before a `deleteObject` captured.
    fn saved_manifest(&self, delete_id: &str, object: &crate::steps::ObjectRef) -> Option<Value> {
        let index = self.applied.index_of(delete_id)?;
        self.applied.ancestors(index).into_iter().find_map(|a| match self.applied.step(a).action() {
            Some(Action::SaveObject(p)) if &p.object == object => self.captured(&self.applied.step(a).id, "manifest"),
            _ => None,
        })
    }
}

impl StepRunner for UndoRunner {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<(), StepError> {
        let original_id = step.id.strip_prefix(UNDO_PREFIX).unwrap_or(&step.id).to_string();
        let Some(action) = step.action() else { return Ok(()) };
        let client = self
            .clients
            .get(&step.cluster)
            .cloned()
            .ok_or_else(|| StepError::failed(format!("no connection to cluster `{}`", step.cluster)))?;
        let owner = label_value(&self.original.run_id);
        let k =
            Kube { client, ns: step.namespace.clone(), ctx, step, watches: &self.watches, fresh: &self.fresh_lists };
        let id = original_id.as_str();
        match action {
            // A rollback is done when what it brought back serves again, not when the
            // replicas are written: wait until Ready, and say why not when it is not.
            Action::Scale(p) => match self.captured(id, workloads::original_replicas_key()).and_then(|v| v.as_i64()) {
                Some(original) => {
                    set_replicas(&k, &p.workload, original as i32).await?;
                    super::outcome::ready_or_explain(&k, &p.workload, Some(original as i32), self.ready_timeout).await
                }
                None => Ok(()), // it never recorded replicas, so it never scaled
            },
            // Back to zero, so the claims can be swapped back; undoing the scale-down
            // afterwards restores the original replicas.
            Action::ScaleBack(p) => {
                set_replicas(&k, &p.workload, 0).await?;
                let gone = workloads::wait_pods_gone(&k, &p.workload);
                super::within(self.ready_timeout, &step.id, gone).await
            }
            Action::SnapshotPvc(_) => match self.captured_str(id, "snapshot") {
                Some(name) => delete_snapshot(&k, &name, &owner).await,
                None => Ok(()),
            },
            Action::SetReclaimPolicy(_) => match (self.captured_str(id, "pv"), self.captured_str(id, "originalPolicy"))
            {
                (Some(pv), Some(policy)) => set_policy(&k, &pv, &policy).await,
                _ => Ok(()),
            },
            Action::DeletePvc(p) => {
                match (self.captured(id, "claim"), self.captured_str(id, "pv"), self.captured_str(id, "uid")) {
                    (Some(manifest), Some(pv), Some(uid)) => {
                        rebind_original(&k, &p.claim.value, manifest, &pv, &uid).await
                    }
                    _ => Ok(()), // nothing was captured, so nothing was deleted
                }
            }
            Action::RestorePvc(p) => delete_own_claim(&k, &p.claim.value, &owner).await,
            Action::BindStaticPv(p) => {
                delete_own_claim(&k, &p.claim, &owner).await?;
                delete_own_volume(&k, &p.pv_name, &owner).await
            }
            Action::SetWorkloadClaim(p) => match self.captured_str(id, "originalClaim") {
                Some(original) => workloads::set_claim(&k, &p.workload, &p.volume, &original).await,
                None => Ok(()),
            },
            Action::DeleteObject(p) => match self.saved_manifest(id, &p.object) {
                Some(manifest) => super::objects::create_from_manifest(&k, &p.object, manifest).await,
                None => Ok(()),
            },
            // The controller runs again as it did before the run paused it.
            Action::PauseReconciler(p) => match self.captured(id, crate::steps::PAUSE_ORIGINAL) {
                Some(original) => super::reconcilers::send(&k, p, &original, "resuming").await,
                None => Ok(()), // nothing was saved, so nothing was paused
            },
            // Rollback undoes the steps the pause protected, after this one: the
            // controller must not fight that either, so it is paused again until the
            // pause itself is undone (last).
            Action::ResumeReconciler(p) => {
                let patch = super::reconcilers::marked(&p.patch, &owner);
                super::reconcilers::send(&k, p, &patch, "pausing again").await
            }
            // The compensating command, if the command was issued (it may have run).
            Action::Exec(p) => match (&p.undo, self.captured(id, "execIssued")) {
                (Some(undo), Some(_)) => {
                    let params = crate::steps::ExecParams {
                        command: undo.clone(),
                        creates: None,
                        unless: None,
                        idempotent: true,
                        undo: None,
                        ..p.clone()
                    };
                    let timeout = p.timeout.as_ref().map_or(std::time::Duration::from_secs(300), |t| t.value.0);
                    super::exec::run(&k, &params, timeout).await
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

async fn set_replicas(k: &Kube<'_>, w: &WorkloadRef, replicas: i32) -> Result<(), StepError> {
    if workloads::get_scale(k, w).await? != replicas {
        workloads::set_scale(k, w, replicas).await?;
    }
    Ok(())
}

fn made_by(meta: &kube::core::ObjectMeta, owner: &str) -> bool {
    meta.labels.as_ref().and_then(|l| l.get(super::RUN_LABEL)).map(String::as_str) == Some(owner)
}

async fn delete_snapshot(k: &Kube<'_>, name: &str, owner: &str) -> Result<(), StepError> {
    let api: Api<DynamicObject> = k.dynamic(&super::volumes::snapshot_resource(), Some(&k.ns));
    let Some(snapshot) = api.get_opt(name).await.map_err(|e| classify(&format!("reading VolumeSnapshot {name}"), e))?
    else {
        return Ok(());
    };
    if !made_by(&snapshot.metadata, owner) {
        return Err(StepError::conflict(format!(
            "VolumeSnapshot {}/{name} was not created by the run being rolled back; leaving it",
            k.ns
        )));
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(classify(&format!("deleting VolumeSnapshot {name}"), e)),
    }
}

async fn set_policy(k: &Kube<'_>, pv: &str, policy: &str) -> Result<(), StepError> {
    let patch = Patch::Merge(json!({ "spec": { "persistentVolumeReclaimPolicy": policy } }));
    match k.cluster_api::<PersistentVolume>().patch(pv, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            Err(StepError::failed(format!("PV {pv} is gone; cannot restore its reclaim policy")))
        }
        Err(e) => Err(classify(&format!("restoring reclaim policy of PV {pv}"), e)),
    }
}

/// Deletes a claim only if this run created it.
async fn delete_own_claim(k: &Kube<'_>, name: &str, owner: &str) -> Result<(), StepError> {
    let api: Api<PersistentVolumeClaim> = k.api();
    let Some(pvc) = api.get_opt(name).await.map_err(|e| classify(&format!("reading PVC {name}"), e))? else {
        return Ok(());
    };
    if !made_by(&pvc.metadata, owner) {
        return Ok(()); // the original (already rebound) or someone else's: not ours to delete
    }
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(classify(&format!("deleting PVC {name}"), e)),
    }
    k.until_named(&api, name, super::volumes::is_gone(&uid))
        .await
        .map(|_| ())
        .map_err(|e| super::shared_wait_failed(&format!("waiting for PVC {name} to be deleted"), &e))
}

async fn delete_own_volume(k: &Kube<'_>, name: &str, owner: &str) -> Result<(), StepError> {
    let api: Api<PersistentVolume> = k.cluster_api();
    let Some(pv) = api.get_opt(name).await.map_err(|e| classify(&format!("reading PV {name}"), e))? else {
        return Ok(());
    };
    if !made_by(&pv.metadata, owner) {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(classify(&format!("deleting PV {name}"), e)),
    }
}

/// Brings back a deleted claim bound to its retained volume, which still holds the
/// original data: the volume's claim reference is reset to accept a new claim of the
/// same name, and the claim is recreated from its captured manifest.
async fn rebind_original(
    k: &Kube<'_>,
    claim: &str,
    manifest: Value,
    pv: &str,
    original_uid: &str,
) -> Result<(), StepError> {
    let claims: Api<PersistentVolumeClaim> = k.api();
    if let Some(existing) = claims.get_opt(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))? {
        let bound_to = existing.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        if existing.metadata.uid.as_deref() == Some(original_uid) || bound_to == Some(pv) {
            return wait_claim_bound(k, claim).await; // never deleted, or already rebound
        }
        return Err(StepError::conflict(format!(
            "PVC {}/{claim} exists and is not the original claim; remove it before rolling back",
            k.ns
        )));
    }
    let volumes: Api<PersistentVolume> = k.cluster_api();
    let volume = volumes.get(pv).await.map_err(|e| classify(&format!("reading PV {pv}"), e))?;
    let reset = Patch::Merge(
        json!({ "spec": { "claimRef": { "uid": null, "resourceVersion": null, "namespace": k.ns, "name": claim } } }),
    );
    volumes
        .patch(pv, &PatchParams::default(), &reset)
        .await
        .map_err(|e| classify(&format!("releasing PV {pv} for its claim"), e))?;
    let mut manifest = manifest;
    manifest["spec"]["volumeName"] = json!(pv);
    // A resize the provider refused leaves the claim asking for more than its volume
    // holds, and a claim asking for more than the named PV's capacity never binds.
    if let Some(capacity) = volume.spec.and_then(|s| s.capacity).and_then(|mut c| c.remove("storage")) {
        let asks = manifest.pointer("/spec/resources/requests/storage").and_then(Value::as_str).and_then(bytes_of);
        if asks.zip(bytes_of(&capacity.0)).is_some_and(|(asks, holds)| asks > holds) {
            manifest["spec"]["resources"]["requests"]["storage"] = json!(capacity.0);
        }
    }
    let pvc: PersistentVolumeClaim = serde_json::from_value(manifest).map_err(|e| StepError::failed(e.to_string()))?;
    match claims.create(&PostParams::default(), &pvc).await {
        Ok(_) => {}
        Err(e) if is_already_exists(&e) => {}
        Err(e) => return Err(classify(&format!("recreating PVC {claim}"), e)),
    }
    wait_claim_bound(k, claim).await
}

fn bytes_of(quantity: &str) -> Option<u128> {
    quantity.parse::<crate::lang::Quantity>().ok().map(|q| q.bytes())
}

async fn wait_claim_bound(k: &Kube<'_>, claim: &str) -> Result<(), StepError> {
    super::volumes::wait_bound(k, claim).await
}
