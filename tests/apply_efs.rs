//! EFS failover and failback end to end: two simulated clusters (primary in us-east-1, DR
//! in us-west-2) and the simulated AWS they share, loaded from the example plans'
//! state; `dr apply` talks to them through kube and the AWS SDK (`--aws-endpoint-url`).

mod apply_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use apply_common::{DrResult, KillOnDrop, wait_child};
use drplan::sim::aws::{AwsHandle, AwsWorld};
use drplan::sim::config::Faults;
use drplan::sim::{EventType, SimCluster, SimConfig, SimHandle};
use serde_json::json;

const NS: &str = "reports";
const CLAIM: &str = "reports-data";
const PRIMARY_FS: &str = "fs-0123456789abcdef0";
const REPLICA_FS: &str = "fs-0fedcba9876543210";
const PRIMARY_CONTEXT: &str = "arn:aws:eks:us-east-1:123456789012:cluster/reports-prod-use1";
const DR_CONTEXT: &str = "arn:aws:eks:us-west-2:123456789012:cluster/reports-dr-usw2";

fn plans() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans")
}

/// Both clusters and the simulated AWS of one example plan.
struct EfsEnv {
    primary: SimHandle,
    dr: SimHandle,
    aws: AwsHandle,
    kubeconfig: PathBuf,
    state_dir: PathBuf,
    plan: PathBuf,
}

async fn efs_env(plan: &str, label: &str, faults: Faults) -> EfsEnv {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("drplan-efs-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = SimConfig { speed: 100.0, ..SimConfig::default() };
    let primary = SimCluster::start(&[plans().join(plan).join("primary")], config.clone()).await.expect("primary sim");
    let dr = SimCluster::start(&[plans().join(plan).join("dr")], config).await.expect("dr sim");
    // The AWS side runs on the primary cluster's clock, so request and pod times compare.
    let state = drplan::sim::aws::load::read(&plans().join(plan).join("aws.yaml"), primary.clock().now(), faults)
        .expect("aws.yaml");
    let world = AwsWorld::new(state, primary.clock());
    let aws = AwsHandle::start(world.clone(), "127.0.0.1:0".parse().unwrap()).await.expect("simulated AWS");
    for sim in [&primary, &dr] {
        sim.with_state(|s| s.aws = Some(world.clone()));
    }
    let kubeconfig = dir.join("kubeconfig");
    let contexts = [(PRIMARY_CONTEXT, primary.url()), (DR_CONTEXT, dr.url())];
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": contexts.iter().map(|(c, url)| json!({"name": c, "cluster": {"server": url}})).collect::<Vec<_>>(),
        "users": contexts.iter().map(|(c, _)| json!({"name": c, "user": {}})).collect::<Vec<_>>(),
        "contexts": contexts.iter().map(|(c, _)| json!({"name": c, "context": {"cluster": c, "user": c}})).collect::<Vec<_>>(),
        "current-context": PRIMARY_CONTEXT,
    });
    std::fs::write(&kubeconfig, serde_json::to_vec(&config).unwrap()).unwrap();
    EfsEnv { primary, dr, aws, kubeconfig, state_dir: dir.join("state"), plan: plans().join(format!("{plan}.yaml")) }
}

