//! Pausing and resuming the controllers that would fight a plan (Argo CD, Flux,
//! operators): a JSON merge patch on the object they read. The values the patch
//! replaces are saved to the checkpoint before it is sent, so resume (and rollback)
//! writes back exactly what was there, and removes what was not.
//!
//! A paused object carries `drplan.dev/paused-by: RUN`, removed on resume. Another run
//! finding it refuses to pause it again: it would save the paused state as the original,
//! and its resume would leave the controller paused for good.

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::{Kube, classify};
use crate::exec::StepError;
use crate::steps::{Action, PAUSE_ORIGINAL, ReconcilerParams, restoring_patch};

/// Saves what the patch replaces (once: a re-run after a crash must not save the paused
/// state as the original), then pauses.
pub async fn pause(k: &Kube<'_>, p: &ReconcilerParams) -> Result<(), StepError> {
    let run = super::label_value(&k.ctx.run_id);
    let patch = marked(&p.patch, &run);
    if k.ctx.captured(PAUSE_ORIGINAL).is_none() {
        let live = read(k, p).await?;
        if let Some(other) = live.pointer(&format!("/metadata/annotations/{}", PAUSED_BY.replace('/', "~1")))
            && other.as_str() != Some(run.as_str())
        {
            return Err(StepError::conflict(format!(
                "{} was paused by run {} and not resumed: `dr resume` or `dr rollback` that run first \
                 (pausing it again would save the paused state as the one to restore)",
                p.object,
                other.as_str().unwrap_or_default()
            )));
        }
        k.ctx.capture(PAUSE_ORIGINAL, restoring_patch(&patch, &live))?;
    }
    send(k, p, &patch, "pausing").await
}

/// The annotation naming the run that paused an object.
pub const PAUSED_BY: &str = "drplan.dev/paused-by";

/// The pause patch, plus the annotation naming the run.
pub(super) fn marked(patch: &Value, run: &str) -> Value {
    let mut marked = patch.clone();
    crate::steps::merge_patch(&mut marked, &json!({ "metadata": { "annotations": { PAUSED_BY: run } } }));
    marked
}

/// Writes back what the `pauseReconciler` step before this one saved.
pub async fn resume(k: &Kube<'_>, p: &ReconcilerParams) -> Result<(), StepError> {
    let original = saved_original(k, p).ok_or_else(|| {
        StepError::failed(format!("nothing was saved for {} in this run, so there is nothing to resume", p.object))
    })?;
    send(k, p, &original, "resuming").await
}

/// The values the pause before this step saved.
fn saved_original(k: &Kube<'_>, p: &ReconcilerParams) -> Option<Value> {
    let graph = &k.ctx.graph;
    k.ctx.ancestors().into_iter().find_map(|a| {
        let step = graph.step(a);
        match step.action() {
            Some(Action::PauseReconciler(paused)) if paused.object == p.object => {
                k.ctx.captured_in(&step.id, PAUSE_ORIGINAL)
            }
            _ => None,
        }
    })
}

async fn read(k: &Kube<'_>, p: &ReconcilerParams) -> Result<Value, StepError> {
    let api = k.dynamic(&super::objects::resource(k, &p.object).await, p.object.namespace.as_deref());
    let live = api.get(&p.object.name).await.map_err(|e| classify(&format!("reading {}", p.object), e))?;
    serde_json::to_value(&live).map_err(|e| StepError::failed(e.to_string()))
}

/// Sends a merge patch to the object (the same patch twice changes nothing).
pub(super) async fn send(k: &Kube<'_>, p: &ReconcilerParams, patch: &Value, what: &str) -> Result<(), StepError> {
    let api = k.dynamic(&super::objects::resource(k, &p.object).await, p.object.namespace.as_deref());
    api.patch(&p.object.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|e| classify(&format!("{what} the controller of {}", p.object), e))
}
