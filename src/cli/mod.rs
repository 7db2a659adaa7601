//! The `dr` command line: parses arguments, runs a stage, prints results and diagnostics.
//!
//! Exit codes: 0 success, 1 problems found or an error (like `terraform validate`).

pub mod apply;
pub mod commit;
pub mod plan;
pub mod progress;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::cluster::ClusterInventories;
use crate::diag::Diagnostics;
use crate::graph::{self, BuildOptions, StepGraph, render::Format};
use crate::lang::{self, LoadedPlan};

#[derive(Parser, Debug)]
#[command(name = "dr", version, about = "Declarative, reviewable, resumable disaster recovery for Kubernetes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check plans offline: syntax, types, references, cycles and safety rules.
    Validate {
        /// Plan files.
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        /// Directory of cluster manifests (`kubectl get -o yaml`) to expand intents with.
        #[arg(long, value_name = "DIR")]
        cluster_from: Option<PathBuf>,
    },
    /// Print the step DAG with the critical path marked.
    Graph {
        plan: PathBuf,
        /// Directory of cluster manifests to expand intents with; without it the
        /// intent-level DAG is shown.
        #[arg(long, value_name = "DIR")]
        cluster_from: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
    /// Show what a plan would change in the live clusters (exit 0: nothing, 2: changes, 1: error).
    Plan {
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
        target: apply::TargetArgs,
        #[command(flatten)]
        run: apply::RunArgs,
    },
    /// Run a plan (or a saved plan): show it, ask for approval, execute it with checkpoints.
    Apply {
        plan: PathBuf,
        /// Do not ask for approval.
        #[arg(long)]
        auto_approve: bool,
        #[command(flatten)]
        target: apply::TargetArgs,
        #[command(flatten)]
        run: apply::RunArgs,
    },
    /// Continue an interrupted or failed run.
    Resume {
        run_id: String,
        #[command(flatten)]
        target: apply::TargetArgs,
        #[command(flatten)]
        run: apply::RunArgs,
    },
    /// Undo a run's completed steps in reverse order (resumable, like a run).
    Rollback {
        run_id: String,
        #[command(flatten)]
        target: apply::TargetArgs,
        #[command(flatten)]
        run: apply::RunArgs,
    },
    /// Accept a succeeded run: give the original volumes it retained for rollback their
    /// original reclaim policy back (for `Delete`, Kubernetes then deletes them). A
    /// committed run can no longer be rolled back.
    Commit {
        run_id: String,
        /// Do not ask for approval.
        #[arg(long)]
        auto_approve: bool,
        #[command(flatten)]
        target: apply::TargetArgs,
        #[command(flatten)]
        run: apply::RunArgs,
    },
    /// List runs kept in the state directory.
    Runs {
        #[command(flatten)]
        run: apply::RunArgs,
    },
    /// The simulated cluster: serve manifests as a Kubernetes API on loopback.
    Sim {
        #[command(subcommand)]
        command: crate::sim::cli::SimCommand,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { plans, cluster_from } => validate(&plans, cluster_from.as_deref()),
        Command::Graph { plan, cluster_from, format } => graph_command(&plan, cluster_from.as_deref(), format),
        Command::Schema => {
            print!("{}", lang::schema::plan_schema_json());
            0
        }
        Command::Plan { plan, namespace, out, format, target, run } => {
            block_on(
                async move { plan::plan(&plan, &target, &run, namespace.as_deref(), out.as_deref(), format).await },
            )
        }
        Command::Apply { plan, auto_approve, target, run } => {
            block_on(async move { apply::apply(&plan, &target, &run, auto_approve).await })
        }
        Command::Resume { run_id, target, run } => block_on(async move { apply::resume(&run_id, &target, &run).await }),
        Command::Rollback { run_id, target, run } => {
            block_on(async move { apply::rollback(&run_id, &target, &run).await })
        }
        Command::Commit { run_id, auto_approve, target, run } => {
            block_on(async move { commit::commit(&run_id, &target, &run, auto_approve).await })
        }
        Command::Runs { run } => apply::runs(&run).unwrap_or_else(|message| {
            eprintln!("error: {}", crate::diag::escape(&message));
            1
        }),
        Command::Sim { command } => crate::sim::cli::run(command).unwrap_or_else(|message| {
            eprintln!("error: {}", crate::diag::escape(&message));
            1
        }),
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

pub(crate) fn print_diagnostics(diags: &Diagnostics) {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    for diag in diags.iter() {
        eprint!("{}", diag.render(color));
        eprintln!();
    }
}

/// Loads a plan and builds its graph, collecting every problem.
pub fn load_and_build(
    path: &Path,
    cluster_from: Option<&Path>,
    intents_only: bool,
) -> (Option<(LoadedPlan, StepGraph)>, Diagnostics) {
    let (loaded, mut diags) = lang::load_plan(path);
    let Some(loaded) = loaded else {
        return (None, diags);
    };
    let facts = match cluster_from {
        Some(dir) => {
            let names: Vec<String> = loaded.plan.clusters.iter().map(|c| c.name.value.clone()).collect();
            match ClusterInventories::from_dir(dir, &names) {
                Ok(facts) => Some(facts),
                Err(more) => {
                    diags.extend(more);
                    return (None, diags);
                }
            }
        }
        None => None,
    };
    let options = BuildOptions { facts: facts.as_ref().map(|f| f as _), intents_only };
    let (graph, more) = graph::build(&loaded, options);
    diags.extend(more);
    (graph.map(|g| (loaded, g)), diags.sorted())
}

fn validate(plans: &[PathBuf], cluster_from: Option<&Path>) -> i32 {
    let mut failed = 0;
    for path in plans {
        let (built, diags) = load_and_build(path, cluster_from, false);
        print_diagnostics(&diags);
        let errors = diags.error_count();
        match (&built, errors) {
            (Some((_, graph)), 0) => {
                println!("{}: valid ({} steps)", crate::diag::escape(&path.display().to_string()), graph.len())
            }
            _ => {
                failed += 1;
                println!(
                    "{}: {} problem{}",
                    crate::diag::escape(&path.display().to_string()),
                    errors.max(1),
                    if errors == 1 { "" } else { "s" }
                );
            }
        }
    }
    i32::from(failed > 0)
}

fn graph_command(plan: &Path, cluster_from: Option<&Path>, format: Format) -> i32 {
    let (built, diags) = load_and_build(plan, cluster_from, cluster_from.is_none());
    print_diagnostics(&diags);
    match built {
        Some((_, graph)) if !diags.has_errors() => {
            print!("{}", graph::render::render(&graph, format));
            0
        }
        _ => 1,
    }
}
