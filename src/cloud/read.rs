//! Cloud state for `dr plan` (and the preview `dr apply` shows): the EFS replications and
//! file systems the plan's steps act on, read with one call per kind and region, added to
//! the plan's live state as objects of the pseudo-cluster [`CLUSTER`]. The prediction then
//! diffs them and finds their steps satisfied, to do or blocked like Kubernetes objects.

use std::collections::BTreeSet;

use aws_sdk_efs::types::{FileSystemDescription, ReplicationConfigurationDescription};
use serde_json::{Value, json};

use super::CloudAccess;
use super::errors::{Call, classify};
use crate::graph::StepGraph;
use crate::state::{LiveState, ObjectKey};
use crate::steps::{Action, WaitCondition};

/// The cluster name cloud objects are keyed under in live state.
pub const CLUSTER: &str = "aws";
/// The API the EFS objects come from (their `apiVersion` in diffs).
pub const EFS_API: &str = "elasticfilesystem.amazonaws.com";
pub const REPLICATION: &str = "EfsReplication";
pub const FILE_SYSTEM: &str = "EfsFileSystem";

/// A replication is identified by its source file system (EFS allows one per source).
pub fn replication_key(source: &str) -> ObjectKey {
    ObjectKey::new(CLUSTER, EFS_API, REPLICATION, None, source)
}

pub fn file_system_key(id: &str) -> ObjectKey {
    ObjectKey::new(CLUSTER, EFS_API, FILE_SYSTEM, None, id)
}

/// The regions whose EFS state the plan's steps need: where each call is made and where
/// each file system it names lives.
fn efs_regions(graph: &StepGraph) -> BTreeSet<String> {
    let mut regions = BTreeSet::new();
    for (_, step) in graph.steps() {
        match step.action() {
            Some(Action::EfsDeleteReplication(p)) => {
                regions.insert(p.region.clone());
            }
            Some(Action::EfsCreateReplication(p)) => {
                regions.insert(p.region.clone());
                regions.insert(p.destination_region.clone());
            }
            Some(Action::EfsSetOverwriteProtection(p)) => {
                regions.insert(p.region.clone());
            }
            Some(Action::Wait(w)) => match &w.condition {
                WaitCondition::EfsReplicationDeleted { region, .. }
                | WaitCondition::EfsReplicationSynced { region, .. } => {
                    regions.insert(region.clone());
                }
                _ => {}
            },
            _ => {}
        }
    }
    regions
}

/// Reads the EFS state of every region the plan's EFS steps touch into `live`: one
/// DescribeReplicationConfigurations and one DescribeFileSystems (per page) per region.
/// A region that cannot be read is named in a warning and left out, and its steps are
/// shown as to do, as without cloud access.
pub async fn add_efs_state(graph: &StepGraph, cloud: &CloudAccess, live: &mut LiveState) {
    for region in efs_regions(graph) {
        match read_region(cloud, &region, live).await {
            Ok(()) => {
                live.cloud_regions_read.insert(region);
            }
            Err(message) => live.cloud_warnings.push(format!("cannot read EFS state in {region}: {message}")),
        }
    }
}

async fn read_region(cloud: &CloudAccess, region: &str, live: &mut LiveState) -> Result<(), String> {
    let client = cloud.efs(region).await;
    let call = Call { step: "(plan)", operation: "EFS DescribeReplicationConfigurations", region };
    live.requests += 1;
    let replications = client.describe_replication_configurations().send().await;
    let replications = replications.map_err(|e| classify(&call, e).to_string())?;
    let call = Call { step: "(plan)", operation: "EFS DescribeFileSystems", region };
    let mut file_systems = Vec::new();
    let mut marker = None;
    loop {
        live.requests += 1;
        let page = client.describe_file_systems().set_marker(marker).send().await;
        let page = page.map_err(|e| classify(&call, e).to_string())?;
        file_systems.extend(page.file_systems().iter().map(file_system_json));
        marker = page.next_marker().map(String::from);
        if marker.is_none() {
            break;
        }
    }
    for r in replications.replications() {
        insert(live, replication_key(r.source_file_system_id()), replication_json(r));
    }
    for (id, fs) in file_systems {
        insert(live, file_system_key(&id), fs);
    }
    Ok(())
}

fn insert(live: &mut LiveState, key: ObjectKey, object: Value) {
    if let Ok(raw) = serde_json::value::to_raw_value(&object) {
        live.insert(key, raw);
    }
}

/// A replication as `dr plan` shows it, in the API's field names (camelCase).
pub fn replication_json(r: &ReplicationConfigurationDescription) -> Value {
    let destinations: Vec<Value> = r
        .destinations()
        .iter()
        .map(|d| {
            json!({
                "fileSystemId": d.file_system_id(),
                "region": d.region(),
                "status": d.status().as_str(),
                "lastReplicatedTimestamp": d.last_replicated_timestamp().map(|t| t.to_string()),
            })
        })
        .collect();
    json!({
        "sourceFileSystemId": r.source_file_system_id(),
        "sourceFileSystemRegion": r.source_file_system_region(),
        "destinations": destinations,
    })
}

fn file_system_json(fs: &FileSystemDescription) -> (String, Value) {
    let protection = fs.file_system_protection().and_then(|p| p.replication_overwrite_protection());
    let object = json!({
        "fileSystemId": fs.file_system_id(),
        "name": fs.name(),
        "lifeCycleState": fs.life_cycle_state().as_str(),
        "replicationOverwriteProtection": protection.map(|p| p.as_str()),
    });
    (fs.file_system_id().to_string(), object)
}
