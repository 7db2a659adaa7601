//! A small, deterministic YAML emitter for showing objects in diffs.
//!
//! Only for display: block style, keys in JSON order, strings quoted when YAML would
//! read them as something else. Reading YAML never goes through here.

use std::fmt::Write as _;

use serde_json::Value;

/// Renders a JSON value as a YAML document (no `---`), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(&mut out, value);
    out
}

/// [`to_yaml`] appended to `out`, so one buffer serves many documents.
pub fn write_yaml(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) if !map.is_empty() => write_map(out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(out, items, 0),
        scalar => {
            write_scalar(out, scalar);
            out.push('\n');
        }
    }
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n("  ", level));
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (key, value) in map {
        indent(out, level);
        write_str(out, key);
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
                    write_str(out, key);
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
            write_scalar(out, scalar);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => drop(write!(out, "{n}")),
        Value::String(s) => write_str(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// Writes a string, quoted if a YAML reader would otherwise take it for another type or
/// syntax.
fn write_str(out: &mut String, s: &str) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn plain_is_safe(s: &str) -> bool {
    const WORDS: [&str; 10] = ["null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"];
    if s.is_empty() || WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        return false;
    }
    if may_be_number(s) && s.parse::<f64>().is_ok() {
        return false;
    }
    if s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c)) || s.ends_with(' ') {
        return false;
    }
    // One pass for `: `, ` #` and newlines (three searches showed up in profiles).
    let bytes = s.as_bytes();
    !bytes.iter().enumerate().any(|(i, &b)| {
        let next = bytes.get(i + 1);
        b == b'\n' || (b == b':' && next == Some(&b' ')) || (b == b' ' && next == Some(&b'#'))
    })
}

/// Whether `s` could parse as a float: after an optional sign, a float starts with a
/// digit, a point, `inf` or `nan`. Most strings (names, labels) fail this at once, and
/// the full parse showed up in profiles.
fn may_be_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    unsigned.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '.' | 'i' | 'I' | 'n' | 'N'))
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

    #[test]
    fn quotes_exactly_what_a_full_float_parse_would() {
        let samples = [
            "1",
            "1.5",
            ".5",
            "5.",
            "+1",
            "-1",
            "+.5",
            "1e5",
            "1E-3",
            "e5",
            "inf",
            "-inf",
            "+Infinity",
            "INF",
            "nan",
            "NaN",
            "-nan",
            "i",
            "n",
            "N",
            "no",
            "Yes",
            "~",
            "",
            " a",
            "a ",
            "a: b",
            "x #y",
            "4Gi",
            "0x10",
            "1_000",
            "infinite",
            "name",
            "null",
            "data-db-0-0",
            "2Gi",
            "ReadWriteOnce",
            "a:b",
            "a:",
            "a: ",
            "#a",
            "a#",
            "a #",
            "a\nb",
            "a\n",
            "ab:  c",
            "true ",
            "FALSE",
            "Off",
            "yES",
        ];
        for s in samples {
            let reference = !s.is_empty()
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
            assert_eq!(plain_is_safe(s), reference, "{s:?}");
        }
    }
}
