//! The PersistentVolume controller and a CSI-like provider: claim binding (static through
//! volumeName / claimRef, matching, dynamic provisioning per StorageClass including
//! WaitForFirstConsumer and restore from snapshots), reclaim (Delete / Retain), the
//! protection finalizers, and volume expansion with an EBS-like modification rate limit.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::workloads::{SELECTED_NODE, node_zone, pod_claims, pv_zone};
use crate::sim::admission::{PV_PROTECTION, PVC_PROTECTION, requested_bytes};
use crate::sim::clock::after;
use crate::sim::files::FileTree;
use crate::sim::quantity::{self, format_bytes};
use crate::sim::registry::keys;
use crate::sim::state::{BackingVolume, State, is_deleting, name_of, namespace_of, uid_of};

const PROVISIONER: &str = "persistentvolume-controller";

/// Whether an unbound claim's class delays binding until a pod is scheduled.
pub fn waits_for_consumer(state: &State, claim: &Value) -> bool {
    class_of(state, claim).is_some_and(|sc| sc["volumeBindingMode"] == "WaitForFirstConsumer")
}

fn class_of(state: &State, claim: &Value) -> Option<Arc<Value>> {
    match claim["spec"]["storageClassName"].as_str() {
        Some(name) => state.get(&keys::storage_classes(), "", name),
        None => state
            .all(&keys::storage_classes())
            .into_iter()
            .find(|sc| sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"),
    }
}

/// PVs by the claim their claimRef names, and the unclaimed available ones: built once per
/// pass so binding stays linear at 10,000 volumes.
struct PvIndex {
    by_claim: HashMap<(String, String), Arc<Value>>,
    unclaimed: Vec<Arc<Value>>,
}

impl PvIndex {
    fn build(state: &State) -> PvIndex {
        let mut index = PvIndex { by_claim: HashMap::new(), unclaimed: Vec::new() };
        for pv in state.all(&keys::pvs()) {
            if is_deleting(&pv) {
                continue;
            }
            let claim_ref = &pv["spec"]["claimRef"];
            match (claim_ref["namespace"].as_str(), claim_ref["name"].as_str()) {
                (Some(ns), Some(name)) => {
                    index.by_claim.insert((ns.to_string(), name.to_string()), pv);
                }
                _ if pv["status"]["phase"] == "Available" => index.unclaimed.push(pv),
                _ => {}
            }
        }
        index
    }
}

pub fn reconcile_claims(state: &mut State) -> bool {
    let mut index = PvIndex::build(state);
    let mut changed = false;
    for claim in state.all(&keys::pvcs()) {
        changed |= if is_deleting(&claim) {
            release_protection(state, &claim)
        } else if claim["status"]["phase"] == "Bound" {
            check_still_bound(state, &claim)
        } else {
            bind_claim(state, &claim, &mut index)
        };
    }
    changed
}

/// pvc-protection: a claim stays Terminating while a pod that is not finished uses it.
fn release_protection(state: &mut State, claim: &Value) -> bool {
    let in_use = state.store.list(&keys::pods(), Some(namespace_of(claim))).iter().any(|pod| {
        let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        !finished && pod_claims(pod).iter().any(|c| c == name_of(claim))
    });
    !in_use && state.remove_finalizer(&keys::pvcs(), claim, PVC_PROTECTION)
}

fn check_still_bound(state: &mut State, claim: &Value) -> bool {
    let pv_exists = claim["spec"]["volumeName"].as_str().is_some_and(|pv| state.get(&keys::pvs(), "", pv).is_some());
    if pv_exists {
        return false;
    }
    let mut lost = claim.clone();
    lost["status"]["phase"] = json!("Lost");
    state.record_event(
        claim,
        true,
        "ClaimLost",
        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        PROVISIONER,
    );
    state.save_if_changed(&keys::pvcs(), claim, lost)
}

fn bind_claim(state: &mut State, claim: &Value, index: &mut PvIndex) -> bool {
    let key = (namespace_of(claim).to_string(), name_of(claim).to_string());
    if let Some(pv_name) = claim["spec"]["volumeName"].as_str().filter(|n| !n.is_empty()) {
        return match state.get(&keys::pvs(), "", pv_name) {
            Some(pv) if pv_accepts(&pv, claim) && pv_big_enough(&pv, claim) => bind(state, claim, &pv),
            // The named PV is missing, taken or too small ("requested PV is too small"):
            // the claim waits, as in a real cluster.
            _ => false,
        };
    }
    if let Some(pv) = index.by_claim.get(&key).cloned().filter(|pv| pv_accepts(pv, claim)) {
        return bind(state, claim, &pv);
    }
    if let Some(position) = index.unclaimed.iter().position(|pv| pv_matches(pv, claim)) {
        let pv = index.unclaimed.remove(position);
        return bind(state, claim, &pv);
    }
    provision(state, claim)
}

/// A PV may bind this claim: unclaimed, or pre-bound to it (uid empty or equal).
fn pv_accepts(pv: &Value, claim: &Value) -> bool {
    let claim_ref = &pv["spec"]["claimRef"];
    if is_deleting(pv)
        || pv["status"]["phase"] == "Released" && claim_ref["uid"].as_str().is_some_and(|u| !u.is_empty())
    {
        return false;
    }
    if claim_ref.is_null() {
        return true;
    }
    claim_ref["name"] == name_of(claim)
        && claim_ref["namespace"] == namespace_of(claim)
        && claim_ref["uid"].as_str().is_none_or(|uid| uid.is_empty() || uid == uid_of(claim))
}

/// An unclaimed PV satisfies the claim's class and size.
fn pv_matches(pv: &Value, claim: &Value) -> bool {
    let class = |v: &Value| v.as_str().unwrap_or_default().to_string();
    class(&pv["spec"]["storageClassName"]) == class(&claim["spec"]["storageClassName"]) && pv_big_enough(pv, claim)
}

fn pv_big_enough(pv: &Value, claim: &Value) -> bool {
    let capacity = pv["spec"]["capacity"]["storage"].as_str().and_then(quantity::parse).unwrap_or(0);
    capacity >= requested_bytes(claim)
}

fn bind(state: &mut State, claim: &Value, pv: &Value) -> bool {
    let mut bound_pv = pv.clone();
    bound_pv["spec"]["claimRef"] = json!({
        "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": namespace_of(claim),
        "name": name_of(claim), "uid": uid_of(claim), "resourceVersion": claim["metadata"]["resourceVersion"],
    });
    bound_pv["status"] = json!({ "phase": "Bound" });
    state.save_if_changed(&keys::pvs(), pv, bound_pv);
    let mut bound = claim.clone();
    bound["spec"]["volumeName"] = json!(name_of(pv));
    bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
    bound["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
    bound["status"] = json!({
        "phase": "Bound",
        "accessModes": pv["spec"]["accessModes"],
        "capacity": { "storage": pv["spec"]["capacity"]["storage"] },
    });
    state.save(&keys::pvcs(), bound);
    true
}

/// Dynamic provisioning: a new backing volume and PV for the claim, in the zone of the node
/// the scheduler chose (WaitForFirstConsumer) or spread over the zones (Immediate).
fn provision(state: &mut State, claim: &Value) -> bool {
    let Some(class) = class_of(state, claim) else {
        return false;
    };
    let provisioner = class["provisioner"].as_str().unwrap_or_default().to_string();
    if provisioner == "kubernetes.io/no-provisioner" {
        return false;
    }
    let selected_node = claim["metadata"]["annotations"][SELECTED_NODE].as_str().map(str::to_string);
    if class["volumeBindingMode"] == "WaitForFirstConsumer" && selected_node.is_none() {
        state.record_event(
            claim,
            false,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
            PROVISIONER,
        );
        return false;
    }
    let (payload, files) = match source_payload(state, claim, &class) {
        Ok(contents) => contents,
        Err(message) => {
            state.record_event(claim, true, "ProvisioningFailed", &message, &provisioner);
            return false;
        }
    };
    let zone = provision_zone(state, claim, &class, selected_node.as_deref());
    let size = requested_bytes(claim);
    let volume_id = format!("vol-{}", state.new_hex(17));
    state.volumes.insert(
        volume_id.clone(),
        BackingVolume { id: volume_id.clone(), zone: zone.clone(), size, payload, files, modifications: Vec::new() },
    );
    let pv = provisioned_pv(claim, &class, &volume_id, &zone);
    let Some(rt) = state.registry.get(&keys::pvs()).cloned() else {
        return false;
    };
    match state.create_object(&rt, "", pv) {
        Ok(created) => {
            let message = format!("Successfully provisioned volume {}", name_of(&created));
            state.record_event(claim, false, "ProvisioningSucceeded", &message, &provisioner);
            bind(state, claim, &created)
        }
        Err(e) => {
            state.volumes.remove(&volume_id);
            state.record_event(claim, true, "ProvisioningFailed", &e.message, &provisioner);
            false
        }
    }
}

fn provision_zone(state: &State, claim: &Value, class: &Value, selected_node: Option<&str>) -> String {
    if let Some(zone) = selected_node.and_then(|n| state.get(&keys::nodes(), "", n)).and_then(|n| node_zone(&n)) {
        return zone;
    }
    let allowed = class["allowedTopologies"][0]["matchLabelExpressions"][0]["values"][0].as_str();
    if let Some(zone) = allowed {
        return zone.to_string();
    }
    // Spread over the zones the cluster's nodes are in (a volume in a zone without nodes
    // could never be attached); the configured zones when no node has one.
    let mut zones: Vec<String> = state.all(&keys::nodes()).iter().filter_map(|n| node_zone(n)).collect();
    zones.sort();
    zones.dedup();
    if zones.is_empty() {
        zones = state.config.zones.clone();
    }
    let spread = uid_of(claim).bytes().map(usize::from).sum::<usize>();
    zones.get(spread % zones.len().max(1)).cloned().unwrap_or_else(|| "zone-a".into())
}

fn provisioned_pv(claim: &Value, class: &Value, volume_id: &str, zone: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{}", uid_of(claim)),
            "labels": { "topology.kubernetes.io/zone": zone },
            "annotations": { "pv.kubernetes.io/provisioned-by": class["provisioner"] },
        },
        "spec": {
            "capacity": { "storage": claim["spec"]["resources"]["requests"]["storage"] },
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
            "storageClassName": name_of(class),
            "volumeMode": claim["spec"]["volumeMode"].as_str().unwrap_or("Filesystem"),
            "csi": { "driver": class["provisioner"], "volumeHandle": volume_id, "fsType": "ext4" },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone] }
            ] }] } },
            "claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": namespace_of(claim),
                "name": name_of(claim), "uid": uid_of(claim),
            },
        },
    })
}

