//! GitOps controllers: an Argo CD-like controller for `Application` (argoproj.io/v1alpha1)
//! and a Flux-like one for `Kustomization` (kustomize.toolkit.fluxcd.io/v1).
//!
//! The sim has no Git: an Application or Kustomization names its desired manifests with
//! the annotation `sim.drplan.dev/manifests: NAMESPACE/CONFIGMAP`; every value of that
//! ConfigMap's `data` is a YAML stream of manifests (the sim's stand-in for the repository).
//!
//! Both compare each desired object with the live one (the fields the manifest sets;
//! what the cluster adds, status included, is not drift) and report it in
//! `status.sync.status` (`Synced`/`OutOfSync`) and `status.health.status`. They revert
//! drift, the desired fields written back through the API, once it has lasted
//! `revert_after` (the config, or `sim.drplan.dev/revert-after` on the object), when:
//! - Argo CD: `spec.syncPolicy.automated` is set with `selfHeal: true` (automated sync
//!   without self-heal syncs new revisions only, and never reverts a change made in the
//!   cluster, as Argo CD does);
//! - Flux: `spec.suspend` is not `true`.
//!
//! Objects they apply get Argo CD's tracking annotation (`argocd.argoproj.io/tracking-id`)
//! or Flux's labels (`kustomize.toolkit.fluxcd.io/name`, `.../namespace`).

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::lang::yaml::{self, Limits};
use crate::sim::api::Subresource;
use crate::sim::clock::{after, parse_time};
use crate::sim::registry::ResourceKey;
use crate::sim::state::{State, is_deleting, name_of, namespace_of};

/// The annotation naming the ConfigMap that holds the desired manifests.
pub const MANIFESTS: &str = "sim.drplan.dev/manifests";
/// Overrides the config's delay before drift is reverted.
pub const REVERT_AFTER: &str = "sim.drplan.dev/revert-after";
pub const ARGO_TRACKING: &str = "argocd.argoproj.io/tracking-id";
pub const FLUX_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
pub const FLUX_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";

/// Which GitOps tool a controller plays.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    ArgoCd,
    Flux,
}

impl Tool {
    fn key(self) -> ResourceKey {
        match self {
            Tool::ArgoCd => ResourceKey::new("argoproj.io", "applications"),
            Tool::Flux => ResourceKey::new("kustomize.toolkit.fluxcd.io", "kustomizations"),
        }
    }

    fn component(self) -> &'static str {
        match self {
            Tool::ArgoCd => "argocd-application-controller",
            Tool::Flux => "kustomize-controller",
        }
    }

    /// Whether the owner reverts drift made in the cluster.
    fn self_heals(self, owner: &Value) -> bool {
        match self {
            Tool::ArgoCd => {
                let automated = &owner["spec"]["syncPolicy"]["automated"];
                automated.is_object() && automated["selfHeal"] == true
            }
            Tool::Flux => owner["spec"]["suspend"] != true,
        }
    }

    /// Where desired objects without a namespace go.
    fn default_namespace(self, owner: &Value) -> String {
        let field = match self {
            Tool::ArgoCd => &owner["spec"]["destination"]["namespace"],
            Tool::Flux => &owner["spec"]["targetNamespace"],
        };
        field.as_str().unwrap_or_else(|| namespace_of(owner)).to_string()
    }

    /// Marks an object as managed by `owner`, as the real tool does.
    fn stamp(self, owner: &Value, object: &mut Value, namespace: &str) {
        match self {
            Tool::ArgoCd => {
                let (api_version, kind) = (object_api_version(object), object_kind(object));
                let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                let id = format!("{}:{group}/{kind}:{namespace}/{}", name_of(owner), name_of(object));
                object["metadata"]["annotations"][ARGO_TRACKING] = json!(id);
            }
            Tool::Flux => {
                object["metadata"]["labels"][FLUX_NAME] = json!(name_of(owner));
                object["metadata"]["labels"][FLUX_NAMESPACE] = json!(namespace_of(owner));
            }
        }
    }
}

fn object_api_version(object: &Value) -> String {
    object["apiVersion"].as_str().unwrap_or_default().to_string()
}

fn object_kind(object: &Value) -> String {
    object["kind"].as_str().unwrap_or_default().to_string()
}

pub fn reconcile_applications(state: &mut State) -> bool {
    reconcile_tool(state, Tool::ArgoCd)
}

pub fn reconcile_kustomizations(state: &mut State) -> bool {
    reconcile_tool(state, Tool::Flux)
}

fn reconcile_tool(state: &mut State, tool: Tool) -> bool {
    if state.registry.get(&tool.key()).is_none() {
        return false;
    }
    let mut changed = false;
    for owner in state.all(&tool.key()) {
        if !is_deleting(&owner) && owner["metadata"]["annotations"][MANIFESTS].is_string() {
            changed |= sync_owner(state, tool, &owner);
        }
    }
    changed
}

