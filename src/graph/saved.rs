//! The expanded graph as JSON, kept in run records and saved plan files.
//!
//! A resumed or rolled-back run must execute exactly the steps that were approved:
//! re-expanding from live state would see the cluster half-changed (replicas already 0),
//! so the expanded steps are stored and read back from here.

use serde_json::{Value, json};

use super::{Edge, Step, StepGraph, StepKind};
use crate::lang::de::from_node;
use crate::lang::yaml::Node;
use crate::steps::Action;

/// The steps in written order, each with its dependencies by id.
pub fn to_json(graph: &StepGraph) -> Value {
    let steps: Vec<Value> = graph
        .steps()
        .map(|(index, step)| {
            let mut after: Vec<&str> = graph.predecessors(index).map(|p| graph.step(p).id.as_str()).collect();
            after.sort();
            let action = match &step.kind {
                StepKind::Action(a) => serde_json::to_value(a).unwrap_or(Value::Null),
                StepKind::Intent(_) => Value::Null,
            };
            json!({
                "id": step.id,
                "entry": step.entry,
                "cluster": step.cluster,
                "namespace": step.namespace,
                "action": action,
                "after": after,
                "fallbackFor": step.fallback_for,
            })
        })
        .collect();
    json!({ "planName": graph.plan_name, "steps": steps })
}

/// Reads a graph written by [`to_json`].
pub fn from_json(value: &Value) -> Result<StepGraph, String> {
    let mut graph = StepGraph { plan_name: text(value, "planName")?.to_string(), ..StepGraph::default() };
    let steps = value.get("steps").and_then(Value::as_array).ok_or("saved plan has no steps")?;
    for saved in steps {
        let node = Node::from_json(saved.get("action").unwrap_or(&Value::Null));
        let action: Action =
            from_node(&node).map_err(|e| format!("saved step {}: {}", text(saved, "id").unwrap_or("?"), e.message))?;
        graph.add_step(Step {
            id: text(saved, "id")?.to_string(),
            kind: StepKind::Action(action),
            entry: text(saved, "entry")?.to_string(),
            origin: Default::default(),
            cluster: text(saved, "cluster")?.to_string(),
            namespace: text(saved, "namespace")?.to_string(),
            fallback_for: saved.get("fallbackFor").and_then(Value::as_str).map(String::from),
        });
    }
    for saved in steps {
        let to = graph.index_of(text(saved, "id")?).ok_or("saved step vanished")?;
        for dep in saved.get("after").and_then(Value::as_array).into_iter().flatten() {
            let dep = dep.as_str().unwrap_or_default();
            let from = graph.index_of(dep).ok_or_else(|| format!("saved plan names unknown step {dep}"))?;
            graph.graph.update_edge(from, to, Edge { written_at: None });
        }
    }
    if graph.topological_order().is_none() {
        return Err("saved plan has a dependency cycle".into());
    }
    Ok(graph)
}

fn text<'v>(value: &'v Value, key: &str) -> Result<&'v str, String> {
    value.get(key).and_then(Value::as_str).ok_or_else(|| format!("saved plan entry lacks `{key}`"))
}
