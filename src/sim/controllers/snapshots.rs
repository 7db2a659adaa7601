//! The CSI snapshot controller: VolumeSnapshot → VolumeSnapshotContent (`snapcontent-<uid>`),
//! readiness after a per-class delay, errors when the source claim is missing, the
//! protection finalizers, deletionPolicy, and the data restores read from.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::sim::clock::{after, format_time, parse_time};
use crate::sim::quantity::format_bytes;
use crate::sim::registry::keys;
use crate::sim::state::{SnapshotData, State, has_finalizer, is_deleting, name_of, namespace_of, uid_of};

pub const AS_SOURCE: &str = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection";
pub const BOUND: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
pub const CONTENT_BOUND: &str = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";
pub const PVC_AS_SOURCE: &str = "snapshot.storage.kubernetes.io/pvc-as-source-protection";
/// VolumeSnapshotClass annotation overriding how long snapshots take to become ready.
pub const READY_AFTER: &str = "sim.drplan.dev/ready-after";
const COMPONENT: &str = "snapshot-controller";

pub fn reconcile(state: &mut State) -> bool {
    if state.registry.get(&keys::snapshots()).is_none() {
        return false; // the snapshot CRDs are not installed
    }
    let mut changed = false;
    for snapshot in state.all(&keys::snapshots()) {
        changed |= if is_deleting(&snapshot) {
            finish_deletion(state, &snapshot)
        } else if snapshot["status"]["boundVolumeSnapshotContentName"].is_string() {
            update_readiness(state, &snapshot)
        } else if let Some(content) = snapshot["spec"]["source"]["volumeSnapshotContentName"].as_str() {
            bind_existing(state, &snapshot, content)
        } else {
            create_content(state, &snapshot)
        };
    }
    changed | release_contents(state)
}

fn snapshot_class(state: &State, snapshot: &Value) -> Option<Arc<Value>> {
    match snapshot["spec"]["volumeSnapshotClassName"].as_str() {
        Some(name) => state.get(&keys::snapshot_classes(), "", name),
        None => state
            .all(&keys::snapshot_classes())
            .into_iter()
            .find(|c| c["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"] == "true"),
    }
}

fn ready_after(state: &State, class: Option<&Value>) -> Duration {
    class
        .and_then(|c| c["metadata"]["annotations"][READY_AFTER].as_str())
        .and_then(|text| humantime::parse_duration(text).ok())
        .unwrap_or(state.config.snapshot_ready_after)
}

fn set_error(state: &mut State, snapshot: &Value, message: String) -> bool {
    let mut failed = snapshot.clone();
    if failed["status"]["error"]["message"] == message.as_str() {
        return false;
    }
    failed["status"] = json!({ "readyToUse": false, "error": { "message": message, "time": state.now_text() } });
    state.save(&keys::snapshots(), failed);
    state.record_event(snapshot, true, "SnapshotCreationFailed", &message, COMPONENT);
    true
}

