//! Checkpoints: the durable record of a run, so `dr apply` can be resumed after a crash
//! or Ctrl-C and rolled back later (Terraform's `states` with its `statemgr.Locker`).
//!
//! This module owns:
//! - the on-disk shape of a run ([`RunRecord`], [`StepRecord`]) and its listing ([`RunSummary`]);
//! - the [`StateStore`] trait (runs plus an exclusive lock per target);
//! - [`LocalDirStore`], the store under `.drplan/`: a checksummed `run.json` base plus an
//!   append-only, checksummed journal of transitions (compacted into the base now and
//!   then), and `flock`-backed lock files that a dead holder on the same host cannot wedge;
//! - [`KubeStore`], the store in a Kubernetes namespace (`--state-store kubernetes://NS`):
//!   a ConfigMap per run, replaced atomically under resourceVersion preconditions, and
//!   Leases as locks, so in-cluster runs survive their pod;
//! - [`redact_secrets`], applied on every write so Secret data never reaches a store.
//!
//! It does not decide what a step does or when to save: the executor mutates a
//! [`RunRecord`] and calls [`StateStore::save_run`] on every step transition.

mod integrity;
mod journal;
pub mod kube;
mod local;
mod location;
mod record;
mod redact;
mod store;

use std::io::Read;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub use kube::{KubeStore, KubeStoreUrl};
pub use local::LocalDirStore;
pub use location::StoreLocation;
pub use record::{
    FORMAT_VERSION, RunKind, RunMode, RunRecord, RunStatus, RunSummary, StepRecord, StepStatus, SummaryStatus,
};
pub use redact::redact_secrets;
pub use store::{LockGuard, LockInfo, StateStore, StoreError};

/// Hex SHA-256 of `bytes`; callers use it for [`RunRecord::plan_digest`].
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The current time as an RFC 3339 UTC string with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
///
/// Fixed width, so these strings sort chronologically as plain text.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A fresh run id: `<UTC yyyymmddThhmmssZ>-<plan-name>-<4 hex>`, e.g. `20250102T030405Z-db-failover-3fa9`.
///
/// The plan name is reduced to `[a-z0-9-]` because the id names a directory.
pub fn new_run_id(plan_name: &str) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let name = id_safe_name(plan_name);
    let random = random_u16();
    format!("{stamp}-{name}-{random:04x}")
}

fn id_safe_name(plan_name: &str) -> String {
    let mut name: String = plan_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(63)
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() { "plan".to_string() } else { name }
}

/// Two random bytes: /dev/urandom, or (where that is missing) a hash of time, pid and a counter.
fn random_u16() -> u16 {
    let mut bytes = [0u8; 2];
    let from_urandom = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok();
    if from_urandom {
        return u16::from_be_bytes(bytes);
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = format!("{nanos}/{}/{count}", std::process::id());
    let hash = Sha256::digest(seed.as_bytes());
    u16::from_be_bytes([hash[0], hash[1]])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(digest(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn run_id_has_timestamp_name_and_random_suffix() {
        let id = new_run_id("DB Failover/eu");
        let parts: Vec<&str> = id.splitn(2, '-').collect();
        assert_eq!(parts[0].len(), "20250102T030405Z".len(), "{id}");
        assert!(parts[0].starts_with("20") && parts[0].ends_with('Z') && parts[0].contains('T'), "{id}");
        let (name, random) = parts[1].rsplit_once('-').unwrap();
        assert_eq!(name, "db-failover-eu");
        assert_eq!(random.len(), 4);
        assert!(random.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn run_id_of_unusable_name_still_names_a_directory() {
        let id = new_run_id("../..");
        assert!(id.contains("-plan-"), "{id}");
        assert!(!id.contains('/') && !id.contains(".."), "{id}");
    }

    #[test]
    fn timestamps_are_fixed_width_utc() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2025-01-02T03:04:05.678Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }
}
