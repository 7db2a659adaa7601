//! Building the step graph from a loaded plan: expansion, links, cycles, checks.

use petgraph::algo::kosaraju_scc;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

use super::expand::{Fragment, expand_entry};
use super::{Edge, StepGraph, checks};
use crate::cluster::ClusterFacts;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::lang::{EntryBody, Intent, LoadedPlan, MAX_STEPS, Spanned, StepEntry};

/// How far to take a plan.
#[derive(Clone, Copy)]
pub struct BuildOptions<'f> {
    /// Facts used to expand intents that need them (replicas, claims, volumes).
    pub facts: Option<&'f dyn ClusterFacts>,
    /// Keep every intent as one node (the intent-level DAG) instead of expanding.
    pub intents_only: bool,
}

/// Everything building needs to know about where it is reporting.
pub(super) struct Ctx<'a> {
    pub loaded: &'a LoadedPlan,
    pub facts: Option<&'a dyn ClusterFacts>,
    pub diags: Diagnostics,
    /// Entries that could not be expanded (already reported): references to them are
    /// not reported again.
    pub unexpanded: std::collections::HashSet<String>,
}

impl Ctx<'_> {
    pub fn error(
        &mut self,
        code: &'static str,
        span: Span,
        message: impl Into<String>,
        label: &str,
    ) -> &mut Diagnostic {
        let diag = Diagnostic::error(code, message).in_file(&self.loaded.source).with_label(span, label);
        self.diags.push(diag);
        self.diags.0.last_mut().expect("just pushed")
    }
}

/// Expands and links a plan into a step graph, and checks it.
///
/// Returns the graph when it could be built (even with check errors, so `dr graph`
/// can still show it) and every problem found.
pub fn build(loaded: &LoadedPlan, options: BuildOptions<'_>) -> (Option<StepGraph>, Diagnostics) {
    let mut ctx = Ctx { loaded, facts: options.facts, diags: Diagnostics::default(), unexpanded: Default::default() };
    let entries = unique_entries(&mut ctx);
    let mut graph = StepGraph { plan_name: loaded.plan.name().to_string(), ..StepGraph::default() };
    let mut fragments: HashMap<&str, Fragment> = HashMap::new();
    for entry in &entries {
        let Some(fragment) = expand_entry(&mut ctx, entry, options.intents_only) else {
            ctx.unexpanded.insert(entry.id.value.clone());
            continue;
        };
        if graph.len() + fragment.steps.len() > MAX_STEPS {
            let message = format!(
                "the plan expands into more than {MAX_STEPS} steps (this entry brings it to {}); split it into several plans",
                graph.len() + fragment.steps.len()
            );
            ctx.error("drplan::input::too_many_steps", entry.kind_span, message, "over the step limit");
            return (None, ctx.diags);
        }
        let placed = place_fragment(&mut graph, fragment);
        fragments.insert(entry.id.value.as_str(), placed);
    }
    for entry in &entries {
        link_entry(&mut ctx, &mut graph, &fragments, entry);
    }
    report_cycles(&mut ctx, &graph);
    // Checks only follow edges backwards with a visited set, so they still hold with a
    // cycle present; running them anyway reports every problem in one pass.
    checks::check(&mut ctx, &graph);
    if !options.intents_only {
        super::skipped::report(&mut ctx, &graph);
    }
    (Some(graph), ctx.diags)
}

/// Drops (and reports) entries whose id repeats an earlier one.
fn unique_entries<'a>(ctx: &mut Ctx<'a>) -> Vec<&'a StepEntry> {
    let mut first_seen: HashMap<&str, Span> = HashMap::new();
    let mut unique = Vec::new();
    for entry in &ctx.loaded.plan.steps {
        if let Some(first) = first_seen.get(entry.id.value.as_str()) {
            // The first use goes into the help, not a second label: the rendered
            // location then points at the duplicate itself.
            let (line, _) = ctx.loaded.source.position_of(first.start as usize);
            let message = format!("duplicate step id `{}`", entry.id.value);
            ctx.error("drplan::plan::duplicate_id", entry.id.span, message, "used again here").help =
                Some(format!("the id is first used on line {line}; step ids must be unique"));
            continue;
        }
        first_seen.insert(&entry.id.value, entry.id.span);
        unique.push(entry);
    }
    unique
}

/// Adds a fragment's steps and internal edges; returns it with graph indices.
fn place_fragment(graph: &mut StepGraph, fragment: Fragment) -> Fragment {
    let indices: Vec<NodeIndex> = fragment.steps.iter().map(|s| graph.add_step(s.clone())).collect();
    for &(from, to) in &fragment.edges {
        graph.graph.update_edge(indices[from], indices[to], Edge { written_at: None });
    }
    Fragment {
        steps: Vec::new(),
        edges: Vec::new(),
        entries: fragment.entries.iter().map(|&i| indices[i].index()).collect(),
        exits: fragment.exits.iter().map(|&i| indices[i].index()).collect(),
        before_during: fragment.before_during.map(|i| indices[i].index()),
        after_during: fragment.after_during.map(|i| indices[i].index()),
    }
}