/// One desired object and how it differs from the live one.
struct Compared {
    desired: Value,
    namespace: String,
    live: Option<Value>,
}

impl Compared {
    fn in_sync(&self) -> bool {
        self.live.as_ref().is_some_and(|live| is_subset(&desired_fields(&self.desired), live))
    }
}

fn sync_owner(state: &mut State, tool: Tool, owner: &Value) -> bool {
    let desired = match desired_manifests(state, owner) {
        Ok(desired) => desired,
        Err(message) => return write_status(state, tool, owner, "Unknown", "Missing", Some(message), None),
    };
    let compared: Vec<Compared> = desired
        .into_iter()
        .map(|d| {
            let namespace =
                d["metadata"]["namespace"].as_str().map(String::from).unwrap_or(tool.default_namespace(owner));
            let live = live_object(state, &d, &namespace);
            Compared { desired: d, namespace, live }
        })
        .collect();
    let drifted: Vec<&Compared> = compared.iter().filter(|c| !c.in_sync()).collect();
    if drifted.is_empty() {
        let health = health_of(&compared);
        return write_status(state, tool, owner, "Synced", health, None, None);
    }
    let since = owner["status"]["sync"]["driftDetectedAt"].as_str().and_then(parse_time).unwrap_or_else(|| state.now());
    let due = after(since, revert_delay(state, owner));
    if !tool.self_heals(owner) || state.now() < due {
        if tool.self_heals(owner) {
            state.wake_at(due);
        }
        let since_text = crate::sim::clock::format_time(since);
        return write_status(state, tool, owner, "OutOfSync", health_of(&compared), None, Some(since_text));
    }
    let mut changed = false;
    for c in drifted {
        changed |= revert(state, tool, owner, c);
    }
    changed
}

/// Writes `status.sync` and `status.health`; true if they changed.
fn write_status(
    state: &mut State,
    tool: Tool,
    owner: &Value,
    sync: &str,
    health: &str,
    message: Option<String>,
    drift_since: Option<String>,
) -> bool {
    let mut updated = owner.clone();
    let mut sync_status = json!({ "status": sync });
    if let Some(since) = drift_since {
        sync_status["driftDetectedAt"] = json!(since);
    }
    updated["status"]["sync"] = sync_status;
    updated["status"]["health"] = json!({ "status": health });
    match message {
        Some(message) => updated["status"]["conditions"] = json!([{ "type": "ComparisonError", "message": message }]),
        None => {
            if let Some(status) = updated["status"].as_object_mut() {
                status.remove("conditions");
            }
        }
    }
    if tool == Tool::Flux {
        let ready = sync == "Synced";
        updated["status"]["conditions"] = json!([{
            "type": "Ready", "status": if ready { "True" } else { "False" },
            "reason": if ready { "ReconciliationSucceeded" } else { "Progressing" },
        }]);
    }
    state.save_if_changed(&tool.key(), owner, updated)
}

/// Applies the desired fields of one object (creating it when it is missing).
fn revert(state: &mut State, tool: Tool, owner: &Value, c: &Compared) -> bool {
    let Some(rt) = state.registry.by_kind(&object_api_version(&c.desired), &object_kind(&c.desired)).cloned() else {
        return false;
    };
    let ns = if rt.namespaced { c.namespace.clone() } else { String::new() };
    let name = name_of(&c.desired).to_string();
    let mut target = match &c.live {
        Some(live) => {
            let mut merged = live.clone();
            merge_into(&mut merged, &desired_fields(&c.desired));
            merged
        }
        None => c.desired.clone(),
    };
    tool.stamp(owner, &mut target, &ns);
    let result = match &c.live {
        Some(_) => state.update_object(&rt, &ns, &name, target, Subresource::Main),
        None => state.create_object(&rt, &ns, target),
    };
    let (warning, reason, message) = match &result {
        Ok(_) => (false, "ResourceUpdated", format!("self-healed {} {ns}/{name} to the desired state", rt.kind)),
        Err(e) => (true, "SyncFailed", format!("syncing {} {ns}/{name}: {}", rt.kind, e.message)),
    };
    state.record_event(owner, warning, reason, &message, tool.component());
    result.is_ok()
}

/// How long drift of what `owner` manages lasts before it is reverted.
pub fn revert_delay(state: &State, owner: &Value) -> Duration {
    owner["metadata"]["annotations"][REVERT_AFTER]
        .as_str()
        .and_then(|text| humantime::parse_duration(text).ok())
        .unwrap_or(state.config.revert_after)
}

