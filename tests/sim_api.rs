//! The simulated cluster through a real `kube::Client`: verbs, concurrency, subresources,
//! finalizers, volume binding and reclaim.

mod sim_common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use sim_common::{fixture, start};

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "demo", "tier": "web" } },
        "data": { "greeting": "hello" },
    }))
    .unwrap()
}

#[tokio::test]
async fn create_get_list_patch_delete_round_trip() {
    let (_sim, client) = start(&[]).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api.create(&PostParams::default(), &config_map("settings")).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    api.create(&PostParams::default(), &config_map("other")).await.unwrap();

    let again = api.create(&PostParams::default(), &config_map("settings")).await.unwrap_err();
    assert!(matches!(again, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"), "{again:?}");

    let fetched = api.get("settings").await.unwrap();
    assert_eq!(fetched.data.unwrap()["greeting"], "hello");
    let listed = api.list(&ListParams::default().labels("app=demo,tier in (web)")).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    let by_field = api.list(&ListParams::default().fields("metadata.name=other")).await.unwrap();
    assert_eq!(by_field.items.len(), 1);
    assert_eq!(api.list(&ListParams::default().labels("app!=demo")).await.unwrap().items.len(), 0);

    let merged = api
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "greeting": "hi", "extra": "1" } })),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["greeting"], "hi");
    let ops: json_patch::Patch = serde_json::from_value(json!([{ "op": "remove", "path": "/data/extra" }])).unwrap();
    let patched = api.patch("settings", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert!(!patched.data.unwrap().contains_key("extra"));
    let strategic = api
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": { "labels": { "tier": null } } })),
        )
        .await
        .unwrap();
    assert!(!strategic.metadata.labels.unwrap().contains_key("tier"));

    api.delete("settings", &DeleteParams::default()).await.unwrap();
    let missing = api.get("settings").await.unwrap_err();
    assert!(matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"), "{missing:?}");
}

#[tokio::test]
async fn stale_update_is_a_conflict() {
    let (_sim, client) = start(&[]).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let original = api.create(&PostParams::default(), &config_map("cm")).await.unwrap();
    let mut first = original.clone();
    first.data = Some([("greeting".to_string(), "one".to_string())].into());
    api.replace("cm", &PostParams::default(), &first).await.unwrap();
    let mut stale = original;
    stale.data = Some([("greeting".to_string(), "two".to_string())].into());
    let err = api.replace("cm", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"), "{err:?}");
    assert_eq!(api.get("cm").await.unwrap().data.unwrap()["greeting"], "one");
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_follows() {
    let (_sim, client) = start(&[]).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start_rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &config_map("before")).await.unwrap();
    let mut stream = api.watch(&WatchParams::default().timeout(10), &start_rv).await.unwrap().boxed();
    api.patch("before", &PatchParams::default(), &Patch::Merge(json!({ "data": { "greeting": "later" } })))
        .await
        .unwrap();
    api.delete("before", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.expect("event in time").unwrap() {
            Some(WatchEvent::Added(cm)) => seen.push(format!("added {}", cm.metadata.name.unwrap())),
            Some(WatchEvent::Modified(cm)) => seen.push(format!("modified {}", cm.data.unwrap()["greeting"])),
            Some(WatchEvent::Deleted(cm)) => seen.push(format!("deleted {}", cm.metadata.name.unwrap())),
            other => panic!("unexpected watch event {other:?}"),
        }
    }
    assert_eq!(seen, ["added before", "modified later", "deleted before"]);
}

#[tokio::test]
async fn statefulset_scale_subresource_drives_ordered_pods_and_claims() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "db");
    let names = |list: Vec<Pod>| list.into_iter().map(|p| p.metadata.name.unwrap()).collect::<Vec<_>>();
    let running = pods.list(&ListParams::default().fields("status.phase=Running")).await.unwrap();
    assert_eq!(names(running.items), ["cassandra-0", "cassandra-1", "cassandra-2"]);

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
    let scale = sts.get_scale("cassandra").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    sts.patch_scale("cassandra", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } })))
        .await
        .unwrap();
    assert_eq!(names(pods.list(&ListParams::default()).await.unwrap().items), ["cassandra-0"]);
    let deletions: Vec<String> = sim
        .mutations()
        .into_iter()
        .filter(|m| m.resource.0 == "/pods" && m.event_type == drplan::sim::EventType::Deleted)
        .map(|m| m.name)
        .collect();
    assert_eq!(deletions, ["cassandra-2", "cassandra-1"], "scale down removes the highest ordinal first");
    let status = sts.get_status("cassandra").await.unwrap().status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (1, Some(1)));

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, "db");
    let claim_names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(
        claim_names,
        ["cassandra-data-cassandra-0", "cassandra-data-cassandra-1", "cassandra-data-cassandra-2"],
        "scale down keeps claims"
    );
    let bad = sts
        .patch_scale("cassandra", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": -1 } })))
        .await
        .unwrap_err();
    assert!(matches!(bad, kube::Error::Api(ref s) if s.code == 422), "{bad:?}");
}

