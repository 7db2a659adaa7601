//! Benchmark: `dr plan` for 1,249 StatefulSets x 3 replicas (3,747 claims) on the
//! simulated cluster: the largest fleet one plan may hold (24,980 steps under the
//! 25,000-step limit of docs/language.md; 3,334 x 3 = 10,002 claims is 66,680 steps and
//! is refused, so a fleet that size is planned as several plans).
//!
//! `cargo bench --bench plan_live` (another size: `DRPLAN_PLAN_STATEFULSETS=1000`).
//! Starts the sim in this process with the generated
//! objects, runs the `dr` binary against it as a child process, and reports the child's
//! wall time, peak RSS (getrusage of children) and the API requests it made (from the
//! sim's audit log). Targets: under 1 s, under 200 MB, requests <= one list per
//! (kind, namespace).
//!
//! `dr` is started by a small launcher process (this binary again) spawned before the sim
//! is loaded: Linux counts the peak RSS of the process a child was spawned from into the
//! child's own, so `dr` spawned from this process, which holds the loaded sim (~200 MiB),
//! was reported at no less than that.

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use drplan::sim::{SimCluster, SimConfig};

const DEFAULT_STATEFULSETS: usize = 1_249;
const REPLICAS: usize = 3;

fn statefulsets() -> usize {
    std::env::var("DRPLAN_PLAN_STATEFULSETS").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_STATEFULSETS)
}

fn manifests() -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: ebs-sc}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: Immediate\nreclaimPolicy: Delete\nallowVolumeExpansion: true\n",
    );
    for i in 0..statefulsets() {
        let _ = write!(
            text,
            "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db-{i}, namespace: bench}}\nspec:\n  replicas: {REPLICAS}\n  podManagementPolicy: Parallel\n  serviceName: db-{i}\n  selector: {{matchLabels: {{app: db-{i}}}}}\n  template:\n    metadata: {{labels: {{app: db-{i}}}}}\n    spec: {{containers: [{{name: db, image: postgres:16}}]}}\n  volumeClaimTemplates:\n    - metadata: {{name: data}}\n      spec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, resources: {{requests: {{storage: 2Gi}}}}}}\n"
        );
        // Claims and volumes pre-bound, as in a dump of a running cluster.
        for r in 0..REPLICAS {
            let uid = format!("00000000-0000-4000-8000-{:012x}", i * REPLICAS + r);
            let _ = write!(
                text,
                "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data-db-{i}-{r}, namespace: bench, uid: {uid}, labels: {{app: db-{i}}}}}\nspec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, volumeName: pv-{i}-{r}, resources: {{requests: {{storage: 2Gi}}}}}}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-{i}-{r}}}\nspec: {{capacity: {{storage: 2Gi}}, accessModes: [ReadWriteOnce], storageClassName: ebs-sc, persistentVolumeReclaimPolicy: Delete, csi: {{driver: ebs.csi.aws.com, volumeHandle: vol-{i:08}{r}}}, claimRef: {{kind: PersistentVolumeClaim, namespace: bench, name: data-db-{i}-{r}, uid: {uid}}}}}\n"
            );
        }
    }
    text
}

fn plan() -> String {
    let mut text = String::from(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: bench}\nclusters: [{name: primary, namespace: bench}]\nsteps:\n",
    );
    for i in 0..statefulsets() {
        let _ = write!(
            text,
            "  - id: restore-{i}\n    restoreClaims:\n      workload: {{kind: StatefulSet, name: db-{i}}}\n      claimTemplate: data\n      snapshotClass: csi-aws-vsc\n      resize: 4Gi\n"
        );
    }
    text
}

fn max_child_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init().ru_maxrss
    }
}

/// Set in the launcher's environment.
const LAUNCHER: &str = "DRPLAN_BENCH_LAUNCHER";

