//! Benchmark: `dr apply` of a fleet restore, N StatefulSets x 3 replicas (one
//! `restoreClaims` intent per StatefulSet, restored into bigger volumes), on the
//! simulated cluster with its clock running fast (virtual time).
//!
//! `cargo bench --bench fleet` (sizes: `DRPLAN_FLEET_SIZES=10,50,200`; extra `dr apply`
//! arguments: `DRPLAN_FLEET_ARGS="--kube-qps 0"`). For each size it reports the makespan
//! against the DAG's critical path (longest chain of the step durations the run itself
//! recorded), dr's CPU time and peak RSS (getrusage of the child), API requests per step
//! (from the sim's audit log, watches counted apart), the simulated cluster's own CPU time
//! (it shares the machine with dr), and the checkpoint journal's bytes
//! and appends per transition; and it checks the end state (every claim Bound at 4Gi with
//! its data, every StatefulSet Ready).
//!
//! `dr` runs as a child of a small launcher process started before the sim is loaded, so
//! the sim's memory is not counted in dr's peak RSS (see `benches/plan_live.rs`).

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drplan::checkpoint::{LocalDirStore, StateStore};
use drplan::sim::{SimCluster, SimConfig, SimHandle};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};

const REPLICAS: usize = 3;
/// Sim seconds per real second: 5 s snapshots take 50 ms, 2 s pod start-ups 20 ms.
const SPEED: f64 = 100.0;
const LAUNCHER: &str = "DRPLAN_BENCH_LAUNCHER";

fn manifests(statefulsets: usize) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: fleet}\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: ebs-sc}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: Immediate\nreclaimPolicy: Delete\nallowVolumeExpansion: true\n---\napiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {name: csi-aws-vsc}\ndriver: ebs.csi.aws.com\ndeletionPolicy: Delete\n",
    );
    for i in 0..statefulsets {
        let _ = write!(
            text,
            "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db-{i}, namespace: fleet}}\nspec:\n  replicas: {REPLICAS}\n  podManagementPolicy: Parallel\n  serviceName: db-{i}\n  selector: {{matchLabels: {{app: db-{i}}}}}\n  template:\n    metadata: {{labels: {{app: db-{i}}}}}\n    spec: {{containers: [{{name: db, image: postgres:16}}]}}\n  volumeClaimTemplates:\n    - metadata: {{name: data}}\n      spec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, resources: {{requests: {{storage: 2Gi}}}}}}\n"
        );
        for r in 0..REPLICAS {
            let uid = format!("00000000-0000-4000-8000-{:012x}", i * REPLICAS + r);
            let _ = write!(
                text,
                "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data-db-{i}-{r}, namespace: fleet, uid: {uid}, labels: {{app: db-{i}}}}}\nspec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, volumeName: pv-{i}-{r}, resources: {{requests: {{storage: 2Gi}}}}}}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-{i}-{r}}}\nspec: {{capacity: {{storage: 2Gi}}, accessModes: [ReadWriteOnce], storageClassName: ebs-sc, persistentVolumeReclaimPolicy: Delete, csi: {{driver: ebs.csi.aws.com, volumeHandle: vol-{i:08}{r}}}, claimRef: {{kind: PersistentVolumeClaim, namespace: fleet, name: data-db-{i}-{r}, uid: {uid}}}}}\n"
            );
        }
    }
    text
}

fn plan(statefulsets: usize) -> String {
    let mut text = String::from(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: fleet}\nclusters: [{name: primary, namespace: fleet}]\nsteps:\n",
    );
    for i in 0..statefulsets {
        let _ = write!(
            text,
            "  - id: restore-{i}\n    restoreClaims:\n      workload: {{kind: StatefulSet, name: db-{i}}}\n      claimTemplate: data\n      snapshotClass: csi-aws-vsc\n      resize: 4Gi\n"
        );
    }
    text
}

