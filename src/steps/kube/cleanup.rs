//! Cleaning up after a finished run: the VolumeSnapshots it took (found by its run
//! label). A snapshot's content, and the provider's snapshot behind it, go with the
//! VolumeSnapshot only when the content's `deletionPolicy` is `Delete`; for a class that
//! retains them the content is switched to `Delete` first, so nothing is left behind.

use std::collections::BTreeMap;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::{RUN_LABEL, label_value};

/// One VolumeSnapshot a run took, and what deleting it involves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSnapshot {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// Its bound VolumeSnapshotContent, if any.
    pub content: Option<String>,
    /// The content's deletion policy (`Retain` contents are switched to `Delete`).
    pub content_policy: Option<String>,
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind), plural)
}

/// The VolumeSnapshots labelled with `run_id`, in every cluster of the run.
pub async fn snapshots_of(clients: &BTreeMap<String, Client>, run_id: &str) -> Result<Vec<RunSnapshot>, String> {
    let selector = format!("{RUN_LABEL}={}", label_value(run_id));
    let mut found = Vec::new();
    for (cluster, client) in clients {
        let snapshots: Api<DynamicObject> =
            Api::all_with(client.clone(), &resource("VolumeSnapshot", "volumesnapshots"));
        let listed = match snapshots.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            // No snapshot CRDs in this cluster: it has no snapshots to clean up.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(format!("listing the VolumeSnapshots of run {run_id} in cluster {cluster}: {e}")),
        };
        let contents: Api<DynamicObject> =
            Api::all_with(client.clone(), &resource("VolumeSnapshotContent", "volumesnapshotcontents"));
        for snapshot in listed {
            let content = snapshot.data.pointer("/status/boundVolumeSnapshotContentName").and_then(Value::as_str);
            let content_policy = match content {
                Some(name) => contents
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading VolumeSnapshotContent {name}: {e}"))?
                    .and_then(|c| c.data.pointer("/spec/deletionPolicy").and_then(Value::as_str).map(String::from)),
                None => None,
            };
            found.push(RunSnapshot {
                cluster: cluster.clone(),
                namespace: snapshot.metadata.namespace.clone().unwrap_or_default(),
                name: snapshot.metadata.name.clone().unwrap_or_default(),
                content: content.map(String::from),
                content_policy,
            });
        }
    }
    Ok(found)
}

/// Deletes one snapshot, its content and the provider's snapshot.
pub async fn delete(clients: &BTreeMap<String, Client>, snapshot: &RunSnapshot) -> Result<(), String> {
    let client =
        clients.get(&snapshot.cluster).ok_or_else(|| format!("no connection to cluster {}", snapshot.cluster))?;
    if let (Some(content), Some("Retain")) = (&snapshot.content, snapshot.content_policy.as_deref()) {
        let contents: Api<DynamicObject> =
            Api::all_with(client.clone(), &resource("VolumeSnapshotContent", "volumesnapshotcontents"));
        let patch = Patch::Merge(json!({ "spec": { "deletionPolicy": "Delete" } }));
        match contents.patch(content, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("setting deletionPolicy Delete on VolumeSnapshotContent {content}: {e}")),
        }
    }
    let snapshots: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &snapshot.namespace, &resource("VolumeSnapshot", "volumesnapshots"));
    match snapshots.delete(&snapshot.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("deleting VolumeSnapshot {}/{}: {e}", snapshot.namespace, snapshot.name)),
    }
}
