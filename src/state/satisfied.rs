//! Whether an entry of the plan already holds in live state, so re-applying it changes
//! nothing: decided by comparing what the cluster has with what this plan asks for,
//! never by which step ids an earlier run applied (a changed plan then shows the
//! difference instead of "satisfied").

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graph::NodeIndex;
use serde_json::Value;

use super::predict::{claim_key, pv_key, workload_key};
use super::{LiveState, ObjectKey};
use crate::graph::{Step, StepGraph};
use crate::lang::Quantity;
use crate::steps::manifests::RUN_LABEL;
use crate::steps::{Action, RestorePvcParams, StaticPvParams, WorkloadRef};

/// How a satisfied step's reason starts, so a run can skip exactly those steps.
pub const ALREADY_AS_PLANNED: &str = "already as planned";

/// The entries whose end state live state already shows, each with why.
pub fn satisfied_entries(graph: &StepGraph, live: &LiveState) -> BTreeMap<String, String> {
    let mut by_entry: BTreeMap<&str, Vec<&Step>> = BTreeMap::new();
    for (_, step) in graph.steps() {
        by_entry.entry(step.entry.as_str()).or_default().push(step);
    }
    let mut satisfied = BTreeMap::new();
    for (entry, steps) in &by_entry {
        if let Some(why) = outcome_holds(steps, live) {
            satisfied.insert(entry.to_string(), why);
        }
    }
    // An object set aside during entries that all hold needs no setting aside: taking
    // it away and putting it back would only give it a new uid.
    for (entry, steps) in &by_entry {
        if let Some(why) = set_aside_holds(graph, steps, live, &satisfied) {
            satisfied.insert(entry.to_string(), why);
        }
    }
    // Likewise a controller paused during entries that all hold needs no pausing.
    for entry in by_entry.keys() {
        if let Some(why) = pause_holds(graph, entry, &satisfied) {
            satisfied.insert(entry.to_string(), why);
        }
    }
    satisfied
}

/// A `pauseReconciliation` entry (`ENTRY/pause` [→ `ENTRY/paused`] → … → `ENTRY/resume`)
/// holds when every step it brackets belongs to an entry that holds.
fn pause_holds(graph: &StepGraph, entry: &str, satisfied: &BTreeMap<String, String>) -> Option<String> {
    let resume = graph.index_of(&format!("{entry}/resume"))?;
    let paused = graph.index_of(&format!("{entry}/paused")).or_else(|| graph.index_of(&format!("{entry}/pause")))?;
    let is_pause = |n: NodeIndex| {
        matches!(graph.step(n).action(), Some(Action::PauseReconciler(_) | Action::Wait(_) | Action::Scale(_)))
    };
    if !is_pause(paused) {
        return None;
    }
    let during = bracketed(graph, paused, resume);
    let holds = !during.is_empty() && during.iter().all(|&n| satisfied.contains_key(&graph.step(n).entry));
    holds.then(|| format!("{ALREADY_AS_PLANNED}: nothing it pauses the controller for needs to run"))
}

/// For an entry that restores or binds claims: whether every claim is as planned.
/// `None` for entries of other kinds, and when anything differs.
fn outcome_holds(steps: &[&Step], live: &LiveState) -> Option<String> {
    let mut checked = 0;
    let mut runs = BTreeSet::new();
    for step in steps.iter().filter(|s| s.fallback_for.is_none()) {
        let run = match step.action() {
            Some(Action::RestorePvc(p)) => restored_as_planned(step, p, live)?,
            Some(Action::BindStaticPv(p)) => bound_as_planned(step, p, live)?,
            Some(Action::ScaleBack(p)) => {
                workload_ready(step, &p.workload, live)?;
                continue;
            }
            _ => continue,
        };
        checked += 1;
        runs.insert(run);
    }
    (checked > 0).then(|| {
        let runs: Vec<String> = runs.into_iter().collect();
        format!("{ALREADY_AS_PLANNED}: the claims are as this plan wants them (made by run {})", runs.join(", "))
    })
}

/// A workload the entry brings back is as planned only when it serves: every replica it
/// asks for is ready.
fn workload_ready(step: &Step, w: &WorkloadRef, live: &LiveState) -> Option<()> {
    let object = live.get(&workload_key(step, w))?;
    let wanted = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = object.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0);
    (ready >= wanted).then_some(())
}

fn text<'v>(object: &'v Value, pointer: &str) -> Option<&'v str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// The run that made an object, from its label.
fn made_by_run(object: &Value) -> Option<String> {
    let labels = object.pointer("/metadata/labels")?.as_object()?;
    labels.get(RUN_LABEL).and_then(Value::as_str).map(String::from)
}

