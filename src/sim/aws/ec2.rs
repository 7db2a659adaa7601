//! The EC2 API subset (Query protocol, API version 2016-11-15) a DR plan uses for EBS:
//! DescribeVolumes, DescribeSnapshots, CreateSnapshot, CopySnapshot, CreateVolume,
//! CreateTags, DeleteSnapshot, DeleteVolume, ModifyVolume and
//! DescribeVolumesModifications. Requests are form-encoded (`Action=...&Version=...`,
//! lists as `Name.N`, structures as `Name.N.Field`); answers are XML in EC2's namespace
//! with a `requestId` and `item` lists; errors are
//! `<Response><Errors><Error><Code>…` with HTTP 400 (503 for `RequestLimitExceeded`).

use std::collections::HashMap;

use jiff::Timestamp;

use super::ebs::{EbsState, Modification, Snapshot, Tags, Volume, region_of_zone};
use super::model::AwsError;
use crate::sim::clock::after;

pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
const REQUEST_ID: &str = "59dbff89-35bd-4eac-99ed-be587e000000";

/// The form parameters of one request.
pub type Params = HashMap<String, String>;

fn missing(name: &str) -> AwsError {
    AwsError::new(400, "MissingParameter", format!("The request must contain the parameter {name}"))
}

fn invalid(name: &str, value: &str) -> AwsError {
    AwsError::new(400, "InvalidParameterValue", format!("Value ({value}) for parameter {name} is invalid."))
}

fn volume_not_found(id: &str) -> AwsError {
    AwsError::new(400, "InvalidVolume.NotFound", format!("The volume '{id}' does not exist."))
}

fn snapshot_not_found(id: &str) -> AwsError {
    AwsError::new(400, "InvalidSnapshot.NotFound", format!("The snapshot '{id}' does not exist."))
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, AwsError> {
    params.get(name).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| missing(name))
}

fn number<T: std::str::FromStr>(params: &Params, name: &str) -> Result<Option<T>, AwsError> {
    params.get(name).map(|v| v.parse().map_err(|_| invalid(name, v))).transpose()
}

fn flag(params: &Params, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true")
}

/// `Name.1`, `Name.2`, … until one is missing.
fn list(params: &Params, name: &str) -> Vec<String> {
    (1..).map_while(|i| params.get(&format!("{name}.{i}")).cloned()).collect()
}

/// `Filter.N.Name` with its `Filter.N.Value.M`.
fn filters(params: &Params) -> Vec<(String, Vec<String>)> {
    (1..)
        .map_while(|i| {
            let name = params.get(&format!("Filter.{i}.Name"))?;
            Some((name.clone(), list(params, &format!("Filter.{i}.Value"))))
        })
        .collect()
}

/// The tags of `TagSpecification.N` whose `ResourceType` is `kind`.
fn tag_specifications(params: &Params, kind: &str) -> Result<Tags, AwsError> {
    let mut tags = Tags::new();
    for i in 1.. {
        let prefix = format!("TagSpecification.{i}");
        let Some(resource_type) = params.get(&format!("{prefix}.ResourceType")) else { break };
        if resource_type != kind {
            return Err(AwsError::new(
                400,
                "InvalidParameterValue",
                format!("'{resource_type}' is not a valid taggable resource type for this operation."),
            ));
        }
        tags.extend(tag_list(params, &format!("{prefix}.Tag")));
    }
    Ok(tags)
}

/// `PREFIX.N.Key` / `PREFIX.N.Value`.
fn tag_list(params: &Params, prefix: &str) -> Tags {
    (1..)
        .map_while(|i| {
            let key = params.get(&format!("{prefix}.{i}.Key"))?;
            Some((key.clone(), params.get(&format!("{prefix}.{i}.Value")).cloned().unwrap_or_default()))
        })
        .collect()
}

