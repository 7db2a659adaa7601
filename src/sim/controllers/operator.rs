//! An operator-like reconciler: a StatefulSet whose controller owner reference names a
//! custom resource (a Strimzi `Kafka`, a CloudNativePG `Cluster`, ...) is kept at the
//! replicas that resource asks for (`spec.replicas`, `spec.kafka.replicas` or
//! `spec.instances`): scaled back once a change has lasted `revert_after`.
//!
//! It stands still, as the real operators do, while the resource says so:
//! `strimzi.io/pause-reconciliation: "true"`, `cnpg.io/reconciliationLoop: disabled`,
//! `cnpg.io/hibernation: "on"` or `sim.drplan.dev/pause-reconciliation: "true"`; and while
//! the operator's own Deployment, named by `sim.drplan.dev/operator-deployment: NAME` on
//! the resource (same namespace), has no ready replica.
//!
//! The time drift was first seen is kept in the resource's `status.driftDetectedAt`.

use serde_json::{Value, json};

use crate::sim::api::Subresource;
use crate::sim::clock::{after, format_time, parse_time};
use crate::sim::registry::keys;
use crate::sim::state::{State, is_deleting, name_of, namespace_of, uid_of};

/// Annotations (and values) with which an operator stops reconciling its resource.
pub const PAUSE_ANNOTATIONS: [(&str, &str); 4] = [
    ("strimzi.io/pause-reconciliation", "true"),
    ("cnpg.io/reconciliationLoop", "disabled"),
    ("cnpg.io/hibernation", "on"),
    ("sim.drplan.dev/pause-reconciliation", "true"),
];
/// Names the operator's Deployment on the custom resource.
pub const OPERATOR_DEPLOYMENT: &str = "sim.drplan.dev/operator-deployment";

pub fn reconcile(state: &mut State) -> bool {
    let mut changed = false;
    for sts in state.all(&keys::statefulsets()) {
        if is_deleting(&sts) {
            continue;
        }
        let Some(owner) = custom_owner(state, &sts) else { continue };
        if is_paused(&owner) || !operator_running(state, &owner) {
            continue;
        }
        let Some(wanted) = wanted_replicas(&owner) else { continue };
        changed |= keep_replicas(state, &owner, &sts, wanted);
    }
    changed
}

/// The custom resource that controls the StatefulSet, if any.
fn custom_owner(state: &State, sts: &Value) -> Option<Value> {
    let references = sts["metadata"]["ownerReferences"].as_array()?;
    let reference = references.iter().find(|r| r["controller"] == true)?;
    let api_version = reference["apiVersion"].as_str()?;
    if !api_version.contains('/') || api_version.starts_with("apps/") {
        return None;
    }
    let rt = state.registry.by_kind(api_version, reference["kind"].as_str()?)?;
    let owner = state.get(&rt.key(), namespace_of(sts), reference["name"].as_str()?)?;
    (uid_of(&owner) == reference["uid"].as_str().unwrap_or(uid_of(&owner))).then(|| (*owner).clone())
}

pub fn is_paused(owner: &Value) -> bool {
    let annotations = &owner["metadata"]["annotations"];
    PAUSE_ANNOTATIONS.iter().any(|(key, value)| annotations[*key] == *value)
}

fn operator_running(state: &State, owner: &Value) -> bool {
    let Some(name) = owner["metadata"]["annotations"][OPERATOR_DEPLOYMENT].as_str() else {
        return true;
    };
    let (ns, name) = name.split_once('/').unwrap_or((namespace_of(owner), name));
    state
        .get(&keys::deployments(), ns, name)
        .is_some_and(|d| d["spec"]["replicas"].as_u64() != Some(0) && d["status"]["readyReplicas"].as_u64() > Some(0))
}

fn wanted_replicas(owner: &Value) -> Option<u64> {
    let spec = &owner["spec"];
    spec["replicas"].as_u64().or(spec["kafka"]["replicas"].as_u64()).or(spec["instances"].as_u64())
}

fn keep_replicas(state: &mut State, owner: &Value, sts: &Value, wanted: u64) -> bool {
    let key = owner_key(state, owner);
    if sts["spec"]["replicas"].as_u64() == Some(wanted) {
        let mut settled = owner.clone();
        if let Some(status) = settled["status"].as_object_mut() {
            status.remove("driftDetectedAt");
        }
        return key.is_some_and(|key| state.save_if_changed(&key, owner, settled));
    }
    let since = owner["status"]["driftDetectedAt"].as_str().and_then(parse_time).unwrap_or_else(|| state.now());
    let due = after(since, super::gitops::revert_delay(state, owner));
    if state.now() < due {
        state.wake_at(due);
        let mut noted = owner.clone();
        noted["status"]["driftDetectedAt"] = json!(format_time(since));
        return key.is_some_and(|key| state.save_if_changed(&key, owner, noted));
    }
    let Some(rt) = state.registry.get(&keys::statefulsets()).cloned() else { return false };
    let mut scaled = sts.clone();
    scaled["spec"]["replicas"] = json!(wanted);
    let (ns, name) = (namespace_of(sts).to_string(), name_of(sts).to_string());
    let result = state.update_object(&rt, &ns, &name, scaled, Subresource::Main);
    let message = match &result {
        Ok(_) => format!("scaled StatefulSet {ns}/{name} back to {wanted} replicas"),
        Err(e) => format!("scaling StatefulSet {ns}/{name}: {}", e.message),
    };
    state.record_event(owner, result.is_err(), "Reconciled", &message, "operator");
    result.is_ok()
}

fn owner_key(state: &State, owner: &Value) -> Option<crate::sim::registry::ResourceKey> {
    let api_version = owner["apiVersion"].as_str()?;
    Some(state.registry.by_kind(api_version, owner["kind"].as_str()?)?.key())
}
