//! The `run.json` envelope: a [`RunRecord`] plus a `checksum` field over its canonical
//! JSON (and `journalSeq`, the last journal line it contains), and the checks that turn
//! a damaged or alien file into an error instead of a run.

use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::record::{FORMAT_VERSION, RunRecord};
use super::store::StoreError;

const CHECKSUM_FIELD: &str = "checksum";
const CHECKSUM_PREFIX: &str = "sha256:";
const JOURNAL_SEQ_FIELD: &str = "journalSeq";
const KIND: &str = "DrplanRun";
/// Version 1 files predate the journal; they read as a base with nothing journaled.
const OLDEST_READABLE_FORMAT: u32 = 1;

/// The bytes of `run.json` for a record turned into JSON, which contains journal lines
/// up to `journal_seq`: pretty JSON with an embedded checksum.
pub(super) fn seal_value(value: Value, journal_seq: u64) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec_pretty(&stamped(value, journal_seq))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A record's JSON with `journalSeq` and the checksum added; [`seal_value`] without the layout.
pub(super) fn stamped(mut value: Value, journal_seq: u64) -> Value {
    if let Value::Object(object) = &mut value {
        object.insert(JOURNAL_SEQ_FIELD.to_string(), Value::from(journal_seq));
    }
    let checksum = checksum_of(&value);
    if let Value::Object(object) = &mut value {
        object.insert(CHECKSUM_FIELD.to_string(), Value::String(checksum));
    }
    value
}

/// The record in `bytes` read from `path`, if the file is a whole, unaltered drplan run,
/// and the last journal line it contains.
///
/// Markers are checked before the checksum: a file of another kind or a newer format
/// is [`StoreError::Foreign`] (it may be fine, just not ours to read), while a drplan
/// file that fails its checksum is [`StoreError::Corrupt`].
pub(super) fn unseal(path: &Path, bytes: &[u8]) -> Result<(RunRecord, u64), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_path_buf(), reason };
    let foreign = |reason: String| StoreError::Foreign { path: path.to_path_buf(), reason };

    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            corrupt(format!("the file is truncated ({e})"))
        } else {
            corrupt(format!("not valid JSON ({e})"))
        }
    })?;
    let Value::Object(mut object) = value else {
        return Err(foreign("not a JSON object".into()));
    };
    check_markers(&object).map_err(foreign)?;
    verify_checksum(&mut object).map_err(corrupt)?;
    let journal_seq = match object.remove(JOURNAL_SEQ_FIELD) {
        None => 0,
        Some(seq) => seq.as_u64().ok_or_else(|| corrupt("journalSeq is not a number".into()))?,
    };
    let record = serde_json::from_value(Value::Object(object))
        .map_err(|e| corrupt(format!("does not match the run layout ({e})")))?;
    Ok((record, journal_seq))
}

/// Removes the `checksum` field of `object` and checks it against the rest.
pub(super) fn verify_checksum(object: &mut Map<String, Value>) -> Result<(), String> {
    let stored = match object.remove(CHECKSUM_FIELD) {
        Some(Value::String(stored)) => stored,
        Some(_) => return Err("the checksum is not a string".into()),
        None => return Err("the checksum is missing".into()),
    };
    let computed = checksum_of_object(object);
    if stored != computed {
        return Err(format!("checksum mismatch: the file says {stored}, its content hashes to {computed}"));
    }
    Ok(())
}

fn check_markers(object: &Map<String, Value>) -> Result<(), String> {
    match object.get("kind") {
        Some(Value::String(kind)) if kind == KIND => {}
        Some(other) => return Err(format!("kind is {other}, not \"{KIND}\"")),
        None => return Err(format!("no \"kind\" field; a drplan run has kind \"{KIND}\"")),
    }
    match object.get("format").and_then(Value::as_u64) {
        Some(format) if (u64::from(OLDEST_READABLE_FORMAT)..=u64::from(FORMAT_VERSION)).contains(&format) => Ok(()),
        Some(format) => {
            Err(format!("format version {format}; this dr reads versions {OLDEST_READABLE_FORMAT} to {FORMAT_VERSION}"))
        }
        None => Err("no numeric \"format\" field".into()),
    }
}

/// `sha256:<hex>` of `value`'s canonical JSON.
pub(super) fn checksum_of(value: &Value) -> String {
    let mut hashing = Hashing(Sha256::new());
    write_canonical(value, &mut hashing);
    format!("{CHECKSUM_PREFIX}{}", super::hex(&hashing.0.finalize()))
}

fn checksum_of_object(object: &Map<String, Value>) -> String {
    let mut hashing = Hashing(Sha256::new());
    write_canonical_object(object, &mut hashing);
    format!("{CHECKSUM_PREFIX}{}", super::hex(&hashing.0.finalize()))
}

/// Where canonical JSON goes: hashed as it is written (a fleet's record is megabytes of
/// it, and only its digest is wanted), or kept as text.
trait Canonical {
    fn text(&mut self, text: &str);
}

struct Hashing(Sha256);

impl Canonical for Hashing {
    fn text(&mut self, text: &str) {
        self.0.update(text.as_bytes());
    }
}

impl Canonical for String {
    fn text(&mut self, text: &str) {
        self.push_str(text);
    }
}

/// Compact JSON with object keys sorted, so the checksum does not depend on key order
/// or whitespace (serde_json may or may not preserve insertion order, depending on features).
fn write_canonical(value: &Value, out: &mut impl Canonical) {
    match value {
        Value::Object(object) => write_canonical_object(object, out),
        Value::Array(items) => {
            out.text("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.text(",");
                }
                write_canonical(item, out);
            }
            out.text("]");
        }
        scalar => out.text(&scalar.to_string()),
    }
}

fn write_canonical_object(object: &Map<String, Value>, out: &mut impl Canonical) {
    let mut entries: Vec<(&String, &Value)> = object.iter().collect();
    entries.sort_by_key(|(key, _)| *key);
    out.text("{");
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.text(",");
        }
        out.text(&Value::String(key.clone()).to_string());
        out.text(":");
        write_canonical(item, out);
    }
    out.text("}");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let mut out = String::new();
        write_canonical(&json!({"b": [{"z": 1, "a": "x\"y"}], "a": null}), &mut out);
        assert_eq!(out, r#"{"a":null,"b":[{"a":"x\"y","z":1}]}"#);
    }

    #[test]
    fn checksum_ignores_whitespace_but_not_content() {
        let compact: Value = serde_json::from_str(r#"{"a":1,"b":"two"}"#).unwrap();
        let spaced: Value = serde_json::from_str("{ \"b\" : \"two\",\n \"a\" : 1 }").unwrap();
        assert_eq!(checksum_of(&compact), checksum_of(&spaced));
        assert_ne!(checksum_of(&compact), checksum_of(&json!({"a": 1, "b": "twO"})));
    }
}
