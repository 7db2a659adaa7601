//! `drill manifests`: what scheduling a drill in the cluster takes, ready for
//! `kubectl apply`: a ConfigMap with the plan, a ServiceAccount, a ClusterRoleBinding to
//! the drill's role, and a CronJob (`concurrencyPolicy: Forbid`) that runs `dr drill`.
//!
//! The role's rules come from the plan (`dr rbac`); [`manifests`] takes them as they are
//! ([`DrillManifestOptions::rules`]) and, without them, binds the role by name only.

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
    /// The role's rules (Kubernetes `PolicyRule` objects, as `dr rbac` derives them from
    /// the plan); when given, the ClusterRole is printed too.
    pub rules: Option<Vec<Value>>,
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
            rules: None,
            reports_claim: None,
        }
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
    let mut objects = vec![json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
    })];
    if let Some(rules) = &options.rules {
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": options.role, "labels": labels},
            "rules": rules,
        }));
    }
    objects.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{name}-{ns}"), "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": options.role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }));
    objects.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-plan"), "namespace": ns, "labels": labels},
        "data": {plan_file_name: plan_text},
    }));
    objects.push(cron_job(&name, plan_file_name, options, &labels));
    objects
}

fn cron_job(name: &str, plan_file_name: &str, options: &DrillManifestOptions, labels: &Value) -> Value {
    let reports = match &options.reports_claim {
        Some(claim) => json!({"name": "reports", "persistentVolumeClaim": {"claimName": claim}}),
        None => json!({"name": "reports", "emptyDir": {}}),
    };
    let args = json!([
        "drill",
        format!("/plan/{plan_file_name}"),
        "--report-dir",
        "/reports",
        "--state-dir",
        "/state",
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
                        "serviceAccountName": name,
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "drill",
                            "image": options.image,
                            "args": args,
                            "volumeMounts": [
                                {"name": "plan", "mountPath": "/plan", "readOnly": true},
                                {"name": "reports", "mountPath": "/reports"},
                                {"name": "state", "mountPath": "/state"},
                            ],
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true},
                        }],
                        "volumes": [
                            {"name": "plan", "configMap": {"name": format!("{name}-plan")}},
                            reports,
                            {"name": "state", "emptyDir": {}},
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
