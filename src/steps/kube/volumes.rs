//! Volume steps: snapshots, reclaim policy, deleting and restoring claims, static PVs,
//! expansion — with the deletion interlocks checked against live state.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::core::ApiResource;
use serde_json::{Value, json};

use super::workloads::SafetyReads;
use super::{Kube, RUN_LABEL, classify, clean_manifest, create_or_exists, expand_name, is_not_found, label_value};
use crate::exec::StepError;
use crate::steps::{
    Action, FALLBACK_NEEDED, RateLimitFallback, ReclaimPolicy, ResizePvcParams, RestorePvcParams, SnapshotPvcParams,
    StaticPvParams,
};

pub fn snapshot_resource() -> ApiResource {
    crate::steps::manifests::api_resource("snapshot.storage.k8s.io/v1", "VolumeSnapshot")
}

/// The snapshot step of `claim` among this step's dependencies.
fn snapshot_step<'g>(k: &'g Kube<'_>, claim: &str) -> Option<&'g SnapshotPvcParams> {
    let graph = &k.ctx.graph;
    k.ctx.ancestors().into_iter().find_map(|a| {
        let step = graph.step(a);
        match step.action() {
            Some(Action::SnapshotPvc(p)) if p.claim.value == claim && k.same_place(step) => Some(p),
            _ => None,
        }
    })
}

/// Creates the VolumeSnapshot (or adopts the one this run already created).
pub async fn snapshot(k: &Kube<'_>, p: &SnapshotPvcParams) -> Result<(), StepError> {
    let name = expand_name(&p.snapshot_name, &p.claim.value, &k.run_token());
    let api = k.dynamic(&snapshot_resource(), Some(&k.ns));
    let manifest = crate::steps::manifests::volume_snapshot(&k.ns, p, &k.run_token(), &k.ownership());
    let object: DynamicObject = serde_json::from_value(manifest).map_err(|e| StepError::failed(e.to_string()))?;
    k.ctx.capture("snapshot", json!(name))?;
    if !create_or_exists(&api, &object, &format!("VolumeSnapshot {name}")).await? {
        let existing = api.get(&name).await.map_err(|e| classify(&format!("reading VolumeSnapshot {name}"), e))?;
        let source = existing.data.pointer("/spec/source/persistentVolumeClaimName").and_then(Value::as_str);
        if !k.created_by_this_run(&existing.metadata) || source != Some(p.claim.value.as_str()) {
            return Err(StepError::conflict(format!(
                "VolumeSnapshot {}/{name} already exists and was not created by this run for claim {}",
                k.ns, p.claim.value
            )));
        }
    }
    Ok(())
}

fn snapshot_name_for(k: &Kube<'_>, claim: &str) -> Result<String, StepError> {
    let step = snapshot_step(k, claim)
        .ok_or_else(|| StepError::failed(format!("no snapshot step of claim {claim} precedes this step")))?;
    Ok(expand_name(&step.snapshot_name, claim, &k.run_token()))
}

/// Waits on a watch for `readyToUse`, failing fast when the snapshotter reports an error.
pub async fn wait_snapshot_ready(k: &Kube<'_>, claim: &str) -> Result<(), StepError> {
    let name = snapshot_name_for(k, claim)?;
    let api = k.dynamic(&snapshot_resource(), Some(&k.ns));
    let settled = |o: Option<&DynamicObject>| {
        o.is_some_and(|o| {
            o.data.pointer("/status/readyToUse") == Some(&json!(true))
                || o.data.pointer("/status/error/message").is_some()
        })
    };
    let snapshot = k
        .until_named(&api, &name, settled)
        .await
        .map_err(|e| super::shared_wait_failed(&format!("watching VolumeSnapshot {name}"), &e))?;
    match snapshot.as_ref().and_then(|s| s.data.pointer("/status/error/message")).and_then(Value::as_str) {
        Some(error) if snapshot.as_ref().and_then(|s| s.data.pointer("/status/readyToUse")) != Some(&json!(true)) => {
            Err(StepError::failed(format!("VolumeSnapshot {name} failed: {error}")))
        }
        _ => Ok(()),
    }
}