/// The initial contents of a new volume: empty, a snapshot's data, or a cloned claim's data.
/// Errors are the provisioner's event messages.
fn source_payload(state: &State, claim: &Value, class: &Value) -> Result<(Vec<u8>, FileTree), String> {
    let source = [&claim["spec"]["dataSourceRef"], &claim["spec"]["dataSource"]].into_iter().find(|s| s.is_object());
    let Some(source) = source else {
        return Ok(Default::default());
    };
    let ns = namespace_of(claim);
    let source_name = source["name"].as_str().unwrap_or_default();
    let prefix = format!("failed to provision volume with StorageClass \"{}\"", name_of(class));
    match source["kind"].as_str() {
        Some("VolumeSnapshot") => {
            let snapshot =
                super::snapshots::restorable(state, ns, source_name).map_err(|why| format!("{prefix}: {why}"))?;
            let requested = requested_bytes(claim);
            if requested < snapshot.size {
                return Err(format!(
                    "{prefix}: error getting handle for DataSource Type VolumeSnapshot by Name {source_name}: requested volume size {requested} is less than the size {} for the source snapshot {source_name}",
                    snapshot.size
                ));
            }
            Ok((snapshot.payload, snapshot.files))
        }
        Some("PersistentVolumeClaim") => {
            let volume = state.claim_volume_id(ns, source_name).map_err(|e| format!("{prefix}: {}", e.message))?;
            Ok(state.volumes.get(&volume).map(|v| (v.payload.clone(), v.files.clone())).unwrap_or_default())
        }
        other => Err(format!("{prefix}: unsupported data source kind {other:?}")),
    }
}

