//! Workload steps: scale and scale back, repoint a pod volume, restart a pod, and the
//! waits on pods.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};

use super::{Kube, classify, is_not_found};
use crate::exec::StepError;
use crate::steps::{Action, WorkloadKind, WorkloadRef};

/// Key under which `scale` records the replicas it found.
pub fn original_replicas_key() -> &'static str {
    "originalReplicas"
}

pub(super) async fn get_scale(k: &Kube<'_>, w: &WorkloadRef) -> Result<i32, StepError> {
    let context = format!("reading the scale of {w}");
    let scale = match w.kind {
        WorkloadKind::StatefulSet => k.api::<StatefulSet>().get_scale(&w.name).await,
        WorkloadKind::Deployment => k.api::<Deployment>().get_scale(&w.name).await,
    }
    .map_err(|e| classify(&context, e))?;
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
}

pub(super) async fn set_scale(k: &Kube<'_>, w: &WorkloadRef, replicas: i32) -> Result<(), StepError> {
    let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
    let params = PatchParams::default();
    let context = format!("scaling {w} to {replicas}");
    match w.kind {
        WorkloadKind::StatefulSet => k.api::<StatefulSet>().patch_scale(&w.name, &params, &patch).await.map(|_| ()),
        WorkloadKind::Deployment => k.api::<Deployment>().patch_scale(&w.name, &params, &patch).await.map(|_| ()),
    }
    .map_err(|e| classify(&context, e))
}

/// Records the current replicas (once: a re-run after a crash keeps the first reading)
/// and scales to `replicas`.
pub async fn scale(k: &Kube<'_>, w: &WorkloadRef, replicas: u32) -> Result<(), StepError> {
    let current = get_scale(k, w).await?;
    if k.ctx.captured(original_replicas_key()).is_none() {
        k.ctx.capture(original_replicas_key(), json!(current))?;
    }
    if current != replicas as i32 {
        set_scale(k, w, replicas as i32).await?;
    }
    Ok(())
}

/// The replicas recorded by the `scale` step this one depends on.
pub(super) fn recorded_replicas(k: &Kube<'_>, w: &WorkloadRef) -> Option<i32> {
    let graph = &k.ctx.graph;
    k.ctx.ancestors().into_iter().find_map(|a| {
        let step = graph.step(a);
        match step.action() {
            Some(Action::Scale(p)) if k.same_place(step) && &p.workload == w => {
                k.ctx.captured_in(&step.id, original_replicas_key())?.as_i64().map(|r| r as i32)
            }
            _ => None,
        }
    })
}

/// The replicas `w` should have once the steps before this one are done: what a
/// `scaleBack` among them brings back, else what a `scale` among them set (a workload
/// started from 0 by the plan waits for the replicas it was started at, not for the 0 it
/// had), else unknown.
pub(super) fn expected_replicas(k: &Kube<'_>, w: &WorkloadRef) -> Option<i32> {
    let graph = &k.ctx.graph;
    let ancestors = k.ctx.ancestors();
    let targets_w = |a: &petgraph::graph::NodeIndex| k.same_place(graph.step(*a));
    let scaled_back = ancestors
        .iter()
        .filter(|a| targets_w(a))
        .any(|a| matches!(graph.step(*a).action(), Some(Action::ScaleBack(p)) if &p.workload == w));
    if scaled_back {
        return recorded_replicas(k, w);
    }
    ancestors.iter().filter(|a| targets_w(a)).find_map(|a| match graph.step(*a).action() {
        Some(Action::Scale(p)) if &p.workload == w => i32::try_from(p.replicas).ok(),
        _ => None,
    })
}

pub async fn scale_back(k: &Kube<'_>, w: &WorkloadRef) -> Result<(), StepError> {
    let original = recorded_replicas(k, w).ok_or_else(|| {
        StepError::failed(format!("no recorded replicas for {w}: the scale step before this one captured none"))
    })?;
    if get_scale(k, w).await? != original {
        set_scale(k, w, original).await?;
    }
    Ok(())
}

