//! Workload controllers: StatefulSets (ordered pods, claims from templates), Deployments,
//! the scheduler (zone-aware through volume node affinity) and a kubelet that turns
//! scheduled pods Running and Ready after a delay.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::sim::clock::{after, format_time, parse_time};
use crate::sim::registry::{ResourceKey, keys};
use crate::sim::state::{State, is_deleting, name_of, namespace_of, uid_of};

/// Node label holding the zone, as cloud providers set it.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Annotation the scheduler sets on WaitForFirstConsumer claims.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ZONE_KEYS: [&str; 3] = [ZONE_LABEL, "topology.ebs.csi.aws.com/zone", "failure-domain.beta.kubernetes.io/zone"];

pub fn reconcile_statefulsets(state: &mut State) -> bool {
    let mut changed = false;
    for sts in state.all(&keys::statefulsets()) {
        if !is_deleting(&sts) {
            changed |= sync_statefulset(state, &sts);
        }
    }
    changed
}

fn owned_pods(state: &State, owner: &Value) -> Vec<Arc<Value>> {
    let uid = uid_of(owner);
    state
        .store
        .list(&keys::pods(), Some(namespace_of(owner)))
        .into_iter()
        .filter(|p| p["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|o| o["uid"] == uid)))
        .collect()
}

pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// A pod loaded from a trimmed dump may say it is Ready without saying so of its
/// containers; the kubelet reports both, and clients read either (kubectl's READY column
/// counts ready containers, controllers the Ready condition). Fills in the containers'
/// statuses from the Ready condition so both agree.
pub fn complete_container_statuses(pod: &mut Value) {
    if !pod_ready(pod) || pod["status"]["containerStatuses"].is_array() {
        return;
    }
    let since = pod["status"]["startTime"].clone();
    pod["status"]["containerStatuses"] = json!(ready_container_statuses(pod, &since));
}

fn replicas_of(workload: &Value) -> usize {
    workload["spec"]["replicas"].as_u64().unwrap_or(1) as usize
}

/// The StatefulSet's pods by ordinal. Membership is by name as the real controller has it
/// (`isMemberOf`: the pod's name is `SET-ORDINAL`), and by owner: a range of the store by
/// name prefix, where scanning the namespace's pods for each StatefulSet was quadratic in
/// a fleet (every write request runs a controller pass).
fn statefulset_pods(state: &State, sts: &Value) -> BTreeMap<usize, Arc<Value>> {
    let (name, uid) = (name_of(sts), uid_of(sts));
    let prefix = format!("{name}-");
    let owned =
        |p: &Value| p["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|o| o["uid"] == uid));
    state
        .store
        .list_prefixed(&keys::pods(), namespace_of(sts), &prefix)
        .into_iter()
        .filter(|p| owned(p))
        .filter_map(|pod| {
            let ordinal = name_of(&pod).strip_prefix(&prefix)?;
            let ordinal = ordinal.bytes().all(|b| b.is_ascii_digit()).then(|| ordinal.parse().ok()).flatten()?;
            Some((ordinal, pod))
        })
        .collect()
}

fn sync_statefulset(state: &mut State, sts: &Value) -> bool {
    let replicas = replicas_of(sts);
    let parallel = sts["spec"]["podManagementPolicy"] == "Parallel";
    let by_ordinal = statefulset_pods(state, sts);
    let mut changed = false;
    for ordinal in 0..replicas {
        match by_ordinal.get(&ordinal) {
            Some(pod) if parallel || pod_ready(pod) => continue,
            Some(_) => break, // OrderedReady: the next pod waits for this one
            None => {
                changed |= create_statefulset_pod(state, sts, ordinal);
                if !parallel {
                    break;
                }
            }
        }
    }
    // Scale down removes the highest ordinal first, one at a time.
    if let Some((_, pod)) = by_ordinal.iter().rev().find(|(o, p)| **o >= replicas && !is_deleting(p)) {
        state.delete_object(&keys::pods(), pod);
        changed = true;
    }
    changed | write_workload_status(state, &keys::statefulsets(), sts)
}

fn owner_reference(owner: &Value, kind: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind, "name": name_of(owner), "uid": uid_of(owner),
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn create_statefulset_pod(state: &mut State, sts: &Value, ordinal: usize) -> bool {
    let (ns, name) = (namespace_of(sts).to_string(), name_of(sts).to_string());
    let pod_name = format!("{name}-{ordinal}");
    let mut volumes: Vec<Value> = sts["spec"]["template"]["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    for template in sts["spec"]["volumeClaimTemplates"].as_array().cloned().unwrap_or_default() {
        let template_name = name_of(&template).to_string();
        let claim_name = format!("{template_name}-{name}-{ordinal}");
        if state.get(&keys::pvcs(), &ns, &claim_name).is_none() && !create_claim(state, sts, &template, &claim_name) {
            return false;
        }
        volumes.retain(|v| v["name"] != template_name.as_str());
        volumes.push(json!({ "name": template_name, "persistentVolumeClaim": { "claimName": claim_name } }));
    }
    let template = &sts["spec"]["template"];
    let mut labels = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(pod_name));
    labels.insert("apps.kubernetes.io/pod-index".into(), json!(ordinal.to_string()));
    let mut spec = template["spec"].clone();
    spec["volumes"] = json!(volumes);
    spec["hostname"] = json!(pod_name);
    if let Some(service) = sts["spec"]["serviceName"].as_str() {
        spec["subdomain"] = json!(service);
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name, "namespace": ns, "labels": labels,
            "annotations": template["metadata"]["annotations"].clone(),
            "ownerReferences": [owner_reference(sts, "StatefulSet")],
        },
        "spec": spec,
    });
    create_or_report(state, sts, &keys::pods(), &ns, pod)
}

fn create_claim(state: &mut State, sts: &Value, template: &Value, claim_name: &str) -> bool {
    let ns = namespace_of(sts).to_string();
    let mut labels = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    if let Some(selector) = sts["spec"]["selector"]["matchLabels"].as_object() {
        labels.extend(selector.clone());
    }
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": claim_name, "namespace": ns, "labels": labels, "annotations": template["metadata"]["annotations"].clone() },
        "spec": template["spec"].clone(),
    });
    create_or_report(state, sts, &keys::pvcs(), &ns, claim)
}

