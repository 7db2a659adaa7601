//! Rendering a plan for review: per-object diffs, step states, a summary.

use std::fmt::Write;

use serde_json::{Value, json};
use similar::TextDiff;

use super::yaml_out::to_yaml;
use super::{Change, ChangeKind, StepState};
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

    fn destructive_steps(&self) -> usize {
        let to_do: std::collections::HashSet<&str> =
            self.states.iter().filter(|(_, st)| will_or_may_run(st)).map(|(id, _)| id.as_str()).collect();
        self.graph.steps().filter(|(_, s)| s.is_destructive() && to_do.contains(s.id.as_str())).count()
    }

    pub fn summary_line(&self) -> String {
        if self.to_do() == 0 && self.blocked().is_empty() {
            return format!("No changes. {} steps already satisfied; 0 to change.", self.states.len());
        }
        let (path, total) = self.graph.critical_path();
        let conditional = match self.conditional() {
            0 => String::new(),
            n => format!(", {n} more only if a fallback is needed"),
        };
        let at_risk_if_fallback = match self.data_at_risk_if_fallback_gib() {
            gib if gib > 0.0 => format!(" + {gib:.1} GiB if fallbacks run"),
            _ => String::new(),
        };
        format!(
            "Plan: {} to create, {} to change, {} to replace, {} to delete{}. {} steps to run{conditional} ({} destructive, {:.1} GiB of claims deleted{at_risk_if_fallback}), {} satisfied, {} blocked; critical path {} steps, about {}.",
            self.count(ChangeKind::Create),
            self.count(ChangeKind::Update),
            self.count(ChangeKind::Replace),
            self.count(ChangeKind::Delete),
            self.fallback_counts(),
            self.to_do(),
            self.destructive_steps(),
            self.data_at_risk_gib(),
            self.states.iter().filter(|(_, s)| matches!(s, StepState::Satisfied(_))).count(),
            self.blocked().len(),
            path.len(),
            humantime::format_duration(total),
        )
    }

    /// The review text: objects with diffs, then steps, then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "drplan will perform the following actions ({} list requests read the live state):\n",
            self.requests
        );
        for change in self.changes {
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
            } else {
                ""
            };
            let _ = writeln!(out, "  {symbol} {} [{}]{note}", change.key, change.key.cluster);
            let _ = writeln!(out, "      by: {}", change.steps.join(", "));
            let before = change.before.as_ref().map(to_yaml).unwrap_or_default();
            let after = change.after.as_ref().map(to_yaml).unwrap_or_default();
            let diff = TextDiff::from_lines(&before, &after);
            let unified = diff.unified_diff().context_radius(3).header("before", "after").to_string();
            for line in unified.lines() {
                let _ = writeln!(out, "      {line}");
            }
            out.push('\n');
        }
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

    /// The same content for machines.
    pub fn json(&self) -> Value {
        json!({
            "summary": self.summary_line(),
            "toDo": self.to_do(),
            "dataAtRiskGiB": self.data_at_risk_gib(),
            "dataAtRiskIfFallbackGiB": self.data_at_risk_if_fallback_gib(),
            "listRequests": self.requests,
            "steps": self.states.iter().map(|(id, s)| match s {
                StepState::Satisfied(why) => json!({"id": id, "state": "satisfied", "reason": why}),
                StepState::ToDo => json!({"id": id, "state": "toDo"}),
                StepState::Conditional(of) => json!({"id": id, "state": "conditional", "fallbackFor": of}),
                StepState::Blocked(why) => json!({"id": id, "state": "blocked", "reason": why}),
            }).collect::<Vec<_>>(),
            "changes": self.changes.iter().map(|c| json!({
                "object": c.key, "change": format!("{:?}", c.kind).to_lowercase(), "steps": c.steps,
                "destructive": c.deleted_on_the_way, "destructiveIfFallback": c.deleted_if_fallback,
                "onlyIfFallback": c.only_if_fallback, "before": c.before, "after": c.after,
            })).collect::<Vec<_>>(),
            "criticalPath": self.graph.critical_path().0.iter().map(|&n| self.graph.step(n).id.clone()).collect::<Vec<_>>(),
        })
    }
}
