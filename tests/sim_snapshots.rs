//! Snapshots, restores and expansion in the simulated cluster, through `kube::Client` with a
//! paused clock: readiness delays, data carried from volume to snapshot to restored volume,
//! restore size checks, and the EBS-like modification rate limit.

mod sim_common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use sim_common::{fixture, start};

fn snapshots(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
        "volumesnapshots",
    );
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn snapshot_of(name: &str, claim: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": { "name": name },
        "spec": { "volumeSnapshotClassName": "ebs-snapshots", "source": { "persistentVolumeClaimName": claim } },
    }))
    .unwrap()
}

fn restored_claim(name: &str, snapshot: &str, size: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3-retain",
            "resources": { "requests": { "storage": size } },
            "dataSource": { "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot },
        },
    }))
    .unwrap()
}

async fn ready(api: &Api<DynamicObject>, name: &str) -> Value {
    api.get(name).await.unwrap().data["status"]["readyToUse"].clone()
}

/// Scales the fixture's StatefulSet to zero so its claims can be deleted and replaced.
async fn scale_to_zero(client: &kube::Client) {
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
    sts.patch_scale("cassandra", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 0 } })))
        .await
        .unwrap();
}

#[tokio::test]
async fn snapshot_becomes_ready_after_the_class_delay_on_the_paused_clock() {
    let started = Instant::now();
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let api = snapshots(&client, "db");
    api.create(&PostParams::default(), &snapshot_of("snap-0", "cassandra-data-cassandra-0")).await.unwrap();
    let created = api.get("snap-0").await.unwrap();
    let content_name = created.data["status"]["boundVolumeSnapshotContentName"].as_str().unwrap().to_string();
    assert_eq!(content_name, format!("snapcontent-{}", created.metadata.uid.unwrap()));
    assert_eq!(created.data["status"]["restoreSize"], "10Gi");
    assert_eq!(ready(&api, "snap-0").await, false);
    sim.advance(Duration::from_secs(29));
    assert_eq!(ready(&api, "snap-0").await, false, "the class says 30s");
    sim.advance(Duration::from_secs(1));
    assert_eq!(ready(&api, "snap-0").await, true);
    assert!(started.elapsed() < Duration::from_secs(5), "paused time makes the 30s wait instant");
}

#[tokio::test]
async fn snapshot_of_a_missing_claim_reports_an_error() {
    let (_sim, client) = start(&[fixture("cassandra")]).await;
    let api = snapshots(&client, "db");
    api.create(&PostParams::default(), &snapshot_of("orphan", "no-such-claim")).await.unwrap();
    let status = api.get("orphan").await.unwrap().data["status"].clone();
    assert_eq!(status["readyToUse"], false);
    let message = status["error"]["message"].as_str().unwrap();
    assert!(message.contains("persistentvolumeclaims \"no-such-claim\" not found"), "{message}");
}

#[tokio::test]
async fn restore_from_snapshot_carries_the_data() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    sim.write_claim_data("db", "cassandra-data-cassandra-0", "cassandra-0").unwrap();
    // Directories and files (what commands in pods see) travel with the payload.
    let write_file = |text: &str| {
        sim.with_state(|state| {
            let id = state.claim_volume_id("db", "cassandra-data-cassandra-0").unwrap();
            let files = &mut state.volumes.get_mut(&id).unwrap().files;
            files.mkdir("data", true).unwrap();
            files.write("data/commitlog", text.as_bytes().to_vec()).unwrap();
        })
    };
    write_file("before");
    let snaps = snapshots(&client, "db");
    snaps.create(&PostParams::default(), &snapshot_of("snap-0", "cassandra-data-cassandra-0")).await.unwrap();
    sim.advance(Duration::from_secs(30));
    assert_eq!(ready(&snaps, "snap-0").await, true);
    sim.write_claim_data("db", "cassandra-data-cassandra-0", "changed after the snapshot").unwrap();
    write_file("after");

    scale_to_zero(&client).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "db");
    claims.delete("cassandra-data-cassandra-0", &DeleteParams::default()).await.unwrap();
    assert!(claims.get_opt("cassandra-data-cassandra-0").await.unwrap().is_none());

    claims
        .create(&PostParams::default(), &restored_claim("cassandra-data-cassandra-0", "snap-0", "10Gi"))
        .await
        .unwrap();
    let restored = claims.get("cassandra-data-cassandra-0").await.unwrap();
    assert_eq!(restored.status.unwrap().phase.as_deref(), Some("Bound"));
    assert_eq!(sim.read_claim_data("db", "cassandra-data-cassandra-0").unwrap(), b"cassandra-0");
    let file = sim.with_state(|state| {
        let id = state.claim_volume_id("db", "cassandra-data-cassandra-0").unwrap();
        state.volumes[&id].files.read("data/commitlog").map(<[u8]>::to_vec)
    });
    assert_eq!(file.as_deref(), Ok(&b"before"[..]), "the snapshot's files, not the later ones");
}