#[tokio::test]
async fn wait_for_first_consumer_binds_in_the_pods_zone() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "db");
    let lonely: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "lonely" },
        "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": { "requests": { "storage": "1Gi" } } },
    }))
    .unwrap();
    claims.create(&PostParams::default(), &lonely).await.unwrap();
    sim.advance(Duration::from_secs(60));
    let pending = claims.get("lonely").await.unwrap();
    assert_eq!(pending.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(sim.events_for("db", "lonely").iter().any(|e| e["reason"] == "WaitForFirstConsumer"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "db");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "consumer" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }], "volumes": [{ "name": "v", "persistentVolumeClaim": { "claimName": "lonely" } }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    sim.advance(Duration::from_secs(10));
    let bound = claims.get("lonely").await.unwrap();
    assert_eq!(bound.status.unwrap().phase.as_deref(), Some("Bound"));
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone()).get(&pv_name).await.unwrap();
    let zone = pv.metadata.labels.unwrap()["topology.kubernetes.io/zone"].clone();
    let running = pods.get("consumer").await.unwrap();
    let node = running.spec.unwrap().node_name.unwrap();
    assert_eq!(node, format!("sim-node-{zone}"), "pod scheduled in its volume's zone");
    assert_eq!(running.status.unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn pvc_protection_keeps_a_claim_until_its_pod_is_gone() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "db");
    claims.delete("cassandra-data-cassandra-2", &DeleteParams::default()).await.unwrap();
    let terminating = claims.get("cassandra-data-cassandra-2").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.finalizers.unwrap(), ["kubernetes.io/pvc-protection"]);

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
    sts.patch_scale("cassandra", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 2 } })))
        .await
        .unwrap();
    let gone = claims.get("cassandra-data-cassandra-2").await.unwrap_err();
    assert!(matches!(gone, kube::Error::Api(ref s) if s.code == 404), "{gone:?}");
}

fn retained_claim(name: &str, class: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": class, "resources": { "requests": { "storage": "2Gi" } } },
    }))
    .unwrap()
}

