//! The EBS cross-region example end to end: two simulated clusters (primary in us-east-1,
//! DR in us-west-2) and the simulated EC2 they share, loaded from the example plan's
//! state; `dr apply` talks to them through kube and the AWS SDK (`--aws-endpoint-url`).
//! The data of each primary claim must reach the same-name claim in DR through snapshot,
//! cross-region copy, new volume and static PV; a crash, throttling or bad input must
//! never leave a second snapshot or volume behind.

mod apply_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use apply_common::{DrResult, KillOnDrop, wait_child};
use drplan::sim::aws::{AwsHandle, AwsWorld};
use drplan::sim::config::Faults;
use drplan::sim::{SimCluster, SimConfig, SimHandle};
use serde_json::json;

const PLAN: &str = "ebs-cross-region";
const NS: &str = "cassandra";
const PRIMARY_CONTEXT: &str = "arn:aws:eks:us-east-1:123456789012:cluster/orders-prod-use1";
const DR_CONTEXT: &str = "arn:aws:eks:us-west-2:123456789012:cluster/orders-dr-usw2";
const ZONES: [&str; 3] = ["us-west-2a", "us-west-2b", "us-west-2c"];

fn plans() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans")
}

fn claim(n: usize) -> String {
    format!("cassandra-data-cassandra-{n}")
}

struct EbsEnv {
    primary: SimHandle,
    dr: SimHandle,
    aws: AwsHandle,
    kubeconfig: PathBuf,
    state_dir: PathBuf,
    plan: PathBuf,
}