/// The launcher: for each line on stdin (a command and its arguments, tab-separated) runs
/// it, and answers with its exit code, its wall time in seconds and the peak RSS of the
/// children run so far in KiB. A failed command's stderr goes to the launcher's stderr.
fn launcher() {
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut args = line.split('\t');
        let started = Instant::now();
        let out = Command::new(args.next().unwrap()).args(args).output().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        if out.status.code() != Some(2) {
            std::io::stderr().write_all(&out.stderr).unwrap();
        }
        println!("{} {seconds} {}", out.status.code().unwrap_or(-1), max_child_rss_kib());
    }
}

fn main() {
    if std::env::var_os(LAUNCHER).is_some() {
        return launcher();
    }
    // Started first, while this process is small (see the module documentation).
    let mut launcher = Command::new(std::env::current_exe().unwrap())
        .env(LAUNCHER, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_launcher = launcher.stdin.take().unwrap();
    let mut from_launcher = std::io::BufReader::new(launcher.stdout.take().unwrap()).lines();
    let dir: PathBuf = std::env::temp_dir().join(format!("drplan-plan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("objects.yaml"), manifests()).unwrap();
    std::fs::write(dir.join("plan.yaml"), plan()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = SimConfig { paused: true, pod_ready_after: std::time::Duration::ZERO, ..SimConfig::default() };
    let sim = runtime.block_on(SimCluster::start(&[dir.join("objects.yaml")], config)).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "bench").unwrap();
    // The clock is paused: the objects stay as loaded while dr plan reads them.
    std::thread::sleep(std::time::Duration::from_secs(2));
    if let Ok(seconds) = std::env::var("DRPLAN_BENCH_HOLD") {
        // For profiling: keep the sim up and let someone else run `dr plan` against it.
        println!(
            "holding the sim for {seconds}s: kubeconfig {} context bench plan {}",
            kubeconfig.display(),
            dir.join("plan.yaml").display()
        );
        std::thread::sleep(std::time::Duration::from_secs(seconds.parse().unwrap_or(120)));
    }
    let dr = env!("CARGO_BIN_EXE_dr");
    let (plan, state) = (dir.join("plan.yaml"), dir.join("state"));
    let command = [dr, "plan", plan.to_str().unwrap(), "--kubeconfig", kubeconfig.to_str().unwrap()]
        .into_iter()
        .chain(["--context", "bench", "--format", "text", "--state-dir", state.to_str().unwrap()])
        .collect::<Vec<_>>()
        .join("\t");
    let mut best = f64::MAX;
    let mut requests = Vec::new();
    let mut peak_rss_kib = 0;
    for _ in 0..3 {
        let before = sim.requests().len();
        writeln!(to_launcher, "{command}").unwrap();
        let answer = from_launcher.next().unwrap().unwrap();
        let [code, seconds, rss] = answer.split(' ').collect::<Vec<_>>()[..] else { panic!("launcher said {answer}") };
        assert_eq!(code, "2", "dr plan failed (its stderr is above)");
        best = best.min(seconds.parse().unwrap());
        peak_rss_kib = rss.parse().unwrap();
        requests = sim.requests()[before..].to_vec();
    }
    drop(to_launcher);
    launcher.wait().unwrap();
    // Lists asked for twice for one kind and namespace would be the reads per claim this
    // target rules out.
    let distinct: std::collections::BTreeSet<(String, String, String, String)> =
        requests.iter().map(|r| (r.verb.clone(), r.group.clone(), r.resource.clone(), r.namespace.clone())).collect();
    println!("dr plan: {} StatefulSets x {REPLICAS} replicas on the simulated cluster", statefulsets());
    println!("  best wall time of 3: {:.0} ms (target < 1000 ms)", best * 1e3);
    println!("  peak RSS of dr: {:.1} MiB (target < 200 MiB)", peak_rss_kib as f64 / 1024.0);
    let kinds: Vec<String> = distinct.iter().map(|(verb, _, resource, _)| format!("{verb} {resource}")).collect();
    println!(
        "  API requests: {} for {} distinct (verb, kind, namespace) (target: one list per kind and namespace): {}",
        requests.len(),
        distinct.len(),
        kinds.join(", ")
    );
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
