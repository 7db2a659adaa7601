//! EBS volumes and snapshots, and how they change with sim time, following the EC2 API
//! reference: a snapshot is `pending` (its `progress` climbing) until it is `completed`; a
//! copy starts `pending` in the region it was copied to; a volume is `creating` until it
//! is `available`. Each carries data: a snapshot freezes its volume's data, a copy carries
//! it across regions, a volume created from a snapshot starts with it, and a claim whose
//! PV names the volume (`volumeHandle`) reads and writes it.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::sim::clock::after;

/// Timings of the simulated EBS.
#[derive(Clone, Debug, PartialEq)]
pub struct EbsSettings {
    /// CreateSnapshot: `pending` → `completed`.
    pub snapshot_takes: Duration,
    /// CopySnapshot: the copy's `pending` → `completed`.
    pub copy_takes: Duration,
    /// CreateVolume: `creating` → `available`.
    pub volume_creation_takes: Duration,
    /// ModifyVolume: a volume accepts one modification per window
    /// (`VolumeModificationRateExceeded` otherwise; AWS: 6 hours).
    pub modification_window: Duration,
}

impl Default for EbsSettings {
    fn default() -> EbsSettings {
        EbsSettings {
            snapshot_takes: Duration::from_secs(60),
            copy_takes: Duration::from_secs(120),
            volume_creation_takes: Duration::from_secs(10),
            modification_window: Duration::from_secs(6 * 3600),
        }
    }
}

pub type Tags = BTreeMap<String, String>;

#[derive(Clone, Debug)]
pub struct Volume {
    pub id: String,
    pub region: String,
    pub zone: String,
    /// GiB.
    pub size: u64,
    pub volume_type: String,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub snapshot_id: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub created: Timestamp,
    /// `creating` until this time, then `available`.
    pub ready_at: Timestamp,
    pub tags: Tags,
    /// What a claim on the volume reads and writes.
    pub data: Vec<u8>,
    /// Accepted modifications: when each began (the rate limit) and when it settles.
    pub modifications: Vec<Modification>,
}

#[derive(Clone, Debug)]
pub struct Modification {
    pub started: Timestamp,
    pub original_size: u64,
    pub target_size: u64,
    pub original_type: String,
    pub target_type: String,
}

impl Volume {
    pub fn state(&self, now: Timestamp) -> &'static str {
        if now < self.ready_at { "creating" } else { "available" }
    }
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub id: String,
    pub region: String,
    /// The volume it was taken of (for a copy: the source snapshot's volume, as AWS shows
    /// it; `vol-ffffffff` when unknown).
    pub volume_id: String,
    /// GiB.
    pub volume_size: u64,
    pub description: String,
    pub started: Timestamp,
    /// `pending` until this time, then `completed`.
    pub completed_at: Timestamp,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub tags: Tags,
    /// The volume's data when the snapshot began.
    pub data: Vec<u8>,
}

impl Snapshot {
    pub fn state(&self, now: Timestamp) -> &'static str {
        if now < self.completed_at { "pending" } else { "completed" }
    }

    /// `progress` as EC2 reports it: "0%" … "100%".
    pub fn progress(&self, now: Timestamp) -> String {
        let total = self.completed_at.duration_since(self.started).as_secs_f64();
        let done = now.duration_since(self.started).as_secs_f64();
        let percent = if total <= 0.0 { 100.0 } else { (done / total * 100.0).clamp(0.0, 100.0) };
        format!("{}%", percent.floor() as u32)
    }
}

/// The EBS side of the simulated account.
#[derive(Debug, Default)]
pub struct EbsState {
    pub settings: EbsSettings,
    pub volumes: BTreeMap<String, Volume>,
    pub snapshots: BTreeMap<String, Snapshot>,
    /// CreateVolume `ClientToken`s, per region: the volume each one created.
    pub client_tokens: BTreeMap<(String, String), String>,
    next_id: u64,
}

impl EbsState {
    pub fn new(settings: EbsSettings) -> EbsState {
        EbsState { settings, ..EbsState::default() }
    }

    /// A fresh id with EC2's shape: `vol-` / `snap-` and 17 hex digits.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let mixed = self.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995;
        format!("{prefix}-0{:016x}", mixed)
    }

    /// A snapshot of `volume` begun at `now`.
    pub fn snapshot_of(&mut self, volume: &str, now: Timestamp, description: String, tags: Tags) -> Option<String> {
        let source = self.volumes.get(volume)?.clone();
        let id = self.new_id("snap");
        let snapshot = Snapshot {
            id: id.clone(),
            region: source.region,
            volume_id: source.id,
            volume_size: source.size,
            description,
            started: now,
            completed_at: after(now, self.settings.snapshot_takes),
            encrypted: source.encrypted,
            kms_key_id: source.kms_key_id,
            tags,
            data: source.data,
        };
        self.snapshots.insert(id.clone(), snapshot);
        Some(id)
    }

    /// The volume of a claim's PV, by its handle; data read and written through a mount.
    pub fn volume_data(&self, id: &str) -> Option<Vec<u8>> {
        self.volumes.get(id).map(|v| v.data.clone())
    }

    pub fn write_volume(&mut self, id: &str, bytes: Vec<u8>) -> Option<()> {
        self.volumes.get_mut(id).map(|v| v.data = bytes)
    }
}

/// `us-east-1a` → `us-east-1` (zone ids end in a letter).
pub fn region_of_zone(zone: &str) -> &str {
    zone.strip_suffix(|c: char| c.is_ascii_lowercase()).unwrap_or(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_progresses_then_completes_and_keeps_the_data_it_was_taken_with() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut ebs = EbsState::new(EbsSettings::default());
        ebs.volumes.insert(
            "vol-a".into(),
            Volume {
                id: "vol-a".into(),
                region: "us-east-1".into(),
                zone: "us-east-1a".into(),
                size: 10,
                volume_type: "gp3".into(),
                iops: Some(3000),
                throughput: Some(125),
                snapshot_id: None,
                encrypted: false,
                kms_key_id: None,
                created: now,
                ready_at: now,
                tags: Tags::new(),
                data: b"v1".to_vec(),
                modifications: Vec::new(),
            },
        );
        let id = ebs.snapshot_of("vol-a", now, String::new(), Tags::new()).unwrap();
        ebs.write_volume("vol-a", b"v2".to_vec()).unwrap();
        let snapshot = &ebs.snapshots[&id];
        assert_eq!(snapshot.state(now), "pending");
        assert_eq!(snapshot.progress(after(now, Duration::from_secs(30))), "50%");
        assert_eq!(snapshot.state(after(now, Duration::from_secs(60))), "completed");
        assert_eq!(snapshot.data, b"v1");
        assert!(id.starts_with("snap-0") && id.len() == "snap-".len() + 17, "{id}");
        assert_eq!(region_of_zone("us-west-2b"), "us-west-2");
    }
}