fn create_content(state: &mut State, snapshot: &Value) -> bool {
    let ns = namespace_of(snapshot).to_string();
    let Some(class) = snapshot_class(state, snapshot) else {
        let wanted = snapshot["spec"]["volumeSnapshotClassName"].as_str().unwrap_or("<default>");
        return set_error(
            state,
            snapshot,
            format!(
                "Failed to get snapshot class with error volumesnapshotclass.snapshot.storage.k8s.io \"{wanted}\" not found"
            ),
        );
    };
    let claim_name = snapshot["spec"]["source"]["persistentVolumeClaimName"].as_str().unwrap_or_default().to_string();
    let volume_id = match state.claim_volume_id(&ns, &claim_name) {
        Ok(id) => id,
        Err(e) => {
            let message =
                format!("failed to get input parameters to create snapshot {}: \"{}\"", name_of(snapshot), e.message);
            return set_error(state, snapshot, message);
        }
    };
    let Some(volume) = state.volumes.get(&volume_id).cloned() else {
        return false;
    };
    let handle = format!("snap-{}", state.new_hex(17));
    state.snapshot_data.insert(
        handle.clone(),
        SnapshotData { payload: volume.payload.clone(), files: volume.files.clone(), size: volume.size },
    );
    let now = state.now();
    let content = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
        "metadata": { "name": format!("snapcontent-{}", uid_of(snapshot)), "finalizers": [CONTENT_BOUND] },
        "spec": {
            "deletionPolicy": class["deletionPolicy"].as_str().unwrap_or("Delete"),
            "driver": class["driver"],
            "source": { "volumeHandle": volume_id },
            "volumeSnapshotClassName": name_of(&class),
            "volumeSnapshotRef": {
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "name": name_of(snapshot), "namespace": ns, "uid": uid_of(snapshot),
            },
        },
    });
    let Some(rt) = state.registry.get(&keys::snapshot_contents()).cloned() else {
        return false;
    };
    let created = match state.create_object(&rt, "", content) {
        Ok(created) => created,
        Err(e) => return set_error(state, snapshot, e.message),
    };
    let mut with_status = (*created).clone();
    with_status["status"] = json!({
        "creationTime": now.as_nanosecond() as i64,
        "readyToUse": false,
        "restoreSize": volume.size as i64,
        "snapshotHandle": handle,
    });
    state.save(&keys::snapshot_contents(), with_status);
    let mut bound = snapshot.clone();
    bound["metadata"]["finalizers"] = json!([AS_SOURCE, BOUND]);
    // Like the real controller, a snapshot without a class records the default it got.
    bound["spec"]["volumeSnapshotClassName"] = json!(name_of(&class));
    bound["status"] = json!({
        "boundVolumeSnapshotContentName": name_of(&created),
        "creationTime": format_time(now),
        "readyToUse": false,
        "restoreSize": format_bytes(volume.size),
    });
    state.save(&keys::snapshots(), bound);
    if let Some(claim) = state.get(&keys::pvcs(), &ns, &claim_name) {
        state.add_finalizer(&keys::pvcs(), &claim, PVC_AS_SOURCE);
    }
    state.record_event(
        snapshot,
        false,
        "SnapshotCreated",
        &format!("Snapshot {ns}/{} was successfully created by the CSI driver.", name_of(snapshot)),
        COMPONENT,
    );
    state.wake_at(after(now, ready_after(state, Some(&class))));
    true
}

/// A pre-provisioned content (imported snapshot) is bound as is.
fn bind_existing(state: &mut State, snapshot: &Value, content_name: &str) -> bool {
    let Some(content) = state.get(&keys::snapshot_contents(), "", content_name) else {
        return set_error(state, snapshot, format!("VolumeSnapshotContent {content_name} not found"));
    };
    let handle = content["spec"]["source"]["snapshotHandle"].as_str().unwrap_or_default().to_string();
    let size = state.snapshot_data.get(&handle).map_or(0, |d| d.size);
    state.snapshot_data.entry(handle.clone()).or_insert(SnapshotData {
        payload: Vec::new(),
        files: Default::default(),
        size,
    });
    let now = state.now();
    let mut ready_content = (*content).clone();
    ready_content["status"] = json!({
        "creationTime": now.as_nanosecond() as i64, "readyToUse": true, "restoreSize": size as i64, "snapshotHandle": handle,
    });
    state.save_if_changed(&keys::snapshot_contents(), &content, ready_content);
    let mut bound = snapshot.clone();
    bound["metadata"]["finalizers"] = json!([AS_SOURCE, BOUND]);
    bound["status"] = json!({
        "boundVolumeSnapshotContentName": content_name, "creationTime": format_time(now),
        "readyToUse": true, "restoreSize": format_bytes(size),
    });
    state.save(&keys::snapshots(), bound);
    true
}

fn update_readiness(state: &mut State, snapshot: &Value) -> bool {
    if snapshot["status"]["readyToUse"] == true {
        return false;
    }
    let content_name = snapshot["status"]["boundVolumeSnapshotContentName"].as_str().unwrap_or_default();
    let Some(content) = state.get(&keys::snapshot_contents(), "", content_name) else {
        return false;
    };
    let class = snapshot_class(state, snapshot);
    let created = snapshot["status"]["creationTime"].as_str().and_then(parse_time).unwrap_or_else(|| state.now());
    let ready_at = after(created, ready_after(state, class.as_deref()));
    if state.now() < ready_at {
        state.wake_at(ready_at);
        return false;
    }
    let mut ready_content = (*content).clone();
    ready_content["status"]["readyToUse"] = json!(true);
    state.save(&keys::snapshot_contents(), ready_content);
    let mut ready = snapshot.clone();
    ready["status"]["readyToUse"] = json!(true);
    state.save(&keys::snapshots(), ready);
    release_source_claim(state, snapshot);
    state.record_event(
        snapshot,
        false,
        "SnapshotReady",
        &format!("Snapshot {}/{} is ready to use.", namespace_of(snapshot), name_of(snapshot)),
        COMPONENT,
    );
    true
}

