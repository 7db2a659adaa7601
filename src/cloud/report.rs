//! Cloud state for `dr plan`: the replications the plan's EFS steps act on (as
//! [`super::read`] read them), and the recovery point a failover would have now (the
//! destination's `LastReplicatedTimestamp` against `objectives.rpo`); the EBS volumes the
//! plan snapshots and the snapshots, copies and volumes its steps made (found by their
//! `drplan.dev/step` tag), read with one DescribeVolumes and one DescribeSnapshots call per
//! region, filtered to what the plan names.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::CloudAccess;
use crate::graph::StepGraph;
use crate::state::LiveState;
use crate::steps::Action;

/// What `dr plan` prints about cloud state: notes, warnings, and the calls it made.
#[derive(Debug, Default)]
pub struct CloudReport {
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    pub requests: usize,
}

impl CloudReport {
    fn extend(&mut self, other: CloudReport) {
        self.notes.extend(other.notes);
        self.warnings.extend(other.warnings);
        self.requests += other.requests;
    }
}

/// Everything `dr plan` reports of the cloud for `graph`: the EFS replications (already
/// read into `live`) and the EBS state (read here).
pub async fn read(graph: &StepGraph, rpo: Option<Duration>, live: &LiveState, cloud: &CloudAccess) -> CloudReport {
    let mut report = efs_replications(graph, rpo, live);
    report.extend(super::ebs_report::ebs_state(graph, cloud).await);
    report
}

/// The replications the plan's `efsDeleteReplication` steps delete, as [`super::read`]
/// read them into `live` (no further AWS calls), and what cannot be read.
pub fn efs_replications(graph: &StepGraph, rpo: Option<Duration>, live: &LiveState) -> CloudReport {
    let mut report = CloudReport { warnings: live.cloud_warnings.clone(), ..CloudReport::default() };
    let mut deletes: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (_, step) in graph.steps() {
        if let Some(Action::EfsDeleteReplication(p)) = step.action() {
            deletes.insert((p.region.clone(), step.id.clone(), p.source_file_system_id.clone()));
        }
    }
    for (region, step, source) in deletes {
        if !live.cloud_regions_read.contains(&region) {
            continue;
        }
        // One the plan creates first has no recovery point yet; a missing one blocks the
        // step, which the plan's step list says.
        if let Some(r) = live.get(&super::read::replication_key(&source)) {
            describe(&mut report, &step, &region, &r, rpo);
        }
    }
    report
}

fn describe(report: &mut CloudReport, step: &str, region: &str, r: &Value, rpo: Option<Duration>) {
    let text = |pointer: &str| r.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    let last = r.pointer("/destinations/0/lastReplicatedTimestamp").and_then(Value::as_str);
    let last = last.and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let age = last.map(|l| Duration::from_secs((jiff::Timestamp::now().as_second() - l.as_second()).max(0) as u64));
    let age_text = age.map_or("never".to_string(), |a| format!("{} ago", humantime::format_duration(a)));
    report.notes.push(format!(
        "EFS replication {} → {} ({region}): {}, last replicated {age_text}",
        text("/sourceFileSystemId"),
        text("/destinations/0/fileSystemId"),
        text("/destinations/0/status"),
    ));
    match (age, rpo) {
        (Some(age), Some(rpo)) if age > rpo => report.warnings.push(format!(
            "step `{step}`: a failover now would lose up to {} of writes, more than objectives.rpo ({})",
            humantime::format_duration(age),
            humantime::format_duration(rpo)
        )),
        (None, Some(_)) => report
            .warnings
            .push(format!("step `{step}`: the replica has never been synced; a failover now loses everything")),
        _ => {}
    }
}
