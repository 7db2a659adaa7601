//! [`KubeStore`]: runs and locks kept in a Kubernetes namespace (`--state-store
//! kubernetes://NAMESPACE`), so a run outlives the pod or machine that started it.
//!
//! - A run is one ConfigMap, `drplan-run-<id>-<hash>`, labelled
//!   `app.kubernetes.io/managed-by=drplan` and `drplan.io/record=run`, holding the sealed
//!   (checksummed, Secret-redacted) record under `run.json`. Never a Secret: the record
//!   carries no secret data, and a ConfigMap says so to whoever reads it.
//! - Every save replaces the whole ConfigMap with the resourceVersion this store last saw:
//!   the API server applies it atomically (a reader sees the old record or the new one,
//!   so a writer killed mid-save leaves a consistent record), and a writer whose copy is
//!   stale gets 409 Conflict ([`StoreError::Conflict`]) instead of overwriting a newer record.
//!   Hence no journal here: the API server is the journal.
//! - A ConfigMap holds at most 1 MiB; a record that would not fit is refused before it is
//!   sent ([`StoreError::TooLarge`]), with the old record left in place.
//! - A lock is a `coordination.k8s.io/v1` Lease, `drplan-lock-<key>-<hash>`, with
//!   `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime` and the holder's
//!   [`LockInfo`] in an annotation. It is taken with a create (or a resourceVersion-checked
//!   update of a free or expired Lease), so of two contenders exactly one wins; renewed in
//!   the background while held; released by clearing the holder. A Lease whose `renewTime`
//!   is older than its duration is taken over and the previous holder reported, like the
//!   local store's dead-pid takeover. Expiry is judged by this machine's clock against the
//!   holder's `renewTime`, so clocks must agree to well within the lease duration (NTP).
//!   A holder that finds its Lease taken over stops saving ([`StoreError::LockLost`]).
//!
//! The [`StateStore`] trait is synchronous and the executor calls it while holding a
//! `std::sync::Mutex` on the run record (so every transition is saved before the next
//! one), which rules out making it async without restructuring the executor. Instead this
//! store owns a one-thread tokio runtime and runs every API call there, the caller waiting
//! on a channel: this works from plain threads, from any kind of runtime (where
//! `block_in_place` panics on a current-thread runtime and can starve a small one), and
//! keeps the Lease renewing even while the caller's runtime is busy.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, PostParams};

use super::integrity::{stamped, unseal};
use super::local::validate_run_id;
use super::record::{RunRecord, RunSummary};
use super::redact::value_without_secrets;
use super::store::{LockGuard, LockInfo, StateStore, StoreError};

/// The scheme of a `--state-store` naming a namespace.
pub const SCHEME: &str = "kubernetes://";

/// Most bytes a ConfigMap's data may hold (keys included); the API server refuses more.
pub const CONFIG_MAP_LIMIT: usize = 1024 * 1024;

/// The data key of the record in its ConfigMap.
pub const RECORD_KEY: &str = "run.json";

const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "drplan";
const RECORD_LABEL: &str = "drplan.io/record";
const PLAN_LABEL: &str = "drplan.io/plan";
const RUN_ID_ANNOTATION: &str = "drplan.io/run-id";
const LOCK_KEY_ANNOTATION: &str = "drplan.io/lock-key";
const HOLDER_ANNOTATION: &str = "drplan.io/lock-holder";

/// How long a Lease stays valid without renewal, unless the store URL says otherwise.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);

/// Longest a single API call may take before the store gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often to retry taking a lock whose Lease changed between reading and writing it.
const LOCK_ATTEMPTS: usize = 5;

/// Where a `--state-store` value points: `kubernetes://NAMESPACE[?lease-duration=30s]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeStoreUrl {
    pub namespace: String,
    pub lease_duration: Duration,
}

