//! The EFS API subset (REST-JSON, API version 2015-02-01) a DR plan uses:
//! DescribeFileSystems, DescribeReplicationConfigurations, CreateReplicationConfiguration,
//! DeleteReplicationConfiguration (with `deletionMode`) and UpdateFileSystemProtection.
//! Shapes follow the API reference; timestamps are epoch seconds as REST-JSON sends them.

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::model::{AwsError, AwsState, FileSystem, Protection, Replication, ReplicationStatus};
use crate::sim::clock::after;

/// A parsed EFS request.
#[derive(Debug, PartialEq)]
pub enum Operation {
    DescribeFileSystems,
    DescribeReplicationConfigurations,
    CreateReplicationConfiguration(String),
    DeleteReplicationConfiguration(String),
    UpdateFileSystemProtection(String),
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::DescribeFileSystems => "DescribeFileSystems",
            Operation::DescribeReplicationConfigurations => "DescribeReplicationConfigurations",
            Operation::CreateReplicationConfiguration(_) => "CreateReplicationConfiguration",
            Operation::DeleteReplicationConfiguration(_) => "DeleteReplicationConfiguration",
            Operation::UpdateFileSystemProtection(_) => "UpdateFileSystemProtection",
        }
    }
}

/// Routes `METHOD /2015-02-01/...`.
pub fn operation(method: &str, path: &str) -> Option<Operation> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("GET", ["2015-02-01", "file-systems"]) => Some(Operation::DescribeFileSystems),
        ("GET", ["2015-02-01", "file-systems", "replication-configurations"]) => {
            Some(Operation::DescribeReplicationConfigurations)
        }
        ("POST", ["2015-02-01", "file-systems", id, "replication-configuration"]) => {
            Some(Operation::CreateReplicationConfiguration(id.to_string()))
        }
        ("DELETE", ["2015-02-01", "file-systems", id, "replication-configuration"]) => {
            Some(Operation::DeleteReplicationConfiguration(id.to_string()))
        }
        ("PUT", ["2015-02-01", "file-systems", id, "protection"]) => {
            Some(Operation::UpdateFileSystemProtection(id.to_string()))
        }
        _ => None,
    }
}