impl EfsEnv {
    fn world(&self) -> &Arc<AwsWorld> {
        &self.aws.world
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command.args(args).arg("--kubeconfig").arg(&self.kubeconfig).args(["--aws-endpoint-url", &self.aws.url()]);
        // Progress options apply to the commands that run steps only.
        if ["apply", "resume", "rollback"].contains(&args.first().copied().unwrap_or_default()) {
            command.args(["--output", "plain", "--step-timeout", "2m"]);
        }
        command
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("NO_COLOR", "1")
            // The standard AWS chain, from the environment: static dummy keys.
            .env("AWS_ACCESS_KEY_ID", "AKIDDRPLANTEST")
            .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("DRPLAN_FAILPOINT")
            .env_remove("DRPLAN_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        command
    }

    async fn dr(&self, args: &[&str], extra_env: &[(&str, &str)]) -> DrResult {
        wait_child(KillOnDrop(Some(self.command(args, extra_env).spawn().expect("dr starts")))).await
    }

    async fn apply(&self, extra_env: &[(&str, &str)]) -> DrResult {
        let plan = self.plan.to_string_lossy().into_owned();
        self.dr(&["apply", &plan, "--auto-approve"], extra_env).await
    }

    fn read(&self, sim: &SimHandle) -> String {
        String::from_utf8(sim.read_claim_data(NS, CLAIM).expect("claim data")).unwrap()
    }

    /// (source, destination, status) of every replication.
    fn replications(&self) -> Vec<(String, String, String)> {
        let state = self.world().lock();
        state
            .replications
            .iter()
            .map(|r| (r.source.clone(), r.destination.clone(), r.status.as_str().to_string()))
            .collect()
    }

    /// Successful calls of an AWS operation.
    fn calls(&self, operation: &str) -> usize {
        self.world().lock().requests.iter().filter(|r| r.operation == operation && r.status < 300).count()
    }

    async fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efs_failover_makes_the_replica_writable_with_the_primary_data() {
    let env = efs_env("efs-failover", "failover", Faults::default()).await;
    // Before: the replica is a replication destination, mounted read-only.
    let refused = env.dr.write_claim_data(NS, CLAIM, "written in DR too early");
    assert!(refused.is_err_and(|e| e.to_string().contains("Read-only file system")));
    env.primary.write_claim_data(NS, CLAIM, "orders up to 10:00").unwrap();
    env.eventually("the write to reach the replica", || env.read(&env.dr) == "orders up to 10:00").await;

    env.apply(&[]).await.assert_success("dr apply efs-failover");

    assert_eq!(env.read(&env.dr), "orders up to 10:00", "the primary's data is in DR");
    env.dr.write_claim_data(NS, CLAIM, "written in DR after the failover").expect("the replica is writable");
    assert_eq!(env.read(&env.dr), "written in DR after the failover");
    assert!(env.replications().is_empty(), "{:?}", env.replications());
    assert_eq!(env.calls("DeleteReplicationConfiguration"), 1);

    // The primary's writers were gone before the replication was deleted.
    let deleted_at = env
        .world()
        .lock()
        .requests
        .iter()
        .find(|r| r.operation == "DeleteReplicationConfiguration")
        .map(|r| r.at)
        .unwrap();
    let pods_gone: Vec<jiff::Timestamp> = env
        .primary
        .mutations()
        .iter()
        .filter(|m| m.resource.0 == "/pods" && m.namespace == NS && m.event_type == EventType::Deleted)
        .map(|m| m.time.parse().unwrap())
        .collect();
    let pods_left = env.primary.with_state(|s| s.all(&drplan::sim::registry::keys::pods()).len());
    assert!(pods_gone.len() >= 3 && pods_left == 0, "the reports pods went away: {pods_gone:?}, {pods_left} left");
    assert!(pods_gone.iter().all(|t| *t <= deleted_at), "pods gone {pods_gone:?}, replication deleted {deleted_at}");
}

/// The failback's end state: the DR writes are in the original, the replication runs
/// primary → DR again and the DR copy is read-only again.
fn assert_failed_back(env: &EfsEnv, dr_writes: &str) {
    assert_eq!(env.read(&env.primary), dr_writes, "the DR writes are in the original file system");
    let replications = env.replications();
    assert_eq!(replications.len(), 1, "{replications:?}");
    assert_eq!((replications[0].0.as_str(), replications[0].1.as_str()), (PRIMARY_FS, REPLICA_FS));
    let refused = env.dr.write_claim_data(NS, CLAIM, "late DR write");
    assert!(refused.is_err_and(|e| e.to_string().contains("Read-only file system")), "the DR copy is read-only again");
    env.primary.write_claim_data(NS, CLAIM, "primary serving again").expect("the original is writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efs_failback_replicates_dr_writes_home_and_reverses_the_replication() {
    let env = efs_env("efs-failback", "failback", Faults::default()).await;
    let dr_writes = "orders taken in us-west-2 during the disaster";
    env.dr.write_claim_data(NS, CLAIM, dr_writes).unwrap();

    let result = env.apply(&[]).await;
    result.assert_success("dr apply efs-failback");

    assert_failed_back(&env, dr_writes);
    assert_eq!(env.calls("CreateReplicationConfiguration"), 2, "back, then forward");
    assert_eq!(env.calls("DeleteReplicationConfiguration"), 1, "the back-replication only");
}

/// When each step of a run started and finished, from its run record.
fn step_times(
    env: &EfsEnv,
    result: &DrResult,
) -> std::collections::BTreeMap<String, (jiff::Timestamp, jiff::Timestamp)> {
    use drplan::checkpoint::StateStore;
    let run = result.run_id().expect("the run id is printed");
    let record = drplan::checkpoint::LocalDirStore::new(&env.state_dir).load_run(&run).expect("run record");
    let time = |t: &Option<String>, id: &str| -> jiff::Timestamp {
        t.as_deref().unwrap_or_else(|| panic!("step {id} has no time")).parse().expect("RFC 3339 time")
    };
    record.steps.iter().map(|(id, s)| (id.clone(), (time(&s.started_at, id), time(&s.finished_at, id)))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efs_failback_is_down_only_from_stopping_the_dr_writers_to_the_primary_being_ready() {
    let env = efs_env("efs-failback", "downtime", Faults::default()).await;
    env.dr.write_claim_data(NS, CLAIM, "orders taken in us-west-2").unwrap();
    let result = env.apply(&[]).await;
    result.assert_success("dr apply efs-failback");
    let times = step_times(&env, &result);
    let (down_from, _) = times["stop-dr-writers"];
    let (_, up_at) = times["wait-primary-app-ready"];
    // The long initial sync of the back-replication ran while DR still served.
    for before in ["efs-failback/unprotect-primary", "efs-failback/replicate-back", "efs-failback/primary-synced"] {
        let (_, finished) = times[before];
        assert!(finished <= down_from, "{before} finished at {finished}, after the writers stopped at {down_from}");
    }
    // Inside the window: only the cutover itself (and the forward replication beside it).
    let cutover = [
        "stop-dr-writers",
        "wait-dr-writers-gone",
        "final-sync",
        "efs-failback/cutover",
        "efs-failback/primary-writable",
        "start-primary-app",
        "wait-primary-app-ready",
        "efs-failback/unprotect-replica",
        "efs-failback/replicate-forward",
    ];
    for (id, (started, _)) in &times {
        let inside = *started >= down_from && *started <= up_at;
        assert!(!inside || cutover.contains(&id.as_str()), "{id} started at {started}, inside the downtime");
    }
    let (run_start, _) = times.values().min_by_key(|(s, _)| *s).copied().unwrap();
    let (_, run_end) = times.values().max_by_key(|(_, f)| *f).copied().unwrap();
    let down = up_at.duration_since(down_from);
    let whole = run_end.duration_since(run_start);
    assert!(down < whole, "the service was down {down:?} of a {whole:?} run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efs_failback_survives_throttling_and_server_errors() {
    let faults: Faults = serde_json::from_value(json!({
        "seed": 7,
        "rules": [
            { "resource": "elasticfilesystem", "status": 429, "rate": 0.1 },
            { "resource": "elasticfilesystem", "status": 503, "rate": 0.1 },
        ]
    }))
    .unwrap();
    let env = efs_env("efs-failback", "faults", faults).await;
    let dr_writes = "orders taken while AWS was flaky";
    env.dr.write_claim_data(NS, CLAIM, dr_writes).unwrap();
    env.apply(&[]).await.assert_success("dr apply efs-failback with AWS faults");
    assert_failed_back(&env, dr_writes);
    let failed = env.world().lock().requests.iter().filter(|r| r.status >= 429).count();
    assert!(failed > 0, "faults were injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_already_deleted_is_a_clear_error_naming_the_step() {
    let env = efs_env("efs-failover", "gone", Faults::default()).await;
    env.world().lock().replications.clear();
    let result = env.apply(&[]).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(
        result.stderr.contains("efs-failover/delete-replication") && result.stderr.contains("ReplicationNotFound"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("SdkError"), "no debug dump: {}", result.stderr);
    assert_eq!(env.calls("DeleteReplicationConfiguration"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_protection_enabled_is_refused_and_reported() {
    let env = efs_env("efs-failback", "protected", Faults::default()).await;
    // A plan that replicates into the original without disabling its protection first.
    let plan = env.state_dir.with_file_name("protected.yaml");
    let text = format!(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata:\n  name: efs-protected\nclusters:\n  - name: dr\n    context: {DR_CONTEXT}\n    namespace: reports\n    region: us-west-2\nsteps:\n  - id: replicate-back\n    efsCreateReplication:\n      region: us-west-2\n      sourceFileSystemId: {REPLICA_FS}\n      destinationRegion: us-east-1\n      destinationFileSystemId: {PRIMARY_FS}\n"
    );
    std::fs::write(&plan, text).unwrap();
    let result = env.dr(&["apply", &plan.to_string_lossy(), "--auto-approve"], &[]).await;
    assert_eq!(result.code, Some(1), "{}\n{}", result.stdout, result.stderr);
    // Refused before the run: the plan read the destination's protection.
    assert!(
        result.stderr.contains("step replicate-back is blocked")
            && result.stderr.contains(&format!("{PRIMARY_FS} has replication overwrite protection ENABLED"))
            && result.stderr.contains("Nothing was changed"),
        "{}",
        result.stderr
    );
    assert_eq!(env.calls("CreateReplicationConfiguration"), 0, "not even tried");
    assert!(env.replications().is_empty(), "nothing was changed");
    assert!(env.read(&env.primary).contains("before the disaster"), "the original's data is untouched");
}

/// `dr apply` of the failback is SIGKILLed right after each checkpointed transition in
/// turn, then `dr resume` finishes the run: every boundary ends in the uninterrupted
/// run's state, with exactly one replication created each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failback_crashed_at_every_transition_resumes_without_a_second_replication() {
    let mut boundaries = 0;
    for k in 1.. {
        assert!(k < 200, "the run never completed without reaching the failpoint");
        let env = efs_env("efs-failback", &format!("crash-{k}"), Faults::default()).await;
        let dr_writes = format!("DR writes, crash at transition {k}");
        env.dr.write_claim_data(NS, CLAIM, dr_writes.as_str()).unwrap();
        let failpoint = format!("kill-after-transition={k}");
        let crashed = env.apply(&[("DRPLAN_FAILPOINT", &failpoint)]).await;
        if crashed.code == Some(0) {
            assert_failed_back(&env, &dr_writes);
            break;
        }
        assert_eq!(crashed.signal, Some(9), "k={k}: expected a SIGKILL\n{}", crashed.stderr);
        boundaries += 1;
        let run_id = crashed.run_id().expect("run id on stderr");
        let resumed = env.dr(&["resume", &run_id], &[]).await;
        assert_eq!(resumed.code, Some(0), "k={k}: dr resume failed\n{}\n{}", resumed.stdout, resumed.stderr);
        assert_failed_back(&env, &dr_writes);
        assert_eq!(env.calls("CreateReplicationConfiguration"), 2, "k={k}: one replication each way");
        assert_eq!(env.calls("DeleteReplicationConfiguration"), 1, "k={k}: one delete");
    }
    // 12 steps: a start and a finish each, plus captures and the final run status.
    assert!(boundaries >= 25, "only {boundaries} transitions were crashed at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_a_failover_says_the_deleted_replication_cannot_be_undone() {
    let env = efs_env("efs-failover", "rollback", Faults::default()).await;
    let applied = env.apply(&[]).await;
    applied.assert_success("dr apply efs-failover");
    let run_id = applied.run_id().expect("run id");
    let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
    assert!(
        rolled_back.stderr.contains("efs-failover/delete-replication")
            && rolled_back.stderr.contains("cannot be undone"),
        "{}",
        rolled_back.stderr
    );
    assert!(env.replications().is_empty(), "rollback did not invent a replication");
}

/// The AWS calls of the failback that change something.
const AWS_WRITES: [&str; 3] =
    ["UpdateFileSystemProtection", "CreateReplicationConfiguration", "DeleteReplicationConfiguration"];

/// The other crash window: EFS made the change but `dr` dies before it hears back. For
/// each of the failback's five AWS writes in turn, `dr apply` is SIGKILLed while that
/// write's answer is on its way; `dr resume` must adopt what the write did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failback_crashed_between_an_aws_write_and_its_answer_resumes_to_the_same_end_state() {
    let late: Vec<serde_json::Value> =
        AWS_WRITES.iter().map(|verb| json!({ "verb": verb, "responseLatency": "2s" })).collect();
    let faults: Faults = serde_json::from_value(json!({ "rules": late })).unwrap();
    for n in 1..=5 {
        let env = efs_env("efs-failback", &format!("write-crash-{n}"), faults.clone()).await;
        let dr_writes = format!("DR writes, crash at AWS write {n}");
        env.dr.write_claim_data(NS, CLAIM, dr_writes.as_str()).unwrap();
        let writes = || {
            let state = env.world().lock();
            state.requests.iter().filter(|r| AWS_WRITES.contains(&r.operation.as_str()) && r.status < 300).count()
        };
        let plan = env.plan.to_string_lossy().into_owned();
        let mut child = KillOnDrop(Some(env.command(&["apply", &plan, "--auto-approve"], &[]).spawn().unwrap()));
        env.eventually(&format!("AWS write {n}"), || writes() >= n).await;
        drop(child.0.take().map(|mut c| {
            let _ = c.kill();
            c.wait()
        }));
        let runs: Vec<_> = std::fs::read_dir(env.state_dir.join("runs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|name| !name.starts_with('.'))
            .collect();
        assert_eq!(runs.len(), 1, "n={n}: {runs:?}");
        env.world().lock().faults = Faults::default();
        let resumed = env.dr(&["resume", &runs[0]], &[]).await;
        assert_eq!(resumed.code, Some(0), "n={n}: dr resume failed\n{}", resumed.stderr);
        assert_failed_back(&env, &dr_writes);
        assert_eq!(env.calls("CreateReplicationConfiguration"), 2, "n={n}: one replication each way");
        assert_eq!(env.calls("DeleteReplicationConfiguration"), 1, "n={n}: one delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_plan_reports_the_rpo_a_failover_would_have_now() {
    let env = efs_env("efs-failover", "rpo", Faults::default()).await;
    let plan = env.plan.to_string_lossy().into_owned();
    let fresh = env.dr(&["plan", &plan], &[]).await;
    assert!(
        fresh.stderr.contains("EFS replication fs-0123456789abcdef0 → fs-0fedcba9876543210 (us-west-2): ENABLED"),
        "{}",
        fresh.stderr
    );
    assert!(!fresh.stderr.contains("objectives.rpo"), "{}", fresh.stderr);
    // A replication paused an hour ago: a failover now loses that hour, beyond the 15m RPO.
    {
        let mut state = env.world().lock();
        let replication = &mut state.replications[0];
        replication.status = drplan::sim::aws::ReplicationStatus::Paused;
        replication.last_replicated = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1));
    }
    let stale = env.dr(&["plan", &plan], &[]).await;
    assert!(
        stale.stderr.contains("PAUSED") && stale.stderr.contains("more than objectives.rpo (15m)"),
        "{}",
        stale.stderr
    );
    let describes = env.calls("DescribeReplicationConfigurations");
    assert_eq!(describes, 2, "one Describe call per region and plan");
    assert_eq!(env.calls("DeleteReplicationConfiguration"), 0, "dr plan changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_aws_credentials_stop_the_cloud_step_with_a_clear_error() {
    let env = efs_env("efs-failover", "no-credentials", Faults::default()).await;
    let plan = env.plan.to_string_lossy().into_owned();
    let mut command = env.command(&["apply", &plan, "--auto-approve"], &[]);
    command.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let result = wait_child(KillOnDrop(Some(command.spawn().unwrap()))).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(
        result.stderr.contains("efs-failover/delete-replication") && result.stderr.contains("credentials"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("DispatchFailure {"), "no debug dump: {}", result.stderr);
    assert_eq!(env.calls("DeleteReplicationConfiguration"), 0);
    assert_eq!(env.replications().len(), 1, "nothing changed in AWS");
}

/// The rights `dr rbac` derives for an EFS example (both clusters, and the IAM policy).
fn derived_rights(plan: &str) -> drplan::rbac::Rbac {
    let (loaded, diags) = drplan::lang::load_plan(&plans().join(format!("{plan}.yaml")));
    let loaded = loaded.unwrap_or_else(|| panic!("{plan} loads: {diags:?}"));
    let names: Vec<String> = loaded.plan.clusters.iter().map(|c| c.name.value.clone()).collect();
    let facts = drplan::cluster::ClusterInventories::from_paths(&[plans().join(plan)], &names).expect("cluster state");
    let options = drplan::graph::BuildOptions { facts: Some(&facts), intents_only: false };
    let (graph, diags) = drplan::graph::build(&loaded, options);
    let graph = graph.unwrap_or_else(|| panic!("{plan} builds: {diags:?}"));
    let options = drplan::rbac::Options { facts: Some(&facts), ..Default::default() };
    drplan::rbac::derive(&graph, &options)
}

/// Grants each cluster's derived manifests in its sim and writes a kubeconfig whose
/// users are the ServiceAccount's tokens.
async fn act_as_service_accounts(env: &mut EfsEnv, rbac: &drplan::rbac::Rbac) {
    use kube::api::{Api, DynamicObject, PostParams};
    let mut users = Vec::new();
    for (cluster, sim, context) in [("primary", &env.primary, PRIMARY_CONTEXT), ("dr", &env.dr, DR_CONTEXT)] {
        let client = sim.client().unwrap();
        let namespace: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drplan"}}))
                .unwrap();
        let namespaces: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("", "v1", "Namespace")),
        );
        let _ = namespaces.create(&PostParams::default(), &namespace).await;
        for object in rbac.manifests_of(cluster) {
            let (group, version) = object["apiVersion"].as_str().unwrap().rsplit_once('/').unwrap_or(("", "v1"));
            let gvk = kube::core::GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
            let resource = kube::core::ApiResource::from_gvk(&gvk);
            let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let typed: DynamicObject = serde_json::from_value(object.clone()).unwrap();
            api.create(&PostParams::default(), &typed).await.unwrap_or_else(|e| panic!("creating {object}: {e}"));
        }
        let token = sim.service_account_token(&rbac.service_account_namespace, &rbac.name).expect("token");
        users.push(json!({"name": context, "user": {"token": token}}));
    }
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&env.kubeconfig).unwrap()).unwrap();
    config["users"] = json!(users);
    let path = env.kubeconfig.with_file_name("kubeconfig-service-account");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    env.kubeconfig = path;
}

/// `dr rbac` for the two-cluster EFS plans: each runs as the ServiceAccount with the
/// derived roles in each cluster, and calls exactly the EFS actions its IAM policy
/// allows (`dr apply` reads the replications first, then each step's calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efs_plans_run_with_their_derived_rights_and_call_exactly_their_iam_actions() {
    for plan in ["efs-failover", "efs-failback"] {
        let rbac = derived_rights(plan);
        let mut env = efs_env(plan, &format!("rbac-{plan}"), Faults::default()).await;
        act_as_service_accounts(&mut env, &rbac).await;
        let result = env.apply(&[]).await;
        result.assert_success(&format!("dr apply {plan} as {}", rbac.user()));
        for sim in [&env.primary, &env.dr] {
            let refused: Vec<_> = sim.requests().into_iter().filter(|r| r.code == 403).collect();
            assert!(refused.is_empty(), "{plan}: nothing refused: {refused:?}");
        }
        let called: std::collections::BTreeSet<String> = env
            .world()
            .lock()
            .requests
            .iter()
            .filter(|r| r.status < 300)
            .map(|r| format!("elasticfilesystem:{}", r.operation))
            .collect();
        let policy = rbac.iam.as_ref().expect("an IAM policy");
        assert_eq!(policy.actions(), called, "{plan}: the policy allows exactly the calls made");
        let document = policy.to_json().to_string();
        assert!(document.contains(&format!("file-system/{PRIMARY_FS}")), "{plan}: by ARN: {document}");
    }
}

/// After a failover, protect the DR file system (now serving) by replicating it into a
/// new file system back in us-east-1 that EFS creates.
const PROTECT_PLAN: &str = r#"
apiVersion: drplan.dev/v1alpha1
kind: DrPlan
metadata:
  name: efs-protect-dr
clusters:
  - name: primary
    context: arn:aws:eks:us-east-1:123456789012:cluster/reports-prod-use1
    namespace: reports
    region: us-east-1
steps:
  - id: protect-dr
    efsCreateReplication:
      region: us-west-2
      sourceFileSystemId: fs-0fedcba9876543210
      destinationRegion: us-east-1
"#;

/// File systems EFS holds in `region`, by id.
fn file_systems_in(env: &EfsEnv, region: &str) -> Vec<String> {
    env.world().lock().file_systems.values().filter(|f| f.region == region).map(|f| f.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_into_a_new_file_system_is_created_once_and_named_in_the_run() {
    // The failback state: the DR file system serves, nothing replicates it.
    let late = json!({ "rules": [{ "verb": "CreateReplicationConfiguration", "responseLatency": "2s" }] });
    let env = efs_env("efs-failback", "new-destination", serde_json::from_value(late).unwrap()).await;
    let plan = env.state_dir.with_file_name("protect.yaml");
    std::fs::write(&plan, PROTECT_PLAN).unwrap();
    let plan = plan.to_string_lossy().into_owned();
    let before = file_systems_in(&env, "us-east-1");

    // Killed after EFS created the replication and before dr heard of it.
    let mut child = KillOnDrop(Some(env.command(&["apply", &plan, "--auto-approve"], &[]).spawn().unwrap()));
    env.eventually("the create to reach EFS", || env.calls("CreateReplicationConfiguration") == 1).await;
    drop(child.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    env.world().lock().faults = Faults::default();
    let run = std::fs::read_dir(env.state_dir.join("runs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|name| !name.starts_with('.'))
        .expect("the run was recorded");
    env.dr(&["resume", &run], &[]).await.assert_success("dr resume");

    let created: Vec<String> = file_systems_in(&env, "us-east-1").into_iter().filter(|f| !before.contains(f)).collect();
    assert_eq!(created.len(), 1, "one new file system: {created:?}");
    assert_eq!(env.calls("CreateReplicationConfiguration"), 1, "the resume adopted the replication");
    assert_eq!(env.replications(), vec![(REPLICA_FS.to_string(), created[0].clone(), "ENABLING".to_string())]);
    use drplan::checkpoint::StateStore;
    let record = drplan::checkpoint::LocalDirStore::new(&env.state_dir).load_run(&run).unwrap();
    let captured = &record.steps["protect-dr"].captured;
    assert_eq!(captured.get("destinationFileSystemId"), Some(&json!(created[0])), "{captured:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_plan_diffs_efs_state_and_finds_its_steps_satisfied_or_blocked() {
    let env = efs_env("efs-failover", "plan-diff", Faults::default()).await;
    let plan = env.plan.to_string_lossy().into_owned();
    let step_line = |out: &str| {
        out.lines().find(|l| l.contains("efs-failover/delete-replication ")).unwrap_or_default().to_lowercase()
    };

    let planned = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(planned.code, Some(2), "changes to make: {}", planned.stderr);
    for expected in [
        "- EfsReplication fs-0123456789abcdef0 [aws]",
        "~ EfsFileSystem fs-0fedcba9876543210 [aws]",
        "-replicationOverwriteProtection: REPLICATING",
        "+replicationOverwriteProtection: ENABLED",
    ] {
        assert!(planned.stdout.contains(expected), "missing {expected:?} in\n{}", planned.stdout);
    }
    assert!(step_line(&planned.stdout).trim_start().starts_with("to do"), "{}", planned.stdout);

    // Deleted by an earlier attempt and still DELETING: nothing left for the step to do.
    env.world().lock().replications[0].status = drplan::sim::aws::ReplicationStatus::Deleting;
    let deleting = env.dr(&["plan", &plan], &[]).await;
    let line = step_line(&deleting.stdout);
    assert!(line.trim_start().starts_with("satisfied") && line.contains("already being deleted"), "{line}");

    // Gone: the delete would fail, and apply refuses before changing anything.
    env.world().lock().replications.clear();
    let gone = env.dr(&["plan", &plan], &[]).await;
    let line = step_line(&gone.stdout);
    assert!(line.trim_start().starts_with("blocked") && line.contains("replicationnotfound"), "{line}");
    assert_eq!(env.calls("DeleteReplicationConfiguration"), 0, "dr plan changes nothing");
    let requests = env.world().lock().requests.len();
    assert_eq!(requests, 6, "one DescribeReplicationConfigurations and one DescribeFileSystems per plan");
}