/// Whether a resource with these fields and tags passes every filter (values of one
/// filter are ORed, filters are ANDed; `*` matches any text, as EC2 allows).
fn passes(filters: &[(String, Vec<String>)], field: impl Fn(&str) -> Option<String>, tags: &Tags) -> bool {
    filters.iter().all(|(name, values)| {
        let actual = match name.strip_prefix("tag:") {
            Some(key) => tags.get(key).cloned(),
            None if name == "tag-key" => {
                return values.iter().any(|v| tags.keys().any(|k| wildcard(v, k)));
            }
            None => field(name),
        };
        actual.is_some_and(|a| values.iter().any(|v| wildcard(v, &a)))
    })
}

fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((before, rest)) => {
            text.starts_with(before) && {
                let tail = &text[before.len()..];
                (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| wildcard(rest, &tail[i..]))
            }
        }
    }
}

/// XML text with `&`, `<`, `>`, quotes escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn el(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", esc(value))
}

/// `2026-12-02T20:00:00.000Z`, as EC2 writes timestamps.
fn time(at: Timestamp) -> String {
    format!("{}.{:03}Z", at.strftime("%Y-%m-%dT%H:%M:%S"), at.subsec_millisecond())
}

fn tag_set(tags: &Tags) -> String {
    let items: String = tags.iter().map(|(k, v)| format!("<item>{}{}</item>", el("key", k), el("value", v))).collect();
    format!("<tagSet>{items}</tagSet>")
}

fn document(action: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\"><requestId>{REQUEST_ID}</requestId>{body}</{action}Response>"
    )
}

/// An EC2 error answer body.
pub fn error_xml(error: &AwsError) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>{}{}</Error></Errors><RequestID>{REQUEST_ID}</RequestID></Response>",
        el("Code", &error.code),
        el("Message", &error.message)
    )
}

fn volume_fields(v: &Volume, now: Timestamp) -> String {
    let mut out = el("volumeId", &v.id);
    out += &el("size", &v.size.to_string());
    out += &el("snapshotId", v.snapshot_id.as_deref().unwrap_or_default());
    out += &el("availabilityZone", &v.zone);
    out += &el("status", v.state(now));
    out += &el("createTime", &time(v.created));
    out += "<attachmentSet/>";
    out += &el("volumeType", &v.volume_type);
    if let Some(iops) = v.iops {
        out += &el("iops", &iops.to_string());
    }
    out += &el("encrypted", &v.encrypted.to_string());
    if let Some(key) = &v.kms_key_id {
        out += &el("kmsKeyId", key);
    }
    out += &tag_set(&v.tags);
    if let Some(throughput) = v.throughput {
        out += &el("throughput", &throughput.to_string());
    }
    out += &el("multiAttachEnabled", "false");
    out
}

fn snapshot_fields(s: &Snapshot, account: &str, now: Timestamp) -> String {
    let mut out = el("snapshotId", &s.id);
    out += &el("volumeId", &s.volume_id);
    out += &el("status", s.state(now));
    out += &el("startTime", &time(s.started));
    out += &el("progress", &s.progress(now));
    out += &el("ownerId", account);
    out += &el("volumeSize", &s.volume_size.to_string());
    out += &el("description", &s.description);
    out += &el("encrypted", &s.encrypted.to_string());
    if let Some(key) = &s.kms_key_id {
        out += &el("kmsKeyId", key);
    }
    out += &tag_set(&s.tags);
    out += &el("storageTier", "standard");
    out
}

fn modification_fields(volume: &str, m: &Modification, settled: bool) -> String {
    let mut out = el("volumeId", volume);
    out += &el("modificationState", if settled { "completed" } else { "optimizing" });
    out += &el("targetSize", &m.target_size.to_string());
    out += &el("targetVolumeType", &m.target_type);
    out += &el("originalSize", &m.original_size.to_string());
    out += &el("originalVolumeType", &m.original_type);
    out += &el("progress", if settled { "100" } else { "0" });
    out += &el("startTime", &time(m.started));
    out
}

