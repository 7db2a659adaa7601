//! The simulated AWS account's starting state, from `aws.yaml` beside a plan's cluster
//! dumps (`plans/NAME/aws.yaml`):
//!
//! ```yaml
//! settings: { replicationLag: 1m, enablingTakes: 2m, deletionTakes: 3m }
//! fileSystems:
//!   - { fileSystemId: fs-0123456789abcdef0, region: us-east-1, name: reports, data: "..." }
//!   - { fileSystemId: fs-0fedcba9876543210, region: us-west-2 }
//! replications:
//!   - { source: fs-0123456789abcdef0, destination: fs-0fedcba9876543210, status: ENABLED }
//! ```
//!
//! A replication's destination starts with the source's data and protection REPLICATING;
//! other file systems start with protection ENABLED unless `protection:` says otherwise.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use super::model::{AwsSettings, AwsState, FileSystem, Protection, Replication, ReplicationStatus};
use crate::lang::yaml::{self, Limits};
use crate::sim::config::Faults;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsFile {
    #[serde(default)]
    pub settings: SettingsFile,
    #[serde(default)]
    pub file_systems: Vec<FileSystemFile>,
    #[serde(default)]
    pub replications: Vec<ReplicationFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsFile {
    pub replication_lag: Option<String>,
    pub enabling_takes: Option<String>,
    pub deletion_takes: Option<String>,
    pub account: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSystemFile {
    pub file_system_id: String,
    pub region: String,
    pub name: Option<String>,
    pub protection: Option<String>,
    pub data: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplicationFile {
    pub source: String,
    pub destination: String,
    pub status: Option<String>,
}

/// Reads `path` (YAML) into a starting state at sim time `now`.
pub fn read(path: &Path, now: Timestamp, faults: Faults) -> Result<AwsState, String> {
    let file = yaml::read_file(path, Limits::PLAN).map_err(|d| format!("{}: {}", path.display(), d.message))?;
    let document = file.documents.first().map(|d| d.to_json()).unwrap_or_default();
    let parsed: AwsFile = serde_json::from_value(document).map_err(|e| format!("{}: {e}", path.display()))?;
    build(parsed, now, faults).map_err(|e| format!("{}: {e}", path.display()))
}

fn duration(text: &Option<String>, default: Duration, what: &str) -> Result<Duration, String> {
    match text {
        Some(t) => humantime::parse_duration(t).map_err(|e| format!("settings.{what}: {e}")),
        None => Ok(default),
    }
}

pub fn build(file: AwsFile, now: Timestamp, faults: Faults) -> Result<AwsState, String> {
    let defaults = AwsSettings::default();
    let settings = AwsSettings {
        replication_lag: duration(&file.settings.replication_lag, defaults.replication_lag, "replicationLag")?,
        enabling_takes: duration(&file.settings.enabling_takes, defaults.enabling_takes, "enablingTakes")?,
        deletion_takes: duration(&file.settings.deletion_takes, defaults.deletion_takes, "deletionTakes")?,
        account: file.settings.account.unwrap_or(defaults.account),
    };
    let mut state = AwsState::new(settings, faults);
    for fs in file.file_systems {
        let protection = match fs.protection.as_deref() {
            None => Protection::Enabled,
            Some(text) => Protection::parse(text)
                .ok_or_else(|| format!("file system {}: protection must be ENABLED or DISABLED", fs.file_system_id))?,
        };
        let entry = FileSystem {
            id: fs.file_system_id.clone(),
            region: fs.region,
            name: fs.name,
            created: now,
            protection,
            data: fs.data.unwrap_or_default().into_bytes(),
        };
        if state.file_systems.insert(fs.file_system_id.clone(), entry).is_some() {
            return Err(format!("file system {} is listed twice", fs.file_system_id));
        }
    }
    for r in file.replications {
        let region_of = |id: &str| {
            state
                .file_systems
                .get(id)
                .map(|fs| fs.region.clone())
                .ok_or_else(|| format!("replication: unknown file system {id}"))
        };
        let (source_region, destination_region) = (region_of(&r.source)?, region_of(&r.destination)?);
        if state.replication_of(&r.source).is_some() || state.replication_of(&r.destination).is_some() {
            return Err(format!("file systems {} and {} may be in one replication only", r.source, r.destination));
        }
        let status = match r.status.as_deref() {
            None => ReplicationStatus::Enabled,
            Some(text) => ReplicationStatus::parse(text)
                .ok_or_else(|| format!("replication status {text} is not an EFS status"))?,
        };
        let data = state.file_systems[&r.source].data.clone();
        if let Some(destination) = state.file_systems.get_mut(&r.destination) {
            destination.protection = Protection::Replicating;
            destination.data = data;
        }
        state.replications.push(Replication {
            source: r.source,
            source_region,
            destination: r.destination,
            destination_region,
            created: now,
            status,
            last_replicated: Some(now),
            deleted_at: (status == ReplicationStatus::Deleting)
                .then(|| crate::sim::clock::after(now, state.settings.deletion_takes)),
        });
    }
    Ok(state)
}
