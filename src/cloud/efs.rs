//! EFS steps: delete and create replication configurations, set the replication overwrite
//! protection, and wait until a replication is gone or has caught up.
//!
//! Each step reads the replications of its region first (one DescribeReplicationConfigurations
//! call, no filter, so it also works from the destination's region) and adopts what it
//! finds: a replication already DELETING was deleted by this step before a crash; the
//! replication a create step asked for is adopted, never made twice (EFS allows one per
//! file system anyway). Values that decide a wait are captured in the checkpoint first.

use std::time::Duration;

use aws_sdk_efs::types::{
    DeletionMode, DestinationToCreate, ReplicationConfigurationDescription, ReplicationOverwriteProtection,
    ReplicationStatus,
};
use serde_json::json;

use super::errors::{Call, classify, code_of};
use crate::exec::{StepContext, StepError};
use crate::steps::{
    EfsCreateReplicationParams, EfsDeleteReplicationParams, EfsDeletionMode, EfsProtectionParams, OverwriteProtection,
};

/// Waits poll EFS quickly at first (a change may be done at once), then back off to
/// every 5 s (replication changes take minutes; this keeps far below EFS's rate limits).
pub struct Poll(Duration);

impl Poll {
    pub fn new() -> Poll {
        Poll(Duration::from_millis(200))
    }

    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

impl Default for Poll {
    fn default() -> Poll {
        Poll::new()
    }
}

/// Captured once the delete was sent: a later "not found" then means it completed.
const DELETE_SENT: &str = "deleteSent";
/// Captured once the create was sent.
const CREATE_SENT: &str = "createSent";
/// The protection a file system had before this step changed it (for rollback).
pub const PREVIOUS_PROTECTION: &str = "previousProtection";
/// The LastReplicatedTimestamp (epoch seconds) a synced wait must pass.
const SYNC_AFTER: &str = "syncedAfter";

/// Every replication visible in `region` (EFS lists both sides of cross-region ones).
async fn replications(
    client: &aws_sdk_efs::Client,
    step: &str,
    region: &str,
) -> Result<Vec<ReplicationConfigurationDescription>, StepError> {
    let call = Call { step, operation: "EFS DescribeReplicationConfigurations", region };
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .describe_replication_configurations()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify(&call, e))?;
        all.extend(page.replications().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(all);
        }
    }
}

fn involves(r: &ReplicationConfigurationDescription, fs: &str) -> bool {
    r.source_file_system_id() == fs || r.destinations().iter().any(|d| d.file_system_id() == fs)
}

fn status_of(r: &ReplicationConfigurationDescription) -> Option<&ReplicationStatus> {
    r.destinations().first().map(|d| d.status())
}

pub async fn delete_replication(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    p: &EfsDeleteReplicationParams,
) -> Result<(), StepError> {
    let source = &p.source_file_system_id;
    let listed = replications(client, &ctx.step_id, &p.region).await?;
    let existing = listed.iter().find(|r| r.source_file_system_id() == source);
    match existing {
        Some(r) if status_of(r) == Some(&ReplicationStatus::Deleting) => return Ok(()),
        Some(_) => {}
        None if ctx.captured(DELETE_SENT).is_some() => return Ok(()),
        None => {
            let as_destination = listed.iter().find(|r| involves(r, source));
            return Err(StepError::failed(match as_destination {
                Some(r) => format!(
                    "step `{}`: {source} is the destination of the replication from {}, not a source; nothing was changed",
                    ctx.step_id,
                    r.source_file_system_id()
                ),
                None => format!(
                    "step `{}`: no replication configuration with source {source} in {} (ReplicationNotFound): already deleted, or the wrong file system or region; nothing was changed",
                    ctx.step_id, p.region
                ),
            }));
        }
    }
    let mode = match p.deletion_mode.unwrap_or(EfsDeletionMode::AllConfigurations) {
        EfsDeletionMode::AllConfigurations => DeletionMode::AllConfigurations,
        EfsDeletionMode::LocalConfigurationOnly => DeletionMode::LocalConfigurationOnly,
    };
    ctx.capture(DELETE_SENT, json!(true))?;
    let call = Call { step: &ctx.step_id, operation: "EFS DeleteReplicationConfiguration", region: &p.region };
    match client.delete_replication_configuration().source_file_system_id(source).deletion_mode(mode).send().await {
        Ok(_) => Ok(()),
        // Sent before, answered after a crash: the first delete is under way or done.
        Err(e) if code_of(&e) == Some("ReplicationNotFound") => Ok(()),
        Err(e) => Err(classify(&call, e)),
    }
}