/// Creates through admission (stamping uid etc.); failures become a FailedCreate event.
fn create_or_report(state: &mut State, owner: &Value, key: &ResourceKey, ns: &str, mut object: Value) -> bool {
    strip_nulls(&mut object["metadata"]);
    let Some(rt) = state.registry.get(key).cloned() else {
        return false;
    };
    match state.create_object(&rt, ns, object) {
        Ok(created) => {
            let message = format!(
                "create {} {} in {} {} successful",
                rt.singular(),
                name_of(&created),
                owner["kind"].as_str().unwrap_or_default(),
                name_of(owner)
            );
            state.record_event(owner, false, "SuccessfulCreate", &message, "statefulset-controller");
            true
        }
        Err(e) => {
            state.record_event(owner, true, "FailedCreate", &e.message, "statefulset-controller");
            false
        }
    }
}

fn strip_nulls(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
}

fn write_workload_status(state: &mut State, key: &ResourceKey, workload: &Value) -> bool {
    let pods: Vec<Arc<Value>> = if key == &keys::deployments() {
        owned_by_uid(state, &keys::replicasets(), workload).iter().flat_map(|rs| owned_pods(state, rs)).collect()
    } else if key == &keys::statefulsets() {
        statefulset_pods(state, workload).into_values().collect()
    } else {
        owned_pods(state, workload)
    };
    let live = pods.iter().filter(|p| !is_deleting(p)).count();
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let mut status = workload["status"].as_object().cloned().unwrap_or_else(Map::new);
    status.insert("observedGeneration".into(), workload["metadata"]["generation"].clone());
    status.insert("replicas".into(), json!(live));
    status.insert("readyReplicas".into(), json!(ready));
    status.insert("availableReplicas".into(), json!(ready));
    status.insert("updatedReplicas".into(), json!(live));
    if key == &keys::statefulsets() {
        status.insert("currentReplicas".into(), json!(live));
    } else if key == &keys::replicasets() {
        status.insert("fullyLabeledReplicas".into(), json!(live));
    } else {
        let available = ready >= replicas_of(workload);
        status.insert(
            "conditions".into(),
            json!([{
                "type": "Available", "status": if available { "True" } else { "False" },
                "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            }]),
        );
    }
    // Every controller pass visits every workload: compare before copying one.
    if workload["status"].as_object() == Some(&status) {
        return false;
    }
    let mut updated = workload.clone();
    updated["status"] = Value::Object(status);
    state.save_if_changed(key, workload, updated)
}

pub fn reconcile_deployments(state: &mut State) -> bool {
    let mut changed = false;
    for deploy in state.all(&keys::deployments()) {
        if !is_deleting(&deploy) {
            changed |= sync_deployment(state, &deploy);
        }
    }
    changed
}

/// A stable 10-character hash of the pod template, like `pod-template-hash`.
fn template_hash(template: &Value) -> String {
    let text = template.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10).map(|i| ALPHABET[((hash >> (i * 6)) % ALPHABET.len() as u64) as usize] as char).collect()
}

fn sync_deployment(state: &mut State, deploy: &Value) -> bool {
    let owned: Vec<Arc<Value>> =
        owned_by_uid(state, &keys::replicasets(), deploy).into_iter().filter(|rs| !is_deleting(rs)).collect();
    let template = &deploy["spec"]["template"];
    let current = owned.iter().find(|rs| same_template(&rs["spec"]["template"], template)).cloned();
    let mut changed = false;
    // A changed template replaces the old ReplicaSets' pods (recreate, no surge).
    for old in owned.iter().filter(|rs| current.as_ref().is_none_or(|c| uid_of(c) != uid_of(rs))) {
        changed |= set_replicas(state, old, 0);
    }
    let replicas = replicas_of(deploy);
    match current {
        Some(rs) => changed |= set_replicas(state, &rs, replicas),
        None => changed |= create_replicaset(state, deploy, replicas),
    }
    changed | write_workload_status(state, &keys::deployments(), deploy)
}

/// Objects of `key` in the owner's namespace that name it as owner.
fn owned_by_uid(state: &State, key: &ResourceKey, owner: &Value) -> Vec<Arc<Value>> {
    let uid = uid_of(owner);
    state
        .store
        .list(key, Some(namespace_of(owner)))
        .into_iter()
        .filter(|o| o["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|x| x["uid"] == uid)))
        .collect()
}

/// A ReplicaSet template equals the Deployment's once its `pod-template-hash` label is dropped.
fn same_template(rs_template: &Value, template: &Value) -> bool {
    let mut stripped = rs_template.clone();
    if let Some(labels) = stripped["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    let normalize = |t: &Value| {
        let mut t = t.clone();
        if let Some(meta) = t["metadata"].as_object_mut() {
            meta.retain(|_, v| !v.is_null());
        }
        t
    };
    normalize(&stripped) == normalize(template)
}

fn set_replicas(state: &mut State, workload: &Value, replicas: usize) -> bool {
    let mut updated = workload.clone();
    updated["spec"]["replicas"] = json!(replicas);
    let key = if workload["kind"] == "ReplicaSet" { keys::replicasets() } else { keys::deployments() };
    state.save_if_changed(&key, workload, updated)
}

fn create_replicaset(state: &mut State, deploy: &Value, replicas: usize) -> bool {
    let ns = namespace_of(deploy).to_string();
    let hash = template_hash(&deploy["spec"]["template"]);
    let mut template = deploy["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deploy["spec"]["selector"].clone();
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let replicaset = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", name_of(deploy)), "namespace": ns,
            "labels": template["metadata"]["labels"].clone(),
            "ownerReferences": [owner_reference(deploy, "Deployment")],
        },
        "spec": { "replicas": replicas, "selector": selector, "template": template },
    });
    create_or_report(state, deploy, &keys::replicasets(), &ns, replicaset)
}

pub fn reconcile_replicasets(state: &mut State) -> bool {
    let mut changed = false;
    for rs in state.all(&keys::replicasets()) {
        if !is_deleting(&rs) {
            changed |= sync_replicaset(state, &rs);
        }
    }
    changed
}

fn sync_replicaset(state: &mut State, rs: &Value) -> bool {
    let mut pods: Vec<Arc<Value>> = owned_pods(state, rs).into_iter().filter(|p| !is_deleting(p)).collect();
    pods.sort_by_key(|p| {
        (p["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string(), name_of(p).to_string())
    });
    let replicas = replicas_of(rs);
    let mut changed = false;
    // Scale down removes the newest pods first.
    for extra in pods.iter().skip(replicas).rev() {
        state.delete_object(&keys::pods(), extra);
        changed = true;
    }
    for _ in pods.len()..replicas {
        changed |= create_replicaset_pod(state, rs);
    }
    changed | write_workload_status(state, &keys::replicasets(), rs)
}

fn create_replicaset_pod(state: &mut State, rs: &Value) -> bool {
    let ns = namespace_of(rs).to_string();
    let template = &rs["spec"]["template"];
    let suffix = state.new_hex(5);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{}-{suffix}", name_of(rs)), "namespace": ns,
            "labels": template["metadata"]["labels"].clone(),
            "annotations": template["metadata"]["annotations"].clone(),
            "ownerReferences": [owner_reference(rs, "ReplicaSet")],
        },
        "spec": template["spec"].clone(),
    });
    create_or_report(state, rs, &keys::pods(), &ns, pod)
}

/// Claim names a pod mounts.
pub fn pod_claims(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(str::to_string))
        .collect()
}