/// The source claim is protected only while one of its snapshots is being cut.
fn release_source_claim(state: &mut State, snapshot: &Value) {
    let ns = namespace_of(snapshot);
    let Some(claim_name) = snapshot["spec"]["source"]["persistentVolumeClaimName"].as_str() else {
        return;
    };
    let still_cutting = state.store.list(&keys::snapshots(), Some(ns)).iter().any(|s| {
        s["spec"]["source"]["persistentVolumeClaimName"] == claim_name
            && s["status"]["readyToUse"] != true
            && uid_of(s) != uid_of(snapshot)
    });
    if let Some(claim) = state.get(&keys::pvcs(), ns, claim_name)
        && !still_cutting
    {
        state.remove_finalizer(&keys::pvcs(), &claim, PVC_AS_SOURCE);
    }
}

fn finish_deletion(state: &mut State, snapshot: &Value) -> bool {
    let ns = namespace_of(snapshot);
    let in_use_as_source = state.store.list(&keys::pvcs(), Some(ns)).iter().any(|claim| {
        claim["status"]["phase"] != "Bound"
            && [&claim["spec"]["dataSource"], &claim["spec"]["dataSourceRef"]]
                .iter()
                .any(|s| s["kind"] == "VolumeSnapshot" && s["name"] == name_of(snapshot))
    });
    if in_use_as_source {
        return false;
    }
    release_source_claim(state, snapshot);
    let content_name = snapshot["status"]["boundVolumeSnapshotContentName"].as_str().unwrap_or_default();
    if let Some(content) = state.get(&keys::snapshot_contents(), "", content_name)
        && content["spec"]["deletionPolicy"] == "Delete"
    {
        state.delete_object(&keys::snapshot_contents(), &content);
    }
    let mut gone = snapshot.clone();
    gone["metadata"]["finalizers"] = json!([]);
    state.commit_update(&keys::snapshots(), gone);
    true
}

/// Contents whose snapshot is gone: `Delete` contents are deleted with their data, and a
/// terminating content loses its bound-protection finalizer once unbound.
fn release_contents(state: &mut State) -> bool {
    let mut changed = false;
    for content in state.all(&keys::snapshot_contents()) {
        let snapshot_ref = &content["spec"]["volumeSnapshotRef"];
        let snapshot = state.get(
            &keys::snapshots(),
            snapshot_ref["namespace"].as_str().unwrap_or_default(),
            snapshot_ref["name"].as_str().unwrap_or_default(),
        );
        let bound = snapshot.is_some_and(|s| {
            uid_of(&s) == snapshot_ref["uid"].as_str().unwrap_or_default() || snapshot_ref["uid"].is_null()
        });
        if bound {
            continue;
        }
        if is_deleting(&content) && has_finalizer(&content, CONTENT_BOUND) {
            if let Some(handle) = content["status"]["snapshotHandle"].as_str() {
                state.snapshot_data.remove(handle);
            }
            changed |= state.remove_finalizer(&keys::snapshot_contents(), &content, CONTENT_BOUND);
        } else if !is_deleting(&content)
            && content["spec"]["deletionPolicy"] == "Delete"
            && !snapshot_ref["uid"].is_null()
        {
            state.delete_object(&keys::snapshot_contents(), &content);
            changed = true;
        }
    }
    changed
}

/// The data a claim restored from `ns/name` starts with, or why it cannot be restored yet.
pub fn restorable(state: &State, ns: &str, name: &str) -> Result<SnapshotData, String> {
    let snapshot = state
        .get(&keys::snapshots(), ns, name)
        .ok_or_else(|| format!("volumesnapshots.snapshot.storage.k8s.io \"{name}\" not found"))?;
    if snapshot["status"]["readyToUse"] != true {
        return Err(format!("snapshot {name} is not Ready"));
    }
    let content_name = snapshot["status"]["boundVolumeSnapshotContentName"].as_str().unwrap_or_default();
    let content = state
        .get(&keys::snapshot_contents(), "", content_name)
        .ok_or_else(|| format!("volumesnapshotcontents.snapshot.storage.k8s.io \"{content_name}\" not found"))?;
    let handle = content["status"]["snapshotHandle"].as_str().unwrap_or_default();
    state.snapshot_data.get(handle).cloned().ok_or_else(|| format!("snapshot {handle} not found at the provider"))
}
