//! Loading a plan file: YAML → spanned tree → typed [`Plan`], collecting every problem.
//!
//! Sections and step entries are decoded one by one, so one broken entry does not hide
//! the problems of the others.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::de::{DeError, DeErrorKind, Spanned, closest, from_node};
use super::model::*;
use super::names::{self, BadName};
use super::yaml::{self, Limits, Node, Value};
use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span};

/// Names of the intent keys, as written in plans.
pub const INTENT_KINDS: &[&str] =
    &["restoreClaims", "rebindVolume", "efsFailover", "efsFailback", "etcdRestore", "setAside", "pauseReconciliation"];

/// Names of the explicit action keys, as written in plans.
pub const ACTION_KINDS: &[&str] = &[
    "scale",
    "scaleBack",
    "snapshotPvc",
    "wait",
    "setReclaimPolicy",
    "deletePvc",
    "restorePvc",
    "bindStaticPv",
    "resizePvc",
    "saveObject",
    "deleteObject",
    "restoreObject",
    "setWorkloadClaim",
    "exec",
    "restartPod",
    "ebsSnapshot",
    "ebsCopySnapshot",
    "ebsCreateVolume",
    "efsDeleteReplication",
    "efsCreateReplication",
    "efsSetOverwriteProtection",
    "pauseReconciler",
    "resumeReconciler",
];

/// Most steps a plan may have, written or expanded from intents. A generous bound (a
/// restore of 1,000 StatefulSets of 3 replicas is 19,000 steps) that keeps `dr validate`
/// fast on any input: some safety checks look at every step's ancestors.
pub const MAX_STEPS: usize = 25_000;

const TOP_LEVEL: &[&str] = &["apiVersion", "kind", "metadata", "clusters", "objectives", "acceptDataLoss", "steps"];
const ENTRY_FIELDS: &[&str] = &["id", "after", "before", "description"];

/// A plan as loaded: the typed plan (entries that could not be decoded are left out)
/// and where it came from.
#[derive(Debug)]
pub struct LoadedPlan {
    pub plan: Plan,
    pub source: Arc<SourceFile>,
    /// Ids of entries that failed to decode, so references to them are not reported
    /// a second time as unknown.
    pub broken_ids: HashSet<String>,
}

/// Loads a plan file. Returns the plan when its skeleton (metadata, clusters) decoded,
/// together with every problem found so far.
pub fn load_plan(path: &Path) -> (Option<LoadedPlan>, Diagnostics) {
    match yaml::read_file(path, Limits::PLAN) {
        Ok(file) => decode_plan(file.source, file.documents),
        Err(diag) => (None, Diagnostics(vec![diag])),
    }
}

/// Loads a plan from text (used by tests and embedded examples).
pub fn load_plan_str(name: &str, text: &str) -> (Option<LoadedPlan>, Diagnostics) {
    match yaml::parse_str(name, text, Limits::PLAN) {
        Ok(file) => decode_plan(file.source, file.documents),
        Err(diag) => (None, Diagnostics(vec![diag])),
    }
}

struct Decoder {
    source: Arc<SourceFile>,
    diags: Diagnostics,
}

impl Decoder {
    fn report(&mut self, err: DeError, fallback: Span) {
        let code = match err.kind {
            DeErrorKind::UnknownField => "drplan::plan::unknown_field",
            DeErrorKind::MissingField => "drplan::plan::missing_field",
            DeErrorKind::WrongType => "drplan::plan::wrong_type",
            DeErrorKind::InvalidValue => "drplan::plan::invalid_value",
            DeErrorKind::Other => "drplan::plan::invalid",
        };
        let label = match err.kind {
            DeErrorKind::UnknownField => "unknown field",
            DeErrorKind::MissingField => "in this mapping",
            DeErrorKind::WrongType => "wrong type",
            _ => "invalid value",
        };
        let span = err.span.unwrap_or(fallback);
        self.diags.push(Diagnostic::error(code, err.message).in_file(&self.source).with_label(span, label));
    }

    fn error(&mut self, code: &'static str, span: Span, message: impl Into<String>, label: &str) {
        self.diags.push(Diagnostic::error(code, message).in_file(&self.source).with_label(span, label));
    }

    fn report_names(&mut self, bad: Vec<BadName>) {
        for BadName { span, message } in bad {
            self.error("drplan::plan::invalid_name", span, message, "Kubernetes would refuse this name");
        }
    }

    fn decode<'a, T: serde::Deserialize<'a>>(&mut self, node: &'a Node) -> Option<T> {
        match from_node(node) {
            Ok(v) => Some(v),
            Err(e) => {
                self.report(e, node.span);
                None
            }
        }
    }
}

