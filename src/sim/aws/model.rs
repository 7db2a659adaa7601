//! EFS file systems and replication configurations, and how they change with sim time,
//! following the AWS API reference: a replication is ENABLING until its first sync, then
//! ENABLED (its destination trails the source by the replication lag and
//! `LastReplicatedTimestamp` moves), and DELETING for a while after a delete before it is
//! gone; its destination is read-only (protection REPLICATING) until then, and gets its
//! overwrite protection back (ENABLED) when it is.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::sim::clock::after;
use crate::sim::config::{Faults, XorShift};

/// Timings of the simulated account.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsSettings {
    /// How far a replication destination trails its source (EFS: usually under 15 minutes).
    pub replication_lag: Duration,
    /// ENABLING → ENABLED (the first full copy).
    pub enabling_takes: Duration,
    /// DELETING → gone.
    pub deletion_takes: Duration,
    pub account: String,
}

impl Default for AwsSettings {
    fn default() -> AwsSettings {
        AwsSettings {
            replication_lag: Duration::from_secs(60),
            enabling_takes: Duration::from_secs(120),
            deletion_takes: Duration::from_secs(180),
            account: "123456789012".into(),
        }
    }
}

/// `ReplicationOverwriteProtection` of a file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    Enabled,
    Disabled,
    /// The file system is a replication destination.
    Replicating,
}

impl Protection {
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Enabled => "ENABLED",
            Protection::Disabled => "DISABLED",
            Protection::Replicating => "REPLICATING",
        }
    }

    pub fn parse(text: &str) -> Option<Protection> {
        match text {
            "ENABLED" => Some(Protection::Enabled),
            "DISABLED" => Some(Protection::Disabled),
            "REPLICATING" => Some(Protection::Replicating),
            _ => None,
        }
    }
}

/// `Destination.Status` of a replication configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationStatus {
    Enabling,
    Enabled,
    Paused,
    Error,
    Deleting,
}

impl ReplicationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationStatus::Enabling => "ENABLING",
            ReplicationStatus::Enabled => "ENABLED",
            ReplicationStatus::Paused => "PAUSED",
            ReplicationStatus::Error => "ERROR",
            ReplicationStatus::Deleting => "DELETING",
        }
    }

    pub fn parse(text: &str) -> Option<ReplicationStatus> {
        match text {
            "ENABLING" => Some(ReplicationStatus::Enabling),
            "ENABLED" => Some(ReplicationStatus::Enabled),
            "PAUSED" => Some(ReplicationStatus::Paused),
            "ERROR" => Some(ReplicationStatus::Error),
            "DELETING" => Some(ReplicationStatus::Deleting),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FileSystem {
    pub id: String,
    pub region: String,
    pub name: Option<String>,
    pub created: Timestamp,
    pub protection: Protection,
    /// What claims on the file system read and write.
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Replication {
    pub source: String,
    pub source_region: String,
    pub destination: String,
    pub destination_region: String,
    pub created: Timestamp,
    pub status: ReplicationStatus,
    pub last_replicated: Option<Timestamp>,
    /// When a DELETING replication is gone.
    pub deleted_at: Option<Timestamp>,
}

/// One AWS request, as the sim's request log records it.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsRequest {
    /// Sim time the request was answered.
    pub at: Timestamp,
    pub service: String,
    pub region: String,
    pub operation: String,
    /// HTTP status answered.
    pub status: u16,
}

/// An AWS error answer: HTTP status, error code, message.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> AwsError {
        AwsError { status, code: code.into(), message: message.into() }
    }

    pub fn file_system_not_found(id: &str) -> AwsError {
        AwsError::new(404, "FileSystemNotFound", format!("File system '{id}' does not exist."))
    }

    pub fn replication_not_found(id: &str) -> AwsError {
        AwsError::new(404, "ReplicationNotFound", format!("No replication configuration found for file system '{id}'."))
    }

    pub fn bad_request(message: impl Into<String>) -> AwsError {
        AwsError::new(400, "BadRequest", message)
    }
}

pub struct AwsState {
    pub settings: AwsSettings,
    pub faults: Faults,
    pub rng: XorShift,
    pub file_systems: BTreeMap<String, FileSystem>,
    pub replications: Vec<Replication>,
    /// EBS volumes and snapshots (EC2).
    pub ebs: super::ebs::EbsState,
    pub requests: Vec<AwsRequest>,
}

impl AwsState {
    /// An id for a file system EFS creates (a replication's new destination), unused
    /// and stable for a given state, so runs are repeatable.
    pub fn new_file_system_id(&self) -> String {
        (self.file_systems.len() as u64..)
            .map(|n| format!("fs-0a5e{:013x}", n + 1))
            .find(|id| !self.file_systems.contains_key(id))
            .unwrap_or_default()
    }

    pub fn new(settings: AwsSettings, faults: Faults) -> AwsState {
        let rng = XorShift::new(faults.seed);
        AwsState {
            settings,
            faults,
            rng,
            file_systems: BTreeMap::new(),
            replications: Vec::new(),
            ebs: super::ebs::EbsState::default(),
            requests: Vec::new(),
        }
    }

