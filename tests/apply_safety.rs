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
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_completes_through_injected_conflicts_throttling_and_server_errors() {
    // About 10% of all requests fail: a third each with 409, 429 and 500. The faults are
    // switched on only while `dr apply` runs, so the test's own reads are exact.
    // On top, the first two creates of snapshots (500) and of claims (409) fail, so that the
    // retry of a create is exercised in every run. A script rather than a 50% rate: a step
    // retries 8 times, and a coin flipped on every attempt lost all 8 often enough to make
    // this test fail about one run in ten.
    let mut rules: Vec<FaultRule> = [409, 429, 500]
        .into_iter()
        .map(|status| FaultRule { status: Some(status), rate: Some(0.034), ..FaultRule::default() })
        .collect();
    for (resource, status) in [("volumesnapshots", 500), ("persistentvolumeclaims", 409)] {
        let (verb, resource) = (Some("create".to_string()), Some(resource.to_string()));
        rules.push(FaultRule { verb, resource, status: Some(status), times: Some(2), ..FaultRule::default() });
    }
    let config = SimConfig { faults: Faults { seed: 42, rules: Vec::new() }, ..fast_config() };
    let env = env("ebs-cassandra-restore", "faults", config).await;
    let originals = seed_cassandra(&env).await;
    env.sim.with_state(|s| s.config.faults.rules = rules);
    let result = env.apply(&[]).await;
    env.sim.with_state(|s| s.config.faults.rules.clear());
    result.assert_success("dr apply with faults");
    let requests = env.sim.requests();
    let failed = requests.iter().filter(|r| matches!(r.code, 409 | 429 | 500)).count();
    assert!(failed > 0, "faults were injected");
    for (resource, status) in [("volumesnapshots", 500), ("persistentvolumeclaims", 409)] {
        let failed_creates =
            requests.iter().filter(|r| r.verb == "create" && r.resource == resource && r.code == status).count();
        assert!(failed_creates >= 2, "the scripted create failures of {resource} happened: {failed_creates}");
    }
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
    // The winner records its run right after taking the lock; the loser recorded none.
    let runs = env
        .eventually("the winner's run is recorded", Duration::from_secs(30), || async {
            let runs = env.run_ids();
            if runs.is_empty() { Err("no run yet".to_string()) } else { Ok(runs) }
        })
        .await;
    assert_eq!(runs.len(), 1, "{runs:?}");

    env.sim.resume();
    let won = wait_child(winner_child).await;
    won.assert_success("the winning dr apply");
    assert_cassandra_restored(&env, &originals).await;
}

/// Applies the EBS example while `user` (created first) mounts cassandra-0's claim:
/// the run must refuse before deleting any claim, naming the claim and `user_name`.
async fn apply_with_foreign_user_of_claim(label: &str, create_user: impl AsyncFnOnce(&kube::Client), user_name: &str) {
    let env = env("ebs-cassandra-restore", label, fast_config()).await;
    let originals = seed_cassandra(&env).await;
    create_user(&env.client).await;
    env.eventually("the foreign pod exists", Duration::from_secs(30), || async {
        let pods = env.pods(CASSANDRA_NS).await;
        let found = pods.iter().any(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with(user_name)));
        if found { Ok(()) } else { Err(format!("no {user_name} pod")) }
    })
    .await;

    let result = env.apply(&[]).await;
    assert_eq!(result.code, Some(1), "{}", env.dump_logs(&result));
    let claim = cassandra_claim(0);
    assert!(
        result.stderr.contains(&claim) && result.stderr.contains(user_name),
        "the message names the claim and what uses it:\n{}",
        result.stderr
    );
    assert!(result.run_id().is_none(), "no run started:\n{}", result.stderr);
    let deletions: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.verb == "delete" && r.resource == "persistentvolumeclaims")
        .collect();
    assert!(deletions.is_empty(), "no claim may be deleted: {deletions:?}");
    let claims = env.claims(CASSANDRA_NS).await;
    assert_eq!(claims.len(), 3);
    for (ordinal, (name, state)) in claims.iter().enumerate() {
        assert_eq!(state.volume, originals[name], "{name} still on its original volume");
        assert_eq!(state.data.as_deref(), Some(format!("cassandra-{ordinal}").as_str()));
    }
    let sts = env.statefulset(CASSANDRA_NS, "cassandra").await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(3), "nothing was scaled down either");
}

fn pod_spec_mounting(claim: &str) -> serde_json::Value {
    json!({
        "containers": [{ "name": "agent", "image": "busybox:1.36", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
        "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_used_by_a_deployment_outside_the_plan_stops_the_apply_before_any_deletion() {
    let create = async |client: &kube::Client| {
        let intruder: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "backup-agent", "namespace": CASSANDRA_NS },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "backup-agent" } },
                "template": { "metadata": { "labels": { "app": "backup-agent" } }, "spec": pod_spec_mounting(&cassandra_claim(0)) },
            },
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), CASSANDRA_NS)
            .create(&PostParams::default(), &intruder)
            .await
            .unwrap();
    };
    apply_with_foreign_user_of_claim("unsafe-deploy", create, "backup-agent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_used_by_a_bare_pod_stops_the_apply_before_any_deletion() {
    let create = async |client: &kube::Client| {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "debug-shell", "namespace": CASSANDRA_NS },
            "spec": pod_spec_mounting(&cassandra_claim(0)),
        }))
        .unwrap();
        Api::<Pod>::namespaced(client.clone(), CASSANDRA_NS).create(&PostParams::default(), &pod).await.unwrap();
    };
    apply_with_foreign_user_of_claim("unsafe-pod", create, "debug-shell").await;
}

/// A saved plan is refused when an object it read changed since, naming the object and
/// how; nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_saved_plan_is_refused_naming_what_changed() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::{Patch, PatchParams};
    let env = env("ebs-cassandra-restore", "stale", fast_config()).await;
    let saved = env.dir.join("plan.json");
    let plan = env.plan.to_string_lossy().into_owned();
    let planned = env.dr(&["plan", &plan, "--out", saved.to_str().unwrap()], &[]).await;
    assert_eq!(planned.code, Some(2), "changes pending: {}", planned.stderr);
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), CASSANDRA_NS);
    let label = Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } }));
    statefulsets.patch("cassandra", &PatchParams::default(), &label).await.expect("label cassandra");
    let requests_before = env.sim.requests().len();

    let applied = env.dr(&["apply", saved.to_str().unwrap()], &[]).await;
    assert_eq!(applied.code, Some(1), "{}", applied.stderr);
    assert!(applied.stderr.contains("the saved plan is stale"), "{}", applied.stderr);
    assert!(
        applied.stderr.contains("StatefulSet cassandra/cassandra [primary] changed (resourceVersion"),
        "{}",
        applied.stderr
    );
    let writes = env.sim.requests()[requests_before..]
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .count();
    assert_eq!(writes, 0, "a stale plan changes nothing");
    assert!(env.run_ids().is_empty(), "no run was started");
}
