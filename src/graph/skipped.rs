//! The checks that need cluster facts, named when they could not run: without
//! `--cluster-from` (or live state) a plan still validates, but the reviewer must know
//! what was not checked and why.

use std::collections::BTreeSet;

use super::build::Ctx;
use super::{StepGraph, StepKind};
use crate::diag::Diagnostic;
use crate::lang::Intent;
use crate::steps::Action;

/// Code of the warning listing the checks skipped for want of cluster facts.
pub const CHECKS_SKIPPED: &str = "drplan::validate::checks_skipped";

/// Adds one warning naming each check skipped for want of facts, labelled at the steps
/// it concerns. Nothing when facts were given or no step needs them.
pub(super) fn report(ctx: &mut Ctx<'_>, graph: &StepGraph) {
    if ctx.facts.is_some() {
        return;
    }
    let mut checks = BTreeSet::new();
    let mut labels = Vec::new();
    for (_, step) in graph.steps() {
        let needs: &[&str] = match &step.kind {
            StepKind::Intent(Intent::RestoreClaims(_)) => &[
                "the claims of a `claimTemplate` (one per replica of the StatefulSet)",
                "restore sizes against the size of the claims restored",
                "whether another workload uses the claims",
                "reclaim policies of the volumes of deleted claims",
            ],
            StepKind::Action(Action::RestorePvc(_)) => &[
                "restore sizes against the size of the claims restored",
                "whether a snapshot restored from (not taken by the plan) exists and is ready",
            ],
            StepKind::Action(Action::DeletePvc(_)) => {
                &["whether another workload uses the claims", "reclaim policies of the volumes of deleted claims"]
            }
            StepKind::Action(Action::ResizePvc(_)) => &["resize sizes against the current size of the claims"],
            _ => continue,
        };
        checks.extend(needs.iter().copied());
        labels.push((step.origin, step.entry.clone()));
    }
    if checks.is_empty() {
        return;
    }
    labels.dedup_by(|a, b| a.1 == b.1);
    let mut diag = Diagnostic::warning(
        CHECKS_SKIPPED,
        format!(
            "checks that need cluster facts were skipped: {}",
            checks.into_iter().collect::<Vec<_>>().join("; ")
        ),
    )
    .in_file(&ctx.loaded.source)
    .with_help(
        "no cluster state was given: pass `--cluster-from DIR` (manifests as `kubectl get -o yaml` prints them) to run them; `dr plan` runs them against the live cluster",
    );
    for (span, _) in labels {
        diag = diag.with_label(span, "checked only with cluster facts");
    }
    ctx.diags.push(diag);
}
