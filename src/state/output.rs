//! `dr plan --format json`: the plan report as a versioned document for machines.
//!
//! Its JSON Schema, generated from these types, is checked in at
//! [`PLAN_OUTPUT_SCHEMA_PATH`] (`dr schema plan-output` prints it). Keys are camelCase,
//! counts are numbers; a change that breaks readers raises [`PLAN_OUTPUT_VERSION`].

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::report::PlanReport;
use super::{Change, ChangeKind, StepState};
use crate::lang::Objectives;

/// Where the checked-in schema lives, relative to the repository root.
pub const PLAN_OUTPUT_SCHEMA_PATH: &str = "schemas/plan-output.schema.json";

/// Version of the document's shape (`schemaVersion`).
pub const PLAN_OUTPUT_VERSION: u32 = 1;

/// What `dr plan --format json` prints.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "drplan plan output")]
pub struct PlanOutput {
    /// Always `DrplanPlanOutput`.
    pub kind: String,
    /// Version of this document's shape; raised when a change would break readers.
    pub schema_version: u32,
    /// `metadata.name` of the plan.
    pub plan_name: String,
    /// The verdict, as the exit code says it (noChanges 0, changes 2, blocked 1).
    pub outcome: Outcome,
    /// The one-line summary `dr plan` ends with.
    pub summary: String,
    pub counts: Counts,
    /// Steps to run (same as `counts.stepsToRun`).
    pub to_do: usize,
    /// GiB of claims the run deletes (restored or not).
    #[serde(rename = "dataAtRiskGiB")]
    pub data_at_risk_gib: f64,
    /// GiB of claims only fallbacks delete.
    #[serde(rename = "dataAtRiskIfFallbackGiB")]
    pub data_at_risk_if_fallback_gib: f64,
    /// List requests made to read the live state.
    pub list_requests: usize,
    /// Ids of the steps on the longest path through the steps still to run.
    pub critical_path: Vec<String>,
    /// Estimated duration of that path, in seconds.
    pub critical_path_seconds: f64,
    /// The plan's objectives, against the estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objectives: Option<ObjectivesOutput>,
    pub steps: Vec<StepOutput>,
    pub changes: Vec<ChangeOutput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    NoChanges,
    Changes,
    Blocked,
}

