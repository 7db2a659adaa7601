//! The API verbs (get, list, create, update, patch, delete) on the cluster state, independent
//! of HTTP: object metadata bookkeeping, optimistic concurrency, subresources, admission,
//! CRD registration and schema validation.

use std::sync::Arc;

use serde_json::{Value, json};

use super::admission;
use super::error::{ApiError, ApiResult};
use super::patch::{self, PatchKind};
use super::registry::{ResourceType, keys, resource_from_crd};
use super::schema;
use super::selector::Selector;
use super::state::{State, is_deleting, uid_of};
use super::store::identity;

/// Which part of an object a request addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
    Scale,
}

impl Subresource {
    pub fn parse(text: Option<&str>) -> ApiResult<Subresource> {
        match text {
            None => Ok(Subresource::Main),
            Some("status") => Ok(Subresource::Status),
            Some("scale") => Ok(Subresource::Scale),
            Some(_) => Err(ApiError::no_route()),
        }
    }
}

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn parse(text: &str) -> ApiResult<Propagation> {
        match text {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::bad_request(format!("unsupported propagationPolicy {other:?}"))),
        }
    }
}

pub const FOREGROUND_DELETION: &str = "foregroundDeletion";

impl State {
    pub fn get_object(&self, rt: &ResourceType, ns: &str, name: &str, sub: Subresource) -> ApiResult<Arc<Value>> {
        let object = self.get(&rt.key(), ns, name).ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        match sub {
            Subresource::Scale => scale_view(rt, &object).map(Arc::new),
            _ => Ok(object),
        }
    }