/// Runs `Action` in `region` at sim time `now`; the answer is the XML body (HTTP 200).
pub fn execute(
    ebs: &mut EbsState,
    account: &str,
    now: Timestamp,
    region: &str,
    params: &Params,
) -> Result<String, AwsError> {
    let action = required(params, "Action")?.to_string();
    if params.get("Version").is_some_and(|v| v != "2016-11-15") {
        return Err(AwsError::new(400, "InvalidAction", "The simulated EC2 speaks API version 2016-11-15 only"));
    }
    let body = match action.as_str() {
        "DescribeVolumes" => describe_volumes(ebs, now, region, params)?,
        "DescribeSnapshots" => describe_snapshots(ebs, account, now, region, params)?,
        "CreateSnapshot" => create_snapshot(ebs, account, now, region, params)?,
        "CopySnapshot" => copy_snapshot(ebs, now, region, params)?,
        "CreateVolume" => create_volume(ebs, now, region, params)?,
        "CreateTags" => create_tags(ebs, region, params)?,
        "DeleteSnapshot" => delete_snapshot(ebs, now, region, params)?,
        "DeleteVolume" => delete_volume(ebs, now, region, params)?,
        "ModifyVolume" => modify_volume(ebs, now, region, params)?,
        "DescribeVolumesModifications" => describe_modifications(ebs, now, region, params)?,
        other => {
            return Err(AwsError::new(
                400,
                "InvalidAction",
                format!("The action {other} is not valid for this web service (the simulated EC2)."),
            ));
        }
    };
    Ok(document(&action, &body))
}

fn volume_in<'e>(ebs: &'e EbsState, id: &str, region: &str) -> Result<&'e Volume, AwsError> {
    ebs.volumes.get(id).filter(|v| v.region == region).ok_or_else(|| volume_not_found(id))
}

fn snapshot_in<'e>(ebs: &'e EbsState, id: &str, region: &str) -> Result<&'e Snapshot, AwsError> {
    ebs.snapshots.get(id).filter(|s| s.region == region).ok_or_else(|| snapshot_not_found(id))
}

fn describe_volumes(ebs: &EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let ids = list(params, "VolumeId");
    for id in &ids {
        volume_in(ebs, id, region)?;
    }
    let filters = filters(params);
    let items: String = ebs
        .volumes
        .values()
        .filter(|v| v.region == region && (ids.is_empty() || ids.contains(&v.id)))
        .filter(|v| {
            let field = |name: &str| match name {
                "volume-id" => Some(v.id.clone()),
                "availability-zone" => Some(v.zone.clone()),
                "status" => Some(v.state(now).to_string()),
                "snapshot-id" => v.snapshot_id.clone(),
                "volume-type" => Some(v.volume_type.clone()),
                "size" => Some(v.size.to_string()),
                "encrypted" => Some(v.encrypted.to_string()),
                _ => None,
            };
            passes(&filters, field, &v.tags)
        })
        .map(|v| format!("<item>{}</item>", volume_fields(v, now)))
        .collect();
    Ok(format!("<volumeSet>{items}</volumeSet>"))
}

fn describe_snapshots(
    ebs: &EbsState,
    account: &str,
    now: Timestamp,
    region: &str,
    params: &Params,
) -> Result<String, AwsError> {
    let ids = list(params, "SnapshotId");
    for id in &ids {
        snapshot_in(ebs, id, region)?;
    }
    let owners = list(params, "Owner");
    let filters = filters(params);
    let items: String = ebs
        .snapshots
        .values()
        .filter(|s| s.region == region && (ids.is_empty() || ids.contains(&s.id)))
        .filter(|_| owners.is_empty() || owners.iter().any(|o| o == "self" || o == account))
        .filter(|s| {
            let field = |name: &str| match name {
                "snapshot-id" => Some(s.id.clone()),
                "volume-id" => Some(s.volume_id.clone()),
                "status" => Some(s.state(now).to_string()),
                "owner-id" => Some(account.to_string()),
                "description" => Some(s.description.clone()),
                "encrypted" => Some(s.encrypted.to_string()),
                "volume-size" => Some(s.volume_size.to_string()),
                "progress" => Some(s.progress(now)),
                _ => None,
            };
            passes(&filters, field, &s.tags)
        })
        .map(|s| format!("<item>{}</item>", snapshot_fields(s, account, now)))
        .collect();
    Ok(format!("<snapshotSet>{items}</snapshotSet>"))
}

