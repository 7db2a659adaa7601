//! An in-memory index of cluster objects that answers [`ClusterFacts`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PodSpec};

use super::facts::*;
use crate::diag::{Diagnostic, Diagnostics};
use crate::lang::Quantity;
use crate::lang::de::from_node;
use crate::lang::yaml::{self, Limits, Node};
use crate::steps::{ReclaimPolicy, WorkloadKind, WorkloadRef};

type Key = (String, String);

/// Objects of one cluster, indexed by namespace and name.
#[derive(Default, Debug)]
pub struct Inventory {
    pub statefulsets: HashMap<Key, StatefulSet>,
    pub deployments: HashMap<Key, Deployment>,
    pub claims: HashMap<Key, PersistentVolumeClaim>,
    pub volumes: HashMap<String, PersistentVolume>,
    pub snapshots: HashMap<Key, SnapshotFacts>,
    /// Argo CD Applications and Flux Kustomizations/HelmReleases, as read.
    pub gitops_objects: Vec<serde_json::Value>,
    /// Objects of kinds drplan does not index, counted for reports.
    pub other_objects: usize,
    /// The `Namespace` objects seen; `None` when the source lists none (live state is
    /// read per namespace, so it cannot tell an empty namespace from a missing one).
    pub namespaces: Option<BTreeSet<String>>,
    pod_volume_users: std::sync::OnceLock<HashMap<Key, Vec<WorkloadRef>>>,
}

fn key(namespace: Option<&String>, name: Option<&String>) -> Key {
    (namespace.cloned().unwrap_or_else(|| "default".into()), name.cloned().unwrap_or_default())
}

impl Inventory {
    /// Adds one object (or every item of a `List`) from a decoded manifest document.
    pub fn add_document(&mut self, doc: &Node) -> Result<(), crate::lang::de::DeError> {
        let kind = doc.get("kind").and_then(Node::as_str).unwrap_or_default();
        match kind {
            "List" => {
                if let Some(crate::lang::yaml::Value::Seq(items)) = doc.get("items").map(|n| &n.value) {
                    for item in items {
                        self.add_document(item)?;
                    }
                }
            }
            "StatefulSet" => {
                let o: StatefulSet = from_node(doc)?;
                self.statefulsets.insert(key(o.metadata.namespace.as_ref(), o.metadata.name.as_ref()), o);
            }
            "Deployment" => {
                let o: Deployment = from_node(doc)?;
                self.deployments.insert(key(o.metadata.namespace.as_ref(), o.metadata.name.as_ref()), o);
            }
            "PersistentVolumeClaim" => {
                let o: PersistentVolumeClaim = from_node(doc)?;
                self.claims.insert(key(o.metadata.namespace.as_ref(), o.metadata.name.as_ref()), o);
            }
            "PersistentVolume" => {
                let o: PersistentVolume = from_node(doc)?;
                self.volumes.insert(o.metadata.name.clone().unwrap_or_default(), o);
            }
            "Namespace" => {
                let name = doc.get("metadata").and_then(|m| m.get("name")).and_then(Node::as_str);
                self.namespaces.get_or_insert_with(BTreeSet::new).insert(name.unwrap_or_default().to_string());
                self.other_objects += 1;
            }
            "Application" | "Kustomization" | "HelmRelease" if is_reconciler_kind(doc) => {
                self.gitops_objects.push(crate::lang::de::from_node::<serde_json::Value>(doc)?);
            }
            "VolumeSnapshot" => {
                let (key, facts) = snapshot_facts(&crate::lang::de::from_node::<serde_json::Value>(doc)?);
                self.snapshots.insert(key, facts);
            }
            _ => self.other_objects += 1,
        }
        Ok(())
    }

