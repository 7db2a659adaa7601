//! Authentication and RBAC authorisation, as the API server does them, for requests
//! that present a ServiceAccount's bearer token.
//!
//! Opt-in by the client: a request without a token (the kubeconfig `dr sim serve` and
//! the tests write) is the cluster admin, as before. A token comes from the
//! TokenRequest API (`POST .../serviceaccounts/NAME/token`, what `kubectl create token`
//! sends) or [`issue_token`]; the request then acts as
//! `system:serviceaccount:NS:NAME` and is allowed only what the Roles, ClusterRoles and
//! bindings in the store grant it — evaluated as Kubernetes' RBAC authorizer does
//! (apiGroups, resources with `*` and `resource/subresource`, resourceNames, verbs),
//! refused with Kubernetes' own 403 message. An unknown token, or one whose
//! ServiceAccount is gone, is 401.

use std::sync::Arc;

use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::registry::ResourceKey;
use super::state::State;

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No token: full access.
    Admin,
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

impl Identity {
    fn user(&self) -> String {
        match self {
            Identity::Admin => "system:admin".into(),
            Identity::ServiceAccount { namespace, name } => format!("system:serviceaccount:{namespace}:{name}"),
        }
    }

    fn groups(&self) -> Vec<String> {
        match self {
            Identity::Admin => vec!["system:masters".into(), "system:authenticated".into()],
            Identity::ServiceAccount { namespace, .. } => vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// What a resource request asks to do, as the authorizer sees it.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    /// Empty when none.
    pub subresource: &'a str,
    /// Empty for cluster-scoped requests.
    pub namespace: &'a str,
    /// Empty for requests on a collection (`list` with a `metadata.name` field selector
    /// names its object, as the API server's request info does).
    pub name: &'a str,
}

const TOKEN_PREFIX: &str = "sim-sa.";

/// The identity of a request's `Authorization` header.
pub fn authenticate(state: &State, authorization: Option<&str>) -> ApiResult<Identity> {
    let Some(header) = authorization else { return Ok(Identity::Admin) };
    let Some(token) = header.strip_prefix("Bearer ").map(str::trim) else {
        return Err(ApiError::unauthorized());
    };
    let (namespace, name) = state.tokens.get(token).cloned().ok_or_else(ApiError::unauthorized)?;
    // A bound token stops working when its ServiceAccount is deleted.
    if state.get(&ResourceKey::new("", "serviceaccounts"), &namespace, &name).is_none() {
        return Err(ApiError::unauthorized());
    }
    Ok(Identity::ServiceAccount { namespace, name })
}

/// A new token for an existing ServiceAccount.
pub fn issue_token(state: &mut State, namespace: &str, name: &str) -> ApiResult<String> {
    if state.get(&ResourceKey::new("", "serviceaccounts"), namespace, name).is_none() {
        return Err(ApiError::not_found("", "serviceaccounts", name));
    }
    let token = format!("{TOKEN_PREFIX}{}", state.new_hex(32));
    state.tokens.insert(token.clone(), (namespace.to_string(), name.to_string()));
    Ok(token)
}

/// Allowed, or the API server's 403.
pub fn authorize(state: &State, identity: &Identity, request: &Attributes<'_>) -> ApiResult<()> {
    if *identity == Identity::Admin || allowed(state, identity, request) {
        return Ok(());
    }
    let resource = if request.subresource.is_empty() {
        request.resource.to_string()
    } else {
        format!("{}/{}", request.resource, request.subresource)
    };
    let scope = if request.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", request.namespace)
    };
    let why = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        identity.user(),
        request.verb,
        request.group
    );
    Err(ApiError::access_denied(request.group, request.resource, request.name, &why))
}

