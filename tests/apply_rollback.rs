//! `dr rollback` after a failure past the deletions brings back the original claims,
//! bound to their retained volumes with their original data, and the original replicas.

mod apply_common;

use apply_common::{CASSANDRA_NS, cassandra_claim, env, fast_config, seed_cassandra};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_deletions_restores_original_claims_data_and_replicas() {
    let env = env("ebs-cassandra-restore", "rollback", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    // The first restore fails: by then every claim's deletion may have run, and at least
    // claim 0's has (the restore depends on it).
    let failing = "restore-cassandra/restore-cassandra-data-cassandra-0";
    let failed = env.apply(&[("DRPLAN_FAILPOINT", &format!("fail-step={failing}"))]).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().expect("run id");
    assert!(failed.stderr.contains(&format!("dr rollback {run_id}")), "tells how to undo: {}", failed.stderr);
    let deleted = env.pvcs(CASSANDRA_NS).get_opt(&cassandra_claim(0)).await.expect("read claim 0");
    assert!(deleted.is_none(), "claim 0 was deleted before the injected failure");

    let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
    rolled_back.assert_success("dr rollback");

    let claims = env.claims(CASSANDRA_NS).await;
    for ordinal in 0..3 {
        let name = cassandra_claim(ordinal);
        let claim = claims.get(&name).unwrap_or_else(|| panic!("{name} is back"));
        assert_eq!(claim.phase, "Bound", "{name}: {claim:?}");
        assert_eq!(&claim.volume, &originals[&name], "{name} is bound to its original volume again");
        assert_eq!(claim.capacity, "2Gi", "{name} has its original size");
        assert_eq!(
            claim.data.as_deref(),
            Some(format!("cassandra-{ordinal}").as_str()),
            "{name} has its original data"
        );
    }
    for pv_name in originals.values() {
        let pv = env.pvs().get(pv_name).await.expect("original PV");
        let policy = pv.spec.and_then(|s| s.persistent_volume_reclaim_policy);
        assert_eq!(policy.as_deref(), Some("Delete"), "PV {pv_name} has its original reclaim policy again");
    }
    let snapshots = env.snapshots(CASSANDRA_NS).list(&Default::default()).await.expect("snapshots").items;
    assert!(snapshots.is_empty(), "the run's snapshots are removed: {snapshots:?}");
    let sts = env
        .eventually("cassandra ready at 3 replicas", std::time::Duration::from_secs(60), || async {
            let sts = env.statefulset(CASSANDRA_NS, "cassandra").await;
            let ready = sts.status.as_ref().and_then(|s| s.ready_replicas) == Some(3);
            if sts.spec.as_ref().and_then(|s| s.replicas) == Some(3) && ready {
                Ok(sts)
            } else {
                Err(format!("{:?}", sts.status))
            }
        })
        .await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(3));

    // The rollback is itself a run, and the original is marked rolled back.
    let record = env.run_record(&run_id);
    assert_eq!(record["status"], "rolled_back");
    assert_eq!(env.run_ids().len(), 2, "the apply and its rollback");
}