/// Done when no replication in `region` involves the file system any more.
pub async fn wait_replication_deleted(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    region: &str,
    fs: &str,
) -> Result<(), StepError> {
    let mut poll = Poll::new();
    loop {
        let listed = replications(client, &ctx.step_id, region).await?;
        if !listed.iter().any(|r| involves(r, fs)) {
            return Ok(());
        }
        poll.sleep().await;
    }
}

pub async fn create_replication(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    p: &EfsCreateReplicationParams,
) -> Result<(), StepError> {
    let source = &p.source_file_system_id;
    let wanted = Destination { region: &p.destination_region, file_system_id: p.destination_file_system_id.as_deref() };
    if let Some(adopted) = adopt_replication(client, ctx, &p.region, source, &wanted).await? {
        return ctx.capture(DESTINATION, json!(adopted));
    }
    ctx.capture(CREATE_SENT, json!(true))?;
    let call = Call { step: &ctx.step_id, operation: "EFS CreateReplicationConfiguration", region: &p.region };
    let mut target = DestinationToCreate::builder().region(&p.destination_region);
    if let Some(existing) = wanted.file_system_id {
        target = target.file_system_id(existing);
    }
    match client
        .create_replication_configuration()
        .source_file_system_id(source)
        .destinations(target.build())
        .send()
        .await
    {
        Ok(out) => {
            let created = out.destinations().first().map(|d| d.file_system_id().to_string()).unwrap_or_default();
            ctx.capture(DESTINATION, json!(created))
        }
        // Created before a crash, answered too late: adopt it if it is the one asked for.
        Err(e) if code_of(&e) == Some("ReplicationAlreadyExists") => {
            match adopt_replication(client, ctx, &p.region, source, &wanted).await? {
                Some(adopted) => ctx.capture(DESTINATION, json!(adopted)),
                None => Err(classify(&call, e)),
            }
        }
        Err(e) => Err(classify(&call, e)),
    }
}

/// The destination file system a create step replicated into (for a new one, the id
/// EFS gave it), captured so the run record and `dr runs` name it.
pub const DESTINATION: &str = "destinationFileSystemId";

/// What a create step asks for: an existing file system, or a new one EFS creates in
/// the region.
struct Destination<'a> {
    region: &'a str,
    file_system_id: Option<&'a str>,
}

impl Destination<'_> {
    fn matches(&self, d: &aws_sdk_efs::types::Destination) -> bool {
        match self.file_system_id {
            Some(id) => d.file_system_id() == id,
            // A new file system: any destination in the region is the one this step
            // created (EFS allows one replication per source).
            None => d.region() == self.region,
        }
    }

    fn describe(&self) -> String {
        self.file_system_id.map_or_else(|| format!("a new file system in {}", self.region), String::from)
    }
}

/// The destination's id when the replication source → destination exists; a conflict
/// when either file system is in another one.
async fn adopt_replication(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    region: &str,
    source: &str,
    wanted: &Destination<'_>,
) -> Result<Option<String>, StepError> {
    let listed = replications(client, &ctx.step_id, region).await?;
    for r in &listed {
        let destination = r.destinations().first();
        let to = destination.map(|d| d.file_system_id()).unwrap_or_default();
        let deleting = status_of(r) == Some(&ReplicationStatus::Deleting);
        if r.source_file_system_id() == source && destination.is_some_and(|d| wanted.matches(d)) && !deleting {
            return Ok(Some(to.to_string()));
        }
        let busy = involves(r, source) || wanted.file_system_id.is_some_and(|id| involves(r, id));
        if busy {
            let status = status_of(r).map(|s| s.as_str()).unwrap_or("unknown");
            return Err(StepError::conflict(format!(
                "step `{}`: {} → {to} ({status}) already involves {source} or {}; EFS allows one replication per file system; nothing was changed",
                ctx.step_id,
                r.source_file_system_id(),
                wanted.describe()
            )));
        }
    }
    Ok(None)
}