/// A restored claim is as planned when a run restored it from a snapshot named as the
/// plan names it, at the size and class the plan asks for, and it is Bound.
fn restored_as_planned(step: &Step, p: &RestorePvcParams, live: &LiveState) -> Option<String> {
    let claim = live.get(&claim_key(step, &p.claim.value))?;
    let run = made_by_run(&claim)?;
    let source = claim.pointer("/spec/dataSource")?;
    let snapshot_name = p.snapshot.replace("{claim}", &p.claim.value);
    let named = text(source, "/name").is_some_and(|name| matches_template(name, &snapshot_name));
    if text(source, "/kind") != Some("VolumeSnapshot") || !named {
        return None;
    }
    if let Some(size) = &p.size {
        let requested = text(&claim, "/spec/resources/requests/storage")?.parse::<Quantity>().ok()?;
        let capacity = text(&claim, "/status/capacity/storage")?.parse::<Quantity>().ok()?;
        if requested.bytes() != size.value.bytes() || capacity.bytes() < size.value.bytes() {
            return None;
        }
    }
    if let Some(class) = &p.storage_class
        && text(&claim, "/spec/storageClassName") != Some(class.as_str())
    {
        return None;
    }
    (text(&claim, "/status/phase") == Some("Bound")).then_some(run)
}

/// Whether `name` is what `template` gives for some run (`{run}` stands for any text).
fn matches_template(name: &str, template: &str) -> bool {
    match template.split_once("{run}") {
        Some((before, after)) => {
            name.len() > before.len() + after.len() && name.starts_with(before) && name.ends_with(after)
        }
        None => name == template,
    }
}

/// A static PV is as planned when it exists for the planned disk and the claim is bound
/// to it.
fn bound_as_planned(step: &Step, p: &StaticPvParams, live: &LiveState) -> Option<String> {
    let pv = live.get(&pv_key(step, &p.pv_name))?;
    // A disk another step creates has an id only once it ran: the PV this plan made for
    // it (run label) bound to the claim is what counts then.
    let planned_handle = p.volume.value.volume_from_step.is_none().then_some(p.volume.value.volume_handle.as_str());
    if planned_handle.is_some_and(|h| text(&pv, "/spec/csi/volumeHandle") != Some(h))
        || (planned_handle.is_none() && made_by_run(&pv).is_none())
    {
        return None;
    }
    let claim = live.get(&claim_key(step, &p.claim))?;
    let bound =
        text(&claim, "/spec/volumeName") == Some(p.pv_name.as_str()) && text(&claim, "/status/phase") == Some("Bound");
    bound.then(|| made_by_run(&pv).unwrap_or_else(|| "unknown".into()))
}

/// A `setAside` entry (save, delete, restore) holds when its object exists and every
/// step it brackets belongs to an entry that holds.
fn set_aside_holds(
    graph: &StepGraph,
    steps: &[&Step],
    live: &LiveState,
    satisfied: &BTreeMap<String, String>,
) -> Option<String> {
    let find = |want: fn(&Action) -> bool| {
        steps.iter().find(|s| s.action().is_some_and(want)).and_then(|s| graph.index_of(&s.id))
    };
    let delete = find(|a| matches!(a, Action::DeleteObject(_)))?;
    let restore = find(|a| matches!(a, Action::RestoreObject(_)))?;
    let Some(Action::DeleteObject(p)) = graph.step(delete).action() else { return None };
    let during = bracketed(graph, delete, restore);
    if during.is_empty() || !during.iter().all(|&n| satisfied.contains_key(&graph.step(n).entry)) {
        return None;
    }
    let step = graph.step(delete);
    let key = ObjectKey::of_ref(&step.cluster, &p.object);
    live.get(&key)?;
    Some(format!("{ALREADY_AS_PLANNED}: {} is in place and nothing it is set aside for needs to run", p.object))
}

/// The steps after `from` and before `to`.
fn bracketed(graph: &StepGraph, from: NodeIndex, to: NodeIndex) -> Vec<NodeIndex> {
    let before: BTreeSet<NodeIndex> = graph.ancestors(to).into_iter().collect();
    graph.steps().map(|(n, _)| n).filter(|&n| before.contains(&n) && graph.ancestors(n).contains(&from)).collect()
}

#[cfg(test)]
mod tests {
    use super::matches_template;

    #[test]
    fn run_in_a_snapshot_name_matches_any_run_but_nothing_else() {
        assert!(matches_template("data-0-dr-20240101-abc", "data-0-dr-{run}"));
        assert!(!matches_template("data-0-dr-", "data-0-dr-{run}"));
        assert!(!matches_template("data-1-dr-x", "data-0-dr-{run}"));
        assert!(matches_template("old-backup", "old-backup"));
        assert!(!matches_template("old-backup-2", "old-backup"));
    }
}
