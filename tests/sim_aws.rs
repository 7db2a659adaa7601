//! The simulated EFS API through the real AWS SDK: every response must pass the SDK's own
//! deserialisers, states must move as the API reference says (ENABLING → ENABLED,
//! DELETING → gone, protection DISABLED → REPLICATING → ENABLED) and errors must carry
//! EFS's codes.

use std::time::Duration;

use aws_sdk_efs::error::ProvideErrorMetadata;
use aws_sdk_efs::types::{DeletionMode, DestinationToCreate, ReplicationOverwriteProtection, ReplicationStatus};
use drplan::cloud::{CloudAccess, CloudOptions};
use drplan::sim::SimClock;
use drplan::sim::aws::{AwsHandle, AwsWorld};
use drplan::sim::config::Faults;

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
const A: &str = "fs-0123456789abcdef0";
const B: &str = "fs-0fedcba9876543210";

/// The efs-failback example's state (no replication, both protected) on a paused clock.
async fn start() -> (AwsHandle, SimClock, CloudAccess) {
    let clock = SimClock::new(jiff::Timestamp::from_second(1_800_000_000).unwrap(), true, 1.0);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/efs-failback/aws.yaml");
    let state = drplan::sim::aws::load::read(&path, clock.now(), Faults::default()).unwrap();
    let aws = AwsHandle::start(AwsWorld::new(state, clock.clone()), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cloud = CloudAccess::new(CloudOptions { endpoint_url: Some(aws.url()), dummy_credentials: true });
    (aws, clock, cloud)
}

async fn protection(client: &aws_sdk_efs::Client, fs: &str) -> ReplicationOverwriteProtection {
    let out = client.describe_file_systems().file_system_id(fs).send().await.unwrap();
    out.file_systems()[0].file_system_protection().unwrap().replication_overwrite_protection().unwrap().clone()
}

async fn status(client: &aws_sdk_efs::Client) -> Option<(ReplicationStatus, Option<i64>)> {
    let out = client.describe_replication_configurations().send().await.unwrap();
    out.replications().first().map(|r| {
        let d = &r.destinations()[0];
        (d.status().clone(), d.last_replicated_timestamp().map(|t| t.secs()))
    })
}

#[tokio::test]
async fn a_replication_lives_through_the_states_of_the_api_reference() {
    let (_aws, clock, cloud) = start().await;
    let (west, east) = (cloud.efs(WEST).await, cloud.efs(EAST).await);

    let listed = east.describe_file_systems().send().await.unwrap();
    assert_eq!(listed.file_systems().len(), 1, "a region lists its own file systems");
    assert_eq!(protection(&east, A).await, ReplicationOverwriteProtection::Enabled);

    // Into a protected file system: refused with EFS's conflict.
    let destination = DestinationToCreate::builder().region(EAST).file_system_id(A).build();
    let refused =
        west.create_replication_configuration().source_file_system_id(B).destinations(destination.clone()).send().await;
    assert_eq!(refused.unwrap_err().code(), Some("ConflictException"));

    let updated = east
        .update_file_system_protection()
        .file_system_id(A)
        .replication_overwrite_protection(ReplicationOverwriteProtection::Disabled)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.replication_overwrite_protection(), Some(&ReplicationOverwriteProtection::Disabled));

    let created =
        west.create_replication_configuration().source_file_system_id(B).destinations(destination.clone()).send().await;
    let created = created.unwrap();
    assert_eq!(created.source_file_system_id(), B);
    assert_eq!(created.source_file_system_region(), WEST);
    assert_eq!(created.destinations()[0].status(), &ReplicationStatus::Enabling);
    assert_eq!(protection(&east, A).await, ReplicationOverwriteProtection::Replicating);
    // A second one is refused: one replication per file system.
    let again = west.create_replication_configuration().source_file_system_id(B).destinations(destination).send().await;
    assert_eq!(again.unwrap_err().code(), Some("ReplicationAlreadyExists"));

    // Visible from both regions; ENABLED after the first copy, then syncing every lag.
    assert_eq!(status(&east).await.unwrap().0, ReplicationStatus::Enabling);
    clock.advance(Duration::from_secs(60));
    let (enabled, first) = status(&west).await.unwrap();
    assert_eq!(enabled, ReplicationStatus::Enabled);
    clock.advance(Duration::from_secs(31));
    let (_, second) = status(&west).await.unwrap();
    assert!(second > first, "LastReplicatedTimestamp moves: {first:?} → {second:?}");

    // Described by destination id too; unknown ids get EFS's codes.
    let by_destination = east.describe_replication_configurations().file_system_id(A).send().await.unwrap();
    assert_eq!(by_destination.replications()[0].source_file_system_id(), B);
    let missing = east.describe_file_systems().file_system_id("fs-00000000000000000").send().await;
    assert_eq!(missing.unwrap_err().code(), Some("FileSystemNotFound"));

    // Deleting takes a while; the destination is protected again once it is gone.
    west.delete_replication_configuration()
        .source_file_system_id(B)
        .deletion_mode(DeletionMode::AllConfigurations)
        .send()
        .await
        .unwrap();
    assert_eq!(status(&east).await.unwrap().0, ReplicationStatus::Deleting);
    let twice = west.delete_replication_configuration().source_file_system_id(B).send().await;
    assert_eq!(twice.unwrap_err().code(), Some("ReplicationNotFound"));
    clock.advance(Duration::from_secs(180));
    assert_eq!(status(&east).await, None);
    assert_eq!(protection(&east, A).await, ReplicationOverwriteProtection::Enabled);
    let none = east.describe_replication_configurations().file_system_id(A).send().await;
    assert_eq!(none.unwrap_err().code(), Some("ReplicationNotFound"));
}

