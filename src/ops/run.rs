//! Executing a run (shared by `apply`, `resume`, `rollback`): the lock, the run record,
//! the executor with its events handed to the [`Frontend`], and how the run ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::plan::Prepared;
use super::target::Targets;
use super::{Frontend, Notice};
use crate::checkpoint::{self, LockGuard, LockInfo, RunMode, RunRecord, RunStatus, StateStore, StepRecord};
use crate::graph::{self, StepGraph};
use crate::state::{self, StepState};
use crate::steps::kube::KubeRunner;

/// How runs execute and where they are kept.
#[derive(Clone)]
pub struct RunOptions {
    /// Steps that change something run at once.
    pub parallelism: usize,
    /// Waits run at once (each reads the run's shared watch of its kind and namespace).
    pub max_waits: usize,
    /// Timeout of steps that name none.
    pub step_timeout: Duration,
    /// Where runs and locks are kept.
    pub store: Arc<dyn StateStore>,
    /// The store's location, for messages ("state in .drplan").
    pub store_location: String,
}

/// How an operation ended.
#[derive(Debug)]
pub enum Ended {
    /// Stopped before changing anything (an invalid or blocked plan, a stale saved plan,
    /// approval refused); the reason was given to the frontend.
    Refused,
    /// The clusters are already as planned.
    NothingToDo,
    /// A run executed (to its end, a failure or an interruption).
    Ran(Box<RunEnd>),
}

/// A run that executed: its final record, with each step's timings.
#[derive(Debug)]
pub struct RunEnd {
    pub status: RunStatus,
    /// Steps that failed, with their errors.
    pub failed: Vec<(String, String)>,
    pub record: RunRecord,
}

impl RunEnd {
    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    pub fn is_rollback(&self) -> bool {
        matches!(self.record.mode, RunMode::Rollback { .. })
    }
}

/// A lock on runs of a plan against its targets, taken before a run record exists.
pub(crate) struct RunLock {
    pub run_id: String,
    pub key: String,
    pub guard: Box<dyn LockGuard>,
}

pub(crate) fn lock_run(store: &dyn StateStore, plan_name: &str, targets: &Targets) -> Result<RunLock, String> {
    let run_id = checkpoint::new_run_id(plan_name);
    // The key `RunRecord::lock_key` gives the run's record (checked in `run_locked`).
    let key = format!("{plan_name}@{}", targets.description());
    let guard = store.lock(&key, &LockInfo::current(&run_id, "apply")).map_err(|e| e.to_string())?;
    Ok(RunLock { run_id, key, guard })
}

/// Takes the lock, records the run and executes it.
pub async fn start_run(
    graph: StepGraph,
    record: RunRecord,
    targets: &Targets,
    options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<RunEnd, String> {
    let key = record.lock_key();
    let lock = options.store.lock(&key, &LockInfo::current(&record.run_id, "apply")).map_err(|e| e.to_string())?;
    run_locked(graph, record, (key, lock), targets, options, ui).await
}

/// Starts a run whose lock (key, guard) is held.
pub(crate) async fn run_locked(
    graph: StepGraph,
    record: RunRecord,
    (key, lock): (String, Box<dyn LockGuard>),
    targets: &Targets,
    options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<RunEnd, String> {
    if key != record.lock_key() {
        return Err(format!("internal error: run {} locked {key}, not {}", record.run_id, record.lock_key()));
    }
    options.store.create_run(&record).map_err(|e| e.to_string())?;
    ui.notice(Notice::Note(&format!("\nRun {} started; state in {}", record.run_id, options.store_location)));
    let end = execute(graph, record, targets, options, ui).await;
    drop(lock);
    end
}

/// A new run record: every step pending, except those an earlier run already applied.
pub fn new_record(
    prepared: &Prepared,
    plan_name: &str,
    accept_data_loss: bool,
    plan_bytes: &[u8],
    targets: &Targets,
) -> RunRecord {
    let mut saved = graph::saved::to_json(&prepared.graph);
    saved["clusters"] = json!(targets.contexts);
    saved["acceptDataLoss"] = json!(accept_data_loss);
    let mut record =
        RunRecord::new(plan_name, checkpoint::digest(plan_bytes), targets.description(), RunMode::Apply, saved);
    record.clusters = targets.reached.clone();
    for (id, state) in &prepared.states {
        let mut step = StepRecord::default();
        if matches!(state, StepState::Satisfied(why) if why.starts_with(state::ALREADY_AS_PLANNED)) {
            step.finish(checkpoint::StepStatus::Skipped);
        }
        record.steps.insert(id.clone(), step);
    }
    record
}

/// Executes a plan's steps against the clusters and clouds reached.
pub(crate) async fn execute(
    graph: StepGraph,
    record: RunRecord,
    targets: &Targets,
    options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<RunEnd, String> {
    let kube = KubeRunner {
        clients: targets.clients.clone(),
        accept_data_loss: record.plan["acceptDataLoss"].as_bool().unwrap_or(false),
        default_timeout: options.step_timeout,
        watches: Default::default(),
        fresh_lists: Default::default(),
    };
    let runner = Arc::new(crate::cloud::runner::PlanRunner { kube, cloud: targets.cloud.clone() });
    execute_with(graph, record, runner, options, ui).await
}

/// Runs a graph with any runner, its events shown by the frontend.
pub(crate) async fn execute_with<R: crate::exec::StepRunner>(
    graph: StepGraph,
    record: RunRecord,
    runner: Arc<R>,
    options: &RunOptions,
    ui: &dyn Frontend,
) -> Result<RunEnd, String> {
    let view = ui.show_run(&record.run_id);
    let started = Instant::now();
    let exec_options =
        crate::exec::Options { parallelism: options.parallelism, max_waits: options.max_waits, ..Default::default() };
    let store = options.store.clone();
    let outcome = crate::exec::execute(Arc::new(graph), record, store, runner, exec_options, view.events, view.cancel)
        .await
        .map_err(|e| e.message)?;
    let _ = view.shown.await;
    ui.run_ended(&outcome, started.elapsed());
    Ok(RunEnd { status: outcome.status, failed: outcome.failed, record: outcome.record })
}
