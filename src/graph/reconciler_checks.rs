//! Who else reconciles what a plan stops: for every workload a plan scales to zero or
//! whose claims it deletes, the GitOps tools and operators that would put it back (the
//! cluster facts say who), and whether the plan pauses them around that step.

use std::collections::BTreeSet;

use petgraph::graph::NodeIndex;

use super::build::Ctx;
use super::{Step, StepGraph};
use crate::cluster::{Fight, Reconciler};
use crate::diag::Diagnostic;
use crate::steps::*;

pub(super) fn check(ctx: &mut Ctx<'_>, graph: &StepGraph) {
    let Some(facts) = ctx.facts else { return };
    // One report per entry and reconciler, not one per step of the entry.
    let mut reported = BTreeSet::new();
    for (index, step) in graph.steps() {
        for workload in stopped_workloads(ctx, step) {
            for reconciler in facts.reconcilers(&step.cluster, &step.namespace, &workload) {
                let fight = reconciler.fight();
                if fight == Fight::Idle || is_paused(graph, index, step, &reconciler) {
                    continue;
                }
                if reported.insert((step.entry.clone(), reconciler.clone())) {
                    report(ctx, step, &workload, &reconciler, fight);
                }
            }
        }
    }
}

/// Workloads the step stops (a scale to 0) or whose claim it deletes.
fn stopped_workloads(ctx: &Ctx<'_>, step: &Step) -> Vec<WorkloadRef> {
    match step.action() {
        Some(Action::Scale(p)) if p.replicas == 0 => vec![p.workload.clone()],
        Some(Action::DeletePvc(p)) => match ctx.facts {
            Some(facts) => facts.claim_users(&step.cluster, &step.namespace, &p.claim.value),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Whether a pause of the reconciler runs before the step: a `pauseReconciler` of its
/// object, or for an operator, its Deployment scaled to 0 (the `operator:` of an intent
/// or a `pauseReconciliation` with `operator:`).
fn is_paused(graph: &StepGraph, index: NodeIndex, step: &Step, reconciler: &Reconciler) -> bool {
    let (api_version, kind, namespace, name) = reconciler.object();
    graph.ancestors(index).into_iter().any(|a| {
        let before = graph.step(a);
        if before.cluster != step.cluster {
            return false;
        }
        match before.action() {
            Some(Action::PauseReconciler(p)) => {
                let o = &p.object;
                same_group(&o.api_version, &api_version)
                    && o.kind == kind
                    && o.name == name
                    && o.namespace.as_deref().unwrap_or(&before.namespace) == namespace
            }
            Some(Action::Scale(p)) => {
                matches!(reconciler, Reconciler::Operator { .. })
                    && p.replicas == 0
                    && p.workload.kind == WorkloadKind::Deployment
            }
            _ => false,
        }
    })
}

fn same_group(a: &str, b: &str) -> bool {
    a.rsplit_once('/').map(|(g, _)| g) == b.rsplit_once('/').map(|(g, _)| g)
}

fn report(ctx: &mut Ctx<'_>, step: &Step, workload: &WorkloadRef, reconciler: &Reconciler, fight: Fight) {
    let target = format!("{workload} in {}", step.namespace);
    let (code, message) = match fight {
        Fight::Reverts => (
            "drplan::safety::unpaused_reconciler",
            format!(
                "{target} is reconciled by {reconciler}, which would scale it back up while `{}` has it stopped and \
                 its claims are replaced; the plan does not pause it",
                step.entry
            ),
        ),
        _ => (
            "drplan::safety::reconciler_may_sync",
            format!(
                "{target} is managed by {reconciler}: it does not revert changes made in the cluster, but a new \
                 Git revision synced during `{}` would scale it back up",
                step.entry
            ),
        ),
    };
    let help = format!(
        "pause it for the duration of `{}`; add this entry to `steps:`\n{}",
        step.entry,
        suggestion(reconciler, &step.entry)
    );
    let diag = match fight {
        Fight::Reverts => Diagnostic::error(code, message),
        _ => Diagnostic::warning(code, message),
    };
    let mut diag =
        diag.in_file(&ctx.loaded.source).with_label(step.origin, "stops a workload another controller manages");
    diag.help = Some(help);
    ctx.diags.push(diag);
}

/// The `pauseReconciliation` entry that pauses the reconciler during `entry`.
pub(super) fn suggestion(reconciler: &Reconciler, entry: &str) -> String {
    let body = match reconciler {
        Reconciler::ArgoCd { namespace, name, .. } => format!("argoCd: {{name: {name}, namespace: {namespace}}}"),
        Reconciler::Flux { kind, namespace, name, .. } => {
            format!("flux: {{kind: {kind}, name: {name}, namespace: {namespace}}}")
        }
        Reconciler::Operator { api_version, kind, namespace, name } => {
            let key = pause_annotation(api_version).unwrap_or("OPERATOR/PAUSE-ANNOTATION");
            format!(
                "annotate:\n        object: {{apiVersion: {api_version}, kind: {kind}, namespace: {namespace}, name: {name}}}\n        key: {key}\n        value: \"true\""
            )
        }
    };
    let name = match reconciler {
        Reconciler::ArgoCd { name, .. } | Reconciler::Flux { name, .. } | Reconciler::Operator { name, .. } => name,
    };
    format!("  - id: pause-{name}\n    pauseReconciliation:\n      {body}\n      during: [{entry}]")
}

/// The pause annotation of operators known to have one.
fn pause_annotation(api_version: &str) -> Option<&'static str> {
    let group = api_version.split('/').next().unwrap_or_default();
    match group {
        "kafka.strimzi.io" | "eventstreams.ibm.com" => Some("strimzi.io/pause-reconciliation"),
        _ => None,
    }
}
