//! Server-side printing: `meta.k8s.io/v1` Tables, which `kubectl get` asks for, with the
//! columns kubectl users know (pods' READY and STATUS, claims' VOLUME and CAPACITY, ...) and
//! a CRD's `additionalPrinterColumns`.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::registry::ResourceType;
use super::selector::field_text;

/// Whether an Accept header asks for a Table (`application/json;as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| media.contains("as=Table") && media.contains("g=meta.k8s.io"))
}

/// A column: header, type, and how to compute the cell.
struct Column {
    name: String,
    kind: &'static str,
    cell: Box<dyn Fn(&Value) -> Value>,
}

fn column(name: &str, cell: impl Fn(&Value) -> Value + 'static) -> Column {
    Column { name: name.into(), kind: "string", cell: Box::new(cell) }
}

fn text(object: &Value, path: &str) -> Value {
    let value = field_text(object, path);
    json!(if value.is_empty() { "<none>".to_string() } else { value })
}

/// The Table of `items`, ages counted to `now` (sim time).
pub fn table(rt: &ResourceType, items: &[Arc<Value>], resource_version: u64, now: Timestamp) -> Value {
    let mut columns = vec![column("Name", |o| text(o, "metadata.name"))];
    columns.extend(kind_columns(rt));
    columns.push(Column { name: "Age".into(), kind: "string", cell: Box::new(move |o| json!(age(o, now))) });
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({ "name": c.name, "type": c.kind, "format": format, "description": "", "priority": 0 })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(item)).collect();
            let object = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"] });
            json!({ "cells": cells, "object": object })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version.to_string() },
        "columnDefinitions": definitions, "rows": rows,
    })
}

