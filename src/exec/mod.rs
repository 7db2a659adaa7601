//! The executor: runs a step graph with bounded parallelism and checkpoints every
//! step transition, so a crash, a Ctrl-C or a failing step never leaves the operator
//! guessing.
//!
//! It knows nothing about Kubernetes: a [`StepRunner`] does the work of one step. The
//! executor decides what may start (every dependency succeeded), how many run at once,
//! when to retry (transient errors, with backoff) and when to stop (a real failure stops
//! new steps and lets running ones finish), and records each transition in the run's
//! [`RunRecord`] through the [`StateStore`] before moving on.

pub mod failpoint;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::checkpoint::{RunRecord, RunStatus, StateStore, StepRecord, StepStatus};
use crate::graph::{Step, StepGraph};
use crate::steps::FALLBACK_NEEDED;

/// Why a step did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying: conflicts on update, throttling, server errors, cut watches.
    Transient,
    /// The step cannot succeed as things are; the run stops.
    Failed,
    /// Something exists that the step did not create and will not overwrite.
    Conflict,
    /// A safety interlock refused the step against live state.
    Unsafe,
    /// This build cannot execute the step kind.
    Unsupported,
}

#[derive(Clone, Debug)]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
}

impl StepError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StepError {
        StepError { kind, message: message.into() }
    }
    pub fn failed(message: impl Into<String>) -> StepError {
        StepError::new(ErrorKind::Failed, message)
    }
    pub fn transient(message: impl Into<String>) -> StepError {
        StepError::new(ErrorKind::Transient, message)
    }
    pub fn conflict(message: impl Into<String>) -> StepError {
        StepError::new(ErrorKind::Conflict, message)
    }
    pub fn unsafe_(message: impl Into<String>) -> StepError {
        StepError::new(ErrorKind::Unsafe, message)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Does the work of one step. Implementations must be idempotent: a step may run again
/// after a crash, and must then adopt what it already did.
pub trait StepRunner: Send + Sync + 'static {
    fn run(&self, step: &Step, ctx: &StepContext) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// The run record and where it is saved, shared by the executor and running steps.
struct Checkpoint {
    record: RunRecord,
    store: Arc<dyn StateStore>,
    transitions: u64,
    failpoint: failpoint::Failpoint,
    /// Steps changed since the last save; `None` until the first save of this process (the
    /// record handed in may differ from what is stored in any step).
    changed: Option<BTreeSet<String>>,
}

impl Checkpoint {
    fn new(record: RunRecord, store: Arc<dyn StateStore>) -> Checkpoint {
        let failpoint = failpoint::Failpoint::from_env();
        Checkpoint { record, store, transitions: 0, failpoint, changed: None }
    }

    /// Saves the record; every transition goes through here.
    fn save(&mut self) -> Result<(), StepError> {
        self.record.touch();
        let saved = match &self.changed {
            Some(changed) => self.store.save_run_changed(&self.record, changed),
            None => self.store.save_run(&self.record),
        };
        saved.map_err(|e| StepError::failed(format!("cannot write checkpoint: {e}")))?;
        self.changed = Some(BTreeSet::new());
        self.transitions += 1;
        self.failpoint.after_transition(self.transitions);
        Ok(())
    }

    fn step_mut(&mut self, id: &str) -> &mut StepRecord {
        if let Some(changed) = &mut self.changed
            && !changed.contains(id)
        {
            changed.insert(id.to_string());
        }
        self.record.steps.entry(id.to_string()).or_default()
    }
}

/// What a running step can see and record.
#[derive(Clone)]
pub struct StepContext {
    checkpoint: Arc<Mutex<Checkpoint>>,
    pub graph: Arc<StepGraph>,
    pub index: NodeIndex,
    pub run_id: String,
    pub step_id: String,
}

impl StepContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        self.checkpoint.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A value this step captured earlier (in this attempt or before a crash).
    pub fn captured(&self, key: &str) -> Option<Value> {
        self.captured_in(&self.step_id, key)
    }

    /// A value another step captured.
    pub fn captured_in(&self, step_id: &str, key: &str) -> Option<Value> {
        self.lock().record.steps.get(step_id)?.captured.get(key).cloned()
    }

    /// Records a value and saves the checkpoint before returning, so what the step is
    /// about to change is known even if the process dies right after changing it.
    pub fn capture(&self, key: &str, value: Value) -> Result<(), StepError> {
        self.capture_all([(key, value)])
    }

    /// Records several values with one save: all of them are known after a crash, or none.
    pub fn capture_all<'k>(&self, values: impl IntoIterator<Item = (&'k str, Value)>) -> Result<(), StepError> {
        let mut checkpoint = self.lock();
        let captured = &mut checkpoint.step_mut(&self.step_id).captured;
        for (key, value) in values {
            captured.insert(key.to_string(), value);
        }
        checkpoint.save()
    }

    /// Ids of the steps this one (transitively) depends on.
    pub fn ancestors(&self) -> Vec<NodeIndex> {
        self.graph.ancestors(self.index)
    }
}