/// The PV bound to a claim: from the claim, or as recorded before the claim was deleted.
async fn volume_of(k: &Kube<'_>, claim: &str) -> Result<String, StepError> {
    if let Some(pv) = k.ctx.captured("pv").and_then(|v| v.as_str().map(String::from)) {
        return Ok(pv);
    }
    let pvc =
        k.api::<PersistentVolumeClaim>().get(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
    pvc.spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| StepError::failed(format!("PVC {}/{claim} is not bound to a volume", k.ns)))
}

pub async fn set_reclaim_policy(k: &Kube<'_>, claim: &str, policy: ReclaimPolicy) -> Result<(), StepError> {
    let pv_name = volume_of(k, claim).await?;
    k.ctx.capture("pv", json!(pv_name))?;
    let pvs: Api<PersistentVolume> = k.cluster_api();
    let pv = pvs.get(&pv_name).await.map_err(|e| classify(&format!("reading PV {pv_name}"), e))?;
    let current = pv.spec.and_then(|s| s.persistent_volume_reclaim_policy).unwrap_or_else(|| "Delete".into());
    if k.ctx.captured("originalPolicy").is_none() {
        k.ctx.capture("originalPolicy", json!(current))?;
    }
    if current != policy.to_string() {
        let patch = Patch::Merge(json!({ "spec": { "persistentVolumeReclaimPolicy": policy.to_string() } }));
        pvs.patch(&pv_name, &PatchParams::default(), &patch)
            .await
            .map_err(|e| classify(&format!("setting reclaim policy of PV {pv_name}"), e))?;
    }
    Ok(())
}

/// Whether a ready VolumeSnapshot of `claim`, created by this run, exists (the run's
/// snapshots are listed once per safety check).
async fn ready_snapshot_of_this_run(k: &Kube<'_>, reads: &mut SafetyReads, claim: &str) -> Result<bool, StepError> {
    // The snapshot step before this one names the snapshot: one read, where listing every
    // snapshot of the run for each claim grew with the fleet.
    if let Some(step) = snapshot_step(k, claim) {
        let name = expand_name(&step.snapshot_name, claim, &k.run_token());
        let api = k.dynamic(&snapshot_resource(), Some(&k.ns));
        let found = api.get_opt(&name).await.map_err(|e| classify(&format!("reading VolumeSnapshot {name}"), e))?;
        return Ok(found.is_some_and(|s| k.created_by_this_run(&s.metadata) && is_ready_snapshot_of(&s.data, claim)));
    }
    if reads.snapshots.is_none() {
        let api = k.dynamic(&snapshot_resource(), Some(&k.ns));
        let selector = format!("{RUN_LABEL}={}", label_value(&k.ctx.run_id));
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| classify("listing VolumeSnapshots", e))?;
        reads.snapshots = Some(list.items);
    }
    let snapshots = reads.snapshots.as_deref().unwrap_or_default();
    Ok(snapshots.iter().any(|s| is_ready_snapshot_of(&s.data, claim)))
}

fn is_ready_snapshot_of(snapshot: &Value, claim: &str) -> bool {
    snapshot.pointer("/spec/source/persistentVolumeClaimName").and_then(Value::as_str) == Some(claim)
        && snapshot.pointer("/status/readyToUse") == Some(&json!(true))
}

