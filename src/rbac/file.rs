//! The rights of a plan file: load it, expand it against cluster manifests (given, or
//! the directory beside the plan as `dr plan --sim` uses), derive. The library side of
//! `dr rbac`, for `dr drill manifests` too.

use std::path::{Path, PathBuf};

use super::{Options, Rbac};
use crate::cluster::ClusterInventories;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::{BuildOptions, StepKind};

/// What to derive for a plan file.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// Cluster manifests to expand intents with; empty: the directory beside the plan.
    pub cluster_from: Vec<PathBuf>,
    pub read_only: bool,
    pub rollback: bool,
    pub service_account_namespace: String,
    pub account_id: Option<String>,
}

impl Default for FileOptions {
    fn default() -> Self {
        let defaults = Options::default();
        FileOptions {
            cluster_from: Vec::new(),
            read_only: defaults.read_only,
            rollback: defaults.rollback,
            service_account_namespace: defaults.service_account_namespace,
            account_id: defaults.account_id,
        }
    }
}

/// The rights of the plan at `plan`, or the diagnostics saying why they cannot be derived
/// (a plan that does not load or build, an intent without cluster state to expand it).
pub fn derive_for_plan(plan: &Path, options: &FileOptions) -> Result<Rbac, Diagnostics> {
    let (loaded, mut diags) = crate::lang::load_plan(plan);
    let Some(loaded) = loaded else { return Err(diags) };
    let names: Vec<String> = loaded.plan.clusters.iter().map(|c| c.name.value.clone()).collect();
    let paths = manifests_for(plan, &options.cluster_from);
    let facts = if paths.is_empty() {
        None
    } else {
        match ClusterInventories::from_paths(&paths, &names) {
            Ok(facts) => Some(facts),
            Err(more) => {
                diags.extend(more);
                return Err(diags.sorted());
            }
        }
    };
    let build = BuildOptions { facts: facts.as_ref().map(|f| f as _), intents_only: false };
    let (graph, more) = crate::graph::build(&loaded, build);
    diags.extend(more);
    let graph = match graph {
        Some(graph) if !diags.has_errors() => graph,
        _ => return Err(diags.sorted()),
    };
    // An unexpanded intent's calls depend on what the cluster holds.
    if let Some((_, step)) = graph.steps().find(|(_, s)| matches!(s.kind, StepKind::Intent(_))) {
        let message = format!("`{}` cannot be expanded without the cluster's state", step.id);
        let diag = Diagnostic::error("drplan::rbac::unexpanded", message)
            .in_file(&loaded.source)
            .with_label(step.origin, "this intent")
            .with_help("pass --cluster-from DIR (a `kubectl get -o yaml` dump of the cluster)");
        diags.push(diag);
        return Err(diags.sorted());
    }
    let derive = Options {
        read_only: options.read_only,
        rollback: options.rollback,
        facts: facts.as_ref().map(|f| f as _),
        service_account_namespace: options.service_account_namespace.clone(),
        account_id: options.account_id.clone(),
    };
    Ok(super::derive(&graph, &derive))
}

/// The manifests given, else the directory beside the plan when there is one.
fn manifests_for(plan: &Path, given: &[PathBuf]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let beside = plan.with_extension("");
    if beside.is_dir() { vec![beside] } else { Vec::new() }
}