#[tokio::test]
async fn reclaim_delete_removes_the_volume_and_retain_keeps_it_released_for_rebinding() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "db");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());

    // Delete (gp3, via the StatefulSet's claim once its pod is gone).
    Api::<StatefulSet>::namespaced(client.clone(), "db")
        .patch_scale("cassandra", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 2 } })))
        .await
        .unwrap();
    let deleted_pv = claims.get("cassandra-data-cassandra-2").await.unwrap().spec.unwrap().volume_name.unwrap();
    claims.delete("cassandra-data-cassandra-2", &DeleteParams::default()).await.unwrap();
    assert!(pvs.get_opt(&deleted_pv).await.unwrap().is_none(), "Delete reclaim removes the PV");

    // Retain (gp3-retain, Immediate binding).
    claims.create(&PostParams::default(), &retained_claim("keep", "gp3-retain")).await.unwrap();
    sim.write_claim_data("db", "keep", "precious").unwrap();
    let kept_pv = claims.get("keep").await.unwrap().spec.unwrap().volume_name.unwrap();
    claims.delete("keep", &DeleteParams::default()).await.unwrap();
    let released = pvs.get(&kept_pv).await.unwrap();
    assert_eq!(released.status.unwrap().phase.as_deref(), Some("Released"));

    // An admin clears claimRef.uid; a new claim naming the volume binds it with the data.
    pvs.patch(
        &kept_pv,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "claimRef": { "uid": null, "resourceVersion": null } } })),
    )
    .await
    .unwrap();
    let mut rebind = retained_claim("keep", "gp3-retain");
    rebind.spec.as_mut().unwrap().volume_name = Some(kept_pv.clone());
    claims.create(&PostParams::default(), &rebind).await.unwrap();
    let rebound = claims.get("keep").await.unwrap();
    assert_eq!(rebound.status.unwrap().phase.as_deref(), Some("Bound"));
    assert_eq!(sim.read_claim_data("db", "keep").unwrap(), b"precious");
    assert_eq!(pvs.get(&kept_pv).await.unwrap().status.unwrap().phase.as_deref(), Some("Bound"));
}

#[tokio::test]
async fn orphan_and_foreground_propagation() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "db");
    sts.delete("cassandra", &DeleteParams::orphan()).await.unwrap();
    sim.settle();
    let orphans = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(orphans.len(), 3, "orphaned pods survive their StatefulSet");
    assert!(orphans.iter().all(|p| p.metadata.owner_references.as_ref().is_none_or(Vec::is_empty)));

    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
    sts.delete("cassandra", &DeleteParams::foreground()).await.unwrap();
    assert!(sts.get_opt("cassandra").await.unwrap().is_none());
    assert!(Api::<Pod>::namespaced(client.clone(), "db").list(&ListParams::default()).await.unwrap().items.is_empty());
    let deletions: Vec<String> = sim
        .mutations()
        .into_iter()
        .filter(|m| m.event_type == drplan::sim::EventType::Deleted && m.namespace == "db" && m.resource.0 != "/events")
        .map(|m| m.name)
        .collect();
    assert_eq!(
        deletions.last().map(String::as_str),
        Some("cassandra"),
        "foreground: the owner goes last: {deletions:?}"
    );
}

#[tokio::test]
async fn claim_data_over_http() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let path = "/sim/v1/namespaces/db/persistentvolumeclaims/cassandra-data-cassandra-1/data";
    let put = hyper::Request::put(path).body(b"cassandra-1".to_vec()).unwrap();
    client.request_text(put).await.unwrap();
    assert_eq!(sim.read_claim_data("db", "cassandra-data-cassandra-1").unwrap(), b"cassandra-1");
    let get = hyper::Request::get(path).body(Vec::new()).unwrap();
    assert_eq!(client.request_text(get).await.unwrap(), "cassandra-1");
    let missing =
        hyper::Request::get("/sim/v1/namespaces/db/persistentvolumeclaims/nope/data").body(Vec::new()).unwrap();
    let err = client.request_text(missing).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents_first() {
    let (sim, client) = start(&[fixture("cassandra")]).await;
    sim.advance(Duration::from_secs(60));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete("db", &DeleteParams::default()).await.unwrap();
    sim.settle();
    assert!(namespaces.get_opt("db").await.unwrap().is_none());
    let claims = Api::<PersistentVolumeClaim>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    assert!(claims.items.is_empty(), "claims deleted with their namespace");
    let pvs = Api::<PersistentVolume>::all(client).list(&ListParams::default()).await.unwrap();
    assert!(pvs.items.is_empty(), "Delete reclaim removed the volumes");
}
