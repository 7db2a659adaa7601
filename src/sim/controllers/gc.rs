//! Garbage collection and namespace cleanup: dependents of deleted owners (ownerReferences),
//! foreground deletion, orphaning, and deleting a namespace's contents.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::sim::api::FOREGROUND_DELETION;
use crate::sim::registry::{ResourceKey, keys};
use crate::sim::state::{State, is_deleting, name_of, uid_of};

pub fn reconcile(state: &mut State) -> bool {
    let mut changed = finish_namespaces(state);
    if !state.gc_pending {
        return changed;
    }
    state.gc_pending = false;
    changed |= collect_orphans(state);
    changed |= finish_foreground(state);
    changed
}

/// Every stored object, with the resource it belongs to, that has owner references (shared,
/// not copied: GC runs after every deletion, and a fleet's pods all have owners).
fn owned_objects(state: &State) -> Vec<(ResourceKey, Arc<Value>)> {
    let mut owned = Vec::new();
    for key in owner_capable(state) {
        for object in state.all(&key) {
            if object["metadata"]["ownerReferences"].as_array().is_some_and(|r| !r.is_empty()) {
                owned.push((key.clone(), object));
            }
        }
    }
    owned
}

/// Resource types whose objects can carry owner references: all but the high-volume storage
/// kinds that never do in this sim's controllers (keeps GC cheap at 10,000 volumes).
fn owner_capable(state: &State) -> Vec<ResourceKey> {
    let skip = [keys::pvs(), keys::events(), keys::nodes(), keys::namespaces()];
    let mut keys: Vec<ResourceKey> = state
        .all(&keys::crds())
        .iter()
        .filter_map(|crd| crate::sim::registry::resource_from_crd(crd).ok().map(|r| r.key()))
        .collect();
    keys.extend(
        ["pods", "persistentvolumeclaims", "configmaps", "secrets", "services"].map(|p| ResourceKey::new("", p)),
    );
    keys.extend([keys::statefulsets(), keys::deployments(), keys::replicasets()]);
    keys.retain(|k| !skip.contains(k));
    keys
}

fn all_uids(state: &State) -> HashSet<String> {
    let mut uids = HashSet::new();
    for key in owner_capable(state) {
        for object in state.all(&key) {
            uids.insert(uid_of(&object).to_string());
        }
    }
    uids
}

/// Background propagation: dependents whose owners are all gone are deleted.
fn collect_orphans(state: &mut State) -> bool {
    let uids = all_uids(state);
    let mut changed = false;
    for (key, object) in owned_objects(state) {
        let refs = object["metadata"]["ownerReferences"].as_array().map(Vec::as_slice).unwrap_or_default();
        let all_owners_gone = refs.iter().all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()));
        if all_owners_gone && !is_deleting(&object) {
            state.delete_object(&key, &object);
            changed = true;
        }
    }
    changed
}

/// Foreground deletion: delete dependents first, then let the owner go.
fn finish_foreground(state: &mut State) -> bool {
    let mut changed = false;
    for key in owner_capable(state) {
        for owner in state.all(&key) {
            if !crate::sim::state::has_finalizer(&owner, FOREGROUND_DELETION) {
                continue;
            }
            let uid = uid_of(&owner).to_string();
            let dependents: Vec<(ResourceKey, Arc<Value>)> =
                owned_objects(state).into_iter().filter(|(_, o)| owned_by(o, &uid)).collect();
            if dependents.is_empty() {
                changed |= state.remove_finalizer(&key, &owner, FOREGROUND_DELETION);
            } else {
                for (dep_key, dependent) in dependents {
                    if !is_deleting(&dependent) {
                        state.delete_object(&dep_key, &dependent);
                        changed = true;
                    }
                }
                state.gc_pending = true; // check again once dependents are gone
            }
        }
    }
    changed
}

fn owned_by(object: &Value, owner_uid: &str) -> bool {
    object["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
}

/// Whether any object names `owner_uid` as its owner.
pub fn dependents_exist(state: &State, owner_uid: &str) -> bool {
    owned_objects(state).iter().any(|(_, o)| owned_by(o, owner_uid))
}

impl State {
    pub fn has_dependents(&self, owner_uid: &str) -> bool {
        dependents_exist(self, owner_uid)
    }

    /// Orphan propagation: dependents lose their reference to the owner and survive it.
    pub fn orphan_dependents(&mut self, owner_uid: String) {
        for (key, object) in owned_objects(self) {
            if !owned_by(&object, &owner_uid) {
                continue;
            }
            let mut updated = (*object).clone();
            let refs: Vec<Value> = object["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["uid"] != owner_uid.as_str())
                .cloned()
                .collect();
            updated["metadata"]["ownerReferences"] = json!(refs);
            self.save(&key, updated);
        }
    }
}

/// A terminating namespace deletes what it holds and goes once empty.
fn finish_namespaces(state: &mut State) -> bool {
    let mut changed = false;
    let terminating: Vec<Value> =
        state.all(&keys::namespaces()).iter().filter(|ns| is_deleting(ns)).map(|ns| (**ns).clone()).collect();
    for namespace in terminating {
        let ns = name_of(&namespace).to_string();
        let namespaced: Vec<ResourceKey> = state.registry_namespaced_keys();
        let mut remaining = 0;
        for key in namespaced {
            for object in state.store.list(&key, Some(&ns)) {
                remaining += 1;
                if !is_deleting(&object) {
                    state.delete_object(&key, &object);
                    changed = true;
                }
            }
        }
        if remaining == 0 {
            let time = state.now_text();
            state.store.remove(&keys::namespaces(), "", &ns, &time);
            changed = true;
        } else if namespace["status"]["phase"] != "Terminating" {
            let mut terminating = namespace.clone();
            terminating["status"]["phase"] = json!("Terminating");
            state.save(&keys::namespaces(), terminating);
            changed = true;
        }
    }
    changed
}

impl State {
    fn registry_namespaced_keys(&self) -> Vec<ResourceKey> {
        self.registry.types().filter(|t| t.namespaced).map(|t| t.key()).collect()
    }
}