impl KubeStoreUrl {
    /// `None` when `spec` is not a `kubernetes://` URL (then it names a local directory).
    pub fn parse(spec: &str) -> Option<Result<KubeStoreUrl, String>> {
        let rest = spec.strip_prefix(SCHEME)?;
        Some(Self::parse_rest(rest).map_err(|why| format!("--state-store {spec}: {why}")))
    }

    fn parse_rest(rest: &str) -> Result<KubeStoreUrl, String> {
        let (namespace, query) = rest.split_once('?').unwrap_or((rest, ""));
        let namespace = namespace.trim_end_matches('/');
        if !is_dns_label(namespace) {
            return Err(format!(
                "{namespace:?} is not a namespace name (lowercase letters, digits and '-', at most 63); \
                 write kubernetes://NAMESPACE"
            ));
        }
        let mut lease_duration = DEFAULT_LEASE_DURATION;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("lease-duration", value)) => {
                    lease_duration = humantime::parse_duration(value)
                        .ok()
                        .filter(|d| *d >= Duration::from_secs(1))
                        .ok_or_else(|| format!("lease-duration={value} is not a duration of at least 1s"))?;
                }
                _ => return Err(format!("unknown option {pair:?}; the only one is lease-duration=DURATION")),
            }
        }
        Ok(KubeStoreUrl { namespace: namespace.to_string(), lease_duration })
    }
}

/// A [`StateStore`] in a Kubernetes namespace: runs in ConfigMaps, locks as Leases.
#[derive(Clone)]
pub struct KubeStore {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    lease_duration: Duration,
    client: kube::Client,
    /// resourceVersion of each run's ConfigMap as this store last read or wrote it.
    versions: Mutex<HashMap<String, String>>,
    /// Lock keys whose Lease this store held and found taken over by someone else.
    lost: Arc<Mutex<HashMap<String, String>>>,
    /// Declared last: dropped after the client whose connections it drives.
    runtime: StoreRuntime,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore").field("namespace", &self.inner.namespace).finish_non_exhaustive()
    }
}