/// CPU seconds and peak RSS (KiB) of the children waited for so far.
fn children_usage() -> (f64, i64) {
    usage_of(libc::RUSAGE_CHILDREN)
}

/// CPU seconds and peak RSS (KiB) of this process: the simulated cluster.
fn own_usage() -> (f64, i64) {
    usage_of(libc::RUSAGE_SELF)
}

fn usage_of(who: libc::c_int) -> (f64, i64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime) + seconds(usage.ru_stime), usage.ru_maxrss)
}

/// Runs each tab-separated command line from stdin; answers "code wall cpu rss" with the
/// children's CPU seconds used by that command and their peak RSS so far.
fn launcher() {
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut args = line.split('\t');
        let (cpu_before, _) = children_usage();
        let started = Instant::now();
        let out = Command::new(args.next().unwrap()).args(args).output().unwrap();
        let wall = started.elapsed().as_secs_f64();
        let (cpu_after, rss) = children_usage();
        if out.status.code() != Some(0) {
            std::io::stderr().write_all(&out.stderr).unwrap();
        }
        println!("{} {wall} {} {rss}", out.status.code().unwrap_or(-1), cpu_after - cpu_before);
    }
}

fn timestamp(text: &Option<String>) -> Option<jiff::Timestamp> {
    text.as_deref()?.parse().ok()
}

/// Longest chain of recorded step durations through the run's own graph.
fn critical_path(record: &drplan::checkpoint::RunRecord) -> Duration {
    let graph = drplan::graph::saved::from_json(&record.plan).expect("the run's graph");
    let mut finish = vec![Duration::ZERO; graph.len()];
    for n in graph.topological_order().expect("acyclic") {
        let step = record.steps.get(&graph.step(n).id);
        let took = step
            .and_then(|s| Some(timestamp(&s.finished_at)?.duration_since(timestamp(&s.started_at)?)))
            .map(|d| d.unsigned_abs())
            .unwrap_or_default();
        let start = graph.predecessors(n).map(|p| finish[p.index()]).max().unwrap_or_default();
        finish[n.index()] = start + took;
    }
    finish.into_iter().max().unwrap_or_default()
}

/// The span from the first step's start to the last one's end, as recorded.
fn recorded_makespan(record: &drplan::checkpoint::RunRecord) -> Duration {
    let starts = record.steps.values().filter_map(|s| timestamp(&s.started_at));
    let ends = record.steps.values().filter_map(|s| timestamp(&s.finished_at));
    match (starts.min(), ends.max()) {
        (Some(first), Some(last)) => last.duration_since(first).unsigned_abs(),
        _ => Duration::ZERO,
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Lines in the run's journal files (one appended and fsynced per transition).
/// Saves the run made: the sequence number of the last journal line (each save appends
/// one line and fsyncs it; a compaction keeps the number), read from the run's files.
fn saves(run_dir: &Path) -> u64 {
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap_or_default()).unwrap_or_default();
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap_or_default();
    let last_line = journal.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let of = |v: Option<&serde_json::Value>, field: &str| v.and_then(|v| v[field].as_u64()).unwrap_or(0);
    of(Some(&base), "journalSeq").max(of(last_line.as_ref(), "seq"))
}

fn journal_lines(dir: &Path) -> usize {
    let mut lines = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            lines += journal_lines(&path);
        } else if path.to_string_lossy().contains("journal") {
            lines += std::fs::read(&path).map(|b| b.iter().filter(|c| **c == b'\n').count()).unwrap_or(0);
        }
    }
    lines
}