async fn ebs_env(label: &str, faults: Faults) -> EbsEnv {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("drplan-ebs-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = SimConfig { speed: 100.0, ..SimConfig::default() };
    let primary = SimCluster::start(&[plans().join(PLAN).join("primary")], config.clone()).await.expect("primary sim");
    let dr = SimCluster::start(&[plans().join(PLAN).join("dr")], config).await.expect("dr sim");
    let state = drplan::sim::aws::load::read(&plans().join(PLAN).join("aws.yaml"), primary.clock().now(), faults)
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
    EbsEnv { primary, dr, aws, kubeconfig, state_dir: dir.join("state"), plan: plans().join(format!("{PLAN}.yaml")) }
}

impl EbsEnv {
    fn world(&self) -> &Arc<AwsWorld> {
        &self.aws.world
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command.args(args).arg("--kubeconfig").arg(&self.kubeconfig).args(["--aws-endpoint-url", &self.aws.url()]);
        if ["apply", "resume", "rollback"].contains(&args.first().copied().unwrap_or_default()) {
            command.args(["--output", "plain", "--step-timeout", "2m"]);
        }
        command
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("NO_COLOR", "1")
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

    async fn apply_plan(&self, plan: &std::path::Path, extra_env: &[(&str, &str)]) -> DrResult {
        self.dr(&["apply", &plan.to_string_lossy(), "--auto-approve"], extra_env).await
    }

    async fn apply(&self, extra_env: &[(&str, &str)]) -> DrResult {
        self.apply_plan(&self.plan, extra_env).await
    }

    fn read(&self, sim: &SimHandle, n: usize) -> String {
        String::from_utf8(sim.read_claim_data(NS, &claim(n)).expect("claim data")).unwrap()
    }

    /// Successful calls of an EC2 operation.
    fn calls(&self, operation: &str) -> usize {
        self.world().lock().requests.iter().filter(|r| r.operation == operation && r.status < 300).count()
    }

    /// (snapshots, volumes) the simulated EC2 holds, in every region.
    fn counts(&self) -> (usize, usize) {
        let state = self.world().lock();
        (state.ebs.snapshots.len(), state.ebs.volumes.len())
    }

    async fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..400 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

/// The end state of the example: per claim one snapshot in us-east-1, one copy in
/// us-west-2 (encrypted with the DR key), one volume in the claim's DR zone, the DR claim
/// bound to it with the primary's data, and Cassandra running in DR.
async fn assert_moved(env: &EbsEnv, written: &[String; 3]) {
    for (n, data) in written.iter().enumerate() {
        assert_eq!(&env.read(&env.dr, n), data, "claim {} carries the primary's data to DR", claim(n));
    }
    let state = env.world().lock();
    let in_region = |region: &str| state.ebs.snapshots.values().filter(|s| s.region == region).count();
    assert_eq!(in_region("us-east-1"), 3, "one snapshot per claim");
    assert_eq!(in_region("us-west-2"), 3, "one copy per claim");
    assert!(
        state
            .ebs
            .snapshots
            .values()
            .filter(|s| s.region == "us-west-2")
            .all(|s| s.encrypted && s.kms_key_id.as_deref() == Some("alias/orders-dr")),
        "copies are encrypted with the DR key"
    );
    let new: Vec<_> = state.ebs.volumes.values().filter(|v| v.region == "us-west-2").collect();
    assert_eq!(new.len(), 3, "one volume per claim");
    let mut zones: Vec<&str> = new.iter().map(|v| v.zone.as_str()).collect();
    zones.sort();
    assert_eq!(zones, ZONES);
    assert!(new.iter().all(|v| v.volume_type == "gp3" && v.size == 2 && v.iops == Some(3000)));
    assert!(new.iter().all(|v| v.tags.contains_key("drplan.dev/run") && v.tags.contains_key("drplan.dev/step")));
    drop(state);
    let ready = env.dr.with_state(|s| {
        s.get(&drplan::sim::registry::keys::statefulsets(), NS, "cassandra")
            .and_then(|sts| sts["status"]["readyReplicas"].as_i64())
    });
    assert_eq!(ready, Some(3), "Cassandra runs in DR");
}

async fn seed(env: &EbsEnv, what: &str) -> [String; 3] {
    let written = [0, 1, 2].map(|n| format!("{what}: rows of cassandra-{n}"));
    for (n, data) in written.iter().enumerate() {
        env.primary.write_claim_data(NS, &claim(n), data.as_str()).expect("write through the primary claim");
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ebs_example_carries_each_claims_data_to_the_same_claim_in_dr() {
    let env = ebs_env("e2e", Faults::default()).await;
    // A CSI-provisioned PV's volumeHandle is an EBS volume the simulated EC2 holds: a
    // write through the claim is in the volume.
    let written = seed(&env, "orders up to 10:00").await;
    {
        let state = env.world().lock();
        assert_eq!(state.ebs.volumes["vol-0274b7213ee5ccf97"].data, written[0].as_bytes());
    }
    env.apply(&[]).await.assert_success("dr apply ebs-cross-region");
    assert_moved(&env, &written).await;
    for operation in ["CreateSnapshot", "CopySnapshot", "CreateVolume"] {
        assert_eq!(env.calls(operation), 3, "{operation}: one per claim");
    }
    // The copies were made in us-west-2, from us-east-1 (the call went to us-west-2).
    let copies: Vec<_> =
        env.world().lock().requests.iter().filter(|r| r.operation == "CopySnapshot").cloned().collect();
    assert!(copies.iter().all(|r| r.region == "us-west-2"), "{copies:?}");
    // Primary volumes untouched: still there, still holding the data.
    assert_eq!(env.read(&env.primary, 1), written[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ebs_example_survives_throttling_and_server_errors() {
    let faults: Faults = serde_json::from_value(json!({
        "seed": 11,
        "rules": [
            { "resource": "ec2", "status": 429, "rate": 0.1 },
            { "resource": "ec2", "status": 503, "rate": 0.05 },
            { "resource": "ec2", "status": 500, "rate": 0.05 },
        ]
    }))
    .unwrap();
    let env = ebs_env("faults", faults).await;
    let written = seed(&env, "written while EC2 was flaky").await;
    env.apply(&[]).await.assert_success("dr apply ebs-cross-region with EC2 faults");
    assert_moved(&env, &written).await;
    let state = env.world().lock();
    let throttled = state.requests.iter().filter(|r| r.service == "ec2" && r.status == 503).count();
    let failed = state.requests.iter().filter(|r| r.service == "ec2" && r.status >= 500).count();
    assert!(throttled > 0 && failed > throttled, "throttling and server errors were injected: {failed}");
}

/// The EC2 calls of the example that create something.
const EC2_WRITES: [&str; 3] = ["CreateSnapshot", "CopySnapshot", "CreateVolume"];

/// EC2 made the snapshot (or copy, or volume) but `dr` dies before the answer arrives:
/// for each kind of write, `dr apply` is SIGKILLed while that write's answer is on its
/// way; `dr resume` must adopt what the write made (by its tags), never make a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_between_an_ec2_write_and_its_answer_resumes_without_a_second_resource() {
    for write in EC2_WRITES {
        let faults: Faults =
            serde_json::from_value(json!({ "rules": [{ "verb": write, "responseLatency": "3s" }] })).unwrap();
        let env = ebs_env(&format!("write-crash-{write}"), faults).await;
        let written = seed(&env, &format!("crash at {write}")).await;
        let mut child = KillOnDrop(Some(
            env.command(&["apply", &env.plan.to_string_lossy(), "--auto-approve"], &[]).spawn().unwrap(),
        ));
        env.eventually(&format!("the first {write}"), || env.calls(write) >= 1).await;
        drop(child.0.take().map(|mut c| {
            let _ = c.kill();
            c.wait()
        }));
        let made_before = env.counts();
        let runs: Vec<_> = std::fs::read_dir(env.state_dir.join("runs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|name| !name.starts_with('.'))
            .collect();
        assert_eq!(runs.len(), 1, "{write}: {runs:?}");
        env.world().lock().faults = Faults::default();
        let resumed = env.dr(&["resume", &runs[0]], &[]).await;
        assert_eq!(resumed.code, Some(0), "{write}: dr resume failed\n{}", resumed.stderr);
        assert_moved(&env, &written).await;
        for operation in EC2_WRITES {
            assert_eq!(env.calls(operation), 3, "{write}: {operation} once per claim (before: {made_before:?})");
        }
    }
}

/// `dr apply` SIGKILLed right after each checkpointed transition of the cloud part
/// (snapshots, copies, volumes), then resumed: one snapshot, copy and volume per claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_crashed_at_cloud_transitions_resumes_without_a_second_snapshot_or_volume() {
    // Transitions 1..=6 stop the primary; a stride covers starts, captures and finishes
    // of every EBS step kind without running the example 60 times.
    for k in [7, 8, 9, 12, 16, 20, 25, 31, 38, 45] {
        let env = ebs_env(&format!("crash-{k}"), Faults::default()).await;
        let written = seed(&env, &format!("crash at {k}")).await;
        let failpoint = format!("kill-after-transition={k}");
        let crashed = env.apply(&[("DRPLAN_FAILPOINT", &failpoint)]).await;
        if crashed.code == Some(0) {
            assert_moved(&env, &written).await;
            continue;
        }
        assert_eq!(crashed.signal, Some(9), "k={k}: expected a SIGKILL\n{}", crashed.stderr);
        let run_id = crashed.run_id().expect("run id on stderr");
        let resumed = env.dr(&["resume", &run_id], &[]).await;
        assert_eq!(resumed.code, Some(0), "k={k}: dr resume failed\n{}\n{}", resumed.stdout, resumed.stderr);
        assert_moved(&env, &written).await;
        for operation in EC2_WRITES {
            assert_eq!(env.calls(operation), 3, "k={k}: {operation} once per claim");
        }
    }
}

/// A copy of the example plan with `from` replaced by `to`.
fn variant(env: &EbsEnv, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(&env.plan).unwrap();
    assert!(text.contains(from), "the example still contains {from}");
    let path = env.state_dir.with_file_name(format!("{name}.yaml"));
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_that_does_not_exist_is_a_clear_error_naming_the_step_and_nothing_is_created() {
    let env = ebs_env("missing-volume", Faults::default()).await;
    let plan = variant(&env, "missing", "volumeId: vol-0b10fba766fcce608", "volumeId: vol-0badbadbadbadbad0");
    // Only the broken snapshot's chain: one worker keeps the others from starting first.
    let result = env.dr(&["apply", &plan.to_string_lossy(), "--auto-approve", "--parallelism", "1"], &[]).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(
        result.stderr.contains("snapshot-1")
            && result.stderr.contains("CreateSnapshot")
            && result.stderr.contains("InvalidVolume.NotFound")
            && result.stderr.contains("vol-0badbadbadbadbad0"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("ServiceError {"), "no debug dump: {}", result.stderr);
    let state = env.world().lock();
    assert!(
        !state.ebs.snapshots.values().any(|s| s.volume_id == "vol-0badbadbadbadbad0"),
        "no snapshot of a volume that does not exist"
    );
    assert_eq!(state.ebs.volumes.values().filter(|v| v.region == "us-west-2").count(), 0, "no volume was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_without_credentials_stops_the_cloud_step_with_a_clear_error() {
    let env = ebs_env("no-credentials", Faults::default()).await;
    let mut command = env.command(&["apply", &env.plan.to_string_lossy(), "--auto-approve"], &[]);
    command.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let result = wait_child(KillOnDrop(Some(command.spawn().unwrap()))).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(
        // The step's first call (looking for a snapshot it made before) names the step,
        // the call and the region, and says credentials are missing.
        result.stderr.contains("step `snapshot-0`: EC2 DescribeSnapshots in us-east-1: no AWS credentials"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("DispatchFailure {"), "no debug dump: {}", result.stderr);
    assert_eq!(env.counts(), (0, 3), "nothing created in EC2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_plan_reads_ebs_state_with_one_call_per_kind_and_region() {
    let env = ebs_env("plan", Faults::default()).await;
    let plan = env.plan.to_string_lossy().into_owned();
    let before = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(before.code, Some(2), "changes to make: {}", before.stderr);
    assert!(
        before.stderr.contains("EBS volume vol-0274b7213ee5ccf97 (us-east-1a): available, 2 GiB gp3"),
        "{}",
        before.stderr
    );
    assert!(before.stderr.contains("step `snapshot-0`: to do"), "{}", before.stderr);
    let reads = |op: &str| env.world().lock().requests.iter().filter(|r| r.operation == op).count();
    // Volumes: us-east-1 (the snapshots' sources) and us-west-2 (the new volumes);
    // snapshots: us-east-1 (snapshots) and us-west-2 (copies).
    assert_eq!(reads("DescribeVolumes"), 2, "one DescribeVolumes per region");
    assert_eq!(reads("DescribeSnapshots"), 2, "one DescribeSnapshots per region");
    assert_eq!(env.counts(), (0, 3), "dr plan changes nothing");

    env.apply(&[]).await.assert_success("dr apply");
    let after = env.dr(&["plan", &plan], &[]).await;
    assert!(after.stderr.contains("step `volume-2`: done by run"), "{}", after.stderr);
    assert!(after.stderr.contains("step `copy-0`: done by run"), "{}", after.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_the_ebs_example_deletes_the_snapshots_copies_and_volumes_it_made() {
    let env = ebs_env("rollback", Faults::default()).await;
    let written = seed(&env, "before the rollback").await;
    let applied = env.apply(&[]).await;
    applied.assert_success("dr apply");
    let run_id = applied.run_id().expect("run id");
    let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
    assert_eq!(rolled_back.code, Some(0), "{}\n{}", rolled_back.stdout, rolled_back.stderr);
    assert_eq!(env.counts(), (0, 3), "only the primary's volumes are left");
    assert_eq!(env.read(&env.primary, 2), written[2], "the primary's data is untouched");
}
