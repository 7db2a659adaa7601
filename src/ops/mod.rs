//! Operations: `plan`, `apply`, `resume`, `rollback`, `commit` as a library that the CLI,
//! the drill runner and the tests call alike (Terraform's `backend/local` below `command`).
//!
//! An operation takes plain option structs, reports what a person should see through a
//! [`Frontend`] (notices, diagnostics, approval, step progress on the executor's event
//! channel) and returns what happened; it never prints and never picks an exit code.

pub mod apply;
pub mod commit;
pub mod plan;
pub mod resume;
pub mod rollback;
pub mod run;
pub mod target;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::cluster::ClusterInventories;
use crate::diag::Diagnostics;
use crate::exec::{Event, Outcome};
use crate::graph::{self, BuildOptions, StepGraph};
use crate::lang::{self, LoadedPlan};

pub use run::{Ended, RunEnd, RunOptions};
pub use target::{TargetOptions, Targets};

/// Something an operation tells the person running it, besides step progress.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// A line about what is happening (a run started, a lock taken over).
    Note(&'a str),
    /// Something that may need attention; the operation goes on.
    Warning(&'a str),
    /// A block of text to review before approving (the plan of an apply), shown as is.
    Review(&'a str),
}

/// Where a run's step events go while it runs, and how it is asked to stop.
pub struct RunView {
    /// Step events; the view ends when the executor drops its sender.
    pub events: mpsc::UnboundedSender<Event>,
    /// Finishes once every event was shown.
    pub shown: tokio::task::JoinHandle<()>,
    /// Turns true when no new step should start (Ctrl-C).
    pub cancel: watch::Receiver<bool>,
}

/// What an operation needs from whoever runs it: a terminal, a drill report, a test.
pub trait Frontend: Send + Sync {
    fn notice(&self, notice: Notice<'_>);
    /// Problems found in a plan, pointing at its lines.
    fn diagnostics(&self, diags: &Diagnostics);
    /// Asks for approval; an error when nobody can be asked.
    fn confirm(&self, question: &str) -> Result<bool, String>;
    /// Starts showing the steps of run `run_id` as they go.
    fn show_run(&self, run_id: &str) -> RunView;
    /// The run's executor finished (after [`RunView::shown`]), `elapsed` after it started.
    fn run_ended(&self, outcome: &Outcome, elapsed: Duration);
}

/// Loads a plan and builds its graph, collecting every problem.
pub fn load_and_build(
    path: &Path,
    cluster_from: Option<&Path>,
    intents_only: bool,
) -> (Option<(LoadedPlan, StepGraph)>, Diagnostics) {
    let paths: Vec<PathBuf> = cluster_from.map(Path::to_path_buf).into_iter().collect();
    load_and_build_from(path, &paths, intents_only)
}

/// [`load_and_build`] with cluster manifests from several directories or files.
pub fn load_and_build_from(
    path: &Path,
    cluster_from: &[PathBuf],
    intents_only: bool,
) -> (Option<(LoadedPlan, StepGraph)>, Diagnostics) {
    let (loaded, mut diags) = lang::load_plan(path);
    let Some(loaded) = loaded else {
        return (None, diags);
    };
    let facts = match cluster_from {
        [] => None,
        paths => {
            let names: Vec<String> = loaded.plan.clusters.iter().map(|c| c.name.value.clone()).collect();
            match ClusterInventories::from_paths(paths, &names) {
                Ok(facts) => Some(facts),
                Err(more) => {
                    diags.extend(more);
                    return (None, diags);
                }
            }
        }
    };
    let options = BuildOptions { facts: facts.as_ref().map(|f| f as _), intents_only };
    let (graph, more) = graph::build(&loaded, options);
    diags.extend(more);
    (graph.map(|g| (loaded, g)), diags.sorted())
}
