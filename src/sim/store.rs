//! Object storage: JSON objects keyed by (resource, namespace, name) under one global,
//! monotonically increasing resourceVersion, with a bounded history of watch events and a
//! broadcast channel that live watches follow. Also records every mutation for the audit log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use hyper::body::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use super::registry::ResourceKey;

/// `ADDED`, `MODIFIED` or `DELETED`, as watch events name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as replayed to watches.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub resource: ResourceKey,
    pub event_type: EventType,
    pub object: Arc<Value>,
}

/// A mutation, as the audit log records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    pub rv: u64,
    /// Sim time, RFC 3339.
    pub time: String,
    pub event_type: EventType,
    pub resource: ResourceKey,
    pub namespace: String,
    pub name: String,
    /// Who changed it: `api` for client requests, `controller/<name>` for controllers.
    pub actor: String,
}

/// A stored object and its JSON encoding, made once per write so that lists (the hot path
/// of pollers, 10,000 claims at a time) copy bytes instead of serializing.
struct Entry {
    object: Arc<Value>,
    json: Bytes,
}

/// Objects of one resource type by namespace, then name, so lists come out sorted and a
/// lookup by name allocates nothing (controllers make thousands per pass).
type Bucket = BTreeMap<String, BTreeMap<String, Entry>>;

pub struct Store {
    rv: u64,
    buckets: HashMap<ResourceKey, Bucket>,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    /// The oldest resourceVersion a watch can still start from.
    oldest_watchable: u64,
    sender: broadcast::Sender<Arc<WatchEvent>>,
    mutations: Vec<Mutation>,
    /// The resourceVersion of each resource type's last change, so controllers can skip
    /// passes nothing they read has changed for.
    changed: HashMap<ResourceKey, u64>,
    /// Attributed to mutations made until changed.
    pub actor: String,
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        let (sender, _) = broadcast::channel(history_limit.max(1024));
        Store {
            rv: 1,
            buckets: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            oldest_watchable: 1,
            sender,
            mutations: Vec::new(),
            changed: HashMap::new(),
            actor: "api".into(),
        }
    }

    /// The latest resourceVersion: a list's `metadata.resourceVersion`.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, resource: &ResourceKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.buckets.get(resource)?.get(namespace)?.get(name).map(|e| e.object.clone())
    }

    /// Whether any object of `resource` changed after resourceVersion `rv`.
    pub fn changed_since(&self, resource: &ResourceKey, rv: u64) -> bool {
        self.changed.get(resource).is_some_and(|last| *last > rv)
    }

    /// Objects of a resource, in one namespace or (for `None`) all.
    pub fn list(&self, resource: &ResourceKey, namespace: Option<&str>) -> Vec<Arc<Value>> {
        self.entries(resource, namespace).map(|e| e.object.clone()).collect()
    }

    /// Objects of a resource in `namespace` whose names start with `prefix`: a range of
    /// the ordered store, not a scan of the namespace.
    pub fn list_prefixed(&self, resource: &ResourceKey, namespace: &str, prefix: &str) -> Vec<Arc<Value>> {
        let Some(names) = self.buckets.get(resource).and_then(|b| b.get(namespace)) else { return Vec::new() };
        names
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(_, e)| e.object.clone())
            .collect()
    }

    /// The JSON encodings of the objects `keep` accepts, in list order.
    pub fn list_encoded(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<Bytes> {
        self.entries(resource, namespace).filter(|e| keep(&e.object)).map(|e| e.json.clone()).collect()
    }

    fn entries<'a>(
        &'a self,
        resource: &ResourceKey,
        namespace: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a Entry> + 'a> {
        let Some(bucket) = self.buckets.get(resource) else { return Box::new(std::iter::empty()) };
        match namespace {
            Some(ns) => match bucket.get(ns) {
                Some(names) => Box::new(names.values()),
                None => Box::new(std::iter::empty()),
            },
            None => Box::new(bucket.values().flat_map(BTreeMap::values)),
        }
    }

    pub fn count(&self, resource: &ResourceKey) -> usize {
        self.buckets.get(resource).map_or(0, |b| b.values().map(BTreeMap::len).sum())
    }

    /// Stores `object` (new or replacing), stamping a fresh resourceVersion. `time` is sim time.
    pub fn put(&mut self, resource: &ResourceKey, mut object: Value, time: &str) -> Arc<Value> {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let (ns, name) = identity(&object);
        // Encoding a serde_json::Value cannot fail.
        let json = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        let object = Arc::new(object);
        let entry = Entry { object: object.clone(), json };
        let names = self.buckets.entry(resource.clone()).or_default().entry(ns.clone()).or_default();
        let previous = names.insert(name.clone(), entry);
        let event_type = if previous.is_some() { EventType::Modified } else { EventType::Added };
        self.record(resource, event_type, object.clone(), ns, name, time);
        object
    }

    /// Removes an object; the DELETED event carries it with a fresh resourceVersion.
    pub fn remove(&mut self, resource: &ResourceKey, namespace: &str, name: &str, time: &str) -> Option<Arc<Value>> {
        let bucket = self.buckets.get_mut(resource)?;
        let names = bucket.get_mut(namespace)?;
        let removed = names.remove(name)?;
        if names.is_empty() {
            bucket.remove(namespace);
        }
        self.rv += 1;
        let mut last = (*removed.object).clone();
        last["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let last = Arc::new(last);
        self.record(resource, EventType::Deleted, last.clone(), namespace.into(), name.into(), time);
        Some(last)
    }

    fn record(
        &mut self,
        resource: &ResourceKey,
        event_type: EventType,
        object: Arc<Value>,
        ns: String,
        name: String,
        time: &str,
    ) {
        match self.changed.get_mut(resource) {
            Some(last) => *last = self.rv,
            None => {
                self.changed.insert(resource.clone(), self.rv);
            }
        }
        let event = Arc::new(WatchEvent { rv: self.rv, resource: resource.clone(), event_type, object });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_watchable = dropped.rv;
            }
        }
        // No receivers is normal (nobody watching); a send error carries no information then.
        let _ = self.sender.send(event);
        self.mutations.push(Mutation {
            rv: self.rv,
            time: time.into(),
            event_type,
            resource: resource.clone(),
            namespace: ns,
            name,
            actor: self.actor.clone(),
        });
    }

    /// Events after `rv` for `resource`, and a receiver for the ones after those.
    /// `Err(rv)` when `rv` is older than the history kept (the client must relist: 410).
    #[allow(clippy::type_complexity)]
    pub fn watch_from(
        &self,
        resource: &ResourceKey,
        rv: u64,
    ) -> Result<(Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>), u64> {
        if rv < self.oldest_watchable {
            return Err(rv);
        }
        let replay = self.history.iter().filter(|e| e.rv > rv && &e.resource == resource).cloned().collect();
        Ok((replay, self.sender.subscribe()))
    }

    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }
}

