//! The `dr` command line: parses arguments, calls a stage or an operation of `crate::ops`,
//! and renders results and diagnostics. This file is the only one that dispatches: the
//! other files of `cli/` do not import each other (tests/cli_layering.rs checks it).
//!
//! Exit codes: 0 success, 1 problems found or an error (like `terraform validate`).

pub mod apply;
pub mod commit;
pub mod drill;
pub mod plan;
pub mod progress;
pub mod rbac;
pub mod runs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::checkpoint::{StateStore, StoreLocation};
use crate::cluster::throttle::RateLimit;
use crate::diag::plural;
use crate::graph::{self, render::Format};
use crate::lang;
use crate::ops::{Reach, RunOptions, TargetOptions};
pub use crate::ops::{load_and_build, load_and_build_from};
use progress::{Console, Output, print_diagnostics};

#[derive(Parser, Debug)]
#[command(name = "dr", version, about = "Declarative, reviewable, resumable disaster recovery for Kubernetes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How `--sim` reads for commands that continue a run: no plan is beside them.
const SIM_FOR_RUNS: &str = "Refused: --sim starts a new, empty simulated cluster, which cannot hold a run \
     started elsewhere; serve one with `dr sim serve --kubeconfig-out FILE` and pass --kubeconfig FILE";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check plans offline: syntax, types, references, cycles and safety rules.
    Validate {
        /// Plan files to check.
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        /// Cluster manifests (`kubectl get -o yaml`) to expand intents with: a directory
        /// (with one subdirectory per cluster for multi-cluster plans) or files; repeatable.
        #[arg(long, value_name = "DIR|FILE")]
        cluster_from: Vec<PathBuf>,
    },
    /// Print the step DAG with the critical path marked.
    Graph {
        /// Plan file to draw.
        plan: PathBuf,
        /// Cluster manifests to expand intents with (directory or files; repeatable);
        /// without it the intent-level DAG is shown.
        #[arg(long, value_name = "DIR|FILE")]
        cluster_from: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print a JSON Schema: of the plan format (default), of `dr plan --format json` or of the drill report.
    Schema {
        #[arg(value_enum, default_value = "plan")]
        of: SchemaOf,
    },
    /// Show what a plan would change in the live clusters (exit 0: nothing, 2: changes, 1: error).
    Plan {
        /// Plan file to compare with the live clusters.
        plan: PathBuf,
        /// Default namespace of a one-cluster plan.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Save the plan, with the versions of the objects it read, for `dr apply`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: plan::PlanFormat,
        #[command(flatten)]
        target: TargetArgs,
        /// Accepted so scripts can pass the same options to every command; `dr plan`
        /// compares with live state only and reads no earlier run.
        #[command(flatten)]
        state: StateArgs,
    },
    /// Run a plan (or a saved plan): show it, ask for approval, execute it with checkpoints.
    Apply {
        /// Plan file, or a plan saved with `dr plan --out`.
        plan: PathBuf,
        /// Do not ask for approval.
        #[arg(long)]
        auto_approve: bool,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Continue an interrupted or failed run.
    #[command(mut_arg("sim", |a| a.help(SIM_FOR_RUNS)), mut_arg("sim_speed", |a| a.hide(true)))]
    Resume {
        /// Id of the run to continue (`dr runs` lists them).
        run_id: String,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Undo a run's completed steps in reverse order (resumable, like a run).
    #[command(mut_arg("sim", |a| a.help(SIM_FOR_RUNS)), mut_arg("sim_speed", |a| a.hide(true)))]
    Rollback {
        /// Id of the run to undo, or of an interrupted rollback to continue.
        run_id: String,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Accept a succeeded run: give the original volumes it retained for rollback their
    /// original reclaim policy back (for `Delete`, Kubernetes then deletes them). A
    /// committed run can no longer be rolled back.
    #[command(mut_arg("sim", |a| a.help(SIM_FOR_RUNS)), mut_arg("sim_speed", |a| a.hide(true)))]
    Commit {
        /// Id of the succeeded run to accept.
        run_id: String,
        /// Do not ask for approval.
        #[arg(long)]
        auto_approve: bool,
        /// Also delete the VolumeSnapshots the run took (and their contents and the
        /// provider's snapshots, for classes that retain them). Also accepted for a
        /// rolled-back run, to clean up after it.
        #[arg(long)]
        delete_snapshots: bool,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Rehearse a failover: apply the plan, verify the restored service, measure the
    /// achieved RTO and RPO against the plan's objectives, then roll back (or commit).
    /// Exit 1 when a step, a check or an objective fails.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Drill {
        #[command(subcommand)]
        command: Option<DrillCommand>,
        #[command(flatten)]
        drill: DrillArgs,
    },
    /// List runs kept in the state directory.
    Runs {
        #[arg(long, value_enum, default_value = "text")]
        output: runs::RunsFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the Kubernetes RBAC (ServiceAccount, Roles, ClusterRole, bindings) with
    /// exactly the rights a plan's steps use, or with `--iam` the IAM policy of its cloud steps.
    Rbac(rbac::RbacArgs),
    /// The simulated cluster: serve manifests as a Kubernetes API on loopback.
    Sim {
        #[command(subcommand)]
        command: crate::sim::cli::SimCommand,
    },
    /// Print a shell completion script (e.g. `dr completions bash > /etc/bash_completion.d/dr`).
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `dr drill PLAN`.
#[derive(clap::Args, Debug, Clone)]
pub struct DrillArgs {
    /// Plan file to drill.
    #[arg(required = true)]
    pub plan: Option<PathBuf>,
    /// What to do once the restored service is verified.
    #[arg(long, value_enum, default_value = "rollback")]
    pub then: drill::ThenArg,
    /// Write JUnit XML, JSON and Markdown reports here, and append to history.jsonl.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum DrillCommand {
    /// Print a CronJob that runs the drill on a schedule, with the plan in a ConfigMap,
    /// a ServiceAccount and its binding to the drill's ClusterRole (for `kubectl apply`).
    Manifests {
        /// Plan file to schedule.
        plan: PathBuf,
        /// Cron schedule, e.g. "0 3 * * 1" (Mondays at 03:00).
        #[arg(long)]
        schedule: String,
        /// Image that runs `dr`.
        #[arg(long, default_value = crate::ops::drill::manifests::DEFAULT_IMAGE)]
        image: String,
        /// Namespace of the CronJob, its ConfigMap and ServiceAccount.
        #[arg(short = 'n', long, default_value = "drplan")]
        namespace: String,
        /// Bind the drill's ServiceAccount to this existing ClusterRole instead of the
        /// rights derived from the plan (`dr rbac --with-rollback`).
        #[arg(long)]
        role: Option<String>,
        /// Cluster manifests to derive the rights with (default: the directory beside the plan).
        #[arg(long = "cluster-from", value_name = "DIR|FILE")]
        cluster_from: Vec<PathBuf>,
        /// PersistentVolumeClaim to keep reports and history in (default: an emptyDir).
        #[arg(long, value_name = "CLAIM")]
        reports_claim: Option<String>,
    },
}

/// Where runs and locks are kept (every command that reads or writes runs).
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// Where runs and locks are kept.
    #[arg(long, value_name = "DIR", env = "DRPLAN_STATE_DIR", default_value = ".drplan")]
    pub state_dir: PathBuf,
    /// Keep runs and locks here instead of --state-dir: a directory, or
    /// `kubernetes://NAMESPACE` (ConfigMaps and Leases in the cluster of --kubeconfig/--context).
    #[arg(long, value_name = "DIR|kubernetes://NAMESPACE", env = "DRPLAN_STATE_STORE")]
    pub state_store: Option<String>,
}

impl StateArgs {
    /// The store, and where it is (for messages).
    pub async fn store(&self, target: Option<&TargetArgs>) -> Result<(Arc<dyn StateStore>, String), String> {
        open_store(self.state_store.as_deref(), &self.state_dir, target).await
    }
}

/// The store `--state-store` (else `--state-dir`) names; a Kubernetes one reaches the
/// cluster of the command's `--kubeconfig`/`--context` (without them, the defaults).
async fn open_store(
    state_store: Option<&str>,
    state_dir: &Path,
    target: Option<&TargetArgs>,
) -> Result<(Arc<dyn StateStore>, String), String> {
    let location = StoreLocation::choose(state_store, state_dir)?;
    let kubeconfig = target.and_then(|t| t.kubeconfig.as_deref());
    let context = target.and_then(|t| t.context.as_deref());
    Ok((location.open(kubeconfig, context).await?, location.to_string()))
}

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
    /// Requests per second to each API server (client-side limit, as kubectl's and
    /// client-go's; 0 turns it off).
    #[arg(long, value_name = "QPS", env = "DR_KUBE_QPS", default_value_t = RateLimit::DEFAULT.qps)]
    pub kube_qps: f64,
    /// Requests that may go at once to each API server after a quiet spell.
    #[arg(long, value_name = "N", env = "DR_KUBE_BURST", default_value_t = RateLimit::DEFAULT.burst)]
    pub kube_burst: u32,
}

impl TargetArgs {
    pub fn options(&self) -> TargetOptions {
        TargetOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            sim: self.sim,
            sim_speed: self.sim_speed,
            aws_endpoint_url: self.aws_endpoint_url.clone(),
            rate_limit: RateLimit { qps: self.kube_qps, burst: self.kube_burst },
        }
    }
}

/// How a run executes and is shown.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Steps that change something run at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Waits run at once (they only watch, so they do not take --parallelism slots).
    #[arg(long, default_value_t = crate::exec::Options::default().max_waits)]
    pub max_waits: usize,
    /// Where runs and locks are kept.
    #[arg(long, value_name = "DIR", env = "DRPLAN_STATE_DIR", default_value = ".drplan")]
    pub state_dir: PathBuf,
    /// Keep runs and locks here instead of --state-dir: a directory, or
    /// `kubernetes://NAMESPACE` (ConfigMaps and Leases in the cluster of --kubeconfig/--context).
    #[arg(long, value_name = "DIR|kubernetes://NAMESPACE", env = "DRPLAN_STATE_STORE")]
    pub state_store: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub output: Output,
    /// Timeout of steps that name none.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub step_timeout: Duration,
}

impl RunArgs {
    pub async fn options(&self, target: &TargetArgs) -> Result<RunOptions, String> {
        let (store, store_location) = open_store(self.state_store.as_deref(), &self.state_dir, Some(target)).await?;
        Ok(RunOptions {
            parallelism: self.parallelism,
            max_waits: self.max_waits,
            step_timeout: self.step_timeout,
            store,
            store_location,
        })
    }

    fn console(&self) -> Console {
        Console { output: self.output }
    }
}

/// The name `dr` is invoked as: `kubectl dr` when run as the kubectl plugin `kubectl-dr`.
fn invoked_as() -> &'static str {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let file = Path::new(&argv0).file_name().and_then(|f| f.to_str()).unwrap_or_default();
    if file.starts_with("kubectl-dr") { "kubectl dr" } else { "dr" }
}

