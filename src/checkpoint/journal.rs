//! The append-only journal beside `run.json` (`journal.jsonl`): one line per saved
//! transition, so the cost of a checkpoint does not grow with the size of the run.
//!
//! A line holds the run's header (every field but the plan and the steps, which are
//! small), the step records that changed since the previous line, a sequence number and
//! a checksum over all of it. `run.json` (the base) records the sequence number it
//! already contains; loading replays the lines after it in order.
//!
//! A crash can leave the last line torn (cut short, or not yet flushed to the end): a
//! final line without its newline, or whose checksum fails, is ignored and cut off
//! before the next append. A damaged line with whole lines after it cannot be the
//! result of a crash, so the run is reported corrupt instead of being misread.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::integrity::{checksum_of, verify_checksum};
use super::record::{RunRecord, StepRecord};
use super::redact::redact_secrets;
use super::store::StoreError;

pub(super) const JOURNAL_FILE: &str = "journal.jsonl";

/// The run as the journal left it, and how much of the file is whole.
#[derive(Debug)]
pub(super) struct Replayed {
    pub record: RunRecord,
    /// Sequence number of the last line applied (the base's own when none was).
    pub seq: u64,
    /// Bytes of the journal made of whole, valid lines; anything after is a torn tail.
    pub valid_len: u64,
}

/// The bytes of one journal line: `run`'s header and the records of `changed` steps.
pub(super) fn encode_entry(seq: u64, run: &RunRecord, changed: &[&str]) -> Result<Vec<u8>, serde_json::Error> {
    let mut steps = Map::new();
    for id in changed {
        let mut step = run.steps[*id].clone();
        step.captured.values_mut().for_each(redact_secrets);
        steps.insert((*id).to_string(), serde_json::to_value(&step)?);
    }
    let mut entry = json!({"seq": seq, "header": header_value(run)?, "steps": steps});
    let checksum = checksum_of(&entry);
    entry["checksum"] = Value::String(checksum);
    let mut line = serde_json::to_vec(&entry)?;
    line.push(b'\n');
    Ok(line)
}

/// Applies the journal `bytes` (read from `path`) to `base`, which holds lines up to `base_seq`.
pub(super) fn replay(path: &Path, base: RunRecord, base_seq: u64, bytes: &[u8]) -> Result<Replayed, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_path_buf(), reason };
    let mut replayed = Replayed { record: base, seq: base_seq, valid_len: 0 };
    let mut offset = 0usize;
    let mut line_number = 0usize;
    while offset < bytes.len() {
        let Some(end) = bytes[offset..].iter().position(|b| *b == b'\n').map(|i| offset + i) else {
            break; // a last line without its newline: torn
        };
        line_number += 1;
        let is_last = bytes[end + 1..].iter().all(u8::is_ascii_whitespace);
        match decode_entry(&bytes[offset..end]) {
            Ok(entry) => {
                apply_entry(&mut replayed, entry).map_err(|reason| corrupt(format!("line {line_number}: {reason}")))?
            }
            Err(_) if is_last => break, // torn while being written: never acknowledged, ignored
            Err(reason) => return Err(corrupt(format!("line {line_number}: {reason}"))),
        }
        offset = end + 1;
        replayed.valid_len = offset as u64;
    }
    Ok(replayed)
}

struct Entry {
    seq: u64,
    header: Value,
    steps: Map<String, Value>,
}

fn decode_entry(line: &[u8]) -> Result<Entry, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Object(mut object) = value else { return Err("not a JSON object".into()) };
    verify_checksum(&mut object)?;
    let seq = object.get("seq").and_then(Value::as_u64).ok_or("no sequence number")?;
    let header = object.remove("header").filter(Value::is_object).ok_or("no header")?;
    let Some(Value::Object(steps)) = object.remove("steps") else { return Err("no steps".into()) };
    Ok(Entry { seq, header, steps })
}

fn apply_entry(replayed: &mut Replayed, entry: Entry) -> Result<(), String> {
    if entry.seq <= replayed.seq {
        return Ok(()); // already in the base: written before a compaction that crashed before removing the journal
    }
    if entry.seq != replayed.seq + 1 {
        return Err(format!("entry {} follows entry {}", entry.seq, replayed.seq));
    }
    let mut header = entry.header;
    header["plan"] = Value::Null;
    header["steps"] = json!({});
    let header: RunRecord = serde_json::from_value(header).map_err(|e| format!("header does not match ({e})"))?;
    let record = &mut replayed.record;
    let plan = std::mem::take(&mut record.plan);
    let mut steps = std::mem::take(&mut record.steps);
    for (id, step) in entry.steps {
        let step: StepRecord = serde_json::from_value(step).map_err(|e| format!("step {id} does not match ({e})"))?;
        steps.insert(id, step);
    }
    *record = RunRecord { plan, steps, ..header };
    replayed.seq = entry.seq;
    Ok(())
}

/// Every field of `run` but the plan and the steps, as JSON.
fn header_value(run: &RunRecord) -> Result<Value, serde_json::Error> {
    // Built field by field (not cloned) so a save never copies the plan or the steps; a
    // new field of RunRecord fails to compile here until it is journaled too.
    let header = RunRecord {
        kind: run.kind,
        format: run.format,
        run_id: run.run_id.clone(),
        plan_name: run.plan_name.clone(),
        plan_digest: run.plan_digest.clone(),
        target: run.target.clone(),
        mode: run.mode.clone(),
        status: run.status,
        created_at: run.created_at.clone(),
        updated_at: run.updated_at.clone(),
        clusters: run.clusters.clone(),
        plan: Value::Null,
        steps: BTreeMap::new(),
    };
    let mut value = serde_json::to_value(header)?;
    if let Value::Object(object) = &mut value {
        object.remove("plan");
        object.remove("steps");
    }
    Ok(value)
}
