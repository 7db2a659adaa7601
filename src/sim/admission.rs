//! Admission for built-in kinds: the defaults, finalizers and validation the real API
//! server (and its admission plugins) apply on create and update.

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Cause};
use super::quantity;
use super::registry::{ResourceType, keys};
use super::state::{State, name_of};

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Defaults and finalizers for a new object (mutating admission).
pub fn default_on_create(rt: &ResourceType, object: &mut Value) {
    match rt.kind.as_str() {
        "PersistentVolumeClaim" => {
            push_finalizer(object, PVC_PROTECTION);
            set_if_absent(object, "status", json!({ "phase": "Pending" }));
            set_if_absent(&mut object["spec"], "volumeMode", json!("Filesystem"));
        }
        "PersistentVolume" => {
            push_finalizer(object, PV_PROTECTION);
            set_if_absent(object, "status", json!({ "phase": "Pending" }));
            set_if_absent(&mut object["spec"], "persistentVolumeReclaimPolicy", json!("Retain"));
        }
        "Pod" => set_if_absent(object, "status", json!({ "phase": "Pending" })),
        "Namespace" => {
            set_if_absent(object, "status", json!({ "phase": "Active" }));
            set_if_absent(object, "spec", json!({}));
            set_if_absent(&mut object["spec"], "finalizers", json!(["kubernetes"]));
        }
        // apps/v1 defaults (pkg/apis/apps/v1/defaults.go): `kubectl rollout status` reads
        // the update strategy.
        "StatefulSet" => {
            set_if_absent(&mut object["spec"], "replicas", json!(1));
            set_if_absent(&mut object["spec"], "podManagementPolicy", json!("OrderedReady"));
            set_if_absent(&mut object["spec"], "updateStrategy", json!({ "type": "RollingUpdate" }));
            if object["spec"]["updateStrategy"]["type"] == "RollingUpdate" {
                set_if_absent(&mut object["spec"]["updateStrategy"], "rollingUpdate", json!({ "partition": 0 }));
            }
            set_if_absent(&mut object["spec"], "revisionHistoryLimit", json!(10));
        }
        "Deployment" => {
            set_if_absent(&mut object["spec"], "replicas", json!(1));
            let rolling =
                json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } });
            set_if_absent(&mut object["spec"], "strategy", rolling);
            set_if_absent(&mut object["spec"], "revisionHistoryLimit", json!(10));
            set_if_absent(&mut object["spec"], "progressDeadlineSeconds", json!(600));
        }
        "ReplicaSet" => set_if_absent(&mut object["spec"], "replicas", json!(1)),
        "StorageClass" => {
            set_if_absent(object, "reclaimPolicy", json!("Delete"));
            set_if_absent(object, "volumeBindingMode", json!("Immediate"));
        }
        _ => {}
    }
}

fn set_if_absent(object: &mut Value, key: &str, value: Value) {
    if object.is_object() && object.get(key).is_none_or(Value::is_null) {
        object[key] = value;
    }
}

fn push_finalizer(object: &mut Value, finalizer: &str) {
    let list = &mut object["metadata"]["finalizers"];
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|f| f == finalizer)
    {
        items.push(json!(finalizer));
    }
}

/// Validation of built-in kinds; `old` is set on update.
pub fn validate(state: &State, rt: &ResourceType, object: &Value, old: Option<&Value>) -> ApiResult<()> {
    let mut causes = validate_name(object);
    match rt.kind.as_str() {
        "PersistentVolumeClaim" => causes.extend(validate_pvc(object)),
        "PersistentVolume" if object["spec"]["capacity"]["storage"].is_null() => {
            causes.push(Cause::required("spec.capacity"));
        }
        "Pod" if object["spec"]["containers"].as_array().is_none_or(Vec::is_empty) => {
            causes.push(Cause::required("spec.containers"));
        }
        "StatefulSet" | "Deployment" | "ReplicaSet" => causes.extend(validate_workload(object)),
        "ConfigMap" => causes.extend(validate_config_map_size(object)),
        _ => {}
    }
    if let (Some(old), "PersistentVolumeClaim") = (old, rt.kind.as_str()) {
        causes.extend(validate_pvc_update(state, rt, object, old)?);
    }
    if let (Some(old), "StatefulSet") = (old, rt.kind.as_str()) {
        causes.extend(validate_statefulset_update(object, old));
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(&rt.group, &rt.kind, name_of(object), causes)) }
}

/// The API server's limit on a ConfigMap's data (keys included), as for Secrets.
const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

