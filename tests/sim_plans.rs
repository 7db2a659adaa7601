//! The example clusters under `plans/` (state dumps as `kubectl get -o yaml` writes them)
//! load into the simulated cluster and reach the states they describe: every pod Running,
//! every claim Bound, every StatefulSet and Deployment fully ready.

mod sim_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use sim_common::paused_config;

/// Each cluster of each example: `plans/<example>/` or, for multi-cluster examples,
/// `plans/<example>/<cluster>/`.
fn example_clusters() -> Vec<PathBuf> {
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut clusters = Vec::new();
    let mut examples: Vec<PathBuf> =
        std::fs::read_dir(&plans).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    examples.sort();
    for example in examples {
        let mut subdirs: Vec<PathBuf> =
            std::fs::read_dir(&example).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        subdirs.sort();
        if subdirs.is_empty() { clusters.push(example) } else { clusters.extend(subdirs) }
    }
    clusters
}

/// Asserts the settled state; returns (pods, pods the workloads ask for, claims).
async fn assert_cluster_settled(client: &kube::Client, cluster: &str) -> (usize, usize, usize) {
    let all = ListParams::default();
    let pods = Api::<Pod>::all(client.clone()).list(&all).await.unwrap().items;
    for pod in &pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        assert_eq!(phase.as_deref(), Some("Running"), "{cluster}: pod {:?} {:?}", pod.metadata.name, pod.status);
    }
    let claims = Api::<PersistentVolumeClaim>::all(client.clone()).list(&all).await.unwrap().items;
    for claim in &claims {
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
        assert_eq!(phase.as_deref(), Some("Bound"), "{cluster}: claim {:?}", claim.metadata.name);
    }
    let bare_pods = pods.iter().filter(|p| p.metadata.owner_references.as_ref().is_none_or(Vec::is_empty)).count();
    let mut wanted_pods = bare_pods;
    for sts in Api::<StatefulSet>::all(client.clone()).list(&all).await.unwrap().items {
        let wanted = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        wanted_pods += wanted as usize;
        let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        assert_eq!(ready, wanted, "{cluster}: statefulset {:?}", sts.metadata.name);
    }
    for deploy in Api::<Deployment>::all(client.clone()).list(&all).await.unwrap().items {
        let wanted = deploy.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        wanted_pods += wanted as usize;
        let ready = deploy.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        assert_eq!(ready, wanted, "{cluster}: deployment {:?}", deploy.metadata.name);
    }
    (pods.len(), wanted_pods, claims.len())
}

#[tokio::test]
async fn example_clusters_load_and_reach_running_and_bound() {
    let clusters = example_clusters();
    assert!(clusters.len() >= 6, "expected the example clusters under plans/, found {clusters:?}");
    let (mut running_pods, mut clusters_with_claims) = (0, 0);
    for cluster in clusters {
        let name = cluster.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&cluster).display().to_string();
        let sim = drplan::sim::SimCluster::start(std::slice::from_ref(&cluster), paused_config())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        sim.advance(Duration::from_secs(600));
        let (pods, wanted_pods, claims) = assert_cluster_settled(&sim.client().unwrap(), &name).await;
        assert_eq!(pods, wanted_pods, "{name}: one pod per replica, none extra");
        // A DR cluster a plan restores into may start without claims (the plan binds them).
        clusters_with_claims += usize::from(claims > 0);
        running_pods += pods;
    }
    assert!(clusters_with_claims >= 6, "the example clusters hold claims, {clusters_with_claims} do");
    assert!(running_pods > 10, "the examples run workloads, found {running_pods} pods");
}
