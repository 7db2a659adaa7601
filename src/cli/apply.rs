//! `dr apply`, `dr resume`, `dr runs`: running plans against live (or simulated) clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::progress::{self, Output};
use crate::checkpoint::{self, LocalDirStore, LockGuard, LockInfo, RunMode, RunRecord, StateStore, StepRecord};
use crate::cluster::{ClusterInventories, live};
use crate::graph::{self, BuildOptions, StepGraph};
use crate::lang::{self, LoadedPlan};
use crate::sim::{SimCluster, SimConfig, SimHandle};
use crate::state::{self, Change, LiveState, StepState, report::PlanReport};
use crate::steps::kube::KubeRunner;

/// How to reach the plan's clusters.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Context to use for a one-cluster plan (default: the cluster's `context:`).
    #[arg(long)]
    pub context: Option<String>,
    /// Run against the simulated cluster loaded from the manifests beside the plan
    /// (`plans/NAME/` for `plans/NAME.yaml`; one subdirectory per cluster).
    #[arg(long)]
    pub sim: bool,
    /// Simulated seconds per real second with --sim.
    #[arg(long, default_value_t = 10.0)]
    pub sim_speed: f64,
    /// Send AWS requests to this endpoint (a test endpoint such as `dr sim serve --aws`).
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Steps run at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Where runs and locks are kept.
    #[arg(long, value_name = "DIR", env = "DRPLAN_STATE_DIR", default_value = ".drplan")]
    pub state_dir: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub output: Output,
    /// Timeout of steps that name none.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub step_timeout: Duration,
}

/// Connections to a plan's clusters; simulated clusters live as long as this does.
pub struct Targets {
    pub clients: BTreeMap<String, Client>,
    pub contexts: BTreeMap<String, String>,
    /// API server URL of each cluster, for messages.
    pub servers: BTreeMap<String, String>,
    /// How each cluster was reached, recorded in the run.
    pub reached: BTreeMap<String, crate::cluster::ClusterTarget>,
    pub sims: Vec<SimHandle>,
    /// AWS clients for cloud steps; with --sim, the simulated AWS they talk to.
    pub cloud: Arc<crate::cloud::CloudAccess>,
    pub aws_sim: Option<crate::sim::aws::AwsHandle>,
}

impl Targets {
    /// No cluster reached yet; AWS through the standard chain (or `--aws-endpoint-url`).
    fn none(args: &TargetArgs) -> Targets {
        let cloud =
            crate::cloud::CloudOptions { endpoint_url: args.aws_endpoint_url.clone(), dummy_credentials: false };
        Targets {
            clients: BTreeMap::new(),
            contexts: BTreeMap::new(),
            servers: BTreeMap::new(),
            reached: BTreeMap::new(),
            sims: Vec::new(),
            cloud: Arc::new(crate::cloud::CloudAccess::new(cloud)),
            aws_sim: None,
        }
    }

    /// " (server URL, context NAME)" for messages about a cluster.
    pub fn where_is(&self, cluster: &str) -> String {
        match (self.servers.get(cluster), self.contexts.get(cluster)) {
            (Some(server), Some(context)) => format!(" (server {server}, context {context})"),
            (Some(server), None) => format!(" (server {server})"),
            _ => String::new(),
        }
    }

    /// What the run acts on, for its lock key.
    pub fn description(&self) -> String {
        if !self.sims.is_empty() {
            return format!("sim:{}", self.sims.iter().map(|s| s.url()).collect::<Vec<_>>().join(","));
        }
        self.contexts.values().cloned().collect::<Vec<_>>().join(",")
    }
}

