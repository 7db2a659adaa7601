//! Validation of custom-resource objects by their CRD's `openAPIV3Schema`: the structural
//! subset CRDs use (types, required, enum, lengths, bounds, items, oneOf), pruning of unknown
//! fields, and the `x-kubernetes-validations` CEL rules, evaluated by the `kube-cel` crate.

use serde_json::Value;

use super::error::Cause;

/// Validates `object` (pruned in place) against `schema`; `old` enables CEL transition rules.
pub fn validate(schema: &Value, object: &mut Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(map) = object.as_object_mut() {
        for (key, value) in map.iter_mut() {
            // The API server owns apiVersion/kind/metadata; the schema describes the rest.
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema["properties"].get(key) {
                Some(child) => check(child, value, key, &mut causes),
                None if preserves_unknown(schema) => {}
                None => {}
            }
        }
        if !preserves_unknown(schema) {
            let known = schema["properties"].as_object();
            map.retain(|k, _| {
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || known.is_some_and(|p| p.contains_key(k))
            });
        }
    }
    check_required(schema, object, "", &mut causes);
    if causes.is_empty() {
        causes.extend(cel_causes(schema, object, old));
    }
    causes
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Checks one value against its schema node, pruning unknown object fields.
fn check(schema: &Value, value: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if !type_matches(schema, value) {
        let expected = schema["type"].as_str().unwrap_or("object");
        let got = json_type(value);
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!("Invalid value: \"{got}\": {path} in body must be of type {expected}: \"{got}\""),
        ));
        return;
    }
    check_enum(schema, value, path, causes);
    check_bounds(schema, value, path, causes);
    check_one_of(schema, value, path, causes);
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map.iter_mut() {
                if let Some(child_schema) = props.and_then(|p| p.get(key)).or(additional) {
                    check(child_schema, child, &join(path, key), causes);
                }
            }
            if props.is_some() && additional.is_none() && !preserves_unknown(schema) {
                map.retain(|k, _| props.is_some_and(|p| p.contains_key(k)));
            }
            check_required(schema, value, path, causes);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    if schema["x-kubernetes-int-or-string"] == true {
        return value.is_string() || value.is_i64() || value.is_u64();
    }
    match schema["type"].as_str() {
        None => true,
        Some("number") => value.is_number(),
        Some(expected) => json_type(value) == expected,
    }
}

fn check_required(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    for field in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if value.get(field).is_none() {
            causes.push(Cause::required(join(path, field)));
        }
    }
}

fn check_enum(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!("Unsupported value: {value}: supported values: {}", listed.join(", ")),
        ));
    }
}

fn check_bounds(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Value::String(s) = value {
        let length = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64().filter(|max| length > *max) {
            causes.push(Cause::new("FieldValueTooLong", path, format!("Too long: may not be more than {max} bytes")));
        }
        if let Some(min) = schema["minLength"].as_u64().filter(|min| length < *min) {
            causes.push(Cause::invalid(path, value, &format!("{path} in body should be at least {min} chars long")));
        }
        if schema["format"] == "date-time" && jiff::Timestamp::from_str_loose(s).is_none() {
            causes.push(Cause::invalid(path, value, &format!("{path} in body must be of type date-time")));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64().filter(|min| n < *min) {
            causes.push(Cause::invalid(
                path,
                value,
                &format!("{path} in body should be greater than or equal to {min}"),
            ));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|max| n > *max) {
            causes.push(Cause::invalid(path, value, &format!("{path} in body should be less than or equal to {max}")));
        }
    }
}

fn check_one_of(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(branches) = schema["oneOf"].as_array() else {
        return;
    };
    let matching = branches
        .iter()
        .filter(|branch| {
            let mut probe = value.clone();
            let mut branch_causes = Vec::new();
            check(branch, &mut probe, path, &mut branch_causes);
            branch_causes.is_empty()
        })
        .count();
    if matching != 1 {
        causes.push(Cause::invalid(path, value, "must validate one and only one schema (oneOf)"));
    }
}

/// Helper so `format: date-time` accepts what the API server accepts (RFC 3339).
trait LooseTimestamp {
    fn from_str_loose(text: &str) -> Option<jiff::Timestamp>;
}

impl LooseTimestamp for jiff::Timestamp {
    fn from_str_loose(text: &str) -> Option<jiff::Timestamp> {
        text.parse().ok()
    }
}

/// Evaluates the `x-kubernetes-validations` rules; failures become `FieldValueInvalid` causes
/// carrying the rule's message, as the API server reports them.
fn cel_causes(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    match kube_cel::validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                let field = e.field_path.trim_start_matches('.').to_string();
                let value = field.split('.').filter(|s| !s.is_empty()).fold(object, |v, k| &v[k]);
                let reason = e.reason.clone().unwrap_or_else(|| "FieldValueInvalid".into());
                let mut cause = Cause::invalid(field, value, &e.message);
                cause.reason = reason;
                cause
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "mode": {"type": "string", "enum": ["Delete", "Retain"]},
                        "name": {"type": "string", "maxLength": 3}
                    },
                    "x-kubernetes-validations": [{"rule": "self.size < 10", "message": "size must be small"}]
                }
            }
        })
    }

    #[test]
    fn structural_errors_are_reported_by_field() {
        let mut object = json!({"spec": {"size": "big", "mode": "Keep", "name": "toolong"}});
        let causes = validate(&schema(), &mut object, None);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.mode", "spec.name", "spec.size"]);
        let mut missing = json!({"metadata": {"name": "x"}});
        assert_eq!(validate(&schema(), &mut missing, None)[0].field, "spec");
    }

    #[test]
    fn unknown_fields_are_pruned_and_cel_rules_run() {
        let mut object = json!({"metadata": {"name": "x"}, "spec": {"size": 20, "extra": 1}, "junk": true});
        let causes = validate(&schema(), &mut object, None);
        assert!(object.get("junk").is_none() && object["spec"].get("extra").is_none());
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.contains("size must be small"), "{causes:?}");
        assert_eq!(causes[0].field, "spec");
    }
}
