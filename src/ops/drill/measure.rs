//! What a drill measures from its run record: each step's duration, the achieved RTO
//! (first disruptive step's start to the end of the last readiness check of the restored
//! service) and the moment of disruption the RPO is measured against.

use jiff::Timestamp;

use crate::checkpoint::{RunRecord, StepStatus};
use crate::graph::StepGraph;
use crate::steps::{Action, WaitCondition};

/// One step of the run, as the report shows it.
#[derive(Debug, Clone)]
pub struct StepTiming {
    pub id: String,
    pub kind: &'static str,
    pub description: String,
    pub status: StepStatus,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    pub error: Option<String>,
}

impl StepTiming {
    pub fn seconds(&self) -> f64 {
        match (self.started, self.finished) {
            (Some(start), Some(end)) => seconds_between(start, end),
            _ => 0.0,
        }
    }
}

/// The service's outage as the run recorded it.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    /// Start of the first step that takes the service down (or of the first step).
    pub disrupted_at: Timestamp,
    /// End of the last readiness check of the restored service (or of the last step).
    pub restored_at: Timestamp,
}

impl Outage {
    pub fn seconds(&self) -> f64 {
        seconds_between(self.disrupted_at, self.restored_at)
    }
}

pub fn seconds_between(start: Timestamp, end: Timestamp) -> f64 {
    (end.as_millisecond() - start.as_millisecond()) as f64 / 1000.0
}

/// How old a recovery point was at the disruption; zero when it was captured after.
/// A timestamp in whole seconds (`creationTime`, `LastReplicatedTimestamp`) makes this an
/// upper bound, the safe side for the writes a restore may have lost. Points the run took
/// itself are dated by the run's clock first ([`super::verify::RecoveryPoint`]).
pub fn recovery_point_age(captured: Timestamp, disrupted_at: Timestamp) -> f64 {
    seconds_between(captured, disrupted_at).max(0.0)
}

fn parse(time: Option<&String>) -> Option<Timestamp> {
    time.and_then(|t| t.parse::<Timestamp>().ok())
}

/// Every step of the graph with its recorded timings, in the order they started.
pub fn step_timings(graph: &StepGraph, record: &RunRecord) -> Vec<StepTiming> {
    let mut timings: Vec<StepTiming> = graph
        .steps()
        .map(|(_, step)| {
            let recorded = record.steps.get(&step.id);
            StepTiming {
                id: step.id.clone(),
                kind: step.kind_name(),
                description: step.action().map(|a| a.describe()).unwrap_or_default(),
                status: recorded.map(|r| r.status).unwrap_or_default(),
                started: parse(recorded.and_then(|r| r.started_at.as_ref())),
                finished: parse(recorded.and_then(|r| r.finished_at.as_ref())),
                error: recorded.and_then(|r| r.error.clone()),
            }
        })
        .collect();
    timings.sort_by_key(|t| (t.started.is_none(), t.started, t.id.clone()));
    timings
}

/// Steps that take the service down: scaling, deleting, restarting, failing over storage.
pub fn disrupts_service(action: &Action) -> bool {
    matches!(
        action,
        Action::Scale(_)
            | Action::DeletePvc(_)
            | Action::DeleteObject(_)
            | Action::RestartPod(_)
            | Action::SetWorkloadClaim(_)
            | Action::EfsDeleteReplication(_)
    ) || action.is_destructive()
}

/// Checks that the restored service is back: its pods Ready, its claims Bound.
pub fn checks_readiness(action: &Action) -> bool {
    matches!(
        action,
        Action::Wait(w) if matches!(w.condition, WaitCondition::PodsReady { .. } | WaitCondition::PvcBound { .. })
    )
}

/// The outage the run caused, from the steps that ran; `None` when nothing ran.
pub fn outage(graph: &StepGraph, timings: &[StepTiming]) -> Option<Outage> {
    let action_of = |id: &str| graph.steps().find(|(_, s)| s.id == id).and_then(|(_, s)| s.action().cloned());
    let ran: Vec<&StepTiming> = timings.iter().filter(|t| t.started.is_some() && t.finished.is_some()).collect();
    let disrupted_at = ran
        .iter()
        .filter(|t| action_of(&t.id).is_some_and(|a| disrupts_service(&a)))
        .filter_map(|t| t.started)
        .min()
        .or_else(|| ran.iter().filter_map(|t| t.started).min())?;
    let restored_at = ran
        .iter()
        .filter(|t| action_of(&t.id).is_some_and(|a| checks_readiness(&a)))
        .filter_map(|t| t.finished)
        .max()
        .or_else(|| ran.iter().filter_map(|t| t.finished).max())?;
    Some(Outage { disrupted_at, restored_at: restored_at.max(disrupted_at) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_recovery_point_captured_after_the_disruption_has_no_age() {
        assert_eq!(recovery_point_age(at("2026-12-03T08:00:07Z"), at("2026-12-03T08:00:05.358Z")), 0.0);
    }

    #[test]
    fn an_older_recovery_point_is_as_old_as_its_timestamp_says() {
        assert_eq!(recovery_point_age(at("2026-12-03T08:00:03Z"), at("2026-12-03T08:00:05.358Z")), 2.358);
        assert_eq!(recovery_point_age(at("2026-12-03T08:00:03.250Z"), at("2026-12-03T08:00:05.358Z")), 2.108);
    }
}