/// Connects to every cluster of the plan (or starts simulated ones).
pub async fn connect(
    plan_path: &Path,
    clusters: &BTreeMap<String, Option<String>>,
    args: &TargetArgs,
) -> Result<Targets, String> {
    let mut targets = Targets::none(args);
    if args.sim {
        let dir = plan_path.with_extension("");
        for name in clusters.keys() {
            let sub = dir.join(name);
            let manifests = if sub.is_dir() { sub } else { dir.clone() };
            let config = SimConfig { speed: args.sim_speed, ..SimConfig::default() };
            let sim = SimCluster::start(std::slice::from_ref(&manifests), config)
                .await
                .map_err(|e| format!("starting the simulated cluster from {}: {e}", manifests.display()))?;
            targets.clients.insert(name.clone(), sim.client().map_err(|e| e.to_string())?);
            targets.contexts.insert(name.clone(), format!("sim:{}", sim.url()));
            targets.servers.insert(name.clone(), sim.url());
            let reached = crate::cluster::ClusterTarget { server: Some(sim.url()), ..Default::default() };
            targets.reached.insert(name.clone(), reached);
            targets.sims.push(sim);
        }
        let clock = crate::sim::SimClock::new(jiff::Timestamp::now(), false, args.sim_speed);
        let sims: Vec<&SimHandle> = targets.sims.iter().collect();
        targets.aws_sim = crate::sim::aws::start_beside(&dir, &sims, clock, Default::default()).await?;
        if let Some(aws) = &targets.aws_sim {
            let options = crate::cloud::CloudOptions { endpoint_url: Some(aws.url()), dummy_credentials: true };
            targets.cloud = Arc::new(crate::cloud::CloudAccess::new(options));
        }
        return Ok(targets);
    }
    let single = clusters.len() == 1;
    for (name, context) in clusters {
        let from_flag = single && args.context.is_some();
        let context = if single { args.context.clone().or(context.clone()) } else { context.clone() };
        let origin = if from_flag {
            "--context".to_string()
        } else {
            format!("the plan's `clusters[].context` of cluster `{name}`")
        };
        let (client, server) = live::connect_named(args.kubeconfig.as_deref(), context.as_deref(), &origin).await?;
        let reached = crate::cluster::resolve_target(args.kubeconfig.as_deref(), context.as_deref())?;
        targets.reached.insert(name.clone(), reached);
        targets.contexts.insert(name.clone(), context.unwrap_or_else(|| "(current)".into()));
        targets.servers.insert(name.clone(), server);
        targets.clients.insert(name.clone(), client);
    }
    Ok(targets)
}

fn plan_clusters(loaded: &LoadedPlan) -> BTreeMap<String, Option<String>> {
    loaded.plan.clusters.iter().map(|c| (c.name.value.clone(), c.context.clone())).collect()
}

/// A plan expanded against live state, with what it will change.
pub struct Prepared {
    pub graph: StepGraph,
    pub live: LiveState,
    pub states: Vec<(String, StepState)>,
    pub changes: Vec<Change>,
}

impl Prepared {
    pub fn report(&self) -> PlanReport<'_> {
        PlanReport { graph: &self.graph, states: &self.states, changes: &self.changes, requests: self.live.requests }
    }
}

/// Reads live state (one list per kind and namespace the plan touches), expands the
/// plan with it and predicts the changes; entries whose end state live state already
/// shows are satisfied.
pub async fn prepare(loaded: &LoadedPlan, targets: &Targets) -> Result<Prepared, String> {
    let (outline, _) = graph::build(loaded, BuildOptions { facts: None, intents_only: true });
    let outline = outline.ok_or("the plan could not be built")?;
    let live = fetch_live(targets, &state::needs_of(&outline)).await?;
    let mut facts = ClusterInventories::default();
    for cluster in targets.clients.keys() {
        facts.by_cluster.insert(cluster.clone(), live.inventory(cluster));
    }
    let (graph, diags) = graph::build(loaded, BuildOptions { facts: Some(&facts), intents_only: false });
    // Only the expansion reads the typed inventories: freed now, their memory serves the
    // prediction (tens of MB for a thousand StatefulSets) instead of adding to the peak.
    drop(facts);
    if diags.has_errors() {
        super::print_diagnostics(&diags.sorted());
        return Err("the plan is not valid against the live cluster state".into());
    }
    let graph = graph.ok_or("the plan could not be built")?;
    let (states, changes) = state::predict(&graph, &live);
    Ok(Prepared { graph, live, states, changes })
}

