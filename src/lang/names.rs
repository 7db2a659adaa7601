//! Kubernetes object names in a plan, checked by the rules of their kind.
//!
//! The API server refuses a claim named `Data_0` or a namespace of 70 characters, but
//! only when `dr apply` gets there, possibly after destructive steps. `dr validate`
//! checks them up front, at the name's span: DNS-1123 subdomains (at most 253
//! characters of `a-z`, `0-9`, `-` and `.`), DNS-1123 labels (at most 63, no `.`) for
//! namespaces, services and StatefulSets (whose pods take the name as their hostname),
//! and label keys and values. Templates (`{claim}-dr-{run}`) are checked after
//! substituting the claim and a run token of the real length.

use super::yaml::{Node, Value};
use crate::diag::Span;

/// How a name is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: most object names.
    Subdomain,
    /// DNS-1123 label: namespaces, services, StatefulSets, plan names.
    Label,
}

/// A name that breaks its rule: where and why.
#[derive(Debug)]
pub struct BadName {
    pub span: Span,
    pub message: String,
}

/// A `{run}` token as `dr apply` substitutes it (`<yyyymmddThhmmssZ>-<4 hex>`, lower-cased).
const RUN_TOKEN: &str = "20250102t030405z-3fa9";
/// `{claim}` where no claim is written beside the template.
const SOME_CLAIM: &str = "data-0";

/// Why `name` is not valid under `rule`, or `None` if it is.
pub fn problem(name: &str, rule: NameRule) -> Option<String> {
    let (max, what) = match rule {
        NameRule::Subdomain => (253, "a DNS-1123 subdomain: at most 253 characters"),
        NameRule::Label => (63, "a DNS-1123 label: at most 63 characters"),
    };
    let shape = format!(
        "{what} of lower-case letters, digits and `-`{}, starting and ending with a letter or digit",
        if rule == NameRule::Subdomain { " or `.`" } else { "" }
    );
    if name.is_empty() {
        return Some(format!("it is empty; it must be {shape}"));
    }
    if name.len() > max {
        return Some(format!("it is {} characters long; it must be {shape}", name.chars().count()));
    }
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && rule == NameRule::Subdomain);
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        let why = if bad.is_ascii_uppercase() {
            "upper case is not allowed".to_string()
        } else {
            format!("`{bad}` is not allowed")
        };
        return Some(format!("{why}; it must be {shape}"));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Some(format!("it must start and end with a letter or digit; it must be {shape}"));
    }
    if rule == NameRule::Subdomain
        && name.split('.').any(|part| !alnum(part.chars().next()) || !alnum(part.chars().last()))
    {
        return Some(format!("each `.`-separated part must start and end with a letter or digit; it must be {shape}"));
    }
    None
}

/// Why a label value is not valid: at most 63 characters of letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit (or empty).
fn label_value_problem(value: &str) -> Option<String> {
    let shape = "a label value is empty or at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit";
    let ok = value.is_empty()
        || (value.len() <= 63
            && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    (!ok).then(|| shape.to_string())
}

/// Why a label key is not valid: an optional DNS subdomain prefix and `/`, then a name
/// like a label value (not empty).
fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    if let Some(p) = prefix.and_then(|p| problem(p, NameRule::Subdomain)) {
        return Some(format!("its prefix is invalid: {p}"));
    }
    if name.is_empty() {
        return Some("the name part of a label key must not be empty".into());
    }
    label_value_problem(name)
}

/// Checks the names inside one step's body (the value under its kind key).
pub fn check_step_body(body: &Node, out: &mut Vec<BadName>) {
    // Explicit stack: the tree is depth-limited, but no walk in drplan recurses.
    let mut stack = vec![body];
    while let Some(node) = stack.pop() {
        match &node.value {
            Value::Map(pairs) => {
                for (key, value) in pairs {
                    check_field(node, key.as_str().unwrap_or_default(), value, out);
                    if matches!(value.value, Value::Map(_) | Value::Seq(_)) {
                        stack.push(value);
                    }
                }
            }
            Value::Seq(items) => stack.extend(items.iter().filter(|i| matches!(i.value, Value::Map(_)))),
            _ => {}
        }
    }
}

