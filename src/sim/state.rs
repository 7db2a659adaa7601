//! The whole simulated cluster behind one lock: registry, object store, backing volumes,
//! audit log, clock, and the helpers controllers use to change objects.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::clock::{SimClock, format_time};
use super::config::{SimConfig, XorShift};
use super::exec::ExecState;
use super::files::FileTree;
use super::registry::{Registry, ResourceKey, keys};
use super::store::{Store, identity};

/// A provisioned disk: the bytes a test wrote and what the provider knows about it.
#[derive(Clone, Debug)]
pub struct BackingVolume {
    pub id: String,
    pub zone: String,
    pub size: u128,
    pub payload: Vec<u8>,
    /// Directories and files, as commands run in pods see the volume.
    pub files: FileTree,
    /// Sim times of accepted modifications (expansions), for the rate limit.
    pub modifications: Vec<Timestamp>,
}

/// A provider-side snapshot: a frozen copy of a volume's payload.
#[derive(Clone, Debug)]
pub struct SnapshotData {
    pub payload: Vec<u8>,
    pub files: FileTree,
    pub size: u128,
}

/// One API request, as the audit log records it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub seq: u64,
    /// Sim time, RFC 3339.
    pub time: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub code: u16,
}

/// What makes two events the same: namespace, involved object's uid, reason, message.
type EventKey = (String, String, String, String);

pub struct State {
    pub registry: Registry,
    pub store: Store,
    pub clock: SimClock,
    pub config: SimConfig,
    pub volumes: HashMap<String, BackingVolume>,
    pub snapshot_data: HashMap<String, SnapshotData>,
    pub requests: Vec<RequestRecord>,
    pub rng: XorShift,
    /// Set by deletions so garbage collection only scans when something went away.
    pub gc_pending: bool,
    /// What each controller last saw and the wakeups it asked for.
    pub controller_marks: super::controllers::ControllerMarks,
    /// Container filesystems and etcd members for `pods/exec`.
    pub exec: ExecState,
    /// The simulated AWS account, when one is attached: claims on its EFS file systems
    /// and EBS volumes read and write their data.
    pub aws: Option<Arc<super::aws::AwsWorld>>,
    /// ServiceAccount tokens issued (token → namespace and name), see [`super::auth`].
    pub tokens: HashMap<String, (String, String)>,
    /// The event recorded for each (namespace, involved uid, reason, message), by name.
    event_names: HashMap<EventKey, String>,
    ids: u64,
}

