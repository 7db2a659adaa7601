//! Object steps: save a manifest into the checkpoint, delete it, recreate it.

use kube::api::{DeleteParams, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::{Kube, classify, clean_manifest, create_or_exists, is_not_found};
use crate::exec::StepError;
use crate::steps::{Action, ObjectRef};

/// The API resource of an object: discovered, or guessed from the kind when discovery fails.
pub(super) async fn resource(k: &Kube<'_>, object: &ObjectRef) -> ApiResource {
    let (group, version) = object.api_version.rsplit_once('/').unwrap_or(("", &object.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &object.kind);
    match kube::discovery::pinned_kind(&k.client, &gvk).await {
        Ok((resource, _)) => resource,
        Err(_) => ApiResource::from_gvk(&gvk),
    }
}

/// Captures the object's manifest (Secrets are refused: their data never goes into a checkpoint).
pub async fn save(k: &Kube<'_>, object: &ObjectRef) -> Result<(), StepError> {
    if object.kind == "Secret" {
        return Err(StepError::unsafe_(format!(
            "refusing to save {object}: drplan never writes Secret data into checkpoints"
        )));
    }
    if k.ctx.captured("manifest").is_some() {
        return Ok(());
    }
    let api = k.dynamic(&resource(k, object).await, object.namespace.as_deref());
    let live = api.get(&object.name).await.map_err(|e| classify(&format!("reading {object}"), e))?;
    let manifest = clean_manifest(serde_json::to_value(&live).map_err(|e| StepError::failed(e.to_string()))?);
    k.ctx.capture("manifest", manifest)
}

/// The manifest saved by the `saveObject` step this one depends on.
fn saved_manifest(k: &Kube<'_>, object: &ObjectRef) -> Option<Value> {
    let graph = &k.ctx.graph;
    k.ctx.ancestors().into_iter().find_map(|a| {
        let step = graph.step(a);
        match step.action() {
            Some(Action::SaveObject(p)) if &p.object == object => k.ctx.captured_in(&step.id, "manifest"),
            _ => None,
        }
    })
}

pub async fn delete(k: &Kube<'_>, object: &ObjectRef) -> Result<(), StepError> {
    if saved_manifest(k, object).is_none() {
        return Err(StepError::unsafe_(format!("refusing to delete {object}: it was not saved earlier in this run")));
    }
    let api = k.dynamic(&resource(k, object).await, object.namespace.as_deref());
    match api.delete(&object.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(classify(&format!("deleting {object}"), e)),
    }
}

pub async fn restore(k: &Kube<'_>, object: &ObjectRef) -> Result<(), StepError> {
    let manifest = saved_manifest(k, object)
        .ok_or_else(|| StepError::failed(format!("no saved manifest of {object} in this run")))?;
    create_from_manifest(k, object, manifest).await
}

/// Creates an object from a saved manifest; an existing one of that name is kept.
pub(super) async fn create_from_manifest(k: &Kube<'_>, object: &ObjectRef, manifest: Value) -> Result<(), StepError> {
    let api = k.dynamic(&resource(k, object).await, object.namespace.as_deref());
    let dynamic: DynamicObject = serde_json::from_value(manifest).map_err(|e| StepError::failed(e.to_string()))?;
    create_or_exists(&api, &dynamic, &object.to_string()).await.map(|_| ())
}
