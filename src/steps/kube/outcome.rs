//! Verified outcomes: a run (or a rollback) succeeds only when its end state is
//! observed. A workload brought back must be Ready at the replicas it had, and every
//! claim the entry restored must be Bound, at its size, from the intended snapshot.
//! When that is not reached in time, the failure says why, from the pods' and claims'
//! own conditions and events (for example `volume node affinity conflict`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};

use super::{Kube, classify, expand_name, workloads};
use crate::exec::StepError;
use crate::lang::Quantity;
use crate::steps::{Action, WorkloadKind, WorkloadRef};

/// Waits until `w` is Ready at `replicas` (its spec too, so a workload someone scaled
/// elsewhere is not taken as restored), then checks the claims this step's entry
/// restored. Fails after `timeout` with the reasons the pods and claims give.
pub async fn verify_ready(
    k: &Kube<'_>,
    w: &WorkloadRef,
    replicas: Option<i32>,
    timeout: Duration,
) -> Result<(), StepError> {
    ready_or_explain(k, w, replicas, timeout).await?;
    verify_restored_claims(k).await
}

/// Waits until `w` is Ready at `replicas`; after `timeout`, fails saying why not.
pub async fn ready_or_explain(
    k: &Kube<'_>,
    w: &WorkloadRef,
    replicas: Option<i32>,
    timeout: Duration,
) -> Result<(), StepError> {
    match tokio::time::timeout(timeout, workloads::wait_ready_at(k, w, replicas)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let (ready, wanted) = ready_counts(k, w).await.unwrap_or_default();
            let reasons = not_ready_reasons(k, w).await.unwrap_or_default();
            let reasons = if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join("; ")) };
            return Err(StepError::failed(format!(
                "{w} is not Ready after {}: {ready}/{} ready{reasons}",
                humantime::format_duration(timeout),
                replicas.unwrap_or(wanted)
            )));
        }
    }
    Ok(())
}

/// Ready and wanted replicas of a workload, as its status says.
async fn ready_counts(k: &Kube<'_>, w: &WorkloadRef) -> Result<(i32, i32), kube::Error> {
    Ok(match w.kind {
        WorkloadKind::StatefulSet => {
            let o = k.api::<StatefulSet>().get(&w.name).await?;
            (o.status.and_then(|s| s.ready_replicas).unwrap_or(0), o.spec.and_then(|s| s.replicas).unwrap_or(1))
        }
        WorkloadKind::Deployment => {
            let o = k.api::<Deployment>().get(&w.name).await?;
            (o.status.and_then(|s| s.ready_replicas).unwrap_or(0), o.spec.and_then(|s| s.replicas).unwrap_or(1))
        }
    })
}

/// Why the pods of `w` are not Ready: per pod, its latest warning event (such as
/// `FailedScheduling … volume node affinity conflict`) or its unready condition, and the
/// latest warning of each unbound claim it mounts.
async fn not_ready_reasons(k: &Kube<'_>, w: &WorkloadRef) -> Result<Vec<String>, StepError> {
    let selector = workloads::pod_selector(k, w).await?;
    let pods =
        k.api::<Pod>().list(&ListParams::default().labels(&selector)).await.map_err(|e| classify("listing pods", e))?;
    let events = k.api::<Event>().list(&ListParams::default()).await.map_err(|e| classify("listing events", e))?;
    let claims: Api<PersistentVolumeClaim> = k.api();
    let mut reasons = Vec::new();
    for pod in pods.items.iter().filter(|p| !is_ready(p)) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
        let why = latest_warning(&events.items, "Pod", &name).or_else(|| unready_condition(pod));
        reasons.push(match why {
            Some(why) => format!("pod {name} {phase}: {why}"),
            None => format!("pod {name} {phase}"),
        });
        for claim in pod_claims(pod) {
            let bound = claims.get_opt(&claim).await.ok().flatten().and_then(|c| c.status).and_then(|s| s.phase);
            if bound.as_deref() != Some("Bound") {
                let why = latest_warning(&events.items, "PersistentVolumeClaim", &claim)
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                reasons.push(format!("PVC {claim} {}{why}", bound.unwrap_or_else(|| "missing".into())));
            }
        }
    }
    Ok(reasons)
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn unready_condition(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.status == "False" && c.message.is_some())
        .map(|c| format!("{} ({})", c.message.clone().unwrap_or_default(), c.reason.clone().unwrap_or_default()))
}