async fn wait_ready(sim: &SimHandle, statefulsets: usize) {
    let api: Api<StatefulSet> = Api::namespaced(sim.client().unwrap(), "fleet");
    for _ in 0..600 {
        let list = api.list(&ListParams::default()).await.unwrap();
        let ready =
            list.items.iter().filter(|s| s.status.as_ref().and_then(|s| s.ready_replicas) == Some(REPLICAS as i32));
        if ready.count() == statefulsets {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the fleet did not become Ready before the run");
}

/// Every claim Bound at 4Gi with the data written before, every StatefulSet Ready.
async fn verify_end_state(sim: &SimHandle, statefulsets: usize) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(sim.client().unwrap(), "fleet");
    let list = claims.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), statefulsets * REPLICAS);
    for claim in &list.items {
        let status = claim.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Bound"));
        let size = status.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.clone());
        assert_eq!(size.as_deref(), Some("4Gi"), "{:?}", claim.metadata.name);
        let name = claim.metadata.name.clone().unwrap();
        assert_eq!(sim.read_claim_data("fleet", &name).unwrap(), name.as_bytes(), "data of {name}");
    }
    wait_ready(sim, statefulsets).await;
}

struct Figures {
    steps: usize,
    wall: f64,
    makespan: Duration,
    critical: Duration,
    cpu: f64,
    /// CPU seconds the simulated cluster (this process) used while dr ran.
    sim_cpu: f64,
    rss_kib: i64,
    requests: usize,
    watches: usize,
    writes: usize,
    journal_bytes: u64,
    transitions: usize,
    /// Checkpoint saves (fsynced journal appends) made.
    saves: u64,
    journal_lines: usize,
    /// Requests by verb and resource, most first.
    breakdown: Vec<(String, usize)>,
}

/// Checkpoint saves the run made: a start and an end per attempt, one per captured value,
/// and the final status (a capture re-made by a retry is counted once: a lower bound).
fn transitions(record: &drplan::checkpoint::RunRecord) -> usize {
    record.steps.values().map(|s| 2 * s.attempts.max(1) as usize + s.captured.len()).sum::<usize>() + 1
}

/// Requests by `verb resource[/subresource]`, most first.
fn breakdown(served: &[drplan::sim::RequestRecord]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for r in served {
        let resource =
            if r.subresource.is_empty() { r.resource.clone() } else { format!("{}/{}", r.resource, r.subresource) };
        *counts.entry(format!("{} {resource}", r.verb)).or_default() += 1;
    }
    let mut sorted: Vec<(String, usize)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted
}