/// The zone a PersistentVolume is pinned to, by node affinity or label.
pub fn pv_zone(pv: &Value) -> Option<String> {
    let terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"].as_array();
    for term in terms.into_iter().flatten() {
        for expr in term["matchExpressions"].as_array().into_iter().flatten() {
            if ZONE_KEYS.contains(&expr["key"].as_str().unwrap_or_default()) && expr["operator"] == "In" {
                return expr["values"][0].as_str().map(str::to_string);
            }
        }
    }
    ZONE_KEYS.iter().find_map(|k| pv["metadata"]["labels"][*k].as_str().map(str::to_string))
}

pub fn node_zone(node: &Value) -> Option<String> {
    ZONE_KEYS.iter().find_map(|k| node["metadata"]["labels"][*k].as_str().map(str::to_string))
}

/// What a pod's volumes demand of its node.
struct VolumeNeeds {
    zone: Option<String>,
    /// Unbound WaitForFirstConsumer claims to mark with the chosen node.
    delayed_claims: Vec<Arc<Value>>,
}

fn volume_needs(state: &State, pod: &Value) -> Result<VolumeNeeds, String> {
    let ns = namespace_of(pod);
    let mut needs = VolumeNeeds { zone: None, delayed_claims: Vec::new() };
    for claim_name in pod_claims(pod) {
        let claim = state
            .get(&keys::pvcs(), ns, &claim_name)
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim_name}\" not found"))?;
        if is_deleting(&claim) {
            return Err(format!("persistentvolumeclaim \"{claim_name}\" is being deleted"));
        }
        let bound_pv = claim["spec"]["volumeName"].as_str().and_then(|pv| state.get(&keys::pvs(), "", pv));
        match bound_pv {
            Some(pv) => {
                if let Some(zone) = pv_zone(&pv) {
                    if needs.zone.as_ref().is_some_and(|z| *z != zone) {
                        return Err("0 nodes are available: node(s) had volume node affinity conflict".into());
                    }
                    needs.zone = Some(zone);
                }
            }
            None if super::storage::waits_for_consumer(state, &claim) => needs.delayed_claims.push(claim),
            None => return Err("pod has unbound immediate PersistentVolumeClaims".into()),
        }
    }
    Ok(needs)
}

