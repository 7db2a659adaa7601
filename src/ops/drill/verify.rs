//! A drill's verification after the run: the restored service observed as it should be
//! (claims Bound at their size, workloads with every replica Ready, the plan's data
//! checks — its `exec` steps — passed), and the snapshot each restored claim came from,
//! whose age at the disruption is the achieved RPO.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::measure::StepTiming;
use crate::checkpoint::StepStatus;
use crate::graph::StepGraph;
use crate::lang::Quantity;
use crate::steps::WorkloadRef;
use crate::steps::manifests::api_resource;
use crate::steps::{Action, WaitCondition};

/// One verification, as a test case of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    /// `None` when it passed; why it failed otherwise.
    pub failure: Option<String>,
}

/// The point in time restored data comes from.
#[derive(Debug, Clone)]
pub struct RecoveryPoint {
    /// What was restored ("claim NAME", "EFS file system ID").
    pub restored: String,
    /// Where from ("snapshot NAME", "replica ID").
    pub from: String,
    /// When the data was captured: the snapshot's creation, the last replication.
    pub created_at: Timestamp,
    /// The run label and step annotation of a snapshot drplan took: which run and step.
    pub taken_by: Option<(String, String)>,
}

impl RecoveryPoint {
    /// The capture time by the run's own clock where the run took the point itself: no
    /// earlier than the start of the step that took it. `creationTime` comes from the
    /// cluster's clock, in whole seconds, and is compared with step times from drplan's
    /// host clock; a snapshot the run took after the disruption must not read as older
    /// than it (clock skew, truncation).
    pub fn captured_by_run_clock(&self, run_label: &str, timings: &[StepTiming]) -> Timestamp {
        let started = self
            .taken_by
            .as_ref()
            .filter(|(run, _)| run == run_label)
            .and_then(|(_, step)| timings.iter().find(|t| &t.id == step))
            .and_then(|t| t.started);
        started.map_or(self.created_at, |started| started.max(self.created_at))
    }
}

/// What verification observed.
#[derive(Debug, Default)]
pub struct Verified {
    pub checks: Vec<Check>,
    pub recovery_points: Vec<RecoveryPoint>,
}

/// Checks the end state the run's steps aimed at, reading it from the clusters.
pub async fn verify(graph: &StepGraph, timings: &[StepTiming], clients: &BTreeMap<String, Client>) -> Verified {
    let mut verified = Verified::default();
    for (_, step) in graph.steps() {
        let Some(client) = clients.get(&step.cluster) else { continue };
        match step.action() {
            Some(Action::RestorePvc(p)) => {
                let size = p.size.as_ref().map(|s| s.value.clone());
                let (check, point) = claim_check(client, &step.namespace, &p.claim.value, size).await;
                verified.checks.push(check);
                verified.recovery_points.extend(point);
            }
            Some(Action::ResizePvc(p)) => {
                let size = Some(p.size.value.clone());
                verified.checks.push(claim_check(client, &step.namespace, &p.claim.value, size).await.0);
            }
            Some(Action::Wait(w)) => {
                if let WaitCondition::PodsReady { workload } = &w.condition {
                    verified.checks.push(workload_check(client, &step.namespace, workload).await);
                }
            }
            Some(Action::Exec(_)) => {
                let timing = timings.iter().find(|t| t.id == step.id);
                let failure = match timing.map(|t| t.status) {
                    Some(StepStatus::Succeeded) => None,
                    Some(status) => Some(format!("the data check ended {status:?}")),
                    None => Some("the data check did not run".to_string()),
                };
                verified.checks.push(Check { name: format!("data check {}", step.id), failure });
            }
            _ => {}
        }
    }
    verified
}

async fn get(client: &Client, namespace: &str, api_version: &str, kind: &str, name: &str) -> Result<Value, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource(api_version, kind));
    let object = api.get(name).await.map_err(|e| format!("reading {kind} {namespace}/{name}: {e}"))?;
    serde_json::to_value(object).map_err(|e| e.to_string())
}

/// The claim is Bound with at least `size`; and the snapshot it was restored from.
async fn claim_check(
    client: &Client,
    namespace: &str,
    claim: &str,
    size: Option<Quantity>,
) -> (Check, Option<RecoveryPoint>) {
    let name =
        format!("claim {namespace}/{claim} Bound{}", size.as_ref().map(|s| format!(" at {s}")).unwrap_or_default());
    let pvc = match get(client, namespace, "v1", "PersistentVolumeClaim", claim).await {
        Ok(pvc) => pvc,
        Err(e) => return (Check { name, failure: Some(e) }, None),
    };
    let phase = pvc["status"]["phase"].as_str().unwrap_or("unknown");
    let capacity = pvc["status"]["capacity"]["storage"].as_str().and_then(|c| c.parse::<Quantity>().ok());
    let failure = if phase != "Bound" {
        Some(format!("the claim is {phase}"))
    } else {
        match (&size, &capacity) {
            (Some(want), Some(have)) if have < want => Some(format!("the claim has {have}, not {want}")),
            (Some(want), None) => Some(format!("the claim reports no capacity (wanted {want})")),
            _ => None,
        }
    };
    let point = recovery_point(client, namespace, claim, &pvc).await;
    (Check { name, failure }, point)
}