/// Progress reported while a run goes on, for the live view, logs and JSON output.
#[derive(Clone, Debug)]
pub enum Event {
    Started { id: String, description: String },
    Retrying { id: String, attempt: u32, error: String, delay: Duration },
    Finished { id: String, status: StepStatus, elapsed: Duration, error: Option<String> },
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Most steps that change something (every step but `wait`) running at once.
    pub parallelism: usize,
    /// Most `wait` steps running at once. Waits only watch, so they do not take one of
    /// the `parallelism` slots (four waits must not hold back a fleet's writes), but each
    /// holds a watch open on the API server, so they are bounded too.
    pub max_waits: usize,
    /// Attempts per step for transient errors.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, capped at 30 s.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { parallelism: 4, max_waits: 128, max_attempts: 8, backoff: Duration::from_millis(200) }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: RunStatus,
    /// Steps that failed, with their errors.
    pub failed: Vec<(String, String)>,
    /// Wall time of each step that ran in this invocation.
    pub durations: BTreeMap<String, Duration>,
    pub record: RunRecord,
}

fn is_done(status: StepStatus) -> bool {
    matches!(status, StepStatus::Succeeded | StepStatus::Skipped)
}

/// Runs every step not yet done, in dependency order, at most `parallelism` at a time.
///
/// `cancel` turning true stops new steps from starting (Ctrl-C); running steps finish.
pub async fn execute<R: StepRunner>(
    graph: Arc<StepGraph>,
    record: RunRecord,
    store: Arc<dyn StateStore>,
    runner: Arc<R>,
    options: Options,
    events: mpsc::UnboundedSender<Event>,
    mut cancel: watch::Receiver<bool>,
) -> Result<Outcome, StepError> {
    let run_id = record.run_id.clone();
    let checkpoint = Arc::new(Mutex::new(Checkpoint::new(record, store)));
    let mut tasks: JoinSet<Ended> = JoinSet::new();
    let mut stopping = false;
    let mut failed = Vec::new();
    let mut durations = BTreeMap::new();
    let order = graph.topological_order().ok_or_else(|| StepError::failed("the plan has a dependency cycle"))?;
    let mut frontier = {
        let checkpoint = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
        let done =
            |index: NodeIndex| checkpoint.record.steps.get(&graph.step(index).id).is_some_and(|s| is_done(s.status));
        Frontier::new(&graph, order, done, |index| is_wait(graph.step(index)))
    };
    let mut running = Running::default();
    loop {
        // Every step that may start now is recorded as started with one save (a group
        // commit: one fsync for all), and only then run.
        let mut starting = Vec::new();
        while !stopping && !*cancel.borrow() {
            let Some(index) = frontier.next(running.can_start(&options)) else { break };
            let step = graph.step(index);
            if let Some(of) = fallback_not_needed(&checkpoint, step) {
                let status = skip_step(&checkpoint, &step.id, &of)?;
                let _ =
                    events.send(Event::Finished { id: step.id.clone(), status, elapsed: Duration::ZERO, error: None });
                frontier.done(&graph, index);
                continue;
            }
            running.started(frontier.is_wait(index));
            starting.push(index);
        }
        if !starting.is_empty() {
            start_steps(&checkpoint, &graph, &starting)?;
        }
        for index in starting {
            let step = graph.step(index);
            let ctx = StepContext {
                checkpoint: checkpoint.clone(),
                graph: graph.clone(),
                index,
                run_id: run_id.clone(),
                step_id: step.id.clone(),
            };
            let _ = events.send(Event::Started { id: step.id.clone(), description: step.describe() });
            let runner = runner.clone();
            let events = events.clone();
            let step = step.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let result = run_with_retries(&*runner, &step, &ctx, options, &events).await;
                (index, result, started.elapsed())
            });
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                // Steps that ended meanwhile are recorded with the same save, before any
                // step that depends on them starts.
                let mut ended = vec![joined];
                while let Some(more) = tasks.try_join_next() {
                    ended.push(more);
                }
                let ended = ended
                    .into_iter()
                    .map(|j| j.map_err(|e| StepError::failed(format!("step task panicked: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                let outcomes = finish_steps(&checkpoint, &graph, &ended)?;
                for ((index, result, elapsed), (status, error)) in ended.into_iter().zip(outcomes) {
                    running.finished(frontier.is_wait(index));
                    let id = graph.step(index).id.clone();
                    durations.insert(id.clone(), elapsed);
                    match result {
                        Ok(()) => frontier.done(&graph, index),
                        Err(e) => {
                            failed.push((id.clone(), e.message.clone()));
                            stopping = true;
                        }
                    }
                    let _ = events.send(Event::Finished { id, status, elapsed, error });
                }
            }
            _ = cancel.changed() => {}
        }
    }
    let mut checkpoint = Arc::try_unwrap(checkpoint)
        .map_err(|_| StepError::failed("steps still hold the checkpoint"))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let all_done =
        graph.steps().all(|(_, s)| is_done(checkpoint.record.steps.get(&s.id).map(|r| r.status).unwrap_or_default()));
    let status = if !failed.is_empty() {
        RunStatus::Failed
    } else if all_done {
        RunStatus::Succeeded
    } else {
        RunStatus::Interrupted
    };
    checkpoint.record.status = status;
    checkpoint.save()?;
    Ok(Outcome { status, failed, durations, record: checkpoint.record })
}

/// A step that only watches for a condition: it takes no `parallelism` slot.
fn is_wait(step: &Step) -> bool {
    matches!(step.action(), Some(crate::steps::Action::Wait(_)))
}

/// How many steps of each class are running, against their bounds.
#[derive(Default)]
struct Running {
    work: usize,
    waits: usize,
}

/// Which classes of step may start now.
#[derive(Clone, Copy)]
struct Slots {
    work: bool,
    wait: bool,
}

impl Running {
    fn can_start(&self, options: &Options) -> Slots {
        Slots { work: self.work < options.parallelism.max(1), wait: self.waits < options.max_waits.max(1) }
    }

    fn started(&mut self, wait: bool) {
        if wait { self.waits += 1 } else { self.work += 1 }
    }

    fn finished(&mut self, wait: bool) {
        if wait { self.waits -= 1 } else { self.work -= 1 }
    }
}

/// The steps that may start: not done, every dependency done; earliest in topological
/// order first (ties keep the written order), waits and other steps in separate queues
/// because they are bounded separately. Kept up to date as steps finish, so finding the
/// next step never rescans the graph.
struct Frontier {
    order: Vec<NodeIndex>,
    /// Position of each node (by index) in `order`.
    position: Vec<usize>,
    /// Dependencies of each node (by index) not done yet.
    waiting_on: Vec<usize>,
    /// Whether each node (by index) is a wait.
    wait: Vec<bool>,
    /// Positions in `order` of the steps ready to start, other than waits.
    ready_work: BTreeSet<usize>,
    /// Positions in `order` of the waits ready to start.
    ready_waits: BTreeSet<usize>,
    /// Whether each node (by index) is done; a done step never becomes ready again
    /// (steps an earlier run applied can wait on steps still to run).
    finished: Vec<bool>,
}

impl Frontier {
    fn new(
        graph: &StepGraph,
        order: Vec<NodeIndex>,
        done: impl Fn(NodeIndex) -> bool,
        is_wait: impl Fn(NodeIndex) -> bool,
    ) -> Frontier {
        let mut position = vec![0; order.len()];
        for (at, index) in order.iter().enumerate() {
            position[index.index()] = at;
        }
        let finished: Vec<bool> = (0..order.len()).map(|i| done(NodeIndex::new(i))).collect();
        let waiting_on: Vec<usize> = (0..order.len())
            .map(|i| graph.predecessors(NodeIndex::new(i)).filter(|p| !finished[p.index()]).count())
            .collect();
        let wait = (0..order.len()).map(|i| is_wait(NodeIndex::new(i))).collect();
        let mut frontier = Frontier {
            order,
            position,
            waiting_on,
            wait,
            ready_work: BTreeSet::new(),
            ready_waits: BTreeSet::new(),
            finished,
        };
        for at in 0..frontier.order.len() {
            let index = frontier.order[at];
            if !frontier.finished[index.index()] && frontier.waiting_on[index.index()] == 0 {
                frontier.make_ready(index);
            }
        }
        frontier
    }

    fn is_wait(&self, index: NodeIndex) -> bool {
        self.wait[index.index()]
    }

    fn make_ready(&mut self, index: NodeIndex) {
        let at = self.position[index.index()];
        if self.wait[index.index()] {
            self.ready_waits.insert(at)
        } else {
            self.ready_work.insert(at)
        };
    }

    /// The earliest ready step of a class that has a free slot.
    fn next(&mut self, slots: Slots) -> Option<NodeIndex> {
        let work = self.ready_work.first().copied().filter(|_| slots.work);
        let wait = self.ready_waits.first().copied().filter(|_| slots.wait);
        let at = match (work, wait) {
            (Some(work), Some(wait)) if wait < work => self.ready_waits.pop_first(),
            (Some(_), _) => self.ready_work.pop_first(),
            (None, Some(_)) => self.ready_waits.pop_first(),
            (None, None) => None,
        }?;
        Some(self.order[at])
    }

    /// Records that `index` is done: the steps waiting only on it become ready.
    fn done(&mut self, graph: &StepGraph, index: NodeIndex) {
        self.finished[index.index()] = true;
        for successor in graph.successors(index) {
            let waiting = &mut self.waiting_on[successor.index()];
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 && !self.finished[successor.index()] {
                self.make_ready(successor);
            }
        }
    }
}

/// For a fallback step whose step did not need its fallback: that step's id.
fn fallback_not_needed(checkpoint: &Arc<Mutex<Checkpoint>>, step: &Step) -> Option<String> {
    let of = step.fallback_for.as_ref()?;
    let checkpoint = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
    let needed = checkpoint.record.steps.get(of).and_then(|s| s.captured.get(FALLBACK_NEEDED));
    (needed != Some(&Value::Bool(true))).then(|| of.clone())
}

fn skip_step(checkpoint: &Arc<Mutex<Checkpoint>>, id: &str, fallback_of: &str) -> Result<StepStatus, StepError> {
    let mut checkpoint = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
    let record = checkpoint.step_mut(id);
    record.finish(StepStatus::Skipped);
    record.captured.insert("skippedBecause".into(), format!("`{fallback_of}` did not need its fallback").into());
    checkpoint.save()?;
    Ok(StepStatus::Skipped)
}

/// Records the steps as started, with one save.
fn start_steps(checkpoint: &Arc<Mutex<Checkpoint>>, graph: &StepGraph, steps: &[NodeIndex]) -> Result<(), StepError> {
    let mut checkpoint = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
    for &index in steps {
        checkpoint.step_mut(&graph.step(index).id).start();
    }
    checkpoint.save()
}

/// A step task's end: the step, its result and how long it ran.
type Ended = (NodeIndex, Result<(), StepError>, Duration);

/// Records how the steps ended, with one save; their statuses and errors as recorded.
fn finish_steps(
    checkpoint: &Arc<Mutex<Checkpoint>>,
    graph: &StepGraph,
    ended: &[Ended],
) -> Result<Vec<(StepStatus, Option<String>)>, StepError> {
    let mut checkpoint = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
    let mut outcomes = Vec::with_capacity(ended.len());
    for (index, result, _) in ended {
        let record = checkpoint.step_mut(&graph.step(*index).id);
        match result {
            Ok(()) => record.finish(StepStatus::Succeeded),
            Err(e) => record.fail(e.message.clone()),
        }
        outcomes.push((record.status, record.error.clone()));
    }
    checkpoint.save()?;
    Ok(outcomes)
}

async fn run_with_retries<R: StepRunner>(
    runner: &R,
    step: &Step,
    ctx: &StepContext,
    options: Options,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), StepError> {
    let mut attempt = 1;
    loop {
        if let Some(injected) = ctx.lock().failpoint.fail_step(&step.id) {
            return Err(injected);
        }
        match runner.run(step, ctx).await {
            Err(e) if e.kind == ErrorKind::Transient && attempt < options.max_attempts => {
                let delay = backoff(options.backoff, attempt);
                let _ = events.send(Event::Retrying { id: step.id.clone(), attempt, error: e.message, delay });
                tokio::time::sleep(delay).await;
                attempt += 1;
                ctx.lock().step_mut(&step.id).attempts += 1;
            }
            other => return other,
        }
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(8);
    (base * factor).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, StepKind};
    use crate::steps::{Action, WorkloadKind, WorkloadParams, WorkloadRef};

    /// Steps `0..n` with the given edges.
    fn graph(n: usize, edges: &[(usize, usize)]) -> StepGraph {
        let mut graph = StepGraph::new("test");
        for i in 0..n {
            let workload = WorkloadRef { kind: WorkloadKind::StatefulSet, name: format!("w{i}") };
            let action = Action::ScaleBack(WorkloadParams { cluster: None, namespace: None, workload });
            graph.add_step(Step {
                id: format!("s{i}"),
                kind: StepKind::Action(action),
                entry: format!("s{i}"),
                origin: Default::default(),
                cluster: String::new(),
                namespace: String::new(),
                fallback_for: None,
            });
        }
        for &(a, b) in edges {
            graph.graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), Edge { written_at: None });
        }
        graph
    }

    const ANY: Slots = Slots { work: true, wait: true };

    /// A store that counts the saves it is asked for.
    struct CountingStore {
        inner: crate::checkpoint::LocalDirStore,
        saves: std::sync::atomic::AtomicUsize,
    }

    impl StateStore for CountingStore {
        fn lock(
            &self,
            key: &str,
            info: &crate::checkpoint::LockInfo,
        ) -> Result<Box<dyn crate::checkpoint::LockGuard>, crate::checkpoint::StoreError> {
            self.inner.lock(key, info)
        }
        fn create_run(&self, run: &RunRecord) -> Result<(), crate::checkpoint::StoreError> {
            self.inner.create_run(run)
        }
        fn save_run(&self, run: &RunRecord) -> Result<(), crate::checkpoint::StoreError> {
            self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.save_run(run)
        }
        fn save_run_changed(
            &self,
            run: &RunRecord,
            changed: &BTreeSet<String>,
        ) -> Result<(), crate::checkpoint::StoreError> {
            self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.save_run_changed(run, changed)
        }
        fn load_run(&self, run_id: &str) -> Result<RunRecord, crate::checkpoint::StoreError> {
            self.inner.load_run(run_id)
        }
        fn list_runs(&self) -> Result<Vec<crate::checkpoint::RunSummary>, crate::checkpoint::StoreError> {
            self.inner.list_runs()
        }
    }

    /// Succeeds at once.
    struct Instant;

    impl StepRunner for Instant {
        async fn run(&self, _: &Step, _: &StepContext) -> Result<(), StepError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn steps_that_start_or_end_together_share_one_save() {
        let root = std::env::temp_dir().join(format!("drplan-exec-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store =
            Arc::new(CountingStore { inner: crate::checkpoint::LocalDirStore::new(&root), saves: Default::default() });
        let g = graph(10, &[]);
        let mut record =
            RunRecord::new("test", String::new(), String::new(), crate::checkpoint::RunMode::Apply, Value::Null);
        for (_, step) in g.steps() {
            record.steps.insert(step.id.clone(), StepRecord::default());
        }
        store.create_run(&record).unwrap();
        let (events, _events) = mpsc::unbounded_channel();
        let (_cancel, cancel) = watch::channel(false);
        let options = Options { parallelism: 10, ..Options::default() };
        let outcome =
            execute(Arc::new(g), record, store.clone(), Arc::new(Instant), options, events, cancel).await.unwrap();
        assert_eq!(outcome.status, RunStatus::Succeeded);
        let saves = store.saves.load(std::sync::atomic::Ordering::SeqCst);
        // One save per transition would be 10 starts + 10 ends + the run's end.
        assert!(saves <= 12, "{saves} saves for 10 steps started and ended together");
        let stored = store.load_run(&outcome.record.run_id).unwrap();
        assert!(stored.steps.values().all(|s| s.status == StepStatus::Succeeded), "every end is recorded");
        let _ = std::fs::remove_dir_all(&root);
    }

    fn drain(frontier: &mut Frontier, graph: &StepGraph) -> Vec<usize> {
        let mut ran = Vec::new();
        while let Some(n) = frontier.next(ANY) {
            ran.push(n.index());
            frontier.done(graph, n);
        }
        ran
    }

    #[test]
    fn a_diamond_runs_each_step_once_after_its_dependencies() {
        let g = graph(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]);
        let mut frontier = Frontier::new(&g, g.topological_order().unwrap(), |_| false, |_| false);
        assert_eq!(frontier.next(ANY).map(|n| n.index()), Some(0));
        assert_eq!(frontier.next(ANY), None, "1 and 2 wait for 0");
        frontier.done(&g, NodeIndex::new(0));
        assert_eq!(frontier.next(ANY).map(|n| n.index()), Some(1));
        assert_eq!(frontier.next(ANY).map(|n| n.index()), Some(2));
        assert_eq!(frontier.next(ANY), None, "3 waits for 1 and 2");
        frontier.done(&g, NodeIndex::new(1));
        assert_eq!(frontier.next(ANY), None, "3 still waits for 2");
        frontier.done(&g, NodeIndex::new(2));
        assert_eq!(drain(&mut frontier, &g), [3]);
    }

    #[test]
    fn steps_already_done_are_never_ready_again() {
        // 2 was applied by an earlier run although it waits on 1, which was not.
        let g = graph(3, &[(0, 1), (1, 2)]);
        let mut frontier = Frontier::new(&g, g.topological_order().unwrap(), |n| n.index() == 2, |_| false);
        assert_eq!(drain(&mut frontier, &g), [0, 1]);
        // A resumed run: 0 done, 1 failed before; 1 is ready at once.
        let mut resumed = Frontier::new(&g, g.topological_order().unwrap(), |n| n.index() == 0, |_| false);
        assert_eq!(drain(&mut resumed, &g), [1, 2]);
    }

    #[test]
    fn waits_start_when_every_work_slot_is_taken_and_work_when_waits_are_full() {
        // 0 fans out to work steps 1, 2 and waits 3, 4.
        let g = graph(5, &[(0, 1), (0, 2), (0, 3), (0, 4)]);
        let mut frontier = Frontier::new(&g, g.topological_order().unwrap(), |_| false, |n| n.index() >= 3);
        assert_eq!(frontier.next(ANY).map(|n| n.index()), Some(0));
        frontier.done(&g, NodeIndex::new(0));
        let work_full = Slots { work: false, wait: true };
        assert_eq!(frontier.next(work_full).map(|n| n.index()), Some(3), "a wait starts although work is full");
        assert_eq!(frontier.next(work_full).map(|n| n.index()), Some(4));
        assert_eq!(frontier.next(work_full), None, "work steps wait for a work slot");
        let waits_full = Slots { work: true, wait: false };
        assert_eq!(frontier.next(waits_full).map(|n| n.index()), Some(1));
        assert_eq!(frontier.next(ANY).map(|n| n.index()), Some(2));
    }

    #[test]
    fn running_counts_bound_each_class_separately() {
        let options = Options { parallelism: 1, max_waits: 2, ..Options::default() };
        let mut running = Running::default();
        running.started(false);
        running.started(true);
        let slots = running.can_start(&options);
        assert!(!slots.work && slots.wait);
        running.started(true);
        assert!(!running.can_start(&options).wait);
        running.finished(false);
        assert!(running.can_start(&options).work);
    }
}
