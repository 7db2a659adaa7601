//! Waits share one watch per kind and namespace: counted in the simulated cluster's
//! request log, for waits started directly and for a whole `dr apply`.

mod apply_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apply_common::{assert_cassandra_restored, env, fast_config, seed_cassandra};
use drplan::sim::{RequestRecord, SimCluster, SimConfig};
use drplan::steps::kube::watches::SharedWatches;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn watches_by_collection(requests: &[RequestRecord]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in requests.iter().filter(|r| r.verb == "watch") {
        *counts.entry((r.resource.clone(), r.namespace.clone())).or_insert(0) += 1;
    }
    counts
}

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waits_on_claims_in_one_namespace_open_one_watch() {
    let manifests = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans/ebs-cassandra-restore");
    let sim = SimCluster::start(&[manifests], SimConfig::default()).await.unwrap();
    let client = sim.client().unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "cassandra");
    let watches = Arc::new(SharedWatches::default());
    let waits = 12;
    let labelled = |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|o| o.metadata.labels.as_ref()).and_then(|l| l.get("restored")).map(String::as_str) == Some("yes")
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..waits {
        let (watches, claims) = (watches.clone(), claims.clone());
        tasks.spawn(async move { watches.until_named("primary", &claims, &format!("claim-{i}"), labelled).await });
    }
    for i in 0..waits {
        claims.create(&PostParams::default(), &claim(&format!("claim-{i}"))).await.unwrap();
    }
    let label = Patch::Merge(json!({ "metadata": { "labels": { "restored": "yes" } } }));
    for i in 0..waits {
        claims.patch(&format!("claim-{i}"), &PatchParams::default(), &label).await.unwrap();
    }
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut answered = 0;
        while let Some(joined) = tasks.join_next().await {
            let object = joined.unwrap().expect("the wait ends without error");
            assert!(labelled(object.as_ref()), "each wait returns its object as it met the condition");
            answered += 1;
        }
        answered
    })
    .await
    .expect("every wait sees its claim labelled");
    assert_eq!(answered, waits);
    let counts = watches_by_collection(&sim.requests());
    assert_eq!(
        counts.get(&("persistentvolumeclaims".to_string(), "cassandra".to_string())),
        Some(&1),
        "{waits} waits share one watch: {counts:?}"
    );
    assert_eq!(watches.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_apply_opens_at_most_one_watch_per_kind_and_namespace() {
    let env = env("ebs-cassandra-restore", "shared-watches", fast_config()).await;
    let originals = seed_cassandra(&env).await;
    let before = env.sim.requests().len();
    env.apply(&[]).await.assert_success("dr apply");
    assert_cassandra_restored(&env, &originals).await;
    let counts = watches_by_collection(&env.sim.requests()[before..]);
    assert!(!counts.is_empty(), "the waits watch");
    assert!(counts.values().all(|n| *n == 1), "one watch per kind and namespace: {counts:?}");
}
