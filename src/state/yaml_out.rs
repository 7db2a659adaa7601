//! A small, deterministic YAML emitter for showing objects in diffs.
//!
//! Only for display: block style, keys in JSON order, strings quoted when YAML would
//! read them as something else. Reading YAML never goes through here.

use serde_json::Value;

/// Renders a JSON value as a YAML document (no `---`), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n("  ", level));
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (key, value) in map {
        indent(out, level);
        out.push_str(&quote_if_needed(key));
        out.push(':');
        write_value(out, value, level);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key goes on the dash's line, the rest aligned under it.
                let mut first = true;
                for (key, value) in map {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(out, level + 1);
                    }
                    out.push_str(&quote_if_needed(key));
                    out.push(':');
                    write_value(out, value, level + 1);
                }
            }
            other => write_value(out, other, level),
        }
    }
}

fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, level + 1);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level + 1);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote_if_needed(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Quotes strings a YAML reader would otherwise take for another type or syntax.
fn quote_if_needed(s: &str) -> String {
    let plain_is_safe = !s.is_empty()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
        && s.parse::<f64>().is_err()
        && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains('\n');
    if plain_is_safe { s.to_string() } else { serde_json::to_string(s).unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::yaml::{Limits, parse_str};
    use serde_json::json;

    #[test]
    fn round_trips_through_the_parser() {
        let value = json!({
            "apiVersion": "v1",
            "metadata": {"name": "data-0", "labels": {"app": "db", "version": "1"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "4Gi"}},
                     "containers": [{"name": "a", "args": ["--x", "true", ""]}], "empty": {}, "none": null, "n": 3},
            "odd": "a: b", "hash": "x #y", "lead": "-dash"
        });
        let text = to_yaml(&value);
        let parsed = parse_str("t.yaml", &text, Limits::MANIFEST).unwrap().documents.remove(0).to_json();
        assert_eq!(parsed, value, "{text}");
    }
}
