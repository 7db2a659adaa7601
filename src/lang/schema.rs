//! The JSON Schema of the plan format, generated from the Rust types.

use super::model::Plan;

/// Where the checked-in schema lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/drplan.schema.json";

/// The JSON Schema of a plan file, pretty-printed with a trailing newline.
pub fn plan_schema_json() -> String {
    let schema = schemars::schema_for!(Plan);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}
