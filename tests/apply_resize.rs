//! `resizePvc` with `onRateLimit: restoreBigger` against the simulated cluster: claims
//! the provider grows in place keep their volumes and skip the fallback; a claim the
//! provider refuses with `VolumeModificationRateExceeded` is restored from a snapshot
//! into a bigger volume, with its data, its original volume retained.

mod apply_common;

use std::time::Duration;

use apply_common::{CASSANDRA_NS, Env, cassandra_claim, env, fast_config, seed_cassandra};
use drplan::sim::config::ModificationLimit;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const PLAN: &str = "ebs-cassandra-grow";

/// Grows a claim outside drplan (an earlier resize today) and waits until it took effect.
async fn grow_beforehand(env: &Env, claim: &str, size: &str) {
    let patch = Patch::Merge(json!({ "spec": { "resources": { "requests": { "storage": size } } } }));
    env.pvcs(CASSANDRA_NS).patch(claim, &PatchParams::default(), &patch).await.expect("claim patched");
    env.eventually(&format!("{claim} at {size}"), Duration::from_secs(30), || async {
        let capacity = env.claims(CASSANDRA_NS).await[claim].capacity.clone();
        if capacity == size { Ok(()) } else { Err(capacity) }
    })
    .await;
}

/// A cluster where EBS allows one modification per volume per day, seeded with each
/// replica's data, and claim 1 already grown to 3Gi today: its next resize is refused.
/// Returns the env, the original PV of each claim, and the refused claim.
async fn claim_1_modified_today(label: &str) -> (Env, std::collections::BTreeMap<String, String>, String) {
    let limit = ModificationLimit { max: 1, window: Duration::from_secs(24 * 3600) };
    let env = env(PLAN, label, drplan::sim::SimConfig { modification_limit: limit, ..fast_config() }).await;
    let originals = seed_cassandra(&env).await;
    let refused = cassandra_claim(1);
    grow_beforehand(&env, &refused, "3Gi").await;
    (env, originals, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resize_restores_that_claim_bigger_and_the_others_grow_in_place() {
    let (env, originals, refused) = claim_1_modified_today("grow-refused").await;

    let result = env.apply(&[]).await;
    result.assert_success("dr apply");
    let logs = env.dump_logs(&result);

    let claims = env.claims(CASSANDRA_NS).await;
    for (ordinal, (name, claim)) in claims.iter().enumerate() {
        assert_eq!((claim.phase.as_str(), claim.capacity.as_str()), ("Bound", "4Gi"), "{name}: {claim:?}\n{logs}");
        assert_eq!(claim.data.as_deref(), Some(format!("cassandra-{ordinal}").as_str()), "{name} lost its data");
        let same_volume = claim.volume == originals[name];
        assert_eq!(same_volume, *name != refused, "{name}: only the refused claim moves to a new volume\n{logs}");
    }
    // The refused claim's original volume survives, retained, until the run is committed.
    let original = env.pvs().get(&originals[&refused]).await.expect("original PV of the refused claim");
    assert_eq!(original.spec.unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    // Exactly one snapshot: the fallback of the refused claim; the others skipped theirs.
    let snapshots = env.snapshots(CASSANDRA_NS).list(&Default::default()).await.expect("snapshots").items;
    let sources: Vec<_> =
        snapshots.iter().map(|s| s.data["spec"]["source"]["persistentVolumeClaimName"].clone()).collect();
    assert_eq!(sources, [json!(refused)], "{logs}");
    assert!(result.stderr.contains("- grow-0/scale-down (skipped: not needed)"), "{logs}");
    assert!(result.stderr.contains("✓ grow-1/restore-cassandra-data-cassandra-1"), "{logs}");
    let sts = env.statefulset(CASSANDRA_NS, "cassandra").await;
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_grown_in_place_never_stop_the_workload_and_replanning_finds_nothing_to_do() {
    let env = env(PLAN, "grow-in-place", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    let plan = env.plan.to_string_lossy().into_owned();

    let planned = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(planned.code, Some(2), "changes pending\n{}", env.dump_logs(&planned));
    assert!(planned.stdout.contains("30 more only if a fallback is needed"), "{}", planned.stdout);
    assert!(planned.stdout.contains("if fallbacks run: 3 more to create"), "{}", planned.stdout);

    let requests_before = env.sim.requests().len();
    let result = env.apply(&[]).await;
    result.assert_success("dr apply");
    let claims = env.claims(CASSANDRA_NS).await;
    for (name, claim) in &claims {
        assert_eq!(claim.capacity, "4Gi", "{name}: {claim:?}");
        assert_eq!(&claim.volume, &originals[name], "{name} grew in place, on its own volume");
    }
    let scaled: Vec<_> = env.sim.requests()[requests_before..]
        .iter()
        .filter(|r| r.resource.contains("statefulsets") && !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .cloned()
        .collect();
    assert!(scaled.is_empty(), "the StatefulSet was written: {scaled:?}");
    assert!(env.snapshots(CASSANDRA_NS).list(&Default::default()).await.unwrap().items.is_empty());

    let replanned = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(replanned.code, Some(0), "nothing left to do\n{}", env.dump_logs(&replanned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_inside_a_fallback_rebinds_the_refused_claim_to_its_original_volume() {
    let (env, originals, refused) = claim_1_modified_today("grow-rollback").await;
    // The fallback fails after deleting the refused claim, before restoring it.
    let failing = format!("grow-1/restore-{refused}");
    let failed = env.apply(&[("DRPLAN_FAILPOINT", &format!("fail-step={failing}"))]).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    assert!(env.pvcs(CASSANDRA_NS).get_opt(&refused).await.unwrap().is_none(), "deleted before the failure");
    let run_id = failed.run_id().expect("run id");

    env.dr(&["rollback", &run_id], &[]).await.assert_success("dr rollback");

    // The refused claim asked for 4Gi when it was deleted; it comes back at what its
    // volume holds, bound to that volume, with its data.
    let claims = env.claims(CASSANDRA_NS).await;
    let back = &claims[&refused];
    assert_eq!((back.phase.as_str(), back.capacity.as_str()), ("Bound", "3Gi"), "{back:?}");
    assert_eq!(&back.volume, &originals[&refused]);
    assert_eq!(back.data.as_deref(), Some("cassandra-1"));
    // Claim 0 grew in place before the failure: a resize is not undone (claims only grow).
    assert_eq!(claims[&cassandra_claim(0)].capacity, "4Gi");
    assert_eq!(claims[&cassandra_claim(2)].capacity, "2Gi", "grow-2 never ran");
    let sts = env
        .eventually("cassandra back at 3 ready replicas", Duration::from_secs(60), || async {
            let sts = env.statefulset(CASSANDRA_NS, "cassandra").await;
            let ready = sts.status.as_ref().and_then(|s| s.ready_replicas);
            if ready == Some(3) { Ok(sts) } else { Err(format!("{ready:?}")) }
        })
        .await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(3));
}