fn allowed(state: &State, identity: &Identity, request: &Attributes<'_>) -> bool {
    let groups = identity.groups();
    let binds = |binding: &Value| subjects_match(binding, &identity.user(), identity, &groups);
    let cluster_bindings = state.all(&ResourceKey::new(RBAC, "clusterrolebindings"));
    let cluster_wide = cluster_bindings
        .iter()
        .filter(|b| binds(b))
        .any(|b| role_of(state, b, "").is_some_and(|r| grants(&r, request)));
    if cluster_wide {
        return true;
    }
    if request.namespace.is_empty() {
        return false;
    }
    let bindings = state.store.list(&ResourceKey::new(RBAC, "rolebindings"), Some(request.namespace));
    bindings
        .iter()
        .filter(|b| binds(b))
        .any(|b| role_of(state, b, request.namespace).is_some_and(|r| grants(&r, request)))
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// The Role (in `namespace`) or ClusterRole a binding refers to, if it exists.
fn role_of(state: &State, binding: &Value, namespace: &str) -> Option<Arc<Value>> {
    let kind = binding.pointer("/roleRef/kind")?.as_str()?;
    let name = binding.pointer("/roleRef/name")?.as_str()?;
    match kind {
        "ClusterRole" => state.get(&ResourceKey::new(RBAC, "clusterroles"), "", name),
        "Role" if !namespace.is_empty() => state.get(&ResourceKey::new(RBAC, "roles"), namespace, name),
        _ => None,
    }
}

fn subjects_match(binding: &Value, user: &str, identity: &Identity, groups: &[String]) -> bool {
    let subjects = binding.get("subjects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let binding_namespace = binding.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    subjects.iter().any(|s| {
        let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
        match (field("kind"), identity) {
            ("User", _) => field("name") == user,
            ("Group", _) => groups.iter().any(|g| g == field("name")),
            ("ServiceAccount", Identity::ServiceAccount { namespace, name }) => {
                // A subject without a namespace means the binding's own (RoleBindings).
                let subject_namespace =
                    if field("namespace").is_empty() { binding_namespace } else { field("namespace") };
                field("name") == name && subject_namespace == namespace
            }
            _ => false,
        }
    })
}

/// Whether any rule of a role allows the request.
fn grants(role: &Value, request: &Attributes<'_>) -> bool {
    let rules = role.get("rules").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    rules.iter().any(|rule| rule_allows(rule, request))
}

fn strings<'v>(rule: &'v Value, key: &str) -> Vec<&'v str> {
    rule.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Kubernetes' `RuleAllows`: verb, API group, resource (or `*`, or `*/subresource`),
/// and resource name, when the rule lists any.
pub fn rule_allows(rule: &Value, request: &Attributes<'_>) -> bool {
    let verbs = strings(rule, "verbs");
    let groups = strings(rule, "apiGroups");
    let resources = strings(rule, "resources");
    let names = strings(rule, "resourceNames");
    let combined = if request.subresource.is_empty() {
        request.resource.to_string()
    } else {
        format!("{}/{}", request.resource, request.subresource)
    };
    let resource_matches = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!request.subresource.is_empty() && r.strip_prefix("*/") == Some(request.subresource))
    });
    verbs.iter().any(|v| *v == "*" || *v == request.verb)
        && groups.iter().any(|g| *g == "*" || *g == request.group)
        && resource_matches
        && (names.is_empty() || names.contains(&request.name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request<'a>(verb: &'a str, resource: &'a str, subresource: &'a str, name: &'a str) -> Attributes<'a> {
        Attributes { verb, group: "apps", resource, subresource, namespace: "ns", name }
    }

    #[test]
    fn rules_match_as_kubernetes_matches_them() {
        let scale = json!({"apiGroups": ["apps"], "resources": ["statefulsets/scale"], "resourceNames": ["db"], "verbs": ["get", "patch"]});
        assert!(rule_allows(&scale, &request("patch", "statefulsets", "scale", "db")));
        assert!(!rule_allows(&scale, &request("patch", "statefulsets", "", "db")), "not the object itself");
        assert!(!rule_allows(&scale, &request("patch", "statefulsets", "scale", "other")));
        assert!(!rule_allows(&scale, &request("update", "statefulsets", "scale", "db")));
        let any_scale = json!({"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]});
        assert!(rule_allows(&any_scale, &request("update", "deployments", "scale", "x")));
        assert!(!rule_allows(&any_scale, &request("get", "deployments", "", "x")));
        let named =
            json!({"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["db"], "verbs": ["list"]});
        assert!(!rule_allows(&named, &request("list", "statefulsets", "", "")), "a list without a name");
        let everything = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]});
        assert!(rule_allows(&everything, &request("delete", "statefulsets", "", "db")));
    }
}