fn create_snapshot(
    ebs: &mut EbsState,
    account: &str,
    now: Timestamp,
    region: &str,
    params: &Params,
) -> Result<String, AwsError> {
    let volume = required(params, "VolumeId")?;
    volume_in(ebs, volume, region)?;
    let tags = tag_specifications(params, "snapshot")?;
    let description = params.get("Description").cloned().unwrap_or_default();
    let id = ebs.snapshot_of(volume, now, description, tags).ok_or_else(|| volume_not_found(volume))?;
    let snapshot = &ebs.snapshots[&id];
    Ok(snapshot_fields(snapshot, account, now))
}

/// The copy is made in the region of the endpoint called (`region`), from
/// `SourceSnapshotId` in `SourceRegion`; it must be completed there first.
fn copy_snapshot(ebs: &mut EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let source_region = required(params, "SourceRegion")?;
    let source_id = required(params, "SourceSnapshotId")?;
    let source = snapshot_in(ebs, source_id, source_region)?.clone();
    if source.state(now) != "completed" {
        return Err(AwsError::new(
            400,
            "IncorrectState",
            format!("Snapshot is in invalid state - {}", source.state(now)),
        ));
    }
    let encrypted = source.encrypted || flag(params, "Encrypted");
    let kms_key_id = match params.get("KmsKeyId") {
        Some(key) if !encrypted => {
            return Err(AwsError::new(
                400,
                "InvalidParameterDependency",
                format!("The parameter KmsKeyId ({key}) requires the parameter Encrypted to be true."),
            ));
        }
        Some(key) => Some(key.clone()),
        None if encrypted => Some(format!("alias/aws/ebs@{region}")),
        None => None,
    };
    let tags = tag_specifications(params, "snapshot")?;
    let id = ebs.new_id("snap");
    let description = params.get("Description").cloned().unwrap_or_else(|| {
        format!("[Copied {source_id} from {source_region}] {}", source.description).trim_end().to_string()
    });
    let copy = Snapshot {
        id: id.clone(),
        region: region.to_string(),
        volume_id: "vol-ffffffff".into(),
        volume_size: source.volume_size,
        description,
        started: now,
        completed_at: after(now, ebs.settings.copy_takes),
        encrypted,
        kms_key_id,
        tags: tags.clone(),
        data: source.data,
    };
    ebs.snapshots.insert(id.clone(), copy);
    Ok(format!("{}{}", el("snapshotId", &id), tag_set(&tags)))
}

const VOLUME_TYPES: &[&str] = &["standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"];

