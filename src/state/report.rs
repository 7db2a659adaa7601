//! Rendering a plan for review: per-object diffs, step states, a summary.

use std::fmt::Write;
use std::io;

use similar::TextDiff;

use super::yaml_out::write_yaml;
use super::{Change, ChangeKind, StepState};
use crate::diag::plural;
use crate::graph::StepGraph;

fn will_or_may_run(state: &StepState) -> bool {
    matches!(state, StepState::ToDo | StepState::Conditional(_))
}

/// Everything `dr plan` shows.
pub struct PlanReport<'g> {
    pub graph: &'g StepGraph,
    pub states: &'g [(String, StepState)],
    pub changes: &'g [Change],
    pub requests: usize,
}

impl PlanReport<'_> {
    pub fn to_do(&self) -> usize {
        self.states.iter().filter(|(_, s)| *s == StepState::ToDo).count()
    }

    pub fn blocked(&self) -> Vec<(&str, &str)> {
        self.states
            .iter()
            .filter_map(|(id, s)| match s {
                StepState::Blocked(why) => Some((id.as_str(), why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Changes of `kind` when no fallback runs.
    fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind_without_fallback() == Some(kind)).count()
    }

    /// What fallbacks would change on top: ", if fallbacks run: 3 more to create, ...".
    fn fallback_counts(&self) -> String {
        let extra = |kind: ChangeKind| self.changes.iter().filter(|c| c.only_if_fallback && c.kind == kind).count();
        let replaced = self.changes.iter().filter(|c| c.deleted_if_fallback).count();
        let parts: Vec<String> = [
            (extra(ChangeKind::Create), "more to create"),
            (extra(ChangeKind::Update), "more to change"),
            (extra(ChangeKind::Delete), "more to delete"),
            (replaced, "replaced instead of changed"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() { String::new() } else { format!("; if fallbacks run: {}", parts.join(", ")) }
    }

    /// Steps that run only if a fallback is needed.
    fn conditional(&self) -> usize {
        self.states.iter().filter(|(_, s)| matches!(s, StepState::Conditional(_))).count()
    }

    /// GiB of claims the run deletes (restored or not).
    pub fn data_at_risk_gib(&self) -> f64 {
        self.claim_gib(|c| c.deleted_on_the_way)
    }

    /// GiB of claims only fallbacks delete.
    pub fn data_at_risk_if_fallback_gib(&self) -> f64 {
        self.claim_gib(|c| c.deleted_if_fallback)
    }

    fn claim_gib(&self, counted: impl Fn(&Change) -> bool) -> f64 {
        self.changes
            .iter()
            .filter(|c| counted(c) && c.key.kind == "PersistentVolumeClaim")
            .filter_map(|c| {
                c.before
                    .as_ref()?
                    .pointer("/spec/resources/requests/storage")?
                    .as_str()?
                    .parse::<crate::lang::Quantity>()
                    .ok()
            })
            // A fold from +0.0: an empty f64 sum is -0.0, printed as "-0.0 GiB".
            .fold(0.0, |total, q| total + q.gib())
    }

    pub(crate) fn destructive_steps(&self) -> usize {
        let to_do: std::collections::HashSet<&str> =
            self.states.iter().filter(|(_, st)| will_or_may_run(st)).map(|(id, _)| id.as_str()).collect();
        self.graph.steps().filter(|(_, s)| s.is_destructive() && to_do.contains(s.id.as_str())).count()
    }

    pub fn summary_line(&self) -> String {
        if self.to_do() == 0 && self.blocked().is_empty() {
            return format!("No changes. {} already satisfied; 0 to change.", plural(self.states.len(), "step"));
        }
        let (path, total) = self.critical_path_left();
        let conditional = match self.conditional() {
            0 => String::new(),
            n => format!(", {n} more only if a fallback is needed"),
        };
        let at_risk_if_fallback = match self.data_at_risk_if_fallback_gib() {
            gib if gib > 0.0 => format!(" + {gib:.1} GiB if fallbacks run"),
            _ => String::new(),
        };
        let summary = format!(
            "Plan: {} to create, {} to change, {} to replace, {} to delete{}. {} to run{conditional} ({} destructive, {:.1} GiB of claims deleted{at_risk_if_fallback}), {} satisfied, {} blocked; critical path {}, about {}.",
            self.count(ChangeKind::Create),
            self.count(ChangeKind::Update),
            self.count(ChangeKind::Replace),
            self.count(ChangeKind::Delete),
            self.fallback_counts(),
            plural(self.to_do(), "step"),
            self.destructive_steps(),
            self.data_at_risk_gib(),
            self.states.iter().filter(|(_, s)| matches!(s, StepState::Satisfied(_))).count(),
            self.blocked().len(),
            plural(path.len(), "step"),
            humantime::format_duration(total),
        );
        summary + &self.exec_note()
    }

    /// Commands run in pods change what the plan cannot see: say so.
    fn exec_note(&self) -> String {
        let execs = self
            .graph
            .steps()
            .filter(|(_, s)| s.kind_name() == "exec")
            .filter(|(_, s)| self.states.iter().any(|(id, st)| id == &s.id && will_or_may_run(st)))
            .count();
        match execs {
            0 => String::new(),
            n => format!(
                " {} {} commands in pods: their effect cannot be predicted and is not shown above.",
                plural(n, "exec step"),
                if n == 1 { "runs" } else { "run" }
            ),
        }
    }

    /// The critical path through the steps still to run (satisfied steps take no time
    /// and are not counted).
    pub(crate) fn critical_path_left(&self) -> (Vec<petgraph::graph::NodeIndex>, std::time::Duration) {
        let satisfied: std::collections::HashSet<&str> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(s, StepState::Satisfied(_)))
            .map(|(id, _)| id.as_str())
            .collect();
        self.graph.critical_path_of(|step| !satisfied.contains(step.id.as_str()))
    }

    /// The review text: objects with diffs, then steps, then the summary.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        // Writing into memory cannot fail, and everything written is UTF-8.
        let _ = self.write_text(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`text`](Self::text), written out as it is rendered: for a thousand workloads it
    /// is megabytes of diffs, better not held in memory whole.
    pub fn write_text(&self, out: &mut dyn io::Write) -> io::Result<()> {
        writeln!(
            out,
            "drplan will perform the following actions ({} list requests read the live state):\n",
            self.requests
        )?;
        // The diffs are most of the work, and each object's is independent: render a batch
        // on each core at a time, and write the batches in order.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for round in self.changes.chunks(DIFF_BATCH * threads) {
            for text in render_in_parallel(round) {
                write_escaped(out, &String::from_utf8_lossy(&text))?;
            }
        }
        write_escaped(out, &self.steps_text())
    }

    /// The step list and the summary.
    fn steps_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Steps:");
        let width = self.states.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
        for (id, state) in self.states {
            let (tag, why) = match state {
                StepState::Satisfied(why) => ("satisfied", why.as_str()),
                StepState::ToDo => ("to do", ""),
                StepState::Conditional(_) => ("if needed", ""),
                StepState::Blocked(why) => ("BLOCKED", why.as_str()),
            };
            let description = self.graph.index_of(id).map(|i| self.graph.step(i).describe()).unwrap_or_default();
            let why = if why.is_empty() { String::new() } else { format!(" — {why}") };
            let _ = writeln!(out, "  {tag:<9} {id:<width$}  {description}{why}");
        }
        let _ = writeln!(out, "\n{}", self.summary_line());
        out
    }
}

/// Names, ids and object contents come from the plan and the cluster: never write
/// them raw to a terminal ([`crate::diag::escape`]).
fn write_escaped(out: &mut dyn io::Write, text: &str) -> io::Result<()> {
    out.write_all(crate::diag::escape(text).as_bytes())
}

/// Objects whose diffs one thread renders at a time: enough to make starting a thread
/// cheap in comparison, few enough to keep the text held in memory small.
const DIFF_BATCH: usize = 256;

/// The diffs of `changes`, a batch of [`DIFF_BATCH`] per thread (this one included), in order.
fn render_in_parallel(changes: &[Change]) -> Vec<Vec<u8>> {
    let mut batches = changes.chunks(DIFF_BATCH);
    let first = batches.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = batches.map(|batch| scope.spawn(|| render_changes(batch))).collect();
        let mut texts = vec![render_changes(first)];
        texts.extend(others.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        texts
    })
}