/// The label selector of a workload's pods, as a selector string.
pub(super) async fn pod_selector(k: &Kube<'_>, w: &WorkloadRef) -> Result<String, StepError> {
    let context = format!("reading {w}");
    let labels = match w.kind {
        WorkloadKind::StatefulSet => k.api::<StatefulSet>().get(&w.name).await.map(|o| o.spec.map(|s| s.selector)),
        WorkloadKind::Deployment => k.api::<Deployment>().get(&w.name).await.map(|o| o.spec.map(|s| s.selector)),
    }
    .map_err(|e| classify(&context, e))?
    .and_then(|s| s.match_labels)
    .unwrap_or_default();
    if labels.is_empty() {
        return Err(StepError::failed(format!("{w} has no matchLabels selector to find its pods by")));
    }
    Ok(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

/// Waits, on the run's shared watch of the namespace's pods, until no pod of the
/// workload exists.
pub async fn wait_pods_gone(k: &Kube<'_>, w: &WorkloadRef) -> Result<(), StepError> {
    let selector = pod_selector(k, w).await?;
    let wanted: Vec<(String, String)> = selector
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let selected = |pod: &Pod| {
        let labels = pod.metadata.labels.as_ref();
        wanted.iter().all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
    };
    let pods: Api<Pod> = k.api();
    k.watches
        .until(&k.step.cluster, &pods, &ListParams::default().labels(&selector), |view| {
            (!view.iter().any(selected)).then_some(())
        })
        .await
        .map_err(|e| super::shared_wait_failed(&format!("watching pods of {w}"), &e))
}

fn workload_ready(
    spec_replicas: Option<i32>,
    ready: Option<i32>,
    observed: Option<i64>,
    generation: Option<i64>,
) -> bool {
    let wanted = spec_replicas.unwrap_or(1);
    ready.unwrap_or(0) >= wanted && observed.unwrap_or(0) >= generation.unwrap_or(0)
}

/// Ready, and (when `at` is given) asking for exactly that many replicas.
fn ready_at(fields: ReadyFields, at: Option<i32>) -> bool {
    let (wanted, ready, observed, generation) = fields;
    at.is_none_or(|at| wanted.unwrap_or(1) == at) && workload_ready(wanted, ready, observed, generation)
}

/// Wanted replicas, ready replicas, observed generation and generation of a workload.
type ReadyFields = (Option<i32>, Option<i32>, Option<i64>, Option<i64>);

fn statefulset_fields(o: &StatefulSet) -> ReadyFields {
    let status = o.status.as_ref();
    let wanted = o.spec.as_ref().and_then(|s| s.replicas);
    (wanted, status.and_then(|s| s.ready_replicas), status.and_then(|s| s.observed_generation), o.metadata.generation)
}

fn deployment_fields(o: &Deployment) -> ReadyFields {
    let status = o.status.as_ref();
    let wanted = o.spec.as_ref().and_then(|s| s.replicas);
    (wanted, status.and_then(|s| s.ready_replicas), status.and_then(|s| s.observed_generation), o.metadata.generation)
}

/// Waits on the shared watch of the kind until one object's fields say every wanted
/// replica is ready.
async fn await_ready<K: super::Watched>(
    k: &Kube<'_>,
    api: Api<K>,
    name: &str,
    fields: fn(&K) -> ReadyFields,
    at: Option<i32>,
) -> Result<(), super::watches::WatchError> {
    let ready = move |o: Option<&K>| o.is_some_and(|o| ready_at(fields(o), at));
    k.until_named(&api, name, ready).await.map(|_| ())
}

/// Waits, on a watch, until every wanted replica of the workload is ready and (when
/// `at` is given) the workload asks for exactly `at` replicas.
pub async fn wait_ready_at(k: &Kube<'_>, w: &WorkloadRef, at: Option<i32>) -> Result<(), StepError> {
    match w.kind {
        WorkloadKind::StatefulSet => await_ready(k, k.api::<StatefulSet>(), &w.name, statefulset_fields, at).await,
        WorkloadKind::Deployment => await_ready(k, k.api::<Deployment>(), &w.name, deployment_fields, at).await,
    }
    .map_err(|e| super::shared_wait_failed(&format!("waiting for {w} to be ready"), &e))
}

/// Points pod-template volume `volume` at `claim`, recording the claim it used before.
pub async fn set_claim(k: &Kube<'_>, w: &WorkloadRef, volume: &str, claim: &str) -> Result<(), StepError> {
    let context = format!("reading {w}");
    let object: Value = match w.kind {
        WorkloadKind::StatefulSet => k.api::<StatefulSet>().get(&w.name).await.map(serde_json::to_value),
        WorkloadKind::Deployment => k.api::<Deployment>().get(&w.name).await.map(serde_json::to_value),
    }
    .map_err(|e| classify(&context, e))?
    .map_err(|e| StepError::failed(format!("{context}: {e}")))?;
    let volumes = object.pointer("/spec/template/spec/volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(position) = volumes.iter().position(|v| v.get("name").and_then(Value::as_str) == Some(volume)) else {
        return Err(StepError::failed(format!("{w} has no pod volume named `{volume}`")));
    };
    let current = volumes[position].pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str);
    let Some(current) = current else {
        return Err(StepError::failed(format!("volume `{volume}` of {w} is not backed by a claim")));
    };
    if k.ctx.captured("originalClaim").is_none() {
        k.ctx.capture("originalClaim", json!(current))?;
    }
    if current == claim {
        return Ok(());
    }
    let path = format!("/spec/template/spec/volumes/{position}/persistentVolumeClaim/claimName");
    // The `test` makes the patch fail (and the step retry) if someone changed it meanwhile.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": path, "value": current },
        { "op": "replace", "path": path, "value": claim },
    ]))
    .map_err(|e| StepError::failed(e.to_string()))?;
    let params = PatchParams::default();
    let context = format!("pointing volume `{volume}` of {w} at {claim}");
    match w.kind {
        WorkloadKind::StatefulSet => {
            k.api::<StatefulSet>().patch(&w.name, &params, &Patch::Json::<()>(patch)).await.map(|_| ())
        }
        WorkloadKind::Deployment => {
            k.api::<Deployment>().patch(&w.name, &params, &Patch::Json::<()>(patch)).await.map(|_| ())
        }
    }
    .map_err(|e| classify(&context, e))
}

