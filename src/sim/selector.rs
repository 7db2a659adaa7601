//! Label and field selectors, parsed from query strings (`app=db,tier in (a,b),!legacy`)
//! or from `metav1.LabelSelector` objects, and matched against stored objects.

use serde_json::Value;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    /// Whether `value` (the label or field, `None` if absent) satisfies the requirement.
    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        match self {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v),
            Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::DoesNotExist(k) => lookup(k).is_none(),
        }
    }
}

/// A conjunction of requirements; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses a label selector string as `?labelSelector=` carries it.
    pub fn parse_labels(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            requirements.push(parse_term(term.trim())?);
        }
        Ok(Selector { requirements })
    }

    /// Parses a field selector string (`=`, `==`, `!=` only, like the API server).
    pub fn parse_fields(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let requirement = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else {
                return Err(format!("invalid field selector term {term:?}: expected key=value or key!=value"));
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_label_selector(selector: &Value) -> Selector {
        let mut requirements = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            for (k, v) in labels {
                requirements.push(Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().into()));
            }
        }
        for expr in selector["matchExpressions"].as_array().into_iter().flatten() {
            let key = expr["key"].as_str().unwrap_or_default().to_string();
            let values: Vec<String> =
                expr["values"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
            requirements.push(match expr["operator"].as_str().unwrap_or_default() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                _ => Requirement::DoesNotExist(key),
            });
        }
        Selector { requirements }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Matches the object's `metadata.labels`.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.requirements.iter().all(|r| r.matches(|k| labels.get(k).and_then(Value::as_str).map(String::from)))
    }

    /// Matches dotted field paths (`metadata.name`, `status.phase`, `spec.nodeName`, ...).
    /// An absent field compares as the empty string, like the API server's field sets.
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(|path| Some(field_text(object, path))))
    }
}

/// The text of a dotted field path, empty when absent.
pub fn field_text(object: &Value, path: &str) -> String {
    let value = path.split('.').fold(object, |v, key| &v[key]);
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits on commas that are not inside `in (...)` value lists.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms.into_iter().filter(|t| !t.trim().is_empty()).collect()
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key.trim().into()));
    }
    for (op, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some((key, rest)) = term.split_once(op) {
            let values = parse_value_list(rest).ok_or_else(|| format!("invalid label selector term {term:?}"))?;
            let key = key.trim().to_string();
            return Ok(if is_in { Requirement::In(key, values) } else { Requirement::NotIn(key, values) });
        }
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if term.contains([' ', '(', ')']) {
        return Err(format!("invalid label selector term {term:?}"));
    }
    Ok(Requirement::Exists(term.into()))
}

fn parse_value_list(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({ "metadata": { "name": "p", "namespace": "db", "labels": labels }, "status": { "phase": "Running" } })
    }

    #[test]
    fn label_selector_operators() {
        let p = pod(json!({ "app": "cassandra", "tier": "db" }));
        let yes = [
            "app=cassandra",
            "app==cassandra",
            "app!=web",
            "tier in (db, cache)",
            "tier notin (web)",
            "app",
            "!legacy",
            "app=cassandra,tier in (db)",
        ];
        for s in yes {
            assert!(Selector::parse_labels(s).unwrap().matches_labels(&p), "{s} should match");
        }
        let no = ["app=web", "tier notin (db)", "legacy", "!app", "tier in (web,cache)"];
        for s in no {
            assert!(!Selector::parse_labels(s).unwrap().matches_labels(&p), "{s} should not match");
        }
        assert!(Selector::parse_labels("a in (b").is_err());
    }

    #[test]
    fn field_selector_reads_dotted_paths() {
        let p = pod(json!({}));
        assert!(Selector::parse_fields("metadata.name=p,status.phase!=Pending").unwrap().matches_fields(&p));
        assert!(!Selector::parse_fields("metadata.namespace=other").unwrap().matches_fields(&p));
        assert!(Selector::parse_fields("spec.nodeName=").unwrap().matches_fields(&p));
        assert!(Selector::parse_fields("bogus").is_err());
    }
}