/// (namespace, name) of an object; cluster-scoped objects have an empty namespace.
pub fn identity(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (meta["namespace"].as_str().unwrap_or_default().to_string(), meta["name"].as_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_increase_and_history_expires() {
        let key = ResourceKey::new("", "configmaps");
        let mut store = Store::new(2);
        let a = store.put(&key, json!({"metadata": {"name": "a", "namespace": "x"}}), "t");
        let b = store.put(&key, json!({"metadata": {"name": "b", "namespace": "x"}}), "t");
        assert!(a["metadata"]["resourceVersion"].as_str() < b["metadata"]["resourceVersion"].as_str());
        store.put(&key, json!({"metadata": {"name": "c", "namespace": "y"}}), "t");
        assert_eq!(store.list(&key, Some("x")).len(), 2);
        assert_eq!(store.list(&key, None).len(), 3);
        assert!(store.watch_from(&key, 1).is_err(), "history of 2 events cannot replay from the start");
        let (replay, _) = store.watch_from(&key, store.resource_version() - 1).unwrap();
        assert_eq!(replay.len(), 1);
        store.remove(&key, "x", "a", "t");
        assert_eq!(store.mutations().last().unwrap().event_type, EventType::Deleted);
    }

    #[test]
    fn a_prefixed_list_is_the_names_that_start_with_it_in_that_namespace() {
        let key = ResourceKey::new("", "pods");
        let mut store = Store::new(10);
        for (ns, name) in [("x", "db-0"), ("x", "db-1-0"), ("x", "db-10"), ("x", "dc-0"), ("y", "db-2"), ("x", "d")] {
            store.put(&key, json!({"metadata": {"name": name, "namespace": ns}}), "t");
        }
        let names = |prefix: &str| -> Vec<String> {
            let listed = store.list_prefixed(&key, "x", prefix);
            listed.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names("db-"), ["db-0", "db-1-0", "db-10"]);
        assert_eq!(names("db-1"), ["db-1-0", "db-10"]);
        assert!(names("zz-").is_empty());
    }
}