/// The manifests of the ConfigMap the owner names, in data-key order.
fn desired_manifests(state: &State, owner: &Value) -> Result<Vec<Value>, String> {
    let reference = owner["metadata"]["annotations"][MANIFESTS].as_str().unwrap_or_default();
    let (ns, name) = reference.split_once('/').unwrap_or((namespace_of(owner), reference));
    let Some(config_map) = state.get(&ResourceKey::new("", "configmaps"), ns, name) else {
        return Err(format!("ConfigMap {ns}/{name} holding the desired manifests does not exist"));
    };
    let mut manifests = Vec::new();
    let data = config_map["data"].as_object().cloned().unwrap_or_default();
    for (key, text) in data {
        let text = text.as_str().unwrap_or_default();
        let parsed = yaml::parse_str(&key, text, Limits::MANIFEST).map_err(|d| format!("{key}: {}", d.message))?;
        manifests.extend(parsed.documents.iter().map(|d| d.to_json()).filter(Value::is_object));
    }
    Ok(manifests)
}

fn live_object(state: &State, desired: &Value, namespace: &str) -> Option<Value> {
    let rt = state.registry.by_kind(&object_api_version(desired), &object_kind(desired))?;
    let ns = if rt.namespaced { namespace } else { "" };
    state.get(&rt.key(), ns, name_of(desired)).map(|o| (*o).clone())
}

/// Argo CD's health, for the kinds this sim runs: a workload is Healthy when every
/// replica is ready, Progressing otherwise; a missing object is Missing.
fn health_of(compared: &[Compared]) -> &'static str {
    let mut health = "Healthy";
    for c in compared {
        let Some(live) = &c.live else { return "Missing" };
        if matches!(live["kind"].as_str(), Some("StatefulSet" | "Deployment")) {
            let wanted = live["spec"]["replicas"].as_u64().unwrap_or(1);
            let ready = live["status"]["readyReplicas"].as_u64().unwrap_or(0);
            if ready < wanted {
                health = "Progressing";
            }
        }
    }
    health
}

/// The fields of a desired manifest that are compared and written: all but status and
/// the server-owned metadata.
fn desired_fields(desired: &Value) -> Value {
    let mut fields = desired.clone();
    if let Some(map) = fields.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = fields["metadata"].as_object_mut() {
        meta.retain(|k, _| matches!(k.as_str(), "name" | "labels" | "annotations"));
    }
    fields
}

/// Whether every field `desired` sets has that value in `live` (arrays element by element).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            d.iter().all(|(k, v)| l.get(k).is_some_and(|lv| is_subset(v, lv)) || v.is_null() && !l.contains_key(k))
        }
        (Value::Array(d), Value::Array(l)) => d.len() == l.len() && d.iter().zip(l).all(|(d, l)| is_subset(d, l)),
        (d, l) => d == l || numbers_equal(d, l),
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// Writes `desired`'s fields over `target` (objects merged, everything else replaced).
fn merge_into(target: &mut Value, desired: &Value) {
    match (target, desired) {
        (Value::Object(t), Value::Object(d)) => merge_maps(t, d),
        (t, d) => *t = d.clone(),
    }
}

fn merge_maps(target: &mut Map<String, Value>, desired: &Map<String, Value>) {
    for (key, value) in desired {
        match target.get_mut(key) {
            Some(existing) if existing.is_object() && value.is_object() => merge_into(existing, value),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Keys of the `Application` resource, for tests and tools.
pub fn applications() -> ResourceKey {
    Tool::ArgoCd.key()
}

/// Keys of the `Kustomization` resource, for tests and tools.
pub fn kustomizations() -> ResourceKey {
    Tool::Flux.key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_the_cluster_adds_are_not_drift_but_a_changed_field_is() {
        let desired =
            json!({ "spec": { "replicas": 3, "template": { "spec": { "containers": [{ "name": "db" }] } } } });
        let live = json!({ "spec": { "replicas": 3, "template": { "spec": { "containers": [{ "name": "db", "imagePullPolicy": "IfNotPresent" }] } } }, "status": {} });
        assert!(is_subset(&desired, &live));
        let scaled = json!({ "spec": { "replicas": 0, "template": { "spec": { "containers": [{ "name": "db" }] } } } });
        assert!(!is_subset(&desired, &scaled));
    }

    #[test]
    fn merging_writes_the_desired_fields_and_keeps_the_rest() {
        let mut live = json!({ "spec": { "replicas": 0, "serviceName": "db" }, "status": { "replicas": 0 } });
        merge_into(&mut live, &json!({ "spec": { "replicas": 3 } }));
        assert_eq!(live, json!({ "spec": { "replicas": 3, "serviceName": "db" }, "status": { "replicas": 0 } }));
    }

    #[test]
    fn only_automated_sync_with_self_heal_reverts_argo_drift_and_flux_unless_suspended() {
        let app = |policy: Value| json!({ "spec": { "syncPolicy": policy } });
        assert!(Tool::ArgoCd.self_heals(&app(json!({ "automated": { "selfHeal": true } }))));
        assert!(!Tool::ArgoCd.self_heals(&app(json!({ "automated": { "prune": true } }))));
        assert!(!Tool::ArgoCd.self_heals(&app(json!({}))));
        assert!(Tool::Flux.self_heals(&json!({ "spec": { "interval": "10m" } })));
        assert!(!Tool::Flux.self_heals(&json!({ "spec": { "suspend": true } })));
    }
}
