//! Pausing and resuming the controllers that would fight a plan (Argo CD, Flux,
//! operators): a JSON merge patch on the object they read. The values the patch
//! replaces are saved to the checkpoint before it is sent, so resume (and rollback)
//! writes back exactly what was there, and removes what was not.

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::{Kube, classify};
use crate::exec::StepError;
use crate::steps::{Action, PAUSE_ORIGINAL, ReconcilerParams, restoring_patch};

/// Saves what the patch replaces (once: a re-run after a crash must not save the paused
/// state as the original), then pauses.
pub async fn pause(k: &Kube<'_>, p: &ReconcilerParams) -> Result<(), StepError> {
    if k.ctx.captured(PAUSE_ORIGINAL).is_none() {
        let live = read(k, p).await?;
        k.ctx.capture(PAUSE_ORIGINAL, restoring_patch(&p.patch, &live))?;
    }
    send(k, p, &p.patch, "pausing").await
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
