//! The Kubernetes state store against the simulated cluster: the store contract run over
//! both stores (local directory and Kubernetes), then what only the Kubernetes store has:
//! ConfigMap records with resourceVersion preconditions, the size limit, and Lease locks
//! with renewal, expiry, takeover and loss.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use drplan::checkpoint::kube::{CONFIG_MAP_LIMIT, RECORD_KEY};
use drplan::checkpoint::{
    KubeStore, KubeStoreUrl, LocalDirStore, LockInfo, RunMode, RunRecord, RunStatus, StateStore, StepRecord,
    StepStatus, StoreError, SummaryStatus, digest,
};
use drplan::sim::{SimCluster, SimConfig, SimHandle};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const NS: &str = "drplan-state";

/// A sim on its own runtime, so the tests (and the store) can block without starving it.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    sim: SimHandle,
    client: kube::Client,
}

fn cluster() -> Cluster {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let empty = scratch("sim-manifests");
    std::fs::create_dir_all(&empty).unwrap();
    let sim = runtime.block_on(SimCluster::start(&[empty], SimConfig::default())).expect("sim starts");
    let client = {
        let _entered = runtime.enter();
        sim.client().unwrap()
    };
    let cluster = Cluster { runtime, sim, client };
    let namespace =
        Namespace { metadata: ObjectMeta { name: Some(NS.into()), ..Default::default() }, ..Default::default() };
    cluster.block_on(Api::<Namespace>::all(cluster.client.clone()).create(&PostParams::default(), &namespace)).unwrap();
    cluster
}

impl Cluster {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn store(&self, lease_duration: Duration) -> KubeStore {
        self.store_in(NS, lease_duration)
    }

    fn store_in(&self, namespace: &str, lease_duration: Duration) -> KubeStore {
        let config = kube::Config::new(self.sim.url().parse().unwrap());
        KubeStore::new(config, &KubeStoreUrl { namespace: namespace.into(), lease_duration }).unwrap()
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn config_map_of(&self, run: &RunRecord) -> ConfigMap {
        self.block_on(self.config_maps().get(&KubeStore::config_map_name(&run.run_id).unwrap())).unwrap()
    }

    fn lease(&self, key: &str) -> Lease {
        self.block_on(self.leases().get(&KubeStore::lease_name(key))).unwrap()
    }
}

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("checkpoint-kube")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn record(plan_name: &str) -> RunRecord {
    let plan = json!({"steps": ["scale-down", "snapshot"], "namespace": "db"});
    let mut run = RunRecord::new(plan_name, digest(b"plan bytes"), "ctx-a,ctx-b".into(), RunMode::Apply, plan);
    let mut step = StepRecord::default();
    step.start();
    step.captured.insert("original_replicas".into(), json!(3));
    step.finish(StepStatus::Succeeded);
    run.steps.insert("scale-down".into(), step);
    run.steps.insert("snapshot".into(), StepRecord::default());
    run
}

/// Both stores, for the contract every store keeps. The cluster must outlive the stores.
fn both_stores(cluster: &Cluster, name: &str) -> Vec<(&'static str, Box<dyn StateStore>)> {
    vec![
        ("local", Box::new(LocalDirStore::new(scratch(name))) as Box<dyn StateStore>),
        ("kubernetes", Box::new(cluster.store(Duration::from_secs(30)))),
    ]
}

// ---------------------------------------------------------------------------
// The contract, over both stores

#[test]
fn every_store_round_trips_refuses_duplicates_and_reports_unknown_runs() {
    let cluster = cluster();
    for (which, store) in both_stores(&cluster, "contract-runs") {
        let mut run = record("db-failover");
        store.create_run(&run).unwrap();
        assert_eq!(store.load_run(&run.run_id).unwrap(), run, "{which}");
        run.steps.get_mut("snapshot").unwrap().fail("VolumeSnapshot not ready after 10m");
        run.status = RunStatus::Failed;
        run.touch();
        store.save_run(&run).unwrap();
        assert_eq!(store.load_run(&run.run_id).unwrap(), run, "{which}");

        let mut other = run.clone();
        other.plan_name = "someone-else".into();
        assert!(matches!(store.create_run(&other), Err(StoreError::RunExists { .. })), "{which}");
        assert_eq!(store.load_run(&run.run_id).unwrap(), run, "{which}: the first kept");

        let unknown = record("db-failover");
        let err = store.load_run(&unknown.run_id).unwrap_err();
        assert!(err.to_string().contains(&unknown.run_id) && err.to_string().contains("dr runs"), "{which}: {err}");
        assert!(store.save_run(&unknown).is_err(), "{which}: saving an unknown run");
        assert!(matches!(store.load_run("../../etc"), Err(StoreError::InvalidRunId { .. })), "{which}");
    }
}

#[test]
fn every_store_lists_newest_first_and_finds_the_latest_run_of_a_plan() {
    let cluster = cluster();
    for (which, store) in both_stores(&cluster, "contract-list") {
        assert!(store.list_runs().unwrap().is_empty(), "{which}");
        let mut old = record("db-failover");
        old.created_at = "2025-01-01T00:00:00.000Z".into();
        let mut new = record("db-failover");
        new.created_at = "2025-06-01T00:00:00.000Z".into();
        new.status = RunStatus::Interrupted;
        let mut other = record("other-plan");
        other.created_at = "2025-12-01T00:00:00.000Z".into();
        for run in [&old, &new, &other] {
            store.create_run(run).unwrap();
        }
        let listed: Vec<String> = store.list_runs().unwrap().into_iter().map(|s| s.run_id).collect();
        assert_eq!(listed, [other.run_id.clone(), new.run_id.clone(), old.run_id.clone()], "{which}");
        assert_eq!(store.latest_run("db-failover").unwrap(), Some(new.clone()), "{which}");
        assert_eq!(store.latest_run("no-such-plan").unwrap(), None, "{which}");
    }
}

#[test]
fn every_store_drops_secret_data_before_writing() {
    let cluster = cluster();
    for (which, store) in both_stores(&cluster, "contract-secrets") {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds"},
            "data": {"password": "c3VwZXJzZWNyZXQ="}, "stringData": {"token": "plain-token"},
        });
        let mut run = record("db-failover");
        run.plan["manifests"] = json!([secret.clone()]);
        store.create_run(&run).unwrap();
        run.steps.get_mut("snapshot").unwrap().captured.insert("saved".into(), json!({"items": [secret]}));
        store.save_run(&run).unwrap();
        let loaded = serde_json::to_string(&store.load_run(&run.run_id).unwrap()).unwrap();
        for leaked in ["c3VwZXJzZWNyZXQ=", "plain-token"] {
            assert!(!loaded.contains(leaked), "{which}: {leaked} stored");
        }
        assert!(loaded.contains("db-creds"), "{which}");
    }
}

