//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and the subset of
//! strategic merge patch that kubectl and drplan send (lists merged by their merge key,
//! `$patch` and `$setElementOrder` directives).

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// How the body of a PATCH is to be applied, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    /// Server-side apply; treated like a merge patch (field ownership is not tracked).
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> ApiResult<PatchKind> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies `patch` to `target`, returning the patched object.
pub fn apply(kind: PatchKind, target: &Value, patch: &Value) -> ApiResult<Value> {
    let mut doc = target.clone();
    match kind {
        PatchKind::Merge | PatchKind::Apply => json_patch::merge(&mut doc, patch),
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                let mut err = ApiError::invalid("", "", "", Vec::new());
                err.code = 422;
                err.message = format!("the server rejected our request due to an error in our request: {e}");
                err.details = None;
                err
            })?;
        }
        PatchKind::Strategic => strategic_merge(&mut doc, patch, ""),
    }
    Ok(doc)
}

/// The merge key of lists that strategic merge patch merges element-wise, by field name.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "volumeClaimTemplates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "hostAliases" => "ip",
        _ => return None,
    })
}

/// Lists of scalars that strategic merge patch unions instead of replacing.
fn is_merged_scalar_list(field: &str) -> bool {
    field == "finalizers"
}

fn strategic_merge(doc: &mut Value, patch: &Value, field: &str) {
    let Some(patch_map) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch_map.clone();
        replacement.remove("$patch");
        *doc = Value::Object(replacement);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let doc_map = doc.as_object_mut().expect("just made an object");
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue; // directives such as $setElementOrder/containers and $retainKeys
        }
        if value.is_null() {
            doc_map.remove(key);
            continue;
        }
        let _ = field;
        match (doc_map.get_mut(key), value) {
            (Some(existing @ Value::Array(_)), Value::Array(items)) => merge_list(existing, items, key),
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic_merge(existing, value, key),
            _ => {
                let mut fresh = Value::Null;
                strategic_merge_into_new(&mut fresh, value, key);
                doc_map.insert(key.clone(), fresh);
            }
        }
    }
}

/// A value with no counterpart in the target: still strip directives from it.
fn strategic_merge_into_new(slot: &mut Value, value: &Value, field: &str) {
    match value {
        Value::Object(_) => strategic_merge(slot, value, field),
        Value::Array(items) => {
            *slot = Value::Array(items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect())
        }
        other => *slot = other.clone(),
    }
}

fn merge_list(existing: &mut Value, items: &[Value], field: &str) {
    let Some(current) = existing.as_array_mut() else {
        return;
    };
    if is_merged_scalar_list(field) {
        for item in items {
            if !current.contains(item) {
                current.push(item.clone());
            }
        }
        return;
    }
    let Some(key) = merge_key(field) else {
        *current = items.to_vec();
        return;
    };
    for item in items {
        let id = &item[key];
        let position = current.iter().position(|c| &c[key] == id && !id.is_null());
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (Some(i), false) => strategic_merge(&mut current[i], item, field),
            (None, false) => {
                let mut fresh = Value::Null;
                strategic_merge_into_new(&mut fresh, item, field);
                current.push(fresh);
            }
            (None, true) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_replaces_other_lists() {
        let target = json!({"spec": {"replicas": 1, "args": ["a"], "containers": [{"name": "app", "image": "v1"}, {"name": "side", "image": "s"}]}});
        let patch = json!({"$setElementOrder/containers": [{"name": "app"}], "spec": {"args": ["b"], "containers": [{"name": "app", "image": "v2"}, {"name": "side", "$patch": "delete"}]}});
        let patched = apply(PatchKind::Strategic, &target, &patch).unwrap();
        assert_eq!(patched["spec"]["containers"], json!([{"name": "app", "image": "v2"}]));
        assert_eq!(patched["spec"]["args"], json!(["b"]));
        assert_eq!(patched["spec"]["replicas"], 1);
        assert!(patched.get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn json_patch_and_merge_patch() {
        let target = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 3}});
        let merged = apply(PatchKind::Merge, &target, &json!({"metadata": {"labels": {"a": null, "b": "2"}}})).unwrap();
        assert_eq!(merged["metadata"]["labels"], json!({"b": "2"}));
        let ops = json!([{"op": "replace", "path": "/spec/replicas", "value": 0}]);
        assert_eq!(apply(PatchKind::Json, &target, &ops).unwrap()["spec"]["replicas"], 0);
        let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 9}]);
        assert_eq!(apply(PatchKind::Json, &target, &failing).unwrap_err().code, 422);
        assert_eq!(PatchKind::from_content_type("text/plain").unwrap_err().code, 415);
    }
}