/// The documents `dr schema` describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    /// A plan file (schemas/drplan.schema.json).
    Plan,
    /// What `dr plan --format json` prints (schemas/plan-output.schema.json).
    PlanOutput,
    /// The JSON report of `dr drill --report-dir` (schemas/drill-report.schema.json).
    DrillReport,
}

/// Commands that only read: when their output pipe closes (`dr schema | head -1`), they
/// end at once like other Unix tools. Commands that change clusters keep going (their
/// checkpoints must be written) and report the failed write instead.
fn quiet_on_closed_pipe(command: &Command) -> bool {
    matches!(
        command,
        Command::Validate { .. }
            | Command::Graph { .. }
            | Command::Rbac(_)
            | Command::Schema { .. }
            | Command::Plan { .. }
            | Command::Runs { .. }
            | Command::Drill { command: Some(_), .. }
            | Command::Completions { .. }
    )
}

fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default at start-up, before any
    // thread is started; Rust ignores SIGPIPE by default so that writes fail instead.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let command = Cli::command().bin_name(invoked_as());
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    if quiet_on_closed_pipe(&cli.command) {
        restore_default_sigpipe();
    }
    match cli.command {
        Command::Validate { plans, cluster_from } => validate(&plans, &cluster_from),
        Command::Graph { plan, cluster_from, format } => graph_command(&plan, &cluster_from, format),
        Command::Rbac(args) => rbac::run(&args),
        Command::Schema { of } => {
            match of {
                SchemaOf::Plan => print!("{}", lang::schema::plan_schema_json()),
                SchemaOf::PlanOutput => print!("{}", crate::state::output::plan_output_schema_json()),
                SchemaOf::DrillReport => print!("{}", crate::ops::drill::report::drill_report_schema_json()),
            }
            0
        }
        Command::Plan { plan, namespace, out, format, target, state: _ } => block_on(async move {
            let ui = Console { output: Output::Auto };
            plan::plan(&plan, &target.options(), namespace.as_deref(), out.as_deref(), format, &ui).await
        }),
        Command::Apply { plan, auto_approve, target, run } => block_on(async move {
            let options = crate::ops::apply::ApplyOptions { auto_approve };
            let run_options = run.options(&target).await?;
            let ended =
                crate::ops::apply::apply(&plan, &target.options(), &run_options, options, &run.console()).await?;
            Ok(apply::exit_code(&ended))
        }),
        Command::Resume { run_id, target, run } => block_on(async move {
            let run_options = run.options(&target).await?;
            let ended = crate::ops::resume::resume(&run_id, &target.options(), &run_options, &run.console()).await?;
            Ok(apply::exit_code(&ended))
        }),
        Command::Rollback { run_id, target, run } => block_on(async move {
            let run_options = run.options(&target).await?;
            let ended =
                crate::ops::rollback::rollback(&run_id, Reach::Again(&target.options()), &run_options, &run.console())
                    .await?;
            Ok(apply::exit_code(&ended))
        }),
        Command::Commit { run_id, auto_approve, delete_snapshots, target, state } => block_on(async move {
            let options = crate::ops::commit::CommitOptions { delete_snapshots };
            let ui = Console { output: Output::Auto };
            let (store, _) = state.store(Some(&target)).await?;
            commit::commit(&run_id, &target.options(), store, options, auto_approve, &ui).await
        }),
        Command::Runs { output, state } => block_on(async move {
            let (store, location) = state.store(None).await?;
            runs::runs(store.as_ref(), &location, output)
        }),
        Command::Drill { command: Some(command), .. } => drill_manifests(command),
        Command::Drill { command: None, drill } => block_on(async move {
            let plan = drill.plan.clone().ok_or("a plan file is required")?;
            let options =
                crate::ops::drill::DrillOptions { then: drill.then.into(), report_dir: drill.report_dir.clone() };
            let console = drill.run.console();
            let run_options = drill.run.options(&drill.target).await?;
            let drilled =
                crate::ops::drill::drill(&plan, &drill.target.options(), &run_options, &options, &console).await?;
            Ok(drill::show(&drilled, drill.run.output == Output::Json))
        }),
        Command::Sim { command } => crate::sim::cli::run(command).unwrap_or_else(|message| {
            eprintln!("error: {}", crate::diag::escape(&message));
            1
        }),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "dr", &mut std::io::stdout());
            0
        }
    }
}

