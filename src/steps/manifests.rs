//! The objects steps create, built in one place so `dr plan` shows exactly what
//! `dr apply` will send.

use serde_json::{Value, json};

use super::{RestorePvcParams, SnapshotPvcParams, StaticPvParams};

/// Label on everything drplan creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "drplan");
/// Label naming the run that created an object (adoption and rollback match on it).
pub const RUN_LABEL: &str = "drplan.dev/run";
/// Annotation naming the step that created an object.
pub const STEP_ANNOTATION: &str = "drplan.dev/step";

/// Labels and annotations marking an object as made by a run and step.
pub fn ownership(run_label: &str, step_id: &str) -> Value {
    json!({
        "labels": { MANAGED_BY.0: MANAGED_BY.1, RUN_LABEL: run_label },
        "annotations": { STEP_ANNOTATION: step_id },
    })
}

/// The API resource of an `apiVersion` and `kind` (plural guessed from the kind).
pub fn api_resource(api_version: &str, kind: &str) -> kube::core::ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(group, version, kind))
}

fn with_ownership(mut object: Value, ownership: &Value) -> Value {
    let meta = &mut object["metadata"];
    for part in ["labels", "annotations"] {
        let mut merged = meta.get(part).cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
        for (k, v) in ownership[part].as_object().into_iter().flatten() {
            merged[k] = v.clone();
        }
        meta[part] = merged;
    }
    object
}

/// Substitutes `{claim}` and `{run}` in a name template.
pub fn expand_name(template: &str, claim: &str, run_token: &str) -> String {
    template.replace("{claim}", claim).replace("{run}", run_token)
}

pub fn volume_snapshot(namespace: &str, p: &SnapshotPvcParams, run_token: &str, ownership: &Value) -> Value {
    let name = expand_name(&p.snapshot_name, &p.claim.value, run_token);
    with_ownership(
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": { "name": name, "namespace": namespace },
            "spec": {
                "volumeSnapshotClassName": p.snapshot_class,
                "source": { "persistentVolumeClaimName": p.claim.value },
            },
        }),
        ownership,
    )
}

/// The claim recreated from a snapshot: the old claim's labels, access modes and class
/// (unless overridden), the requested size, and the snapshot as data source.
pub fn restored_claim(
    namespace: &str,
    p: &RestorePvcParams,
    before: &Value,
    run_token: &str,
    ownership: &Value,
) -> Result<Value, String> {
    let claim = &p.claim.value;
    let snapshot = expand_name(&p.snapshot, claim, run_token);
    let size = match &p.size {
        Some(size) => size.value.to_string(),
        None => before
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| format!("no size for restored claim {claim}: give `size` or restore after deletePvc"))?,
    };
    let storage_class = p
        .storage_class
        .clone()
        .or_else(|| before.pointer("/spec/storageClassName").and_then(Value::as_str).map(String::from));
    let claim_object = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": claim, "namespace": namespace, "labels": before.pointer("/metadata/labels").cloned().unwrap_or(json!({})) },
        "spec": {
            "accessModes": before.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "storageClassName": storage_class,
            "resources": { "requests": { "storage": size } },
            "dataSource": { "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot },
        },
    });
    Ok(with_ownership(claim_object, ownership))
}

/// A static PV for an existing disk: Retain, claimRef to the claim, zone node affinity.
pub fn static_volume(namespace: &str, p: &StaticPvParams, ownership: &Value) -> Value {
    let v = &p.volume.value;
    let mut spec = json!({
        "capacity": { "storage": v.size.value.to_string() },
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": p.storage_class.clone().unwrap_or_default(),
        "claimRef": { "namespace": namespace, "name": p.claim },
        // A volume another step creates is named by that step until it runs (the runner
        // fills in the id it captured).
        "csi": { "driver": v.driver, "volumeHandle": if v.volume_handle.is_empty() { v.handle_text() } else { v.volume_handle.clone() } },
    });
    if let Some(fs) = &v.fs_type {
        spec["csi"]["fsType"] = json!(fs);
    }
    if let Some(zone) = &v.zone {
        spec["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [
            { "matchExpressions": [ { "key": v.zone_label(), "operator": "In", "values": [zone] } ] }
        ] } });
    }
    with_ownership(
        json!({ "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": p.pv_name }, "spec": spec }),
        ownership,
    )
}

/// The claim bound to a static PV by `volumeName`.
pub fn static_claim(namespace: &str, p: &StaticPvParams, ownership: &Value) -> Value {
    with_ownership(
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": p.claim, "namespace": namespace },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": p.storage_class.clone().unwrap_or_default(),
                "volumeName": p.pv_name,
                "resources": { "requests": { "storage": p.volume.value.size.value.to_string() } },
            },
        }),
        ownership,
    )
}

/// Drops server-managed fields so a captured manifest can be shown or recreated.
pub fn clean_manifest(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"] {
            meta.remove(field);
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    if let Some(obj) = object.as_object_mut() {
        obj.remove("status");
    }
    object
}