#[test]
fn with_every_store_a_second_locker_is_refused_naming_the_holder_until_release() {
    let cluster = cluster();
    for (which, store) in both_stores(&cluster, "contract-lock") {
        let holder = LockInfo::current("20250102T030405Z-db-failover-3fa9", "apply");
        let guard = store.lock("db-failover@ctx-a", &holder).unwrap();
        assert_eq!(guard.info(), &holder);
        assert!(guard.took_over_from().is_none(), "{which}");

        let err = store.lock("db-failover@ctx-a", &LockInfo::current("other", "resume")).unwrap_err();
        let StoreError::Locked { holder: reported, .. } = &err else { panic!("{which}: {err:?}") };
        assert_eq!(**reported, holder, "{which}");
        let message = err.to_string();
        for part in [holder.holder.as_str(), &holder.pid.to_string(), &holder.run_id, "apply", "dr resume"] {
            assert!(message.contains(part), "{which}: {part:?} missing from: {message}");
        }
        store.lock("other-plan@ctx-a", &holder).expect("other keys are independent");

        drop(guard);
        let guard = store.lock("db-failover@ctx-a", &holder).unwrap();
        assert!(guard.took_over_from().is_none(), "{which}: a released lock is not a takeover");
        guard.unlock().unwrap();
        store.lock("db-failover@ctx-a", &holder).expect("unlocked");
    }
}

