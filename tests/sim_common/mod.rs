//! Shared helpers for the simulated-cluster tests: starting a sim on fixtures with a paused
//! clock, and polling for conditions reached through the real client.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

use drplan::sim::{SimCluster, SimConfig, SimHandle};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sim_fixtures").join(name)
}

/// A file or directory of the upstream fixtures (see [`upstream_root`]).
pub fn upstream(path: &str) -> PathBuf {
    upstream_root().unwrap_or_else(|message| panic!("{message}")).join(path)
}

/// Where the upstream fixtures (external-snapshotter and aws-ebs-csi-driver manifests at
/// pinned commits) are: `DRPLAN_UPSTREAM_FIXTURES`, else `../shared/fixtures/upstream`
/// beside the repository, else `tests/fixtures/upstream` as `scripts/fetch-upstream-fixtures`
/// writes it. Otherwise, a message saying how to get them.
pub fn upstream_root() -> Result<PathBuf, String> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let from_env = std::env::var_os("DRPLAN_UPSTREAM_FIXTURES").map(PathBuf::from);
    if let Some(dir) = &from_env {
        return if is_fixture_root(dir) {
            Ok(dir.clone())
        } else {
            Err(format!(
                "DRPLAN_UPSTREAM_FIXTURES={} holds no upstream fixtures (expected {MARKER} in it); \
                 fetch them with `scripts/fetch-upstream-fixtures {}`",
                dir.display(),
                dir.display()
            ))
        };
    }
    let candidates = [repo.join("../shared/fixtures/upstream"), repo.join("tests/fixtures/upstream")];
    candidates.iter().find(|dir| is_fixture_root(dir)).cloned().ok_or_else(|| {
        format!(
            "the upstream fixtures (CRDs and examples of kubernetes-csi/external-snapshotter and \
             kubernetes-sigs/aws-ebs-csi-driver) are not in {} nor {}: run `scripts/fetch-upstream-fixtures` \
             (downloads them at pinned commits into tests/fixtures/upstream), or set \
             DRPLAN_UPSTREAM_FIXTURES to a directory that holds them",
            candidates[0].display(),
            candidates[1].display()
        )
    })
}

/// A file every copy of the fixtures has.
const MARKER: &str = "external-snapshotter/client/config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml";

fn is_fixture_root(dir: &std::path::Path) -> bool {
    dir.join(MARKER).is_file()
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