/// Reads the live state a plan is checked against. The reads are plain lists, so a
/// failure is most likely transient (throttling, an API server restart): try a few times,
/// but not for what retrying cannot heal (TLS, credentials, permissions, missing kinds),
/// and only once more for a refused connection.
async fn fetch_live(targets: &Targets, needs: &BTreeSet<state::ListNeed>) -> Result<LiveState, String> {
    let mut delay = Duration::from_millis(250);
    let (mut attempt, mut refused) = (0, 0);
    loop {
        attempt += 1;
        let error = match state::fetch(&targets.clients, needs).await {
            Ok(live) => return Ok(live),
            Err(error) => error,
        };
        refused += u32::from(error.kind == live::FailureKind::Refused);
        let heals = error.kind == live::FailureKind::Transient || refused == 1;
        let message = format!("{}{}", error.message, targets.where_is(&error.cluster));
        if !heals || attempt == FETCH_ATTEMPTS {
            return Err(message);
        }
        eprintln!("warning: reading the live state failed, retrying in {delay:?}: {message}");
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

const FETCH_ATTEMPTS: u32 = 5;

/// Asks for "yes" on a terminal; refuses to prompt otherwise.
pub(super) fn confirm(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("standard input is not a terminal, so drplan cannot ask for approval; review the plan and pass --auto-approve".into());
    }
    eprint!("{question} Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer.trim() == "yes")
}

pub(super) fn store(args: &RunArgs) -> Arc<dyn StateStore> {
    Arc::new(LocalDirStore::new(&args.state_dir))
}

/// `dr apply PLAN` or `dr apply SAVED_PLAN`.
pub async fn apply(
    plan_path: &Path,
    target_args: &TargetArgs,
    run_args: &RunArgs,
    auto_approve: bool,
) -> Result<i32, String> {
    if let Some(saved) = super::plan::read_saved(plan_path) {
        return apply_saved(saved?, target_args, run_args).await;
    }
    let (loaded, diags) = lang::load_plan(plan_path);
    super::print_diagnostics(&diags);
    let Some(loaded) = loaded.filter(|_| !diags.has_errors()) else { return Ok(1) };
    let targets = connect(plan_path, &plan_clusters(&loaded), target_args).await?;
    let store = store(run_args);
    // Locked before reading live state: a concurrent run of the plan would be seen half
    // done, and the plan expanded against it (the loser must fail naming the holder).
    let lock = lock_run(store.as_ref(), loaded.plan.name(), &targets)?;
    let prepared = prepare(&loaded, &targets).await?;
    let report = prepared.report();
    eprint!("{}", report.text());
    if let Some(code) = refuse_or_skip(&report) {
        return Ok(code);
    }
    if !auto_approve && !confirm("\nDo you want to perform these actions?")? {
        eprintln!("Apply cancelled.");
        return Ok(1);
    }
    let bytes = std::fs::read(plan_path).map_err(|e| format!("reading {}: {e}", plan_path.display()))?;
    let mut record = new_record(&prepared, loaded.plan.name(), loaded.plan.accept_data_loss, &bytes, &targets);
    record.run_id = lock.run_id;
    run_locked(prepared.graph, record, store, (lock.key, lock.guard), &targets, run_args).await
}

/// A lock on runs of a plan against its targets, taken before a run record exists.
struct RunLock {
    run_id: String,
    key: String,
    guard: Box<dyn LockGuard>,
}

fn lock_run(store: &dyn StateStore, plan_name: &str, targets: &Targets) -> Result<RunLock, String> {
    let run_id = checkpoint::new_run_id(plan_name);
    // The key `RunRecord::lock_key` gives the run's record (checked in `run_locked`).
    let key = format!("{plan_name}@{}", targets.description());
    let guard = store.lock(&key, &LockInfo::current(&run_id, "apply")).map_err(|e| e.to_string())?;
    Ok(RunLock { run_id, key, guard })
}

/// Applies a saved plan: it was reviewed already, so no prompt, but it is refused when
/// any object it read has changed since.
async fn apply_saved(
    saved: super::plan::SavedPlan,
    target_args: &TargetArgs,
    run_args: &RunArgs,
) -> Result<i32, String> {
    let targets = connect(&saved.plan_path, &saved.clusters, target_args).await?;
    let graph = graph::saved::from_json(&saved.graph)?;
    let live = fetch_live(&targets, &state::needs_of(&graph)).await?;
    let stale = super::plan::stale_objects(&saved, &live);
    if !stale.is_empty() {
        eprintln!("error: the saved plan is stale; these objects changed since it was made:");
        for change in &stale {
            eprintln!("  - {change}");
        }
        eprintln!("Nothing was changed. Run `dr plan` again, review it, and apply the new plan.");
        return Ok(1);
    }
    let store = store(run_args);
    let (states, changes) = state::predict(&graph, &live);
    let prepared = Prepared { graph, live, states, changes };
    if let Some(code) = refuse_or_skip(&prepared.report()) {
        return Ok(code);
    }
    let mut record = new_record(&prepared, &saved.plan_name, saved.accept_data_loss, &[], &targets);
    record.plan_digest = saved.plan_digest.clone();
    start_run(prepared.graph, record, store, &targets, run_args).await
}

/// Takes the lock, records the run and executes it.
pub async fn start_run(
    graph: StepGraph,
    record: RunRecord,
    store: Arc<dyn StateStore>,
    targets: &Targets,
    run_args: &RunArgs,
) -> Result<i32, String> {
    let key = record.lock_key();
    let lock = store.lock(&key, &LockInfo::current(&record.run_id, "apply")).map_err(|e| e.to_string())?;
    run_locked(graph, record, store, (key, lock), targets, run_args).await
}

/// Starts a run whose lock (key, guard) is held.
async fn run_locked(
    graph: StepGraph,
    record: RunRecord,
    store: Arc<dyn StateStore>,
    (key, lock): (String, Box<dyn LockGuard>),
    targets: &Targets,
    run_args: &RunArgs,
) -> Result<i32, String> {
    if key != record.lock_key() {
        return Err(format!("internal error: run {} locked {key}, not {}", record.run_id, record.lock_key()));
    }
    store.create_run(&record).map_err(|e| e.to_string())?;
    eprintln!("\nRun {} started; state in {}", record.run_id, run_args.state_dir.display());
    let code = execute(graph, record, store, targets, run_args).await;
    drop(lock);
    code
}

/// Blocked steps stop an apply before it starts; a plan with nothing to do ends it.
fn refuse_or_skip(report: &PlanReport<'_>) -> Option<i32> {
    let blocked = report.blocked();
    if !blocked.is_empty() {
        for (id, why) in blocked {
            eprintln!("error: step {id} is blocked: {why}");
        }
        eprintln!("Nothing was changed.");
        return Some(1);
    }
    (report.to_do() == 0).then(|| {
        eprintln!("Nothing to apply.");
        0
    })
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

/// `dr resume RUN`: continues a run with the steps it was approved with.
pub async fn resume(run_id: &str, target_args: &TargetArgs, run_args: &RunArgs) -> Result<i32, String> {
    let store = store(run_args);
    let record = store.load_run(run_id).map_err(|e| e.to_string())?;
    if record.mode != RunMode::Apply {
        return Err(format!("run {run_id} is a rollback; resume it with `dr rollback {run_id}`"));
    }
    let lock = store.lock(&record.lock_key(), &LockInfo::current(run_id, "resume")).map_err(|e| e.to_string())?;
    if let Some(previous) = lock.took_over_from() {
        eprintln!(
            "warning: took over the lock of process {} on {} (it died while running {})",
            previous.pid, previous.host, previous.operation
        );
    }
    let graph = graph::saved::from_json(&record.plan)?;
    let targets = reconnect(&record, target_args).await?;
    eprintln!("Resuming run {run_id}");
    let code = execute(graph, record, store, &targets, run_args).await;
    drop(lock);
    code
}

async fn execute(
    graph: StepGraph,
    record: RunRecord,
    store: Arc<dyn StateStore>,
    targets: &Targets,
    run_args: &RunArgs,
) -> Result<i32, String> {
    let kube = KubeRunner {
        clients: targets.clients.clone(),
        accept_data_loss: record.plan["acceptDataLoss"].as_bool().unwrap_or(false),
        default_timeout: run_args.step_timeout,
    };
    let runner = Arc::new(crate::cloud::runner::PlanRunner { kube, cloud: targets.cloud.clone() });
    execute_with(graph, record, store, runner, run_args).await.map(|(code, _)| code)
}

/// Runs a graph with any runner, showing progress and the summary.
async fn execute_with<R: crate::exec::StepRunner>(
    graph: StepGraph,
    record: RunRecord,
    store: Arc<dyn StateStore>,
    runner: Arc<R>,
    run_args: &RunArgs,
) -> Result<(i32, checkpoint::RunStatus), String> {
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nInterrupted: letting running steps finish; no new step starts. Resume later with `dr resume`."
            );
            let _ = cancel_tx.send(true);
        }
    });
    let run_id = record.run_id.clone();
    let view = tokio::spawn(progress::render(events_rx, run_args.output, run_id.clone()));
    let started = Instant::now();
    let options = crate::exec::Options { parallelism: run_args.parallelism, ..Default::default() };
    let outcome = crate::exec::execute(Arc::new(graph), record, store, runner, options, events_tx, cancel_rx)
        .await
        .map_err(|e| e.message)?;
    let _ = view.await;
    progress::summary(&mut std::io::stderr(), &outcome, started.elapsed());
    progress::finished(run_args.output, &outcome, started.elapsed());
    let status = outcome.status;
    let rollback = matches!(outcome.record.mode, RunMode::Rollback { .. });
    let code = match status {
        checkpoint::RunStatus::Succeeded => 0,
        checkpoint::RunStatus::Interrupted => {
            let verb = if rollback { "rollback" } else { "resume" };
            eprintln!("Continue with `dr {verb} {run_id}`.");
            1
        }
        _ => {
            for (id, error) in &outcome.failed {
                eprintln!("Step {id} failed: {error}");
            }
            if rollback {
                eprintln!("Fix the cause and continue the rollback with `dr rollback {run_id}`.");
            } else {
                eprintln!(
                    "Fix the cause and continue with `dr resume {run_id}`, or undo the run with `dr rollback {run_id}`."
                );
            }
            1
        }
    };
    Ok((code, status))
}