pub fn reconcile_volumes(state: &mut State) -> bool {
    let mut changed = false;
    for pv in state.all(&keys::pvs()) {
        adopt_backing_volume(state, &pv);
        changed |= if is_deleting(&pv) {
            pv["status"]["phase"] != "Bound" && release_pv_finalizers(state, &pv)
        } else {
            sync_pv_phase(state, &pv)
        };
    }
    changed
}

/// The CSI external-provisioner's finalizer on the PVs it provisioned; it removes it once
/// the disk is deleted (the sim deletes the disk when it reclaims the PV).
const PROVISIONER_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";

/// Lets a deleted, unbound PV go: pv-protection first, then the provisioner's finalizer,
/// one per pass (each removal writes a new version of the object).
fn release_pv_finalizers(state: &mut State, pv: &Value) -> bool {
    state.remove_finalizer(&keys::pvs(), pv, PV_PROTECTION)
        || state.remove_finalizer(&keys::pvs(), pv, PROVISIONER_FINALIZER)
}

/// PVs from manifests (static provisioning, state dumps) get a backing volume on first sight.
fn adopt_backing_volume(state: &mut State, pv: &Value) {
    let Some(handle) = pv["spec"]["csi"]["volumeHandle"].as_str() else {
        return;
    };
    if state.volumes.contains_key(handle) {
        return;
    }
    let size = pv["spec"]["capacity"]["storage"].as_str().and_then(quantity::parse).unwrap_or(0);
    let volume = BackingVolume {
        id: handle.to_string(),
        zone: pv_zone(pv).unwrap_or_default(),
        size,
        payload: Vec::new(),
        files: FileTree::default(),
        modifications: Vec::new(),
    };
    state.volumes.insert(handle.to_string(), volume);
}

