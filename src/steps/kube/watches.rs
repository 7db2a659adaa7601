//! Shared watches: every wait of a run on objects of one kind in one namespace reads one
//! watch instead of opening its own (a fleet of waits would otherwise hold hundreds of
//! watches on the API server). A background task keeps a cache of the namespace's objects
//! of that kind from a kube-runtime watcher, as a reflector does; waits subscribe to it
//! and evaluate their condition each time it changes, like `kube::runtime::wait`.
//!
//! A wait never acts on a cache older than the moment it started: it first reads its
//! objects fresh (one list, which also gives the collection's resourceVersion `R`), and
//! trusts the cache only once the cache has applied an event newer than `R`, or has been
//! re-listed (a consistent list) since. resourceVersions are compared as numbers, which
//! they are on etcd-backed servers and the sim; a server whose versions are not numbers
//! gets its waits answered by polling fresh lists.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, ListSemantic};
use serde::de::DeserializeOwned;

/// How often a wait polls when resourceVersions cannot be compared.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// The watches of one run, by cluster, kind and namespace. Dropping it stops them.
#[derive(Default)]
pub struct SharedWatches {
    watches: Mutex<HashMap<WatchKey, Arc<dyn Any + Send + Sync>>>,
}

/// Cluster (plan name), Rust type, and the collection's URL (kind and namespace).
pub(super) type WatchKey = (String, TypeId, String);

/// What a condition sees: the objects of the kind in the namespace, by name.
pub struct View<'a, K> {
    objects: &'a HashMap<String, Arc<K>>,
}

impl<K> View<'_, K> {
    pub fn get(&self, name: &str) -> Option<&K> {
        self.objects.get(name).map(|o| &**o)
    }

    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.objects.values().map(|o| &**o)
    }
}

/// Why a wait on a shared watch ended without its answer.
#[derive(Clone, Debug)]
pub struct WatchError {
    pub message: String,
    /// The server refused the list or watch (401/403) or does not serve the kind (404):
    /// waiting again cannot help.
    pub refused: bool,
}

impl WatchError {
    fn listing(url: &str, error: &kube::Error) -> WatchError {
        let refused = matches!(error, kube::Error::Api(s) if matches!(s.code, 401 | 403 | 404));
        WatchError { message: format!("listing {url}: {error}"), refused }
    }
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a shared watch can hold: any kind `kube::runtime::watcher` can watch.
pub trait Watched: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

impl<K> Watched for K where K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

impl SharedWatches {
    /// Waits until `check` answers on the objects of `api`'s kind and namespace, reading
    /// them fresh through `fresh` first and then from the shared watch. Errors are the
    /// API's (worth retrying as a step) or the watch's when it cannot be kept.
    pub async fn until<K, R>(
        &self,
        cluster: &str,
        api: &Api<K>,
        fresh: &ListParams,
        check: impl Fn(View<'_, K>) -> Option<R>,
    ) -> Result<R, WatchError>
    where
        K: Watched,
    {
        let shared = self.shared(cluster, api);
        let mut changed = shared.changed.subscribe();
        let list = api.list(fresh).await.map_err(|e| WatchError::listing(api.resource_url(), &e))?;
        let relists_before = shared.state().relists_started;
        let objects: HashMap<String, Arc<K>> =
            list.items.into_iter().map(|o| (o.meta().name.clone().unwrap_or_default(), Arc::new(o))).collect();
        if let Some(answer) = check(View { objects: &objects }) {
            return Ok(answer);
        }
        let Some(read_at) = list.metadata.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()) else {
            return poll(api, fresh, check).await;
        };
        loop {
            changed.changed().await.map_err(|_| WatchError {
                message: format!("the watch on {} stopped", api.resource_url()),
                refused: false,
            })?;
            let state = shared.state();
            if let Some(error) = &state.failed {
                return Err(WatchError { message: format!("watching {}: {error}", api.resource_url()), refused: true });
            }
            if state.caught_up(read_at, relists_before)
                && let Some(answer) = check(View { objects: &state.objects })
            {
                return Ok(answer);
            }
        }
    }

    /// Waits until `condition` holds for the object `name` (`None`: absent) and returns
    /// the object as it then was.
    pub async fn until_named<K>(
        &self,
        cluster: &str,
        api: &Api<K>,
        name: &str,
        condition: impl Fn(Option<&K>) -> bool,
    ) -> Result<Option<K>, WatchError>
    where
        K: Watched,
    {
        let fresh = ListParams::default().fields(&format!("metadata.name={name}"));
        self.until(cluster, api, &fresh, |view| {
            let object = view.get(name);
            condition(object).then(|| object.cloned())
        })
        .await
    }