/// Runs an operation in `region`; the answer is (HTTP status, JSON body or none).
pub fn execute(
    state: &mut AwsState,
    now: Timestamp,
    region: &str,
    operation: &Operation,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(u16, Option<Value>), AwsError> {
    match operation {
        Operation::DescribeFileSystems => describe_file_systems(state, region, query).map(|v| (200, Some(v))),
        Operation::DescribeReplicationConfigurations => {
            describe_replications(state, region, query).map(|v| (200, Some(v)))
        }
        Operation::CreateReplicationConfiguration(source) => {
            let body: Value = serde_json::from_slice(body)
                .map_err(|e| AwsError::new(400, "ValidationException", format!("invalid JSON body: {e}")))?;
            create_replication(state, now, region, &resolve_id(source), &body).map(|v| (200, Some(v)))
        }
        Operation::DeleteReplicationConfiguration(source) => {
            let mode = query.get("deletionMode").map(String::as_str).unwrap_or("ALL_CONFIGURATIONS");
            delete_replication(state, now, region, &resolve_id(source), mode).map(|()| (204, None))
        }
        Operation::UpdateFileSystemProtection(id) => {
            let body: Value = serde_json::from_slice(body)
                .map_err(|e| AwsError::new(400, "ValidationException", format!("invalid JSON body: {e}")))?;
            update_protection(state, region, &resolve_id(id), &body).map(|v| (200, Some(v)))
        }
    }
}

/// File system ids may be given as ARNs.
fn resolve_id(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

fn epoch(at: Timestamp) -> Value {
    json!(at.as_second())
}

fn file_system_json(state: &AwsState, fs: &FileSystem) -> Value {
    let mut body = json!({
        "OwnerId": state.settings.account,
        "CreationToken": fs.id,
        "FileSystemId": fs.id,
        "FileSystemArn": state.arn(&fs.id, &fs.region),
        "CreationTime": epoch(fs.created),
        "LifeCycleState": "available",
        "NumberOfMountTargets": 0,
        "SizeInBytes": { "Value": fs.data.len() as u64 + 6144 },
        "PerformanceMode": "generalPurpose",
        "Encrypted": true,
        "ThroughputMode": "elastic",
        "Tags": fs.name.as_ref().map(|n| vec![json!({"Key": "Name", "Value": n})]).unwrap_or_default(),
        "FileSystemProtection": { "ReplicationOverwriteProtection": fs.protection.as_str() },
    });
    if let Some(name) = &fs.name {
        body["Name"] = json!(name);
    }
    body
}

fn describe_file_systems(state: &AwsState, region: &str, query: &HashMap<String, String>) -> Result<Value, AwsError> {
    let list: Vec<Value> = match query.get("FileSystemId") {
        Some(id) => vec![file_system_json(state, state.file_system_in(&resolve_id(id), region)?)],
        None => {
            state.file_systems.values().filter(|fs| fs.region == region).map(|fs| file_system_json(state, fs)).collect()
        }
    };
    Ok(json!({ "FileSystems": list }))
}

fn replication_json(state: &AwsState, r: &Replication) -> Value {
    let mut destination = json!({
        "Status": r.status.as_str(),
        "FileSystemId": r.destination,
        "Region": r.destination_region,
    });
    if let Some(at) = r.last_replicated {
        destination["LastReplicatedTimestamp"] = epoch(at);
    }
    if r.status == ReplicationStatus::Error {
        destination["StatusMessage"] = json!("The source or destination file system is not available.");
    }
    let source_arn = state.arn(&r.source, &r.source_region);
    json!({
        "SourceFileSystemId": r.source,
        "SourceFileSystemRegion": r.source_region,
        "SourceFileSystemArn": source_arn,
        "OriginalSourceFileSystemArn": source_arn,
        "CreationTime": epoch(r.created),
        "Destinations": [destination],
        "SourceFileSystemOwnerId": state.settings.account,
    })
}

/// A replication is visible from both its regions.
fn visible_in(r: &Replication, region: &str) -> bool {
    r.source_region == region || r.destination_region == region
}

fn describe_replications(state: &AwsState, region: &str, query: &HashMap<String, String>) -> Result<Value, AwsError> {
    let list: Vec<Value> = match query.get("FileSystemId") {
        Some(id) => {
            let id = resolve_id(id);
            state.file_system_in(&id, region)?;
            let r = state.replication_of(&id).ok_or_else(|| AwsError::replication_not_found(&id))?;
            vec![replication_json(state, r)]
        }
        None => {
            state.replications.iter().filter(|r| visible_in(r, region)).map(|r| replication_json(state, r)).collect()
        }
    };
    Ok(json!({ "Replications": list }))
}

fn create_replication(
    state: &mut AwsState,
    now: Timestamp,
    region: &str,
    source: &str,
    body: &Value,
) -> Result<Value, AwsError> {
    state.file_system_in(source, region)?;
    let destinations = body["Destinations"]
        .as_array()
        .filter(|d| d.len() == 1)
        .ok_or_else(|| AwsError::new(400, "ValidationException", "Destinations must list exactly one destination"))?;
    let destination = &destinations[0];
    let destination_region = destination["Region"].as_str().unwrap_or(region).to_string();
    let destination_id = match destination["FileSystemId"].as_str().map(resolve_id) {
        Some(id) => id,
        // No FileSystemId: EFS creates the destination, already a replication target.
        None => {
            let id = state.new_file_system_id();
            let created = FileSystem {
                id: id.clone(),
                region: destination_region.clone(),
                name: None,
                created: now,
                protection: Protection::Disabled,
                data: Vec::new(),
            };
            state.replication_of(source).map_or(Ok(()), |_| Err(already_replicating(source)))?;
            state.file_systems.insert(id.clone(), created);
            id
        }
    };
    if destination_id == source {
        return Err(AwsError::bad_request("the source and destination file systems must differ"));
    }
    for id in [source, destination_id.as_str()] {
        if state.replication_of(id).is_some() {
            return Err(already_replicating(id));
        }
    }
    let target = state.file_system_in(&destination_id, &destination_region)?;
    if target.protection != Protection::Disabled {
        return Err(AwsError::new(
            409,
            "ConflictException",
            format!(
                "Destination file system '{destination_id}' has replication overwrite protection {}; disable it to use the file system as a replication destination.",
                target.protection.as_str()
            ),
        ));
    }
    if let Some(fs) = state.file_systems.get_mut(&destination_id) {
        fs.protection = Protection::Replicating;
    }
    state.replications.push(Replication {
        source: source.to_string(),
        source_region: region.to_string(),
        destination: destination_id,
        destination_region,
        created: now,
        status: ReplicationStatus::Enabling,
        last_replicated: None,
        deleted_at: None,
    });
    let created = state.replications.last().map(|r| replication_json(state, r)).unwrap_or_default();
    Ok(created)
}

fn already_replicating(id: &str) -> AwsError {
    AwsError::new(
        409,
        "ReplicationAlreadyExists",
        format!("File system '{id}' is already included in a replication configuration."),
    )
}

fn delete_replication(
    state: &mut AwsState,
    now: Timestamp,
    region: &str,
    source: &str,
    mode: &str,
) -> Result<(), AwsError> {
    if !matches!(mode, "ALL_CONFIGURATIONS" | "LOCAL_CONFIGURATION_ONLY") {
        return Err(AwsError::new(400, "ValidationException", format!("invalid deletionMode '{mode}'")));
    }
    let deletion_takes = state.settings.deletion_takes;
    let replication = state
        .replications
        .iter_mut()
        .find(|r| r.source == source && visible_in(r, region) && r.status != ReplicationStatus::Deleting)
        .ok_or_else(|| AwsError::replication_not_found(source))?;
    replication.status = ReplicationStatus::Deleting;
    replication.deleted_at = Some(after(now, deletion_takes));
    Ok(())
}

fn update_protection(state: &mut AwsState, region: &str, id: &str, body: &Value) -> Result<Value, AwsError> {
    state.file_system_in(id, region)?;
    let wanted = body["ReplicationOverwriteProtection"]
        .as_str()
        .and_then(Protection::parse)
        .filter(|p| *p != Protection::Replicating)
        .ok_or_else(|| {
            AwsError::new(400, "ValidationException", "ReplicationOverwriteProtection must be ENABLED or DISABLED")
        })?;
    if state.is_destination(id) {
        return Err(AwsError::new(
            409,
            "IncorrectFileSystemLifeCycleState",
            format!(
                "File system '{id}' is a replication destination; its protection cannot change while it replicates."
            ),
        ));
    }
    let fs = state.file_systems.get_mut(id).ok_or_else(|| AwsError::file_system_not_found(id))?;
    fs.protection = wanted;
    Ok(json!({ "ReplicationOverwriteProtection": wanted.as_str() }))
}
