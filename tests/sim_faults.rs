//! Fault injection (seeded, so runs repeat), watch stream cuts, added latency, and the audit
//! log of requests.

mod sim_common;

use std::time::{Duration, Instant};

use drplan::sim::{FaultRule, Faults, SimCluster, SimConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::json;

fn rule(verb: &str, resource: &str) -> FaultRule {
    FaultRule { verb: Some(verb.into()), resource: Some(resource.into()), ..FaultRule::default() }
}

async fn start(faults: Faults) -> (drplan::sim::SimHandle, kube::Client) {
    let config = SimConfig { paused: true, faults, ..SimConfig::default() };
    let sim = SimCluster::start(&[], config).await.unwrap();
    let client = sim.client().unwrap();
    (sim, client)
}

/// The status codes the sim answered 20 lists of config maps with, under a 50% 503 rule
/// with `seed`. kube-rs retries 503s, so every list still succeeds for the caller.
async fn failure_pattern(seed: u64) -> Vec<u16> {
    let faults =
        Faults { seed, rules: vec![FaultRule { status: Some(503), rate: Some(0.5), ..rule("list", "configmaps") }] };
    let (sim, client) = start(faults).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for _ in 0..20 {
        match api.list(&ListParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (503, "ServiceUnavailable"))
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    sim.requests().iter().filter(|r| r.verb == "list").map(|r| r.code).collect()
}

#[tokio::test]
async fn seeded_error_injection_repeats() {
    let first = failure_pattern(42).await;
    assert_eq!(first, failure_pattern(42).await, "same seed, same failures");
    let failures = first.iter().filter(|code| **code == 503).count();
    let share = failures as f64 / first.len() as f64;
    assert!((0.25..=0.75).contains(&share), "about half fail at rate 0.5, got {failures}/{}", first.len());
    assert_ne!(first, failure_pattern(43).await, "another seed, other failures");
}

#[tokio::test]
async fn conflicts_only_hit_the_matching_verb_and_resource() {
    let faults = Faults { seed: 1, rules: vec![FaultRule { status: Some(409), ..rule("create", "configmaps") }] };
    let (_sim, client) = start(faults).await;
    let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "x" } })).unwrap();
    let err =
        Api::<ConfigMap>::namespaced(client.clone(), "default").create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");
    let secret: Secret = serde_json::from_value(json!({ "metadata": { "name": "x" } })).unwrap();
    Api::<Secret>::namespaced(client, "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("other resources unaffected");
}

#[tokio::test]
async fn a_rule_with_times_fails_only_that_many_requests() {
    // A fault script, not a dice roll: the first two creates fail, every later one passes.
    let rule = FaultRule { status: Some(409), times: Some(2), ..rule("create", "configmaps") };
    let (sim, client) = start(Faults { seed: 1, rules: vec![rule] }).await;
    let api = Api::<ConfigMap>::namespaced(client, "default");
    let mut codes = Vec::new();
    for n in 0..4 {
        let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": format!("cm-{n}") } })).unwrap();
        codes.push(match api.create(&PostParams::default(), &cm).await {
            Ok(_) => 201,
            Err(kube::Error::Api(status)) => status.code,
            Err(other) => panic!("unexpected error {other}"),
        });
    }
    assert_eq!(codes, [409, 409, 201, 201]);
    let audited: Vec<u16> = sim.requests().iter().filter(|r| r.verb == "create").map(|r| r.code).collect();
    assert_eq!(audited, [409, 409, 201, 201]);
}

#[tokio::test]
async fn latency_is_added_and_watches_are_cut_after_n_events() {
    let faults = Faults {
        seed: 1,
        rules: vec![
            FaultRule { latency: Some(Duration::from_millis(150)), ..rule("get", "secrets") },
            FaultRule { watch_cut_after_events: Some(2), ..rule("watch", "configmaps") },
        ],
    };
    let (sim, client) = start(faults).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    assert!(secrets.get_opt("missing").await.unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(150), "latency injected");

    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["a", "b", "c"] {
        let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let stream = api.watch(&WatchParams::default().timeout(10), "0").await.unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(5), stream.try_collect::<Vec<_>>())
        .await
        .expect("the cut ends the stream")
        .unwrap();
    assert_eq!(events.len(), 2, "watch cut after two events");

    let requests = sim.requests();
    let creates = requests
        .iter()
        .filter(|r| r.verb == "create" && r.resource == "configmaps" && r.namespace == "default")
        .count();
    assert_eq!(creates, 3);
    let watch = requests.iter().find(|r| r.verb == "watch").expect("watch audited");
    assert_eq!((watch.resource.as_str(), watch.code), ("configmaps", 200));
    let missing = requests.iter().find(|r| r.verb == "get" && r.resource == "secrets").unwrap();
    assert_eq!((missing.name.as_str(), missing.code), ("missing", 404));
}

#[tokio::test]
async fn watch_from_an_expired_resource_version_reports_410() {
    let config = SimConfig { paused: true, watch_history: 2, ..SimConfig::default() };
    let sim = SimCluster::start(&[], config).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    for name in ["a", "b", "c", "d"] {
        let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut stream = api.watch(&WatchParams::default().timeout(5), "2").await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(kube::api::WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Expired, got {other:?}"),
    }
}

#[test]
fn faults_load_from_a_yaml_file() {
    let dir = sim_common::scratch_dir("faults");
    let path = dir.join("faults.yaml");
    std::fs::write(&path, "seed: 9\nrules:\n  - verb: patch\n    resource: statefulsets\n    status: 429\n    rate: 0.25\n    latency: 20ms\n").unwrap();
    let faults = drplan::sim::cli::load_faults(&path).unwrap();
    assert_eq!(faults.seed, 9);
    assert_eq!(faults.rules[0].status, Some(429));
    assert_eq!(faults.rules[0].latency, Some(Duration::from_millis(20)));
    std::fs::write(&path, "rules:\n  - verb: patch\n    colour: red\n").unwrap();
    assert!(drplan::sim::cli::load_faults(&path).unwrap_err().contains("colour"));
    std::fs::remove_dir_all(dir).ok();
}
