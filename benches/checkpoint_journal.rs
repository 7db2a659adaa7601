//! Checkpoint cost per transition as the run grows: runs of 19 steps (one StatefulSet),
//! 950 (50) and 3,800 (200), each step started and finished once, every transition saved
//! through the local store (journal append + fsync, with the compactions that come due).
//!
//! Prints, per size: time per transition, journal bytes per transition, the base's size,
//! and how many compactions ran. `cargo bench --bench checkpoint_journal`.

use std::path::PathBuf;
use std::time::Instant;

use drplan::checkpoint::{LocalDirStore, RunMode, RunRecord, StateStore, StepRecord, StepStatus};
use serde_json::json;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drplan-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A plan-like JSON of `steps` steps, about the size the expanded plan has per step.
fn plan_json(steps: usize) -> serde_json::Value {
    let steps: Vec<_> = (0..steps)
        .map(|i| {
            json!({"id": format!("restore-{i:05}/snapshot-data"), "kind": "snapshotPvc",
            "claim": format!("data-cassandra-{i}"), "after": [format!("restore-{i:05}/pods-gone")]})
        })
        .collect();
    json!({"steps": steps})
}

fn measure(steps: usize) {
    let root = scratch(&format!("journal-{steps}"));
    let store = LocalDirStore::new(&root);
    let mut run = RunRecord::new("fleet", String::new(), "bench".into(), RunMode::Apply, plan_json(steps));
    let ids: Vec<String> = (0..steps).map(|i| format!("restore-{i:05}/snapshot-data")).collect();
    for id in &ids {
        run.steps.insert(id.clone(), StepRecord::default());
    }
    store.create_run(&run).unwrap();
    let run_dir = root.join("runs").join(&run.run_id);
    let base_before = std::fs::metadata(run_dir.join("run.json")).unwrap();

    let started = Instant::now();
    let mut journal_bytes = 0u64;
    let mut compactions = 0;
    let mut last_len = 0u64;
    let mut base_inode = std::os::unix::fs::MetadataExt::ino(&base_before);
    for id in &ids {
        for finish in [false, true] {
            let step = run.steps.get_mut(id).unwrap();
            if finish {
                step.captured.insert("snapshot".into(), json!(format!("{id}-dr-20261202")));
                step.finish(StepStatus::Succeeded);
            } else {
                step.start();
            }
            run.touch();
            store.save_run(&run).unwrap();
            let len = std::fs::metadata(run_dir.join("journal.jsonl")).map(|m| m.len()).unwrap_or(0);
            let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(run_dir.join("run.json")).unwrap());
            if inode != base_inode {
                compactions += 1;
                base_inode = inode;
            } else {
                journal_bytes += len.saturating_sub(last_len);
            }
            last_len = len;
        }
    }
    let transitions = 2 * steps as u32;
    let per_transition = started.elapsed() / transitions;
    let base = std::fs::metadata(run_dir.join("run.json")).unwrap().len();
    println!(
        "{steps:>6} steps: {:>6.2} ms per transition, {:>4} journal bytes per appended transition, \
         base {:>8} bytes, {compactions} compactions in {transitions} transitions",
        per_transition.as_secs_f64() * 1e3,
        journal_bytes / u64::from(transitions - compactions),
        base
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn main() {
    println!("checkpoint cost per transition (each transition: one journal line appended and fsynced):");
    for steps in [19, 950, 3_800] {
        measure(steps);
    }
}
