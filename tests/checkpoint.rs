//! The local checkpoint store: round trips, crash safety, integrity checks, locks and redaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use drplan::checkpoint::{
    LocalDirStore, LockInfo, RunMode, RunRecord, RunStatus, StateStore, StepRecord, StepStatus, StoreError,
    SummaryStatus, digest,
};
use serde_json::json;

/// A fresh, empty store directory unique to this test and process.
fn store(name: &str) -> LocalDirStore {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint").join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    LocalDirStore::new(dir)
}

fn record(plan_name: &str) -> RunRecord {
    let plan = json!({"steps": ["scale-down", "snapshot"], "namespace": "db"});
    let mut run = RunRecord::new(plan_name, digest(b"plan bytes"), "ctx-a,ctx-b".into(), RunMode::Apply, plan);
    let mut step = StepRecord::default();
    step.start();
    step.captured.insert("original_replicas".into(), json!(3));
    step.finish(StepStatus::Succeeded);
    run.steps.insert("scale-down".into(), step);
    run.steps.insert("snapshot".into(), StepRecord::default());
    run
}

fn run_file(store: &LocalDirStore, run: &RunRecord) -> PathBuf {
    store.run_path(&run.run_id).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Writes a lock file as a holder that never released it would have left it.
fn leave_lock_file(store: &LocalDirStore, key: &str, holder: &LockInfo) {
    let path = store.lock_path(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec(holder).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------
// Runs

#[test]
fn a_run_round_trips_through_create_save_and_load() {
    let store = store("round-trip");
    let mut run = record("db-failover");
    store.create_run(&run).unwrap();
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);

    run.steps.get_mut("snapshot").unwrap().fail("VolumeSnapshot not ready after 10m");
    run.status = RunStatus::Failed;
    run.mode = RunMode::Rollback { of: "20250101T000000Z-db-failover-0000".into() };
    run.touch();
    store.save_run(&run).unwrap();
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);
}

#[test]
fn creating_an_existing_run_fails_and_keeps_the_first() {
    let store = store("exists");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let mut other = run.clone();
    other.plan_name = "someone-else".into();
    assert!(matches!(store.create_run(&other), Err(StoreError::RunExists { .. })));
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);
}

#[test]
fn unknown_and_invalid_run_ids_are_errors() {
    let store = store("unknown");
    let run = record("db-failover");
    assert!(matches!(store.load_run(&run.run_id), Err(StoreError::RunNotFound { .. })));
    assert!(matches!(store.save_run(&run), Err(StoreError::RunNotFound { .. })));
    assert!(matches!(store.load_run("../../etc"), Err(StoreError::InvalidRunId { .. })));
    let mut escaping = run.clone();
    escaping.run_id = "../escape".into();
    assert!(matches!(store.create_run(&escaping), Err(StoreError::InvalidRunId { .. })));
}

#[test]
fn saving_replaces_the_file_without_leaving_temp_files() {
    let store = store("no-temp");
    let mut run = record("db-failover");
    store.create_run(&run).unwrap();
    for attempt in 0..5 {
        run.steps.get_mut("snapshot").unwrap().attempts = attempt;
        store.save_run(&run).unwrap();
    }
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(run_file(&store, &run)).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "run files are private to their owner");
    let run_dir = run_file(&store, &run).parent().unwrap().to_path_buf();
    assert_eq!(files_in(&run_dir), ["run.json"]);
    assert_eq!(store.load_run(&run.run_id).unwrap().steps["snapshot"].attempts, 4);
}

#[test]
fn a_crash_between_temp_write_and_rename_leaves_the_old_record() {
    let store = store("crash");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    // What a crash mid-save leaves: a half-written temp file beside the intact run.json.
    let path = run_file(&store, &run);
    std::fs::write(path.with_file_name(".run.json.tmp-4242-0-beef"), "{\"kind\": \"DrplanRun\", \"form").unwrap();

    assert_eq!(store.load_run(&run.run_id).unwrap(), run);
    let listed = store.list_runs().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, SummaryStatus::Run(RunStatus::Running));

    let mut next = run.clone();
    next.status = RunStatus::Succeeded;
    store.save_run(&next).unwrap();
    assert_eq!(store.load_run(&run.run_id).unwrap(), next);
}

