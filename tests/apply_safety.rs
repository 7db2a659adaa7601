//! `dr apply` under adverse conditions: injected API errors, a concurrent apply of the
//! same plan, and live state that makes the plan unsafe.

mod apply_common;

use std::time::Duration;

use apply_common::{
    CASSANDRA_NS, KillOnDrop, assert_cassandra_restored, cassandra_claim, env, fast_config, path_str, seed_cassandra,
    wait_child,
};
use drplan::sim::{FaultRule, Faults, SimConfig};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_completes_through_injected_conflicts_throttling_and_server_errors() {
    // About 10% of all requests fail: a third each with 409, 429 and 500. The faults are
    // switched on only while `dr apply` runs, so the test's own reads are exact.
    let rules: Vec<FaultRule> = [409, 429, 500]
        .into_iter()
        .map(|status| FaultRule { status: Some(status), rate: Some(0.034), ..FaultRule::default() })
        .collect();
    let config = SimConfig { faults: Faults { seed: 42, rules: Vec::new() }, ..fast_config() };
    let env = env("ebs-cassandra-restore", "faults", config).await;
    let originals = seed_cassandra(&env).await;
    env.sim.with_state(|s| s.config.faults.rules = rules);
    let result = env.apply(&[]).await;
    env.sim.with_state(|s| s.config.faults.rules.clear());
    result.assert_success("dr apply with faults");
    let failed = env.sim.requests().iter().filter(|r| matches!(r.code, 409 | 429 | 500)).count();
    assert!(failed >= 5, "faults were injected ({failed})");
    assert_cassandra_restored(&env, &originals).await;
    let lp = ListParams::default();
    assert_eq!(env.snapshots(CASSANDRA_NS).list(&lp).await.unwrap().items.len(), 3);
    assert_eq!(env.pvcs(CASSANDRA_NS).list(&lp).await.unwrap().items.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_apply_fails_naming_the_lock_holder() {
    // Paused clock: whichever apply gets the lock holds it while it waits for pods and
    // snapshots, which only happens once the test lets time run.
    let env = env("ebs-cassandra-restore", "concurrent", SimConfig { paused: true, ..fast_config() }).await;
    let originals = seed_cassandra(&env).await;
    let plan = path_str(&env.plan);
    let args = ["apply", plan.as_str(), "--auto-approve"];
    let mut children = [KillOnDrop(Some(env.spawn(&args, &[]))), KillOnDrop(Some(env.spawn(&args, &[])))];
    let pids = children.each_ref().map(|c| c.0.as_ref().unwrap().id());
    let loser = env
        .eventually("one apply exits", Duration::from_secs(60), || {
            let exited = children.iter_mut().position(|c| c.0.as_mut().unwrap().try_wait().unwrap().is_some());
            async move { exited.ok_or_else(|| "both still running".to_string()) }
        })
        .await;
    let winner = 1 - loser;
    let [first, second] = children;
    let (loser_child, mut winner_child) = if loser == 0 { (first, second) } else { (second, first) };
    let lost = wait_child(loser_child).await;
    assert_eq!(lost.code, Some(1), "{}", env.dump_logs(&lost));
    assert!(lost.stderr.contains("is locked by"), "{}", env.dump_logs(&lost));
    assert!(lost.stderr.contains(&format!("(pid {} on ", pids[winner])), "names the holder: {}", lost.stderr);
    assert!(lost.run_id().is_none(), "the loser started no run: {}", lost.stderr);
    assert!(winner_child.0.as_mut().unwrap().try_wait().unwrap().is_none(), "the winner is still running");
    assert_eq!(env.run_ids().len(), 1);

    env.sim.resume();
    let won = wait_child(winner_child).await;
    won.assert_success("the winning dr apply");
    assert_cassandra_restored(&env, &originals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_still_used_by_a_pod_outside_the_plan_stops_the_run_before_any_deletion() {
    let env = env("ebs-cassandra-restore", "unsafe", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    // A Deployment the plan knows nothing about mounts cassandra-0's claim.
    let intruder: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "backup-agent", "namespace": CASSANDRA_NS },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "backup-agent" } },
            "template": {
                "metadata": { "labels": { "app": "backup-agent" } },
                "spec": {
                    "containers": [{ "name": "agent", "image": "busybox:1.36",
                        "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                    "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": cassandra_claim(0) } }],
                },
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(env.client.clone(), CASSANDRA_NS)
        .create(&PostParams::default(), &intruder)
        .await
        .expect("intruder created");
    env.eventually("the intruder's pod exists", Duration::from_secs(30), || async {
        let pods = env.pods(CASSANDRA_NS).await;
        let found = pods.iter().any(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with("backup-agent-")));
        if found { Ok(()) } else { Err("no backup-agent pod".to_string()) }
    })
    .await;

    let result = env.apply(&[]).await;
    assert_eq!(result.code, Some(1), "{}", env.dump_logs(&result));
    let claim = cassandra_claim(0);
    assert!(
        result.stderr.contains(&format!("PVC {CASSANDRA_NS}/{claim}")) && result.stderr.contains("backup-agent-"),
        "the message names the claim and the pod using it:\n{}",
        result.stderr
    );
    let deletions: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.verb == "delete" && r.resource == "persistentvolumeclaims")
        .collect();
    assert!(deletions.is_empty(), "no claim may be deleted: {deletions:?}");
    let claims = env.claims(CASSANDRA_NS).await;
    for (ordinal, (name, state)) in claims.iter().enumerate() {
        assert_eq!(state.volume, originals[name], "{name} still on its original volume");
        assert_eq!(state.data.as_deref(), Some(format!("cassandra-{ordinal}").as_str()));
    }
    assert_eq!(claims.len(), 3);
}
