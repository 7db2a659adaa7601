//! Live state and diff: what the clusters hold now, what the plan will change, which
//! steps are already satisfied or blocked — the content of `dr plan`.
//!
//! State is read with one list per (kind, namespace) the plan touches. The plan's
//! effect is predicted by replaying its steps, in order, over a copy of that state with
//! the same object builders `dr apply` uses, so the diff shows what apply will send.

mod efs;
mod live;
pub mod markdown;
pub mod output;
mod predict;
pub mod report;
mod satisfied;
pub mod yaml_out;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

pub use live::{ListNeed, fetch, needs_of};
pub use predict::{Change, ChangeKind, StepState, predict};
pub use satisfied::ALREADY_AS_PLANNED;

/// Identifies one object in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    pub cluster: String,
    /// Plans saved before keys were camelCase wrote `api_version`.
    #[serde(alias = "api_version")]
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

    /// The key of an object a step names (`saveObject`, `deleteObject`, `restoreObject`).
    pub fn of_ref(cluster: &str, object: &crate::steps::ObjectRef) -> ObjectKey {
        ObjectKey::new(cluster, &object.api_version, &object.kind, object.namespace.as_deref(), &object.name)
    }
}

/// What a plan read: the objects, by key, as the API returned them.
///
/// Each object is kept as the JSON text of its list item and decoded only where it is
/// needed: most are only looked up, and a decoded `Value` takes ten times the memory.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    objects: BTreeMap<ObjectKey, Box<RawValue>>,
    /// API requests made to read it (one per list).
    pub requests: usize,
    /// Regions whose EFS state was read (objects of the cluster `aws`); steps in other
    /// regions are predicted as to do, their state unknown.
    pub cloud_regions_read: std::collections::BTreeSet<String>,
    /// Why some cloud state could not be read.
    pub cloud_warnings: Vec<String>,
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
    /// Adds one object read (a later read of the same key replaces it).
    pub fn insert(&mut self, key: ObjectKey, object: Box<RawValue>) {
        self.objects.insert(key, object);
    }

    /// The object as the API returned it, with `apiVersion` and `kind` set from its key
    /// (list items often leave them out).
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        let mut object: Value = decode(self.objects.get(key)?).ok()?;
        object["apiVersion"] = key.api_version.as_str().into();
        object["kind"] = key.kind.as_str().into();
        Some(object)
    }

    /// The objects of one kind, undecoded, for indexes that need a few fields of each.
    pub fn raw_of_kind<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = (&'s ObjectKey, &'s RawValue)> + 's {
        self.objects.iter().filter(move |(k, _)| k.kind == kind).map(|(k, v)| (k, &**v))
    }

    /// uid and resourceVersion of every object read that the plan depends on. Pods are
    /// left out: they churn on their own, and the interlocks that read them are checked
    /// again against live state when each step runs.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.objects
            .iter()
            .filter(|(key, _)| key.kind != "Pod")
            .map(|(key, object)| {
                let Versioned { metadata } = decode(object).unwrap_or_default();
                Fingerprint {
                    key: key.clone(),
                    uid: metadata.uid.as_str().unwrap_or_default().to_string(),
                    resource_version: metadata.resource_version.as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// The objects of one cluster as an inventory, for expanding intents.
    pub fn inventory(&self, cluster: &str) -> crate::cluster::Inventory {
        let of_kind =
            |kind: &'static str| self.objects.iter().filter(move |(k, _)| k.cluster == cluster && k.kind == kind);
        let by_namespace = |key: &ObjectKey| (key.namespace.clone().unwrap_or_default(), key.name.clone());
        // Decoding typed objects is the time taken here. Volumes (as many as claims, and
        // larger) are decoded on a second thread meanwhile.
        std::thread::scope(|scope| {
            let volumes = scope.spawn(|| decode_all(of_kind("PersistentVolume"), |key| key.name.clone()));
            let mut inventory = crate::cluster::Inventory::default();
            inventory.statefulsets = decode_all(of_kind("StatefulSet"), by_namespace);
            inventory.deployments = decode_all(of_kind("Deployment"), by_namespace);
            inventory.claims = decode_all(of_kind("PersistentVolumeClaim"), by_namespace);
            inventory.snapshots = of_kind("VolumeSnapshot")
                .filter_map(|(_, raw)| decode::<Value>(raw).ok())
                .map(|o| crate::cluster::snapshot_facts(&o))
                .collect();
            inventory.gitops_objects = crate::cluster::RECONCILER_KINDS
                .iter()
                .flat_map(|(_, kind)| of_kind(kind))
                .filter_map(|(key, raw)| {
                    let mut object = decode::<Value>(raw).ok()?;
                    object["kind"] = key.kind.as_str().into();
                    Some(object)
                })
                .collect();
            inventory.other_objects = self.objects.keys().filter(|k| k.cluster == cluster && !is_indexed(k)).count();
            inventory.volumes = volumes.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            inventory
        })
    }
}

/// Kinds an inventory holds decoded.
fn is_indexed(key: &ObjectKey) -> bool {
    matches!(
        key.kind.as_str(),
        "StatefulSet" | "Deployment" | "PersistentVolumeClaim" | "PersistentVolume" | "VolumeSnapshot"
    )
}

/// Typed objects straight from the JSON text, with no `Value` in between (their own
/// apiVersion and kind, if present, are those of the list they came from). Objects that
/// do not decode are left out; a later one under the same key replaces an earlier one.
fn decode_all<'s, K: Eq + Hash, T: serde::de::DeserializeOwned>(
    objects: impl Iterator<Item = (&'s ObjectKey, &'s Box<RawValue>)>,
    key: impl Fn(&ObjectKey) -> K,
) -> HashMap<K, T> {
    let objects: Vec<_> = objects.collect();
    let mut decoded = HashMap::with_capacity(objects.len());
    decoded.extend(objects.into_iter().filter_map(|(k, object)| Some((key(k), decode(object).ok()?))));
    decoded
}

/// Decodes an object read (or the part of it `T` describes).
fn decode<'r, T: serde::Deserialize<'r>>(object: &'r RawValue) -> Result<T, serde_json::Error> {
    serde_json::from_str(object.get())
}

/// The fields of an object that say which version of it was read. `Value`s, so a field
/// of another type reads as missing rather than failing the whole object.
#[derive(Default, Deserialize)]
struct Versioned {
    #[serde(default)]
    metadata: VersionFields,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionFields {
    #[serde(default)]
    uid: Value,
    #[serde(default)]
    resource_version: Value,
}
