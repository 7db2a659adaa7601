//! `drill manifests`: what scheduling a drill in the cluster takes, ready for
//! `kubectl apply`: a ConfigMap with the plan, a ServiceAccount, a ClusterRoleBinding to
//! the drill's role, and a CronJob (`concurrencyPolicy: Forbid`) that runs `dr drill`.
//!
//! The drill's rights come from the plan (`dr rbac` with rollback: a drill rolls back),
//! given as [`DrillManifestOptions::derived`]; without them the ServiceAccount is bound to
//! an existing ClusterRole by name. Either way it may keep its runs in ConfigMaps and its
//! lock in a Lease of its own namespace (`--state-store kubernetes://NS`), so a drill whose
//! pod is killed is resumed or rolled back from the cluster, not lost with an `emptyDir`.

use serde_json::{Value, json};

/// Name of the role a scheduled drill runs with, when none is given.
pub const DEFAULT_ROLE: &str = "drplan-drill";
/// Image of `dr`, when none is given.
pub const DEFAULT_IMAGE: &str = "ghcr.io/drplan/dr:latest";

/// Where and how a scheduled drill runs.
#[derive(Debug, Clone)]
pub struct DrillManifestOptions {
    /// Cron schedule, e.g. `0 3 * * 1` (Mondays, 03:00).
    pub schedule: String,
    pub image: String,
    /// Namespace of the CronJob, its ConfigMap and ServiceAccount.
    pub namespace: String,
    /// ClusterRole the drill's ServiceAccount is bound to.
    pub role: String,
    /// The rights derived from the plan; `None`: bind [`Self::role`] by name.
    pub derived: Option<DerivedAccess>,
    /// A PersistentVolumeClaim to keep reports and the drill history in (an `emptyDir`,
    /// lost with the pod, without one).
    pub reports_claim: Option<String>,
}

impl DrillManifestOptions {
    pub fn new(schedule: &str) -> DrillManifestOptions {
        DrillManifestOptions {
            schedule: schedule.to_string(),
            image: DEFAULT_IMAGE.into(),
            namespace: "drplan".into(),
            role: DEFAULT_ROLE.into(),
            derived: None,
            reports_claim: None,
        }
    }
}

/// The plan's rights as `dr rbac` prints them for the drill's cluster: its
/// ServiceAccount, Roles and RoleBindings per namespace, ClusterRole and binding.
#[derive(Debug, Clone)]
pub struct DerivedAccess {
    /// Name of the ServiceAccount the objects create and bind.
    pub service_account: String,
    pub objects: Vec<Value>,
}

impl DerivedAccess {
    /// The rights in `cluster`, where the drill runs, and the other clusters the plan acts
    /// in (which need `dr rbac` applied there too).
    pub fn in_cluster(rbac: &crate::rbac::Rbac, cluster: &str) -> (DerivedAccess, Vec<String>) {
        let others = rbac.clusters.keys().filter(|c| *c != cluster).cloned().collect();
        let access = DerivedAccess { service_account: rbac.name.clone(), objects: rbac.manifests_of(cluster) };
        (access, others)
    }
}

/// A Kubernetes object name from the plan's name: lowercase alphanumerics and `-`, at
/// most 52 characters (a CronJob's limit, so the Jobs it names stay valid).
pub fn object_name(plan_name: &str) -> String {
    let mut name: String =
        plan_name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name = format!("drill-{}", name.trim_matches('-'));
    name.truncate(52);
    name.trim_end_matches('-').to_string()
}

/// Checks a cron schedule's shape: five fields, or an `@hourly`-style macro.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    let macros = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    let fields = schedule.split_whitespace().count();
    let allowed = |c: char| c.is_ascii_alphanumeric() || "*/,-?".contains(c);
    if macros.contains(&schedule.trim()) || (fields == 5 && schedule.chars().all(|c| c == ' ' || allowed(c))) {
        return Ok(());
    }
    Err(format!("--schedule {schedule:?} is not a cron schedule (five fields, e.g. \"0 3 * * 1\", or @daily)"))
}

/// The objects, in the order `kubectl apply` should create them.
pub fn manifests(plan_file_name: &str, plan_text: &str, plan_name: &str, options: &DrillManifestOptions) -> Vec<Value> {
    let name = object_name(plan_name);
    let ns = &options.namespace;
    let labels = json!({"app.kubernetes.io/name": "drplan-drill", "drplan.dev/plan": name});
    let (mut objects, account) = match &options.derived {
        Some(derived) => (derived.objects.clone(), derived.service_account.clone()),
        None => (bound_by_name(&name, options, &labels), name.clone()),
    };
    objects.extend(state_store_access(&name, &account, ns, &labels));
    objects.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-plan"), "namespace": ns, "labels": labels},
        "data": {plan_file_name: plan_text},
    }));
    objects.push(cron_job(&name, &account, plan_file_name, options, &labels));
    objects
}

/// A ServiceAccount of its own, bound to an existing ClusterRole.
fn bound_by_name(name: &str, options: &DrillManifestOptions, labels: &Value) -> Vec<Value> {
    let ns = &options.namespace;
    vec![
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{name}-{ns}"), "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": options.role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }),
    ]
}

/// What the Kubernetes state store (`checkpoint::kube`) does in the drill's namespace:
/// run records in ConfigMaps, the lock in a Lease.
fn state_store_access(name: &str, account: &str, ns: &str, labels: &Value) -> Vec<Value> {
    let role = format!("{name}-state");
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": role, "namespace": ns, "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "update"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "get", "update"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
        }),
    ]
}

fn cron_job(name: &str, account: &str, plan_file_name: &str, options: &DrillManifestOptions, labels: &Value) -> Value {
    let reports = match &options.reports_claim {
        Some(claim) => json!({"name": "reports", "persistentVolumeClaim": {"claimName": claim}}),
        None => json!({"name": "reports", "emptyDir": {}}),
    };
    let args = json!([
        "drill",
        format!("/plan/{plan_file_name}"),
        "--report-dir",
        "/reports",
        "--state-store",
        format!("kubernetes://{}", options.namespace),
        "--output",
        "json"
    ]);
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": {
            "schedule": options.schedule,
            // A drill must never overlap another: they would fight over the same workloads.
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {"spec": {
                // A failed drill is a finding to read, not something to retry blindly.
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": account,
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "drill",
                            "image": options.image,
                            "args": args,
                            "volumeMounts": [
                                {"name": "plan", "mountPath": "/plan", "readOnly": true},
                                {"name": "reports", "mountPath": "/reports"},
                            ],
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true},
                        }],
                        "volumes": [
                            {"name": "plan", "configMap": {"name": format!("{name}-plan")}},
                            reports,
                        ],
                    },
                },
            }},
        },
    })
}

/// The objects as one YAML stream (`---` between documents).
pub fn to_yaml_stream(objects: &[Value]) -> String {
    objects.iter().map(crate::state::yaml_out::to_yaml).map(|doc| format!("---\n{doc}")).collect()
}