fn link_entry(ctx: &mut Ctx<'_>, graph: &mut StepGraph, fragments: &HashMap<&str, Fragment>, entry: &StepEntry) {
    let Some(this) = fragments.get(entry.id.value.as_str()) else {
        return;
    };
    for dep in &entry.after {
        let Some((_, exits)) = resolve_ref(ctx, graph, fragments, dep, "after") else {
            continue;
        };
        if names_phase_of_collapsed_intent(graph, fragments, &dep.value) {
            connect_unless_cycle(graph, &exits, &this.entries, dep.span);
        } else {
            connect(graph, &exits, &this.entries, dep.span);
        }
    }
    for dependent in &entry.before {
        let Some((entries, _)) = resolve_ref(ctx, graph, fragments, dependent, "before") else {
            continue;
        };
        if names_phase_of_collapsed_intent(graph, fragments, &dependent.value) {
            connect_unless_cycle(graph, &this.exits, &entries, dependent.span);
        } else {
            connect(graph, &this.exits, &entries, dependent.span);
        }
    }
    let during_refs = match &entry.body {
        EntryBody::Intent(Intent::SetAside(aside)) => Some(&aside.during),
        EntryBody::Intent(Intent::PauseReconciliation(pause)) => Some(&pause.during),
        _ => None,
    };
    if let Some(during_refs) = during_refs {
        for during in during_refs {
            let Some((entries, exits)) = resolve_ref(ctx, graph, fragments, during, "during") else {
                continue;
            };
            if let Some(away) = this.before_during {
                connect(graph, &[away], &entries, during.span);
            }
            if let Some(back) = this.after_during {
                connect(graph, &exits, &[back], during.span);
            }
        }
    }
    if let EntryBody::Action(action) = &entry.body {
        for reference in action.output_references() {
            let spanned = Spanned::new(reference.to_string(), entry.kind_span);
            let Some((_, exits)) = resolve_ref(ctx, graph, fragments, &spanned, "fromStep") else {
                continue;
            };
            connect(graph, &exits, &this.entries, entry.kind_span);
        }
    }
}

/// Entry and exit steps of what a reference names: a plan entry, or one step an
/// intent expanded into (`intent-id/sub-step`), so plans can hook into an intent's
/// phases (for example stop writers only before a failback's final cutover).
fn resolve_ref(
    ctx: &mut Ctx<'_>,
    graph: &StepGraph,
    fragments: &HashMap<&str, Fragment>,
    id: &Spanned<String>,
    field: &str,
) -> Option<(Vec<usize>, Vec<usize>)> {
    if let Some(fragment) = fragments.get(id.value.as_str()) {
        return Some((fragment.entries.clone(), fragment.exits.clone()));
    }
    if let Some(index) = graph.index_of(&id.value) {
        return Some((vec![index.index()], vec![index.index()]));
    }
    let entry = id.value.split_once('/').map(|(entry, _)| entry).unwrap_or(&id.value);
    if ctx.loaded.broken_ids.contains(entry) || ctx.unexpanded.contains(entry) {
        return None; // already reported where that entry is written
    }
    if let Some(fragment) = fragments.get(entry) {
        let whole = graph.step(NodeIndex::new(fragment.entries[0]));
        if matches!(whole.kind, super::StepKind::Intent(_)) {
            // The intent is not expanded (no cluster facts): depend on all of it.
            return Some((fragment.entries.clone(), fragment.exits.clone()));
        }
    }
    let mut known: Vec<&str> = fragments.keys().copied().collect();
    if id.value.contains('/') {
        known.extend(graph.steps().map(|(_, s)| s.id.as_str()).filter(|s| s.starts_with(entry)));
    }
    let hint =
        crate::lang::de::closest(&id.value, &known).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
    ctx.error(
        "drplan::plan::unknown_step",
        id.span,
        format!("`{field}` names unknown step `{}`{hint}", id.value),
        "no step has this id",
    );
    None
}

/// `intent-id/sub-step` where the intent is drawn as one node (`dr graph` without
/// cluster facts).
fn names_phase_of_collapsed_intent(graph: &StepGraph, fragments: &HashMap<&str, Fragment>, id: &str) -> bool {
    let Some((entry, _)) = id.split_once('/') else { return false };
    let Some(fragment) = fragments.get(entry) else { return false };
    graph.index_of(id).is_none()
        && matches!(graph.step(NodeIndex::new(fragment.entries[0])).kind, super::StepKind::Intent(_))
}