    /// Watches started so far (one per cluster, kind and namespace).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WatchKey, Arc<dyn Any + Send + Sync>>> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The watch of `api`'s kind and namespace, started on first use.
    fn shared<K>(&self, cluster: &str, api: &Api<K>) -> Arc<SharedWatch<K>>
    where
        K: Watched,
    {
        let key = (cluster.to_string(), TypeId::of::<K>(), api.resource_url().to_string());
        let mut watches = self.lock();
        if let Some(found) = watches.get(&key).cloned().and_then(|w| w.downcast::<SharedWatch<K>>().ok()) {
            return found;
        }
        let started = Arc::new(SharedWatch::start(api.clone()));
        watches.insert(key, started.clone());
        started
    }
}

/// Answers a wait by listing every [`POLL_EVERY`] (servers without numeric versions).
async fn poll<K, R>(api: &Api<K>, fresh: &ListParams, check: impl Fn(View<'_, K>) -> Option<R>) -> Result<R, WatchError>
where
    K: Watched,
{
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let list = api.list(fresh).await.map_err(|e| WatchError::listing(api.resource_url(), &e))?;
        let objects: HashMap<String, Arc<K>> =
            list.items.into_iter().map(|o| (o.meta().name.clone().unwrap_or_default(), Arc::new(o))).collect();
        if let Some(answer) = check(View { objects: &objects }) {
            return Ok(answer);
        }
    }
}

/// One watch and its cache; the task stops when the last holder lets go.
struct SharedWatch<K> {
    inner: Arc<Inner<K>>,
    task: tokio::task::AbortHandle,
}

impl<K> Drop for SharedWatch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Inner<K> {
    state: Mutex<CacheState<K>>,
    /// Bumped after every change the cache applies.
    changed: tokio::sync::watch::Sender<u64>,
}

struct CacheState<K> {
    objects: HashMap<String, Arc<K>>,
    /// The newest resourceVersion among the events (and listed objects) applied.
    applied_version: u64,
    /// Lists begun, and the number of the last one completed.
    relists_started: u64,
    relist_completed: u64,
    /// Objects of a list in progress, swapped in when it completes.
    listing: Option<HashMap<String, Arc<K>>>,
    listing_version: u64,
    /// Set when the watch cannot be kept (the kind is gone, access was revoked).
    failed: Option<String>,
}

impl<K> CacheState<K> {
    /// Whether the cache is at least as new as a read at resourceVersion `read_at`, made
    /// when `relists_before` lists had begun: it applied a newer event, or a list that
    /// began after that read completed.
    fn caught_up(&self, read_at: u64, relists_before: u64) -> bool {
        self.applied_version > read_at || self.relist_completed > relists_before
    }
}

impl<K> SharedWatch<K>
where
    K: Watched,
{
    fn start(api: Api<K>) -> SharedWatch<K> {
        let state = CacheState {
            objects: HashMap::new(),
            applied_version: 0,
            relists_started: 0,
            relist_completed: 0,
            listing: None,
            listing_version: 0,
            failed: None,
        };
        let (changed, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner { state: Mutex::new(state), changed });
        let task = tokio::spawn(follow(api, inner.clone())).abort_handle();
        SharedWatch { inner, task }
    }
}

impl<K> SharedWatch<K> {
    fn state(&self) -> std::sync::MutexGuard<'_, CacheState<K>> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K> std::ops::Deref for SharedWatch<K> {
    type Target = Inner<K>;
    fn deref(&self) -> &Inner<K> {
        &self.inner
    }
}

/// Keeps the cache: the watcher re-lists and re-watches (with backoff) when the watch is
/// cut or too old; lists are consistent reads, so a completed list is at least as new as
/// anything a wait read before it began.
async fn follow<K>(api: Api<K>, inner: Arc<Inner<K>>)
where
    K: Watched,
{
    let config = watcher::Config::default().list_semantic(ListSemantic::MostRecent);
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        {
            let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            apply(&mut state, event);
        }
        inner.changed.send_modify(|n| *n += 1);
    }
}

fn version_of<K: kube::Resource>(object: &K) -> u64 {
    object.meta().resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn name_of<K: kube::Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

fn apply<K: kube::Resource>(state: &mut CacheState<K>, event: Result<watcher::Event<K>, watcher::Error>) {
    match event {
        Ok(watcher::Event::Init) => {
            state.relists_started += 1;
            state.listing = Some(HashMap::new());
            state.listing_version = 0;
        }
        Ok(watcher::Event::InitApply(object)) => {
            state.listing_version = state.listing_version.max(version_of(&object));
            state.listing.get_or_insert_with(HashMap::new).insert(name_of(&object), Arc::new(object));
        }
        Ok(watcher::Event::InitDone) => {
            state.objects = state.listing.take().unwrap_or_default();
            state.applied_version = state.applied_version.max(state.listing_version);
            state.relist_completed = state.relists_started;
            state.failed = None;
        }
        Ok(watcher::Event::Apply(object)) => {
            state.applied_version = state.applied_version.max(version_of(&object));
            state.objects.insert(name_of(&object), Arc::new(object));
        }
        Ok(watcher::Event::Delete(object)) => {
            state.applied_version = state.applied_version.max(version_of(&object));
            state.objects.remove(&name_of(&object));
        }
        Err(error) => {
            if let Some(reason) = permanent(&error) {
                state.failed = Some(reason);
            }
        }
    }
}

/// A watch error retrying cannot mend: the kind is not served, or access is refused.
fn permanent(error: &watcher::Error) -> Option<String> {
    let api_error = match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            e
        }
        _ => return None,
    };
    match api_error {
        kube::Error::Api(status) if matches!(status.code, 401 | 403 | 404) => Some(api_error.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;

    use super::*;

    fn claim(name: &str, version: u64, phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "resourceVersion": version.to_string() },
            "status": { "phase": phase },
        }))
        .unwrap()
    }

    fn empty() -> CacheState<PersistentVolumeClaim> {
        CacheState {
            objects: HashMap::new(),
            applied_version: 0,
            relists_started: 0,
            relist_completed: 0,
            listing: None,
            listing_version: 0,
            failed: None,
        }
    }

    fn listed(state: &mut CacheState<PersistentVolumeClaim>, objects: Vec<PersistentVolumeClaim>) {
        apply(state, Ok(watcher::Event::Init));
        for o in objects {
            apply(state, Ok(watcher::Event::InitApply(o)));
        }
        apply(state, Ok(watcher::Event::InitDone));
    }

    #[test]
    fn a_cache_older_than_the_waits_own_read_is_not_trusted() {
        // The cache still holds the old claim, Bound at version 10; the wait read the
        // replacement fresh at version 20 (Pending). The old Bound claim must not answer it.
        let mut state = empty();
        listed(&mut state, vec![claim("data", 10, "Bound")]);
        let relists_before = state.relists_started;
        assert!(!state.caught_up(20, relists_before), "the cache has applied nothing past 20");
        // Events older than the read still do not make it current.
        apply(&mut state, Ok(watcher::Event::Delete(claim("data", 15, "Bound"))));
        assert!(!state.caught_up(20, relists_before));
        apply(&mut state, Ok(watcher::Event::Apply(claim("data", 21, "Bound"))));
        assert!(state.caught_up(20, relists_before), "an event newer than the read");
        assert_eq!(state.objects["data"].metadata.resource_version.as_deref(), Some("21"));
    }

    #[test]
    fn a_relist_begun_after_the_read_makes_the_cache_current() {
        let mut state = empty();
        listed(&mut state, vec![claim("data", 10, "Bound")]);
        let relists_before = state.relists_started;
        // A watch cut and re-list: the claim is gone, nothing in the list is newer than 20.
        apply(&mut state, Ok(watcher::Event::Init));
        assert!(!state.caught_up(20, relists_before), "a list in progress does not count");
        apply(&mut state, Ok(watcher::Event::InitApply(claim("other", 5, "Bound"))));
        apply(&mut state, Ok(watcher::Event::InitDone));
        assert!(state.caught_up(20, relists_before));
        assert!(!state.objects.contains_key("data"), "objects missing from the re-list are dropped");
    }

    #[test]
    fn only_errors_retrying_cannot_mend_fail_the_waits() {
        let mut state = empty();
        let status = |code| kube::core::Status { code, ..Default::default() };
        let refused = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status(403))));
        let throttled = watcher::Error::WatchFailed(kube::Error::Api(Box::new(status(429))));
        apply(&mut state, Err(throttled));
        assert!(state.failed.is_none());
        apply(&mut state, Err(refused));
        assert!(state.failed.is_some());
    }
}