pub async fn set_protection(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    p: &EfsProtectionParams,
) -> Result<(), StepError> {
    let wanted = match p.protection {
        OverwriteProtection::Enabled => ReplicationOverwriteProtection::Enabled,
        OverwriteProtection::Disabled => ReplicationOverwriteProtection::Disabled,
    };
    let current = protection_of(client, ctx, &p.region, &p.file_system_id).await?;
    if current == wanted {
        return Ok(());
    }
    if current == ReplicationOverwriteProtection::Replicating {
        return Err(StepError::conflict(format!(
            "step `{}`: {} is a replication destination (protection REPLICATING); its protection cannot change until that replication is deleted",
            ctx.step_id, p.file_system_id
        )));
    }
    if ctx.captured(PREVIOUS_PROTECTION).is_none() {
        ctx.capture(PREVIOUS_PROTECTION, json!(current.as_str()))?;
    }
    let call = Call { step: &ctx.step_id, operation: "EFS UpdateFileSystemProtection", region: &p.region };
    client
        .update_file_system_protection()
        .file_system_id(&p.file_system_id)
        .replication_overwrite_protection(wanted)
        .send()
        .await
        .map_err(|e| classify(&call, e))?;
    Ok(())
}

async fn protection_of(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    region: &str,
    fs: &str,
) -> Result<ReplicationOverwriteProtection, StepError> {
    let call = Call { step: &ctx.step_id, operation: "EFS DescribeFileSystems", region };
    let described = client.describe_file_systems().file_system_id(fs).send().await.map_err(|e| classify(&call, e))?;
    let found =
        described.file_systems().iter().find(|d| d.file_system_id() == fs).ok_or_else(|| {
            StepError::failed(format!("step `{}`: file system {fs} not found in {region}", ctx.step_id))
        })?;
    Ok(found
        .file_system_protection()
        .and_then(|p| p.replication_overwrite_protection())
        .cloned()
        .unwrap_or(ReplicationOverwriteProtection::Enabled))
}

/// Done when the replication into `fs` is ENABLED and its `LastReplicatedTimestamp` shows
/// a sync that covers every write made before the wait began: later than both the wait's
/// start and the sync last seen when it began (captured, so a resumed wait keeps the bar).
pub async fn wait_synced(
    client: &aws_sdk_efs::Client,
    ctx: &StepContext,
    region: &str,
    fs: &str,
) -> Result<(), StepError> {
    let mut poll = Poll::new();
    loop {
        let listed = replications(client, &ctx.step_id, region).await?;
        let r = listed.iter().find(|r| r.destinations().iter().any(|d| d.file_system_id() == fs)).ok_or_else(|| {
            StepError::failed(format!(
                "step `{}`: no replication into {fs} in {region} (ReplicationNotFound)",
                ctx.step_id
            ))
        })?;
        let destination = &r.destinations()[0];
        let last = destination.last_replicated_timestamp().map(|t| t.secs());
        let bar = match ctx.captured(SYNC_AFTER).and_then(|v| v.as_i64()) {
            Some(bar) => bar,
            None => {
                let now = jiff::Timestamp::now().as_second();
                let bar = now.max(last.map_or(i64::MIN, |l| l + 1));
                ctx.capture(SYNC_AFTER, json!(bar))?;
                bar
            }
        };
        match destination.status() {
            ReplicationStatus::Enabled if last.is_some_and(|l| l >= bar) => return Ok(()),
            ReplicationStatus::Error | ReplicationStatus::Paused | ReplicationStatus::Deleting => {
                return Err(StepError::failed(format!(
                    "step `{}`: replication {} → {fs} is {}{}",
                    ctx.step_id,
                    r.source_file_system_id(),
                    destination.status().as_str(),
                    destination.status_message().map(|m| format!(": {m}")).unwrap_or_default()
                )));
            }
            _ => poll.sleep().await,
        }
    }
}