/// Deletes a pod (by its uid, recorded first, so a re-run never deletes its replacement)
/// and waits until a new pod of that name is Ready.
pub async fn restart_pod(k: &Kube<'_>, name: &str) -> Result<(), StepError> {
    let pods: Api<Pod> = k.api();
    let current = pods.get_opt(name).await.map_err(|e| classify(&format!("reading pod {name}"), e))?;
    let old_uid = match k.ctx.captured("restartedUid").and_then(|v| v.as_str().map(String::from)) {
        Some(uid) => uid,
        None => {
            let uid = current.as_ref().and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
            k.ctx.capture("restartedUid", json!(uid))?;
            uid
        }
    };
    if current.as_ref().and_then(|p| p.metadata.uid.as_deref()) == Some(old_uid.as_str()) {
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(old_uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        match pods.delete(name, &params).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(classify(&format!("deleting pod {name}"), e)),
        }
    }
    let replaced_and_ready = move |p: Option<&Pod>| {
        p.is_some_and(|p| {
            p.metadata.uid.as_deref() != Some(old_uid.as_str())
                && p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    };
    k.until_named(&pods, name, replaced_and_ready)
        .await
        .map(|_| ())
        .map_err(|e| super::shared_wait_failed(&format!("waiting for pod {name} to come back"), &e))
}

/// What one deletion safety check reads, each at most once however many claims it
/// checks: the barrier before an entry's deletions reads the namespace's pods and each
/// stopped workload once for all of the entry's claims (per claim it was quadratic in a
/// fleet). A new check reads afresh: nothing is kept between checks.
#[derive(Default)]
pub(super) struct SafetyReads {
    pods: Option<std::sync::Arc<Vec<Pod>>>,
    /// Each workload as read (`None`: it does not exist).
    workloads: HashMap<WorkloadRef, Option<WorkloadVolumes>>,
    scales: HashMap<WorkloadRef, i32>,
    /// The VolumeSnapshots this run created in the namespace.
    pub(super) snapshots: Option<Vec<kube::api::DynamicObject>>,
}

impl SafetyReads {
    async fn pods(&mut self, k: &Kube<'_>) -> Result<&[Pod], StepError> {
        if self.pods.is_none() {
            // Shared with the checks running beside this one, but begun after it asked.
            let pods = k.fresh.list(&k.step.cluster, &k.api::<Pod>()).await.map_err(|e| classify("listing pods", e))?;
            self.pods = Some(pods);
        }
        Ok(self.pods.as_deref().map(Vec::as_slice).unwrap_or_default())
    }

    async fn workload(&mut self, k: &Kube<'_>, w: &WorkloadRef) -> Result<Option<&WorkloadVolumes>, StepError> {
        if !self.workloads.contains_key(w) {
            let read = read_workload(k, w).await?;
            self.workloads.insert(w.clone(), read);
        }
        Ok(self.workloads.get(w).and_then(Option::as_ref))
    }

    async fn scale(&mut self, k: &Kube<'_>, w: &WorkloadRef) -> Result<i32, StepError> {
        if let Some(replicas) = self.scales.get(w) {
            return Ok(*replicas);
        }
        let replicas = get_scale(k, w).await?;
        self.scales.insert(w.clone(), replicas);
        Ok(replicas)
    }
}

/// What of a workload says which claims its pods mount.
pub(super) struct WorkloadVolumes {
    pod_spec: Option<PodSpec>,
    /// Names of a StatefulSet's claim templates.
    claim_templates: Vec<String>,
}

/// Pods (not finished) that mount `claim`, for the deletion interlock.
pub(super) async fn pods_using_claim(
    k: &Kube<'_>,
    reads: &mut SafetyReads,
    claim: &str,
) -> Result<Vec<String>, StepError> {
    let users = reads
        .pods(k)
        .await?
        .iter()
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|volumes| {
                volumes.iter().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim))
            })
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    Ok(users)
}

