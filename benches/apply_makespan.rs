//! Benchmark: makespan of the EBS example against its critical path and against runs
//! with one write at a time (waits alongside, and one wait at a time), plus checkpoint
//! overhead.
//!
//! `cargo bench --bench apply_makespan`. The simulated cluster runs its clock
//! `SPEED` times faster than real time, so snapshot readiness and pod start-up take
//! their simulated time scaled down; every figure below is in real seconds.
//! The critical path is computed from the durations the steps actually took in the
//! parallel run, so "makespan / critical path" is the executor's own overhead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan::checkpoint::{LocalDirStore, RunMode, RunRecord, StateStore, StepRecord};
use drplan::graph::StepGraph;
use drplan::sim::{SimCluster, SimConfig};
use drplan::steps::kube::KubeRunner;

const SPEED: f64 = 1.0;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn graph() -> StepGraph {
    let plan = root().join("plans/ebs-cassandra-restore.yaml");
    let (built, diags) = drplan::cli::load_and_build(&plan, Some(&root().join("plans/ebs-cassandra-restore")), false);
    assert!(!diags.has_errors());
    built.expect("graph").1
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drplan-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the example once on a fresh sim; returns the wall time and each step's duration.
/// Runs the example with at most `parallelism` changing steps and `max_waits` waits at once.
async fn run(parallelism: usize, max_waits: usize) -> (Duration, BTreeMap<String, Duration>) {
    let config = SimConfig { speed: SPEED, ..SimConfig::default() };
    let sim = SimCluster::start(&[root().join("plans/ebs-cassandra-restore")], config).await.unwrap();
    let graph = Arc::new(graph());
    let store: Arc<dyn StateStore> = Arc::new(LocalDirStore::new(scratch(&format!("p{parallelism}-w{max_waits}"))));
    let mut record = RunRecord::new(
        "ebs-cassandra-restore",
        String::new(),
        "bench".into(),
        RunMode::Apply,
        drplan::graph::saved::to_json(&graph),
    );
    for (_, step) in graph.steps() {
        record.steps.insert(step.id.clone(), StepRecord::default());
    }
    store.create_run(&record).unwrap();
    let mut clients = BTreeMap::new();
    clients.insert("primary".to_string(), sim.client().unwrap());
    let runner = Arc::new(KubeRunner {
        clients,
        accept_data_loss: false,
        default_timeout: Duration::from_secs(120),
        watches: Default::default(),
        fresh_lists: Default::default(),
    });
    let (events, _events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let options = drplan::exec::Options { parallelism, max_waits, ..Default::default() };
    let started = Instant::now();
    let outcome = drplan::exec::execute(graph, record, store, runner, options, events, cancel).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome.status, drplan::checkpoint::RunStatus::Succeeded, "{:?}", outcome.failed);
    sim.shutdown();
    (elapsed, outcome.durations)
}

/// Longest path through the graph with the measured step durations.
fn measured_critical_path(graph: &StepGraph, durations: &BTreeMap<String, Duration>) -> Duration {
    let mut finish = vec![Duration::ZERO; graph.len()];
    for n in graph.topological_order().unwrap() {
        let start = graph.predecessors(n).map(|p| finish[p.index()]).max().unwrap_or_default();
        finish[n.index()] = start + durations.get(&graph.step(n).id).copied().unwrap_or_default();
    }
    finish.into_iter().max().unwrap_or_default()
}

fn checkpoint_overhead() -> Duration {
    let graph = graph();
    let store = LocalDirStore::new(scratch("ckpt"));
    let mut record = RunRecord::new(
        "ebs-cassandra-restore",
        String::new(),
        "bench".into(),
        RunMode::Apply,
        drplan::graph::saved::to_json(&graph),
    );
    for (_, step) in graph.steps() {
        record.steps.insert(step.id.clone(), StepRecord::default());
    }
    store.create_run(&record).unwrap();
    let rounds = 200;
    let started = Instant::now();
    for i in 0..rounds {
        let id = graph.step(petgraph::graph::NodeIndex::new(i % graph.len())).id.clone();
        record.steps.get_mut(&id).unwrap().start();
        record.touch();
        store.save_run(&record).unwrap();
    }
    started.elapsed() / rounds as u32
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let steps = graph().len();
    let (parallel, durations) = runtime.block_on(run(8, 128));
    let critical = measured_critical_path(&graph(), &durations);
    let (one_writer, _) = runtime.block_on(run(1, 128));
    let (serial, _) = runtime.block_on(run(1, 1));
    let per_transition = checkpoint_overhead();
    println!("EBS example ({steps} steps), sim clock x{SPEED}:");
    println!("  makespan, parallelism 8:        {:>7.2} s", parallel.as_secs_f64());
    println!("  critical path (measured steps): {:>7.2} s", critical.as_secs_f64());
    println!(
        "  makespan / critical path:       {:>7.3} (target <= 1.05)",
        parallel.as_secs_f64() / critical.as_secs_f64()
    );
    println!(
        "  parallelism 1 (one write at a time, waits alongside): {:>7.2} s ({:.2}x the parallel run)",
        one_writer.as_secs_f64(),
        one_writer.as_secs_f64() / parallel.as_secs_f64()
    );
    println!(
        "  one write and one wait at a time (close to a runbook): {:>7.2} s ({:.1}x the parallel run)",
        serial.as_secs_f64(),
        serial.as_secs_f64() / parallel.as_secs_f64()
    );
    println!(
        "  checkpoint write per transition: {:.2} ms (journal append + fsync, {steps}-step record)",
        per_transition.as_secs_f64() * 1e3
    );
}
