//! EBS state for `dr plan`: whether the volumes the plan snapshots exist, and per EBS
//! step whether a run already made its snapshot, copy or volume (found by the
//! `drplan.dev/step` tag every run writes) — "done by run R" — or it is still to do.
//!
//! Reads are batched: per region one DescribeVolumes and one DescribeSnapshots, each
//! filtered to the ids and step tags the plan names (pages followed), never one call per
//! object.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, Snapshot, Volume};

use super::CloudAccess;
use super::ebs::{RUN_TAG, STEP_TAG};
use super::errors::{Call, classify};
use super::report::CloudReport;
use crate::graph::StepGraph;
use crate::steps::Action;

/// What the plan reads in one region.
#[derive(Default)]
struct RegionReads {
    /// Volumes snapshotted, by id, with the step that snapshots each.
    source_volumes: BTreeMap<String, String>,
    /// Steps whose made volume lives here.
    volume_steps: BTreeSet<String>,
    /// Steps whose made snapshot (or copy) lives here.
    snapshot_steps: BTreeSet<String>,
}

fn plan_reads(graph: &StepGraph) -> BTreeMap<String, RegionReads> {
    let mut regions: BTreeMap<String, RegionReads> = BTreeMap::new();
    for (_, step) in graph.steps() {
        match step.action() {
            Some(Action::EbsSnapshot(p)) => {
                let reads = regions.entry(p.region.clone()).or_default();
                reads.source_volumes.insert(p.volume_id.clone(), step.id.clone());
                reads.snapshot_steps.insert(step.id.clone());
            }
            Some(Action::EbsCopySnapshot(p)) => {
                regions.entry(p.region.clone()).or_default().snapshot_steps.insert(step.id.clone());
            }
            Some(Action::EbsCreateVolume(p)) => {
                regions.entry(p.region.clone()).or_default().volume_steps.insert(step.id.clone());
            }
            _ => {}
        }
    }
    regions
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder().name(name).set_values(Some(values.into_iter().collect())).build()
}

fn tag<'t>(tags: &'t [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'t str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

pub async fn ebs_state(graph: &StepGraph, cloud: &CloudAccess) -> CloudReport {
    let mut report = CloudReport::default();
    for (region, reads) in plan_reads(graph) {
        let client = cloud.ec2(&region).await;
        if !reads.source_volumes.is_empty() || !reads.volume_steps.is_empty() {
            match describe_volumes(&client, &region, &reads, &mut report).await {
                Ok(volumes) => volumes_report(&mut report, &region, &reads, &volumes),
                Err(e) => report.warnings.push(format!("cannot read EBS volumes: {e}")),
            }
        }
        if !reads.snapshot_steps.is_empty() {
            match describe_snapshots(&client, &region, &reads, &mut report).await {
                Ok(snapshots) => made_report(&mut report, &reads.snapshot_steps, snapshots.iter().map(snapshot_view)),
                Err(e) => report.warnings.push(format!("cannot read EBS snapshots: {e}")),
            }
        }
    }
    report
}

/// One DescribeVolumes (and its pages): the source volumes by id and the made ones by
/// step tag; with both kinds in one region, every volume of the region (EC2 ANDs filters).
async fn describe_volumes(
    client: &aws_sdk_ec2::Client,
    region: &str,
    reads: &RegionReads,
    report: &mut CloudReport,
) -> Result<Vec<Volume>, crate::exec::StepError> {
    let filters = match (reads.source_volumes.is_empty(), reads.volume_steps.is_empty()) {
        (false, true) => vec![filter("volume-id", reads.source_volumes.keys().cloned())],
        (true, false) => vec![filter(&format!("tag:{STEP_TAG}"), reads.volume_steps.iter().cloned())],
        _ => Vec::new(),
    };
    let call = Call { step: "(plan)", operation: "EC2 DescribeVolumes", region };
    let mut all = Vec::new();
    let mut token = None;
    loop {
        report.requests += 1;
        let page = client
            .describe_volumes()
            .set_filters(Some(filters.clone()))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify(&call, e))?;
        all.extend(page.volumes().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(all);
        }
    }
}

async fn describe_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    reads: &RegionReads,
    report: &mut CloudReport,
) -> Result<Vec<Snapshot>, crate::exec::StepError> {
    let call = Call { step: "(plan)", operation: "EC2 DescribeSnapshots", region };
    let mut all = Vec::new();
    let mut token = None;
    loop {
        report.requests += 1;
        let page = client
            .describe_snapshots()
            .owner_ids("self")
            .filters(filter(&format!("tag:{STEP_TAG}"), reads.snapshot_steps.iter().cloned()))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify(&call, e))?;
        all.extend(page.snapshots().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(all);
        }
    }
}

fn volumes_report(report: &mut CloudReport, region: &str, reads: &RegionReads, volumes: &[Volume]) {
    for (id, step) in &reads.source_volumes {
        match volumes.iter().find(|v| v.volume_id() == Some(id.as_str())) {
            Some(v) => report.notes.push(format!(
                "EBS volume {id} ({}): {}, {} GiB {}",
                v.availability_zone().unwrap_or(region),
                v.state().map(|s| s.as_str()).unwrap_or("unknown"),
                v.size().unwrap_or_default(),
                v.volume_type().map(|t| t.as_str()).unwrap_or("unknown"),
            )),
            None => report.warnings.push(format!(
                "step `{step}`: EBS volume {id} does not exist in {region}: the snapshot will fail (InvalidVolume.NotFound)"
            )),
        }
    }
    made_report(report, &reads.volume_steps, volumes.iter().map(volume_view));
}

/// (step tag, run tag, id, state) of a resource drplan made.
type Made = (Option<String>, Option<String>, String, String);

fn snapshot_view(s: &Snapshot) -> Made {
    let state = match (s.state().map(|st| st.as_str()), s.progress()) {
        (Some("pending"), Some(progress)) => format!("pending {progress}"),
        (state, _) => state.unwrap_or("unknown").to_string(),
    };
    (
        tag(s.tags(), STEP_TAG).map(String::from),
        tag(s.tags(), RUN_TAG).map(String::from),
        s.snapshot_id().unwrap_or_default().to_string(),
        state,
    )
}

fn volume_view(v: &Volume) -> Made {
    (
        tag(v.tags(), STEP_TAG).map(String::from),
        tag(v.tags(), RUN_TAG).map(String::from),
        v.volume_id().unwrap_or_default().to_string(),
        v.state().map(|s| s.as_str().to_string()).unwrap_or_else(|| "unknown".into()),
    )
}

/// "step `X`: done by run R (id, state)" or "step `X`: to do".
fn made_report(report: &mut CloudReport, steps: &BTreeSet<String>, made: impl Iterator<Item = Made>) {
    let mut by_step: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for (step, run, id, state) in made {
        if let Some(step) = step.filter(|s| steps.contains(s)) {
            by_step.entry(step).or_default().push((run.unwrap_or_else(|| "unknown".into()), id, state));
        }
    }
    for step in steps {
        match by_step.get(step).map(Vec::as_slice) {
            None | Some([]) => report.notes.push(format!("step `{step}`: to do")),
            Some(found) => {
                let listed: Vec<String> =
                    found.iter().map(|(run, id, state)| format!("run {run} ({id}, {state})")).collect();
                report.notes.push(format!("step `{step}`: done by {}", listed.join(", ")));
            }
        }
    }
}