/// `dr rollback RUN`: undoes a run's completed steps in reverse dependency order.
/// Given a rollback run (or an apply run whose rollback was interrupted), it continues it.
pub async fn rollback(run_id: &str, target_args: &TargetArgs, run_args: &RunArgs) -> Result<i32, String> {
    let store = store(run_args);
    let named = store.load_run(run_id).map_err(|e| e.to_string())?;
    let (mut original, existing) = match &named.mode {
        RunMode::Rollback { of } => (store.load_run(of).map_err(|e| e.to_string())?, Some(named.clone())),
        RunMode::Apply => {
            let unfinished = store.list_runs().map_err(|e| e.to_string())?.into_iter().find(|r| {
                r.mode == Some(RunMode::Rollback { of: run_id.to_string() })
                    && r.status != checkpoint::SummaryStatus::Run(checkpoint::RunStatus::Succeeded)
            });
            let existing = unfinished.map(|r| store.load_run(&r.run_id)).transpose().map_err(|e| e.to_string())?;
            (named.clone(), existing)
        }
    };
    if original.status == checkpoint::RunStatus::Committed {
        return Err(format!(
            "run {} was committed: the original volumes it kept for rollback were released, so it cannot be rolled back",
            original.run_id
        ));
    }
    let lock = store
        .lock(&original.lock_key(), &LockInfo::current(&original.run_id, "rollback"))
        .map_err(|e| e.to_string())?;
    let applied = graph::saved::from_json(&original.plan)?;
    // Reached first: a rollback refused for pointing at another cluster records nothing.
    let targets = reconnect(&original, target_args).await?;
    let undo = crate::steps::kube::undo::undo_graph(&applied, &original);
    for id in crate::steps::kube::undo::not_undoable(&applied, &original) {
        eprintln!("Rollback cannot undo step {id}: it ran a command in a pod and names no `undo:` command");
    }
    for warning in crate::cloud::runner::not_undone(&applied, &original) {
        eprintln!("warning: {warning}");
    }
    let record = match existing {
        Some(record) => record,
        None => {
            let mut saved = graph::saved::to_json(&undo);
            saved["clusters"] = original.plan["clusters"].clone();
            let mode = RunMode::Rollback { of: original.run_id.clone() };
            let mut record =
                RunRecord::new(&original.plan_name, original.plan_digest.clone(), original.target.clone(), mode, saved);
            record.clusters = original.clusters.clone();
            for (_, step) in undo.steps() {
                record.steps.insert(step.id.clone(), StepRecord::default());
            }
            store.create_run(&record).map_err(|e| e.to_string())?;
            record
        }
    };
    let undo = graph::saved::from_json(&record.plan)?;
    eprintln!("Rolling back run {} with run {} ({} compensating steps)", original.run_id, record.run_id, undo.len());
    let kube = crate::steps::kube::undo::UndoRunner {
        clients: targets.clients.clone(),
        original: original.clone(),
        applied,
        ready_timeout: run_args.step_timeout,
    };
    let runner = Arc::new(crate::cloud::runner::UndoPlanRunner { kube, cloud: targets.cloud.clone() });
    let (code, status) = execute_with(undo, record, store.clone(), runner, run_args).await?;
    if status == checkpoint::RunStatus::Succeeded {
        original.status = checkpoint::RunStatus::RolledBack;
        original.touch();
        store.save_run(&original).map_err(|e| e.to_string())?;
    }
    drop(lock);
    Ok(code)
}