impl KubeStore {
    /// A store in `url`'s namespace of the cluster `config` reaches. Nothing is sent yet.
    pub fn new(config: kube::Config, url: &KubeStoreUrl) -> Result<KubeStore, StoreError> {
        let runtime = StoreRuntime::new().map_err(|e| StoreError::Kubernetes {
            action: "start a runtime for",
            location: format!("namespace {}", url.namespace),
            reason: e.to_string(),
        })?;
        // The client spawns its connection tasks where it is made: on the store's runtime.
        let client = {
            let _entered = runtime.handle().enter();
            kube::Client::try_from(config).map_err(|e| StoreError::Kubernetes {
                action: "create a client for",
                location: format!("namespace {}", url.namespace),
                reason: e.to_string(),
            })?
        };
        Ok(KubeStore {
            inner: Arc::new(Inner {
                namespace: url.namespace.clone(),
                lease_duration: url.lease_duration,
                client,
                versions: Mutex::default(),
                lost: Arc::default(),
                runtime,
            }),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The ConfigMap that holds run `run_id`; the id is checked first.
    pub fn config_map_name(run_id: &str) -> Result<String, StoreError> {
        validate_run_id(run_id)?;
        Ok(format!("drplan-run-{}", dns_safe(run_id, 200)))
    }

    /// The Lease that is the lock `key`.
    pub fn lease_name(key: &str) -> String {
        format!("drplan-lock-{}", dns_safe(key, 80))
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.inner.client.clone(), &self.inner.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.inner.client.clone(), &self.inner.namespace)
    }

    fn run_location(&self, name: &str) -> String {
        format!("ConfigMap {}/{name}", self.inner.namespace)
    }

    /// Runs an API call on the store's runtime and waits for it, timing it out.
    fn call<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, kube::Error>> + Send + 'static,
    ) -> Result<T, CallError> {
        self.inner.runtime.call(future)
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner.versions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record's ConfigMap content: sealed, redacted, compact JSON, refused if too large.
    fn encode(&self, run: &RunRecord, location: &str) -> Result<String, StoreError> {
        let encode_error = |source| StoreError::Encode { run_id: run.run_id.clone(), source };
        let value = stamped(value_without_secrets(run).map_err(encode_error)?, 0);
        let payload = serde_json::to_string(&value).map_err(encode_error)?;
        let bytes = RECORD_KEY.len() + payload.len();
        if bytes > CONFIG_MAP_LIMIT {
            return Err(StoreError::TooLarge {
                run_id: run.run_id.clone(),
                location: location.to_string(),
                bytes,
                limit: CONFIG_MAP_LIMIT,
            });
        }
        Ok(payload)
    }

    fn config_map(&self, name: &str, run: &RunRecord, payload: String, version: Option<String>) -> ConfigMap {
        let labels = [
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            (RECORD_LABEL.to_string(), "run".to_string()),
            (PLAN_LABEL.to_string(), label_value(&run.plan_name)),
        ];
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.inner.namespace.clone()),
                labels: Some(labels.into_iter().collect()),
                annotations: Some([(RUN_ID_ANNOTATION.to_string(), run.run_id.clone())].into_iter().collect()),
                resource_version: version,
                ..ObjectMeta::default()
            },
            data: Some([(RECORD_KEY.to_string(), payload)].into_iter().collect()),
            ..ConfigMap::default()
        }
    }

    /// The run in `config_map`, checked to be whole and to be run `run_id`.
    fn decode(&self, run_id: &str, config_map: &ConfigMap) -> Result<RunRecord, StoreError> {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        let location = PathBuf::from(self.run_location(&name));
        let Some(payload) = config_map.data.as_ref().and_then(|data| data.get(RECORD_KEY)) else {
            let reason = format!("it has no {RECORD_KEY} entry");
            return Err(StoreError::Corrupt { path: location, reason });
        };
        let (record, _) = unseal(&location, payload.as_bytes())?;
        if record.run_id != run_id {
            // A ConfigMap copied by hand: resuming it would write to the wrong run.
            let reason = format!("it records run {}, but is stored as run {run_id}", record.run_id);
            return Err(StoreError::Corrupt { path: location, reason });
        }
        Ok(record)
    }

    fn api_error(&self, action: &'static str, location: &str, error: CallError) -> StoreError {
        StoreError::Kubernetes { action, location: location.to_string(), reason: error.describe(&self.inner.namespace) }
    }
}

impl StateStore for KubeStore {
    fn lock(&self, key: &str, info: &LockInfo) -> Result<Box<dyn LockGuard>, StoreError> {
        let lease = LeaseLock {
            api: self.leases(),
            namespace: self.inner.namespace.clone(),
            name: Self::lease_name(key),
            key: key.to_string(),
            identity: holder_identity(info),
            duration: self.inner.lease_duration,
        };
        let location = lease.location();
        let mut attempts = 0;
        let took_over_from = loop {
            attempts += 1;
            let attempt = lease.clone();
            let info = info.clone();
            match self.call(async move { attempt.try_acquire(&info).await }) {
                Ok(Acquired::Taken { took_over_from }) => break took_over_from,
                Ok(Acquired::HeldBy { holder, expires }) => return Err(lease.locked(*holder, &expires)),
                // Someone changed the Lease between our read and our write: look again.
                Err(CallError::Api(e)) if e.code == 409 && attempts < LOCK_ATTEMPTS => continue,
                Err(e) => return Err(self.api_error("take the lock", &location, e)),
            }
        };
        self.inner.lost.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        let renewer = Renewer::start(&self.inner.runtime, lease.clone(), Arc::clone(&self.inner.lost));
        Ok(Box::new(KubeLockGuard {
            store: self.clone(),
            lease,
            info: info.clone(),
            took_over_from,
            renewer: Some(renewer),
        }))
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let name = Self::config_map_name(&run.run_id)?;
        let location = self.run_location(&name);
        let payload = self.encode(run, &location)?;
        let object = self.config_map(&name, run, payload, None);
        let api = self.config_maps();
        match self.call(async move { api.create(&PostParams::default(), &object).await }) {
            Ok(created) => {
                self.remember_version(&run.run_id, &created);
                Ok(())
            }
            Err(CallError::Api(e)) if e.code == 409 => {
                Err(StoreError::RunExists { run_id: run.run_id.clone(), path: PathBuf::from(location) })
            }
            Err(e) => Err(self.api_error("create", &location, e)),
        }
    }