fn create_volume(ebs: &mut EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let zone = required(params, "AvailabilityZone")?;
    if region_of_zone(zone) != region {
        return Err(AwsError::new(400, "InvalidParameterValue", format!("Invalid availability zone: [{zone}]")));
    }
    if let Some(token) = params.get("ClientToken")
        && let Some(existing) = ebs.client_tokens.get(&(region.to_string(), token.clone()))
        && let Some(volume) = ebs.volumes.get(existing)
    {
        // The same request again: EC2 answers with the volume it already created.
        return Ok(volume_fields(volume, now));
    }
    let snapshot = match params.get("SnapshotId") {
        Some(id) => Some(snapshot_in(ebs, id, region)?.clone()),
        None => None,
    };
    if let Some(s) = &snapshot
        && s.state(now) != "completed"
    {
        return Err(AwsError::new(400, "IncorrectState", format!("Snapshot is in invalid state - {}", s.state(now))));
    }
    let size = number::<u64>(params, "Size")?;
    let size = match (&snapshot, size) {
        (Some(s), Some(size)) if size < s.volume_size => {
            return Err(AwsError::new(
                400,
                "InvalidParameterValue",
                format!(
                    "The volume size is invalid for the given snapshot: size {size} is smaller than the snapshot size {}.",
                    s.volume_size
                ),
            ));
        }
        (_, Some(size)) => size,
        (Some(s), None) => s.volume_size,
        (None, None) => return Err(missing("Size")),
    };
    let volume_type = params.get("VolumeType").cloned().unwrap_or_else(|| "gp2".into());
    if !VOLUME_TYPES.contains(&volume_type.as_str()) {
        return Err(invalid("VolumeType", &volume_type));
    }
    let iops = number::<u32>(params, "Iops")?;
    let throughput = number::<u32>(params, "Throughput")?;
    if throughput.is_some() && volume_type != "gp3" {
        return Err(AwsError::new(400, "InvalidParameterCombination", "Throughput is supported only for gp3 volumes."));
    }
    let (iops, throughput) = match volume_type.as_str() {
        "gp3" => (Some(iops.unwrap_or(3000)), Some(throughput.unwrap_or(125))),
        "gp2" => (Some((size as u32 * 3).clamp(100, 16000)), None),
        "io1" | "io2" => (Some(iops.ok_or_else(|| missing("Iops"))?), None),
        _ => (None, None),
    };
    let encrypted = snapshot.as_ref().is_some_and(|s| s.encrypted) || flag(params, "Encrypted");
    let kms_key_id = params
        .get("KmsKeyId")
        .cloned()
        .or_else(|| snapshot.as_ref().and_then(|s| s.kms_key_id.clone()))
        .filter(|_| encrypted);
    let id = ebs.new_id("vol");
    let volume = Volume {
        id: id.clone(),
        region: region.to_string(),
        zone: zone.to_string(),
        size,
        volume_type,
        iops,
        throughput,
        snapshot_id: snapshot.as_ref().map(|s| s.id.clone()),
        encrypted,
        kms_key_id,
        created: now,
        ready_at: after(now, ebs.settings.volume_creation_takes),
        tags: tag_specifications(params, "volume")?,
        data: snapshot.map(|s| s.data).unwrap_or_default(),
        modifications: Vec::new(),
    };
    if let Some(token) = params.get("ClientToken") {
        ebs.client_tokens.insert((region.to_string(), token.clone()), id.clone());
    }
    let body = volume_fields(&volume, now);
    ebs.volumes.insert(id, volume);
    Ok(body)
}

fn create_tags(ebs: &mut EbsState, region: &str, params: &Params) -> Result<String, AwsError> {
    let resources = list(params, "ResourceId");
    if resources.is_empty() {
        return Err(missing("ResourceId"));
    }
    let tags = tag_list(params, "Tag");
    for id in &resources {
        match id.split('-').next() {
            Some("vol") => volume_in(ebs, id, region).map(|_| ())?,
            Some("snap") => snapshot_in(ebs, id, region).map(|_| ())?,
            _ => return Err(AwsError::new(400, "InvalidID", format!("The ID '{id}' is not valid"))),
        }
    }
    for id in &resources {
        if let Some(v) = ebs.volumes.get_mut(id) {
            v.tags.extend(tags.clone());
        } else if let Some(s) = ebs.snapshots.get_mut(id) {
            s.tags.extend(tags.clone());
        }
    }
    Ok(el("return", "true"))
}

fn delete_snapshot(ebs: &mut EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let id = required(params, "SnapshotId")?;
    snapshot_in(ebs, id, region)?;
    if let Some(volume) =
        ebs.volumes.values().find(|v| v.snapshot_id.as_deref() == Some(id) && v.state(now) == "creating")
    {
        return Err(AwsError::new(
            400,
            "InvalidSnapshot.InUse",
            format!("The snapshot {id} is currently in use by {}", volume.id),
        ));
    }
    ebs.snapshots.remove(id);
    Ok(el("return", "true"))
}

fn delete_volume(ebs: &mut EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let id = required(params, "VolumeId")?;
    let volume = volume_in(ebs, id, region)?;
    if volume.state(now) == "creating" {
        return Err(AwsError::new(400, "IncorrectState", format!("The volume '{id}' is 'creating'")));
    }
    ebs.volumes.remove(id);
    Ok(el("return", "true"))
}