fn decode_plan(source: Arc<SourceFile>, documents: Vec<Node>) -> (Option<LoadedPlan>, Diagnostics) {
    let mut d = Decoder { source: source.clone(), diags: Diagnostics::default() };
    let Some(root) = documents.first() else {
        d.error("drplan::plan::empty", Span::default(), "the plan file is empty", "expected a DrPlan here");
        return (None, d.diags);
    };
    let Some(pairs) = root.as_map() else {
        d.error(
            "drplan::plan::wrong_type",
            root.span,
            format!("a plan must be a mapping, found {}", root.type_name()),
            "not a mapping",
        );
        return (None, d.diags);
    };
    for (key, _) in pairs {
        let name = key.scalar_text();
        if !TOP_LEVEL.contains(&name.as_str()) {
            let hint = closest(&name, TOP_LEVEL).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
            d.error(
                "drplan::plan::unknown_field",
                key.span,
                format!("unknown field `{name}`{hint}; expected one of: {}", TOP_LEVEL.join(", ")),
                "unknown field",
            );
        }
    }
    let api_version = required_const(&mut d, root, "apiVersion", API_VERSION);
    let kind = required_const(&mut d, root, "kind", KIND);
    let metadata = required(&mut d, root, "metadata").and_then(|n| d.decode::<Metadata>(n));
    let clusters = required(&mut d, root, "clusters").and_then(|n| d.decode::<Vec<ClusterTarget>>(n));
    let objectives = root.get("objectives").and_then(|n| d.decode::<Option<Objectives>>(n)).flatten();
    let accept_data_loss = root.get("acceptDataLoss").and_then(|n| d.decode::<bool>(n)).unwrap_or(false);
    let mut broken_ids = HashSet::new();
    let steps = required(&mut d, root, "steps").map(|n| decode_steps(&mut d, n, &mut broken_ids)).unwrap_or_default();
    if let Some(clusters) = &clusters {
        check_clusters(&mut d, root, clusters);
    }
    let mut bad_names = Vec::new();
    names::check_plan_header(root, &mut bad_names);
    d.report_names(bad_names);
    let (Some(api_version), Some(kind), Some(metadata), Some(clusters)) = (api_version, kind, metadata, clusters)
    else {
        return (None, d.diags);
    };
    let plan = Plan { api_version, kind, metadata, clusters, objectives, accept_data_loss, steps };
    (Some(LoadedPlan { plan, source, broken_ids }), d.diags)
}

fn required<'a>(d: &mut Decoder, root: &'a Node, key: &str) -> Option<&'a Node> {
    let node = root.get(key);
    if node.is_none() {
        d.error(
            "drplan::plan::missing_field",
            d.source.first_line(root.span),
            format!("missing required field `{key}`"),
            "in this plan",
        );
    }
    node
}

fn required_const(d: &mut Decoder, root: &Node, key: &str, expected: &str) -> Option<String> {
    let node = required(d, root, key)?;
    let value: String = d.decode(node)?;
    if value != expected {
        d.error(
            "drplan::plan::invalid_value",
            node.span,
            format!("`{key}` must be `{expected}`, found `{value}`"),
            "unsupported",
        );
        return None;
    }
    Some(value)
}

fn check_clusters(d: &mut Decoder, root: &Node, clusters: &[ClusterTarget]) {
    if clusters.is_empty() {
        let span = root.get("clusters").map(|n| n.span).unwrap_or(root.span);
        d.error("drplan::plan::missing_field", span, "a plan needs at least one cluster", "empty list");
    }
    let mut seen: Vec<&Spanned<String>> = Vec::new();
    for cluster in clusters {
        if let Some(first) = seen.iter().find(|s| s.value == cluster.name.value) {
            let diag = Diagnostic::error(
                "drplan::plan::duplicate_cluster",
                format!("cluster `{}` is defined twice", cluster.name.value),
            )
            .in_file(&d.source)
            .with_label(cluster.name.span, "defined again here")
            .with_label(first.span, "first defined here");
            d.diags.push(diag);
        }
        seen.push(&cluster.name);
    }
}

fn decode_steps(d: &mut Decoder, node: &Node, broken: &mut HashSet<String>) -> Vec<StepEntry> {
    let Value::Seq(items) = &node.value else {
        d.error(
            "drplan::plan::wrong_type",
            node.span,
            format!("wrong type: expected a list of steps, found {}", node.type_name()),
            "not a list",
        );
        return Vec::new();
    };
    if items.len() > MAX_STEPS {
        let message = format!(
            "the plan has {} steps, more than the limit of {MAX_STEPS}; split it into several plans",
            items.len()
        );
        d.error("drplan::input::too_many_steps", d.source.first_line(node.span), message, "too many steps");
        return Vec::new();
    }
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        match decode_entry(d, item) {
            Some(entry) => entries.push(entry),
            None => {
                if let Some(id) = item.get("id").and_then(Node::as_str) {
                    broken.insert(id.to_string());
                }
            }
        }
    }
    entries
}