/// Connects again to the clusters a run was made against.
///
/// A simulated cluster started by `--sim` lives only as long as the `dr` that started
/// it, so a later resume or rollback cannot reach it; serve one with `dr sim serve` and
/// use its kubeconfig instead.
pub(super) async fn reconnect(record: &RunRecord, target_args: &TargetArgs) -> Result<Targets, String> {
    if target_args.sim {
        return Err(format!(
            "--sim starts a new, empty simulated cluster; run {} cannot continue there. Use `dr sim serve` with --kubeconfig-out for runs that must outlive one process",
            record.run_id
        ));
    }
    if record.clusters.is_empty() {
        // Recorded before runs kept where they ran.
        return connect(Path::new("."), &saved_clusters(record), target_args).await;
    }
    let single = record.clusters.len() == 1;
    let mut targets = Targets::none(target_args);
    for (name, recorded) in &record.clusters {
        let context = target_args.context.as_deref().filter(|_| single);
        let now = crate::cluster::reach_again(name, recorded, target_args.kubeconfig.as_deref(), context)?;
        let origin = format!("the context run {} recorded for cluster `{name}`", record.run_id);
        let (client, server) = live::connect_named(now.kubeconfig.as_deref(), now.context.as_deref(), &origin).await?;
        targets.clients.insert(name.clone(), client);
        targets.servers.insert(name.clone(), server);
        targets.contexts.insert(name.clone(), now.context.clone().unwrap_or_else(|| "(in-cluster)".into()));
        targets.reached.insert(name.clone(), now);
    }
    Ok(targets)
}

/// The cluster → context map a run was made with (simulated targets have none).
fn saved_clusters(record: &RunRecord) -> BTreeMap<String, Option<String>> {
    record.plan["clusters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, context)| {
            let context = context.as_str().filter(|c| !c.starts_with("sim:") && *c != "(current)").map(String::from);
            (name.clone(), context)
        })
        .collect()
}