fn validate_config_map_size(object: &Value) -> Vec<Cause> {
    let size_of = |field: &str| -> usize {
        object[field].as_object().map_or(0, |entries| {
            entries.iter().map(|(key, value)| key.len() + value.as_str().map_or(0, str::len)).sum()
        })
    };
    // binaryData is sent base64-encoded; the limit counts the decoded bytes.
    let binary: usize = object["binaryData"].as_object().map_or(0, |entries| {
        entries.iter().map(|(key, value)| key.len() + value.as_str().map_or(0, |v| v.len() / 4 * 3)).sum()
    });
    if size_of("data") + binary > MAX_CONFIG_MAP_BYTES {
        return vec![Cause::new(
            "FieldValueTooLong",
            "[]",
            format!("Too long: must have at most {MAX_CONFIG_MAP_BYTES} bytes"),
        )];
    }
    Vec::new()
}

fn validate_name(object: &Value) -> Vec<Cause> {
    let name = name_of(object);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return Vec::new();
    }
    if name.is_empty() {
        return vec![Cause::required("metadata.name")];
    }
    vec![Cause::invalid(
        "metadata.name",
        &json!(name),
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    )]
}

fn validate_pvc(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &object["spec"];
    if spec["accessModes"].as_array().is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.accessModes"));
    }
    match spec["resources"]["requests"]["storage"].as_str() {
        None => causes.push(Cause::required("spec.resources[storage]")),
        Some(text) if quantity::parse(text).is_none() => causes.push(Cause::invalid(
            "spec.resources.requests[storage]",
            &json!(text),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )),
        Some(_) => {}
    }
    causes
}

/// Requested storage of a claim in bytes (0 when absent or malformed).
pub fn requested_bytes(pvc: &Value) -> u128 {
    pvc["spec"]["resources"]["requests"]["storage"].as_str().and_then(quantity::parse).unwrap_or(0)
}

/// The real API server only lets bound claims change their requested size, and only upwards;
/// growing needs a StorageClass with `allowVolumeExpansion` (the admission plugin answers 403).
fn validate_pvc_update(state: &State, rt: &ResourceType, new: &Value, old: &Value) -> ApiResult<Vec<Cause>> {
    let mut causes = Vec::new();
    let (new_size, old_size) = (requested_bytes(new), requested_bytes(old));
    if new_size < old_size {
        causes.push(Cause::forbidden("spec.resources.requests.storage", "field can not be less than previous value"));
    }
    let mut new_spec = new["spec"].clone();
    let mut old_spec = old["spec"].clone();
    for spec in [&mut new_spec, &mut old_spec] {
        spec["resources"]["requests"] = Value::Null;
        spec["volumeAttributesClassName"] = Value::Null;
        if old["spec"]["volumeName"].is_null() {
            spec["volumeName"] = Value::Null;
        }
    }
    if new_spec != old_spec {
        causes.push(Cause::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    if new_size > old_size && causes.is_empty() {
        let class = new["spec"]["storageClassName"].as_str().unwrap_or_default();
        let expandable =
            state.get(&keys::storage_classes(), "", class).is_some_and(|sc| sc["allowVolumeExpansion"] == true);
        if !expandable {
            return Err(ApiError::forbidden(
                &rt.group,
                &rt.plural,
                name_of(new),
                "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            ));
        }
    }
    Ok(causes)
}

fn validate_workload(object: &Value) -> Vec<Cause> {
    let spec = &object["spec"];
    let mut causes = Vec::new();
    if spec["selector"].is_null() {
        causes.push(Cause::required("spec.selector"));
        return causes;
    }
    let selector = super::selector::Selector::from_label_selector(&spec["selector"]);
    if !selector.matches_labels(&spec["template"]) {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            &spec["template"]["metadata"]["labels"],
            "`selector` does not match template `labels`",
        ));
    }
    if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
        causes.push(Cause::invalid("spec.replicas", &spec["replicas"], "must be greater than or equal to 0"));
    }
    causes
}

fn validate_statefulset_update(new: &Value, old: &Value) -> Vec<Cause> {
    const MUTABLE: [&str; 6] = [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let strip = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(map) = spec.as_object_mut() {
            map.retain(|k, _| !MUTABLE.contains(&k.as_str()));
        }
        spec
    };
    if strip(&new["spec"]) == strip(&old["spec"]) {
        return Vec::new();
    }
    vec![Cause::forbidden(
        "spec",
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}
