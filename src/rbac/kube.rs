//! What each step kind calls on the Kubernetes API, mirroring `steps::kube` call for
//! call (a change there must be made here too; `tests/rbac.rs` fails otherwise), and
//! what `dr plan` lists before anything runs.
//!
//! Waits use watches on one object (`await_condition`: list and watch with a
//! `metadata.name` field selector) or on labelled pods; both are granted without
//! `resourceNames`, as the plan's own lists of those kinds are.

use super::{Need, Options};
use crate::graph::{Step, StepGraph};
use crate::steps::{Action, ObjectRef, WaitCondition, WorkloadKind, WorkloadRef};

/// Only happens when a step adopts what an interrupted run of it already created.
pub const WHEN_ADOPTING: &str = "when adopting what an interrupted run created";
/// Only happens when a resize's fallback runs (the provider refused to grow in place).
pub const WHEN_FALLBACK: &str = "when the resize's fallback runs";

/// Every call of the plan: its reads (always), and its steps' calls unless read-only.
pub fn needs(graph: &StepGraph, options: &Options<'_>) -> Vec<Need> {
    let mut needs = plan_reads(graph);
    if !options.read_only {
        for (index, step) in graph.steps() {
            if let Some(action) = step.action()
                && !step.cluster.is_empty()
            {
                let waits_for_ready =
                    matches!(action, Action::Wait(w) if matches!(w.condition, WaitCondition::PodsReady { .. }));
                let restored = if waits_for_ready { restored_claims_before(graph, index) } else { Vec::new() };
                let stopped = workloads_stopped_before(graph, index);
                let mut calls =
                    Calls { step, facts: options.facts, only_when: None, restored, stopped, needs: &mut needs };
                if step.fallback_for.is_some() {
                    calls.only_when = Some(WHEN_FALLBACK);
                }
                calls.action(action);
                // A fallback that did not run has nothing to undo: its undo is as conditional.
                if options.rollback {
                    calls.undo(action);
                }
            }
        }
    }
    needs.sort();
    needs.dedup();
    needs
}

/// The lists `dr plan` (and the plan phase of `dr apply`) sends: one per kind and namespace.
fn plan_reads(graph: &StepGraph) -> Vec<Need> {
    crate::state::needs_of(graph)
        .into_iter()
        .map(|list| {
            let resource = crate::steps::manifests::api_resource(&list.api_version, &list.kind);
            Need {
                cluster: list.cluster,
                namespace: list.namespace,
                group: resource.group,
                resource: resource.plural,
                verb: "list",
                name: None,
                step: "(plan)".into(),
                only_when: None,
            }
        })
        .collect()
}

const CORE: &str = "";
const APPS: &str = "apps";
const SNAPSHOTS: &str = "snapshot.storage.k8s.io";

/// The calls of one step, collected.
struct Calls<'a, 'n> {
    step: &'a Step,
    facts: Option<&'a dyn crate::cluster::ClusterFacts>,
    only_when: Option<&'static str>,
    /// Claims restored or bound by the steps of this step's entry before it.
    restored: Vec<String>,
    /// Workloads stopped by steps before this one (and not started again), in its place.
    stopped: Vec<WorkloadRef>,
    needs: &'n mut Vec<Need>,
}