    fn save_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let name = Self::config_map_name(&run.run_id)?;
        let location = self.run_location(&name);
        self.refuse_if_lock_lost(run)?;
        let payload = self.encode(run, &location)?;
        let known = self.versions().get(&run.run_id).cloned();
        let version = match known {
            Some(version) => version,
            // Not read or written by this process yet: the caller holds the run's lock,
            // so the stored record is the one it continues.
            None => {
                let current = self.get_config_map(&run.run_id, &name)?;
                current.metadata.resource_version.clone().unwrap_or_default()
            }
        };
        let object = self.config_map(&name, run, payload, Some(version.clone()));
        let api = self.config_maps();
        let replace_name = name.clone();
        match self.call(async move { api.replace(&replace_name, &PostParams::default(), &object).await }) {
            Ok(stored) => {
                self.remember_version(&run.run_id, &stored);
                Ok(())
            }
            Err(CallError::Api(e)) if e.code == 409 => {
                Err(StoreError::Conflict { run_id: run.run_id.clone(), location, expected: version })
            }
            Err(CallError::Api(e)) if e.code == 404 => {
                Err(StoreError::RunNotInCluster { run_id: run.run_id.clone(), location })
            }
            Err(e) => Err(self.api_error("save", &location, e)),
        }
    }

    fn load_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let name = Self::config_map_name(run_id)?;
        let config_map = self.get_config_map(run_id, &name)?;
        let record = self.decode(run_id, &config_map)?;
        self.remember_version(run_id, &config_map);
        Ok(record)
    }

    fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let location = format!("ConfigMaps in namespace {}", self.inner.namespace);
        let api = self.config_maps();
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{RECORD_LABEL}=run");
        let list = self
            .call(async move { api.list(&ListParams::default().labels(&selector)).await })
            .map_err(|e| self.api_error("list", &location, e))?;
        let mut summaries: Vec<RunSummary> = list.items.iter().map(|cm| self.summarize(cm)).collect();
        summaries.sort_by(|a, b| (&b.created_at, &b.run_id).cmp(&(&a.created_at, &a.run_id)));
        Ok(summaries)
    }
}

impl KubeStore {
    fn get_config_map(&self, run_id: &str, name: &str) -> Result<ConfigMap, StoreError> {
        let location = self.run_location(name);
        let api = self.config_maps();
        let get_name = name.to_string();
        match self.call(async move { api.get_opt(&get_name).await }) {
            Ok(Some(config_map)) => Ok(config_map),
            Ok(None) => Err(StoreError::RunNotInCluster { run_id: run_id.to_string(), location }),
            Err(e) => Err(self.api_error("read", &location, e)),
        }
    }

    fn remember_version(&self, run_id: &str, config_map: &ConfigMap) {
        if let Some(version) = &config_map.metadata.resource_version {
            self.versions().insert(run_id.to_string(), version.clone());
        }
    }

    /// A holder whose Lease was taken over must not write: the new holder owns the run now.
    fn refuse_if_lock_lost(&self, run: &RunRecord) -> Result<(), StoreError> {
        let key = run.lock_key();
        let lost = self.inner.lost.lock().unwrap_or_else(|p| p.into_inner());
        match lost.get(&key) {
            Some(holder) => Err(StoreError::LockLost {
                location: format!("Lease {}/{}", self.inner.namespace, Self::lease_name(&key)),
                holder: holder.clone(),
                run_id: run.run_id.clone(),
            }),
            None => Ok(()),
        }
    }