/// Pods per node, counted once per scheduling pass and kept current as pods are placed.
fn node_load(state: &State) -> BTreeMap<String, usize> {
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for pod in state.all(&keys::pods()) {
        if let Some(node) = pod["spec"]["nodeName"].as_str() {
            *load.entry(node.to_string()).or_default() += 1;
        }
    }
    load
}

/// The least loaded eligible node (by name on ties, so runs repeat).
fn choose_node(
    state: &State,
    pod: &Value,
    zone: Option<&str>,
    load: &BTreeMap<String, usize>,
) -> Result<String, String> {
    let nodes = state.all(&keys::nodes());
    let selector = pod["spec"]["nodeSelector"].as_object();
    // Like kube-scheduler, the first filter a node fails is what is counted against it.
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    let mut eligible = Vec::new();
    for n in &nodes {
        let why = if n["spec"]["unschedulable"] == true {
            Some("node(s) were unschedulable".to_string())
        } else if !selector.is_none_or(|s| s.iter().all(|(k, v)| &n["metadata"]["labels"][k] == v)) {
            Some("node(s) didn't match Pod's node affinity/selector".to_string())
        } else if zone.is_some_and(|z| node_zone(n).as_deref() != Some(z)) {
            Some(format!("node(s) had volume node affinity conflict (zone {})", zone.unwrap_or_default()))
        } else {
            None
        };
        match why {
            Some(why) => *rejected.entry(why).or_default() += 1,
            None => eligible.push(n),
        }
    }
    eligible
        .into_iter()
        .min_by_key(|n| (load.get(name_of(n)).copied().unwrap_or(0), name_of(n).to_string()))
        .map(|n| name_of(n).to_string())
        .ok_or_else(|| {
            let counts: Vec<String> = rejected.iter().map(|(why, count)| format!("{count} {why}")).collect();
            format!("0/{} nodes are available: {}", nodes.len(), counts.join(", "))
        })
}