/// Numbers of objects and steps.
#[derive(Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Objects created (when no fallback runs).
    pub create: usize,
    /// Objects changed in place.
    pub change: usize,
    /// Objects deleted and created again under the same name.
    pub replace: usize,
    /// Objects deleted.
    pub delete: usize,
    pub steps_to_run: usize,
    pub steps_satisfied: usize,
    pub steps_blocked: usize,
    /// Steps that run only if a fallback is needed.
    pub steps_conditional: usize,
    /// Destructive steps that will or may run.
    pub destructive_steps: usize,
    /// What fallbacks would change on top, if they run.
    pub if_fallback: FallbackCounts,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FallbackCounts {
    pub create: usize,
    pub change: usize,
    pub delete: usize,
    /// Objects changed in place unless a fallback runs, which deletes and restores them.
    pub replaced_instead_of_changed: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectivesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<u64>,
    /// Whether the critical-path estimate fits in the RTO (absent without an RTO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_within_rto: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepOutput {
    pub id: String,
    pub state: StepStateName,
    /// What the step does.
    pub description: String,
    /// Why it is satisfied or blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a conditional step: the step whose fallback it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
    pub destructive: bool,
    pub on_critical_path: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StepStateName {
    Satisfied,
    ToDo,
    Conditional,
    Blocked,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeOutput {
    pub object: ObjectOutput,
    pub change: ChangeName,
    /// Steps that touch the object, in order.
    pub steps: Vec<String>,
    /// Deleted during the run (even if created again).
    pub destructive: bool,
    /// Deleted and restored only if a fallback runs.
    pub destructive_if_fallback: bool,
    /// Changed only if a fallback runs.
    pub only_if_fallback: bool,
    /// Changed for part of the run only (a controller paused), then back as it was:
    /// `after` is the object while paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
    /// The object as read (absent when created).
    pub before: Option<Value>,
    /// The object as the run leaves it (absent when deleted).
    pub after: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ChangeName {
    Create,
    Update,
    Replace,
    Delete,
}

/// One object in one cluster.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectOutput {
    pub cluster: String,
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl PlanOutput {
    pub fn new(report: &PlanReport<'_>, objectives: Option<&Objectives>) -> PlanOutput {
        let (path, estimate) = report.critical_path_left();
        let on_path: HashSet<&str> = path.iter().map(|&n| report.graph.step(n).id.as_str()).collect();
        let counts = counts(report);
        let outcome = if counts.steps_blocked > 0 {
            Outcome::Blocked
        } else if counts.steps_to_run == 0 {
            Outcome::NoChanges
        } else {
            Outcome::Changes
        };
        PlanOutput {
            kind: "DrplanPlanOutput".into(),
            schema_version: PLAN_OUTPUT_VERSION,
            plan_name: report.graph.plan_name.clone(),
            outcome,
            summary: report.summary_line(),
            to_do: counts.steps_to_run,
            counts,
            data_at_risk_gib: report.data_at_risk_gib(),
            data_at_risk_if_fallback_gib: report.data_at_risk_if_fallback_gib(),
            list_requests: report.requests,
            critical_path: path.iter().map(|&n| report.graph.step(n).id.clone()).collect(),
            critical_path_seconds: estimate.as_secs_f64(),
            objectives: objectives.map(|o| {
                let rto = o.rto.as_ref().map(|d| d.value.as_secs());
                ObjectivesOutput {
                    rto_seconds: rto,
                    rpo_seconds: o.rpo.as_ref().map(|d| d.value.as_secs()),
                    estimate_within_rto: rto.map(|rto| estimate.as_secs_f64() <= rto as f64),
                }
            }),
            steps: report.states.iter().map(|(id, state)| step_output(report, id, state, &on_path)).collect(),
            changes: report.changes.iter().map(change_output).collect(),
        }
    }
}

fn counts(report: &PlanReport<'_>) -> Counts {
    let changes = report.changes;
    let without_fallback = |kind| changes.iter().filter(|c| c.kind_without_fallback() == Some(kind)).count();
    let only_if_fallback = |kind| changes.iter().filter(|c| c.only_if_fallback && c.kind == kind).count();
    let in_state = |pred: fn(&StepState) -> bool| report.states.iter().filter(|(_, s)| pred(s)).count();
    Counts {
        create: without_fallback(ChangeKind::Create),
        change: without_fallback(ChangeKind::Update),
        replace: without_fallback(ChangeKind::Replace),
        delete: without_fallback(ChangeKind::Delete),
        steps_to_run: in_state(|s| *s == StepState::ToDo),
        steps_satisfied: in_state(|s| matches!(s, StepState::Satisfied(_))),
        steps_blocked: in_state(|s| matches!(s, StepState::Blocked(_))),
        steps_conditional: in_state(|s| matches!(s, StepState::Conditional(_))),
        destructive_steps: report.destructive_steps(),
        if_fallback: FallbackCounts {
            create: only_if_fallback(ChangeKind::Create),
            change: only_if_fallback(ChangeKind::Update),
            delete: only_if_fallback(ChangeKind::Delete),
            replaced_instead_of_changed: changes.iter().filter(|c| c.deleted_if_fallback).count(),
        },
    }
}

fn step_output(report: &PlanReport<'_>, id: &str, state: &StepState, on_path: &HashSet<&str>) -> StepOutput {
    let step = report.graph.index_of(id).map(|i| report.graph.step(i));
    let (state, reason, fallback_for) = match state {
        StepState::Satisfied(why) => (StepStateName::Satisfied, Some(why.clone()), None),
        StepState::ToDo => (StepStateName::ToDo, None, None),
        StepState::Conditional(of) => (StepStateName::Conditional, None, Some(of.clone())),
        StepState::Blocked(why) => (StepStateName::Blocked, Some(why.clone()), None),
    };
    StepOutput {
        id: id.to_string(),
        state,
        description: step.map(|s| s.describe()).unwrap_or_default(),
        reason,
        fallback_for,
        destructive: step.is_some_and(|s| s.is_destructive()),
        on_critical_path: on_path.contains(id),
    }
}

fn change_output(change: &Change) -> ChangeOutput {
    let key = &change.key;
    ChangeOutput {
        object: ObjectOutput {
            cluster: key.cluster.clone(),
            api_version: key.api_version.clone(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        },
        change: match change.kind {
            ChangeKind::Create => ChangeName::Create,
            ChangeKind::Update => ChangeName::Update,
            ChangeKind::Replace => ChangeName::Replace,
            ChangeKind::Delete => ChangeName::Delete,
        },
        steps: change.steps.clone(),
        destructive: change.deleted_on_the_way,
        destructive_if_fallback: change.deleted_if_fallback,
        only_if_fallback: change.only_if_fallback,
        temporary: change.temporary,
        before: change.before.clone(),
        after: change.after.clone(),
    }
}

/// The JSON Schema of [`PlanOutput`], pretty-printed with a trailing newline.
pub fn plan_output_schema_json() -> String {
    let schema = schemars::schema_for!(PlanOutput);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}