    fn summarize(&self, config_map: &ConfigMap) -> RunSummary {
        let meta = &config_map.metadata;
        let run_id = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(RUN_ID_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| meta.name.clone().unwrap_or_default());
        match self.decode(&run_id, config_map) {
            Ok(record) => RunSummary::of(&record),
            Err(problem) => {
                let created = meta.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
                RunSummary::corrupt(&run_id, problem.to_string(), created)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Locks

/// One lock's Lease and who this process is in it.
#[derive(Clone)]
struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    key: String,
    /// `holderIdentity` of this acquisition; unique, so a renewal never mistakes another
    /// holder's Lease for its own.
    identity: String,
    duration: Duration,
}

enum Acquired {
    Taken { took_over_from: Option<LockInfo> },
    HeldBy { holder: Box<LockInfo>, expires: String },
}

impl LeaseLock {
    fn location(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.name)
    }

    fn locked(&self, holder: LockInfo, expires: &str) -> StoreError {
        let if_gone = format!(
            "If that process is gone (for example its pod was killed), it no longer renews the lease, \
             which then expires at {expires}; `dr resume {}` takes it over after that.",
            holder.run_id
        );
        StoreError::Locked { location: self.location(), holder: Box::new(holder), if_gone }
    }

    /// One attempt: create the Lease, or take it if free or expired. A 409 means another
    /// contender wrote first; the caller looks again.
    async fn try_acquire(&self, info: &LockInfo) -> Result<Acquired, kube::Error> {
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = self.held_lease(None, info, now, 0);
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Acquired::Taken { took_over_from: None });
        };
        let spec = current.spec.clone().unwrap_or_default();
        let previous = spec.holder_identity.as_ref().filter(|h| !h.is_empty()).map(|_| holder_of(&current));
        let expiry = expiry_of(&spec);
        if let Some(previous) = &previous
            && expiry.is_none_or(|at| at > now)
        {
            let expires = expiry.map_or_else(|| "an unknown time".to_string(), |at| at.to_string());
            return Ok(Acquired::HeldBy { holder: Box::new(previous.clone()), expires });
        }
        // Free (released) or expired: take it, on the condition nobody changed it since.
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(previous.is_some());
        let lease = self.held_lease(Some(&current), info, now, transitions);
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(Acquired::Taken { took_over_from: previous })
    }

    /// The Lease as this process holds it, based on `current` (its resourceVersion is the
    /// precondition of the update).
    fn held_lease(&self, current: Option<&Lease>, info: &LockInfo, now: Timestamp, transitions: i32) -> Lease {
        let mut metadata = current.map(|l| l.metadata.clone()).unwrap_or_default();
        metadata.name = Some(self.name.clone());
        let labels = metadata.labels.get_or_insert_with(Default::default);
        labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
        let annotations = metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(LOCK_KEY_ANNOTATION.to_string(), self.key.clone());
        annotations.insert(HOLDER_ANNOTATION.to_string(), serde_json::to_string(info).unwrap_or_default());
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX).max(1)),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Moves `renewTime` to now if this process still holds the Lease. `Ok(Some(holder))`
    /// when someone else holds it now.
    async fn renew(&self) -> Result<Option<String>, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(Some("nobody (the Lease was deleted)".into()));
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(Some(holder_of(&lease).to_string()));
        }
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(None)
    }

    /// Clears the holder if it is still this process. `Ok(Some(holder))` when someone
    /// else had taken it over.
    async fn release(&self) -> Result<Option<String>, kube::Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(None) };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(Some(holder_of(&lease).to_string()));
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            if let Some(annotations) = lease.metadata.annotations.as_mut() {
                annotations.remove(HOLDER_ANNOTATION);
            }
            match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(None),
                // Our own last renewal landed in between: read again.
                Err(kube::Error::Api(e)) if e.code == 409 && attempts < LOCK_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// When the Lease expires: its last renewal (or acquisition) plus its duration. `None`