fn render_changes(changes: &[Change]) -> Vec<u8> {
    let mut text = Vec::new();
    let mut buffers = DiffBuffers::default();
    for change in changes {
        // Writing into memory cannot fail.
        let _ = write_change(&mut text, change, &mut buffers);
    }
    text
}

/// Text buffers reused from one object's diff to the next.
#[derive(Default)]
struct DiffBuffers {
    before: String,
    after: String,
    unified: String,
}

/// One object: what happens to it, by which steps, and the diff of its YAML.
fn write_change(out: &mut dyn io::Write, change: &Change, buffers: &mut DiffBuffers) -> io::Result<()> {
    let symbol = match change.kind {
        ChangeKind::Create => "+",
        ChangeKind::Update => "~",
        ChangeKind::Replace => "-/+",
        ChangeKind::Delete => "-",
    };
    let note = if change.deleted_on_the_way {
        "  (destructive: deleted during the run)"
    } else if change.deleted_if_fallback {
        "  (destructive if a fallback runs: deleted and restored; otherwise changed in place)"
    } else if change.only_if_fallback {
        "  (only if a fallback runs)"
    } else if change.temporary {
        "  (paused during the run, then back as it was; the diff shows it paused)"
    } else {
        ""
    };
    writeln!(out, "  {symbol} {} [{}]{note}", change.key, change.key.cluster)?;
    writeln!(out, "      by: {}", change.steps.join(", "))?;
    let DiffBuffers { before, after, unified } = buffers;
    for (text, object) in [(&mut *before, &change.before), (&mut *after, &change.after)] {
        text.clear();
        if let Some(object) = object {
            write_yaml(text, object);
        }
    }
    let diff = TextDiff::from_lines(before.as_str(), after.as_str());
    unified.clear();
    let _ = write!(unified, "{}", diff.unified_diff().context_radius(3).header("before", "after"));
    for line in unified.lines() {
        out.write_all(b"      ")?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{self, BuildOptions};

    const THREE_WAITS: &str = "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: waits}\nclusters: [{name: c, namespace: db}]\nsteps:\n  - id: gone\n    wait: {for: {podsGone: {workload: {kind: StatefulSet, name: pg}}}}\n  - id: bound\n    after: gone\n    wait: {for: {pvcBound: {claim: data-pg-0}}}\n  - id: ready\n    after: bound\n    wait: {for: {podsReady: {workload: {kind: StatefulSet, name: pg}}}}\n";

    fn summary(states: &[(String, StepState)]) -> String {
        let (loaded, _) = crate::lang::load_plan_str("waits.yaml", THREE_WAITS);
        let (graph, diags) = graph::build(&loaded.unwrap(), BuildOptions { facts: None, intents_only: false });
        assert!(!diags.has_errors(), "{diags:?}");
        let graph = graph.unwrap();
        PlanReport { graph: &graph, states, changes: &[], requests: 0 }.summary_line()
    }

    #[test]
    fn the_critical_path_counts_only_the_steps_left() {
        let states = vec![
            ("gone".to_string(), StepState::Satisfied("no pod left".into())),
            ("bound".to_string(), StepState::Satisfied("Bound".into())),
            ("ready".to_string(), StepState::ToDo),
        ];
        let line = summary(&states);
        assert!(line.contains("1 step to run"), "{line}");
        assert!(line.contains("critical path 1 step,"), "{line}");
    }

    #[test]
    fn counts_of_several_steps_are_plural() {
        let states: Vec<_> = ["gone", "bound", "ready"].iter().map(|id| (id.to_string(), StepState::ToDo)).collect();
        let line = summary(&states);
        assert!(line.contains("3 steps to run") && line.contains("critical path 3 steps,"), "{line}");
    }
}