fn sync_pv_phase(state: &mut State, pv: &Value) -> bool {
    let claim_ref = &pv["spec"]["claimRef"];
    let ref_uid = claim_ref["uid"].as_str().unwrap_or_default();
    if claim_ref.is_null() || ref_uid.is_empty() {
        return set_pv_phase(state, pv, "Available");
    }
    let ns = claim_ref["namespace"].as_str().unwrap_or_default();
    let claim = state.get(&keys::pvcs(), ns, claim_ref["name"].as_str().unwrap_or_default());
    match claim {
        Some(claim) if uid_of(&claim) == ref_uid => {
            if claim["spec"]["volumeName"] == name_of(pv) {
                set_pv_phase(state, pv, "Bound")
            } else {
                false // binding in progress
            }
        }
        _ => reclaim(state, pv),
    }
}

fn set_pv_phase(state: &mut State, pv: &Value, phase: &str) -> bool {
    // Every controller pass visits every PV: compare before copying one.
    if pv["status"]["phase"] == phase {
        return false;
    }
    let mut updated = pv.clone();
    updated["status"]["phase"] = json!(phase);
    state.save_if_changed(&keys::pvs(), pv, updated)
}

/// The claim is gone: `Delete` removes the PV and its backing volume, `Retain` keeps both
/// and marks the PV Released until an admin clears `claimRef.uid`.
fn reclaim(state: &mut State, pv: &Value) -> bool {
    if pv["spec"]["persistentVolumeReclaimPolicy"] != "Delete" {
        return set_pv_phase(state, pv, "Released");
    }
    if let Some(handle) = pv["spec"]["csi"]["volumeHandle"].as_str() {
        state.volumes.remove(handle);
    }
    let mut released = pv.clone();
    released["status"]["phase"] = json!("Released");
    let released = state.save(&keys::pvs(), released);
    state.delete_object(&keys::pvs(), &released);
    true
}

/// Name of the condition the EBS CSI resizer reports failures under.
const RESIZE_ERROR: &str = "ControllerResizeError";
const RESIZING: &str = "Resizing";

/// Expansion: a bound claim asking for more than its capacity is resized by the provider,
/// subject to the per-volume modification limit.
pub fn reconcile_expansion(state: &mut State) -> bool {
    let mut changed = false;
    for claim in state.all(&keys::pvcs()) {
        if is_deleting(&claim) || claim["status"]["phase"] != "Bound" {
            continue;
        }
        let capacity = claim["status"]["capacity"]["storage"].as_str().and_then(quantity::parse).unwrap_or(0);
        if requested_bytes(&claim) > capacity {
            changed |= expand(state, &claim);
        }
    }
    changed
}

