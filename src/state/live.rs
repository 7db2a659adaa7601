//! Reading live state: one list per (kind, namespace) the plan needs.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{DynamicObject, ListParams};
use kube::core::{Request, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{LiveState, ObjectKey};
use crate::cluster::live::{FailureKind, explain};
use crate::graph::{StepGraph, StepKind};
use crate::lang::Intent;
use crate::steps::Action;

/// One list request: a kind, in a namespace (or cluster-wide), of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListNeed {
    pub cluster: String,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    /// Whether a missing kind (CRD not installed) is fine.
    pub optional: bool,
}

/// The lists a graph needs: workloads, claims, pods and snapshots of every namespace it
/// touches, all PVs, and the kinds of objects it saves or deletes.
pub fn needs_of(graph: &StepGraph) -> BTreeSet<ListNeed> {
    let mut namespaces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut needs = BTreeSet::new();
    for (_, step) in graph.steps() {
        if step.cluster.is_empty() {
            continue;
        }
        namespaces.entry(step.cluster.clone()).or_default().insert(step.namespace.clone());
        let object = match &step.kind {
            StepKind::Action(Action::SaveObject(p) | Action::DeleteObject(p) | Action::RestoreObject(p)) => {
                Some(p.object.clone())
            }
            StepKind::Action(Action::PauseReconciler(p) | Action::ResumeReconciler(p)) => Some(p.object.clone()),
            StepKind::Intent(Intent::SetAside(p)) => Some(p.object.clone()),
            StepKind::Intent(Intent::PauseReconciliation(p)) => crate::graph::pause_patch(p).map(|(object, _)| object),
            _ => None,
        };
        if let Some(object) = &object {
            needs.insert(ListNeed {
                cluster: step.cluster.clone(),
                api_version: object.api_version.clone(),
                kind: object.kind.clone(),
                namespace: object.namespace.clone(),
                optional: false,
            });
        }
    }
    let need = |cluster: &str, api_version: &str, kind: &str, namespace: Option<&str>, optional: bool| ListNeed {
        cluster: cluster.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(String::from),
        optional,
    };
    for (cluster, namespaces) in &namespaces {
        // Who else reconciles the workloads (GitOps tools), where their CRDs are installed.
        for (api_version, kind) in crate::cluster::RECONCILER_KINDS {
            needs.insert(need(cluster, api_version, kind, None, true));
        }
        needs.insert(need(cluster, "v1", "PersistentVolume", None, false));
        for ns in namespaces {
            needs.insert(need(cluster, "apps/v1", "StatefulSet", Some(ns), false));
            needs.insert(need(cluster, "apps/v1", "Deployment", Some(ns), false));
            needs.insert(need(cluster, "v1", "PersistentVolumeClaim", Some(ns), false));
            needs.insert(need(cluster, "v1", "Pod", Some(ns), false));
            needs.insert(need(cluster, "snapshot.storage.k8s.io/v1", "VolumeSnapshot", Some(ns), true));
        }
    }
    needs
}

fn is_reconciler_kind(need: &ListNeed) -> bool {
    crate::cluster::RECONCILER_KINDS.iter().any(|(v, k)| *v == need.api_version && *k == need.kind)
}

/// A list that failed: of which cluster, why, and whether trying again can help.
#[derive(Clone, Debug)]
pub struct FetchError {
    pub cluster: String,
    pub message: String,
    pub kind: FailureKind,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Performs the lists (one request each) and indexes what they return.
pub async fn fetch(clients: &BTreeMap<String, Client>, needs: &BTreeSet<ListNeed>) -> Result<LiveState, FetchError> {
    let mut state = LiveState::default();
    for need in needs {
        let client = clients.get(&need.cluster).ok_or_else(|| FetchError {
            cluster: need.cluster.clone(),
            message: format!("no connection to cluster {}", need.cluster),
            kind: FailureKind::Permanent,
        })?;
        state.requests += 1;
        let items = match list(client, need).await {
            Ok(items) => items,
            Err(kube::Error::Api(s)) if need.optional && s.code == 404 => continue,
            // A GitOps kind whose CRD is not installed reconciles nothing. One that is
            // installed but may not be read is not skipped: a self-healing controller the
            // plan cannot see would fight the restore unnoticed.
            Err(e) => {
                let scope = need.namespace.as_deref().map(|ns| format!(" in {ns}")).unwrap_or_default();
                let failure = explain(&e);
                let hint = if is_reconciler_kind(need) {
                    "; drplan reads who else reconciles the workloads it stops (Argo CD, Flux) and needs \
                     `list` on this kind (`dr rbac --read-only PLAN` prints the rights `dr plan` needs)"
                } else {
                    ""
                };
                let message =
                    format!("listing {}{scope} of cluster {}: {}{hint}", need.kind, need.cluster, failure.reason);
                return Err(FetchError { cluster: need.cluster.clone(), message, kind: failure.kind });
            }
        };
        for (key, item) in items {
            state.insert(key, item);
        }
    }
    Ok(state)
}

/// A list response whose items stay JSON text: decoded later, and only as far as needed
/// (as `DynamicObject`s they were decoded, encoded to `Value`s, and all kept decoded).
#[derive(Deserialize)]
struct RawList {
    /// `null` for an empty list from some servers, as kube's own `ObjectList` allows.
    #[serde(default, deserialize_with = "null_as_empty")]
    items: Vec<Box<RawValue>>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Box<RawValue>>, D::Error> {
    Ok(Option::<Vec<Box<RawValue>>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The name and namespace of a list item: all that is decoded of it here.
#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    metadata: ItemMeta,
}

#[derive(Default, Deserialize)]
struct ItemMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// One list request, sent as `Api::list` sends it, and its items by key. An item that is
/// not an object with a string name fails the list, as it did when decoded whole.
async fn list(client: &Client, need: &ListNeed) -> Result<Vec<(ObjectKey, Box<RawValue>)>, kube::Error> {
    let resource = crate::steps::manifests::api_resource(&need.api_version, &need.kind);
    let url = DynamicObject::url_path(&resource, need.namespace.as_deref());
    let mut request = Request::new(url).list(&ListParams::default()).map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("list");
    let list: RawList = client.request(request).await?;
    list.items
        .into_iter()
        .map(|item| {
            let Item { metadata } = serde_json::from_str(item.get()).map_err(kube::Error::SerdeError)?;
            let name = metadata.name.unwrap_or_default();
            let key =
                ObjectKey::new(&need.cluster, &need.api_version, &need.kind, metadata.namespace.as_deref(), &name);
            Ok((key, item))
        })
        .collect()
}
