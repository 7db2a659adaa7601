//! The local checkpoint store: round trips, crash safety, integrity checks, locks and redaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use drplan::checkpoint::{
    FORMAT_VERSION, LocalDirStore, LockInfo, RunMode, RunRecord, RunStatus, StateStore, StepRecord, StepStatus,
    StoreError, SummaryStatus, digest,
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
    assert_eq!(files_in(&run_dir), ["journal.jsonl", "run.json"]);
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
    let next_version = FORMAT_VERSION + 1;
    newer["format"] = json!(next_version);
    std::fs::write(&path, serde_json::to_vec(&newer).unwrap()).unwrap();
    let err = store.load_run(&run.run_id).unwrap_err();
    let expected = format!("version {next_version}");
    assert!(matches!(&err, StoreError::Foreign { reason, .. } if reason.contains(&expected)), "{err:?}");

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

    let run_dir = run_file(&store, &run).parent().unwrap().to_path_buf();
    let on_disk: String =
        files_in(&run_dir).iter().map(|f| std::fs::read_to_string(run_dir.join(f)).unwrap()).collect();
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

// ---------------------------------------------------------------------------
// Journal

fn journal_file(store: &LocalDirStore, run: &RunRecord) -> PathBuf {
    run_file(store, run).with_file_name("journal.jsonl")
}

/// A record of `n` steps, as a run of that size holds before it starts.
fn record_with_steps(n: usize) -> RunRecord {
    let mut run = record("fleet");
    for i in 0..n {
        run.steps.insert(format!("step-{i:05}"), StepRecord::default());
    }
    run
}

/// Starts step `id`, saves, finishes it, saves: the two transitions a step makes.
fn run_step(store: &LocalDirStore, run: &mut RunRecord, id: &str) {
    run.steps.get_mut(id).unwrap().start();
    run.touch();
    store.save_run(run).unwrap();
    let step = run.steps.get_mut(id).unwrap();
    step.captured.insert("original_replicas".into(), json!(3));
    step.finish(StepStatus::Succeeded);
    run.touch();
    store.save_run(run).unwrap();
}

#[test]
fn a_save_appends_one_journal_line_and_leaves_the_base_alone() {
    let store = store("journal-append");
    let mut run = record_with_steps(20);
    store.create_run(&run).unwrap();
    let base = std::fs::read(run_file(&store, &run)).unwrap();
    for i in 0..20 {
        run_step(&store, &mut run, &format!("step-{i:05}"));
    }
    run.status = RunStatus::Succeeded;
    store.save_run(&run).unwrap();

    assert_eq!(std::fs::read(run_file(&store, &run)).unwrap(), base, "the base is not rewritten per transition");
    let journal = std::fs::read_to_string(journal_file(&store, &run)).unwrap();
    assert_eq!(journal.lines().count(), 41);
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);
    // A fresh store (another process) reads the same record and continues the journal.
    let other = LocalDirStore::new(store.root());
    run.steps.get_mut("step-00000").unwrap().attempts = 7;
    other.save_run(&run).unwrap();
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);
}

#[test]
fn journal_bytes_per_transition_do_not_grow_with_the_run() {
    let bytes_per_transition = |steps: usize| {
        let store = store("journal-size");
        let mut run = record_with_steps(steps);
        store.create_run(&run).unwrap();
        for i in 0..10 {
            run_step(&store, &mut run, &format!("step-{i:05}"));
        }
        std::fs::metadata(journal_file(&store, &run)).unwrap().len() / 20
    };
    let small = bytes_per_transition(10);
    let large = bytes_per_transition(5_000);
    assert!(large <= small + 16, "a transition in a 5,000-step run journals {large} bytes, in a 10-step run {small}");
}

#[test]
fn a_torn_last_journal_line_is_ignored_and_cut_off_by_the_next_save() {
    let store = store("journal-torn");
    let mut run = record_with_steps(3);
    store.create_run(&run).unwrap();
    run_step(&store, &mut run, "step-00000");
    let before_tear = run.clone();
    run_step(&store, &mut run, "step-00001");

    // What a crash in the middle of the last append leaves: half of that line.
    let path = journal_file(&store, &run);
    let journal = std::fs::read(&path).unwrap();
    let last_start = journal[..journal.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let torn = &journal[..last_start + (journal.len() - last_start) / 2];
    std::fs::write(&path, torn).unwrap();

    let mut expected = before_tear.clone();
    let mut started = run.steps["step-00001"].clone();
    started.status = StepStatus::Running;
    started.finished_at = None;
    started.captured.clear();
    expected.steps.insert("step-00001".into(), started);
    let loaded = LocalDirStore::new(store.root()).load_run(&run.run_id).unwrap();
    assert_eq!(loaded.steps, expected.steps, "the torn line is ignored, the whole ones are kept");

    // Resuming writes after the whole lines, never after the torn bytes.
    let resumer = LocalDirStore::new(store.root());
    let mut resumed = loaded;
    run_step(&resumer, &mut resumed, "step-00002");
    assert_eq!(store.load_run(&run.run_id).unwrap(), resumed);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().all(|line| line.ends_with('}')), "no torn bytes left in the middle:\n{text}");
}