impl Calls<'_, '_> {
    /// Calls in the step's namespace.
    fn here(&mut self, group: &str, resource: &str, verbs: &[&'static str], name: Option<&str>) {
        let namespace = Some(self.step.namespace.clone());
        self.push(namespace, group, resource, verbs, name);
    }

    /// Calls on a cluster-scoped kind.
    fn cluster_wide(&mut self, group: &str, resource: &str, verbs: &[&'static str], name: Option<&str>) {
        self.push(None, group, resource, verbs, name);
    }

    fn push(
        &mut self,
        namespace: Option<String>,
        group: &str,
        resource: &str,
        verbs: &[&'static str],
        name: Option<&str>,
    ) {
        for verb in verbs {
            self.needs.push(Need {
                cluster: self.step.cluster.clone(),
                namespace: namespace.clone(),
                group: group.into(),
                resource: resource.into(),
                verb,
                name: name.map(String::from),
                step: self.step.id.clone(),
                only_when: self.only_when,
            });
        }
    }

    /// Calls made only when adopting (a create answered AlreadyExists).
    fn adopting(&mut self, calls: impl FnOnce(&mut Self)) {
        let before = self.only_when;
        self.only_when = Some(before.unwrap_or(WHEN_ADOPTING));
        calls(self);
        self.only_when = before;
    }

    /// The PV bound to `claim`, by the facts the graph was expanded with.
    fn volume_of(&self, claim: &str) -> Option<String> {
        let facts = self.facts?;
        facts.volume_of_claim(&self.step.cluster, &self.step.namespace, claim).map(|v| v.name)
    }

    fn action(&mut self, action: &Action) {
        match action {
            Action::Scale(p) => self.scale(&p.workload),
            Action::ScaleBack(p) => self.scale(&p.workload),
            Action::SnapshotPvc(_) => {
                // The snapshot's name holds the run id: not known before the run.
                self.here(SNAPSHOTS, "volumesnapshots", &["create"], None);
                self.adopting(|c| c.here(SNAPSHOTS, "volumesnapshots", &["get"], None));
            }
            Action::Wait(p) => self.wait(&p.condition),
            Action::SetReclaimPolicy(p) => {
                self.here(CORE, "persistentvolumeclaims", &["get"], Some(&p.claim));
                let pv = self.volume_of(&p.claim);
                self.cluster_wide(CORE, "persistentvolumes", &["get", "patch"], pv.as_deref());
            }
            Action::DeletePvc(p) => {
                let claim = p.claim.value.as_str();
                self.here(CORE, "persistentvolumeclaims", &["get", "delete"], Some(claim));
                self.deletion_checks(claim, p.accept_data_loss);
                // Waiting until it is gone: a watch on the claim.
                self.here(CORE, "persistentvolumeclaims", &["list", "watch"], None);
            }
            Action::RestorePvc(p) => {
                let claim = p.claim.value.as_str();
                self.here(CORE, "persistentvolumeclaims", &["get"], Some(claim));
                self.here(SNAPSHOTS, "volumesnapshots", &["get"], None);
                self.here(CORE, "persistentvolumeclaims", &["create"], None);
            }
            Action::BindStaticPv(p) => {
                self.cluster_wide(CORE, "persistentvolumes", &["create"], None);
                self.here(CORE, "persistentvolumeclaims", &["create"], None);
                self.adopting(|c| {
                    c.cluster_wide(CORE, "persistentvolumes", &["get"], Some(&p.pv_name));
                    c.here(CORE, "persistentvolumeclaims", &["get"], Some(&p.claim));
                });
            }
            Action::ResizePvc(p) => {
                self.here(CORE, "persistentvolumeclaims", &["patch"], Some(&p.claim.value));
                self.here(CORE, "persistentvolumeclaims", &["list", "watch"], None);
            }
            Action::SaveObject(p) => self.object(&p.object, &["get"]),
            Action::DeleteObject(p) => self.object(&p.object, &["delete"]),
            Action::RestoreObject(p) => self.object(&p.object, &["create"]),
            Action::SetWorkloadClaim(p) => {
                let (group, resource) = workload_resource(&p.workload);
                self.here(group, resource, &["get", "patch"], Some(&p.workload.name));
            }
            Action::RestartPod(p) => {
                self.here(CORE, "pods", &["get", "delete"], Some(&p.pod));
                self.here(CORE, "pods", &["list", "watch"], None);
            }
            Action::Exec(p) => self.exec(p),
            // Read what the pause replaces (saved for the resume), then a merge patch.
            Action::PauseReconciler(p) | Action::ResumeReconciler(p) => self.object(&p.object, &["get", "patch"]),
            // Cloud steps: see `iam`.
            Action::EbsSnapshot(_)
            | Action::EbsCopySnapshot(_)
            | Action::EbsCreateVolume(_)
            | Action::EfsDeleteReplication(_)
            | Action::EfsCreateReplication(_)
            | Action::EfsSetOverwriteProtection(_) => {}
        }
    }

    /// What `dr rollback` calls to compensate the step (`steps::kube::undo`).
    fn undo(&mut self, action: &Action) {
        match action {
            // Back to the recorded replicas, then wait until Ready.
            Action::Scale(p) => {
                self.scale(&p.workload);
                let (group, resource) = workload_resource(&p.workload);
                self.here(group, resource, &["list", "watch"], None);
            }
            // Back to zero, then wait until its pods are gone.
            Action::ScaleBack(p) => {
                self.scale(&p.workload);
                self.wait(&WaitCondition::PodsGone { workload: p.workload.clone() });
            }
            Action::SnapshotPvc(_) => self.here(SNAPSHOTS, "volumesnapshots", &["get", "delete"], None),
            Action::SetReclaimPolicy(p) => {
                let pv = self.volume_of(&p.claim);
                self.cluster_wide(CORE, "persistentvolumes", &["patch"], pv.as_deref());
            }
            // The original claim recreated and bound to its retained volume again.
            Action::DeletePvc(p) => {
                let claim = p.claim.value.as_str();
                self.here(CORE, "persistentvolumeclaims", &["get"], Some(claim));
                self.here(CORE, "persistentvolumeclaims", &["create", "list", "watch"], None);
                let pv = self.volume_of(claim);
                self.cluster_wide(CORE, "persistentvolumes", &["get", "patch"], pv.as_deref());
            }
            Action::RestorePvc(p) => self.delete_own_claim(&p.claim.value),
            Action::BindStaticPv(p) => {
                self.delete_own_claim(&p.claim);
                self.cluster_wide(CORE, "persistentvolumes", &["get", "delete"], Some(&p.pv_name));
            }
            Action::SetWorkloadClaim(p) => {
                let (group, resource) = workload_resource(&p.workload);
                self.here(group, resource, &["get", "patch"], Some(&p.workload.name));
            }
            Action::DeleteObject(p) => self.object(&p.object, &["create"]),
            Action::Exec(p) if p.undo.is_some() => self.exec(p),
            // Resumed with the saved values; a resume undone pauses again.
            Action::PauseReconciler(p) | Action::ResumeReconciler(p) => self.object(&p.object, &["patch"]),
            _ => {}
        }
    }

    /// A claim the run created, deleted and waited for until gone.
    fn delete_own_claim(&mut self, claim: &str) {
        self.here(CORE, "persistentvolumeclaims", &["get", "delete"], Some(claim));
        self.here(CORE, "persistentvolumeclaims", &["list", "watch"], None);
    }

    fn scale_read(&mut self, w: &WorkloadRef) {
        let (group, resource) = workload_resource(w);
        self.here(group, &format!("{resource}/scale"), &["get"], Some(&w.name));
    }

    /// `scale` and `scaleBack`: read and patch the scale subresource.
    fn scale(&mut self, w: &WorkloadRef) {
        let (group, resource) = workload_resource(w);
        self.here(group, &format!("{resource}/scale"), &["get", "patch"], Some(&w.name));
    }

    /// The interlock before deleting a claim: no pod uses it, a ready snapshot of this
    /// run exists, its volume is not reclaimed with Delete.
    fn deletion_checks(&mut self, claim: &str, accept_data_loss: bool) {
        // Has another controller scaled a stopped workload that uses the claim back up?
        for workload in std::mem::take(&mut self.stopped) {
            let (group, resource) = workload_resource(&workload);
            self.here(group, resource, &["get"], Some(&workload.name));
            self.scale_read(&workload);
            self.stopped.push(workload);
        }
        self.here(CORE, "pods", &["list"], None);
        if accept_data_loss {
            return;
        }
        // The snapshot a step before took is read by name (a run-specific name, so without
        // `resourceNames`); without such a step, the run's snapshots are listed.
        self.here(SNAPSHOTS, "volumesnapshots", &["get", "list"], None);
        let pv = self.volume_of(claim);
        self.cluster_wide(CORE, "persistentvolumes", &["get"], pv.as_deref());
    }

    fn wait(&mut self, condition: &WaitCondition) {
        match condition {
            WaitCondition::SnapshotReady { .. } => self.here(SNAPSHOTS, "volumesnapshots", &["list", "watch"], None),
            WaitCondition::PodsGone { workload } => {
                let (group, resource) = workload_resource(workload);
                self.here(group, resource, &["get"], Some(&workload.name));
                self.here(CORE, "pods", &["list", "watch"], None);
            }
            WaitCondition::PodsReady { workload } => {
                let (group, resource) = workload_resource(workload);
                self.here(group, resource, &["list", "watch"], None);
                self.restored_claims_checked();
            }
            WaitCondition::PvcBound { .. } => self.here(CORE, "persistentvolumeclaims", &["list", "watch"], None),
            WaitCondition::ClaimsSafeToDelete { claims } => {
                for claim in claims {
                    self.here(CORE, "persistentvolumeclaims", &["get"], Some(claim));
                    self.deletion_checks(claim, false);
                }
            }
            WaitCondition::EfsReplicationDeleted { .. }
            | WaitCondition::EfsReplicationSynced { .. }
            | WaitCondition::EbsSnapshotCompleted { .. } => {}
        }
    }

    /// A `podsReady` wait reads back each claim its entry restored or bound.
    fn restored_claims_checked(&mut self) {
        for claim in std::mem::take(&mut self.restored) {
            self.here(CORE, "persistentvolumeclaims", &["get"], Some(&claim));
        }
    }

    fn object(&mut self, object: &ObjectRef, verbs: &[&'static str]) {
        let resource = crate::steps::manifests::api_resource(&object.api_version, &object.kind);
        match &object.namespace {
            Some(ns) => self.push(Some(ns.clone()), &resource.group, &resource.plural, verbs, Some(&object.name)),
            None => self.cluster_wide(&resource.group, &resource.plural, verbs, Some(&object.name)),
        }
    }

    /// Choosing the pod (by name, StatefulSet ordinal, or Ready pods by label) and
    /// running the command (and its guard) through `pods/exec`.
    fn exec(&mut self, p: &crate::steps::ExecParams) {
        match (exec_pod(p), &p.workload) {
            (Some(pod), _) => self.here(CORE, "pods", &["get"], Some(&pod)),
            (None, Some(w)) => {
                let (group, resource) = workload_resource(w);
                self.here(group, resource, &["get"], Some(&w.name));
                self.here(CORE, "pods", &["list"], None);
            }
            (None, None) => self.here(CORE, "pods", &["list"], None),
        }
        // Kubernetes authorises an exec over WebSocket as `create` on `pods/exec` (1.30+);
        // the request names the pod, so a known pod is granted by name.
        self.here(CORE, "pods/exec", &["create"], exec_pod(p).as_deref());
    }
}

/// API group and plural of a workload kind.
fn workload_resource(w: &WorkloadRef) -> (&'static str, &'static str) {
    match w.kind {
        WorkloadKind::StatefulSet => (APPS, "statefulsets"),
        WorkloadKind::Deployment => (APPS, "deployments"),
    }
}

/// The pod an exec step runs in, when it is known by name before the run: named, or a
/// StatefulSet's pod by ordinal (a Deployment's or a selector's are chosen when it runs).
fn exec_pod(p: &crate::steps::ExecParams) -> Option<String> {
    match (&p.workload, &p.selector) {
        (Some(w), _) if w.kind == WorkloadKind::StatefulSet => Some(format!("{}-{}", w.name, p.ordinal.unwrap_or(0))),
        (Some(_), _) | (None, Some(_)) => None,
        (None, None) => Some(p.pod.clone()),
    }
}

/// The claims the `restorePvc` and `bindStaticPv` steps of `index`'s entry (and
/// namespace) before it create: a `podsReady` wait reads each back.
/// What `steps::kube::workloads::scaled_back_up_by_another` reads: the workloads an
/// earlier step scaled to 0 in this step's place, unless a later `scaleBack` started them.
fn workloads_stopped_before(graph: &StepGraph, index: petgraph::graph::NodeIndex) -> Vec<WorkloadRef> {
    let step = graph.step(index);
    let ancestors: Vec<&Step> = graph
        .ancestors(index)
        .into_iter()
        .map(|a| graph.step(a))
        .filter(|a| a.namespace == step.namespace && a.cluster == step.cluster)
        .collect();
    let restarted: Vec<&WorkloadRef> = ancestors
        .iter()
        .filter_map(|a| match a.action() {
            Some(Action::ScaleBack(p)) => Some(&p.workload),
            _ => None,
        })
        .collect();
    let mut stopped: Vec<WorkloadRef> = ancestors
        .iter()
        .filter_map(|a| match a.action() {
            Some(Action::Scale(p)) if p.replicas == 0 && !restarted.contains(&&p.workload) => Some(p.workload.clone()),
            _ => None,
        })
        .collect();
    stopped.sort_by_key(|w| w.to_string());
    stopped.dedup();
    stopped
}

fn restored_claims_before(graph: &StepGraph, index: petgraph::graph::NodeIndex) -> Vec<String> {
    let step = graph.step(index);
    graph
        .ancestors(index)
        .into_iter()
        .map(|a| graph.step(a))
        .filter(|a| a.entry == step.entry && a.namespace == step.namespace && a.cluster == step.cluster)
        .filter_map(|a| match a.action() {
            Some(Action::RestorePvc(p)) => Some(p.claim.value.clone()),
            Some(Action::BindStaticPv(p)) => Some(p.claim.clone()),
            _ => None,
        })
        .collect()
}
