//! The resource types the sim serves: built-in kinds plus those CRDs register, and the
//! discovery documents (`/api`, `/apis`, resource lists) kubectl and kube-rs read.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One served resource (`group/version`, plural) and how it behaves.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub has_status: bool,
    pub has_scale: bool,
    /// For CRD kinds: the `openAPIV3Schema` validating objects.
    pub schema: Option<Value>,
    /// For CRD kinds: `additionalPrinterColumns`, for `kubectl get` tables.
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool, short: &[&str]) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            has_status: true,
            has_scale: false,
            schema: None,
            printer_columns: Vec::new(),
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The storage key: resources are unique by group and plural.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(&self.group, &self.plural)
    }

    /// The singular lower-case name kubectl uses (`persistentvolumeclaim`).
    pub fn singular(&self) -> String {
        self.kind.to_lowercase()
    }
}

/// `group/plural`, e.g. `apps/statefulsets`, `/pods`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey(pub String);

impl ResourceKey {
    pub fn new(group: &str, plural: &str) -> ResourceKey {
        ResourceKey(format!("{group}/{plural}"))
    }
}

/// Well-known keys used by controllers.
pub mod keys {
    use super::ResourceKey;
    pub fn pods() -> ResourceKey {
        ResourceKey::new("", "pods")
    }
    pub fn pvcs() -> ResourceKey {
        ResourceKey::new("", "persistentvolumeclaims")
    }
    pub fn pvs() -> ResourceKey {
        ResourceKey::new("", "persistentvolumes")
    }
    pub fn nodes() -> ResourceKey {
        ResourceKey::new("", "nodes")
    }
    pub fn namespaces() -> ResourceKey {
        ResourceKey::new("", "namespaces")
    }
    pub fn events() -> ResourceKey {
        ResourceKey::new("", "events")
    }
    pub fn statefulsets() -> ResourceKey {
        ResourceKey::new("apps", "statefulsets")
    }
    pub fn replicasets() -> ResourceKey {
        ResourceKey::new("apps", "replicasets")
    }
    pub fn deployments() -> ResourceKey {
        ResourceKey::new("apps", "deployments")
    }
    pub fn storage_classes() -> ResourceKey {
        ResourceKey::new("storage.k8s.io", "storageclasses")
    }
    pub fn crds() -> ResourceKey {
        ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions")
    }
    pub const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";
    pub fn snapshots() -> ResourceKey {
        ResourceKey::new(SNAPSHOT_GROUP, "volumesnapshots")
    }
    pub fn snapshot_contents() -> ResourceKey {
        ResourceKey::new(SNAPSHOT_GROUP, "volumesnapshotcontents")
    }
    pub fn snapshot_classes() -> ResourceKey {
        ResourceKey::new(SNAPSHOT_GROUP, "volumesnapshotclasses")
    }
}

/// All served resource types.
#[derive(Clone, Debug)]
pub struct Registry {
    types: BTreeMap<ResourceKey, ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The built-in kinds of a plain cluster (CRD kinds such as VolumeSnapshot come from CRDs).
    pub fn builtin() -> Registry {
        let mut types = vec![
            ResourceType::builtin("", "v1", "namespaces", "Namespace", false, &["ns"]),
            ResourceType::builtin("", "v1", "pods", "Pod", true, &["po"]),
            ResourceType::builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, &["pvc"]),
            ResourceType::builtin("", "v1", "persistentvolumes", "PersistentVolume", false, &["pv"]),
            ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
            ResourceType::builtin("", "v1", "secrets", "Secret", true, &[]),
            ResourceType::builtin("", "v1", "events", "Event", true, &["ev"]),
            ResourceType::builtin("", "v1", "nodes", "Node", false, &["no"]),
            ResourceType::builtin("", "v1", "services", "Service", true, &["svc"]),
            ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
            ResourceType::builtin("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"]),
            ResourceType::builtin("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
            ResourceType::builtin("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"]),
            ResourceType::builtin("storage.k8s.io", "v1", "storageclasses", "StorageClass", false, &["sc"]),
            ResourceType::builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, &["pdb"]),
            ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[]),
            ResourceType::builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
            ),
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
            ),
        ];
        for t in &mut types {
            t.has_scale = matches!(t.kind.as_str(), "StatefulSet" | "Deployment" | "ReplicaSet");
            t.has_status = !matches!(
                t.kind.as_str(),
                "ConfigMap"
                    | "Secret"
                    | "Event"
                    | "StorageClass"
                    | "Lease"
                    | "ServiceAccount"
                    | "Role"
                    | "RoleBinding"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
            );
        }
        Registry { types: types.into_iter().map(|t| (t.key(), t)).collect() }
    }

    pub fn get(&self, key: &ResourceKey) -> Option<&ResourceType> {
        self.types.get(key)
    }

    /// The type served at `group/version` under `plural`.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.get(&ResourceKey::new(group, plural)).filter(|t| t.version == version)
    }

    /// The type for an object's `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types.values().find(|t| t.api_version() == api_version && t.kind == kind)
    }

    pub fn types(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    pub fn insert(&mut self, resource: ResourceType) {
        self.types.insert(resource.key(), resource);
    }

    pub fn remove(&mut self, key: &ResourceKey) {
        self.types.remove(key);
    }

    /// `(group, version)` pairs served, core first, sorted.
    fn group_versions(&self) -> Vec<(String, String)> {
        let mut gvs: Vec<(String, String)> =
            self.types.values().map(|t| (t.group.clone(), t.version.clone())).collect();
        gvs.sort();
        gvs.dedup();
        gvs
    }

    /// `/api`: the core group's versions.
    pub fn api_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
        })
    }

    /// `/apis`: every named group with its versions (legacy, non-aggregated form).
    pub fn api_group_list(&self) -> Value {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, version) in self.group_versions().into_iter().filter(|(g, _)| !g.is_empty()) {
            groups.entry(group).or_default().push(version);
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                let gvs: Vec<Value> =
                    versions.iter().map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v })).collect();
                json!({ "name": group, "versions": gvs, "preferredVersion": gvs[0] })
            })
            .collect();
        json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
    }

    /// `/apis/{group}`: one group.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let list = self.api_group_list();
        let found = list["groups"].as_array()?.iter().find(|g| g["name"] == group)?.clone();
        let mut found = found;
        found["kind"] = json!("APIGroup");
        found["apiVersion"] = json!("v1");
        Some(found)
    }

    /// `/api/v1` or `/apis/{group}/{version}`: the resources with their verbs and subresources.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let types: Vec<&ResourceType> =
            self.types.values().filter(|t| t.group == group && t.version == version).collect();
        if types.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for t in types {
            resources.push(resource_entry(t));
            if t.has_status {
                resources.push(subresource_entry(t, "status", &t.kind, &["get", "patch", "update"]));
            }
            if t.has_scale {
                resources.push(subresource_entry(t, "scale", "Scale", &["get", "patch", "update"]));
            }
        }
        let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(
            json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
        )
    }
}

