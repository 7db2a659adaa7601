//! Simulated-cluster scale benchmark: 1,000 StatefulSets × 10 replicas (10,000 pods, PVCs
//! and pre-bound PVs, as a state dump would hold them), then the latency of listing all
//! PVCs through the HTTP API (raw bytes and typed through `kube::Client`) and the memory held.
//!
//! Run: `cargo bench --bench sim_list` (`-- --quick` for 1/10th of the objects).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use drplan::sim::manifests::ManifestObject;
use drplan::sim::{SimCluster, SimConfig};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const NAMESPACES: usize = 100;
const REPLICAS: usize = 10;

fn object(value: Value) -> ManifestObject {
    ManifestObject { origin: "generated".into(), object: value }
}

/// One StatefulSet with its claims and their PVs, pre-bound like a dump of a running cluster.
fn statefulset_with_volumes(ns: &str, name: &str, objects: &mut Vec<ManifestObject>) {
    objects.push(object(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "replicas": REPLICAS, "serviceName": name, "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } }, "spec": { "containers": [{ "name": "db", "image": "cassandra:4.1" }] } },
            "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": { "requests": { "storage": "10Gi" } } } }],
        },
    })));
    for ordinal in 0..REPLICAS {
        let claim = format!("data-{name}-{ordinal}");
        let uid = format!("00000000-0000-4000-8000-{:012x}", objects.len());
        let pv = format!("pvc-{uid}");
        objects.push(object(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": claim, "namespace": ns, "uid": uid, "labels": { "app": name } },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeName": pv, "resources": { "requests": { "storage": "10Gi" } } },
        })));
        objects.push(object(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": { "name": pv, "labels": { "topology.kubernetes.io/zone": "us-east-1a" } },
            "spec": {
                "capacity": { "storage": "10Gi" }, "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                "persistentVolumeReclaimPolicy": "Delete",
                "csi": { "driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{:017x}", objects.len()) },
                "claimRef": { "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": uid },
            },
        })));
    }
}

fn generate(statefulsets: usize) -> Vec<ManifestObject> {
    let mut objects = vec![object(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": { "name": "gp3" },
        "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true,
    }))];
    for i in 0..statefulsets {
        let ns = format!("tenant-{:03}", i % NAMESPACES);
        statefulset_with_volumes(&ns, &format!("db-{i:04}"), &mut objects);
    }
    objects
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<44} p50 {:>8.2?}  p99 {:>8.2?}  ({} runs)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
    );
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let statefulsets = if quick { 100 } else { 1_000 };
    let before = resident_mib();
    let objects = generate(statefulsets);
    let started = Instant::now();
    let config = SimConfig { paused: true, pod_ready_after: Duration::ZERO, ..SimConfig::default() };
    let sim = SimCluster::start_with_objects(SocketAddr::from(([127, 0, 0, 1], 0)), objects, config, false)
        .await
        .expect("sim starts");
    let load_time = started.elapsed();
    let (claims, pods) = sim.with_state(|s| {
        (s.store.count(&drplan::sim::registry::keys::pvcs()), s.store.count(&drplan::sim::registry::keys::pods()))
    });
    println!("loaded {statefulsets} StatefulSets, {claims} PVCs (+PVs), {pods} pods in {load_time:.2?}");
    println!("resident memory: {:.0} MiB (+{:.0} MiB for the cluster)", resident_mib(), resident_mib() - before);

    let mut samples = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let bytes = sim.with_state(|s| {
            let items = s.store.list(&drplan::sim::registry::keys::pvcs(), None);
            items.iter().map(|o| serde_json::to_vec(&**o).map_or(0, |v| v.len())).sum::<usize>()
        });
        assert!(bytes > 0);
        samples.push(start.elapsed());
    }
    report("serialize all PVCs afresh (the cache avoids it)", samples);

    let client = sim.client().expect("client");
    let raw = || async {
        let request = hyper::Request::get("/api/v1/persistentvolumeclaims").body(Vec::new()).unwrap();
        client.request_text(request).await.expect("list").len()
    };
    let bytes = raw().await;
    let mut samples = Vec::new();
    for _ in 0..if quick { 20 } else { 50 } {
        let start = Instant::now();
        raw().await;
        samples.push(start.elapsed());
    }
    report(&format!("list all PVCs, HTTP bytes ({} MiB)", bytes >> 20), samples);

    let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut samples = Vec::new();
    for _ in 0..if quick { 10 } else { 20 } {
        let start = Instant::now();
        let list = api.list(&ListParams::default()).await.expect("typed list");
        assert_eq!(list.items.len(), claims);
        samples.push(start.elapsed());
    }
    report("list all PVCs, typed via kube::Client", samples);

    let selected: Api<PersistentVolumeClaim> = Api::namespaced(client, "tenant-007");
    let mut samples = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        selected.list(&ListParams::default().labels("app=db-0007")).await.expect("selected list");
        samples.push(start.elapsed());
    }
    report("list one namespace by label selector", samples);
}