    /// Loads manifest files, and every manifest file under directories, into one inventory.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Inventory, Diagnostics> {
        let mut inventory = Inventory::default();
        let mut diags = Diagnostics::default();
        for path in paths {
            let files = if path.is_dir() {
                manifest_files(path).map_err(|d| Diagnostics(vec![d]))?
            } else if path.is_file() {
                vec![path.clone()]
            } else {
                let message = format!("{}: no such file or directory of manifests", path.display());
                return Err(Diagnostics(vec![Diagnostic::error("drplan::input::io", message)]));
            };
            for file in files {
                inventory.add_file(&file, &mut diags);
            }
        }
        if diags.has_errors() { Err(diags) } else { Ok(inventory) }
    }

    /// Workloads of a kind in a namespace, by name.
    fn workload_names(&self, namespace: &str, kind: WorkloadKind) -> Vec<String> {
        let names: Vec<&Key> = match kind {
            WorkloadKind::StatefulSet => self.statefulsets.keys().collect(),
            WorkloadKind::Deployment => self.deployments.keys().collect(),
        };
        let mut names: Vec<String> =
            names.into_iter().filter(|(ns, _)| ns == namespace).map(|(_, n)| n.clone()).collect();
        names.sort();
        names
    }

    /// Namespaces known to exist: listed ones, or those that hold an indexed object.
    fn known_namespaces(&self) -> BTreeSet<String> {
        let holding = self.statefulsets.keys().chain(self.deployments.keys()).chain(self.claims.keys());
        let mut known: BTreeSet<String> = holding.map(|(ns, _)| ns.clone()).collect();
        known.extend(self.namespaces.iter().flatten().cloned());
        known
    }

    /// Loads every `*.yaml`/`*.yml`/`*.json` file under `dir` (recursively).
    pub fn from_dir(dir: &Path) -> Result<Inventory, Diagnostics> {
        let mut inventory = Inventory::default();
        let mut diags = Diagnostics::default();
        for path in manifest_files(dir).map_err(|d| Diagnostics(vec![d]))? {
            inventory.add_file(&path, &mut diags);
        }
        if diags.has_errors() { Err(diags) } else { Ok(inventory) }
    }

    fn add_file(&mut self, path: &Path, diags: &mut Diagnostics) {
        let file = match yaml::read_file(path, Limits::MANIFEST) {
            Ok(file) => file,
            Err(d) => return diags.push(d),
        };
        for doc in &file.documents {
            if let Err(e) = self.add_document(doc) {
                let span = e.span.unwrap_or(doc.span);
                diags.push(
                    Diagnostic::error("drplan::manifest::invalid", format!("invalid manifest: {}", e.message))
                        .in_file(&file.source)
                        .with_label(span, "here"),
                );
            }
        }
    }
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            Diagnostic::error("drplan::input::io", format!("{}: cannot read directory: {e}", dir.display()))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(ext, "yaml" | "yml" | "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The key and facts of a VolumeSnapshot object.
pub fn snapshot_facts(object: &serde_json::Value) -> (Key, SnapshotFacts) {
    let text = |pointer: &str| object.pointer(pointer).and_then(serde_json::Value::as_str).map(String::from);
    let key = key(text("/metadata/namespace").as_ref(), text("/metadata/name").as_ref());
    let facts = SnapshotFacts {
        ready_to_use: object.pointer("/status/readyToUse") == Some(&serde_json::Value::Bool(true)),
        source_claim: text("/spec/source/persistentVolumeClaimName"),
    };
    (key, facts)
}

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<Quantity> {
    q.and_then(|q| q.0.parse().ok())
}

fn pod_claims(spec: Option<&PodSpec>) -> Vec<PodClaim> {
    spec.and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_ref()?;
            Some(PodClaim { volume: v.name.clone(), claim: claim.claim_name.clone() })
        })
        .collect()
}

impl Inventory {
    fn workload_facts(&self, namespace: &str, workload: &WorkloadRef) -> Option<WorkloadFacts> {
        let k = (namespace.to_string(), workload.name.clone());
        match workload.kind {
            WorkloadKind::StatefulSet => {
                let sts = self.statefulsets.get(&k)?;
                let spec = sts.spec.as_ref()?;
                let claim_templates = spec
                    .volume_claim_templates
                    .iter()
                    .flatten()
                    .map(|t| {
                        let tspec = t.spec.as_ref();
                        ClaimTemplateFacts {
                            name: t.metadata.name.clone().unwrap_or_default(),
                            size: quantity(
                                tspec
                                    .and_then(|s| s.resources.as_ref())
                                    .and_then(|r| r.requests.as_ref())
                                    .and_then(|r| r.get("storage")),
                            ),
                            storage_class: tspec.and_then(|s| s.storage_class_name.clone()),
                        }
                    })
                    .collect();
                Some(WorkloadFacts {
                    replicas: spec.replicas.unwrap_or(1).max(0) as u32,
                    claim_templates,
                    pod_claims: pod_claims(spec.template.spec.as_ref()),
                })
            }
            WorkloadKind::Deployment => {
                let dep = self.deployments.get(&k)?;
                let spec = dep.spec.as_ref()?;
                Some(WorkloadFacts {
                    replicas: spec.replicas.unwrap_or(1).max(0) as u32,
                    claim_templates: Vec::new(),
                    pod_claims: pod_claims(spec.template.spec.as_ref()),
                })
            }
        }
    }