#[test]
fn with_every_store_of_threads_racing_for_a_lock_exactly_one_wins() {
    let cluster = cluster();
    for (which, store) in both_stores(&cluster, "contract-race") {
        let store: Arc<dyn StateStore> = Arc::from(store);
        for round in 0..8 {
            let racers = 4;
            let barrier = Arc::new(Barrier::new(racers));
            let handles: Vec<_> = (0..racers)
                .map(|i| {
                    let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        let info = LockInfo::current(&format!("run-{round}-{i}"), "apply");
                        barrier.wait();
                        store.lock("contended", &info)
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "{which} round {round}: {results:?}");
            for err in results.iter().filter_map(|r| r.as_ref().err()) {
                assert!(matches!(err, StoreError::Locked { .. }), "{which} round {round}: {err:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Records in ConfigMaps

#[test]
fn a_run_is_one_labelled_config_map_and_never_a_secret() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(30));
    let mut run = record("DB failover/eu");
    run.plan["manifests"] = json!([{"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}}]);
    store.create_run(&run).unwrap();
    store.save_run(&run).unwrap();

    let config_map = cluster.config_map_of(&run);
    let labels = config_map.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "drplan");
    assert_eq!(labels["drplan.io/record"], "run");
    assert_eq!(labels["drplan.io/plan"], "DB-failover-eu");
    assert_eq!(config_map.metadata.annotations.unwrap()["drplan.io/run-id"], run.run_id);
    let data = config_map.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), [RECORD_KEY]);
    assert!(data[RECORD_KEY].contains("\"checksum\":\"sha256:"), "sealed like run.json");
    assert!(!data[RECORD_KEY].contains("c2VjcmV0"), "Secret data in the ConfigMap");
    let secrets = cluster.block_on(Api::<Secret>::namespaced(cluster.client.clone(), NS).list(&ListParams::default()));
    assert!(secrets.unwrap().items.is_empty(), "the store made a Secret");
}

#[test]
fn a_stale_writer_gets_a_conflict_and_the_newer_record_stays() {
    let cluster = cluster();
    let (first, second) = (cluster.store(Duration::from_secs(30)), cluster.store(Duration::from_secs(30)));
    let mut run = record("db-failover");
    first.create_run(&run).unwrap();
    let mut stale = second.load_run(&run.run_id).unwrap();

    run.status = RunStatus::Succeeded;
    first.save_run(&run).unwrap();
    stale.status = RunStatus::Failed;
    let err = second.save_run(&stale).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("changed by another writer"), "{err}");
    assert_eq!(first.load_run(&run.run_id).unwrap().status, RunStatus::Succeeded);

    // Reading again makes the second writer current.
    second.load_run(&run.run_id).unwrap();
    second.save_run(&stale).unwrap();
    assert_eq!(first.load_run(&run.run_id).unwrap().status, RunStatus::Failed);
}

/// A record whose captured manifests alone are `bytes` long.
fn record_of_size(bytes: usize) -> RunRecord {
    let mut run = record("db-failover");
    run.steps.get_mut("snapshot").unwrap().captured.insert("blob".into(), json!("x".repeat(bytes)));
    run
}

#[test]
fn a_record_too_large_for_a_config_map_is_refused_before_it_is_sent() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(30));
    let big = record_of_size(CONFIG_MAP_LIMIT);
    let err = store.create_run(&big).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&big.run_id) && message.contains("1048576") && message.contains(NS), "{message}");
    assert!(matches!(store.load_run(&big.run_id), Err(StoreError::RunNotInCluster { .. })), "nothing written");

    let mut run = record_of_size(1000);
    store.create_run(&run).unwrap();
    run.steps.get_mut("snapshot").unwrap().captured.insert("blob".into(), json!("y".repeat(CONFIG_MAP_LIMIT)));
    assert!(matches!(store.save_run(&run), Err(StoreError::TooLarge { .. })));
    let kept = store.load_run(&run.run_id).unwrap();
    assert_eq!(kept.steps["snapshot"].captured["blob"], json!("x".repeat(1000)), "the old record stays");
    // Just under the limit still fits (and the API server takes it).
    let headroom = 4096;
    let fits = record_of_size(CONFIG_MAP_LIMIT - headroom);
    store.create_run(&fits).unwrap();
    assert_eq!(store.load_run(&fits.run_id).unwrap(), fits);
}

#[test]
fn a_config_map_altered_by_hand_is_corrupt_and_listed_as_such() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(30));
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let mut config_map = cluster.config_map_of(&run);
    let data = config_map.data.as_mut().unwrap();
    let altered = data[RECORD_KEY].replacen("\"original_replicas\":3", "\"original_replicas\":8", 1);
    assert_ne!(altered, data[RECORD_KEY]);
    data.insert(RECORD_KEY.into(), altered);
    let name = config_map.metadata.name.clone().unwrap();
    cluster.block_on(cluster.config_maps().replace(&name, &PostParams::default(), &config_map)).unwrap();

    let err = store.load_run(&run.run_id).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("checksum")), "{err:?}");
    assert!(err.to_string().contains(&format!("ConfigMap {NS}/{name}")), "{err}");
    let listed = store.list_runs().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].run_id.as_str(), listed[0].status), (run.run_id.as_str(), SummaryStatus::Corrupt));
    assert_eq!(store.latest_run("db-failover").unwrap(), None);
}

#[test]
fn a_missing_namespace_is_named_in_the_error() {
    let cluster = cluster();
    let store = cluster.store_in("no-such-namespace", Duration::from_secs(30));
    let err = store.create_run(&record("db-failover")).unwrap_err();
    assert!(err.to_string().contains("no-such-namespace"), "{err}");
}

// ---------------------------------------------------------------------------
// Leases

