//! EBS steps: snapshot a volume, copy a snapshot to another region (optionally encrypted
//! with a KMS key), create a volume from a snapshot in a zone, and wait until a snapshot
//! is `completed` (a created volume is waited for until `available` by its own step).
//!
//! Idempotent like the Kubernetes steps: everything a step creates carries the tags
//! `drplan.dev/run` and `drplan.dev/step`, written atomically with the resource
//! (TagSpecifications), so a step that runs again after a crash finds what it made before
//! (one DescribeSnapshots/DescribeVolumes filtered by those tags) and adopts it instead of
//! making another. CreateVolume also gets a `ClientToken` derived from run and step.
//! CreateSnapshot and CopySnapshot have no client token: the SDK does not retry them on
//! its own (a retry after a lost answer would make a second one); the executor retries the
//! whole step, which looks for the tagged resource first. The id a step made is captured
//! in the checkpoint as its output (`snapshotId`, `volumeId`) for later steps.

use aws_sdk_ec2::types::{Filter, ResourceType, SnapshotState, Tag, TagSpecification, VolumeState, VolumeType};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::efs::Poll;
use super::errors::{Call, classify, code_of};
use crate::exec::{StepContext, StepError};
use crate::steps::{EbsCopySnapshotParams, EbsCreateVolumeParams, EbsSnapshotParams, SnapshotSource};

/// Tag naming the run that created a snapshot or volume.
pub const RUN_TAG: &str = "drplan.dev/run";
/// Tag naming the step that created it.
pub const STEP_TAG: &str = "drplan.dev/step";
/// The snapshot a step made or copied (captured output).
pub const SNAPSHOT_ID: &str = "snapshotId";
/// The volume a step made (captured output).
pub const VOLUME_ID: &str = "volumeId";

fn ownership(ctx: &StepContext) -> [(String, String); 2] {
    [(RUN_TAG.to_string(), ctx.run_id.clone()), (STEP_TAG.to_string(), ctx.step_id.clone())]
}

fn tag_specification(
    kind: ResourceType,
    ctx: &StepContext,
    extra: &std::collections::BTreeMap<String, String>,
) -> TagSpecification {
    let tags = extra.iter().map(|(k, v)| (k.clone(), v.clone())).chain(ownership(ctx));
    tags.fold(TagSpecification::builder().resource_type(kind), |b, (k, v)| {
        b.tags(Tag::builder().key(k).value(v).build())
    })
    .build()
}

fn ownership_filters(run: &str, step: &str) -> Vec<Filter> {
    [(RUN_TAG, run), (STEP_TAG, step)]
        .into_iter()
        .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
        .collect()
}

/// A CreateVolume `ClientToken` (at most 64 ASCII characters) unique to run and step.
pub fn client_token(run: &str, step: &str) -> String {
    let digest = Sha256::digest(format!("{run}\n{step}").as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("drplan-{hex}")
}

/// The SDK's own retries off, for calls that are not idempotent.
fn no_sdk_retry() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
}

/// The snapshot id a step parameter names: a literal, or what an earlier step captured.
pub fn resolve_snapshot(ctx: &StepContext, source: &SnapshotSource) -> Result<String, StepError> {
    match source {
        SnapshotSource::Id(id) => Ok(id.clone()),
        SnapshotSource::FromStep(step) => ctx
            .captured_in(step, SNAPSHOT_ID)
            .and_then(|v| v.as_str().map(String::from))
            .ok_or_else(|| StepError::failed(format!("step `{}`: step `{step}` recorded no snapshot id", ctx.step_id))),
    }
}

/// The snapshot this run's step made in `region`, if any (adopted after a crash).
async fn snapshot_made(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    region: &str,
) -> Result<Option<aws_sdk_ec2::types::Snapshot>, StepError> {
    let call = Call { step: &ctx.step_id, operation: "EC2 DescribeSnapshots", region };
    let found = client
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(ownership_filters(&ctx.run_id, &ctx.step_id)))
        .send()
        .await
        .map_err(|e| classify(&call, e))?;
    Ok(found.snapshots().first().cloned())
}

async fn volume_made(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    region: &str,
) -> Result<Option<aws_sdk_ec2::types::Volume>, StepError> {
    let call = Call { step: &ctx.step_id, operation: "EC2 DescribeVolumes", region };
    let found = client
        .describe_volumes()
        .set_filters(Some(ownership_filters(&ctx.run_id, &ctx.step_id)))
        .send()
        .await
        .map_err(|e| classify(&call, e))?;
    Ok(found.volumes().first().cloned())
}

fn capture_id(ctx: &StepContext, key: &str, id: Option<&str>, call: &str) -> Result<(), StepError> {
    let id = id.ok_or_else(|| StepError::failed(format!("step `{}`: {call} answered without an id", ctx.step_id)))?;
    ctx.capture(key, json!(id))
}

