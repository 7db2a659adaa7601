//! The step graph: intents expanded into a DAG of typed steps, checked and rendered.
//!
//! Like Terraform's `dag` plus the graph builders of `plans`: [`build`] turns a loaded
//! plan (and, when known, cluster facts) into a [`StepGraph`], reporting duplicate ids,
//! unknown references, cycles and unsafe orderings as diagnostics; [`render`] prints it.

mod build;
mod checks;
mod exec_checks;
mod expand;
mod missing;
mod reconciler_checks;
pub mod render;
pub mod saved;
mod skipped;

use std::collections::HashMap;
use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diag::Span;
use crate::lang::Intent;
use crate::steps::Action;

pub use build::{BuildOptions, build};
pub use expand::{ARGOCD_NAMESPACE, FLUX_NAMESPACE, pause_patch};
pub use skipped::CHECKS_SKIPPED;

/// What a node of the graph does.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// A concrete action the executor runs.
    Action(Action),
    /// An intent shown unexpanded (no cluster facts were given to expand it).
    Intent(Intent),
}

/// One node of the step graph.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique id: the entry id, or `entry/sub-step` for steps an intent expanded into.
    pub id: String,
    pub kind: StepKind,
    /// Id of the plan entry this step came from.
    pub entry: String,
    /// Where the entry is written, for diagnostics about expanded steps.
    pub origin: Span,
    /// Cluster the step acts on (empty for cloud-only steps).
    pub cluster: String,
    /// Namespace the step acts in (resolved from the step, its cluster, or `default`).
    pub namespace: String,
    /// Set on the steps of a fallback: they run only if this step recorded that its
    /// fallback is needed ([`crate::steps::FALLBACK_NEEDED`]), and are skipped otherwise.
    pub fallback_for: Option<String>,
}

impl Step {
    pub fn action(&self) -> Option<&Action> {
        match &self.kind {
            StepKind::Action(a) => Some(a),
            StepKind::Intent(_) => None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            StepKind::Action(a) => a.kind_name(),
            StepKind::Intent(i) => i.kind_name(),
        }
    }

    pub fn describe(&self) -> String {
        let what = match &self.kind {
            StepKind::Action(a) => a.describe(),
            StepKind::Intent(i) => format!("{} (intent, not expanded)", i.describe()),
        };
        match &self.fallback_for {
            Some(of) => format!("{what} [fallback: only if `{of}` needs it]"),
            None => what,
        }
    }

    pub fn is_destructive(&self) -> bool {
        match &self.kind {
            StepKind::Action(a) => a.is_destructive(),
            StepKind::Intent(i) => !matches!(i, Intent::EfsFailover(_)),
        }
    }

    /// Typical duration, for the critical path.
    pub fn estimate(&self) -> Duration {
        match &self.kind {
            StepKind::Action(a) => a.estimate(),
            StepKind::Intent(_) => Duration::from_secs(300),
        }
    }
}

/// Why an edge exists, so a cycle can be reported at the `after:` that made it.
#[derive(Clone, Copy, Debug)]
pub struct Edge {
    /// The `after:` (or `during:`) reference that created the edge, if written by the user.
    pub written_at: Option<Span>,
}

/// The DAG of a plan's steps, in the order they were written.
#[derive(Debug, Default)]
pub struct StepGraph {
    pub plan_name: String,
    pub graph: DiGraph<Step, Edge>,
    ids: HashMap<String, NodeIndex>,
}

impl StepGraph {
    pub fn new(plan_name: impl Into<String>) -> StepGraph {
        StepGraph { plan_name: plan_name.into(), ..StepGraph::default() }
    }

    pub fn add_step(&mut self, step: Step) -> NodeIndex {
        let id = step.id.clone();
        let index = self.graph.add_node(step);
        self.ids.insert(id, index);
        index
    }

    pub fn index_of(&self, id: &str) -> Option<NodeIndex> {
        self.ids.get(id).copied()
    }

    pub fn step(&self, index: NodeIndex) -> &Step {
        &self.graph[index]
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn steps(&self) -> impl Iterator<Item = (NodeIndex, &Step)> {
        self.graph.node_indices().map(move |i| (i, &self.graph[i]))
    }

    pub fn predecessors(&self, index: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(index, Direction::Incoming)
    }

    pub fn successors(&self, index: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(index, Direction::Outgoing)
    }

    /// Every step that must finish before `index` (transitively).
    pub fn ancestors(&self, index: NodeIndex) -> Vec<NodeIndex> {
        let mut seen = vec![false; self.graph.node_count()];
        let mut stack: Vec<NodeIndex> = self.predecessors(index).collect();
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n.index()], true) {
                continue;
            }
            out.push(n);
            stack.extend(self.predecessors(n));
        }
        out
    }

    /// Steps in an order where every step comes after its dependencies; ties keep
    /// the written order. `None` when the graph has a cycle.
    pub fn topological_order(&self) -> Option<Vec<NodeIndex>> {
        let mut indegree: Vec<usize> = self.graph.node_indices().map(|n| self.predecessors(n).count()).collect();
        let mut ready: std::collections::BTreeSet<usize> = (0..indegree.len()).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(first) = ready.pop_first() {
            let n = NodeIndex::new(first);
            order.push(n);
            for s in self.successors(n) {
                indegree[s.index()] -= 1;
                if indegree[s.index()] == 0 {
                    ready.insert(s.index());
                }
            }
        }
        (order.len() == indegree.len()).then_some(order)
    }

    /// The longest chain of steps by estimated duration, first step first.
    pub fn critical_path(&self) -> (Vec<NodeIndex>, Duration) {
        self.critical_path_of(|_| true)
    }

    /// The critical path through the steps `counts` keeps: the others take no time and
    /// are left out of the path (for the steps still to run after an earlier run).
    pub fn critical_path_of(&self, counts: impl Fn(&Step) -> bool) -> (Vec<NodeIndex>, Duration) {
        let Some(order) = self.topological_order() else {
            return (Vec::new(), Duration::ZERO);
        };
        let mut finish = vec![Duration::ZERO; self.graph.node_count()];
        let mut via: Vec<Option<NodeIndex>> = vec![None; self.graph.node_count()];
        for &n in &order {
            let best = self.predecessors(n).max_by_key(|p| (finish[p.index()], std::cmp::Reverse(p.index())));
            let start = best.map(|p| finish[p.index()]).unwrap_or_default();
            via[n.index()] = best;
            let estimate = if counts(&self.graph[n]) { self.graph[n].estimate() } else { Duration::ZERO };
            finish[n.index()] = start + estimate;
        }
        let Some(last) = order.iter().copied().max_by_key(|n| (finish[n.index()], std::cmp::Reverse(n.index()))) else {
            return (Vec::new(), Duration::ZERO);
        };
        let mut path = vec![last];
        while let Some(p) = via[path.last().expect("path is never empty").index()] {
            path.push(p);
        }
        path.reverse();
        path.retain(|&n| counts(&self.graph[n]));
        (path, finish[last.index()])
    }

    /// Longest number of edges from a root to each step (its "wave" when run in parallel).
    pub fn levels(&self) -> Vec<usize> {
        let mut level = vec![0; self.graph.node_count()];
        if let Some(order) = self.topological_order() {
            for n in order {
                level[n.index()] = self.predecessors(n).map(|p| level[p.index()] + 1).max().unwrap_or(0);
            }
        }
        level
    }
}