fn condition<'a>(claim: &'a Value, kind: &str) -> Option<&'a Value> {
    claim["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

fn expand(state: &mut State, claim: &Value) -> bool {
    let Ok(volume_id) = state.claim_volume_id(namespace_of(claim), name_of(claim)) else {
        return false;
    };
    let now = state.now();
    if let Some(started) = condition(claim, RESIZING)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(crate::sim::clock::parse_time)
    {
        let done_at = after(started, state.config.resize_after);
        if now < done_at {
            state.wake_at(done_at);
            return false;
        }
        return finish_resize(state, claim, &volume_id);
    }
    let limit = state.config.modification_limit;
    let window_start = now
        .checked_sub(jiff::SignedDuration::try_from(limit.window).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN);
    let Some(volume) = state.volumes.get_mut(&volume_id) else {
        return false;
    };
    volume.modifications.retain(|t| *t > window_start);
    if volume.modifications.len() >= limit.max {
        // With `max: 0` no modification is ever allowed: there is no time to retry at.
        if let Some(retry_at) = volume.modifications.first().map(|first| after(*first, limit.window)) {
            state.wake_at(retry_at);
        }
        return report_rate_limited(state, claim, &volume_id);
    }
    volume.modifications.push(now);
    let mut resizing = claim.clone();
    let conditions: Vec<Value> =
        vec![json!({ "type": RESIZING, "status": "True", "lastTransitionTime": state.now_text() })];
    resizing["status"]["conditions"] = json!(conditions);
    resizing["status"]["allocatedResources"] = json!({ "storage": claim["spec"]["resources"]["requests"]["storage"] });
    state.save(&keys::pvcs(), resizing);
    let message =
        format!("External resizer is resizing volume {}", claim["spec"]["volumeName"].as_str().unwrap_or_default());
    state.record_event(claim, false, "Resizing", &message, "external-resizer ebs.csi.aws.com");
    state.wake_at(after(now, state.config.resize_after));
    true
}

fn report_rate_limited(state: &mut State, claim: &Value, volume_id: &str) -> bool {
    let message = format!(
        "resize volume \"{}\" by resizing volume failed: rpc error: code = Internal desc = Could not resize volume \"{volume_id}\": \
         operation error EC2: ModifyVolume, api error VolumeModificationRateExceeded: You've reached the maximum modification rate per volume limit. \
         Wait at least 6 hours between modifications per EBS volume.",
        claim["spec"]["volumeName"].as_str().unwrap_or_default()
    );
    let mut failed = claim.clone();
    failed["status"]["conditions"] = json!([{
        "type": RESIZE_ERROR, "status": "True", "reason": "VolumeModificationRateExceeded",
        "message": message, "lastTransitionTime": state.now_text(),
    }]);
    // The condition's timestamp changes every pass; compare without it so passes converge.
    let already = condition(claim, RESIZE_ERROR).is_some_and(|c| c["message"] == message.as_str());
    if already {
        return false;
    }
    state.save(&keys::pvcs(), failed);
    state.record_event(claim, true, "VolumeResizeFailed", &message, "external-resizer ebs.csi.aws.com");
    true
}

fn finish_resize(state: &mut State, claim: &Value, volume_id: &str) -> bool {
    let requested = claim["spec"]["resources"]["requests"]["storage"].clone();
    let bytes = requested_bytes(claim);
    if let Some(volume) = state.volumes.get_mut(volume_id) {
        volume.size = bytes;
    }
    if let Some(pv) = claim["spec"]["volumeName"].as_str().and_then(|n| state.get(&keys::pvs(), "", n)) {
        let mut grown = (*pv).clone();
        grown["spec"]["capacity"]["storage"] = requested.clone();
        state.save(&keys::pvs(), grown);
    }
    let mut done = claim.clone();
    done["status"]["capacity"]["storage"] = requested;
    if let Some(status) = done["status"].as_object_mut() {
        status.remove("conditions");
    }
    state.save(&keys::pvcs(), done);
    let message = format!(
        "resize volume {} to {} succeeded",
        claim["spec"]["volumeName"].as_str().unwrap_or_default(),
        format_bytes(bytes)
    );
    state.record_event(claim, false, "VolumeResizeSuccessful", &message, "external-resizer ebs.csi.aws.com");
    true
}