#[test]
fn a_damaged_journal_line_followed_by_whole_lines_is_corrupt_not_misread() {
    let store = store("journal-damaged");
    let mut run = record_with_steps(3);
    store.create_run(&run).unwrap();
    run_step(&store, &mut run, "step-00000");
    run_step(&store, &mut run, "step-00001");
    let path = journal_file(&store, &run);
    let text = std::fs::read_to_string(&path).unwrap();
    let altered = text.replacen("\"attempts\":1", "\"attempts\":9", 1);
    assert_ne!(text, altered);
    std::fs::write(&path, altered).unwrap();

    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("checksum")), "{err:?}");
    assert!(err.to_string().contains("journal.jsonl"), "{err}");
}

#[test]
fn the_journal_is_compacted_into_the_base_and_a_crash_mid_compaction_is_harmless() {
    let store = store("journal-compact");
    let mut run = record_with_steps(2);
    store.create_run(&run).unwrap();
    let path = journal_file(&store, &run);
    // Large captures make the journal outgrow its threshold quickly.
    let mut compacted_from = None;
    for round in 0..400 {
        let step = run.steps.get_mut("step-00000").unwrap();
        step.captured.insert("blob".into(), json!("x".repeat(8 * 1024)));
        step.attempts = round;
        let before = std::fs::read(&path).ok();
        store.save_run(&run).unwrap();
        if !path.exists() {
            compacted_from = before;
            break;
        }
    }
    let stale_journal = compacted_from.expect("the journal was compacted");
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);

    // A crash after the new base was written but before the journal was removed leaves
    // journal lines the base already holds: they are skipped, not replayed over it.
    std::fs::write(&path, &stale_journal).unwrap();
    assert_eq!(LocalDirStore::new(store.root()).load_run(&run.run_id).unwrap(), run);
}

#[test]
fn secret_data_captured_mid_run_is_never_journaled() {
    let store = store("journal-secrets");
    let mut run = record("db-failover");
    store.create_run(&run).unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds"},
        "data": {"password": "c3VwZXJzZWNyZXQ="}});
    run.steps.get_mut("snapshot").unwrap().captured.insert("saved_manifests".into(), json!({"items": [secret]}));
    store.save_run(&run).unwrap();
    let journal = std::fs::read_to_string(journal_file(&store, &run)).unwrap();
    assert!(journal.contains("db-creds") && !journal.contains("c3VwZXJzZWNyZXQ="), "{journal}");
}

#[test]
fn a_version_1_run_without_journal_is_still_read_and_continued() {
    let store = store("journal-v1");
    let mut run = record("db-failover");
    store.create_run(&run).unwrap();
    // The version 1 layout: the same envelope, without journalSeq, format 1.
    let path = run_file(&store, &run);
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let object = old.as_object_mut().unwrap();
    object.remove("journalSeq");
    object.remove("checksum");
    object.insert("format".into(), json!(1));
    let canonical = canonical_json(&old);
    old["checksum"] = json!(format!("sha256:{}", digest(canonical.as_bytes())));
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    run.format = 1;
    let fresh = LocalDirStore::new(store.root());
    assert_eq!(fresh.load_run(&run.run_id).unwrap(), run);
    run.status = RunStatus::Succeeded;
    fresh.save_run(&run).unwrap();
    assert_eq!(store.load_run(&run.run_id).unwrap(), run);
}

/// Compact JSON with sorted keys, as run files are checksummed.
fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(object) => {
            let mut entries: Vec<_> = object.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            let inner: Vec<String> =
                entries.iter().map(|(k, v)| format!("{}:{}", json!(k), canonical_json(v))).collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// A store holding a run of `steps` steps, saved once by this process.
fn saved_run(name: &str, steps: usize) -> (LocalDirStore, RunRecord) {
    let store = store(name);
    let run = record_with_steps(steps);
    store.create_run(&run).unwrap();
    store.save_run(&run).unwrap();
    (store, run)
}

fn step_ids(ids: &[&str]) -> std::collections::BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

#[test]
fn a_save_told_which_steps_changed_journals_those_and_loads_the_same_record() {
    let (store, mut run) = saved_run("journal-hinted", 50);
    let changed = step_ids(&["step-00003", "step-00007"]);
    for id in &changed {
        run.steps.get_mut(id).unwrap().start();
    }
    run.touch();
    store.save_run_changed(&run, &changed).unwrap();
    let journal = std::fs::read_to_string(journal_file(&store, &run)).unwrap();
    let last: serde_json::Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    let journaled: Vec<&String> = last["steps"].as_object().unwrap().keys().collect();
    assert_eq!(journaled, ["step-00003", "step-00007"]);
    assert_eq!(LocalDirStore::new(store.root()).load_run(&run.run_id).unwrap(), run);
}

#[test]
fn a_hint_is_not_trusted_once_another_process_saved_the_run() {
    let (store, mut run) = saved_run("journal-hint-stale", 5);
    // Another process saves a change this one's hint will not name.
    let other = LocalDirStore::new(store.root());
    let mut theirs = run.clone();
    theirs.steps.get_mut("step-00001").unwrap().attempts = 4;
    other.save_run(&theirs).unwrap();
    // This process's record differs from the files in step-00001 too (it never saw that
    // save): a hint naming only step-00002 must not leave the files with their version.
    run.steps.get_mut("step-00002").unwrap().start();
    store.save_run_changed(&run, &step_ids(&["step-00002"])).unwrap();
    assert_eq!(LocalDirStore::new(store.root()).load_run(&run.run_id).unwrap(), run);
}