/// when it records neither, which only a hand-made Lease does.
fn expiry_of(spec: &LeaseSpec) -> Option<Timestamp> {
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    last.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// Who holds `lease`, from drplan's annotation, or from `holderIdentity` for a Lease some
/// other tool wrote.
fn holder_of(lease: &Lease) -> LockInfo {
    let recorded = lease.metadata.annotations.as_ref().and_then(|a| a.get(HOLDER_ANNOTATION));
    if let Some(info) = recorded.and_then(|json| serde_json::from_str::<LockInfo>(json).ok()) {
        return info;
    }
    let spec = lease.spec.clone().unwrap_or_default();
    LockInfo {
        holder: spec.holder_identity.unwrap_or_else(|| "an unknown holder".into()),
        pid: 0,
        host: "unknown host".into(),
        run_id: "unknown".into(),
        since: spec.acquire_time.map_or_else(|| "unknown".into(), |t| t.0.to_string()),
        operation: "unknown".into(),
    }
}

/// `user@host pid N run ID #abcd`: readable in `kubectl get lease`, and unique per acquisition.
fn holder_identity(info: &LockInfo) -> String {
    format!("{} pid {} run {} #{:04x}", info.holder, info.pid, info.run_id, super::random_u16())
}

/// Renews a held Lease every third of its duration until stopped, on the store's runtime.
struct Renewer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Renewer {
    fn start(runtime: &StoreRuntime, lease: LeaseLock, lost: Arc<Mutex<HashMap<String, String>>>) -> Renewer {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let every = lease.duration / 3;
        let task = runtime.handle().spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(every) => {}
                }
                // Renewed, or a failed or slow call: try again at the next tick, while the
                // Lease is still valid. If it expires meanwhile, the next renewal sees the new holder.
                let renewed = tokio::time::timeout(every.max(Duration::from_millis(100)), lease.renew()).await;
                if let Ok(Ok(Some(holder))) = renewed {
                    lost.lock().unwrap_or_else(|p| p.into_inner()).insert(lease.key.clone(), holder);
                    return;
                }
            }
        });
        Renewer { stop: Some(stop), task: Some(task) }
    }

    /// Stops renewing and waits until no renewal is in flight.
    fn stop(&mut self, runtime: &StoreRuntime) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = runtime.block_on(task);
        }
    }
}

struct KubeLockGuard {
    store: KubeStore,
    lease: LeaseLock,
    info: LockInfo,
    took_over_from: Option<LockInfo>,
    /// `None` once released.
    renewer: Option<Renewer>,
}

impl std::fmt::Debug for KubeLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLockGuard")
            .field("lease", &self.lease.location())
            .field("info", &self.info)
            .field("took_over_from", &self.took_over_from)
            .finish_non_exhaustive()
    }
}

impl KubeLockGuard {
    fn release(&mut self) -> Result<(), StoreError> {
        let Some(mut renewer) = self.renewer.take() else { return Ok(()) };
        let runtime = &self.store.inner.runtime;
        renewer.stop(runtime);
        let location = self.lease.location();
        let lease = self.lease.clone();
        match self.store.call(async move { lease.release().await }) {
            Ok(None) => Ok(()),
            Ok(Some(holder)) => Err(StoreError::LockLost { location, holder, run_id: self.info.run_id.clone() }),
            Err(e) => Err(self.store.api_error("release", &location, e)),
        }
    }
}

impl LockGuard for KubeLockGuard {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn took_over_from(&self) -> Option<&LockInfo> {
        self.took_over_from.as_ref()
    }

    fn unlock(mut self: Box<Self>) -> Result<(), StoreError> {
        self.release()
    }
}

impl Drop for KubeLockGuard {
    fn drop(&mut self) {
        // Released even on an early return; a failure here leaves a Lease that expires.
        let _ = self.release();
    }
}

// ---------------------------------------------------------------------------
// The store's runtime