/// A workload this run stopped (a `scale` to 0 before this step, not followed by its
/// `scaleBack`) that uses `claim` and has been scaled up again since: something else
/// (Argo CD self-heal, Flux, an operator) is reconciling it, and its pods are coming back
/// on the claim. Checked on the workload, not its pods: on a real cluster the pods of a
/// scale-up appear a moment after it.
pub(super) async fn scaled_back_up_by_another(
    k: &Kube<'_>,
    reads: &mut SafetyReads,
    claim: &str,
) -> Result<Option<String>, StepError> {
    let graph = &k.ctx.graph;
    let ancestors = k.ctx.ancestors();
    let restarted: HashSet<&WorkloadRef> = ancestors
        .iter()
        .filter_map(|&a| match graph.step(a).action() {
            Some(Action::ScaleBack(p)) if k.same_place(graph.step(a)) => Some(&p.workload),
            _ => None,
        })
        .collect();
    for &a in &ancestors {
        let step = graph.step(a);
        let Some(Action::Scale(p)) = step.action() else { continue };
        if p.replicas != 0 || !k.same_place(step) || restarted.contains(&p.workload) {
            continue;
        }
        if !uses_claim(k, reads, &p.workload, claim).await? {
            continue;
        }
        let replicas = reads.scale(k, &p.workload).await?;
        if replicas > 0 {
            return Ok(Some(format!(
                "{} was scaled back up to {replicas} while this run has it stopped: another controller \
                 (Argo CD self-heal, Flux, an operator) reconciles it; pause it with `pauseReconciliation`",
                p.workload
            )));
        }
    }
    Ok(None)
}

/// The workload's pod spec and claim template names; `None` when it does not exist.
async fn read_workload(k: &Kube<'_>, w: &WorkloadRef) -> Result<Option<WorkloadVolumes>, StepError> {
    let context = format!("reading {w}");
    Ok(match w.kind {
        WorkloadKind::StatefulSet => {
            let Some(sts) = k.api::<StatefulSet>().get_opt(&w.name).await.map_err(|e| classify(&context, e))? else {
                return Ok(None);
            };
            let spec = sts.spec.unwrap_or_default();
            let names: Vec<String> =
                spec.volume_claim_templates.unwrap_or_default().into_iter().filter_map(|t| t.metadata.name).collect();
            Some(WorkloadVolumes { pod_spec: spec.template.spec, claim_templates: names })
        }
        WorkloadKind::Deployment => {
            let Some(deploy) = k.api::<Deployment>().get_opt(&w.name).await.map_err(|e| classify(&context, e))? else {
                return Ok(None);
            };
            Some(WorkloadVolumes {
                pod_spec: deploy.spec.unwrap_or_default().template.spec,
                claim_templates: Vec::new(),
            })
        }
    })
}

/// Whether the workload's pods mount the claim: a pod volume naming it, or a StatefulSet
/// claim template it was made from (`TEMPLATE-NAME-ORDINAL`).
async fn uses_claim(k: &Kube<'_>, reads: &mut SafetyReads, w: &WorkloadRef, claim: &str) -> Result<bool, StepError> {
    let Some(WorkloadVolumes { pod_spec, claim_templates }) = reads.workload(k, w).await? else { return Ok(false) };
    let from_template = claim_templates.iter().any(|t| {
        claim
            .strip_prefix(&format!("{t}-{}-", w.name))
            .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
    });
    let in_pod = pod_spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|volumes| {
        volumes.iter().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim))
    });
    Ok(from_template || in_pod)
}