fn modify_volume(ebs: &mut EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let id = required(params, "VolumeId")?.to_string();
    let window = ebs.settings.modification_window;
    let volume = volume_in(ebs, &id, region)?;
    if volume.modifications.iter().any(|m| after(m.started, window) > now) {
        return Err(AwsError::new(
            400,
            "VolumeModificationRateExceeded",
            format!(
                "You've reached the maximum modification rate per volume limit. Wait at least {} hours between modifications per EBS volume.",
                window.as_secs() / 3600
            ),
        ));
    }
    let target_size = number::<u64>(params, "Size")?.unwrap_or(volume.size);
    if target_size < volume.size {
        return Err(AwsError::new(
            400,
            "InvalidParameterValue",
            format!("New size cannot be smaller than existing size: {} GiB", volume.size),
        ));
    }
    let target_type = params.get("VolumeType").cloned().unwrap_or_else(|| volume.volume_type.clone());
    let modification = Modification {
        started: now,
        original_size: volume.size,
        target_size,
        original_type: volume.volume_type.clone(),
        target_type: target_type.clone(),
    };
    let body = format!("<volumeModification>{}</volumeModification>", modification_fields(&id, &modification, false));
    if let Some(volume) = ebs.volumes.get_mut(&id) {
        volume.size = target_size;
        volume.volume_type = target_type;
        volume.modifications.push(modification);
    }
    Ok(body)
}

fn describe_modifications(ebs: &EbsState, now: Timestamp, region: &str, params: &Params) -> Result<String, AwsError> {
    let ids = list(params, "VolumeId");
    let creation = ebs.settings.volume_creation_takes;
    let mut items = String::new();
    for id in &ids {
        let volume = volume_in(ebs, id, region)?;
        for m in &volume.modifications {
            let settled = after(m.started, creation) <= now;
            items += &format!("<item>{}</item>", modification_fields(id, m, settled));
        }
    }
    Ok(format!("<volumeModificationSet>{items}</volumeModificationSet>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn filters_match_tags_fields_and_wildcards() {
        let tags: Tags = [("drplan/run".to_string(), "r1".to_string())].into();
        let field = |name: &str| (name == "status").then(|| "completed".to_string());
        let f = |name: &str, value: &str| vec![(name.to_string(), vec![value.to_string()])];
        assert!(passes(&f("tag:drplan/run", "r1"), field, &tags));
        assert!(!passes(&f("tag:drplan/run", "r2"), field, &tags));
        assert!(passes(&f("status", "comp*"), field, &tags));
        assert!(passes(&f("tag-key", "drplan/*"), field, &tags));
        assert!(!passes(&f("volume-id", "vol-1"), field, &tags));
    }

    #[test]
    fn a_missing_volume_is_invalid_volume_not_found_and_errors_are_ec2_xml() {
        let mut ebs = EbsState::default();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let error = execute(
            &mut ebs,
            "123456789012",
            now,
            "us-east-1",
            &params(&[("Action", "CreateSnapshot"), ("VolumeId", "vol-0123")]),
        )
        .unwrap_err();
        assert_eq!(error.code, "InvalidVolume.NotFound");
        let xml = error_xml(&error);
        assert!(xml.contains("<Response><Errors><Error><Code>InvalidVolume.NotFound</Code>"), "{xml}");
        assert!(xml.contains("</Errors><RequestID>"), "{xml}");
    }

    #[test]
    fn a_second_modification_within_the_window_is_refused() {
        let mut ebs = EbsState::default();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let create = params(&[("Action", "CreateVolume"), ("AvailabilityZone", "us-east-1a"), ("Size", "10")]);
        let created = execute(&mut ebs, "1", now, "us-east-1", &create).unwrap();
        let id = ebs.volumes.keys().next().unwrap().clone();
        assert!(created.contains("<status>creating</status>"), "{created}");
        let modify = params(&[("Action", "ModifyVolume"), ("VolumeId", &id), ("Size", "20")]);
        execute(&mut ebs, "1", now, "us-east-1", &modify).unwrap();
        let again = params(&[("Action", "ModifyVolume"), ("VolumeId", &id), ("Size", "30")]);
        let later = after(now, std::time::Duration::from_secs(3600));
        let refused = execute(&mut ebs, "1", later, "us-east-1", &again).unwrap_err();
        assert_eq!(refused.code, "VolumeModificationRateExceeded");
        assert_eq!(ebs.volumes[&id].size, 20);
    }
}