impl State {
    pub fn new(config: SimConfig, clock: SimClock) -> State {
        let seed = config.faults.seed;
        State {
            registry: Registry::builtin(),
            store: Store::new(config.watch_history),
            clock,
            config,
            volumes: HashMap::new(),
            snapshot_data: HashMap::new(),
            requests: Vec::new(),
            rng: XorShift::new(seed),
            gc_pending: false,
            controller_marks: Default::default(),
            exec: ExecState::default(),
            aws: None,
            tokens: HashMap::new(),
            event_names: HashMap::new(),
            ids: 0,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn now_text(&self) -> String {
        format_time(self.now())
    }

    /// A UID that is unique in this sim and repeatable across runs (counter-based).
    pub fn new_uid(&mut self) -> String {
        self.ids += 1;
        let n = self.ids;
        format!("{:08x}-{:04x}-4000-8000-{:012x}", n >> 16, n & 0xffff, n.wrapping_mul(0x9E37_79B9) & 0xffff_ffff_ffff)
    }

    /// A short lower-case hex id for names and volume handles.
    pub fn new_hex(&mut self, len: usize) -> String {
        let text = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        text[..len.min(32)].to_string()
    }

    /// Asks for a reconcile once sim time reaches `at`.
    pub fn wake_at(&mut self, at: Timestamp) {
        self.controller_marks.wake_at(at);
    }

    /// The earliest sim time a controller waits for; the ticker reconciles when it passes.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.controller_marks.earliest_wakeup()
    }

    pub fn get(&self, key: &ResourceKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.store.get(key, ns, name)
    }

    pub fn all(&self, key: &ResourceKey) -> Vec<Arc<Value>> {
        self.store.list(key, None)
    }

    /// Stores a controller's change without admission (controllers write what they mean).
    pub fn save(&mut self, key: &ResourceKey, object: Value) -> Arc<Value> {
        let time = self.now_text();
        self.store.put(key, object, &time)
    }

    /// Stores `object` only if it differs from `before`, so passes converge.
    pub fn save_if_changed(&mut self, key: &ResourceKey, before: &Value, object: Value) -> bool {
        if *before == object {
            return false;
        }
        self.save(key, object);
        true
    }

    /// Removes `finalizer`; an object being deleted goes away with its last finalizer.
    pub fn remove_finalizer(&mut self, key: &ResourceKey, object: &Value, finalizer: &str) -> bool {
        let Some(list) = object["metadata"]["finalizers"].as_array() else {
            return false;
        };
        if !list.iter().any(|f| f == finalizer) {
            return false;
        }
        let mut updated = object.clone();
        let remaining: Vec<Value> = list.iter().filter(|f| *f != finalizer).cloned().collect();
        updated["metadata"]["finalizers"] = Value::Array(remaining);
        self.commit_update(key, updated);
        true
    }

    pub fn add_finalizer(&mut self, key: &ResourceKey, object: &Value, finalizer: &str) -> bool {
        if has_finalizer(object, finalizer) || is_deleting(object) {
            return false;
        }
        let mut updated = object.clone();
        let mut list = updated["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        list.push(json!(finalizer));
        updated["metadata"]["finalizers"] = Value::Array(list);
        self.save(key, updated);
        true
    }

    /// Stores an update, completing deletion when the object is terminating with no finalizers.
    pub fn commit_update(&mut self, key: &ResourceKey, object: Value) -> Arc<Value> {
        if is_deleting(&object) && finalizers_empty(&object) {
            let (ns, name) = identity(&object);
            let time = self.now_text();
            self.gc_pending = true;
            return self.store.remove(key, &ns, &name, &time).unwrap_or_else(|| Arc::new(object));
        }
        self.save(key, object)
    }

    /// Deletes like the API does (finalizers → terminating), for controllers and GC.
    pub fn delete_object(&mut self, key: &ResourceKey, object: &Value) -> Arc<Value> {
        if is_deleting(object) {
            return Arc::new(object.clone());
        }
        let mut updated = object.clone();
        updated["metadata"]["deletionTimestamp"] = json!(self.now_text());
        updated["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        self.commit_update(key, updated)
    }

    /// Records a core/v1 Event about `involved`, folding repeats into `count`.
    pub fn record_event(&mut self, involved: &Value, warning: bool, reason: &str, message: &str, component: &str) {
        let (ns, name) = identity(involved);
        let ns = if ns.is_empty() { "default".to_string() } else { ns };
        let uid = involved["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let now = self.now_text();
        // A repeat of an event counts up the one recorded (found by its index entry; the
        // event itself may have been deleted since), where scanning the namespace's events
        // for each new one was quadratic over a fleet's.
        let key = (ns.clone(), uid.clone(), reason.to_string(), message.to_string());
        let recorded = self.event_names.get(&key).and_then(|event| self.store.get(&keys::events(), &ns, event));
        if let Some(existing) = recorded {
            let mut updated = (*existing).clone();
            updated["count"] = json!(existing["count"].as_u64().unwrap_or(1) + 1);
            updated["lastTimestamp"] = json!(now);
            self.save(&keys::events(), updated);
            return;
        }
        let event_name = format!("{name}.{}", self.new_hex(16));
        let event_uid = self.new_uid();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": { "name": event_name.clone(), "namespace": ns, "uid": event_uid, "creationTimestamp": now },
            "involvedObject": {
                "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": name,
                "namespace": involved["metadata"]["namespace"], "uid": uid,
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": { "component": component },
            "reportingComponent": component,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        });
        self.save(&keys::events(), event);
        self.event_names.insert(key, event_name);
    }

    /// Events recorded about an object, oldest first.
    pub fn events_for(&self, ns: &str, name: &str) -> Vec<Arc<Value>> {
        self.store.list(&keys::events(), Some(ns)).into_iter().filter(|e| e["involvedObject"]["name"] == name).collect()
    }
}

pub fn is_deleting(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// No finalizer holds the object. Namespaces are also held by `spec.finalizers` (the
/// namespace controller's `kubernetes`), until their contents are gone.
pub fn finalizers_empty(object: &Value) -> bool {
    let empty = |list: &Value| list.as_array().is_none_or(Vec::is_empty);
    empty(&object["metadata"]["finalizers"]) && (object["kind"] != "Namespace" || empty(&object["spec"]["finalizers"]))
}

pub fn has_finalizer(object: &Value, finalizer: &str) -> bool {
    object["metadata"]["finalizers"].as_array().is_some_and(|l| l.iter().any(|f| f == finalizer))
}

pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn uid_of(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn a_repeated_event_counts_up_the_one_recorded_and_a_deleted_one_is_recorded_anew() {
        let mut state =
            crate::sim::cluster::SimCluster::build_state(Vec::new(), crate::sim::SimConfig::default()).unwrap();
        let claim =
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "db", "uid": "u1"}});
        state.record_event(&claim, true, "ProvisioningFailed", "no capacity", "sim");
        state.record_event(&claim, true, "ProvisioningFailed", "no capacity", "sim");
        state.record_event(&claim, true, "ProvisioningFailed", "another reason", "sim");
        let events = state.events_for("db", "data");
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events.iter().map(|e| e["count"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 1]);
        let first = name_of(&events[0]).to_string();
        let time = state.now_text();
        state.store.remove(&keys::events(), "db", &first, &time);
        state.record_event(&claim, true, "ProvisioningFailed", "no capacity", "sim");
        let counts: Vec<u64> = state.events_for("db", "data").iter().map(|e| e["count"].as_u64().unwrap()).collect();
        assert_eq!(counts.iter().sum::<u64>(), 2, "the deleted event is recorded anew with count 1: {counts:?}");
    }
}
