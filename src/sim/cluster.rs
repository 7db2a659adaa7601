//! Starting a simulated cluster and the handle to it: the URL, a `kube::Client`, a
//! kubeconfig for kubectl, the virtual clock, volume data, and the audit log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::clock::SimClock;
use super::config::SimConfig;
use super::controllers::{reconcile, reconcile_after_write};
use super::error::ApiError;
use super::manifests;
use super::state::{RequestRecord, State};
use super::store::Mutation;

/// Why a sim could not start or a handle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("loading manifests: {0}")]
    Manifest(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("building a client: {0}")]
    Client(String),
    #[error("refusing to listen on non-loopback address {0} (pass --allow-non-loopback to override)")]
    NotLoopback(SocketAddr),
}

/// State shared by the server, the ticker and handles.
pub struct Shared {
    state: Mutex<State>,
    pub clock: SimClock,
}

impl Shared {
    /// The cluster state. A panic elsewhere must not take the sim down: the state is
    /// consistent between requests, so a poisoned lock is recovered.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Entry point: `SimCluster::start(&paths, config)`.
pub struct SimCluster;

impl SimCluster {
    /// Loads the manifests and serves on a free loopback port.
    pub async fn start(manifests: &[PathBuf], config: SimConfig) -> Result<SimHandle, SimError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), manifests, config, false).await
    }

    /// Serves on `listen`; non-loopback addresses need `allow_non_loopback` (the sim has no auth).
    pub async fn start_on(
        listen: SocketAddr,
        manifests: &[PathBuf],
        config: SimConfig,
        allow_non_loopback: bool,
    ) -> Result<SimHandle, SimError> {
        if !listen.ip().is_loopback() && !allow_non_loopback {
            return Err(SimError::NotLoopback(listen));
        }
        let objects = manifests::read_paths(manifests).map_err(SimError::Manifest)?;
        Self::start_with_objects(listen, objects, config, allow_non_loopback).await
    }

    /// Serves objects already read (generated fixtures, benchmarks).
    pub async fn start_with_objects(
        listen: SocketAddr,
        objects: Vec<manifests::ManifestObject>,
        config: SimConfig,
        allow_non_loopback: bool,
    ) -> Result<SimHandle, SimError> {
        if !listen.ip().is_loopback() && !allow_non_loopback {
            return Err(SimError::NotLoopback(listen));
        }
        let state = Self::build_state(objects, config)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let clock = state.clock.clone();
        let shared = Arc::new(Shared { state: Mutex::new(state), clock });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(super::http::serve(listener, shared.clone(), stopped.clone()));
        tokio::spawn(tick(shared.clone(), stopped));
        Ok(SimHandle { shared, addr, stop })
    }

    /// The loaded state, before serving (also what the benchmark measures).
    pub fn build_state(objects: Vec<manifests::ManifestObject>, config: SimConfig) -> Result<State, SimError> {
        let start = jiff::Timestamp::now();
        let clock = SimClock::new(
            jiff::Timestamp::from_second(start.as_second()).unwrap_or(start),
            config.paused,
            config.speed,
        );
        let mut state = State::new(config, clock);
        manifests::bootstrap(&mut state, &objects).map_err(SimError::Manifest)?;
        let count_nodes = |o: &&manifests::ManifestObject| o.object["kind"] == "Node";
        let has_nodes = objects.iter().any(|o| count_nodes(&o));
        // Workloads after what they use; GitOps objects last, so what a dump holds is
        // loaded before their controllers compare it with the desired state.
        let (first, rest): (Vec<_>, Vec<_>) = objects.into_iter().partition(|o| {
            !matches!(
                o.object["kind"].as_str(),
                Some("Pod" | "StatefulSet" | "Deployment" | "Application" | "Kustomization")
            )
        });
        manifests::apply(&mut state, first).map_err(SimError::Manifest)?;
        if !has_nodes {
            manifests::default_nodes(&mut state).map_err(SimError::Manifest)?;
        }
        manifests::apply(&mut state, rest).map_err(SimError::Manifest)?;
        Ok(state)
    }
}

/// Reconciles when the running clock passes a deadline a controller is waiting for.
async fn tick(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        let mut state = shared.lock();
        if state.next_wakeup().is_some_and(|at| at <= state.now()) {
            // The controllers whose deadline passed, and those their changes concern.
            reconcile_after_write(&mut state);
        }
    }
}

