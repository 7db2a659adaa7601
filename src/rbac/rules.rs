//! Needs folded into RBAC rules, and the rules into manifests.
//!
//! One rule per resource and set of verbs: the verbs used on objects known by name go
//! into rules with `resourceNames`; the rest — and every verb whose requests carry no
//! name (`create` of a new object, `list`, `watch`, `deletecollection`), which
//! Kubernetes cannot match against `resourceNames` — into rules without. A verb granted
//! without names is not granted again by name.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{ClusterRules, Need, Rbac};

/// One RBAC rule (one API group and resource), with why each verb is in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub api_group: String,
    /// Plural, with its subresource (`statefulsets/scale`).
    pub resource: String,
    /// Empty: any object.
    pub resource_names: Vec<String>,
    pub verbs: Vec<String>,
    /// Verbs that a run going as planned may not use, and when they are used.
    pub conditional: BTreeMap<String, &'static str>,
    /// The steps (or `(plan)`) that use this rule.
    pub steps: BTreeSet<String>,
}

impl Rule {
    /// The rule as Kubernetes writes it (`PolicyRule`).
    pub fn to_json(&self) -> Value {
        let mut rule = json!({
            "apiGroups": [self.api_group],
            "resources": [self.resource],
            "verbs": self.verbs,
        });
        if !self.resource_names.is_empty() {
            rule["resourceNames"] = json!(self.resource_names);
        }
        rule
    }

    /// Whether a run that goes as planned uses at least one of its verbs.
    pub fn always_used(&self) -> bool {
        self.verbs.iter().any(|v| !self.conditional.contains_key(v))
    }
}

/// The order Kubernetes documentation lists verbs in, for stable, readable output.
const VERB_ORDER: [&str; 8] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

fn verb_rank(verb: &str) -> usize {
    VERB_ORDER.iter().position(|v| *v == verb).unwrap_or(VERB_ORDER.len())
}

/// Whether a request with this verb names its object, so `resourceNames` can match it.
/// Subresource requests (`pods/NAME/exec`) always do.
fn carries_name(verb: &str, resource: &str) -> bool {
    resource.contains('/') || !matches!(verb, "create" | "list" | "watch" | "deletecollection")
}

/// How a verb is used: always (by some step), or only in some circumstance.
#[derive(Clone, Debug, Default)]
struct Usage {
    always: bool,
    when: Option<&'static str>,
    steps: BTreeSet<String>,
}

impl Usage {
    fn add(&mut self, need: &Need) {
        match need.only_when {
            None => self.always = true,
            Some(when) => self.when = self.when.or(Some(when)),
        }
        self.steps.insert(need.step.clone());
    }

    fn merge(&mut self, other: &Usage) {
        self.always |= other.always;
        self.when = self.when.or(other.when);
        self.steps.extend(other.steps.iter().cloned());
    }
}

type Resource = (String, String);
/// How each verb is used.
type VerbUses = BTreeMap<&'static str, Usage>;

/// The rules of one cluster: a Role's per namespace, the ClusterRole's.
pub fn fold(needs: &[Need]) -> ClusterRules {
    let mut by_scope: BTreeMap<Option<String>, Vec<&Need>> = BTreeMap::new();
    for need in needs {
        by_scope.entry(need.namespace.clone()).or_default().push(need);
    }
    let mut rules = ClusterRules::default();
    for (scope, needs) in by_scope {
        match scope {
            Some(namespace) => {
                rules.namespaced.insert(namespace, fold_scope(&needs));
            }
            None => rules.cluster_scoped = fold_scope(&needs),
        }
    }
    rules
}

fn fold_scope(needs: &[&Need]) -> Vec<Rule> {
    let open_key = |n: &Need| (n.group.clone(), n.resource.clone(), n.verb);
    let granted_to_all: BTreeSet<(String, String, &str)> =
        needs.iter().filter(|n| n.name.is_none() || !carries_name(n.verb, &n.resource)).map(|n| open_key(n)).collect();
    let mut open: BTreeMap<Resource, BTreeMap<&'static str, Usage>> = BTreeMap::new();
    let mut named: BTreeMap<Resource, BTreeMap<String, BTreeMap<&'static str, Usage>>> = BTreeMap::new();
    for need in needs {
        let resource = (need.group.clone(), need.resource.clone());
        match &need.name {
            Some(name) if !granted_to_all.contains(&open_key(need)) => named
                .entry(resource)
                .or_default()
                .entry(name.clone())
                .or_default()
                .entry(need.verb)
                .or_default()
                .add(need),
            _ => open.entry(resource).or_default().entry(need.verb).or_default().add(need),
        }
    }
    let mut rules: Vec<Rule> = open.into_iter().map(|(resource, verbs)| rule(resource, Vec::new(), verbs)).collect();
    for (resource, names) in named {
        // Names used with the same verbs share a rule.
        let mut by_verbs: BTreeMap<Vec<&'static str>, (Vec<String>, VerbUses)> = BTreeMap::new();
        for (name, verbs) in names {
            let entry = by_verbs.entry(verbs.keys().copied().collect()).or_default();
            entry.0.push(name);
            for (verb, usage) in verbs {
                entry.1.entry(verb).or_default().merge(&usage);
            }
        }
        for (_, (names, verbs)) in by_verbs {
            rules.push(rule(resource.clone(), names, verbs));
        }
    }
    rules
}