fn decode_entry(d: &mut Decoder, item: &Node) -> Option<StepEntry> {
    let Some(pairs) = item.as_map() else {
        d.error(
            "drplan::plan::wrong_type",
            item.span,
            format!("wrong type: expected a step (a mapping), found {}", item.type_name()),
            "not a step",
        );
        return None;
    };
    let mut ok = true;
    let mut kind: Option<(&Node, &Node)> = None;
    for (key, value) in pairs {
        let name = key.scalar_text();
        if ENTRY_FIELDS.contains(&name.as_str()) {
            continue;
        }
        if !INTENT_KINDS.contains(&name.as_str()) && !ACTION_KINDS.contains(&name.as_str()) {
            let all: Vec<&str> = INTENT_KINDS.iter().chain(ACTION_KINDS).chain(ENTRY_FIELDS).copied().collect();
            let hint = closest(&name, &all).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
            d.error(
                "drplan::plan::unknown_field",
                key.span,
                format!("unknown field `{name}` in step{hint}; a step has `id`, `after`, `description` and one of the intents ({}) or actions ({})", INTENT_KINDS.join(", "), ACTION_KINDS.join(", ")),
                "unknown field",
            );
            ok = false;
            continue;
        }
        if let Some((first, _)) = kind {
            let diag = Diagnostic::error(
                "drplan::plan::several_kinds",
                format!("a step has exactly one kind, found `{}` and `{name}`", first.scalar_text()),
            )
            .in_file(&d.source)
            .with_label(key.span, "second kind")
            .with_label(first.span, "first kind")
            .with_help("split this entry into two steps and order them with `after:`");
            d.diags.push(diag);
            ok = false;
            continue;
        }
        kind = Some((key, value));
    }
    let id = match item.get("id") {
        Some(node) => d.decode::<Spanned<String>>(node).filter(|id| check_id(d, id)),
        None => {
            d.error(
                "drplan::plan::missing_field",
                d.source.first_line(item.span),
                "missing required field `id`",
                "this step has no id",
            );
            None
        }
    };
    let after = decode_refs(d, item.get("after"));
    let before = decode_refs(d, item.get("before"));
    let description = match item.get("description") {
        Some(node) => d.decode::<String>(node).map(Some),
        None => Some(None),
    };
    let Some((kind_key, kind_value)) = kind else {
        if ok {
            d.error(
                "drplan::plan::missing_field",
                d.source.first_line(item.span),
                format!(
                    "this step has no kind: add one of the intents ({}) or actions ({})",
                    INTENT_KINDS.join(", "),
                    ACTION_KINDS.join(", ")
                ),
                "no kind",
            );
        }
        return None;
    };
    let mut bad_names = Vec::new();
    names::check_step_body(kind_value, &mut bad_names);
    d.report_names(bad_names);
    let single = Node { span: item.span, value: Value::Map(vec![(kind_key.clone(), kind_value.clone())]) };
    let body = if INTENT_KINDS.contains(&kind_key.scalar_text().as_str()) {
        d.decode::<Intent>(&single).map(EntryBody::Intent)
    } else {
        d.decode::<crate::steps::Action>(&single).map(EntryBody::Action)
    };
    match (ok, id, after, before, description, body) {
        (true, Some(id), Some(after), Some(before), Some(description), Some(body)) => {
            Some(StepEntry { id, after, before, description, body, span: item.span, kind_span: kind_key.span })
        }
        _ => None,
    }
}

/// Step references: one id, or a list of ids.
fn decode_refs(d: &mut Decoder, node: Option<&Node>) -> Option<Vec<Spanned<String>>> {
    match node {
        Some(node) if node.as_str().is_some() => d.decode::<Spanned<String>>(node).map(|one| vec![one]),
        Some(node) => d.decode::<Vec<Spanned<String>>>(node),
        None => Some(Vec::new()),
    }
}

fn check_id(d: &mut Decoder, id: &Spanned<String>) -> bool {
    let valid = !id.value.is_empty()
        && id.value.len() <= 63
        && id.value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        d.error(
            "drplan::plan::invalid_id",
            id.span,
            format!("invalid step id `{}`: use 1 to 63 letters, digits, `-`, `_` or `.`", id.value),
            "invalid id",
        );
    }
    valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_lists_match_the_enums() {
        for name in INTENT_KINDS {
            let text = format!("{name}: {{}}");
            let file = yaml::parse_str("k.yaml", &text, Limits::PLAN).unwrap();
            let err = from_node::<Intent>(&file.documents[0]).unwrap_err();
            assert_ne!(err.kind, DeErrorKind::UnknownField, "{name}: {}", err.message);
        }
        for name in ACTION_KINDS {
            let text = format!("{name}: {{}}");
            let file = yaml::parse_str("k.yaml", &text, Limits::PLAN).unwrap();
            let err = from_node::<crate::steps::Action>(&file.documents[0]).unwrap_err();
            assert_ne!(err.kind, DeErrorKind::UnknownField, "{name}: {}", err.message);
        }
    }
}