/// Runs an async command on a runtime sized for the machine, mapping errors to exit 1.
fn block_on(work: impl std::future::Future<Output = Result<i32, String>>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(work).unwrap_or_else(|message| {
        eprintln!("error: {}", crate::diag::escape(&message));
        1
    })
}

fn drill_manifests(command: DrillCommand) -> i32 {
    let DrillCommand::Manifests { plan, schedule, image, namespace, role, cluster_from, reports_claim } = command;
    let (loaded, diags) = lang::load_plan(&plan);
    print_diagnostics(&diags);
    let Some(loaded) = loaded.filter(|_| !diags.has_errors()) else { return 1 };
    let mut options = crate::ops::drill::manifests::DrillManifestOptions::new(&schedule);
    options.image = image;
    options.reports_claim = reports_claim;
    match role {
        Some(role) => options.role = role,
        None => {
            let rbac_options = crate::rbac::file::FileOptions {
                cluster_from,
                rollback: true,
                service_account_namespace: namespace.clone(),
                ..Default::default()
            };
            let rbac = match crate::rbac::file::derive_for_plan(&plan, &rbac_options) {
                Ok(rbac) => rbac,
                Err(diags) => {
                    print_diagnostics(&diags);
                    return 1;
                }
            };
            // The drill runs in the plan's first cluster.
            let first = loaded.plan.clusters.first().map(|c| c.name.value.clone()).unwrap_or_default();
            let (access, others) = crate::ops::drill::manifests::DerivedAccess::in_cluster(&rbac, &first);
            for other in others {
                println!(
                    "# The plan also acts in cluster {other}: apply `dr rbac` there for the drill's ServiceAccount."
                );
            }
            options.derived = Some(access);
        }
    }
    options.namespace = namespace;
    drill::print_manifests(&plan, loaded.plan.name(), &options).unwrap_or_else(|message| {
        eprintln!("error: {}", crate::diag::escape(&message));
        1
    })
}

fn validate(plans: &[PathBuf], cluster_from: &[PathBuf]) -> i32 {
    let mut failed = 0;
    for path in plans {
        let (built, diags) = load_and_build_from(path, cluster_from, false);
        print_diagnostics(&diags);
        let errors = diags.error_count();
        match (&built, errors) {
            (Some((_, graph)), 0) => {
                println!(
                    "{}: valid ({})",
                    crate::diag::escape(&path.display().to_string()),
                    plural(graph.len(), "step")
                )
            }
            _ => {
                failed += 1;
                let shown = path.display().to_string();
                println!("{}: {}", crate::diag::escape(&shown), plural(errors.max(1), "problem"));
            }
        }
    }
    i32::from(failed > 0)
}

fn graph_command(plan: &Path, cluster_from: &[PathBuf], format: Format) -> i32 {
    let (built, diags) = load_and_build_from(plan, cluster_from, cluster_from.is_empty());
    print_diagnostics(&diags);
    match built {
        Some((_, graph)) if !diags.has_errors() => {
            print!("{}", graph::render::render(&graph, format));
            0
        }
        _ => 1,
    }
}