pub fn schedule_pods(state: &mut State) -> bool {
    let mut changed = false;
    let unscheduled: Vec<Arc<Value>> = state
        .all(&keys::pods())
        .into_iter()
        .filter(|pod| !is_deleting(pod) && pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty))
        .collect();
    if unscheduled.is_empty() {
        return false;
    }
    let mut load = node_load(state);
    for pod in unscheduled {
        let placement = volume_needs(state, &pod).and_then(|needs| {
            let node = choose_node(state, &pod, needs.zone.as_deref(), &load)?;
            Ok((node, needs.delayed_claims))
        });
        changed |= match placement {
            Ok((node, delayed)) => {
                *load.entry(node.clone()).or_default() += 1;
                bind_pod(state, &pod, &node, &delayed)
            }
            Err(reason) => mark_unschedulable(state, &pod, &reason),
        };
    }
    changed
}

fn bind_pod(state: &mut State, pod: &Value, node: &str, delayed_claims: &[Arc<Value>]) -> bool {
    for claim in delayed_claims {
        let mut marked = (**claim).clone();
        marked["metadata"]["annotations"][SELECTED_NODE] = json!(node);
        state.save_if_changed(&keys::pvcs(), claim, marked);
    }
    let now = state.now_text();
    let mut updated = pod.clone();
    updated["spec"]["nodeName"] = json!(node);
    updated["status"]["conditions"] = json!([{ "type": "PodScheduled", "status": "True", "lastTransitionTime": now }]);
    state.save(&keys::pods(), updated);
    let message = format!("Successfully assigned {}/{} to {node}", namespace_of(pod), name_of(pod));
    state.record_event(pod, false, "Scheduled", &message, "default-scheduler");
    true
}

fn mark_unschedulable(state: &mut State, pod: &Value, reason: &str) -> bool {
    let mut updated = pod.clone();
    updated["status"]["conditions"] = json!([{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason,
    }]);
    if state.save_if_changed(&keys::pods(), pod, updated) {
        state.record_event(pod, true, "FailedScheduling", reason, "default-scheduler");
        return true;
    }
    false
}

/// Kubelet: a scheduled pod whose claims are bound becomes Running and Ready after
/// `pod_ready_after`, counted from scheduling.
pub fn run_pods(state: &mut State) -> bool {
    let mut changed = false;
    let ready_after = state.config.pod_ready_after;
    for pod in state.all(&keys::pods()) {
        if is_deleting(&pod) || pod["spec"]["nodeName"].is_null() || pod["status"]["phase"] != "Pending" {
            continue;
        }
        if !claims_bound(state, &pod) {
            continue;
        }
        let scheduled = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .and_then(parse_time)
            .unwrap_or_else(|| state.now());
        let ready_at = after(scheduled, ready_after);
        if state.now() < ready_at {
            state.wake_at(ready_at);
            continue;
        }
        let running = running_pod(state, &pod, &format_time(ready_at));
        // etcd reads its data directory when it starts.
        crate::sim::exec::etcd::start(state, &running);
        state.save(&keys::pods(), running);
        changed = true;
    }
    changed
}

fn claims_bound(state: &State, pod: &Value) -> bool {
    pod_claims(pod).iter().all(|c| {
        state.get(&keys::pvcs(), namespace_of(pod), c).is_some_and(|claim| claim["status"]["phase"] == "Bound")
    })
}

/// A running, ready status for each container of `pod`, started at `since`.
fn ready_container_statuses(pod: &Value, since: &Value) -> Vec<Value> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "ready": true, "started": true, "restartCount": 0,
                "state": { "running": { "startedAt": since } },
            })
        })
        .collect()
}

fn running_pod(state: &mut State, pod: &Value, at: &str) -> Value {
    let mut running = pod.clone();
    let statuses = ready_container_statuses(pod, &json!(at));
    let condition = |kind: &str| json!({ "type": kind, "status": "True", "lastTransitionTime": at });
    let octet = state.rng.next_u64() % 250 + 2;
    running["status"] = json!({
        "phase": "Running",
        "startTime": at,
        "podIP": format!("10.0.0.{octet}"),
        "hostIP": "10.0.0.1",
        "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
        "containerStatuses": statuses,
    });
    running
}