    fn claim_facts(&self, namespace: &str, name: &str) -> Option<ClaimFacts> {
        let pvc = self.claims.get(&(namespace.to_string(), name.to_string()))?;
        let spec = pvc.spec.as_ref();
        let capacity = quantity(pvc.status.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")));
        let request = quantity(
            spec.and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")),
        );
        Some(ClaimFacts {
            size: capacity.or(request),
            storage_class: spec.and_then(|s| s.storage_class_name.clone()),
            volume_name: spec.and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()),
        })
    }

    fn volume_facts(&self, name: &str) -> Option<VolumeFacts> {
        let pv = self.volumes.get(name)?;
        let spec = pv.spec.as_ref();
        let reclaim_policy = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).and_then(|p| match p {
            "Retain" => Some(ReclaimPolicy::Retain),
            "Delete" => Some(ReclaimPolicy::Delete),
            _ => None,
        });
        Some(VolumeFacts {
            name: name.to_string(),
            reclaim_policy,
            zone: spec
                .and_then(zone_of)
                .or_else(|| pv.metadata.labels.as_ref().and_then(|l| l.get("topology.kubernetes.io/zone").cloned())),
            driver: spec.and_then(|s| s.csi.as_ref()).map(|c| c.driver.clone()),
            capacity: quantity(spec.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"))),
        })
    }

    fn users_of(&self, namespace: &str, claim: &str) -> Vec<WorkloadRef> {
        let mut users = self.template_owner(namespace, claim).into_iter().collect::<Vec<_>>();
        let index = self.pod_volume_users.get_or_init(|| self.index_pod_volume_users());
        users.extend(index.get(&(namespace.to_string(), claim.to_string())).into_iter().flatten().cloned());
        users.sort();
        users.dedup();
        users
    }

    /// The StatefulSet whose claim template names this claim (`<template>-<sts>-<ordinal>`).
    ///
    /// Tries each split of the name instead of scanning every StatefulSet, so a query
    /// costs the number of dashes in the name, not the size of the cluster.
    fn template_owner(&self, namespace: &str, claim: &str) -> Option<WorkloadRef> {
        let (prefix, ordinal) = claim.rsplit_once('-')?;
        ordinal.parse::<u32>().ok()?;
        prefix.match_indices('-').find_map(|(at, _)| {
            let (template, sts) = (&prefix[..at], &prefix[at + 1..]);
            let spec = self.statefulsets.get(&(namespace.to_string(), sts.to_string()))?.spec.as_ref()?;
            let has_template =
                spec.volume_claim_templates.iter().flatten().any(|t| t.metadata.name.as_deref() == Some(template));
            has_template.then(|| WorkloadRef { kind: WorkloadKind::StatefulSet, name: sts.to_string() })
        })
    }

    /// Claims named in pod-template volumes, by (namespace, claim), built once.
    fn index_pod_volume_users(&self) -> HashMap<Key, Vec<WorkloadRef>> {
        let mut index: HashMap<Key, Vec<WorkloadRef>> = HashMap::new();
        let statefulsets = self.statefulsets.iter().map(|(k, o)| {
            let spec = o.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            (k, WorkloadKind::StatefulSet, spec)
        });
        let deployments = self.deployments.iter().map(|(k, o)| {
            let spec = o.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            (k, WorkloadKind::Deployment, spec)
        });
        for ((ns, name), kind, spec) in statefulsets.chain(deployments) {
            for pod_claim in pod_claims(spec) {
                let user = WorkloadRef { kind, name: name.clone() };
                index.entry((ns.clone(), pod_claim.claim)).or_default().push(user);
            }
        }
        index
    }
}

