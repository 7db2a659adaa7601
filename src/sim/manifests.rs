//! Loading manifests into the sim: files and directories of multi-document YAML (as
//! `kubectl get -o yaml` writes them, `kind: List` included), read with the project's YAML
//! loader, created in dependency order through admission; plus the built-in bootstrap
//! objects (namespaces, snapshot CRDs, default nodes).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::api::Subresource;
use super::controllers::reconcile;
use super::registry::keys;
use super::state::{State, name_of};
use crate::lang::yaml::{self, Limits};

/// The external-snapshotter CRDs, served unless the manifests bring their own.
/// With them, the GitOps CRDs the project wrote (Argo CD's Application, Flux's
/// Kustomization), so dumps of GitOps-managed clusters load as they are.
const BUILTIN_CRDS: [(&str, &str); 5] = [
    (
        "volumesnapshotclasses.snapshot.storage.k8s.io",
        include_str!("crds/snapshot.storage.k8s.io_volumesnapshotclasses.yaml"),
    ),
    (
        "volumesnapshotcontents.snapshot.storage.k8s.io",
        include_str!("crds/snapshot.storage.k8s.io_volumesnapshotcontents.yaml"),
    ),
    ("volumesnapshots.snapshot.storage.k8s.io", include_str!("crds/snapshot.storage.k8s.io_volumesnapshots.yaml")),
    ("applications.argoproj.io", include_str!("crds/argoproj.io_applications.yaml")),
    (
        "kustomizations.kustomize.toolkit.fluxcd.io",
        include_str!("crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml"),
    ),
];

/// An object read from a manifest, with where it came from for error messages.
#[derive(Clone, Debug)]
pub struct ManifestObject {
    pub origin: String,
    pub object: Value,
}

/// Reads every `.yaml`, `.yml` and `.json` file under `paths` (directories recursively, in
/// name order).
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<ManifestObject>, String> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut objects = Vec::new();
    for file in files {
        let parsed =
            yaml::read_file(&file, Limits::MANIFEST).map_err(|d| format!("{}: {}", file.display(), d.message))?;
        for (index, document) in parsed.documents.iter().enumerate() {
            let origin = format!("{} (document {})", file.display(), index + 1);
            flatten(document.to_json(), &origin, &mut objects);
        }
    }
    Ok(objects)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let is_manifest = child.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
        if child.is_dir() {
            collect_files(&child, files)?;
        } else if is_manifest {
            files.push(child);
        }
    }
    Ok(())
}

/// Expands `kind: List` and drops empty documents.
fn flatten(document: Value, origin: &str, out: &mut Vec<ManifestObject>) {
    if document.is_null() {
        return;
    }
    if document["kind"] == "List"
        || document["kind"].as_str().is_some_and(|k| k.ends_with("List")) && document["items"].is_array()
    {
        for item in document["items"].as_array().cloned().unwrap_or_default() {
            flatten(item, origin, out);
        }
        return;
    }
    out.push(ManifestObject { origin: origin.to_string(), object: document });
}

/// Order of creation: definitions and classes before the objects that refer to them.
fn priority(kind: &str) -> u8 {
    match kind {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        "StorageClass" | "VolumeSnapshotClass" | "Node" => 2,
        "PersistentVolume" => 3,
        "PersistentVolumeClaim" => 4,
        "VolumeSnapshotContent" => 5,
        "VolumeSnapshot" => 6,
        "Pod" => 8,
        // GitOps controllers compare what is loaded with their desired state: last.
        "Application" | "Kustomization" => 9,
        _ => 7,
    }
}

/// Creates the objects (auto-creating namespaces they live in), then reconciles once.
pub fn apply(state: &mut State, mut objects: Vec<ManifestObject>) -> Result<usize, String> {
    objects.sort_by_key(|o| priority(o.object["kind"].as_str().unwrap_or_default()));
    let count = objects.len();
    for ManifestObject { origin, object } in objects {
        create_one(state, object).map_err(|e| format!("{origin}: {e}"))?;
    }
    reconcile(state);
    Ok(count)
}

fn create_one(state: &mut State, mut object: Value) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let rt = state
        .registry
        .by_kind(&api_version, &kind)
        .cloned()
        .ok_or_else(|| format!("no kind {kind:?} is registered for version {api_version:?}"))?;
    let ns = if rt.namespaced {
        object["metadata"]["namespace"].as_str().unwrap_or("default").to_string()
    } else {
        String::new()
    };
    if rt.namespaced {
        ensure_namespace(state, &ns);
    }
    // A dump's resourceVersion belongs to another cluster; the sim assigns its own.
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    if kind == "Pod" {
        crate::sim::controllers::workloads::complete_container_statuses(&mut object);
    }
    let name = name_of(&object).to_string();
    // Namespaces the sim created itself (default, kube-system, or one auto-created for an
    // earlier object) take the manifest's version.
    if kind == "Namespace" && state.get(&keys::namespaces(), "", &name).is_some() {
        return state
            .update_object(&rt, "", &name, object, Subresource::Main)
            .map(|_| ())
            .map_err(|e| format!("{kind} {name}: {}", e.message));
    }
    state.create_object(&rt, &ns, object).map_err(|e| format!("{kind} {name}: {}", e.message))?;
    Ok(())
}

pub fn ensure_namespace(state: &mut State, ns: &str) {
    if state.get(&keys::namespaces(), "", ns).is_some() {
        return;
    }
    if let Some(rt) = state.registry.get(&keys::namespaces()).cloned() {
        let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns, "labels": { "kubernetes.io/metadata.name": ns } } });
        // Creating a namespace that does not exist yet with a valid name cannot fail.
        let _ = state.create_object(&rt, "", namespace);
    }
}

/// What every cluster has before manifests load: system namespaces, the snapshot CRDs and
/// the GitOps CRDs (unless `manifests` define them).
pub fn bootstrap(state: &mut State, manifests: &[ManifestObject]) -> Result<(), String> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure_namespace(state, ns);
    }
    for (crd_name, text) in BUILTIN_CRDS {
        let defined = manifests
            .iter()
            .any(|m| m.object["kind"] == "CustomResourceDefinition" && m.object["metadata"]["name"] == crd_name);
        if defined {
            continue;
        }
        let parsed = yaml::parse_str(crd_name, text, Limits::MANIFEST).map_err(|d| d.message)?;
        for document in &parsed.documents {
            create_one(state, document.to_json())?;
        }
    }
    Ok(())
}

/// Nodes for pods to run on when the manifests define none: one per zone, covering the
/// configured zones and every zone a loaded PV is pinned to.
pub fn default_nodes(state: &mut State) -> Result<(), String> {
    if state.store.count(&keys::nodes()) > 0 {
        return Ok(());
    }
    let mut zones = state.config.zones.clone();
    for pv in state.all(&keys::pvs()) {
        if let Some(zone) = super::controllers::pv_zone(&pv)
            && !zones.contains(&zone)
        {
            zones.push(zone);
        }
    }
    for zone in zones {
        let name = format!("sim-node-{zone}");
        let region = zone.trim_end_matches(|c: char| c.is_ascii_alphabetic()).to_string();
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": region,
            } },
            "spec": {},
            "status": {
                "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }],
                "allocatable": { "cpu": "8", "memory": "32Gi", "pods": "110" },
                "capacity": { "cpu": "8", "memory": "32Gi", "pods": "110" },
            },
        });
        create_one(state, node)?;
    }
    Ok(())
}