#[tokio::test]
async fn restore_smaller_than_the_snapshot_stays_pending_with_an_event() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let snaps = snapshots(&client, "db");
    snaps.create(&PostParams::default(), &snapshot_of("snap-1", "cassandra-data-cassandra-1")).await.unwrap();
    sim.advance(Duration::from_secs(30));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "db");
    claims.create(&PostParams::default(), &restored_claim("too-small", "snap-1", "5Gi")).await.unwrap();
    sim.advance(Duration::from_secs(60));
    let claim = claims.get("too-small").await.unwrap();
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Pending"));
    let events = sim.events_for("db", "too-small");
    let failure = events.iter().find(|e| e["reason"] == "ProvisioningFailed").expect("ProvisioningFailed event");
    assert_eq!(failure["type"], "Warning");
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains("requested volume size 5368709120 is less than the size 10737418240"), "{message}");

    // A big enough restore of the same snapshot works.
    claims.create(&PostParams::default(), &restored_claim("big-enough", "snap-1", "20Gi")).await.unwrap();
    assert_eq!(claims.get("big-enough").await.unwrap().status.unwrap().phase.as_deref(), Some("Bound"));
}

fn condition_messages(claim: &PersistentVolumeClaim) -> Vec<String> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.message)
        .collect()
}

#[tokio::test]
async fn expansion_grows_capacity_until_the_modification_rate_limit() {
    let mut config = sim_common::paused_config();
    config.modification_limit = drplan::sim::ModificationLimit { max: 2, window: Duration::from_secs(6 * 3600) };
    let sim = drplan::sim::SimCluster::start(&[fixture("cassandra")], config).await.unwrap();
    let client = sim.client().unwrap();
    sim.advance(Duration::from_secs(60));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, "db");
    let grow = |size: &str| Patch::Merge(json!({ "spec": { "resources": { "requests": { "storage": size } } } }));
    let name = "cassandra-data-cassandra-0";

    let shrink = claims.patch(name, &PatchParams::default(), &grow("5Gi")).await.unwrap_err();
    assert!(
        matches!(shrink, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("field can not be less than previous value")),
        "{shrink:?}"
    );

    for size in ["20Gi", "30Gi"] {
        claims.patch(name, &PatchParams::default(), &grow(size)).await.unwrap();
        sim.advance(Duration::from_secs(10));
        let capacity = claims.get(name).await.unwrap().status.unwrap().capacity.unwrap()["storage"].0.clone();
        assert_eq!(capacity, size);
    }
    claims.patch(name, &PatchParams::default(), &grow("40Gi")).await.unwrap();
    sim.advance(Duration::from_secs(10));
    let limited = claims.get(name).await.unwrap();
    assert_eq!(limited.status.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0, "30Gi");
    assert!(condition_messages(&limited).iter().any(|m| m.contains("VolumeModificationRateExceeded")));
    assert!(sim.events_for("db", name).iter().any(|e| e["reason"] == "VolumeResizeFailed" && e["type"] == "Warning"));

    // Once the configured window has passed since the first modification, the resize goes through.
    sim.advance(Duration::from_secs(6 * 3600));
    let grown = claims.get(name).await.unwrap();
    assert_eq!(grown.status.unwrap().capacity.unwrap()["storage"].0, "40Gi");
}

#[tokio::test]
async fn source_claim_is_protected_while_cutting_and_deletion_policy_is_honoured() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    scale_to_zero(&client).await;
    let snaps = snapshots(&client, "db");
    snaps.create(&PostParams::default(), &snapshot_of("cutting", "cassandra-data-cassandra-0")).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "db");
    claims.delete("cassandra-data-cassandra-0", &DeleteParams::default()).await.unwrap();
    let protected = claims.get("cassandra-data-cassandra-0").await.unwrap();
    assert_eq!(protected.metadata.finalizers.unwrap(), ["snapshot.storage.kubernetes.io/pvc-as-source-protection"]);
    sim.advance(Duration::from_secs(30));
    assert!(claims.get_opt("cassandra-data-cassandra-0").await.unwrap().is_none(), "released once the snapshot is cut");

    let contents = {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotContent"),
            "volumesnapshotcontents",
        );
        Api::<DynamicObject>::all_with(client.clone(), &resource)
    };
    let content_name = snaps.get("cutting").await.unwrap().data["status"]["boundVolumeSnapshotContentName"]
        .as_str()
        .unwrap()
        .to_string();
    snaps.delete("cutting", &DeleteParams::default()).await.unwrap();
    assert!(snaps.get_opt("cutting").await.unwrap().is_none());
    assert!(contents.get_opt(&content_name).await.unwrap().is_none(), "deletionPolicy Delete removes the content");

    let mut retain: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": { "name": "keep" }, "driver": "ebs.csi.aws.com", "deletionPolicy": "Retain",
    }))
    .unwrap();
    let classes = {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass"),
            "volumesnapshotclasses",
        );
        Api::<DynamicObject>::all_with(client.clone(), &resource)
    };
    retain = classes.create(&PostParams::default(), &retain).await.unwrap();
    let mut kept = snapshot_of("kept", "cassandra-data-cassandra-1");
    kept.data["spec"]["volumeSnapshotClassName"] = json!(retain.metadata.name.unwrap());
    snaps.create(&PostParams::default(), &kept).await.unwrap();
    let kept_content =
        snaps.get("kept").await.unwrap().data["status"]["boundVolumeSnapshotContentName"].as_str().unwrap().to_string();
    snaps.delete("kept", &DeleteParams::default()).await.unwrap();
    assert!(contents.get_opt(&kept_content).await.unwrap().is_some(), "deletionPolicy Retain keeps the content");
}