// ---------------------------------------------------------------------------
// Integrity

#[test]
fn a_truncated_file_is_corrupt() {
    let store = store("truncated");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let path = run_file(&store, &run);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("truncated") && message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn an_empty_file_is_corrupt() {
    let store = store("empty");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    std::fs::write(run_file(&store, &run), "").unwrap();
    assert!(matches!(store.load_run(&run.run_id), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_changed_byte_fails_the_checksum() {
    let store = store("flipped");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let path = run_file(&store, &run);
    let text = std::fs::read_to_string(&path).unwrap();
    // Still valid JSON with valid markers: only the checksum can notice.
    let altered = text.replacen("\"original_replicas\": 3", "\"original_replicas\": 8", 1);
    assert_ne!(text, altered);
    std::fs::write(&path, altered).unwrap();

    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("checksum")), "{err:?}");
}

#[test]
fn a_missing_checksum_is_corrupt() {
    let store = store("no-checksum");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    std::fs::write(run_file(&store, &run), serde_json::to_vec(&run).unwrap()).unwrap();
    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("checksum")), "{err:?}");
}

#[test]
fn other_json_and_other_format_versions_are_foreign() {
    let store = store("foreign");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let path = run_file(&store, &run);

    std::fs::write(&path, r#"{"apiVersion": "v1", "kind": "ConfigMap", "data": {}}"#).unwrap();
    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(&err, StoreError::Foreign { reason, .. } if reason.contains("ConfigMap")), "{err:?}");

    let mut newer = serde_json::to_value(&run).unwrap();
    newer["format"] = json!(2);
    std::fs::write(&path, serde_json::to_vec(&newer).unwrap()).unwrap();
    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(&err, StoreError::Foreign { reason, .. } if reason.contains("version 2")), "{err:?}");

    std::fs::write(&path, "[1, 2, 3]").unwrap();
    assert!(matches!(store.load_run(&run.run_id), Err(StoreError::Foreign { .. })));
}

#[test]
fn a_run_copied_under_another_id_is_corrupt() {
    let store = store("copied");
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let source = run_file(&store, &run);
    let copy_dir = source.parent().unwrap().with_file_name("20250101T000000Z-copy-0000");
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::copy(&source, copy_dir.join("run.json")).unwrap();
    assert!(matches!(store.load_run("20250101T000000Z-copy-0000"), Err(StoreError::Corrupt { .. })));
}

// ---------------------------------------------------------------------------
// Listing

#[test]
fn listing_is_newest_first_and_tolerates_a_corrupt_run() {
    let store = store("list");
    assert!(store.list_runs().unwrap().is_empty());

    let mut old = record("db-failover");
    old.created_at = "2025-01-01T00:00:00.000Z".into();
    let mut new = record("db-failover");
    new.created_at = "2025-06-01T00:00:00.000Z".into();
    new.status = RunStatus::Interrupted;
    let broken = record("other-plan");
    for run in [&old, &new, &broken] {
        store.create_run(run).unwrap();
    }
    std::fs::write(run_file(&store, &broken), "{ not json").unwrap();

    let listed = store.list_runs().unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
    let corrupt = listed.iter().find(|s| s.run_id == broken.run_id).unwrap();
    assert_eq!(corrupt.status, SummaryStatus::Corrupt);
    assert_eq!(corrupt.status.to_string(), "corrupt");
    assert!(corrupt.problem.as_deref().unwrap().contains("not valid JSON"), "{corrupt:?}");

    let readable: Vec<&str> =
        listed.iter().filter(|s| s.status != SummaryStatus::Corrupt).map(|s| s.run_id.as_str()).collect();
    assert_eq!(readable, [new.run_id.as_str(), old.run_id.as_str()]);
    let newest = listed.iter().find(|s| s.run_id == new.run_id).unwrap();
    assert_eq!(newest.status, SummaryStatus::Run(RunStatus::Interrupted));
    assert_eq!(newest.step_counts, BTreeMap::from([(StepStatus::Pending, 1), (StepStatus::Succeeded, 1)]));
}

