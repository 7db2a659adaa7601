//! `dr apply` of the EBS/Cassandra example against the simulated cluster: the claims are
//! restored from snapshots at 4Gi with each replica's data, the originals are kept.

mod apply_common;

use apply_common::{CASSANDRA_NS, assert_cassandra_restored, env, fast_config, seed_cassandra};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebs_example_restores_every_claim_at_4gi_with_its_own_data() {
    let env = env("ebs-cassandra-restore", "ebs", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    let result = env.apply(&[]).await;
    result.assert_success("dr apply");
    let run_id = result.run_id().expect("run id on stderr");
    assert!(result.stderr.contains(&format!("Run {run_id}: succeeded")), "{}", env.dump_logs(&result));
    assert_cassandra_restored(&env, &originals).await;
    // One snapshot per claim, made by this run.
    let snapshots = env.snapshots(CASSANDRA_NS).list(&Default::default()).await.expect("snapshots").items;
    assert_eq!(snapshots.len(), 3, "{snapshots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_an_applied_plan_changes_nothing_and_loses_no_data() {
    let env = env("ebs-cassandra-restore", "reapply", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    env.apply(&[]).await.assert_success("first dr apply");
    let after_first = assert_cassandra_restored(&env, &originals).await;
    let pvs_before: Vec<String> =
        env.pvs().list(&Default::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();

    let requests_before = env.sim.requests().len();
    let second = env.apply(&[]).await;
    second.assert_success("second dr apply");
    // Re-applying an applied plan changes nothing: live state already shows what the plan
    // asks for (claims restored at 4Gi, Bound), so no object is written at all.
    let writes: Vec<_> = env.sim.requests()[requests_before..]
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "the second apply wrote: {writes:?}\n{}", env.dump_logs(&second));
    let now = env.claims(CASSANDRA_NS).await;
    for (name, claim) in &after_first {
        let again = &now[name];
        assert_eq!((again.phase.as_str(), again.capacity.as_str()), ("Bound", "4Gi"), "{name}: {again:?}");
        assert_eq!(again.data, claim.data, "{name} lost data on re-apply");
    }
    assert_eq!(now.len(), 3);
    let pvs_after: Vec<String> =
        env.pvs().list(&Default::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();
    for pv in &pvs_before {
        assert!(pvs_after.contains(pv), "PV {pv} was destroyed by the second apply");
    }
    let sts = env.statefulset(CASSANDRA_NS, "cassandra").await;
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committing_frees_the_retained_originals_and_ends_rollback() {
    let env = env("ebs-cassandra-restore", "commit", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    let result = env.apply(&[]).await;
    result.assert_success("dr apply");
    let run_id = result.run_id().expect("run id");
    let restored = assert_cassandra_restored(&env, &originals).await;

    let committed = env.dr(&["commit", &run_id, "--auto-approve"], &[]).await;
    committed.assert_success("dr commit");
    for pv in originals.values() {
        assert!(
            committed.stdout.contains(&format!("- PV {pv} [primary], 2Gi: reclaim policy Retain -> Delete")),
            "{}",
            committed.stdout
        );
    }
    // Released with policy Delete: the PV controller deletes each original and its disk.
    for (claim, pv) in &originals {
        env.eventually(&format!("original PV {pv} of {claim} deleted"), std::time::Duration::from_secs(30), || async {
            match env.pvs().get_opt(pv).await.expect("reading PV") {
                None => Ok(()),
                Some(pv) => Err(format!("{:?}", pv.status)),
            }
        })
        .await;
    }
    // The restored claims are untouched, with their data.
    assert_eq!(env.claims(CASSANDRA_NS).await, restored);

    let again = env.dr(&["commit", &run_id, "--auto-approve"], &[]).await;
    again.assert_success("a second dr commit");
    assert!(again.stderr.contains("already committed"), "{}", again.stderr);
    let rollback = env.dr(&["rollback", &run_id], &[]).await;
    assert_eq!(rollback.code, Some(1), "{}", env.dump_logs(&rollback));
    assert!(rollback.stderr.contains("was committed"), "{}", rollback.stderr);
}
