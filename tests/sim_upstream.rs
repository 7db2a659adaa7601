//! The upstream manifests (external-snapshotter CRDs and examples, EBS CSI driver examples)
//! load into the sim, and CRD objects are validated like a real API server does: by the
//! CRD's openAPIV3Schema and its `x-kubernetes-validations` CEL rules.

mod sim_common;

use std::time::Duration;

use drplan::sim::manifests::read_paths;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use sim_common::{paused_config, upstream};

const SNAPSHOTTER_CRDS: &str = "external-snapshotter/client/config/crd";

fn snapshot_api(client: kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
        "volumesnapshots",
    );
    Api::namespaced_with(client, "default", &resource)
}

fn object_from(path: &str) -> DynamicObject {
    let objects = read_paths(&[upstream(path)]).unwrap();
    assert_eq!(objects.len(), 1, "{path} holds one object");
    serde_json::from_value(objects[0].object.clone()).unwrap()
}

/// Every pod in `default` is Running and every claim Bound.
async fn assert_settled(client: &kube::Client, scenario: &str) {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use kube::api::ListParams;
    let pods = Api::<Pod>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    for pod in pods.items {
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"), "{scenario}: pod {:?}", pod.metadata.name);
    }
    let claims =
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    assert!(!claims.items.is_empty(), "{scenario}: has claims");
    for claim in claims.items {
        assert_eq!(
            claim.status.unwrap().phase.as_deref(),
            Some("Bound"),
            "{scenario}: claim {:?}",
            claim.metadata.name
        );
    }
}

#[tokio::test]
async fn upstream_examples_load_and_settle() {
    let ebs = "aws-ebs-csi-driver/examples/kubernetes";
    let snapshot_example = "external-snapshotter/examples/kubernetes";
    let scenarios: Vec<(&str, Vec<String>)> = vec![
        (
            "external-snapshotter",
            ["storageclass.yaml", "snapshotclass-v1.yaml", "pvc.yaml", "snapshot-v1.yaml", "restore.yaml"]
                .iter()
                .map(|f| format!("{snapshot_example}/{f}"))
                .collect(),
        ),
        ("ebs static provisioning", vec![format!("{ebs}/static-provisioning/manifests")]),
        ("ebs resizing", vec![format!("{ebs}/resizing/manifests")]),
        (
            "ebs snapshot",
            vec![
                format!("{ebs}/snapshot/manifests/classes"),
                format!("{ebs}/snapshot/manifests/app"),
                format!("{ebs}/snapshot/manifests/snapshot"),
            ],
        ),
        (
            "ebs snapshot import",
            vec![format!("{ebs}/snapshot/manifests/classes"), format!("{ebs}/snapshot/manifests/snapshot-import")],
        ),
    ];
    for (scenario, files) in scenarios {
        let mut paths = vec![upstream(SNAPSHOTTER_CRDS)];
        paths.extend(files.iter().map(|f| upstream(f)));
        let sim =
            drplan::sim::SimCluster::start(&paths, paused_config()).await.unwrap_or_else(|e| panic!("{scenario}: {e}"));
        sim.advance(Duration::from_secs(120));
        assert_settled(&sim.client().unwrap(), scenario).await;
    }
}

#[tokio::test]
async fn upstream_snapshot_and_restore_examples_carry_data() {
    let dir = "external-snapshotter/examples/kubernetes";
    let paths: Vec<_> = [
        SNAPSHOTTER_CRDS.to_string(),
        format!("{dir}/storageclass.yaml"),
        format!("{dir}/snapshotclass-v1.yaml"),
        format!("{dir}/pvc.yaml"),
    ]
    .iter()
    .map(|p| upstream(p))
    .collect();
    let sim = drplan::sim::SimCluster::start(&paths, paused_config()).await.unwrap();
    sim.write_claim_data("default", "hpvc", "hostpath data").expect("Immediate binding bound the claim at load");
    sim.load(&[upstream(&format!("{dir}/snapshot-v1.yaml"))]).unwrap();
    sim.write_claim_data("default", "hpvc", "written after the snapshot").unwrap();
    sim.advance(Duration::from_secs(60));
    let snapshot = snapshot_api(sim.client().unwrap()).get("new-snapshot-demo-v1").await.unwrap();
    assert_eq!(snapshot.data["status"]["readyToUse"], true, "{:?}", snapshot.data);
    sim.load(&[upstream(&format!("{dir}/restore.yaml"))]).unwrap();
    assert_eq!(sim.read_claim_data("default", "hpvc-restore").unwrap(), b"hostpath data");
}

#[tokio::test]
async fn invalid_upstream_snapshot_is_rejected_with_the_cel_rule_message() {
    let sim = drplan::sim::SimCluster::start(&[upstream(SNAPSHOTTER_CRDS)], paused_config()).await.unwrap();
    let api = snapshot_api(sim.client().unwrap());
    let invalid = object_from("external-snapshotter/examples/kubernetes/invalid-snapshot-v1.yaml");
    let err = api.create(&PostParams::default(), &invalid).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set"),
        "{}",
        status.message
    );
    assert!(status.message.contains("spec.source"), "{}", status.message);

    let valid = object_from("external-snapshotter/examples/kubernetes/snapshot-v1.yaml");
    api.create(&PostParams::default(), &valid).await.expect("the valid example is accepted");
}

#[tokio::test]
async fn crd_schema_types_and_transition_rules_are_enforced() {
    let sim = drplan::sim::SimCluster::start(&[upstream(SNAPSHOTTER_CRDS)], paused_config()).await.unwrap();
    let api = snapshot_api(sim.client().unwrap());
    let wrong_type: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": { "name": "typed" },
        "spec": { "source": { "persistentVolumeClaimName": 7 } },
    }))
    .unwrap();
    let err = api.create(&PostParams::default(), &wrong_type).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("spec.source.persistentVolumeClaimName")),
        "{err:?}"
    );

    let valid = object_from("external-snapshotter/examples/kubernetes/snapshot-v1.yaml");
    api.create(&PostParams::default(), &valid).await.unwrap();
    let mut changed = api.get("new-snapshot-demo-v1").await.unwrap();
    changed.data["spec"]["source"]["persistentVolumeClaimName"] = json!("another-pvc");
    let err = api.replace("new-snapshot-demo-v1", &PostParams::default(), &changed).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("persistentVolumeClaimName is immutable")),
        "{err:?}"
    );
}