async fn recovery_point(client: &Client, namespace: &str, claim: &str, pvc: &Value) -> Option<RecoveryPoint> {
    let source = &pvc["spec"]["dataSource"];
    if source["kind"].as_str() != Some("VolumeSnapshot") {
        return None;
    }
    let snapshot = source["name"].as_str()?.to_string();
    let object = get(client, namespace, "snapshot.storage.k8s.io/v1", "VolumeSnapshot", &snapshot).await.ok()?;
    let created_at = object["status"]["creationTime"].as_str()?.parse::<Timestamp>().ok()?;
    let metadata = &object["metadata"];
    let run = metadata["labels"][crate::steps::manifests::RUN_LABEL].as_str();
    let step = metadata["annotations"][crate::steps::manifests::STEP_ANNOTATION].as_str();
    let taken_by = run.zip(step).map(|(run, step)| (run.to_string(), step.to_string()));
    Some(RecoveryPoint {
        restored: format!("claim {claim}"),
        from: format!("snapshot {snapshot}"),
        created_at,
        taken_by,
    })
}

/// Every replica of the workload is Ready.
async fn workload_check(client: &Client, namespace: &str, workload: &WorkloadRef) -> Check {
    let name = format!("{workload} in {namespace} Ready");
    let kind = workload.kind.to_string();
    let failure = match get(client, namespace, "apps/v1", &kind, &workload.name).await {
        Err(e) => Some(e),
        Ok(object) => {
            let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = object["status"]["readyReplicas"].as_i64().unwrap_or(0);
            (ready < wanted).then(|| format!("{ready} of {wanted} replicas are Ready"))
        }
    };
    Check { name, failure }
}

/// The recovery points of the plan's EFS failovers, read before the run: each replica's
/// `LastReplicatedTimestamp`, the last write a failover to it keeps. Unreadable state
/// gives no point (the RPO is then not measured), with the reason.
pub async fn efs_recovery_points(
    graph: &StepGraph,
    cloud: &crate::cloud::CloudAccess,
) -> (Vec<RecoveryPoint>, Vec<String>) {
    let (mut points, mut problems) = (Vec::new(), Vec::new());
    for (_, step) in graph.steps() {
        let Some(Action::EfsDeleteReplication(p)) = step.action() else { continue };
        let client = cloud.efs(&p.region).await;
        let listed = match client.describe_replication_configurations().send().await {
            Ok(out) => out.replications().to_vec(),
            Err(e) => {
                problems.push(format!("reading the EFS replications in {}: {e}", p.region));
                continue;
            }
        };
        let found = listed.iter().find(|r| r.source_file_system_id() == p.source_file_system_id);
        let Some(destination) = found.and_then(|r| r.destinations().first()) else { continue };
        match destination.last_replicated_timestamp().and_then(|t| Timestamp::from_second(t.secs()).ok()) {
            Some(created_at) => points.push(RecoveryPoint {
                restored: format!("EFS file system {}", p.source_file_system_id),
                from: format!("replica {} (last replicated)", destination.file_system_id()),
                created_at,
                taken_by: None,
            }),
            None => problems.push(format!("the replica {} was never synced", destination.file_system_id())),
        }
    }
    (points, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(id: &str, started: &str) -> StepTiming {
        StepTiming {
            id: id.into(),
            kind: "snapshotPvc",
            description: String::new(),
            status: StepStatus::Succeeded,
            started: Some(started.parse().unwrap()),
            finished: None,
            error: None,
        }
    }

    fn point(taken_by: Option<(&str, &str)>) -> RecoveryPoint {
        RecoveryPoint {
            restored: "claim a".into(),
            from: "snapshot a-dr".into(),
            // The cluster's clock, a second behind drplan's.
            created_at: "2026-12-03T08:00:04Z".parse().unwrap(),
            taken_by: taken_by.map(|(run, step)| (run.into(), step.into())),
        }
    }

    #[test]
    fn a_snapshot_this_run_took_is_no_older_than_the_step_that_took_it() {
        let timings = [timing("snap-a", "2026-12-03T08:00:05.200Z")];
        let ours = point(Some(("run-1", "snap-a")));
        assert_eq!(ours.captured_by_run_clock("run-1", &timings), "2026-12-03T08:00:05.200Z".parse().unwrap());
    }

    #[test]
    fn a_snapshot_of_another_run_keeps_its_creation_time() {
        let timings = [timing("snap-a", "2026-12-03T08:00:05.200Z")];
        let created = point(None).created_at;
        assert_eq!(point(Some(("run-0", "snap-a"))).captured_by_run_clock("run-1", &timings), created);
        assert_eq!(point(None).captured_by_run_clock("run-1", &timings), created);
    }
}
