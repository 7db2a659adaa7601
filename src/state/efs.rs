//! EFS steps in the prediction: replications and file systems read by
//! [`crate::cloud::read`] change as the plan's steps would change them, so `dr plan`
//! shows a replication deleted or created and a protection changed, and finds a step
//! satisfied (already so) or blocked (it would fail) before anything runs.

use serde_json::{Value, json};

use super::StepState;
use super::predict::Replay;
use crate::cloud::read::{file_system_key, replication_key};
use crate::graph::Step;
use crate::steps::{Action, EfsCreateReplicationParams, EfsDeleteReplicationParams, EfsProtectionParams};

/// The predicted state of an EFS step; `None` for other steps. Steps in a region whose
/// state was not read are to do, as without cloud access.
pub(super) fn replay(r: &mut Replay<'_>, step: &Step, action: &Action) -> Option<StepState> {
    let (region, state) = match action {
        Action::EfsDeleteReplication(p) => (&p.region, delete(r, step, p)),
        Action::EfsCreateReplication(p) => (&p.region, create(r, step, p)),
        Action::EfsSetOverwriteProtection(p) => (&p.region, protect(r, step, p)),
        _ => return None,
    };
    Some(if r.live.cloud_regions_read.contains(region) { state } else { StepState::ToDo })
}

fn status(replication: &Value) -> &str {
    replication.pointer("/destinations/0/status").and_then(Value::as_str).unwrap_or_default()
}

fn destination(replication: &Value) -> &str {
    replication.pointer("/destinations/0/fileSystemId").and_then(Value::as_str).unwrap_or_default()
}

fn delete(r: &mut Replay<'_>, step: &Step, p: &EfsDeleteReplicationParams) -> StepState {
    let key = replication_key(&p.source_file_system_id);
    let Some(replication) = r.get(&key) else {
        return StepState::Blocked(format!(
            "no EFS replication from {} in {}: the delete would fail (ReplicationNotFound)",
            p.source_file_system_id, p.region
        ));
    };
    if status(&replication) == "DELETING" {
        return StepState::Satisfied(format!(
            "the replication from {} is already being deleted",
            p.source_file_system_id
        ));
    }
    // Once it is gone EFS turns the destination's overwrite protection back on.
    let target = file_system_key(destination(&replication));
    if let Some(mut fs) = r.get(&target) {
        fs["replicationOverwriteProtection"] = json!("ENABLED");
        r.set(target, step, Some(fs.into()));
    }
    r.set(key, step, None);
    StepState::ToDo
}

fn create(r: &mut Replay<'_>, step: &Step, p: &EfsCreateReplicationParams) -> StepState {
    let key = replication_key(&p.source_file_system_id);
    let wanted = p.destination_file_system_id.as_deref();
    if let Some(existing) = r.get(&key).filter(|e| status(e) != "DELETING") {
        let to = destination(&existing);
        let region = existing.pointer("/destinations/0/region").and_then(Value::as_str).unwrap_or_default();
        if wanted.map_or(region == p.destination_region, |w| w == to) {
            return StepState::Satisfied(format!("{} already replicates into {to}", p.source_file_system_id));
        }
        return StepState::Blocked(format!(
            "{} already replicates into {to}; EFS allows one replication per file system",
            p.source_file_system_id
        ));
    }
    if r.get(&file_system_key(&p.source_file_system_id)).is_none() {
        return StepState::Blocked(format!("file system {} not found in {}", p.source_file_system_id, p.region));
    }
    if let Some(id) = wanted {
        let target = file_system_key(id);
        let Some(mut fs) = r.get(&target) else {
            return StepState::Blocked(format!("file system {id} not found in {}", p.destination_region));
        };
        match fs["replicationOverwriteProtection"].as_str() {
            Some("ENABLED") => {
                return StepState::Blocked(format!(
                    "{id} has replication overwrite protection ENABLED; replicating into it needs DISABLED"
                ));
            }
            Some("REPLICATING") => return StepState::Blocked(format!("{id} is already a replication destination")),
            _ => {}
        }
        fs["replicationOverwriteProtection"] = json!("REPLICATING");
        r.set(target, step, Some(fs.into()));
    }
    let created = json!({
        "sourceFileSystemId": p.source_file_system_id,
        "sourceFileSystemRegion": p.region,
        "destinations": [{
            "fileSystemId": wanted.unwrap_or("(new file system)"),
            "region": p.destination_region,
            "status": "ENABLING",
        }],
    });
    r.set(key, step, Some(created));
    StepState::ToDo
}

fn protect(r: &mut Replay<'_>, step: &Step, p: &EfsProtectionParams) -> StepState {
    let key = file_system_key(&p.file_system_id);
    let Some(mut fs) = r.get(&key) else {
        return StepState::Blocked(format!("file system {} not found in {}", p.file_system_id, p.region));
    };
    let wanted = match p.protection {
        crate::steps::OverwriteProtection::Enabled => "ENABLED",
        crate::steps::OverwriteProtection::Disabled => "DISABLED",
    };
    match fs["replicationOverwriteProtection"].as_str() {
        Some(current) if current == wanted => {
            StepState::Satisfied(format!("{} already has overwrite protection {wanted}", p.file_system_id))
        }
        Some("REPLICATING") => StepState::Blocked(format!(
            "{} is a replication destination (protection REPLICATING): delete that replication first",
            p.file_system_id
        )),
        _ => {
            fs["replicationOverwriteProtection"] = json!(wanted);
            r.set(key, step, Some(fs.into()));
            StepState::ToDo
        }
    }
}