#[test]
fn a_held_lock_is_a_lease_naming_its_holder_and_renewed_while_held() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(2));
    let info = LockInfo::current("r-renewed", "apply");
    let guard = store.lock("k", &info).unwrap();
    let lease = cluster.lease("k");
    let spec = lease.spec.clone().unwrap();
    assert!(spec.holder_identity.as_deref().unwrap().contains("r-renewed"), "{spec:?}");
    assert_eq!(spec.lease_duration_seconds, Some(2));
    let first_renewal = spec.renew_time.clone().unwrap().0;
    let annotations = lease.metadata.annotations.unwrap();
    let recorded: LockInfo = serde_json::from_str(&annotations["drplan.io/lock-holder"]).unwrap();
    assert_eq!(recorded, info);

    // Two lease durations later it is still held: renewals kept it alive.
    std::thread::sleep(Duration::from_secs(4));
    let renewed = cluster.lease("k").spec.unwrap().renew_time.unwrap().0;
    assert!(renewed > first_renewal, "renewTime did not move: {first_renewal} -> {renewed}");
    let err = cluster.store(Duration::from_secs(2)).lock("k", &LockInfo::current("r2", "resume")).unwrap_err();
    assert!(matches!(&err, StoreError::Locked { holder, .. } if **holder == info), "{err:?}");

    drop(guard);
    let released = cluster.lease("k").spec.unwrap();
    assert_eq!(released.holder_identity, None, "released: {released:?}");
}

/// A Lease as a holder that stopped renewing `ago` leaves it.
fn leave_lease(cluster: &Cluster, key: &str, holder: &LockInfo, ago: Duration) {
    let renewed = Timestamp::now() - SignedDuration::try_from(ago).unwrap();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(KubeStore::lease_name(key)),
            annotations: Some([("drplan.io/lock-holder".into(), serde_json::to_string(holder).unwrap())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(format!("{} pid {}", holder.holder, holder.pid)),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    cluster.block_on(cluster.leases().create(&PostParams::default(), &lease)).unwrap();
}

#[test]
fn an_expired_lease_is_taken_over_and_its_holder_reported() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(30));
    let mut gone = LockInfo::current("20250102T030405Z-db-failover-dead", "apply");
    gone.host = "drill-pod-7f9c".into();
    leave_lease(&cluster, "k", &gone, Duration::from_secs(16));

    let me = LockInfo::current("20250102T040000Z-db-failover-beef", "resume");
    let guard = store.lock("k", &me).unwrap();
    assert_eq!(guard.took_over_from(), Some(&gone));
    let spec = cluster.lease("k").spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(spec.holder_identity.unwrap().contains(&me.run_id));
}

#[test]
fn a_lease_renewed_within_its_duration_is_not_taken_over() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(30));
    let mut live = LockInfo::current("r-live", "apply");
    live.host = "drill-pod-live".into();
    leave_lease(&cluster, "k", &live, Duration::from_secs(10)); // 15 s lease, renewed 10 s ago

    let err = store.lock("k", &LockInfo::current("r2", "apply")).unwrap_err();
    assert!(matches!(&err, StoreError::Locked { holder, .. } if **holder == live), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("Lease {NS}/")) && message.contains("expires at"), "{message}");
}