/// The zone a PV is pinned to by its node affinity.
fn zone_of(spec: &k8s_openapi::api::core::v1::PersistentVolumeSpec) -> Option<String> {
    let terms = &spec.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    terms.iter().flat_map(|t| t.match_expressions.iter().flatten()).find_map(|e| {
        let zonal_key = e.key.ends_with("/zone") || e.key == "failure-domain.beta.kubernetes.io/zone";
        (zonal_key && e.operator == "In").then(|| e.values.as_ref()?.first().cloned()).flatten()
    })
}

/// Inventories of every cluster of a plan: per-cluster subdirectories, or one shared.
#[derive(Default, Debug)]
pub struct ClusterInventories {
    pub by_cluster: BTreeMap<String, Inventory>,
    pub shared: Option<Inventory>,
}

impl ClusterInventories {
    /// Loads `DIR/<cluster>/` for each named cluster that has a subdirectory;
    /// otherwise `DIR` itself describes every cluster.
    pub fn from_dir(dir: &Path, clusters: &[String]) -> Result<ClusterInventories, Diagnostics> {
        if !dir.is_dir() {
            return Err(Diagnostics(vec![Diagnostic::error(
                "drplan::input::io",
                format!("{}: not a directory of manifests", dir.display()),
            )]));
        }
        let mut by_cluster = BTreeMap::new();
        for cluster in clusters {
            let sub = dir.join(cluster);
            if sub.is_dir() {
                by_cluster.insert(cluster.clone(), Inventory::from_dir(&sub)?);
            }
        }
        let shared = if by_cluster.is_empty() { Some(Inventory::from_dir(dir)?) } else { None };
        Ok(ClusterInventories { by_cluster, shared })
    }

    /// One directory: as [`from_dir`](Self::from_dir). Several paths, or files: all of
    /// them together describe every cluster of the plan.
    pub fn from_paths(paths: &[PathBuf], clusters: &[String]) -> Result<ClusterInventories, Diagnostics> {
        match paths {
            [dir] if dir.is_dir() => ClusterInventories::from_dir(dir, clusters),
            paths => {
                Ok(ClusterInventories { by_cluster: BTreeMap::new(), shared: Some(Inventory::from_paths(paths)?) })
            }
        }
    }

    fn get(&self, cluster: &str) -> Option<&Inventory> {
        self.by_cluster.get(cluster).or(self.shared.as_ref())
    }
}

/// Whether a document is one of the GitOps kinds drplan reads (by API group).
fn is_reconciler_kind(doc: &Node) -> bool {
    let api_version = doc.get("apiVersion").and_then(Node::as_str).unwrap_or_default();
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or_default();
    RECONCILER_KINDS.iter().any(|(v, k)| *k == kind && same_group(v, api_version))
}

fn same_group(a: &str, b: &str) -> bool {
    a.rsplit_once('/').map(|(g, _)| g) == b.rsplit_once('/').map(|(g, _)| g)
}

pub const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

impl Inventory {
    /// Who reconciles the workload: Argo CD (tracking annotation, else the instance label
    /// naming an Application that exists), Flux (its labels), an operator (controller
    /// owner reference to a custom resource).
    pub fn reconcilers_of(&self, namespace: &str, workload: &WorkloadRef) -> Vec<Reconciler> {
        let key = (namespace.to_string(), workload.name.clone());
        let meta = match workload.kind {
            WorkloadKind::StatefulSet => self.statefulsets.get(&key).map(|o| &o.metadata),
            WorkloadKind::Deployment => self.deployments.get(&key).map(|o| &o.metadata),
        };
        let Some(meta) = meta else { return Vec::new() };
        let mut found = Vec::new();
        found.extend(self.argo_application(meta));
        found.extend(flux_owner(meta, "kustomize.toolkit.fluxcd.io", "Kustomization", |ns, name| {
            self.gitops_object("Kustomization", ns, name)
        }));
        found.extend(flux_owner(meta, "helm.toolkit.fluxcd.io", "HelmRelease", |ns, name| {
            self.gitops_object("HelmRelease", ns, name)
        }));
        for owner in meta.owner_references.iter().flatten().filter(|o| o.controller == Some(true)) {
            let core_or_apps = !owner.api_version.contains('/') || owner.api_version.starts_with("apps/");
            if !core_or_apps {
                found.push(Reconciler::Operator {
                    api_version: owner.api_version.clone(),
                    kind: owner.kind.clone(),
                    namespace: namespace.to_string(),
                    name: owner.name.clone(),
                });
            }
        }
        found
    }

