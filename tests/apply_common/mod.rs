//! Shared helpers for the end-to-end tests of `dr apply` / `dr resume`: a simulated
//! cluster loaded from an example plan's manifests, a kubeconfig and a state directory
//! per test, running `dr` as a child process, and reading the cluster's end state.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use drplan::sim::{SimCluster, SimConfig, SimHandle};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

/// Longest a single `dr` invocation may take in these tests.
pub const DR_DEADLINE: Duration = Duration::from_secs(120);

/// The context name written into the test kubeconfig and passed with `--context`.
pub const CONTEXT: &str = "e2e";

pub fn plan_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans").join(format!("{name}.yaml"))
}

pub fn manifests(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans").join(name)
}

/// A fast sim: 5 s snapshots and 2 s pod start-ups take a few tens of milliseconds.
pub fn fast_config() -> SimConfig {
    SimConfig { speed: 200.0, ..SimConfig::default() }
}

/// One test's world: the sim, a client to it, and the files `dr` is pointed at.
pub struct Env {
    pub sim: SimHandle,
    pub client: kube::Client,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub state_dir: PathBuf,
    pub plan: PathBuf,
    /// `--step-timeout` given to `dr` (waits that name no timeout of their own).
    pub step_timeout: &'static str,
}

/// Starts a sim from `plans/<plan>/` with `config`, in a fresh scratch directory.
pub async fn env(plan: &str, label: &str, config: SimConfig) -> Env {
    env_at(manifests(plan), plan_path(plan), label, config).await
}

/// Starts a sim from the manifests at `manifests`, for the plan at `plan`.
pub async fn env_at(manifests: PathBuf, plan: PathBuf, label: &str, config: SimConfig) -> Env {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("drplan-e2e-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let sim = SimCluster::start(&[manifests], config).await.expect("sim starts");
    let client = sim.client().expect("client for the sim");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, CONTEXT).expect("kubeconfig");
    Env { sim, client, state_dir: dir.join("state"), kubeconfig, plan, dir, step_timeout: "2m" }
}

/// How a `dr` process ended.
pub struct DrResult {
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl DrResult {
    fn of(output: Output) -> DrResult {
        use std::os::unix::process::ExitStatusExt;
        DrResult {
            code: output.status.code(),
            signal: output.status.signal(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The id in `Run <id> started`.
    pub fn run_id(&self) -> Option<String> {
        self.stderr.lines().find_map(|l| l.strip_prefix("Run ")?.split_once(" started").map(|(id, _)| id.to_string()))
    }

    pub fn assert_success(&self, what: &str) {
        assert_eq!(self.code, Some(0), "{what} failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    }
}

impl Env {
    /// A run as the state store reads it back (base file plus journal), as JSON.
    pub fn run_record(&self, run_id: &str) -> serde_json::Value {
        use drplan::checkpoint::StateStore;
        let record = drplan::checkpoint::LocalDirStore::new(&self.state_dir).load_run(run_id).expect("run record");
        serde_json::to_value(record).expect("run record as JSON")
    }

    /// `dr <args>` against this env's cluster and state, with `extra_env` set.
    pub fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command.args(args);
        // Each command takes only the options that apply to it.
        let verb = args.first().copied().unwrap_or_default();
        if verb != "runs" {
            command.arg("--kubeconfig").arg(&self.kubeconfig).args(["--context", CONTEXT]);
        }
        if ["apply", "resume", "rollback"].contains(&verb) {
            command.args(["--output", "plain", "--step-timeout", self.step_timeout]);
        }
        command
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("NO_COLOR", "1")
            .env_remove("DRPLAN_FAILPOINT")
            .env_remove("DRPLAN_STATE_DIR")
            .env_remove("DRPLAN_STATE_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        command
    }

    /// Runs `dr`, off the async runtime so the in-process sim keeps serving.
    pub async fn dr(&self, args: &[&str], extra_env: &[(&str, &str)]) -> DrResult {
        wait_child(KillOnDrop(Some(self.spawn(args, extra_env)))).await
    }

    /// Starts `dr` without waiting for it.
    pub fn spawn(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Child {
        self.command(args, extra_env).spawn().expect("dr starts")
    }

    /// `dr apply PLAN --auto-approve`.
    pub async fn apply(&self, extra_env: &[(&str, &str)]) -> DrResult {
        let plan = self.plan.to_string_lossy().into_owned();
        self.dr(&["apply", &plan, "--auto-approve"], extra_env).await
    }

    pub async fn resume(&self, run_id: &str) -> DrResult {
        self.dr(&["resume", run_id], &[]).await
    }

    /// The ids of the runs in the state directory.
    pub fn run_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("runs")) else { return Vec::new() };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }

    pub fn pvcs(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn pvs(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    pub fn snapshots(&self, ns: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
            "volumesnapshots",
        );
        Api::namespaced_with(self.client.clone(), ns, &resource)
    }

    pub async fn statefulset(&self, ns: &str, name: &str) -> StatefulSet {
        Api::<StatefulSet>::namespaced(self.client.clone(), ns).get(name).await.expect("StatefulSet")
    }

    pub async fn deployment(&self, ns: &str, name: &str) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), ns).get(name).await.expect("Deployment")
    }

    pub async fn pods(&self, ns: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), ns).list(&ListParams::default()).await.expect("pods").items
    }

    /// Claim name -> what a test compares about it.
    pub async fn claims(&self, ns: &str) -> BTreeMap<String, ClaimState> {
        let mut claims = BTreeMap::new();
        for pvc in self.pvcs(ns).list(&ListParams::default()).await.expect("PVCs").items {
            let name = pvc.metadata.name.clone().unwrap_or_default();
            let status = pvc.status.clone().unwrap_or_default();
            let data = self.sim.read_claim_data(ns, &name).ok().map(|d| String::from_utf8_lossy(&d).into_owned());
            claims.insert(
                name,
                ClaimState {
                    phase: status.phase.unwrap_or_default(),
                    capacity: status.capacity.and_then(|c| c.get("storage").map(|q| q.0.clone())).unwrap_or_default(),
                    volume: pvc.spec.and_then(|s| s.volume_name).unwrap_or_default(),
                    data,
                },
            );
        }
        claims
    }

    /// Polls `check` (a state read through the client) until it returns Some, or panics
    /// after `limit`, printing the last state seen.
    pub async fn eventually<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            match check().await {
                Ok(value) => return value,
                Err(last) if Instant::now() >= deadline => panic!("{what} not reached within {limit:?}: {last}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub fn dump_logs(&self, result: &DrResult) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", result.stdout, result.stderr)
    }
}

/// What the tests compare about a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimState {
    pub phase: String,
    pub capacity: String,
    pub volume: String,
    /// The bytes on its volume, if it is bound to one with data.
    pub data: Option<String>,
}