/// Why a call to the API server failed.
enum CallError {
    Api(Box<kube::core::Status>),
    Other(kube::Error),
    TimedOut,
    /// The store's runtime is gone (only while the process exits).
    Stopped,
}

impl CallError {
    fn describe(&self, namespace: &str) -> String {
        match self {
            CallError::Api(status)
                if status.code == 404 && status.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
            {
                format!(
                    "the namespace {namespace} does not exist; create it or name another with --state-store kubernetes://NAMESPACE"
                )
            }
            CallError::Api(status) => format!("{} ({} {})", status.message, status.code, status.reason),
            CallError::Other(e) => e.to_string(),
            CallError::TimedOut => format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
            CallError::Stopped => "the store was shut down".into(),
        }
    }
}

/// A one-thread tokio runtime that runs the store's API calls and Lease renewals.
struct StoreRuntime {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl StoreRuntime {
    fn new() -> std::io::Result<StoreRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("drplan-kube-store")
            .enable_all()
            .build()?;
        Ok(StoreRuntime { runtime: Some(runtime) })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime lives until the store is dropped").handle()
    }

    /// Runs an API call there with a timeout and waits for it on this thread.
    fn call<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, kube::Error>> + Send + 'static,
    ) -> Result<T, CallError> {
        let timed = async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(kube::Error::Api(status))) => Err(CallError::Api(status)),
                Ok(Err(e)) => Err(CallError::Other(e)),
                Err(_) => Err(CallError::TimedOut),
            }
        };
        self.block_on(timed).unwrap_or(Err(CallError::Stopped))
    }

    /// Runs `future` there and waits for it on this thread (a plain channel, so any
    /// thread may wait, inside another runtime or not). `None` if the runtime is gone.
    fn block_on<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver.recv().ok()
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside the caller's async context;
        // shutting it down in the background does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------------------
// Names

/// `text` as part of an object name: lowercase letters, digits and '-', at most `max`
/// of them, then a hash of the exact text so that ids differing in case or in replaced
/// characters stay distinct.
fn dns_safe(text: &str, max: usize) -> String {
    let readable: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(max).collect();
    let readable = readable.trim_matches('-');
    let hash = super::digest(text.as_bytes());
    if readable.is_empty() { hash[..10].to_string() } else { format!("{readable}-{}", &hash[..10]) }
}

/// `text` as a label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric.
fn label_value(text: &str) -> String {
    let value: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(63)
        .collect();
    value.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_namespace_and_an_optional_lease_duration() {
        assert_eq!(KubeStoreUrl::parse(".drplan"), None);
        let url = KubeStoreUrl::parse("kubernetes://dr-state").unwrap().unwrap();
        assert_eq!(url, KubeStoreUrl { namespace: "dr-state".into(), lease_duration: DEFAULT_LEASE_DURATION });
        let url = KubeStoreUrl::parse("kubernetes://dr-state/?lease-duration=2s").unwrap().unwrap();
        assert_eq!(url.lease_duration, Duration::from_secs(2));
        for bad in [
            "kubernetes://",
            "kubernetes://Upper",
            "kubernetes://a/b",
            "kubernetes://ns?lease-duration=0s",
            "kubernetes://ns?x=1",
        ] {
            let err = KubeStoreUrl::parse(bad).unwrap().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn object_names_are_valid_and_distinct() {
        let a = KubeStore::config_map_name("20250102T030405Z-db-failover-3fa9").unwrap();
        let b = KubeStore::config_map_name("20250102t030405z-db-failover-3fa9").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("drplan-run-20250102t030405z-db-failover-3fa9-"), "{a}");
        for name in [&a, &KubeStore::lease_name("db/failover@ctx-a,ctx-b"), &KubeStore::lease_name(&"x".repeat(999))] {
            assert!(
                name.len() <= 253 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
        assert!(matches!(KubeStore::config_map_name("../x"), Err(StoreError::InvalidRunId { .. })));
        assert_eq!(label_value("-DB failover/eu-"), "DB-failover-eu");
    }
}