fn pod_claims(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone())).collect()
}

/// The message of the latest warning event about an object, with its reason.
fn latest_warning(events: &[Event], kind: &str, name: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.involved_object.kind.as_deref() == Some(kind) && e.involved_object.name.as_deref() == Some(name))
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0).or(e.metadata.creation_timestamp.as_ref().map(|t| t.0)))
        .map(|e| format!("{} {}", e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default()))
}

/// A claim bound through a static PV is Bound to that PV.
async fn static_claim_problem(
    api: &Api<PersistentVolumeClaim>,
    claim: &str,
    pv: &str,
) -> Result<Option<String>, StepError> {
    let pvc = api.get_opt(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
    let bound_to = pvc.as_ref().and_then(|c| c.spec.as_ref()).and_then(|s| s.volume_name.clone());
    let phase = pvc.as_ref().and_then(|c| c.status.as_ref()).and_then(|s| s.phase.clone());
    Ok(match (bound_to, phase.as_deref()) {
        (Some(to), Some("Bound")) if to == pv => None,
        _ if pvc.is_none() => Some(format!("PVC {claim} does not exist")),
        (to, phase) => Some(format!(
            "PVC {claim} is {} to {}, not Bound to PV {pv}",
            phase.unwrap_or("not bound"),
            to.unwrap_or_else(|| "no volume".into())
        )),
    })
}

/// Each claim the `restorePvc` steps of this step's entry restored is Bound, at least at
/// the size asked for, and from the snapshot it was restored from; each claim it bound
/// through a static PV is Bound to that PV.
async fn verify_restored_claims(k: &Kube<'_>) -> Result<(), StepError> {
    let graph = &k.ctx.graph;
    let api: Api<PersistentVolumeClaim> = k.api();
    let mut problems = Vec::new();
    for index in k.ctx.ancestors() {
        let step = graph.step(index);
        if step.entry != k.step.entry || step.namespace != k.step.namespace {
            continue;
        }
        if let Some(Action::BindStaticPv(p)) = step.action() {
            problems.extend(static_claim_problem(&api, &p.claim, &p.pv_name).await?);
            continue;
        }
        let Some(Action::RestorePvc(p)) = step.action() else { continue };
        let claim = &p.claim.value;
        let snapshot = expand_name(&p.snapshot, claim, &k.run_token());
        let pvc = api.get_opt(claim).await.map_err(|e| classify(&format!("reading PVC {claim}"), e))?;
        let Some(pvc) = pvc else {
            problems.push(format!("PVC {claim} does not exist"));
            continue;
        };
        let source = pvc.spec.as_ref().and_then(|s| s.data_source.as_ref()).map(|d| d.name.clone());
        if source.as_deref() != Some(snapshot.as_str()) {
            problems
                .push(format!("PVC {claim} is not restored from {snapshot} (source: {})", source.unwrap_or_default()));
        }
        let status = pvc.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase != "Bound" {
            problems.push(format!("PVC {claim} is {phase}, not Bound"));
            continue;
        }
        let capacity = status.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"));
        let capacity = capacity.and_then(|q| q.0.parse::<Quantity>().ok());
        if let (Some(wanted), capacity) = (&p.size, &capacity)
            && capacity.as_ref().is_none_or(|c| c.bytes() < wanted.value.bytes())
        {
            let has = capacity.as_ref().map(ToString::to_string).unwrap_or_else(|| "no capacity".into());
            problems.push(format!("PVC {claim} holds {has}, not the {} asked for", wanted.value));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StepError::failed(format!("the restored claims are not as planned: {}", problems.join("; "))))
}