#[test]
fn a_holder_whose_lease_was_taken_over_stops_writing() {
    let cluster = cluster();
    let store = cluster.store(Duration::from_secs(1));
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let guard = store.lock(&run.lock_key(), &LockInfo::current(&run.run_id, "apply")).unwrap();

    // Another holder takes the Lease (as after this process missed renewals past expiry).
    let mut lease = cluster.lease(&run.lock_key());
    let intruder = LockInfo::current("r-intruder", "resume");
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    lease
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("drplan.io/lock-holder".into(), serde_json::to_string(&intruder).unwrap());
    let name = KubeStore::lease_name(&run.lock_key());
    cluster.block_on(cluster.leases().replace(&name, &PostParams::default(), &lease)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match store.save_run(&run) {
            Err(err) => break err,
            Ok(()) => assert!(Instant::now() < deadline, "still saving after losing the lease"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(matches!(err, StoreError::LockLost { .. }), "{err:?}");
    assert!(err.to_string().contains("r-intruder"), "{err}");
    let err = guard.unlock().unwrap_err();
    assert!(matches!(err, StoreError::LockLost { .. }), "{err:?}");
    assert_eq!(cluster.lease(&run.lock_key()).spec.unwrap().holder_identity.as_deref(), Some("intruder"), "left alone");
}

/// Set in the child process of the SIGKILL test: the sim URL to hold the lock in.
const HOLD_LEASE_AT: &str = "DRPLAN_TEST_HOLD_LEASE_AT";

#[test]
fn a_lease_held_by_a_sigkilled_process_is_taken_over_once_it_expires() {
    if let Ok(url) = std::env::var(HOLD_LEASE_AT) {
        let config = kube::Config::new(url.parse().unwrap());
        let store =
            KubeStore::new(config, &KubeStoreUrl { namespace: NS.into(), lease_duration: Duration::from_secs(2) })
                .unwrap();
        let _guard = store.lock("k", &LockInfo::current("r-killed", "apply")).unwrap();
        println!("HOLDING");
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(1);
    }
    let cluster = cluster();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_lease_held_by_a_sigkilled_process_is_taken_over_once_it_expires",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_LEASE_AT, cluster.sim.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let holding = std::io::BufRead::lines(stdout).map_while(Result::ok).any(|line| line.ends_with("HOLDING"));
    assert!(holding, "the child never took the lock");

    let store = cluster.store(Duration::from_secs(2));
    let me = LockInfo::current("r-resume", "resume");
    std::thread::sleep(Duration::from_secs(3)); // past one duration: the child's renewals keep it
    let err = store.lock("k", &me).unwrap_err();
    assert!(matches!(&err, StoreError::Locked { holder, .. } if holder.pid == child.id()), "{err:?}");

    child.kill().unwrap(); // SIGKILL, as when a pod is killed: no release
    child.wait().unwrap();
    let killed_at = Instant::now();
    let guard = loop {
        match store.lock("k", &me) {
            Ok(guard) => break guard,
            Err(StoreError::Locked { .. }) => {
                assert!(killed_at.elapsed() < Duration::from_secs(10), "never taken over");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    assert!(killed_at.elapsed() >= Duration::from_millis(500), "taken over before it could have expired");
    let previous = guard.took_over_from().expect("takeover reported");
    assert_eq!((previous.pid, previous.run_id.as_str()), (child.id(), "r-killed"));
}

// ---------------------------------------------------------------------------
// The sim behaves like an API server here

#[test]
fn the_sim_refuses_a_stale_update_of_a_config_map_or_lease_with_409() {
    let cluster = cluster();
    let config_map = ConfigMap {
        metadata: ObjectMeta { name: Some("cm".into()), ..Default::default() },
        data: Some([("a".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    let created = cluster.block_on(cluster.config_maps().create(&PostParams::default(), &config_map)).unwrap();
    let mut newer = created.clone();
    newer.data = Some([("a".to_string(), "2".to_string())].into());
    cluster.block_on(cluster.config_maps().replace("cm", &PostParams::default(), &newer)).unwrap();
    let err = cluster.block_on(cluster.config_maps().replace("cm", &PostParams::default(), &created)).unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{err:?}");

    let lease = Lease {
        metadata: ObjectMeta { name: Some("l".into()), ..Default::default() },
        spec: Some(LeaseSpec::default()),
    };
    let created = cluster.block_on(cluster.leases().create(&PostParams::default(), &lease)).unwrap();
    let mut held = created.clone();
    held.spec.as_mut().unwrap().holder_identity = Some("a".into());
    cluster.block_on(cluster.leases().replace("l", &PostParams::default(), &held)).unwrap();
    let err = cluster.block_on(cluster.leases().replace("l", &PostParams::default(), &created)).unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err:?}");
}

#[test]
fn the_sim_refuses_a_config_map_over_one_mebibyte_like_the_api_server() {
    let cluster = cluster();
    let config_map = |name: &str, bytes: usize| ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some([("k".to_string(), "x".repeat(bytes))].into()),
        ..Default::default()
    };
    cluster
        .block_on(cluster.config_maps().create(&PostParams::default(), &config_map("fits", CONFIG_MAP_LIMIT - 1)))
        .unwrap();
    let created =
        cluster.block_on(cluster.config_maps().create(&PostParams::default(), &config_map("big", CONFIG_MAP_LIMIT)));
    // Not printed on failure: a megabyte of x.
    let Err(kube::Error::Api(status)) = &created else { panic!("a ConfigMap over the limit was not refused") };
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(status.message, "ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes");
}

/// kubectl (a client nobody here wrote) sees the store's objects as the store wrote them,
/// and gets the API server's conflict for a stale replace of the Lease.
#[test]
fn kubectl_reads_the_records_and_the_lease_and_gets_409_for_a_stale_lease() {
    let cluster = cluster();
    let dir = scratch("kubectl");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    cluster.sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &dir)
            .args(args)
            .output()
            .expect("kubectl is installed (Debian package kubernetes-client)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let store = cluster.store(Duration::from_secs(30));
    let run = record("db-failover");
    store.create_run(&run).unwrap();
    let info = LockInfo::current(&run.run_id, "apply");
    let guard = store.lock(&run.lock_key(), &info).unwrap();

    let (ok, listed) = kubectl(&["get", "configmaps", "-n", NS, "-l", "drplan.io/record=run", "-o", "name"]);
    assert!(ok, "{listed}");
    assert_eq!(listed.trim(), format!("configmap/{}", KubeStore::config_map_name(&run.run_id).unwrap()));
    let lease = KubeStore::lease_name(&run.lock_key());
    let (ok, holder) = kubectl(&[
        "get",
        "lease",
        &lease,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds}",
    ]);
    assert!(ok, "{holder}");
    assert!(holder.contains(&run.run_id) && holder.ends_with(" 30"), "{holder}");

    // A Lease read before the holder's release, replaced after it: stale.
    let (ok, yaml) = kubectl(&["get", "lease", &lease, "-n", NS, "-o", "yaml"]);
    assert!(ok, "{yaml}");
    let stale = dir.join("stale-lease.yaml");
    std::fs::write(&stale, yaml).unwrap();
    guard.unlock().unwrap();
    let (ok, replaced) = kubectl(&["replace", "-f", &stale.to_string_lossy()]);
    assert!(!ok, "a stale replace succeeded: {replaced}");
    assert!(replaced.contains("the object has been modified"), "{replaced}");
}

// ---------------------------------------------------------------------------
// `dr apply` / `dr resume` with `--state-store kubernetes://NAMESPACE`

mod apply_common;

use apply_common::{
    CASSANDRA_NS, ClaimState, Env, KillOnDrop, assert_cassandra_restored, env, fast_config, path_str, seed_cassandra,
    wait_child,
};

/// The Kubernetes store of an env's sim, with a short lease so a killed holder's lock
/// expires quickly (but long enough that a loaded machine still renews in time).
const KUBE_STORE: &str = "kubernetes://drplan-state?lease-duration=2s";

/// Longer than the lease of [`KUBE_STORE`].
const PAST_THE_LEASE: Duration = Duration::from_millis(2500);

async fn create_state_namespace(env: &Env) {
    let namespace =
        Namespace { metadata: ObjectMeta { name: Some(NS.into()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(env.client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
}

/// `dr <args>` with the Kubernetes state store (and `extra_env`).
async fn dr_kube(env: &Env, args: &[&str], extra_env: &[(&str, &str)]) -> apply_common::DrResult {
    let mut vars = vec![("DRPLAN_STATE_STORE", KUBE_STORE)];
    vars.extend_from_slice(extra_env);
    env.dr(args, &vars).await
}

async fn apply_kube(env: &Env, extra_env: &[(&str, &str)]) -> apply_common::DrResult {
    let plan = path_str(&env.plan);
    dr_kube(env, &["apply", &plan, "--auto-approve"], extra_env).await
}

fn comparable(
    claims: &std::collections::BTreeMap<String, ClaimState>,
) -> Vec<(String, String, String, Option<String>)> {
    claims.iter().map(|(n, c)| (n.clone(), c.phase.clone(), c.capacity.clone(), c.data.clone())).collect()
}

/// Runs as the state store reads them back from the sim, through a store of its own.
async fn kube_runs(env: &Env) -> Vec<RunRecord> {
    let url = env.sim.url();
    tokio::task::spawn_blocking(move || {
        let config = kube::Config::new(url.parse().unwrap());
        let store =
            KubeStore::new(config, &KubeStoreUrl { namespace: NS.into(), lease_duration: Duration::from_secs(1) })
                .unwrap();
        store.list_runs().unwrap().iter().map(|s| store.load_run(&s.run_id).unwrap()).collect()
    })
    .await
    .unwrap()
}

/// `dr apply` SIGKILLed after transition k, for several k across the run, with runs kept
/// in the cluster: right after the kill `dr resume` is refused (the dead holder's Lease
/// has not expired, and it is named); once it expires, `dr resume` takes it over, says
/// so, and ends in the uninterrupted run's state with nothing made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_several_transitions_resumes_from_the_kubernetes_store() {
    let reference = env("ebs-cassandra-restore", "kube-crash-ref", fast_config()).await;
    create_state_namespace(&reference).await;
    let originals = seed_cassandra(&reference).await;
    apply_kube(&reference, &[]).await.assert_success("uninterrupted dr apply with the Kubernetes store");
    let expected = comparable(&assert_cassandra_restored(&reference, &originals).await);
    assert!(reference.run_ids().is_empty(), "nothing in the local state dir");
    let runs = kube_runs(&reference).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    drop(reference);

    let mut crashed_at = 0;
    for k in [1, 6, 13, 20, 27, 34] {
        let env = env("ebs-cassandra-restore", &format!("kube-crash-{k}"), fast_config()).await;
        create_state_namespace(&env).await;
        let originals = seed_cassandra(&env).await;
        let failpoint = format!("kill-after-transition={k}");
        let crashed = apply_kube(&env, &[("DRPLAN_FAILPOINT", &failpoint)]).await;
        assert_eq!(crashed.signal, Some(9), "k={k}: expected a SIGKILL\n{}", env.dump_logs(&crashed));
        crashed_at += 1;
        let run_id = crashed.run_id().expect("run id on stderr");
        let runs = kube_runs(&env).await;
        assert_eq!(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), [run_id.as_str()], "k={k}");
        assert_eq!(runs[0].status, RunStatus::Running, "k={k}: the record as the kill left it");

        let refused = dr_kube(&env, &["resume", &run_id], &[]).await;
        assert_eq!(refused.code, Some(1), "k={k}: resume while the Lease is live\n{}", env.dump_logs(&refused));
        assert!(
            refused.stderr.contains("is locked by") && refused.stderr.contains(&run_id),
            "k={k}: {}",
            refused.stderr
        );
        tokio::time::sleep(PAST_THE_LEASE).await;
        let resumed = dr_kube(&env, &["resume", &run_id], &[]).await;
        assert_eq!(resumed.code, Some(0), "k={k}: dr resume failed\n{}", env.dump_logs(&resumed));
        assert!(resumed.stderr.contains("took over the lock"), "k={k}: takeover reported\n{}", resumed.stderr);
        let claims = assert_cassandra_restored(&env, &originals).await;
        assert_eq!(comparable(&claims), expected, "k={k}: end state differs from the uninterrupted run");
        let lp = ListParams::default();
        let counts = (
            env.snapshots(CASSANDRA_NS).list(&lp).await.unwrap().items.len(),
            env.pvcs(CASSANDRA_NS).list(&lp).await.unwrap().items.len(),
        );
        assert_eq!(counts, (3, 3), "k={k}: duplicate or missing snapshots/claims");
        let runs = kube_runs(&env).await;
        assert_eq!((runs.len(), runs[0].status), (1, RunStatus::Succeeded), "k={k}: resume made no new run");
    }
    assert_eq!(crashed_at, 6);
}

/// Two `dr apply` of one plan at once, runs kept in the cluster: exactly one proceeds;
/// the other is refused naming the holder and starts no run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applies_at_once_with_the_kubernetes_store_exactly_one_proceeds() {
    let env = env("ebs-cassandra-restore", "kube-concurrent", SimConfig { paused: true, ..fast_config() }).await;
    create_state_namespace(&env).await;
    let originals = seed_cassandra(&env).await;
    let plan = path_str(&env.plan);
    let args = ["apply", plan.as_str(), "--auto-approve"];
    let store = [("DRPLAN_STATE_STORE", KUBE_STORE)];
    let mut children = [KillOnDrop(Some(env.spawn(&args, &store))), KillOnDrop(Some(env.spawn(&args, &store)))];
    let pids = children.each_ref().map(|c| c.0.as_ref().unwrap().id());
    let loser = env
        .eventually("one apply exits", Duration::from_secs(60), || {
            let exited = children.iter_mut().position(|c| c.0.as_mut().unwrap().try_wait().unwrap().is_some());
            async move { exited.ok_or_else(|| "both still running".to_string()) }
        })
        .await;
    let winner = 1 - loser;
    let [first, second] = children;
    let (loser_child, mut winner_child) = if loser == 0 { (first, second) } else { (second, first) };
    let lost = wait_child(loser_child).await;
    assert_eq!(lost.code, Some(1), "{}", env.dump_logs(&lost));
    assert!(lost.stderr.contains("is locked by"), "{}", env.dump_logs(&lost));
    assert!(lost.stderr.contains(&format!("(pid {} on ", pids[winner])), "names the holder: {}", lost.stderr);
    assert!(lost.stderr.contains(&format!("Lease {NS}/drplan-lock-")), "names the Lease: {}", lost.stderr);
    assert!(lost.run_id().is_none(), "the loser started no run: {}", lost.stderr);
    assert!(winner_child.0.as_mut().unwrap().try_wait().unwrap().is_none(), "the winner is still running");

    env.sim.resume();
    let won = wait_child(winner_child).await;
    won.assert_success("the winning dr apply");
    assert_cassandra_restored(&env, &originals).await;
    let runs = kube_runs(&env).await;
    assert_eq!((runs.len(), runs[0].status), (1, RunStatus::Succeeded));
    let listed = dr_kube(&env, &["runs"], &[("KUBECONFIG", &path_str(&env.kubeconfig))]).await;
    listed.assert_success("dr runs with the Kubernetes store");
    assert!(listed.stdout.contains(&runs[0].run_id), "{}", listed.stdout);
}

#[test]
fn a_state_store_that_is_not_a_directory_or_a_namespace_is_a_clear_error() {
    for (spec, expected) in [
        ("s3://bucket/runs", "unknown scheme"),
        ("kubernetes://Not_A_Namespace", "is not a namespace name"),
        ("kubernetes://dr?lease=5", "unknown option"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
            .args(["runs", "--state-store", spec])
            .env_remove("DRPLAN_STATE_STORE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{spec}: {stderr}");
        assert!(stderr.contains(spec) && stderr.contains(expected), "{spec}: {stderr}");
    }
}

/// The Kubernetes analogue of a torn journal line: `dr apply` is SIGKILLed while the API
/// server has stored a checkpoint (a ConfigMap update) but before `dr` hears back. The
/// record is whole (the old one or the new one, never a mix), and after the dead
/// holder's Lease expires `dr resume` finishes the run to the uninterrupted end state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_checkpoint_is_being_saved_resumes_from_a_whole_record() {
    let checkpoint_writes = |env: &Env| {
        env.sim.requests().iter().filter(|r| r.resource == "configmaps" && r.verb == "update" && r.code < 300).count()
    };
    for n in [1, 9, 21] {
        let mut config = fast_config();
        config.faults.rules.push(drplan::sim::config::FaultRule {
            verb: Some("update".into()),
            resource: Some("configmaps".into()),
            response_latency: Some(Duration::from_millis(300)),
            ..Default::default()
        });
        let env = env("ebs-cassandra-restore", &format!("kube-save-crash-{n}"), config).await;
        create_state_namespace(&env).await;
        let originals = seed_cassandra(&env).await;
        let plan = path_str(&env.plan);
        let mut child =
            KillOnDrop(Some(env.spawn(&["apply", &plan, "--auto-approve"], &[("DRPLAN_STATE_STORE", KUBE_STORE)])));
        let deadline = Instant::now() + Duration::from_secs(60);
        while checkpoint_writes(&env) < n {
            assert!(Instant::now() < deadline, "checkpoint {n} never came");
            assert!(child.0.as_mut().unwrap().try_wait().unwrap().is_none(), "dr apply ended before checkpoint {n}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.0.as_mut().unwrap().kill().expect("SIGKILL dr apply");
        let _ = child.0.take().unwrap().wait();
        env.sim.with_state(|state| state.config.faults.rules.clear());

        let runs = kube_runs(&env).await; // loads and verifies the checksum
        assert_eq!(runs.len(), 1, "n={n}");
        assert_eq!(runs[0].status, RunStatus::Running, "n={n}");
        tokio::time::sleep(PAST_THE_LEASE).await;
        let resumed = dr_kube(&env, &["resume", &runs[0].run_id], &[]).await;
        assert_eq!(resumed.code, Some(0), "n={n}: dr resume failed\n{}", env.dump_logs(&resumed));
        assert_cassandra_restored(&env, &originals).await;
        let runs = kube_runs(&env).await;
        assert_eq!((runs.len(), runs[0].status), (1, RunStatus::Succeeded), "n={n}");
    }
}

/// Rollback and commit read and write runs in the cluster too: an apply that fails past
/// the deletions is rolled back from the Kubernetes store (original claims and data
/// back, the original run marked rolled back, the rollback a run of its own), and a
/// later commit of it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_commit_use_the_kubernetes_store() {
    let env = env("ebs-cassandra-restore", "kube-rollback", fast_config()).await;
    create_state_namespace(&env).await;
    let originals = seed_cassandra(&env).await;
    let failing = "restore-cassandra/restore-cassandra-data-cassandra-0";
    let failed = apply_kube(&env, &[("DRPLAN_FAILPOINT", &format!("fail-step={failing}"))]).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().expect("run id");

    let rolled_back = dr_kube(&env, &["rollback", &run_id], &[]).await;
    rolled_back.assert_success("dr rollback with the Kubernetes store");
    let claims = env.claims(CASSANDRA_NS).await;
    for (name, volume) in &originals {
        assert_eq!(claims.get(name).map(|c| &c.volume), Some(volume), "{name} is bound to its original volume");
    }
    let runs = kube_runs(&env).await;
    assert_eq!(runs.len(), 2, "the apply and its rollback");
    let original = runs.iter().find(|r| r.run_id == run_id).expect("the original run");
    assert_eq!(original.status, RunStatus::RolledBack);
    assert!(env.run_ids().is_empty(), "nothing in the local state dir");

    let committed = dr_kube(&env, &["commit", &run_id, "--auto-approve"], &[]).await;
    assert_eq!(committed.code, Some(1), "a rolled-back run cannot be committed\n{}", env.dump_logs(&committed));
    assert!(
        committed.stderr.contains("is rolled_back; only a succeeded run"),
        "read from the cluster: {}",
        committed.stderr
    );
}