impl Registry {
    /// `/openapi/v3`: one document per group-version. kubectl reads it to learn that the
    /// server validates fields itself (`fieldValidation`), so `kubectl apply` needs no
    /// client-side schema download.
    pub fn openapi_v3_root(&self) -> Value {
        let paths: serde_json::Map<String, Value> = self
            .group_versions()
            .into_iter()
            .map(|(group, version)| {
                let path = openapi_path(&group, &version);
                (path.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{path}") }))
            })
            .collect();
        json!({ "paths": paths })
    }

    /// `/openapi/v3/{api/v1 | apis/group/version}`: the PATCH operations, with their
    /// group-version-kind and the `fieldValidation` query parameter (no schemas).
    pub fn openapi_v3_document(&self, gv_path: &str) -> Option<Value> {
        let (group, version) = match gv_path.split('/').collect::<Vec<_>>().as_slice() {
            ["api", version] => (String::new(), version.to_string()),
            ["apis", group, version] => (group.to_string(), version.to_string()),
            _ => return None,
        };
        let mut paths = serde_json::Map::new();
        for t in self.types.values().filter(|t| t.group == group && t.version == version) {
            let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
            let scope = if t.namespaced { "/namespaces/{namespace}" } else { "" };
            let operation = json!({
                "x-kubernetes-group-version-kind": { "group": t.group, "version": t.version, "kind": t.kind },
                "parameters": [{ "name": "fieldValidation", "in": "query", "schema": { "type": "string", "uniqueItems": true } }],
                "responses": { "200": { "description": "OK" } },
            });
            paths.insert(format!("{prefix}{scope}/{}/{{name}}", t.plural), json!({ "patch": operation }));
        }
        if paths.is_empty() {
            return None;
        }
        Some(json!({ "openapi": "3.0.0", "info": { "title": "Kubernetes", "version": "v1.33.0" }, "paths": paths }))
    }
}

fn openapi_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn resource_entry(t: &ResourceType) -> Value {
    let mut entry = json!({
        "name": t.plural,
        "singularName": t.singular(),
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    entry
}

fn subresource_entry(t: &ResourceType, sub: &str, kind: &str, verbs: &[&str]) -> Value {
    let mut entry = json!({
        "name": format!("{}/{sub}", t.plural),
        "singularName": "",
        "namespaced": t.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if sub == "scale" {
        entry["group"] = json!("autoscaling");
        entry["version"] = json!("v1");
    }
    entry
}

/// The resource type a CRD object defines (its served storage version), or why it can't.
pub fn resource_from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = &crd["spec"];
    let text = |v: &Value, what: &str| v.as_str().map(str::to_string).ok_or_else(|| format!("CRD is missing {what}"));
    let group = text(&spec["group"], "spec.group")?;
    let names = &spec["names"];
    let versions = spec["versions"].as_array().ok_or("CRD is missing spec.versions")?;
    let version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .or_else(|| versions.iter().find(|v| v["served"] == true))
        .ok_or("CRD serves no version")?;
    Ok(ResourceType {
        group,
        version: text(&version["name"], "spec.versions[].name")?,
        plural: text(&names["plural"], "spec.names.plural")?,
        kind: text(&names["kind"], "spec.names.kind")?,
        namespaced: spec["scope"] != "Cluster",
        short_names: names["shortNames"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        has_status: version["subresources"].get("status").is_some(),
        has_scale: version["subresources"].get("scale").is_some(),
        schema: version["schema"].get("openAPIV3Schema").cloned(),
        printer_columns: version["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
    })
}
