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
//!
//! EBS (EC2) volumes and completed snapshots, with the data a claim on the volume reads
//! (a PV whose `volumeHandle` is the volume id):
//!
//! ```yaml
//! settings: { snapshotTakes: 1m, copyTakes: 2m, volumeCreationTakes: 10s, modificationWindow: 6h }
//! volumes:
//!   - { volumeId: vol-0a1b2c3d4e5f60718, availabilityZone: us-east-1a, size: 10, volumeType: gp3, data: "..." }
//! snapshots:
//!   - { snapshotId: snap-0123456789abcdef0, region: us-east-1, volumeId: vol-0a1b2c3d4e5f60718 }
//! ```

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use super::ebs::{EbsSettings, EbsState, Snapshot, Volume, region_of_zone};
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
    #[serde(default)]
    pub volumes: Vec<VolumeFile>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeFile {
    pub volume_id: String,
    pub availability_zone: String,
    /// GiB.
    pub size: u64,
    pub volume_type: Option<String>,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    #[serde(default)]
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    pub data: Option<String>,
}

/// A completed snapshot of a listed volume (its data is the volume's at load time).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotFile {
    pub snapshot_id: String,
    pub volume_id: String,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsFile {
    pub replication_lag: Option<String>,
    pub enabling_takes: Option<String>,
    pub deletion_takes: Option<String>,
    pub account: Option<String>,
    pub snapshot_takes: Option<String>,
    pub copy_takes: Option<String>,
    pub volume_creation_takes: Option<String>,
    pub modification_window: Option<String>,
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
    let ebs_defaults = EbsSettings::default();
    let ebs_settings = EbsSettings {
        snapshot_takes: duration(&file.settings.snapshot_takes, ebs_defaults.snapshot_takes, "snapshotTakes")?,
        copy_takes: duration(&file.settings.copy_takes, ebs_defaults.copy_takes, "copyTakes")?,
        volume_creation_takes: duration(
            &file.settings.volume_creation_takes,
            ebs_defaults.volume_creation_takes,
            "volumeCreationTakes",
        )?,
        modification_window: duration(
            &file.settings.modification_window,
            ebs_defaults.modification_window,
            "modificationWindow",
        )?,
    };
    let mut state = AwsState::new(settings, faults);
    state.ebs = EbsState::new(ebs_settings);
    load_volumes(&mut state.ebs, file.volumes, now)?;
    load_snapshots(&mut state.ebs, file.snapshots, now)?;
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

fn load_volumes(ebs: &mut EbsState, volumes: Vec<VolumeFile>, now: Timestamp) -> Result<(), String> {
    for v in volumes {
        if !v.volume_id.starts_with("vol-") {
            return Err(format!("volume {}: EBS volume ids start with `vol-`", v.volume_id));
        }
        let volume_type = v.volume_type.unwrap_or_else(|| "gp3".into());
        let gp3 = volume_type == "gp3";
        let volume = Volume {
            id: v.volume_id.clone(),
            region: region_of_zone(&v.availability_zone).to_string(),
            zone: v.availability_zone,
            size: v.size,
            iops: v.iops.or(gp3.then_some(3000)),
            throughput: v.throughput.or(gp3.then_some(125)),
            volume_type,
            snapshot_id: None,
            encrypted: v.encrypted,
            kms_key_id: v.kms_key_id,
            created: now,
            ready_at: now,
            tags: v.tags,
            data: v.data.unwrap_or_default().into_bytes(),
            modifications: Vec::new(),
        };
        if ebs.volumes.insert(v.volume_id.clone(), volume).is_some() {
            return Err(format!("volume {} is listed twice", v.volume_id));
        }
    }
    Ok(())
}

fn load_snapshots(ebs: &mut EbsState, snapshots: Vec<SnapshotFile>, now: Timestamp) -> Result<(), String> {
    for s in snapshots {
        let volume = ebs
            .volumes
            .get(&s.volume_id)
            .ok_or_else(|| format!("snapshot {}: unknown volume {}", s.snapshot_id, s.volume_id))?;
        let snapshot = Snapshot {
            id: s.snapshot_id.clone(),
            region: volume.region.clone(),
            volume_id: volume.id.clone(),
            volume_size: volume.size,
            description: s.description.unwrap_or_default(),
            started: now,
            completed_at: now,
            encrypted: volume.encrypted,
            kms_key_id: volume.kms_key_id.clone(),
            tags: s.tags,
            data: volume.data.clone(),
        };
        if ebs.snapshots.insert(s.snapshot_id.clone(), snapshot).is_some() {
            return Err(format!("snapshot {} is listed twice", s.snapshot_id));
        }
    }
    Ok(())
}