    /// Applies every transition due by `now`: first syncs, periodic syncs, ended deletions.
    pub fn advance(&mut self, now: Timestamp) {
        let settings = self.settings.clone();
        let mut syncs = Vec::new();
        let mut gone = Vec::new();
        for (index, replication) in self.replications.iter_mut().enumerate() {
            match replication.status {
                ReplicationStatus::Enabling if after(replication.created, settings.enabling_takes) <= now => {
                    replication.status = ReplicationStatus::Enabled;
                    syncs.push(index);
                }
                ReplicationStatus::Enabled
                    if replication.last_replicated.is_none_or(|t| after(t, settings.replication_lag) <= now) =>
                {
                    syncs.push(index);
                }
                ReplicationStatus::Deleting if replication.deleted_at.is_some_and(|t| t <= now) => gone.push(index),
                _ => {}
            }
        }
        for index in syncs {
            self.sync(index, now);
        }
        for index in gone.into_iter().rev() {
            let replication = self.replications.remove(index);
            // AWS re-enables the overwrite protection of a former destination.
            if let Some(fs) = self.file_systems.get_mut(&replication.destination) {
                fs.protection = Protection::Enabled;
            }
        }
    }

    /// The destination takes the source's data as of `now`.
    fn sync(&mut self, index: usize, now: Timestamp) {
        let replication = &mut self.replications[index];
        let Some(data) = self.file_systems.get(&replication.source).map(|fs| fs.data.clone()) else {
            replication.status = ReplicationStatus::Error;
            return;
        };
        if let Some(destination) = self.file_systems.get_mut(&replication.destination) {
            destination.data = data;
            replication.last_replicated = Some(now);
        } else {
            replication.status = ReplicationStatus::Error;
        }
    }

    /// Whether file system `id` is (still) a replication destination.
    pub fn is_destination(&self, id: &str) -> bool {
        self.replications.iter().any(|r| r.destination == id)
    }

    /// Mounted read-only: a replication destination, or ready to be one (protection
    /// DISABLED: "read-only and can only be modified by EFS replication").
    pub fn is_read_only(&self, id: &str) -> bool {
        self.is_destination(id) || self.file_systems.get(id).is_some_and(|fs| fs.protection == Protection::Disabled)
    }

    /// A write through a mount; `None` for an unknown file system.
    pub fn write(&mut self, id: &str, bytes: Vec<u8>) -> Option<Result<(), String>> {
        let read_only = self.is_read_only(id);
        let fs = self.file_systems.get_mut(id)?;
        if read_only {
            return Some(Err(format!(
                "cannot write to file system {id}: Read-only file system (EFS replication overwrite protection is {})",
                fs.protection.as_str()
            )));
        }
        fs.data = bytes;
        Some(Ok(()))
    }

    /// The replication a file system takes part in, as source or destination.
    pub fn replication_of(&self, id: &str) -> Option<&Replication> {
        self.replications.iter().find(|r| r.source == id || r.destination == id)
    }

    pub fn file_system_in(&self, id: &str, region: &str) -> Result<&FileSystem, AwsError> {
        self.file_systems.get(id).filter(|fs| fs.region == region).ok_or_else(|| AwsError::file_system_not_found(id))
    }

    pub fn arn(&self, fs: &str, region: &str) -> String {
        format!("arn:aws:elasticfilesystem:{region}:{}:file-system/{fs}", self.settings.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (AwsState, Timestamp) {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut state = AwsState::new(AwsSettings::default(), Faults::default());
        for (id, region) in [("fs-a", "us-east-1"), ("fs-b", "us-west-2")] {
            state.file_systems.insert(
                id.into(),
                FileSystem {
                    id: id.into(),
                    region: region.into(),
                    name: None,
                    created: now,
                    protection: Protection::Enabled,
                    data: Vec::new(),
                },
            );
        }
        state.file_systems.get_mut("fs-b").unwrap().protection = Protection::Replicating;
        state.replications.push(Replication {
            source: "fs-a".into(),
            source_region: "us-east-1".into(),
            destination: "fs-b".into(),
            destination_region: "us-west-2".into(),
            created: now,
            status: ReplicationStatus::Enabled,
            last_replicated: Some(now),
            deleted_at: None,
        });
        (state, now)
    }

    #[test]
    fn the_destination_trails_the_source_by_the_lag_and_is_read_only() {
        let (mut state, now) = state();
        state.write("fs-a", b"v1".to_vec()).unwrap().unwrap();
        assert!(state.write("fs-b", b"x".to_vec()).unwrap().is_err());
        state.advance(after(now, Duration::from_secs(30)));
        assert_eq!(state.file_systems["fs-b"].data, b"");
        state.advance(after(now, Duration::from_secs(61)));
        assert_eq!(state.file_systems["fs-b"].data, b"v1");
        assert_eq!(state.replications[0].last_replicated, Some(after(now, Duration::from_secs(61))));
    }

    #[test]
    fn a_deleted_replication_frees_its_destination_only_when_the_deletion_ends() {
        let (mut state, now) = state();
        state.replications[0].status = ReplicationStatus::Deleting;
        state.replications[0].deleted_at = Some(after(now, Duration::from_secs(180)));
        state.advance(after(now, Duration::from_secs(179)));
        assert!(state.is_read_only("fs-b"));
        state.advance(after(now, Duration::from_secs(180)));
        assert!(!state.is_read_only("fs-b"));
        assert_eq!(state.file_systems["fs-b"].protection, Protection::Enabled);
        assert!(state.write("fs-b", b"dr".to_vec()).unwrap().is_ok());
    }
}