/// Like [`connect`], but leaves out an edge that would close a cycle. A collapsed
/// intent has no node for its phases, and an entry may run after one phase and before
/// a later one (stop writers between a failback's sync and its cutover): against the
/// whole intent that reads as a cycle, so only the first order is drawn. The expanded
/// graph, where the phases exist, checks the real order.
fn connect_unless_cycle(graph: &mut StepGraph, from: &[usize], to: &[usize], span: Span) {
    for &f in from {
        for &t in to {
            let (f, t) = (NodeIndex::new(f), NodeIndex::new(t));
            if !petgraph::algo::has_path_connecting(&graph.graph, t, f, None) {
                graph.graph.update_edge(f, t, Edge { written_at: Some(span) });
            }
        }
    }
}

fn connect(graph: &mut StepGraph, from: &[usize], to: &[usize], span: Span) {
    for &f in from {
        for &t in to {
            graph.graph.update_edge(NodeIndex::new(f), NodeIndex::new(t), Edge { written_at: Some(span) });
        }
    }
}

/// Cycles longer than this are printed shortened: the first and last steps and the count.
const CYCLE_SHOWN: usize = 8;
/// At most this many `after:` references of one cycle are labelled in the source.
const CYCLE_LABELS: usize = 6;

/// Reports every dependency cycle with the chain of steps that forms it.
///
/// Linear in the size of the graph: strongly connected components by Kosaraju's
/// algorithm (petgraph's is iterative, so a 100,000-step chain cannot overflow the
/// stack), then one breadth-first search inside each component.
fn report_cycles(ctx: &mut Ctx<'_>, graph: &StepGraph) {
    let mut components = kosaraju_scc(&graph.graph);
    components.iter_mut().for_each(|c| c.sort());
    components.sort_by_key(|c| c[0]);
    for component in components {
        let self_loop = component.len() == 1 && graph.graph.contains_edge(component[0], component[0]);
        if component.len() < 2 && !self_loop {
            continue;
        }
        let cycle = cycle_within(graph, &component);
        let mut spans = Vec::new();
        for pair in cycle.iter().zip(cycle.iter().cycle().skip(1)) {
            if let Some(edge) = graph.graph.find_edge(*pair.0, *pair.1)
                && let Some(span) = graph.graph[edge].written_at
            {
                spans
                    .push((span, format!("`{}` waits for `{}`", graph.step(*pair.1).entry, graph.step(*pair.0).entry)));
            }
        }
        spans.sort_by_key(|(s, _)| s.start);
        spans.dedup_by_key(|(s, _)| *s);
        let unlabelled = spans.len().saturating_sub(CYCLE_LABELS);
        spans.truncate(CYCLE_LABELS);
        let primary = spans.first().map(|(s, _)| *s).unwrap_or(graph.step(cycle[0]).origin);
        let diag = ctx.error("drplan::plan::cycle", primary, cycle_message(graph, &cycle), "part of the cycle");
        diag.labels.clear();
        for (span, message) in spans {
            diag.labels.push(crate::diag::Label { span, message });
        }
        if diag.labels.is_empty() {
            diag.labels.push(crate::diag::Label { span: primary, message: "part of the cycle".into() });
        }
        let more = if unlabelled > 0 { format!(" ({unlabelled} more are not marked)") } else { String::new() };
        diag.help = Some(format!("remove one of these `after:` references so the steps can run in order{more}"));
    }
}

/// `dependency cycle: a → b → c → a`, or for a long cycle its first and last steps
/// and the count, so a 10,000-step cycle is one readable line.
fn cycle_message(graph: &StepGraph, cycle: &[NodeIndex]) -> String {
    let id = |n: &NodeIndex| graph.step(*n).id.as_str();
    if cycle.len() <= CYCLE_SHOWN {
        let names: Vec<&str> = cycle.iter().chain(cycle.first()).map(id).collect();
        return format!("dependency cycle: {}", names.join(" → "));
    }
    let head: Vec<&str> = cycle[..3].iter().map(id).collect();
    let tail: Vec<&str> = cycle[cycle.len() - 2..].iter().chain(cycle.first()).map(id).collect();
    format!(
        "dependency cycle of {} steps: {} → … ({} more) … → {}",
        cycle.len(),
        head.join(" → "),
        cycle.len() - 5,
        tail.join(" → ")
    )
}

/// One simple cycle through the strongly connected component, as a list of nodes.
fn cycle_within(graph: &StepGraph, component: &[NodeIndex]) -> Vec<NodeIndex> {
    let mut in_component = vec![false; graph.len()];
    for n in component {
        in_component[n.index()] = true;
    }
    let start = *component.iter().min().expect("components are never empty");
    // Breadth-first search from `start` back to itself inside the component.
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for s in graph.successors(n).filter(|&s| in_component[s.index()]) {
            if s == start {
                let mut path = vec![n];
                while let Some(&p) = parent.get(path.last().expect("non-empty")) {
                    path.push(p);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(s) {
                e.insert(n);
                queue.push_back(s);
            }
        }
    }
    vec![start]
}