    /// Objects matching the selectors, and the resourceVersion the list is consistent with.
    pub fn list_objects(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> (Vec<Arc<Value>>, u64) {
        let items = self
            .store
            .list(&rt.key(), ns)
            .into_iter()
            .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
            .collect();
        (items, self.store.resource_version())
    }

    /// Like [`State::list_objects`], as the stored JSON encodings (for list responses).
    pub fn list_encoded(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> (Vec<hyper::body::Bytes>, u64) {
        let items = self.store.list_encoded(&rt.key(), ns, |o| labels.matches_labels(o) && fields.matches_fields(o));
        (items, self.store.resource_version())
    }

    pub fn create_object(&mut self, rt: &ResourceType, ns: &str, mut object: Value) -> ApiResult<Arc<Value>> {
        check_type(rt, &object)?;
        self.assign_name(&mut object);
        let name = identity(&object).1;
        if rt.namespaced {
            self.require_namespace(ns)?;
            object["metadata"]["namespace"] = json!(ns);
        } else if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        if self.get(&rt.key(), ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        self.stamp_new(&mut object);
        admission::default_on_create(rt, &mut object);
        self.admit(rt, &mut object, None)?;
        let stored = self.save(&rt.key(), object);
        if rt.key() == keys::crds() {
            self.register_crd(&stored);
        }
        Ok(stored)
    }

    /// Metadata the server owns on a new object. A manifest dump's uid and creationTimestamp
    /// are kept so references between dumped objects (claimRef.uid) stay valid.
    fn stamp_new(&mut self, object: &mut Value) {
        let now = self.now_text();
        let meta = &mut object["metadata"];
        if meta["uid"].as_str().is_none_or(str::is_empty) {
            meta["uid"] = json!(self.new_uid());
        }
        if meta["creationTimestamp"].as_str().is_none() {
            meta["creationTimestamp"] = json!(now);
        }
        meta["generation"] = json!(1);
        if let Some(map) = meta.as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("managedFields");
            map.remove("selfLink");
        }
    }

    fn assign_name(&mut self, object: &mut Value) {
        let meta = &mut object["metadata"];
        if meta["name"].as_str().is_none_or(str::is_empty)
            && let Some(prefix) = meta["generateName"].as_str().map(str::to_string)
        {
            let suffix = self.new_hex(5);
            object["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
        }
    }

    fn require_namespace(&self, ns: &str) -> ApiResult<()> {
        if self.get(&keys::namespaces(), "", ns).is_some() {
            Ok(())
        } else {
            Err(ApiError::not_found("", "namespaces", ns))
        }
    }

    /// Built-in admission or, for CRD kinds, schema and CEL validation (which prunes).
    fn admit(&self, rt: &ResourceType, object: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        if let Some(schema) = &rt.schema {
            let causes = schema::validate(schema, object, old);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, identity(object).1.as_str(), causes));
            }
        }
        if rt.key() == keys::crds() {
            resource_from_crd(object).map_err(|why| {
                ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &identity(object).1,
                    vec![super::error::Cause::invalid("spec", &object["spec"], &why)],
                )
            })?;
        }
        admission::validate(self, rt, object, old)
    }

    fn register_crd(&mut self, crd: &Value) {
        if let Ok(resource) = resource_from_crd(crd) {
            self.registry.insert(resource);
            let mut established = crd.clone();
            established["status"] = json!({
                "conditions": [
                    { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts" },
                    { "type": "Established", "status": "True", "reason": "InitialNamesAccepted" },
                ],
                "acceptedNames": crd["spec"]["names"],
                "storedVersions": [crd["spec"]["versions"][0]["name"]],
            });
            self.save(&keys::crds(), established);
        }
    }

    /// PUT: replaces the object (or its status / scale), failing with 409 on a stale
    /// resourceVersion.
    pub fn update_object(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        sub: Subresource,
    ) -> ApiResult<Arc<Value>> {
        let current = self.get_object(rt, ns, name, Subresource::Main)?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty())
            && rv != current["metadata"]["resourceVersion"].as_str().unwrap_or_default()
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if sub == Subresource::Scale {
            return self.apply_scale(rt, &current, &body);
        }
        if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                body["metadata"]["name"].as_str().unwrap_or_default()
            )));
        }
        check_type(rt, &body)?;
        let merged = merge_for_update(rt, &current, body, sub);
        self.commit_checked(rt, &current, merged)
    }

    /// PATCH: applies the patch to the current object, then updates like PUT. Server-side
    /// apply to a missing object creates it.
    pub fn patch_object(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: Subresource,
    ) -> ApiResult<Arc<Value>> {
        let current = match self.get_object(rt, ns, name, Subresource::Main) {
            Err(e) if e.code == 404 && kind == PatchKind::Apply && sub == Subresource::Main => {
                let mut object = body.clone();
                object["metadata"]["name"] = json!(name);
                return self.create_object(rt, ns, object);
            }
            other => other?,
        };
        let view = if sub == Subresource::Scale { Arc::new(scale_view(rt, &current)?) } else { current.clone() };
        let patched = patch::apply(kind, &view, body)?;
        if patched["metadata"]["resourceVersion"] != view["metadata"]["resourceVersion"] && kind != PatchKind::Apply {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if sub == Subresource::Scale {
            return self.apply_scale(rt, &current, &patched);
        }
        let merged = merge_for_update(rt, &current, patched, sub);
        self.commit_checked(rt, &current, merged)
    }

    fn apply_scale(&mut self, rt: &ResourceType, current: &Value, scale: &Value) -> ApiResult<Arc<Value>> {
        let replicas = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0).ok_or_else(|| {
            ApiError::invalid(
                "autoscaling",
                "Scale",
                super::state::name_of(current),
                vec![super::error::Cause::invalid(
                    "spec.replicas",
                    &scale["spec"]["replicas"],
                    "must be greater than or equal to 0",
                )],
            )
        })?;
        let mut updated = current.clone();
        updated["spec"]["replicas"] = json!(replicas);
        let stored = self.commit_checked(rt, current, updated)?;
        scale_view(rt, &stored).map(Arc::new)
    }

    /// Validates and stores an update, bumping generation when the spec changed.
    fn commit_checked(&mut self, rt: &ResourceType, current: &Value, mut updated: Value) -> ApiResult<Arc<Value>> {
        // Server-owned metadata cannot be changed by clients.
        for field in ["uid", "creationTimestamp", "deletionTimestamp", "generation", "namespace", "name"] {
            updated["metadata"][field] = current["metadata"][field].clone();
            if updated["metadata"][field].is_null()
                && let Some(meta) = updated["metadata"].as_object_mut()
            {
                meta.remove(field);
            }
        }
        if is_deleting(current) {
            // Finalizers may only be removed from an object being deleted.
            let old = current["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if let Some(list) = updated["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| old.contains(f));
            }
        }
        self.admit(rt, &mut updated, Some(current))?;
        if without_meta_and_status(&updated) != without_meta_and_status(current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            updated["metadata"]["generation"] = json!(generation);
        }
        if *current == updated {
            return Ok(Arc::new(updated)); // a no-op update does not bump resourceVersion
        }
        Ok(self.commit_update(&rt.key(), updated))
    }

    /// DELETE: marks the object terminating while finalizers remain, else removes it; the
    /// garbage collector then handles dependents per `propagation`.
    pub fn delete_with(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Propagation,
        precondition_uid: Option<&str>,
    ) -> ApiResult<Arc<Value>> {
        let current = self.get_object(rt, ns, name, Subresource::Main)?;
        if precondition_uid.is_some_and(|uid| uid != uid_of(&current)) {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if rt.key() == keys::crds() {
            self.unregister_crd(&current);
        }
        match propagation {
            Propagation::Orphan => self.orphan_dependents(uid_of(&current).to_string()),
            Propagation::Foreground if !is_deleting(&current) && self.has_dependents(uid_of(&current)) => {
                let mut updated = (*current).clone();
                let mut finalizers = updated["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
                finalizers.push(json!(FOREGROUND_DELETION));
                updated["metadata"]["finalizers"] = json!(finalizers);
                self.save(&rt.key(), updated);
            }
            _ => {}
        }
        let current = self.get_object(rt, ns, name, Subresource::Main)?;
        self.gc_pending = true;
        Ok(self.delete_object(&rt.key(), &current))
    }

    fn unregister_crd(&mut self, crd: &Value) {
        if let Ok(resource) = resource_from_crd(crd) {
            let key = resource.key();
            let time = self.now_text();
            for object in self.store.list(&key, None) {
                let (ns, name) = identity(&object);
                self.store.remove(&key, &ns, &name, &time);
            }
            self.registry.remove(&key);
        }
    }
}

/// The object must be of the kind served at the URL (when the body says).
fn check_type(rt: &ResourceType, object: &Value) -> ApiResult<()> {
    if !object.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let kind_ok = object["kind"].as_str().is_none_or(|k| k == rt.kind);
    let version_ok = object["apiVersion"].as_str().is_none_or(|v| v == rt.api_version());
    if kind_ok && version_ok {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "the API version in the data ({}) does not match the expected API version ({}) or kind ({}) does not match {}",
        object["apiVersion"].as_str().unwrap_or_default(),
        rt.api_version(),
        object["kind"].as_str().unwrap_or_default(),
        rt.kind
    )))
}

/// The status subresource splits ownership: the main resource ignores status changes, the
/// status subresource ignores everything but status.
fn merge_for_update(rt: &ResourceType, current: &Value, mut body: Value, sub: Subresource) -> Value {
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    if !rt.has_status {
        return body;
    }
    match sub {
        Subresource::Status => {
            let mut updated = current.clone();
            updated["status"] = body["status"].clone();
            updated
        }
        _ => {
            match current.get("status") {
                Some(status) => body["status"] = status.clone(),
                None => {
                    if let Some(map) = body.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            body
        }
    }
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The autoscaling/v1 Scale of a StatefulSet or Deployment.
fn scale_view(rt: &ResourceType, object: &Value) -> ApiResult<Value> {
    if !rt.has_scale {
        return Err(ApiError::not_found(&rt.group, &format!("{}/scale", rt.plural), super::state::name_of(object)));
    }
    let selector = &object["spec"]["selector"]["matchLabels"];
    let selector_text: Vec<String> = selector
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    let meta = &object["metadata"];
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector_text.join(",") },
    }))
}
