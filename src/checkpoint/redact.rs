//! Secret redaction: checkpoints outlive the run and get copied around, so Secret
//! values must never be written into them.

use serde_json::{Map, Value};

use super::record::RunRecord;

/// The annotation `kubectl apply` leaves on objects: a full copy of the object, data included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `run` as JSON with Secret data removed from the plan and from everything steps
/// captured: what every store writes. Redacted in the JSON rather than in a copy of the
/// record (a fleet's record held twice was most of the peak memory of a compaction).
pub(super) fn value_without_secrets(run: &RunRecord) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(run)?;
    redact_secrets(&mut value["plan"]);
    if let Some(steps) = value.get_mut("steps").and_then(Value::as_object_mut) {
        for step in steps.values_mut() {
            if let Some(captured) = step.get_mut("captured").and_then(Value::as_object_mut) {
                captured.values_mut().for_each(redact_secrets);
            }
        }
    }
    Ok(value)
}

/// Removes the values of every Secret embedded anywhere in `value`: `data` and
/// `stringData` of any object with `kind: Secret`, the items of a `SecretList` (whose
/// items carry no `kind`), and the last-applied annotation that would repeat them.
pub fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(object) => {
            match object.get("kind").and_then(Value::as_str) {
                Some("Secret") => redact_secret(object),
                Some("SecretList") => redact_secret_list(object),
                _ => {}
            }
            object.values_mut().for_each(redact_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

fn redact_secret(secret: &mut Map<String, Value>) {
    secret.remove("data");
    secret.remove("stringData");
    let annotations = secret.get_mut("metadata").and_then(|m| m.get_mut("annotations")).and_then(Value::as_object_mut);
    if let Some(annotations) = annotations {
        annotations.remove(LAST_APPLIED);
    }
}

fn redact_secret_list(list: &mut Map<String, Value>) {
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else { return };
    for item in items.iter_mut().filter_map(Value::as_object_mut) {
        redact_secret(item);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redacting_the_json_writes_what_redacting_a_copy_of_the_record_wrote() {
        let secret = json!({"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}});
        let mut run = RunRecord::new(
            "p",
            String::new(),
            String::new(),
            crate::checkpoint::RunMode::Apply,
            json!({"objects": [secret.clone()]}),
        );
        let mut step = crate::checkpoint::StepRecord::default();
        step.captured.insert("manifest".into(), secret);
        step.captured.insert("replicas".into(), json!(3));
        run.steps.insert("save".into(), step);
        run.steps.insert("idle".into(), crate::checkpoint::StepRecord::default());
        let redacted = value_without_secrets(&run).unwrap();
        // What redacting a copy of the record gives.
        let mut copy = run.clone();
        redact_secrets(&mut copy.plan);
        copy.steps.values_mut().for_each(|s| s.captured.values_mut().for_each(redact_secrets));
        assert_eq!(redacted, serde_json::to_value(copy).unwrap());
        assert!(!redacted.to_string().contains("aHVudGVyMg=="), "{redacted}");
    }

    #[test]
    fn removes_data_of_nested_secrets_and_keeps_everything_else() {
        let mut value = json!({
            "manifests": [
                {"kind": "ConfigMap", "data": {"keep": "me"}},
                {"kind": "Secret", "metadata": {"name": "db", "annotations": {
                    LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}", "team": "db"}},
                 "type": "Opaque", "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "root"}},
            ],
            "deep": {"objects": {"kind": "List", "items": [{"kind": "Secret", "data": {"k": "v"}}]}},
        });
        redact_secrets(&mut value);
        assert_eq!(
            value,
            json!({
                "manifests": [
                    {"kind": "ConfigMap", "data": {"keep": "me"}},
                    {"kind": "Secret", "metadata": {"name": "db", "annotations": {"team": "db"}}, "type": "Opaque"},
                ],
                "deep": {"objects": {"kind": "List", "items": [{"kind": "Secret"}]}},
            })
        );
    }

    #[test]
    fn removes_data_of_secret_list_items_without_kind() {
        let mut value = json!({"kind": "SecretList", "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}]});
        redact_secrets(&mut value);
        assert_eq!(value, json!({"kind": "SecretList", "items": [{"metadata": {"name": "a"}}]}));
    }

    #[test]
    fn leaves_values_without_secrets_alone() {
        let original = json!({"kind": "StatefulSet", "spec": {"replicas": 3}, "data": [1, "Secret"]});
        let mut value = original.clone();
        redact_secrets(&mut value);
        assert_eq!(value, original);
    }
}