#[tokio::test]
async fn injected_throttling_reaches_the_sdk_as_a_throttling_error() {
    let (aws, _clock, cloud) = start().await;
    let rules = serde_json::json!({ "rules": [{ "verb": "DescribeFileSystems", "status": 429 }] });
    aws.world.lock().faults = serde_json::from_value(rules).unwrap();
    let error = cloud.efs(EAST).await.describe_file_systems().send().await.unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"));
    let answered = aws.world.lock().requests.iter().filter(|r| r.status == 429).count();
    assert!(answered >= 2, "the SDK retried throttling itself ({answered} answers)");
}

/// Kills the child on drop, so a failing assertion leaves no server behind.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dr_sim_serve_with_aws_mounts_a_replica_read_only() {
    let dir = std::env::temp_dir().join(format!("drplan-sim-aws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (kubeconfig, endpoint) = (dir.join("kubeconfig"), dir.join("aws-endpoint"));
    let plans = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/efs-failover");
    let dr = env!("CARGO_BIN_EXE_dr");
    let _serve = Serve(
        std::process::Command::new(dr)
            .args(["sim", "serve", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .arg("--aws")
            .arg(plans.join("aws.yaml"))
            .arg("--aws-endpoint-out")
            .arg(&endpoint)
            .arg(plans.join("dr"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if endpoint.exists() && kubeconfig.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&endpoint).unwrap().starts_with("http://127.0.0.1:"));
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&kubeconfig).unwrap()).unwrap();
    let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap().to_string();
    let data = |verb: &str, value: Option<&str>| {
        std::process::Command::new(dr)
            .args(["sim", "data", verb, "--server", &server, "-n", "reports", "reports-data"])
            .args(value)
            .output()
            .unwrap()
    };
    let put = data("put", Some("written in DR"));
    assert!(!put.status.success());
    assert!(String::from_utf8_lossy(&put.stderr).contains("Read-only file system"), "{put:?}");
    let get = data("get", None);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "reports written in us-east-1");
}