fn run_size(
    statefulsets: usize,
    runtime: &tokio::runtime::Runtime,
    to_launcher: &mut impl std::io::Write,
    from_launcher: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Figures {
    let dir: PathBuf = std::env::temp_dir().join(format!("drplan-fleet-bench-{}-{statefulsets}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("objects.yaml"), manifests(statefulsets)).unwrap();
    std::fs::write(dir.join("plan.yaml"), plan(statefulsets)).unwrap();
    let config = SimConfig { speed: SPEED, ..SimConfig::default() };
    let sim = runtime.block_on(SimCluster::start(&[dir.join("objects.yaml")], config)).unwrap();
    runtime.block_on(wait_ready(&sim, statefulsets));
    for i in 0..statefulsets {
        for r in 0..REPLICAS {
            let name = format!("data-db-{i}-{r}");
            sim.write_claim_data("fleet", &name, name.clone()).unwrap();
        }
    }
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "bench").unwrap();
    let (plan, state) = (dir.join("plan.yaml"), dir.join("state"));
    let extra = std::env::var("DRPLAN_FLEET_ARGS").unwrap_or_default();
    // `DRPLAN_FLEET_WRAP="heaptrack -o /tmp/dr"` runs dr under a profiler (its figures then
    // include the profiler's).
    let wrap = std::env::var("DRPLAN_FLEET_WRAP").unwrap_or_default();
    let command = wrap
        .split_whitespace()
        .chain([env!("CARGO_BIN_EXE_dr"), "apply", plan.to_str().unwrap(), "--auto-approve"])
        .chain(["--kubeconfig", kubeconfig.to_str().unwrap(), "--context", "bench"])
        .chain(["--output", "plain", "--step-timeout", "5m", "--state-dir", state.to_str().unwrap()])
        .chain(extra.split_whitespace())
        .collect::<Vec<_>>()
        .join("\t");
    let before = sim.requests().len();
    let (sim_cpu_before, _) = own_usage();
    writeln!(to_launcher, "{command}").unwrap();
    let answer = from_launcher.next().unwrap().unwrap();
    let sim_cpu = own_usage().0 - sim_cpu_before;
    let [code, wall, cpu, rss] = answer.split(' ').collect::<Vec<_>>()[..] else { panic!("launcher said {answer}") };
    assert_eq!(code, "0", "dr apply failed (its stderr is above)");
    let served: Vec<_> = sim.requests()[before..].to_vec();
    runtime.block_on(verify_end_state(&sim, statefulsets));
    let store = LocalDirStore::new(&state);
    let run_id = store.list_runs().unwrap().into_iter().next().expect("one run").run_id;
    let record = store.load_run(&run_id).unwrap();
    let figures = Figures {
        steps: record.steps.len(),
        wall: wall.parse().unwrap(),
        makespan: recorded_makespan(&record),
        critical: critical_path(&record),
        cpu: cpu.parse().unwrap(),
        sim_cpu,
        rss_kib: rss.parse().unwrap(),
        requests: served.len(),
        watches: served.iter().filter(|r| r.verb == "watch").count(),
        writes: served.iter().filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch")).count(),
        journal_bytes: dir_bytes(store.run_path(&run_id).unwrap().parent().unwrap()),
        transitions: transitions(&record),
        saves: saves(store.run_path(&run_id).unwrap().parent().unwrap()),
        journal_lines: journal_lines(&state),
        breakdown: breakdown(&served),
    };
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    figures
}

fn main() {
    if std::env::var_os(LAUNCHER).is_some() {
        return launcher();
    }
    let mut launcher = Command::new(std::env::current_exe().unwrap())
        .env(LAUNCHER, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_launcher = launcher.stdin.take().unwrap();
    let mut from_launcher = std::io::BufReader::new(launcher.stdout.take().unwrap()).lines();
    let sizes = std::env::var("DRPLAN_FLEET_SIZES").unwrap_or_else(|_| "10,50,200".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for size in sizes.split(',').filter_map(|s| s.trim().parse::<usize>().ok()) {
        let f = run_size(size, &runtime, &mut to_launcher, &mut from_launcher);
        println!(
            "{size} StatefulSets x {REPLICAS}: {} steps; dr apply {:.2} s wall; makespan {:.2} s vs critical path {:.2} s ({:.2}x)",
            f.steps,
            f.wall,
            f.makespan.as_secs_f64(),
            f.critical.as_secs_f64(),
            f.makespan.as_secs_f64() / f.critical.as_secs_f64().max(1e-9)
        );
        println!(
            "  dr CPU {:.2} s ({:.2} s per 100 steps), peak RSS {:.1} MiB; the simulated cluster's CPU {:.2} s",
            f.cpu,
            f.cpu * 100.0 / f.steps as f64,
            f.rss_kib as f64 / 1024.0,
            f.sim_cpu
        );
        println!(
            "  API requests {} ({:.2} per step; {} writes, {} watches)",
            f.requests,
            f.requests as f64 / f.steps as f64,
            f.writes,
            f.watches
        );
        let listed: Vec<String> = f.breakdown.iter().map(|(what, n)| format!("{what} {n}")).collect();
        println!("    by verb and resource: {}", listed.join(", "));
        println!(
            "  checkpoint: >= {} transitions in {} saves (one fsynced journal append each; transitions that happen together share one); run directory {} KiB at the end ({} journal lines since the last compaction)",
            f.transitions,
            f.saves,
            f.journal_bytes / 1024,
            f.journal_lines
        );
    }
    drop(to_launcher);
    launcher.wait().unwrap();
}
