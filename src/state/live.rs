//! Reading live state: one list per (kind, namespace) the plan needs.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};

use super::{LiveState, ObjectKey};
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
                Some(&p.object)
            }
            StepKind::Intent(Intent::SetAside(p)) => Some(&p.object),
            _ => None,
        };
        if let Some(object) = object {
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

/// Performs the lists (one request each) and indexes what they return.
pub async fn fetch(clients: &BTreeMap<String, Client>, needs: &BTreeSet<ListNeed>) -> Result<LiveState, String> {
    let mut state = LiveState::default();
    for need in needs {
        let client = clients.get(&need.cluster).ok_or_else(|| format!("no connection to cluster {}", need.cluster))?;
        let resource = crate::steps::manifests::api_resource(&need.api_version, &need.kind);
        let api: Api<DynamicObject> = match &need.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        state.requests += 1;
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if need.optional && s.code == 404 => continue,
            Err(e) => {
                let scope = need.namespace.as_deref().map(|ns| format!(" in {ns}")).unwrap_or_default();
                return Err(format!("listing {}{scope} of cluster {}: {e}", need.kind, need.cluster));
            }
        };
        for item in list.items {
            let key = ObjectKey::new(
                &need.cluster,
                &need.api_version,
                &need.kind,
                item.metadata.namespace.as_deref(),
                item.metadata.name.as_deref().unwrap_or_default(),
            );
            let mut value = serde_json::to_value(&item).map_err(|e| e.to_string())?;
            value["apiVersion"] = need.api_version.clone().into();
            value["kind"] = need.kind.clone().into();
            state.objects.insert(key, value);
        }
    }
    Ok(state)
}
