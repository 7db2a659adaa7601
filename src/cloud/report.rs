//! Cloud state for `dr plan`: the replications the plan's EFS steps act on, read with one
//! DescribeReplicationConfigurations call per region, and the recovery point a failover
//! would have now (the destination's `LastReplicatedTimestamp` against `objectives.rpo`);
//! the EBS volumes the plan snapshots and the snapshots, copies and volumes its steps
//! made (found by their `drplan.dev/step` tag), read with one DescribeVolumes and one
//! DescribeSnapshots call per region, filtered to what the plan names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_efs::types::ReplicationConfigurationDescription;

use super::CloudAccess;
use super::errors::{Call, classify};
use crate::graph::StepGraph;
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

/// Everything `dr plan` reads in the cloud for `graph`: EFS replications and EBS state.
pub async fn read(graph: &StepGraph, rpo: Option<Duration>, cloud: &CloudAccess) -> CloudReport {
    let mut report = efs_replications(graph, rpo, cloud).await;
    report.extend(super::ebs_report::ebs_state(graph, cloud).await);
    report
}

/// Reads the replications the plan's `efsDeleteReplication` steps delete.
pub async fn efs_replications(graph: &StepGraph, rpo: Option<Duration>, cloud: &CloudAccess) -> CloudReport {
    let mut report = CloudReport::default();
    let mut by_region: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for (_, step) in graph.steps() {
        if let Some(Action::EfsDeleteReplication(p)) = step.action() {
            by_region.entry(p.region.clone()).or_default().insert((step.id.clone(), p.source_file_system_id.clone()));
        }
    }
    for (region, deletes) in by_region {
        let client = cloud.efs(&region).await;
        report.requests += 1;
        let call = Call { step: "(plan)", operation: "EFS DescribeReplicationConfigurations", region: &region };
        let listed = match client.describe_replication_configurations().send().await {
            Ok(out) => out.replications().to_vec(),
            Err(e) => {
                report.warnings.push(format!("cannot read EFS state: {}", classify(&call, e)));
                continue;
            }
        };
        for (step, source) in deletes {
            match listed.iter().find(|r| r.source_file_system_id() == source) {
                Some(r) => describe(&mut report, &step, &region, r, rpo),
                None => report.warnings.push(format!(
                    "step `{step}`: no EFS replication with source {source} in {region}: the delete will fail (ReplicationNotFound)"
                )),
            }
        }
    }
    report
}

fn describe(
    report: &mut CloudReport,
    step: &str,
    region: &str,
    r: &ReplicationConfigurationDescription,
    rpo: Option<Duration>,
) {
    let Some(destination) = r.destinations().first() else { return };
    let last = destination.last_replicated_timestamp().map(|t| t.secs());
    let age = last.map(|l| Duration::from_secs((jiff::Timestamp::now().as_second() - l).max(0) as u64));
    let age_text = age.map_or("never".to_string(), |a| format!("{} ago", humantime::format_duration(a)));
    report.notes.push(format!(
        "EFS replication {} → {} ({region}): {}, last replicated {age_text}",
        r.source_file_system_id(),
        destination.file_system_id(),
        destination.status().as_str()
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