pub const CASSANDRA_NS: &str = "cassandra";

pub fn cassandra_claim(ordinal: usize) -> String {
    format!("cassandra-data-cassandra-{ordinal}")
}

/// Writes `cassandra-N` onto each replica's volume; returns claim -> original PV.
pub async fn seed_cassandra(env: &Env) -> BTreeMap<String, String> {
    let mut volumes = BTreeMap::new();
    for ordinal in 0..3 {
        let claim = cassandra_claim(ordinal);
        env.sim.write_claim_data(CASSANDRA_NS, &claim, format!("cassandra-{ordinal}")).expect("claim data written");
        let pvc = env.pvcs(CASSANDRA_NS).get(&claim).await.expect("claim exists");
        volumes.insert(claim, pvc.spec.and_then(|s| s.volume_name).expect("claim is bound"));
    }
    volumes
}

/// The end state of the EBS example after a successful run: every claim Bound at 4Gi to
/// a new volume holding its own replica's data, the originals kept (Retain, Released),
/// and cassandra back at 3 ready replicas. Returns the claims for further comparisons.
pub async fn assert_cassandra_restored(
    env: &Env,
    originals: &BTreeMap<String, String>,
) -> BTreeMap<String, ClaimState> {
    let claims = env.claims(CASSANDRA_NS).await;
    assert_eq!(claims.keys().cloned().collect::<Vec<_>>(), (0..3).map(cassandra_claim).collect::<Vec<_>>());
    for (ordinal, (name, claim)) in claims.iter().enumerate() {
        assert_eq!(claim.phase, "Bound", "{name}: {claim:?}");
        assert_eq!(claim.capacity, "4Gi", "{name}: {claim:?}");
        assert_eq!(claim.data.as_deref(), Some(format!("cassandra-{ordinal}").as_str()), "{name} lost its data");
        assert_ne!(&claim.volume, &originals[name], "{name} was not restored onto a new volume");
    }
    for (claim, pv_name) in originals {
        let pv = env.pvs().get_opt(pv_name).await.expect("reading PV");
        let pv = pv.unwrap_or_else(|| panic!("original PV {pv_name} of {claim} was deleted"));
        let spec = pv.spec.unwrap_or_default();
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"), "PV {pv_name}");
        assert_eq!(pv.status.and_then(|s| s.phase).as_deref(), Some("Released"), "PV {pv_name}");
    }
    let sts = env.statefulset(CASSANDRA_NS, "cassandra").await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(3));
    claims
}

/// Kills a child if a test panics before waiting for it.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a child off the async runtime; one still running after [`DR_DEADLINE`] is
/// killed and the test fails with its output.
pub async fn wait_child(mut guard: KillOnDrop) -> DrResult {
    let child = guard.0.take().expect("child");
    let pid = child.id() as i32;
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let watchdog = tokio::spawn(async move {
        tokio::time::sleep(DR_DEADLINE).await;
        flag.store(true, Ordering::SeqCst);
        // SAFETY: kill(2) of our own child, which is not reaped before the watchdog is aborted.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let output =
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("dr exits")).await.expect("joined");
    watchdog.abort();
    let result = DrResult::of(output);
    if timed_out.load(Ordering::SeqCst) {
        panic!(
            "dr still running after {DR_DEADLINE:?}, killed\n--- stdout\n{}\n--- stderr\n{}",
            result.stdout, result.stderr
        );
    }
    result
}

pub fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// After a successful run: `dr plan` finds nothing to do (exit 0) and a second
/// `dr apply` changes nothing (no write reaches the API server).
pub async fn assert_second_run_changes_nothing(env: &Env) {
    let plan = path_str(&env.plan);
    let replanned = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(replanned.code, Some(0), "re-plan finds nothing to do\n{}", env.dump_logs(&replanned));
    let before = env.sim.requests().len();
    let again = env.apply(&[]).await;
    again.assert_success("the second dr apply");
    assert!(again.stderr.contains("Nothing to apply."), "{}", env.dump_logs(&again));
    let writes: Vec<_> = env.sim.requests()[before..]
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .map(|r| format!("{} {} {}", r.verb, r.resource, r.name))
        .collect();
    assert!(writes.is_empty(), "the second apply wrote: {writes:?}");
}