/// Deletes a claim after re-checking, against live state, that doing so loses nothing:
/// no pod uses it, a ready snapshot of it was taken in this run (unless data loss is
/// accepted), and its volume will not be reclaimed with `Delete`.
pub async fn delete_claim(k: &Kube<'_>, claim: &str, accept_data_loss: bool) -> Result<(), StepError> {
    let api: Api<PersistentVolumeClaim> = k.api();
    let current = api.get_opt(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
    let recorded_uid = k.ctx.captured("uid").and_then(|v| v.as_str().map(String::from));
    let Some(pvc) = current else { return Ok(()) };
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    if recorded_uid.as_deref().is_some_and(|r| r != uid) {
        return Ok(()); // the claim we deleted is gone; this one is its replacement
    }
    if pvc.metadata.deletion_timestamp.is_none() {
        check_deletion_is_safe(k, claim, &pvc, accept_data_loss).await?;
    }
    let pv = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if recorded_uid.is_none() {
        let manifest = clean_manifest(serde_json::to_value(&pvc).unwrap_or_default());
        k.ctx.capture_all([("pv", json!(pv)), ("claim", manifest), ("uid", json!(uid))])?;
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(claim, &params).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(classify(&format!("deleting PVC {claim}"), e)),
    }
    k.until_named(&api, claim, is_gone(&uid))
        .await
        .map(|_| ())
        .map_err(|e| super::shared_wait_failed(&format!("waiting for PVC {claim} to be deleted"), &e))
}

/// The object with `uid` is gone: absent, or replaced by another of the same name
/// (`kube::runtime::wait::conditions::is_deleted`).
pub fn is_gone<K: kube::Resource>(uid: &str) -> impl Fn(Option<&K>) -> bool + '_ {
    move |o: Option<&K>| o.is_none_or(|o| o.meta().uid.as_deref() != Some(uid))
}

async fn check_deletion_is_safe(
    k: &Kube<'_>,
    claim: &str,
    pvc: &PersistentVolumeClaim,
    accept_data_loss: bool,
) -> Result<(), StepError> {
    match deletion_problem(k, &mut SafetyReads::default(), claim, pvc, accept_data_loss).await? {
        Some(problem) => Err(StepError::unsafe_(format!("refusing to delete PVC {}/{claim}: {problem}", k.ns))),
        None => Ok(()),
    }
}

