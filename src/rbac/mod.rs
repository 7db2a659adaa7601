//! Least privilege, derived from the plan: the Kubernetes RBAC (a Role per namespace, a
//! ClusterRole for cluster-scoped kinds, their bindings and a ServiceAccount) and the IAM
//! policy that a plan's expanded steps need to run, and nothing more.
//!
//! - [`kube`]: what each step kind calls on the Kubernetes API, and what `dr plan` (and
//!   the plan phase of `dr apply`) lists, as [`Need`]s.
//! - [`rules`]: needs folded into RBAC rules, `resourceNames` where the object is known
//!   by name, split where Kubernetes cannot restrict a verb by name; the manifests.
//! - [`iam`]: what the cloud steps call on AWS, as an IAM policy document.
//! - [`file`]: the rights of a plan file (load, expand against manifests, derive).
//!
//! The derivation reads the step DAG only (and, for the names of the volumes bound to
//! claims, the cluster facts the graph was expanded with); the tests prove it against
//! the simulated cluster with RBAC enforced (`tests/rbac.rs`).

pub mod file;
pub mod iam;
pub mod kube;
pub mod rules;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::ClusterFacts;
use crate::graph::StepGraph;

pub use iam::IamPolicy;
pub use rules::Rule;

/// What to derive the rights for.
pub struct Options<'a> {
    /// Only what `dr plan` needs (lists, EFS describes): for review jobs and dashboards.
    pub read_only: bool,
    /// Also what `dr rollback` of a run of the plan needs (a drill rolls back).
    pub rollback: bool,
    /// The facts the graph was expanded with, to name the PersistentVolumes bound to
    /// claims (without them, those rules cannot carry `resourceNames`).
    pub facts: Option<&'a dyn ClusterFacts>,
    /// Namespace of the ServiceAccount the roles are bound to.
    pub service_account_namespace: String,
    /// AWS account id for ARNs; `*` when not given.
    pub account_id: Option<String>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            read_only: false,
            rollback: false,
            facts: None,
            service_account_namespace: "drplan".into(),
            account_id: None,
        }
    }
}

/// The rights a plan needs.
#[derive(Clone, Debug)]
pub struct Rbac {
    /// The plan's name.
    pub plan: String,
    /// Name of the ServiceAccount and of every role and binding (`drplan-PLAN`).
    pub name: String,
    pub service_account_namespace: String,
    pub read_only: bool,
    /// Kubernetes rules, per plan cluster.
    pub clusters: BTreeMap<String, ClusterRules>,
    /// The IAM policy of the cloud steps (`None` when the plan has none).
    pub iam: Option<IamPolicy>,
}

/// The rules of one cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterRules {
    /// Namespace → the rules of its Role.
    pub namespaced: BTreeMap<String, Vec<Rule>>,
    /// Rules of the ClusterRole (cluster-scoped kinds).
    pub cluster_scoped: Vec<Rule>,
}

/// One call (or kind of call) a step makes on the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub cluster: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource, with its subresource: `statefulsets/scale`, `pods/exec`.
    pub resource: String,
    pub verb: &'static str,
    /// The object's name, when it is known before the run.
    pub name: Option<String>,
    /// The step (or `(plan)`) that makes the call.
    pub step: String,
    /// Why the call may not happen in a run that goes as planned (`None`: it always does).
    pub only_when: Option<&'static str>,
}

/// Derives the rights `graph` (expanded) needs.
pub fn derive(graph: &StepGraph, options: &Options<'_>) -> Rbac {
    let needs = kube::needs(graph, options);
    let mut clusters: BTreeMap<String, Vec<Need>> = BTreeMap::new();
    for need in needs {
        clusters.entry(need.cluster.clone()).or_default().push(need);
    }
    let clusters = clusters.into_iter().map(|(cluster, needs)| (cluster, rules::fold(&needs))).collect();
    Rbac {
        plan: graph.plan_name.clone(),
        name: object_name(&graph.plan_name, options.read_only),
        service_account_namespace: options.service_account_namespace.clone(),
        read_only: options.read_only,
        clusters,
        iam: iam::policy(graph, options),
    }
}

/// `drplan-PLAN` (`-read-only`), cut and cleaned to a DNS-1123 label.
fn object_name(plan: &str, read_only: bool) -> String {
    let cleaned: String =
        plan.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let suffix = if read_only { "-read-only" } else { "" };
    let name = format!("drplan-{}", cleaned.trim_matches('-'));
    let keep = 63 - suffix.len();
    format!("{}{suffix}", name[..name.len().min(keep)].trim_end_matches('-'))
}

impl Rbac {
    /// The manifests of one cluster: ServiceAccount, a Role and RoleBinding per
    /// namespace, a ClusterRole and ClusterRoleBinding when cluster-scoped kinds are used.
    pub fn manifests_of(&self, cluster: &str) -> Vec<Value> {
        match self.clusters.get(cluster) {
            Some(rules) => rules::manifests(self, cluster, rules),
            None => Vec::new(),
        }
    }

    /// Every cluster's manifests, in cluster order.
    pub fn to_manifests(&self) -> Vec<(String, Vec<Value>)> {
        self.clusters.keys().map(|c| (c.clone(), self.manifests_of(c))).collect()
    }

    /// The ServiceAccount's user name, as the API server reports it in 403s.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.service_account_namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(object_name("ebs-cassandra-restore", false), "drplan-ebs-cassandra-restore");
        assert_eq!(object_name("Etcd_Restore", true), "drplan-etcd-restore-read-only");
        let long = object_name(&"x".repeat(100), true);
        assert!(long.len() <= 63 && long.ends_with("-read-only"), "{long}");
    }
}