/// Checks the plan's own name, its labels and the clusters' namespaces.
pub fn check_plan_header(root: &Node, out: &mut Vec<BadName>) {
    if let Some(metadata) = root.get("metadata") {
        if let Some(name) = metadata.get("name") {
            check(name, NameRule::Label, "plan name", out);
        }
        if let Some(labels) = metadata.get("labels").and_then(Node::as_map) {
            for (key, value) in labels {
                if let Some(k) = key.as_str()
                    && let Some(why) = label_key_problem(k)
                {
                    out.push(BadName { span: key.span, message: format!("invalid label key `{k}`: {why}") });
                }
                if let Some(v) = value.as_str()
                    && let Some(why) = label_value_problem(v)
                {
                    out.push(BadName { span: value.span, message: format!("invalid label value `{v}`: {why}") });
                }
            }
        }
    }
    if let Some(Value::Seq(clusters)) = root.get("clusters").map(|c| &c.value) {
        for cluster in clusters {
            if let Some(ns) = cluster.get("namespace") {
                check(ns, NameRule::Label, "namespace", out);
            }
        }
    }
}

fn check_field(parent: &Node, key: &str, value: &Node, out: &mut Vec<BadName>) {
    match key {
        "namespace" => check(value, NameRule::Label, "namespace", out),
        "claim" | "claimTemplate" => check(value, NameRule::Subdomain, "claim name", out),
        "pvName" => check(value, NameRule::Subdomain, "PersistentVolume name", out),
        "pod" => check(value, NameRule::Subdomain, "pod name", out),
        "snapshotClass" => check(value, NameRule::Subdomain, "VolumeSnapshotClass name", out),
        "storageClass" => check(value, NameRule::Subdomain, "StorageClass name", out),
        "claims" => {
            if let Value::Seq(items) = &value.value {
                items.iter().for_each(|i| check(i, NameRule::Subdomain, "claim name", out));
            }
        }
        "snapshotName" | "snapshot" if value.as_str().is_some() => {
            let claim = parent.get("claim").and_then(Node::as_str).unwrap_or(SOME_CLAIM);
            check_template(value, claim, out);
        }
        "workload" | "operator" => {
            let kind = value.get("kind").and_then(Node::as_str).unwrap_or_default();
            if let Some(name) = value.get("name") {
                // A StatefulSet's pods are named `<name>-<ordinal>` and use it as hostname.
                let rule = if kind == "StatefulSet" { NameRule::Label } else { NameRule::Subdomain };
                check(name, rule, &format!("{kind} name"), out);
            }
        }
        "object" => {
            let kind = value.get("kind").and_then(Node::as_str).unwrap_or_default();
            if let Some(name) = value.get("name") {
                let rule = if matches!(kind, "Namespace" | "Service") { NameRule::Label } else { NameRule::Subdomain };
                check(name, rule, &format!("{kind} name"), out);
            }
        }
        _ => {}
    }
}

fn check(node: &Node, rule: NameRule, what: &str, out: &mut Vec<BadName>) {
    if let Some(name) = node.as_str()
        && let Some(why) = problem(name, rule)
    {
        out.push(BadName { span: node.span, message: format!("invalid {what} `{name}`: {why}") });
    }
}

/// A name template is checked as the name it becomes.
fn check_template(node: &Node, claim: &str, out: &mut Vec<BadName>) {
    let Some(template) = node.as_str() else {
        return;
    };
    let name = template.replace("{claim}", claim).replace("{run}", RUN_TOKEN);
    if let Some(why) = problem(&name, NameRule::Subdomain) {
        let shown = if name == template { format!("`{name}`") } else { format!("`{template}` (for example `{name}`)") };
        out.push(BadName { span: node.span, message: format!("invalid VolumeSnapshot name {shown}: {why}") });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_1123() {
        assert_eq!(problem("cassandra-data-cassandra-0", NameRule::Subdomain), None);
        assert_eq!(problem("pv.example-1", NameRule::Subdomain), None);
        for bad in ["", "Data", "a/b", "-a", "a-", "a..b", "../../x\u{0}", "a_b", &"a".repeat(254)] {
            assert!(problem(bad, NameRule::Subdomain).is_some(), "{bad:?} accepted");
        }
        assert!(problem("a.b", NameRule::Label).is_some());
        assert!(problem(&"a".repeat(64), NameRule::Label).is_some());
        assert_eq!(problem(&"a".repeat(63), NameRule::Label), None);
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(label_key_problem("app.kubernetes.io/name"), None);
        assert!(label_key_problem("Bad_Prefix/x").is_some());
        assert_eq!(label_value_problem("data-platform"), None);
        assert!(label_value_problem("two words").is_some());
    }
}