/// Why deleting `claim` now would lose something, if it would.
async fn deletion_problem(
    k: &Kube<'_>,
    reads: &mut SafetyReads,
    claim: &str,
    pvc: &PersistentVolumeClaim,
    accept_data_loss: bool,
) -> Result<Option<String>, StepError> {
    if let Some(problem) = super::workloads::scaled_back_up_by_another(k, reads, claim).await? {
        return Ok(Some(problem));
    }
    let users = super::workloads::pods_using_claim(k, reads, claim).await?;
    if !users.is_empty() {
        return Ok(Some(format!("pods still use it: {} (scale their workloads to 0 first)", users.join(", "))));
    }
    if accept_data_loss {
        return Ok(None);
    }
    if !ready_snapshot_of_this_run(k, reads, claim).await? {
        return Ok(Some("no ready VolumeSnapshot of it was taken in this run".into()));
    }
    let Some(pv_name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let pv = k
        .cluster_api::<PersistentVolume>()
        .get(&pv_name)
        .await
        .map_err(|e| classify(&format!("reading PV {pv_name}"), e))?;
    let policy = pv.spec.and_then(|s| s.persistent_volume_reclaim_policy).unwrap_or_else(|| "Delete".into());
    if policy == "Delete" {
        return Ok(Some(format!("its volume {pv_name} would be reclaimed with Delete (set it to Retain first)")));
    }
    Ok(None)
}

/// The barrier before an entry's first deletion: checks every claim the entry deletes,
/// all at once, and refuses (naming every problem) unless each one is safe to delete.
pub async fn check_claims_safe(k: &Kube<'_>, claims: &[String], accept_data_loss: bool) -> Result<(), StepError> {
    let api: Api<PersistentVolumeClaim> = k.api();
    let mut problems = Vec::new();
    let mut reads = SafetyReads::default();
    for claim in claims {
        let pvc = api.get_opt(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
        let problem = match pvc {
            None => Some("it does not exist".to_string()),
            Some(pvc) => deletion_problem(k, &mut reads, claim, &pvc, accept_data_loss).await?,
        };
        if let Some(problem) = problem {
            problems.push(format!("PVC {}/{claim}: {problem}", k.ns));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StepError::unsafe_(format!(
        "refusing to delete any of the {} claims of this entry, because {} not safe to delete: {}",
        claims.len(),
        if problems.len() == 1 { "one is" } else { "some are" },
        problems.join("; ")
    )))
}

/// The claim as it was before deletion, from the `deletePvc` step this one follows.
fn deleted_claim(k: &Kube<'_>, claim: &str) -> Option<Value> {
    let graph = &k.ctx.graph;
    k.ctx.ancestors().into_iter().find_map(|a| {
        let step = graph.step(a);
        match step.action() {
            Some(Action::DeletePvc(p)) if p.claim.value == claim && k.same_place(step) => {
                k.ctx.captured_in(&step.id, "claim")
            }
            _ => None,
        }
    })
}

/// Recreates the claim under its name from the snapshot, at the requested size.
pub async fn restore_claim(k: &Kube<'_>, p: &RestorePvcParams) -> Result<(), StepError> {
    let claim = &p.claim.value;
    let snapshot = expand_name(&p.snapshot, claim, &k.run_token());
    let before = deleted_claim(k, claim).unwrap_or(Value::Null);
    let manifest = crate::steps::manifests::restored_claim(&k.ns, p, &before, &k.run_token(), &k.ownership())
        .map_err(StepError::failed)?;
    let pvc: PersistentVolumeClaim = serde_json::from_value(manifest).map_err(|e| StepError::failed(e.to_string()))?;
    let api: Api<PersistentVolumeClaim> = k.api();
    let existing = api.get_opt(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
    if existing.is_none() {
        check_restore_source(k, claim, &snapshot).await?;
    }
    if !create_or_exists(&api, &pvc, &format!("PVC {claim}")).await? {
        let existing = api.get(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
        let source = existing.spec.as_ref().and_then(|s| s.data_source.as_ref()).map(|d| d.name.as_str());
        if !k.created_by_this_run(&existing.metadata) || source != Some(snapshot.as_str()) {
            return Err(StepError::conflict(format!(
                "PVC {}/{claim} already exists and was not restored by this run from {snapshot}",
                k.ns
            )));
        }
    }
    Ok(())
}

/// A claim restored from a snapshot that does not exist stays Pending forever: refuse
/// before creating it. One not ready yet is worth waiting for (retried).
async fn check_restore_source(k: &Kube<'_>, claim: &str, snapshot: &str) -> Result<(), StepError> {
    let api = k.dynamic(&snapshot_resource(), Some(&k.ns));
    let found = api.get_opt(snapshot).await.map_err(|e| classify(&format!("reading VolumeSnapshot {snapshot}"), e))?;
    let Some(found) = found else {
        return Err(StepError::failed(format!(
            "cannot restore PVC {}/{claim}: VolumeSnapshot {snapshot} does not exist (the claim would stay Pending)",
            k.ns
        )));
    };
    if let Some(error) = found.data.pointer("/status/error/message").and_then(Value::as_str) {
        return Err(StepError::failed(format!(
            "cannot restore PVC {}/{claim}: VolumeSnapshot {snapshot} failed: {error}",
            k.ns
        )));
    }
    if found.data.pointer("/status/readyToUse") != Some(&json!(true)) {
        return Err(StepError::transient(format!("VolumeSnapshot {}/{snapshot} is not readyToUse yet", k.ns)));
    }
    Ok(())
}

/// Creates a static PV for an existing disk (claimRef, zone affinity, Retain) and the
/// claim bound to it.
pub async fn bind_static(k: &Kube<'_>, p: &StaticPvParams) -> Result<(), StepError> {
    let v = &p.volume.value;
    let ownership = k.ownership();
    let pv: PersistentVolume = serde_json::from_value(crate::steps::manifests::static_volume(&k.ns, p, &ownership))
        .map_err(|e| StepError::failed(e.to_string()))?;
    let pvs: Api<PersistentVolume> = k.cluster_api();
    if !create_or_exists(&pvs, &pv, &format!("PV {}", p.pv_name)).await? {
        let existing = pvs.get(&p.pv_name).await.map_err(|e| classify(&format!("reading PV {}", p.pv_name), e))?;
        let handle = existing.spec.as_ref().and_then(|s| s.csi.as_ref()).map(|c| c.volume_handle.as_str());
        if !k.created_by_this_run(&existing.metadata) || handle != Some(v.volume_handle.as_str()) {
            return Err(StepError::conflict(format!(
                "PV {} already exists and was not created by this run",
                p.pv_name
            )));
        }
    }
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(crate::steps::manifests::static_claim(&k.ns, p, &ownership))
            .map_err(|e| StepError::failed(e.to_string()))?;
    let pvcs: Api<PersistentVolumeClaim> = k.api();
    if !create_or_exists(&pvcs, &pvc, &format!("PVC {}", p.claim)).await? {
        let existing = pvcs.get(&p.claim).await.map_err(|e| classify(&format!("reading PVC {}", p.claim), e))?;
        let bound_to = existing.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        if !k.created_by_this_run(&existing.metadata) || bound_to != Some(p.pv_name.as_str()) {
            return Err(StepError::conflict(format!(
                "PVC {}/{} already exists and is not bound to PV {}",
                k.ns, p.claim, p.pv_name
            )));
        }
    }
    Ok(())
}

pub async fn wait_bound(k: &Kube<'_>, claim: &str) -> Result<(), StepError> {
    let bound = |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|o| o.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some("Bound")
    };
    k.until_named(&k.api::<PersistentVolumeClaim>(), claim, bound)
        .await
        .map(|_| ())
        .map_err(|e| super::shared_wait_failed(&format!("waiting for PVC {claim} to bind"), &e))
}

/// Expands a claim and waits for the new capacity; a provider refusal (such as EBS's
/// `VolumeModificationRateExceeded`) is reported with the provider's own words.
pub async fn resize(k: &Kube<'_>, p: &ResizePvcParams) -> Result<(), StepError> {
    let claim = &p.claim.value;
    let api: Api<PersistentVolumeClaim> = k.api();
    let size = p.size.value.to_string();
    let patch = Patch::Merge(json!({ "spec": { "resources": { "requests": { "storage": size } } } }));
    api.patch(claim, &PatchParams::default(), &patch)
        .await
        .map_err(|e| classify(&format!("resizing PVC {claim}"), e))?;
    let wanted = p.size.value.bytes();
    let settled = move |o: Option<&PersistentVolumeClaim>| {
        let Some(o) = o else { return false };
        let grown = o
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .and_then(|q| q.0.parse::<crate::lang::Quantity>().ok())
            .is_some_and(|q| q.bytes() >= wanted);
        grown || provider_refusal(o).is_some()
    };
    let pvc = k
        .until_named(&api, claim, settled)
        .await
        .map_err(|e| super::shared_wait_failed(&format!("waiting for PVC {claim} to grow"), &e))?;
    let refusal = pvc.as_ref().and_then(provider_refusal);
    let falls_back = p.on_rate_limit == RateLimitFallback::RestoreBigger;
    match refusal {
        // The message says when the provider will allow the next modification; a new
        // volume restored from a snapshot has no modification history at all.
        Some(message) if falls_back && is_rate_limit(&message) => {
            k.ctx.capture("refusal", json!(message))?;
            k.ctx.capture(FALLBACK_NEEDED, json!(true))
        }
        Some(message) => Err(StepError::failed(format!("the provider refused to resize PVC {claim}: {message}"))),
        None if falls_back => k.ctx.capture(FALLBACK_NEEDED, json!(false)),
        None => Ok(()),
    }
}

/// Whether a provider's refusal is its per-volume modification rate limit (EBS).
fn is_rate_limit(message: &str) -> bool {
    message.contains("VolumeModificationRateExceeded")
}

/// The message of a failed-resize condition on a claim, if any.
pub fn provider_refusal(pvc: &PersistentVolumeClaim) -> Option<String> {
    let conditions = pvc.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find(|c| c.type_.contains("Failed") || c.message.as_deref().is_some_and(|m| m.contains("RateExceeded")))
        .map(|c| c.message.clone().unwrap_or_else(|| c.type_.clone()))
}
