//! Crash and resume: `dr apply` of the EBS example is SIGKILLed right after each
//! checkpointed transition in turn (`DRPLAN_FAILPOINT=kill-after-transition=K`), and
//! between each write and its answer (the sim answers late), then `dr resume` finishes
//! the run. Every boundary must end in the uninterrupted run's state,
//! with no data lost and nothing made twice.

mod apply_common;

use std::time::Instant;

use apply_common::{CASSANDRA_NS, ClaimState, Env, assert_cassandra_restored, env, fast_config, seed_cassandra};
use drplan::checkpoint::{LocalDirStore, StateStore, StepStatus};
use kube::api::ListParams;

/// Claims with their size, phase and data (volume names differ between runs).
fn comparable(
    claims: &std::collections::BTreeMap<String, ClaimState>,
) -> Vec<(String, String, String, Option<String>)> {
    claims.iter().map(|(n, c)| (n.clone(), c.phase.clone(), c.capacity.clone(), c.data.clone())).collect()
}

/// (VolumeSnapshots, PVCs, PVs) in the sim.
async fn object_counts(env: &Env) -> (usize, usize, usize) {
    let lp = ListParams::default();
    (
        env.snapshots(CASSANDRA_NS).list(&lp).await.unwrap().items.len(),
        env.pvcs(CASSANDRA_NS).list(&lp).await.unwrap().items.len(),
        env.pvs().list(&lp).await.unwrap().items.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_transition_resumes_to_the_same_end_state() {
    let started = Instant::now();
    // The uninterrupted run, for reference.
    let reference = env("ebs-cassandra-restore", "crash-ref", fast_config()).await;
    let originals = seed_cassandra(&reference).await;
    reference.apply(&[]).await.assert_success("uninterrupted dr apply");
    let expected = comparable(&assert_cassandra_restored(&reference, &originals).await);
    let expected_counts = object_counts(&reference).await;
    assert_eq!(expected_counts, (3, 3, 6), "3 snapshots, 3 claims, 3 original + 3 restored PVs");
    drop(reference);

    let mut boundaries = 0;
    for k in 1.. {
        assert!(k < 500, "the run never completed without reaching the failpoint");
        let env = env("ebs-cassandra-restore", &format!("crash-{k}"), fast_config()).await;
        let originals = seed_cassandra(&env).await;
        let failpoint = format!("kill-after-transition={k}");
        let crashed = env.apply(&[("DRPLAN_FAILPOINT", &failpoint)]).await;
        if crashed.code == Some(0) {
            // k is past the last transition: the run completed; every boundary was covered.
            assert_eq!(env.run_ids().len(), 1);
            break;
        }
        assert_eq!(crashed.signal, Some(9), "k={k}: expected a SIGKILL\n{}", env.dump_logs(&crashed));
        boundaries += 1;
        let run_ids = env.run_ids();
        assert_eq!(run_ids.len(), 1, "k={k}: one run in the state dir");
        assert_eq!(crashed.run_id().as_ref(), Some(&run_ids[0]), "k={k}: run id on stderr");
        let resumed = env.resume(&run_ids[0]).await;
        assert_eq!(resumed.code, Some(0), "k={k}: dr resume failed\n{}", env.dump_logs(&resumed));
        let claims = assert_cassandra_restored(&env, &originals).await;
        assert_eq!(comparable(&claims), expected, "k={k}: end state differs from the uninterrupted run");
        assert_eq!(object_counts(&env).await, expected_counts, "k={k}: duplicate or missing snapshots/claims/PVs");
        assert_eq!(env.run_ids().len(), 1, "k={k}: resume made no new run");
    }
    // 19 steps: at least a start and a finish each, plus the final run status.
    assert!(boundaries >= 39, "only {boundaries} transitions were crashed at");
    eprintln!("crashed and resumed at {boundaries} boundaries in {:?}", started.elapsed());
}

/// A write request: (verb, resource, subresource).
type WriteKind = (String, String, String);

fn writes(env: &Env, from: usize) -> Vec<WriteKind> {
    env.sim.requests()[from..]
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch") && r.code < 300)
        .map(|r| (r.verb.clone(), r.resource.clone(), r.subresource.clone()))
        .collect()
}

/// Answers every write late, after making it, so `dr` can die between a change and its
/// checkpoint.
fn answer_writes_late(config: &mut drplan::sim::SimConfig) {
    for verb in ["create", "update", "patch", "delete"] {
        config.faults.rules.push(drplan::sim::config::FaultRule {
            verb: Some(verb.into()),
            response_latency: Some(std::time::Duration::from_millis(300)),
            ..Default::default()
        });
    }
}

/// The other crash window: the API server made the change, but `dr` dies before it hears
/// back, so the checkpoint does not know. For every write the run makes, in turn, `dr
/// apply` is SIGKILLed while that write's answer is on its way; `dr resume` must adopt
/// what the write did, ending in the uninterrupted run's state with nothing made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_any_write_and_its_answer_resumes_to_the_same_end_state() {
    let started = Instant::now();
    let reference = env("ebs-cassandra-restore", "write-ref", fast_config()).await;
    let originals = seed_cassandra(&reference).await;
    let before = reference.sim.requests().len();
    reference.apply(&[]).await.assert_success("uninterrupted dr apply");
    let expected = comparable(&assert_cassandra_restored(&reference, &originals).await);
    let expected_counts = object_counts(&reference).await;
    let total = writes(&reference, before).len();
    // Scale down and back, and per claim: snapshot, retain, delete, restore.
    assert!(total >= 14, "{:?}", writes(&reference, before));
    drop(reference);

    for n in 1..=total {
        let mut config = fast_config();
        answer_writes_late(&mut config);
        let env = env("ebs-cassandra-restore", &format!("write-crash-{n}"), config).await;
        let originals = seed_cassandra(&env).await;
        let before = env.sim.requests().len();
        let plan = env.plan.to_string_lossy().into_owned();
        let mut child = env.spawn(&["apply", &plan, "--auto-approve"], &[]);
        let deadline = Instant::now() + apply_common::DR_DEADLINE;
        while writes(&env, before).len() < n {
            assert!(Instant::now() < deadline, "write {n} never came");
            assert!(child.try_wait().unwrap().is_none(), "dr apply ended before write {n}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL dr apply");
        let _ = child.wait();
        let killed_at = writes(&env, before)[n - 1].clone();
        env.sim.with_state(|state| state.config.faults.rules.clear());

        let run_ids = env.run_ids();
        assert_eq!(run_ids.len(), 1, "write {n} {killed_at:?}: one run in the state dir");
        // The kill landed inside the window: the step that wrote is still `running`.
        let record = LocalDirStore::new(&env.state_dir).load_run(&run_ids[0]).unwrap();
        let running = record.steps.values().filter(|s| s.status == StepStatus::Running).count();
        assert!(running >= 1, "write {n} {killed_at:?}: no step was caught between its write and its checkpoint");
        let resumed = env.resume(&run_ids[0]).await;
        assert_eq!(resumed.code, Some(0), "write {n} {killed_at:?}: dr resume failed\n{}", env.dump_logs(&resumed));
        let claims = assert_cassandra_restored(&env, &originals).await;
        assert_eq!(comparable(&claims), expected, "write {n} {killed_at:?}: end state differs");
        assert_eq!(object_counts(&env).await, expected_counts, "write {n} {killed_at:?}: duplicate or missing objects");
    }
    eprintln!("crashed after each of {total} writes and resumed in {:?}", started.elapsed());
}

/// A crash in the middle of a checkpoint write: `dr apply` is SIGKILLed after writing half
/// of a journal line (`DRPLAN_FAILPOINT=kill-mid-journal-write=K`, every third append in
/// turn). The torn line is ignored on load (the record is the one of the line before),
/// and `dr resume` continues from there to the uninterrupted run's end state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_journal_write_resumes_from_a_consistent_record() {
    let reference = env("ebs-cassandra-restore", "torn-ref", fast_config()).await;
    let originals = seed_cassandra(&reference).await;
    reference.apply(&[]).await.assert_success("uninterrupted dr apply");
    let expected = comparable(&assert_cassandra_restored(&reference, &originals).await);
    let expected_counts = object_counts(&reference).await;
    drop(reference);

    let mut torn = 0;
    for k in (1..).step_by(3) {
        assert!(k < 500, "the run never completed without reaching the failpoint");
        let env = env("ebs-cassandra-restore", &format!("torn-{k}"), fast_config()).await;
        let originals = seed_cassandra(&env).await;
        let failpoint = format!("kill-mid-journal-write={k}");
        let crashed = env.apply(&[("DRPLAN_FAILPOINT", &failpoint)]).await;
        if crashed.code == Some(0) {
            break;
        }
        assert_eq!(crashed.signal, Some(9), "k={k}: expected a SIGKILL\n{}", env.dump_logs(&crashed));
        torn += 1;
        let run_ids = env.run_ids();
        let journal = env.state_dir.join("runs").join(&run_ids[0]).join("journal.jsonl");
        let bytes = std::fs::read(&journal).unwrap();
        assert_ne!(bytes.last(), Some(&b'\n'), "k={k}: the last journal line is torn");
        let whole_lines = bytes.iter().filter(|b| **b == b'\n').count();
        assert_eq!(whole_lines, k - 1, "k={k}: the lines before the torn one are whole");
        let record = LocalDirStore::new(&env.state_dir).load_run(&run_ids[0]);
        assert!(record.is_ok(), "k={k}: the record with a torn line must load: {record:?}");

        let resumed = env.resume(&run_ids[0]).await;
        assert_eq!(resumed.code, Some(0), "k={k}: dr resume failed\n{}", env.dump_logs(&resumed));
        let claims = assert_cassandra_restored(&env, &originals).await;
        assert_eq!(comparable(&claims), expected, "k={k}: end state differs from the uninterrupted run");
        assert_eq!(object_counts(&env).await, expected_counts, "k={k}: duplicate or missing objects");
        let after = std::fs::read_to_string(&journal).unwrap_or_default();
        assert!(after.lines().all(|l| l.ends_with('}')), "k={k}: resume appended after the torn bytes");
    }
    assert!(torn >= 12, "only {torn} torn writes were crashed at");
}