fn kind_columns(rt: &ResourceType) -> Vec<Column> {
    match rt.kind.as_str() {
        "Pod" => vec![
            column("Ready", pod_ready),
            column("Status", pod_status),
            column("Restarts", pod_restarts),
            column("Node", |o| text(o, "spec.nodeName")),
        ],
        "PersistentVolumeClaim" => vec![
            column("Status", |o| text(o, "status.phase")),
            column("Volume", |o| json!(field_text(o, "spec.volumeName"))),
            column("Capacity", |o| json!(field_text(o, "status.capacity.storage"))),
            column("Access Modes", |o| access_modes(&o["status"]["accessModes"])),
            column("StorageClass", |o| text(o, "spec.storageClassName")),
        ],
        "PersistentVolume" => vec![
            column("Capacity", |o| json!(field_text(o, "spec.capacity.storage"))),
            column("Access Modes", |o| access_modes(&o["spec"]["accessModes"])),
            column("Reclaim Policy", |o| text(o, "spec.persistentVolumeReclaimPolicy")),
            column("Status", |o| text(o, "status.phase")),
            column("Claim", pv_claim),
            column("StorageClass", |o| json!(field_text(o, "spec.storageClassName"))),
        ],
        "StatefulSet" => vec![column("Ready", |o| ready_of(o, "status.readyReplicas", "spec.replicas"))],
        "Deployment" => vec![
            column("Ready", |o| ready_of(o, "status.readyReplicas", "spec.replicas")),
            column("Up-to-date", |o| count(o, "status.updatedReplicas")),
            column("Available", |o| count(o, "status.availableReplicas")),
        ],
        "ReplicaSet" => vec![
            column("Desired", |o| count(o, "spec.replicas")),
            column("Current", |o| count(o, "status.replicas")),
            column("Ready", |o| count(o, "status.readyReplicas")),
        ],
        "Namespace" => vec![column("Status", |o| text(o, "status.phase"))],
        "Node" => vec![
            column("Status", |_| json!("Ready")),
            column("Zone", |o| {
                json!(o["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str().unwrap_or("<none>"))
            }),
        ],
        "StorageClass" => vec![
            column("Provisioner", |o| text(o, "provisioner")),
            column("ReclaimPolicy", |o| text(o, "reclaimPolicy")),
            column("VolumeBindingMode", |o| text(o, "volumeBindingMode")),
            column("AllowVolumeExpansion", |o| json!(o["allowVolumeExpansion"] == true)),
        ],
        "Event" => vec![
            column("Type", |o| text(o, "type")),
            column("Reason", |o| text(o, "reason")),
            column("Object", |o| {
                json!(format!(
                    "{}/{}",
                    field_text(o, "involvedObject.kind").to_lowercase(),
                    field_text(o, "involvedObject.name")
                ))
            }),
            column("Message", |o| text(o, "message")),
        ],
        _ => rt.printer_columns.iter().filter_map(printer_column).collect(),
    }
}

/// A CRD `additionalPrinterColumns` entry with a simple `.a.b.c` JSONPath.
fn printer_column(spec: &Value) -> Option<Column> {
    let name = spec["name"].as_str()?.to_string();
    if name == "Age" {
        return None; // every table ends with Age already
    }
    let path = spec["jsonPath"].as_str()?.trim_start_matches('.').to_string();
    Some(Column { name, kind: "string", cell: Box::new(move |o| text(o, &path)) })
}

fn count(object: &Value, path: &str) -> Value {
    json!(path.split('.').fold(object, |v, k| &v[k]).as_i64().unwrap_or(0))
}

fn ready_of(object: &Value, ready: &str, wanted: &str) -> Value {
    let wanted = path_value(object, wanted).as_i64().unwrap_or(1);
    json!(format!("{}/{wanted}", path_value(object, ready).as_i64().unwrap_or(0)))
}

fn path_value<'a>(object: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(object, |v, k| &v[k])
}

fn pod_ready(pod: &Value) -> Value {
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = match pod["status"]["containerStatuses"].as_array() {
        Some(statuses) => statuses.iter().filter(|c| c["ready"] == true).count(),
        // No container statuses: as ready as the pod says it is, like its workload counts it.
        None if super::controllers::workloads::pod_ready(pod) => total,
        None => 0,
    };
    json!(format!("{ready}/{total}"))
}

fn pod_status(pod: &Value) -> Value {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return json!("Terminating");
    }
    let unschedulable =
        pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["reason"] == "Unschedulable");
    match pod["status"]["phase"].as_str() {
        Some("Pending") if pod["spec"]["nodeName"].is_string() => json!("ContainerCreating"),
        Some("Pending") if unschedulable => json!("Pending"),
        Some(phase) => json!(phase),
        None => json!("Unknown"),
    }
}

fn pod_restarts(pod: &Value) -> Value {
    json!(
        pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
            .sum::<i64>()
    )
}

fn access_modes(modes: &Value) -> Value {
    let short: Vec<&str> = modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    json!(short.join(","))
}

fn pv_claim(pv: &Value) -> Value {
    let claim = &pv["spec"]["claimRef"];
    match (claim["namespace"].as_str(), claim["name"].as_str()) {
        (Some(ns), Some(name)) => json!(format!("{ns}/{name}")),
        _ => json!(""),
    }
}

/// `kubectl`'s human durations: `45s`, `3m12s`, `5h`, `12d`, `2y3d`.
fn age(object: &Value, now: Timestamp) -> String {
    let Some(created) = object["metadata"]["creationTimestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    human_duration(now.duration_since(created).as_secs().max(0))
}

fn human_duration(seconds: i64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    match () {
        _ if seconds < 120 => format!("{seconds}s"),
        _ if minutes < 10 => format!("{minutes}m{}s", seconds % 60),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 192 => format!("{days}d{}h", hours % 24),
        _ if days < 730 => format!("{days}d"),
        _ if days < 2920 => format!("{}y{}d", days / 365, days % 365),
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_duration(20 * 86_400), "20d");
        assert_eq!(human_duration(800 * 86_400), "2y70d");
    }

    #[test]
    fn accept_header_negotiation() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }
}
