//! The JSON Schema of the plan format, generated from the Rust types.
//!
//! schemars describes a step entry as "common fields + any intent or action", but each
//! intent and action schema forbids extra properties, which would reject `id:` and
//! `after:` beside the kind key. So the entry schema is rebuilt here: one alternative
//! per kind, each listing the common fields plus its own key, so editors complete and
//! check entries exactly as `dr validate` decodes them.

use serde_json::{Map, Value, json};

use super::model::Plan;

/// Where the checked-in schema lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/drplan.schema.json";

/// The JSON Schema of a plan file, pretty-printed with a trailing newline.
pub fn plan_schema_json() -> String {
    let mut schema = serde_json::to_value(schemars::schema_for!(Plan)).expect("a schema always serializes");
    rebuild_step_entry(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}

fn rebuild_step_entry(schema: &mut Value) {
    let Some(defs) = schema.get_mut("$defs").and_then(Value::as_object_mut) else { return };
    let mut alternatives = Vec::new();
    for name in ["Intent", "Action"] {
        let Some(def) = defs.remove(name) else { continue };
        let variants = def.get("oneOf").and_then(Value::as_array).cloned().unwrap_or_default();
        alternatives.extend(variants.into_iter().filter_map(entry_alternative));
    }
    let Some(entry) = defs.get_mut("StepEntry").and_then(Value::as_object_mut) else { return };
    let description = entry.get("description").cloned().unwrap_or(Value::Null);
    *entry = json!({
        "description": description,
        "type": "object",
        "oneOf": alternatives,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
}

/// `{kind: params}` variant → `{id, after, description, kind: params}` alternative.
fn entry_alternative(variant: Value) -> Option<Value> {
    let properties = variant.get("properties")?.as_object()?;
    let (kind, params) = properties.iter().next()?;
    let mut all = Map::new();
    all.insert("id".into(), json!({"description": "Unique id, referenced by `after:`.", "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,63}$"}));
    all.insert(
        "after".into(),
        json!({
            "description": "Ids of steps (or intents) that must finish first.",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        }),
    );
    all.insert(
        "before".into(),
        json!({
            "description": "Ids of steps that must wait for this one (`intent-id/sub-step` slots it into an intent).",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        }),
    );
    all.insert("description".into(), json!({"type": "string"}));
    let mut params = params.clone();
    if let (Some(doc), Some(obj)) = (variant.get("description"), params.as_object_mut()) {
        obj.entry("description").or_insert(doc.clone());
    }
    all.insert(kind.clone(), params);
    Some(json!({
        "type": "object",
        "properties": all,
        "required": ["id", kind],
        "additionalProperties": false,
    }))
}