/// A running sim. Dropping it stops serving.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        // Receivers may already be gone at shutdown; nothing to report then.
        let _ = self.stop.send(true);
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for the sim (plain HTTP, no auth).
    pub fn client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.kube_config()?).map_err(|e| SimError::Client(e.to_string()))
    }

    /// The client configuration for the sim, for callers that build their own client
    /// (with their own layers, such as client-side rate limiting).
    pub fn kube_config(&self) -> Result<kube::Config, SimError> {
        let uri = self.url().parse().map_err(|e| SimError::Client(format!("{e}")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        Ok(config)
    }

    /// Writes a kubeconfig (JSON, which is valid YAML) usable by kubectl and
    /// `kube::Config::from_custom_kubeconfig`, with `context` as its current context.
    pub fn write_kubeconfig(&self, path: &Path, context: &str) -> Result<(), SimError> {
        let config = kubeconfig(&self.url(), context, json!({}));
        std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap_or_default())?;
        Ok(())
    }

    /// A bearer token of the ServiceAccount `namespace/name` (which must exist): requests
    /// with it are authorised by the RBAC objects in the sim ([`super::auth`]).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, SimError> {
        super::auth::issue_token(&mut self.shared.lock(), namespace, name)
            .map_err(|e| SimError::Client(format!("{}: {}", e.code, e.message)))
    }

    /// [`write_kubeconfig`](Self::write_kubeconfig) acting as a ServiceAccount.
    pub fn write_service_account_kubeconfig(
        &self,
        path: &Path,
        context: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), SimError> {
        let token = self.service_account_token(namespace, name)?;
        let config = kubeconfig(&self.url(), context, json!({ "token": token }));
        std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap_or_default())?;
        Ok(())
    }

    /// Stops serving (open watches end).
    pub fn shutdown(self) {
        drop(self);
    }

    pub fn clock(&self) -> SimClock {
        self.shared.clock.clone()
    }

    pub fn pause(&self) {
        self.shared.clock.pause();
    }

    pub fn resume(&self) {
        self.shared.clock.resume();
    }

    /// Moves sim time forward by `by`, stopping at every deadline on the way so controllers
    /// act at the times they would have (pod 1 starts when pod 0 became ready, not at the end).
    pub fn advance(&self, by: Duration) {
        let mut state = self.shared.lock();
        let target = super::clock::after(state.now(), by);
        reconcile(&mut state);
        while let Some(next) = state.next_wakeup().filter(|at| *at <= target) {
            let step = next.duration_since(state.now()).unsigned_abs();
            state.clock.advance(step);
            reconcile(&mut state);
        }
        let rest = target.duration_since(state.now());
        if rest.is_positive() {
            state.clock.advance(rest.unsigned_abs());
        }
        reconcile(&mut state);
    }

    /// Runs the controllers now (they also run after every API write).
    pub fn settle(&self) {
        reconcile(&mut self.shared.lock());
    }

    pub fn write_claim_data(&self, namespace: &str, claim: &str, bytes: impl Into<Vec<u8>>) -> Result<(), SimError> {
        Ok(self.shared.lock().write_claim_data(namespace, claim, bytes.into())?)
    }

    pub fn read_claim_data(&self, namespace: &str, claim: &str) -> Result<Vec<u8>, SimError> {
        Ok(self.shared.lock().read_claim_data(namespace, claim)?)
    }

    /// Every API request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Every change to stored objects so far, by clients and controllers, in order.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.shared.lock().store.mutations().to_vec()
    }

    /// Core/v1 Events recorded about the object `namespace/name`, oldest first.
    pub fn events_for(&self, namespace: &str, name: &str) -> Vec<Value> {
        self.shared.lock().events_for(namespace, name).iter().map(|e| (**e).clone()).collect()
    }

    /// Runs `f` on the state under the lock (escape hatch for tests and tools).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.shared.lock())
    }

    /// Loads more manifests into the running sim.
    pub fn load(&self, paths: &[PathBuf]) -> Result<usize, SimError> {
        let objects = manifests::read_paths(paths).map_err(SimError::Manifest)?;
        manifests::apply(&mut self.shared.lock(), objects).map_err(SimError::Manifest)
    }
}

fn kubeconfig(url: &str, context: &str, user: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": context, "cluster": { "server": url } }],
        "users": [{ "name": context, "user": user }],
        "contexts": [{ "name": context, "context": { "cluster": context, "user": context, "namespace": "default" } }],
        "current-context": context,
        "preferences": {},
    })
}