#[test]
fn latest_run_is_the_newest_readable_run_of_that_plan() {
    let store = store("latest");
    assert_eq!(store.latest_run("db-failover").unwrap(), None);
    let mut old = record("db-failover");
    old.created_at = "2025-01-01T00:00:00.000Z".into();
    let mut corrupt = record("db-failover");
    corrupt.created_at = "2025-09-01T00:00:00.000Z".into();
    let mut other_plan = record("other-plan");
    other_plan.created_at = "2025-12-01T00:00:00.000Z".into();
    for run in [&old, &corrupt, &other_plan] {
        store.create_run(run).unwrap();
    }
    std::fs::write(run_file(&store, &corrupt), "").unwrap();
    assert_eq!(store.latest_run("db-failover").unwrap(), Some(old));
}

// ---------------------------------------------------------------------------
// Secrets

#[test]
fn secret_data_is_never_written() {
    let store = store("secrets");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds"},
        "data": {"password": "c3VwZXJzZWNyZXQ="}, "stringData": {"token": "plain-token"},
    });
    let mut run = record("db-failover");
    run.plan["manifests"] = json!([secret.clone(), {"kind": "ConfigMap", "data": {"mode": "primary"}}]);
    run.steps.get_mut("snapshot").unwrap().captured.insert("saved_manifests".into(), json!({"items": [secret]}));
    let in_memory = run.clone();
    store.create_run(&run).unwrap();
    run.touch();
    store.save_run(&run).unwrap();

    let on_disk = std::fs::read_to_string(run_file(&store, &run)).unwrap();
    for leaked in ["c3VwZXJzZWNyZXQ=", "plain-token", "password"] {
        assert!(!on_disk.contains(leaked), "{leaked} written to disk:\n{on_disk}");
    }
    assert!(on_disk.contains("db-creds") && on_disk.contains("primary"), "{on_disk}");
    let loaded = store.load_run(&run.run_id).unwrap();
    assert_eq!(
        loaded.plan["manifests"][0],
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds"}})
    );
    assert_eq!(in_memory.plan["manifests"][0]["data"]["password"], "c3VwZXJzZWNyZXQ=", "caller's record untouched");
}

// ---------------------------------------------------------------------------
// Locks

