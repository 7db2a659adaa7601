//! Shared helpers for the simulated-cluster tests: starting a sim on fixtures with a paused
//! clock, and polling for conditions reached through the real client.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

use drplan::sim::{SimCluster, SimConfig, SimHandle};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sim_fixtures").join(name)
}

pub fn upstream(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/upstream").join(path)
}

/// A paused sim with pods ready 5s after scheduling.
pub fn paused_config() -> SimConfig {
    SimConfig { paused: true, pod_ready_after: Duration::from_secs(5), ..SimConfig::default() }
}

pub async fn start(paths: &[PathBuf]) -> (SimHandle, kube::Client) {
    let handle = SimCluster::start(paths, paused_config()).await.expect("sim starts");
    let client = handle.client().expect("client for the sim");
    (handle, client)
}

/// A scratch directory unique to this test process and label.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drplan-sim-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
