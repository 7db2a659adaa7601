//! Benchmark: `dr plan` for a plan with 100 EBS volumes and 10 EFS file systems, against
//! the simulated AWS (and a simulated cluster beside it).
//!
//! `cargo bench --bench plan_cloud` (sizes: `DRPLAN_CLOUD_VOLUMES`, `DRPLAN_CLOUD_FILE_SYSTEMS`).
//! The plan snapshots every volume (`ebsSnapshot`, spread over two regions) and deletes
//! the replication of every file system (`efsDeleteReplication`). The sims run in this
//! process; the `dr` binary runs as a child process against them through the real SDK,
//! and the AWS calls it made are read from the simulated AWS's request log. Target: cloud
//! reads batched, one Describe call per kind and region, not one per object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use drplan::sim::{SimCluster, SimConfig};

const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn volume_id(i: usize) -> String {
    format!("vol-{i:017x}")
}

fn source_fs(i: usize) -> String {
    format!("fs-{:017x}", 0x1000 + i)
}

fn replica_fs(i: usize) -> String {
    format!("fs-{:017x}", 0x2000 + i)
}

fn aws_yaml(volumes: usize, file_systems: usize) -> String {
    let mut text = String::from("volumes:\n");
    for i in 0..volumes {
        let region = REGIONS[i % 2];
        let _ = writeln!(
            text,
            "  - {{volumeId: {}, availabilityZone: {region}a, size: 8, volumeType: gp3, data: \"volume {i}\"}}",
            volume_id(i)
        );
    }
    text.push_str("fileSystems:\n");
    for i in 0..file_systems {
        let _ = writeln!(text, "  - {{fileSystemId: {}, region: us-east-1, data: \"fs {i}\"}}", source_fs(i));
        let _ = writeln!(text, "  - {{fileSystemId: {}, region: us-west-2}}", replica_fs(i));
    }
    text.push_str("replications:\n");
    for i in 0..file_systems {
        let _ = writeln!(text, "  - {{source: {}, destination: {}, status: ENABLED}}", source_fs(i), replica_fs(i));
    }
    text
}

fn plan(volumes: usize, file_systems: usize) -> String {
    let mut text = String::from(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: cloud-bench}\nclusters: [{name: primary, namespace: bench, region: us-east-1}]\nsteps:\n",
    );
    for i in 0..volumes {
        let _ = write!(
            text,
            "  - id: snapshot-{i}\n    ebsSnapshot: {{region: {}, volumeId: {}}}\n",
            REGIONS[i % 2],
            volume_id(i)
        );
    }
    for i in 0..file_systems {
        let _ = write!(
            text,
            "  - id: failover-{i}\n    efsDeleteReplication: {{region: us-east-1, sourceFileSystemId: {}}}\n",
            source_fs(i)
        );
    }
    text
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (volumes, file_systems) = (size("DRPLAN_CLOUD_VOLUMES", 100), size("DRPLAN_CLOUD_FILE_SYSTEMS", 10));
    let dir = std::env::temp_dir().join(format!("drplan-bench-plan-cloud-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster_dir = dir.join("cluster");
    write(&cluster_dir.join("namespace.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n");
    write(&dir.join("aws.yaml"), &aws_yaml(volumes, file_systems));
    let plan_path = dir.join("plan.yaml");
    write(&plan_path, &plan(volumes, file_systems));

    let sim =
        SimCluster::start(std::slice::from_ref(&cluster_dir), SimConfig::default()).await.expect("the sim starts");
    let aws = drplan::sim::aws::start_beside(&dir, &[&sim], sim.clock(), Default::default())
        .await
        .expect("the simulated AWS starts")
        .expect("aws.yaml is there");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();

    let mut runs = Vec::new();
    for _ in 0..3 {
        aws.world.lock().requests.clear();
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_dr"))
            .arg("plan")
            .arg(&plan_path)
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "--context", "sim"])
            .args(["--aws-endpoint-url", &aws.url(), "--format", "json"])
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("dr runs");
        let wall = started.elapsed();
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "dr plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let document: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan output");
        let mut calls: BTreeMap<(String, String), usize> = BTreeMap::new();
        for request in aws.world.lock().requests.iter() {
            *calls.entry((request.operation.clone(), request.region.clone())).or_default() += 1;
        }
        runs.push((wall, calls, document["toDo"].as_u64().unwrap_or(0)));
    }
    runs.sort_by_key(|(wall, _, _)| *wall);
    let (wall, calls, to_do) = &runs[0];
    println!("dr plan: {volumes} EBS volumes (2 regions), {file_systems} EFS file systems with replications");
    println!("  best of 3: {:.0} ms wall, {to_do} steps to do", wall.as_secs_f64() * 1000.0);
    let total: usize = calls.values().sum();
    println!("  AWS calls: {total}");
    for ((operation, region), count) in calls {
        println!("    {operation} in {region}: {count}");
    }
    let per_object = calls.values().any(|&n| n > 1);
    println!(
        "  target (one Describe per kind and region): {}",
        if per_object { "MISSED: a call was repeated" } else { "met" }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