#[test]
fn a_second_locker_is_told_who_holds_the_lock() {
    let store = store("locked");
    let holder = LockInfo::current("20250102T030405Z-db-failover-3fa9", "apply");
    let guard = store.lock("db-failover@ctx-a", &holder).unwrap();
    assert_eq!(guard.info(), &holder);
    assert!(guard.took_over_from().is_none());

    let err = store.lock("db-failover@ctx-a", &LockInfo::current("other", "resume")).unwrap_err();
    let StoreError::Locked { holder: reported, .. } = &err else { panic!("{err:?}") };
    assert_eq!(**reported, holder);
    let message = err.to_string();
    for part in [
        holder.holder.as_str(),
        &holder.pid.to_string(),
        &holder.since,
        &holder.run_id,
        "apply",
        &store.lock_path("db-failover@ctx-a").display().to_string(),
        "dr resume",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    // Other keys are independent.
    store.lock("other-plan@ctx-a", &holder).unwrap();
}

#[test]
fn dropping_or_unlocking_releases_the_lock() {
    let store = store("release");
    let info = LockInfo::current("r1", "apply");
    let guard = store.lock("k", &info).unwrap();
    assert!(store.lock_path("k").exists());
    drop(guard);
    assert!(!store.lock_path("k").exists());

    let guard = store.lock("k", &info).unwrap();
    guard.unlock().unwrap();
    let guard = store.lock("k", &info).unwrap();
    assert!(guard.took_over_from().is_none(), "a released lock is not a takeover");
}

#[test]
fn a_lock_left_by_a_dead_process_on_this_host_is_taken_over_and_reported() {
    let store = store("stale");
    let mut stale = LockInfo::current("20250102T030405Z-db-failover-dead", "apply");
    stale.pid = dead_pid();
    leave_lock_file(&store, "k", &stale);

    let me = LockInfo::current("20250102T040000Z-db-failover-beef", "resume");
    let guard = store.lock("k", &me).unwrap();
    assert_eq!(guard.took_over_from(), Some(&stale));
    let on_disk: LockInfo = serde_json::from_slice(&std::fs::read(store.lock_path("k")).unwrap()).unwrap();
    assert_eq!(on_disk, me);
    assert!(matches!(store.lock("k", &me), Err(StoreError::Locked { .. })), "the new holder has it now");
}

/// Set in the child process of the SIGKILL test: take the lock in this store, say so, wait to be killed.
const HOLD_LOCK_IN: &str = "DRPLAN_TEST_HOLD_LOCK_IN";

#[test]
fn a_lock_held_by_a_sigkilled_process_is_taken_over() {
    if let Ok(dir) = std::env::var(HOLD_LOCK_IN) {
        let _guard = LocalDirStore::new(dir).lock("k", &LockInfo::current("r-killed", "apply")).unwrap();
        println!("HOLDING");
        // Killed long before this; the limit only keeps a failed parent from leaving it behind.
        std::thread::sleep(std::time::Duration::from_secs(60));
        std::process::exit(1);
    }
    let store = store("sigkill");
    // This test binary again, running only this test, as the child that holds the lock.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_lock_held_by_a_sigkilled_process_is_taken_over", "--nocapture", "--test-threads=1"])
        .env(HOLD_LOCK_IN, store.root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // libtest may print "test <name> ... " on the same line first.
    let holding = std::io::BufRead::lines(stdout).map_while(Result::ok).any(|line| line.ends_with("HOLDING"));
    assert!(holding, "the child never took the lock");

    let me = LockInfo::current("r-resume", "resume");
    let err = store.lock("k", &me).unwrap_err();
    assert!(matches!(&err, StoreError::Locked { holder, .. } if holder.pid == child.id()), "{err:?}");

    child.kill().unwrap(); // SIGKILL: no destructor runs, the lock file stays behind
    child.wait().unwrap();
    assert!(store.lock_path("k").exists());
    let guard = store.lock("k", &me).unwrap();
    let previous = guard.took_over_from().expect("takeover reported");
    assert_eq!((previous.pid, previous.run_id.as_str()), (child.id(), "r-killed"));
}

#[test]
fn a_lock_file_naming_a_live_process_or_another_host_is_not_taken_over() {
    let store = store("not-stale");
    let live = LockInfo::current("r-live", "apply"); // this test process: alive
    leave_lock_file(&store, "live", &live);
    let err = store.lock("live", &LockInfo::current("r2", "apply")).unwrap_err();
    assert!(matches!(&err, StoreError::Locked { holder, .. } if **holder == live), "{err:?}");

    let mut remote = LockInfo::current("r-remote", "apply");
    remote.host = "some-other-machine".into();
    remote.pid = dead_pid(); // dead here, but it is not our pid space
    leave_lock_file(&store, "remote", &remote);
    let err = store.lock("remote", &LockInfo::current("r2", "apply")).unwrap_err();
    assert!(matches!(&err, StoreError::Locked { holder, .. } if **holder == remote), "{err:?}");
}

#[test]
fn an_empty_lock_file_is_free() {
    let store = store("empty-lock");
    let path = store.lock_path("k");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "").unwrap();
    let guard = store.lock("k", &LockInfo::current("r1", "apply")).unwrap();
    assert!(guard.took_over_from().is_none());
}

#[test]
fn of_threads_racing_for_a_lock_exactly_one_wins() {
    let store = Arc::new(store("race"));
    for round in 0..20 {
        let racers = 4;
        let barrier = Arc::new(Barrier::new(racers));
        let handles: Vec<_> = (0..racers)
            .map(|i| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let info = LockInfo::current(&format!("run-{round}-{i}"), "apply");
                    barrier.wait();
                    store.lock("contended", &info)
                })
            })
            .collect();
        // Keep every result (and so every guard) alive until all racers have tried.
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for result in &results {
            if let Err(err) = result {
                assert!(matches!(err, StoreError::Locked { .. }), "round {round}: {err:?}");
            }
        }
    }
}
