//! Live state and diff: what the clusters hold now, what the plan will change, which
//! steps are already satisfied or blocked — the content of `dr plan`.
//!
//! State is read with one list per (kind, namespace) the plan touches. The plan's
//! effect is predicted by replaying its steps, in order, over a copy of that state with
//! the same object builders `dr apply` uses, so the diff shows what apply will send.

mod live;
mod predict;
pub mod report;
pub mod yaml_out;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use live::{ListNeed, fetch, needs_of};
pub use predict::{Change, ChangeKind, StepState, predict};

/// Identifies one object in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub cluster: String,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectKey {
    pub fn new(cluster: &str, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            cluster: cluster.to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(String::from),
            name: name.to_string(),
        }
    }
}

/// What a plan read: the objects, by key, as the API returned them.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    pub objects: BTreeMap<ObjectKey, Value>,
    /// API requests made to read it (one per list).
    pub requests: usize,
}

/// The version of an object a saved plan depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    pub key: ObjectKey,
    pub uid: String,
    pub resource_version: String,
}

impl LiveState {
    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// uid and resourceVersion of every object read that the plan depends on. Pods are
    /// left out: they churn on their own, and the interlocks that read them are checked
    /// again against live state when each step runs.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.objects
            .iter()
            .filter(|(key, _)| key.kind != "Pod")
            .map(|(key, object)| Fingerprint {
                key: key.clone(),
                uid: text(object, "/metadata/uid"),
                resource_version: text(object, "/metadata/resourceVersion"),
            })
            .collect()
    }

    /// The objects of one cluster as an inventory, for expanding intents.
    pub fn inventory(&self, cluster: &str) -> crate::cluster::Inventory {
        let mut inventory = crate::cluster::Inventory::default();
        for (key, object) in self.objects.iter().filter(|(k, _)| k.cluster == cluster) {
            let ns_key = (key.namespace.clone().unwrap_or_default(), key.name.clone());
            // Deserializing from the borrowed value avoids copying every object first.
            match key.kind.as_str() {
                "StatefulSet" => drop(typed(object).map(|o| inventory.statefulsets.insert(ns_key, o))),
                "Deployment" => drop(typed(object).map(|o| inventory.deployments.insert(ns_key, o))),
                "PersistentVolumeClaim" => drop(typed(object).map(|o| inventory.claims.insert(ns_key, o))),
                "PersistentVolume" => drop(typed(object).map(|o| inventory.volumes.insert(key.name.clone(), o))),
                _ => inventory.other_objects += 1,
            }
        }
        inventory
    }
}

fn typed<'v, T: serde::Deserialize<'v>>(object: &'v Value) -> Result<T, serde_json::Error> {
    T::deserialize(object)
}

fn text(object: &Value, pointer: &str) -> String {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string()
}