fn rule(resource: Resource, resource_names: Vec<String>, verbs: BTreeMap<&'static str, Usage>) -> Rule {
    let mut ordered: Vec<&str> = verbs.keys().copied().collect();
    ordered.sort_by_key(|v| verb_rank(v));
    let conditional = verbs
        .iter()
        .filter(|(_, usage)| !usage.always)
        .map(|(verb, usage)| (verb.to_string(), usage.when.unwrap_or("sometimes")))
        .collect();
    let steps = verbs.values().flat_map(|u| u.steps.iter().cloned()).collect();
    Rule {
        api_group: resource.0,
        resource: resource.1,
        resource_names,
        verbs: ordered.into_iter().map(String::from).collect(),
        conditional,
        steps,
    }
}

const RBAC_API: &str = "rbac.authorization.k8s.io/v1";

/// Annotation naming the plan a role was derived from.
pub const PLAN_ANNOTATION: &str = "drplan.dev/plan";
/// Annotation naming the plan's cluster a manifest is for.
pub const CLUSTER_ANNOTATION: &str = "drplan.dev/cluster";

fn metadata(rbac: &Rbac, cluster: &str, namespace: Option<&str>) -> Value {
    let mut meta = json!({
        "name": rbac.name,
        "labels": { crate::steps::manifests::MANAGED_BY.0: crate::steps::manifests::MANAGED_BY.1 },
        "annotations": { PLAN_ANNOTATION: rbac.plan, CLUSTER_ANNOTATION: cluster },
    });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

fn subjects(rbac: &Rbac) -> Value {
    json!([{ "kind": "ServiceAccount", "name": rbac.name, "namespace": rbac.service_account_namespace }])
}

/// ServiceAccount, a Role and RoleBinding per namespace, ClusterRole and binding.
pub fn manifests(rbac: &Rbac, cluster: &str, rules: &ClusterRules) -> Vec<Value> {
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(rbac, cluster, Some(&rbac.service_account_namespace)),
    })];
    for (namespace, rules) in &rules.namespaced {
        out.push(json!({
            "apiVersion": RBAC_API,
            "kind": "Role",
            "metadata": metadata(rbac, cluster, Some(namespace)),
            "rules": rules.iter().map(Rule::to_json).collect::<Vec<_>>(),
        }));
        out.push(json!({
            "apiVersion": RBAC_API,
            "kind": "RoleBinding",
            "metadata": metadata(rbac, cluster, Some(namespace)),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac.name },
            "subjects": subjects(rbac),
        }));
    }
    if !rules.cluster_scoped.is_empty() {
        out.push(json!({
            "apiVersion": RBAC_API,
            "kind": "ClusterRole",
            "metadata": metadata(rbac, cluster, None),
            "rules": rules.cluster_scoped.iter().map(Rule::to_json).collect::<Vec<_>>(),
        }));
        out.push(json!({
            "apiVersion": RBAC_API,
            "kind": "ClusterRoleBinding",
            "metadata": metadata(rbac, cluster, None),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac.name },
            "subjects": subjects(rbac),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(verb: &'static str, resource: &str, name: Option<&str>, only_when: Option<&'static str>) -> Need {
        Need {
            cluster: "c".into(),
            namespace: Some("ns".into()),
            group: "".into(),
            resource: resource.into(),
            verb,
            name: name.map(String::from),
            step: "s".into(),
            only_when,
        }
    }

    #[test]
    fn verbs_without_names_get_their_own_rule_and_cover_named_uses() {
        let needs = [
            need("get", "persistentvolumeclaims", Some("a"), None),
            need("delete", "persistentvolumeclaims", Some("a"), None),
            need("get", "persistentvolumeclaims", Some("b"), None),
            need("create", "persistentvolumeclaims", Some("b"), None),
            need("list", "persistentvolumeclaims", None, None),
            need("get", "pods", None, None),
            need("get", "pods", Some("p"), None),
            need("create", "pods/exec", Some("p"), Some("now and then")),
        ];
        let rules = fold(&needs).namespaced.remove("ns").unwrap();
        let shown: Vec<Value> = rules.iter().map(Rule::to_json).collect();
        assert_eq!(
            shown,
            vec![
                json!({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["list", "create"]}),
                json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
                json!({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "delete"], "resourceNames": ["a"]}),
                json!({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get"], "resourceNames": ["b"]}),
                json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"], "resourceNames": ["p"]}),
            ]
        );
        assert!(!rules[4].always_used());
        assert_eq!(rules[4].conditional.get("create"), Some(&"now and then"));
    }
}