/// Already done: the output was captured, or the tagged resource exists (adopted).
async fn adopted_snapshot(client: &aws_sdk_ec2::Client, ctx: &StepContext, region: &str) -> Result<bool, StepError> {
    if ctx.captured(SNAPSHOT_ID).is_some() {
        return Ok(true);
    }
    match snapshot_made(client, ctx, region).await? {
        Some(s) => capture_id(ctx, SNAPSHOT_ID, s.snapshot_id(), "DescribeSnapshots").map(|()| true),
        None => Ok(false),
    }
}

pub async fn snapshot(client: &aws_sdk_ec2::Client, ctx: &StepContext, p: &EbsSnapshotParams) -> Result<(), StepError> {
    if adopted_snapshot(client, ctx, &p.region).await? {
        return Ok(());
    }
    let call = Call { step: &ctx.step_id, operation: "EC2 CreateSnapshot", region: &p.region };
    let description =
        p.description.clone().unwrap_or_else(|| format!("drplan run {} step {}", ctx.run_id, ctx.step_id));
    let created = client
        .create_snapshot()
        .volume_id(&p.volume_id)
        .description(description)
        .tag_specifications(tag_specification(ResourceType::Snapshot, ctx, &p.tags))
        .customize()
        .config_override(no_sdk_retry())
        .send()
        .await
        .map_err(|e| classify(&call, e))?;
    capture_id(ctx, SNAPSHOT_ID, created.snapshot_id(), "CreateSnapshot")
}

/// Copies into `p.region` (the client's region) from `p.source_region`.
pub async fn copy_snapshot(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    p: &EbsCopySnapshotParams,
) -> Result<(), StepError> {
    if adopted_snapshot(client, ctx, &p.region).await? {
        return Ok(());
    }
    let source = resolve_snapshot(ctx, &p.snapshot)?;
    let call = Call { step: &ctx.step_id, operation: "EC2 CopySnapshot", region: &p.region };
    let description = p.description.clone().unwrap_or_else(|| {
        format!("drplan run {} step {}: copy of {source} from {}", ctx.run_id, ctx.step_id, p.source_region)
    });
    let mut request = client
        .copy_snapshot()
        .source_region(&p.source_region)
        .source_snapshot_id(&source)
        .description(description)
        .tag_specifications(tag_specification(ResourceType::Snapshot, ctx, &p.tags));
    if p.encrypted || p.kms_key_id.is_some() {
        request = request.encrypted(true).set_kms_key_id(p.kms_key_id.clone());
    }
    let copied = request.customize().config_override(no_sdk_retry()).send().await.map_err(|e| classify(&call, e))?;
    capture_id(ctx, SNAPSHOT_ID, copied.snapshot_id(), "CopySnapshot")
}

/// Waits until the snapshot is `completed`; `error` fails the step with EC2's message.
pub async fn wait_snapshot_completed(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    region: &str,
    source: &SnapshotSource,
) -> Result<(), StepError> {
    let id = resolve_snapshot(ctx, source)?;
    let call = Call { step: &ctx.step_id, operation: "EC2 DescribeSnapshots", region };
    let mut poll = Poll::new();
    loop {
        let found = client.describe_snapshots().snapshot_ids(&id).send().await.map_err(|e| classify(&call, e))?;
        let snapshot = found.snapshots().iter().find(|s| s.snapshot_id() == Some(id.as_str()));
        match snapshot.and_then(|s| s.state()) {
            Some(SnapshotState::Completed) => return Ok(()),
            Some(SnapshotState::Error) => {
                let why = snapshot.and_then(|s| s.state_message()).unwrap_or("no message");
                return Err(StepError::failed(format!(
                    "step `{}`: snapshot {id} in {region} failed: {why}",
                    ctx.step_id
                )));
            }
            _ => poll.sleep().await,
        }
    }
}

/// Size in GiB, rounded up (EBS sizes are whole GiB).
fn gib(size: &crate::lang::Quantity) -> Result<i32, StepError> {
    let bytes = size.bytes();
    let gib = bytes.div_ceil(1 << 30);
    i32::try_from(gib).map_err(|_| StepError::failed(format!("size {size} is too large for an EBS volume")))
}

pub async fn create_volume(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    p: &EbsCreateVolumeParams,
) -> Result<(), StepError> {
    let id = match ctx.captured(VOLUME_ID).and_then(|v| v.as_str().map(String::from)) {
        Some(id) => id,
        None => match volume_made(client, ctx, &p.region).await? {
            Some(v) => {
                capture_id(ctx, VOLUME_ID, v.volume_id(), "DescribeVolumes")?;
                v.volume_id().unwrap_or_default().to_string()
            }
            None => send_create_volume(client, ctx, p).await?,
        },
    };
    wait_volume_available(client, ctx, &p.region, &id).await
}

