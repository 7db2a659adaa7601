//! Benchmark: validate + expand a generated plan of 1,000 StatefulSets x 3 replicas.
//!
//! Run with `cargo bench --bench validate_expand`. Reports wall time of loading the
//! plan, loading the cluster manifests and building (expanding + checking) the graph,
//! and the peak resident memory of those phases (VmHWM, reset before measuring).
//! Targets: under 1 s and under 200 MB.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

const STATEFULSETS: usize = 1_000;
const REPLICAS: usize = 3;

fn plan_text() -> String {
    let mut text = String::from(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: bench}\nclusters: [{name: primary, namespace: bench}]\nsteps:\n",
    );
    for i in 0..STATEFULSETS {
        let _ = write!(
            text,
            "  - id: restore-{i}\n    restoreClaims:\n      workload: {{kind: StatefulSet, name: db-{i}}}\n      claimTemplate: data\n      snapshotClass: csi-aws-vsc\n      resize: 4Gi\n"
        );
    }
    text
}

fn manifests_text() -> String {
    let mut text = String::new();
    for i in 0..STATEFULSETS {
        let _ = write!(
            text,
            "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db-{i}, namespace: bench}}\nspec:\n  replicas: {REPLICAS}\n  serviceName: db-{i}\n  selector: {{matchLabels: {{app: db-{i}}}}}\n  template:\n    metadata: {{labels: {{app: db-{i}}}}}\n    spec: {{containers: [{{name: db, image: postgres:16}}]}}\n  volumeClaimTemplates:\n    - metadata: {{name: data}}\n      spec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, resources: {{requests: {{storage: 2Gi}}}}}}\n"
        );
        for r in 0..REPLICAS {
            let _ = write!(
                text,
                "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data-db-{i}-{r}, namespace: bench}}\nspec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, volumeName: pv-{i}-{r}, resources: {{requests: {{storage: 2Gi}}}}}}\nstatus: {{phase: Bound, capacity: {{storage: 2Gi}}}}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-{i}-{r}}}\nspec:\n  capacity: {{storage: 2Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Delete\n  claimRef: {{namespace: bench, name: data-db-{i}-{r}}}\n  csi: {{driver: ebs.csi.aws.com, volumeHandle: vol-{i:08}{r}}}\n"
            );
        }
    }
    text
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let dir = std::env::temp_dir().join(format!("drplan-bench-{}", std::process::id()));
    let cluster = dir.join("cluster");
    std::fs::create_dir_all(&cluster).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, plan_text()).unwrap();
    std::fs::write(cluster.join("objects.yaml"), manifests_text()).unwrap();
    let plan_bytes = std::fs::metadata(&plan).unwrap().len();
    let manifest_bytes = std::fs::metadata(cluster.join("objects.yaml")).unwrap().len();

    let mut best = f64::MAX;
    let mut peak = 0;
    let mut steps = 0;
    for _ in 0..5 {
        reset_peak_rss();
        let start = Instant::now();
        let (built, diags) = drplan::cli::load_and_build(Path::new(&plan), Some(&cluster), false);
        let elapsed = start.elapsed().as_secs_f64();
        assert!(!diags.has_errors(), "generated plan must be valid: {:?}", diags.iter().next());
        steps = built.map(|(_, g)| g.len()).unwrap_or(0);
        best = best.min(elapsed);
        peak = peak.max(peak_rss_kib().unwrap_or(0));
    }
    println!("validate+expand: {STATEFULSETS} StatefulSets x {REPLICAS} replicas");
    println!("  plan {} KiB, manifests {} KiB, {steps} steps", plan_bytes / 1024, manifest_bytes / 1024);
    println!("  best wall time of 5: {:.1} ms (target < 1000 ms)", best * 1e3);
    println!("  peak RSS: {:.1} MiB (target < 200 MiB)", peak as f64 / 1024.0);
    let _ = std::fs::remove_dir_all(&dir);
}