    fn gitops_object(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&serde_json::Value> {
        self.gitops_objects.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && namespace.is_none_or(|ns| o["metadata"]["namespace"].as_str().unwrap_or("default") == ns)
        })
    }

    /// The Application named by Argo CD's tracking annotation (`APP:GROUP/KIND:NS/NAME`,
    /// `APP` being `NAMESPACE_NAME` for Applications outside Argo CD's namespace) or label.
    fn argo_application(
        &self,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Option<Reconciler> {
        let tracking = meta.annotations.as_ref().and_then(|a| a.get(ARGO_TRACKING_ID));
        let app = match tracking {
            Some(id) => id.split(':').next().unwrap_or_default().to_string(),
            None => meta.labels.as_ref()?.get(INSTANCE_LABEL)?.clone(),
        };
        let (namespace, name) = match app.split_once('_') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, app),
        };
        let object = self.gitops_object("Application", namespace.as_deref(), &name)?;
        let automated = &object["spec"]["syncPolicy"]["automated"];
        Some(Reconciler::ArgoCd {
            namespace: object["metadata"]["namespace"].as_str().unwrap_or("argocd").to_string(),
            name,
            automated: automated.is_object(),
            self_heal: automated["selfHeal"] == true,
        })
    }
}

/// A Flux owner from its `<group>/name` and `<group>/namespace` labels; assumed active
/// when the object itself was not read (Flux corrects drift unless suspended).
fn flux_owner<'a>(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    group: &str,
    kind: &str,
    find: impl Fn(Option<&str>, &str) -> Option<&'a serde_json::Value>,
) -> Option<Reconciler> {
    let labels = meta.labels.as_ref()?;
    let name = labels.get(&format!("{group}/name"))?;
    let namespace = labels.get(&format!("{group}/namespace")).cloned().unwrap_or_else(|| "flux-system".into());
    let suspended = find(Some(&namespace), name).is_some_and(|o| o["spec"]["suspend"] == true);
    Some(Reconciler::Flux { kind: kind.into(), namespace, name: name.clone(), suspended })
}

impl ClusterFacts for ClusterInventories {
    fn workload(&self, cluster: &str, namespace: &str, workload: &WorkloadRef) -> Option<WorkloadFacts> {
        self.get(cluster)?.workload_facts(namespace, workload)
    }
    fn claim(&self, cluster: &str, namespace: &str, name: &str) -> Option<ClaimFacts> {
        self.get(cluster)?.claim_facts(namespace, name)
    }
    fn volume(&self, cluster: &str, name: &str) -> Option<VolumeFacts> {
        self.get(cluster)?.volume_facts(name)
    }
    fn claim_users(&self, cluster: &str, namespace: &str, claim: &str) -> Vec<WorkloadRef> {
        self.get(cluster).map(|i| i.users_of(namespace, claim)).unwrap_or_default()
    }
    fn workload_names(&self, cluster: &str, namespace: &str, kind: WorkloadKind) -> Vec<String> {
        self.get(cluster).map(|i| i.workload_names(namespace, kind)).unwrap_or_default()
    }
    fn namespaces(&self, cluster: &str) -> NamespaceFacts {
        match self.get(cluster) {
            None => NamespaceFacts::default(),
            Some(i) => NamespaceFacts { known: i.known_namespaces(), complete: i.namespaces.is_some() },
        }
    }
    fn snapshot(&self, cluster: &str, namespace: &str, name: &str) -> Option<SnapshotFacts> {
        self.get(cluster)?.snapshots.get(&(namespace.to_string(), name.to_string())).cloned()
    }
    fn reconcilers(&self, cluster: &str, namespace: &str, workload: &WorkloadRef) -> Vec<Reconciler> {
        self.get(cluster).map(|i| i.reconcilers_of(namespace, workload)).unwrap_or_default()
    }
}