async fn send_create_volume(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    p: &EbsCreateVolumeParams,
) -> Result<String, StepError> {
    let snapshot = resolve_snapshot(ctx, &p.snapshot)?;
    let call = Call { step: &ctx.step_id, operation: "EC2 CreateVolume", region: &p.region };
    let size = p.size.as_ref().map(|s| gib(&s.value)).transpose()?;
    let created = client
        .create_volume()
        .snapshot_id(&snapshot)
        .availability_zone(&p.availability_zone)
        .set_size(size)
        .set_volume_type(p.volume_type.as_deref().map(VolumeType::from))
        .set_iops(p.iops.map(|i| i as i32))
        .set_throughput(p.throughput.map(|t| t as i32))
        .client_token(client_token(&ctx.run_id, &ctx.step_id))
        .tag_specifications(tag_specification(ResourceType::Volume, ctx, &p.tags))
        .send()
        .await
        .map_err(|e| classify(&call, e))?;
    capture_id(ctx, VOLUME_ID, created.volume_id(), "CreateVolume")?;
    Ok(created.volume_id().unwrap_or_default().to_string())
}

async fn wait_volume_available(
    client: &aws_sdk_ec2::Client,
    ctx: &StepContext,
    region: &str,
    id: &str,
) -> Result<(), StepError> {
    let call = Call { step: &ctx.step_id, operation: "EC2 DescribeVolumes", region };
    let mut poll = Poll::new();
    loop {
        let found = client.describe_volumes().volume_ids(id).send().await.map_err(|e| classify(&call, e))?;
        match found.volumes().iter().find(|v| v.volume_id() == Some(id)).and_then(|v| v.state()) {
            Some(VolumeState::Available | VolumeState::InUse) => return Ok(()),
            Some(VolumeState::Error) => {
                return Err(StepError::failed(format!(
                    "step `{}`: volume {id} in {region} is in state error",
                    ctx.step_id
                )));
            }
            _ => poll.sleep().await,
        }
    }
}

/// Rollback: deletes the snapshot or volume step `step` of run `run` created, found by
/// its tags (so a resource made just before a crash is found too). A volume in use is
/// left with a conflict: something attached it since.
pub async fn delete_made(
    client: &aws_sdk_ec2::Client,
    undo_step: &str,
    region: &str,
    run: &str,
    step: &str,
    volume: bool,
) -> Result<(), StepError> {
    if volume {
        let call = Call { step: undo_step, operation: "EC2 DescribeVolumes", region };
        let found = client
            .describe_volumes()
            .set_filters(Some(ownership_filters(run, step)))
            .send()
            .await
            .map_err(|e| classify(&call, e))?;
        for v in found.volumes() {
            let id = v.volume_id().unwrap_or_default();
            if v.state() == Some(&VolumeState::InUse) {
                return Err(StepError::conflict(format!(
                    "step `{undo_step}`: volume {id} ({region}) is attached; detach it (delete its pod) and roll back again"
                )));
            }
            let call = Call { step: undo_step, operation: "EC2 DeleteVolume", region };
            match client.delete_volume().volume_id(id).send().await {
                Ok(_) => {}
                Err(e) if code_of(&e) == Some("InvalidVolume.NotFound") => {}
                // Still detaching after its PV and pod went away: try again shortly.
                Err(e) if code_of(&e) == Some("VolumeInUse") => {
                    return Err(StepError::transient(classify(&call, e).message));
                }
                Err(e) => return Err(classify(&call, e)),
            }
        }
    } else {
        let call = Call { step: undo_step, operation: "EC2 DescribeSnapshots", region };
        let found = client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(ownership_filters(run, step)))
            .send()
            .await
            .map_err(|e| classify(&call, e))?;
        for s in found.snapshots() {
            let id = s.snapshot_id().unwrap_or_default();
            let call = Call { step: undo_step, operation: "EC2 DeleteSnapshot", region };
            match client.delete_snapshot().snapshot_id(id).send().await {
                Ok(_) => {}
                Err(e) if code_of(&e) == Some("InvalidSnapshot.NotFound") => {}
                Err(e) => return Err(classify(&call, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_per_run_and_step_and_fit_ec2s_limit() {
        let a = client_token("20261202-abc", "restore/create-volume-data-0");
        assert_eq!(a, client_token("20261202-abc", "restore/create-volume-data-0"));
        assert_ne!(a, client_token("20261202-abc", "restore/create-volume-data-1"));
        assert_ne!(a, client_token("20261202-abd", "restore/create-volume-data-0"));
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }
}
