//! Safety checks on the expanded graph: the orderings that, done wrong, lose data.

use std::collections::{BTreeMap, HashMap};

use petgraph::graph::NodeIndex;

use super::StepGraph;
use super::build::Ctx;
use crate::steps::manifests::expand_name;
use crate::steps::*;

pub(super) fn check(ctx: &mut Ctx<'_>, graph: &StepGraph) {
    let mut ready_waits = HashMap::new();
    for (index, step) in graph.steps() {
        let Some(action) = step.action() else {
            continue;
        };
        match action {
            Action::DeletePvc(p) => {
                check_snapshot_before_delete(ctx, graph, index, p, &mut ready_waits);
                check_quiesced_before_delete(ctx, graph, index, p);
                check_retained_before_delete(ctx, graph, index, p);
            }
            Action::RestorePvc(p) => {
                check_restore_size(ctx, graph, index, p);
                check_restore_source(ctx, graph, index, p);
            }
            Action::ResizePvc(p) => check_resize(ctx, graph, index, p),
            Action::BindStaticPv(p) => {
                check_zone_affinity(ctx, p);
                check_volume_source(ctx, graph, p);
            }
            Action::Exec(p) => super::exec_checks::check(ctx, step, p),
            Action::ScaleBack(p) => check_scale_recorded(ctx, graph, index, p),
            Action::DeleteObject(p) | Action::RestoreObject(p) => check_saved(ctx, graph, index, action, p),
            Action::Wait(WaitParams { condition: WaitCondition::SnapshotReady { claim }, .. }) => {
                let taken = graph.ancestors(index).into_iter().any(|a| snapshot_of(graph, a, index, &claim.value));
                if !taken {
                    let message = format!(
                        "step `{}` waits for a snapshot of `{}` that no earlier step takes",
                        step.id, claim.value
                    );
                    ctx.error(
                        "drplan::safety::no_snapshot_step",
                        claim.span,
                        message,
                        "no snapshotPvc of this claim before it",
                    )
                    .help = Some("add a `snapshotPvc` step for this claim to the step's `after:`".into());
                }
            }
            _ => {}
        }
    }
    check_quiesce_windows(ctx, graph);
    super::reconciler_checks::check(ctx, graph);
}

/// One entry's stop-and-restart of a workload: its scale to 0 and its scale back.
struct Window {
    down: NodeIndex,
    back: NodeIndex,
}

/// Two entries that each stop and restart the same workload must run one after the
/// other: otherwise one's scale-back starts pods while the other is still deleting and
/// restoring claims, and the StatefulSet controller recreates a deleted claim empty.
fn check_quiesce_windows(ctx: &mut Ctx<'_>, graph: &StepGraph) {
    let mut downs = BTreeMap::new();
    let mut backs = BTreeMap::new();
    for (index, step) in graph.steps() {
        match step.action() {
            Some(Action::Scale(p)) if p.replicas == 0 => {
                downs.insert((&step.cluster, &step.namespace, &p.workload, &step.entry), index);
            }
            Some(Action::ScaleBack(p)) => {
                backs.insert((&step.cluster, &step.namespace, &p.workload, &step.entry), index);
            }
            _ => {}
        }
    }
    let mut by_workload: BTreeMap<_, Vec<Window>> = BTreeMap::new();
    for ((cluster, namespace, workload, entry), down) in downs {
        if let Some(&back) = backs.get(&(cluster, namespace, workload, entry)) {
            by_workload.entry((cluster, namespace, workload)).or_default().push(Window { down, back });
        }
    }
    for ((_, _, workload), windows) in by_workload {
        // Each window's ancestors once, as a bit set: comparing every pair stays cheap.
        let before: Vec<Vec<u64>> = windows.iter().map(|w| ancestor_bits(graph, w.down)).collect();
        let is_before = |set: &[u64], n: NodeIndex| set[n.index() / 64] & (1 << (n.index() % 64)) != 0;
        for (i, first) in windows.iter().enumerate() {
            for (j, second) in windows.iter().enumerate().skip(i + 1) {
                let ordered = is_before(&before[j], first.back) || is_before(&before[i], second.back);
                if !ordered {
                    report_overlap(ctx, graph, workload, first, second);
                }
            }
        }
    }
}

fn ancestor_bits(graph: &StepGraph, index: NodeIndex) -> Vec<u64> {
    let mut bits = vec![0u64; graph.len().div_ceil(64)];
    for a in graph.ancestors(index) {
        bits[a.index() / 64] |= 1 << (a.index() % 64);
    }
    bits
}

fn report_overlap(ctx: &mut Ctx<'_>, graph: &StepGraph, workload: &WorkloadRef, first: &Window, second: &Window) {
    let (a, b) = (graph.step(first.down), graph.step(second.down));
    let message = format!(
        "entries `{}` and `{}` both stop and restart {workload} and may overlap: one would start its pods \
         while the other is restoring their claims",
        a.entry, b.entry
    );
    ctx.error("drplan::safety::overlapping_quiesce", b.origin, message, "not ordered against the other").help =
        Some(format!("add `after: [{}]` to `{}`, or restore the claims in one entry", a.entry, b.entry));
}

/// Whether `candidate` snapshots `claim` in the same cluster and namespace as `at`.
fn snapshot_of(graph: &StepGraph, candidate: NodeIndex, at: NodeIndex, claim: &str) -> bool {
    let (c, here) = (graph.step(candidate), graph.step(at));
    c.cluster == here.cluster
        && c.namespace == here.namespace
        && matches!(c.action(), Some(Action::SnapshotPvc(s)) if s.claim.value == claim)
}

/// A PVC may only be deleted after a snapshot of it, taken in this run, is ready.
///
/// `ready_waits` remembers, per wait step, whether a snapshot of its claim precedes it,
/// so a long chain of deletions does not walk the same ancestors again for every wait.
fn check_snapshot_before_delete(
    ctx: &mut Ctx<'_>,
    graph: &StepGraph,
    index: NodeIndex,
    p: &DeletePvcParams,
    ready_waits: &mut HashMap<NodeIndex, bool>,
) {
    if p.accept_data_loss || ctx.loaded.plan.accept_data_loss {
        return;
    }
    let here = graph.step(index);
    let ancestors = graph.ancestors(index);
    let ready_wait = ancestors.iter().any(|&a| {
        let s = graph.step(a);
        let waits_ready = s.cluster == here.cluster
            && s.namespace == here.namespace
            && matches!(s.action(), Some(Action::Wait(WaitParams { condition: WaitCondition::SnapshotReady { claim }, .. })) if claim.value == p.claim.value);
        waits_ready
            && *ready_waits
                .entry(a)
                .or_insert_with(|| graph.ancestors(a).into_iter().any(|b| snapshot_of(graph, b, index, &p.claim.value)))
    });
    if !ready_wait {
        let message = format!(
            "step `{}` deletes PVC `{}` without a ready snapshot of it taken earlier in this run",
            here.id, p.claim.value
        );
        ctx.error("drplan::safety::delete_without_snapshot", p.claim.span, message, "data in this claim would be lost")
            .help = Some(
            "order the deletion after a `snapshotPvc` of the claim and a `wait` for `snapshotReady`, or set `acceptDataLoss: true` on the step if losing the data is intended".into(),
        );
    }
}

/// Workloads that use a claim: from cluster facts, else StatefulSets named in the plan
/// whose claim naming (`<template>-<sts>-<ordinal>`) matches.
fn claim_users(ctx: &Ctx<'_>, graph: &StepGraph, index: NodeIndex, claim: &str) -> Vec<WorkloadRef> {
    let here = graph.step(index);
    if let Some(facts) = ctx.facts
        && facts.claim(&here.cluster, &here.namespace, claim).is_some()
    {
        return facts.claim_users(&here.cluster, &here.namespace, claim);
    }
    let mut users: Vec<WorkloadRef> = graph
        .steps()
        .filter(|(_, s)| s.cluster == here.cluster && s.namespace == here.namespace)
        .filter_map(|(_, s)| match s.action() {
            Some(Action::Scale(p)) if p.workload.kind == WorkloadKind::StatefulSet => Some(p.workload.clone()),
            _ => None,
        })
        .filter(|w| {
            claim.rsplit_once('-').is_some_and(|(prefix, ordinal)| {
                ordinal.parse::<u32>().is_ok() && prefix.ends_with(&format!("-{}", w.name))
            })
        })
        .collect();
    users.sort();
    users.dedup();
    users
}

/// A PVC may only be deleted after every workload using it was scaled to zero.
fn check_quiesced_before_delete(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, p: &DeletePvcParams) {
    let here = graph.step(index);
    let ancestors = graph.ancestors(index);
    for user in claim_users(ctx, graph, index, &p.claim.value) {
        let quiesced = ancestors.iter().any(|&a| {
            let s = graph.step(a);
            s.cluster == here.cluster
                && s.namespace == here.namespace
                && matches!(s.action(), Some(Action::Scale(sp)) if sp.workload == user && sp.replicas == 0)
        });
        if !quiesced {
            let message = format!(
                "step `{}` deletes PVC `{}` before {user}, which uses it, is scaled to zero",
                here.id, p.claim.value
            );
            ctx.error("drplan::safety::delete_while_in_use", p.claim.span, message, "claim still in use").help = Some(
                format!("add a step scaling {user} to 0 to this step's `after:` (and wait for its pods to be gone)"),
            );
        }
    }
}

/// Source size of a claim: from facts, or the claim template of its StatefulSet.
fn source_size(ctx: &Ctx<'_>, cluster: &str, namespace: &str, claim: &str) -> Option<crate::lang::Quantity> {
    let facts = ctx.facts?;
    if let Some(size) = facts.claim(cluster, namespace, claim).and_then(|c| c.size) {
        return Some(size);
    }
    facts.claim_users(cluster, namespace, claim).iter().find_map(|w| {
        let workload = facts.workload(cluster, namespace, w)?;
        workload.claim_templates.into_iter().find(|t| claim.starts_with(&format!("{}-{}-", t.name, w.name)))?.size
    })
}

fn check_restore_size(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, p: &RestorePvcParams) {
    let here = graph.step(index);
    let (Some(size), Some(source)) = (&p.size, source_size(ctx, &here.cluster, &here.namespace, &p.claim.value)) else {
        return;
    };
    if size.value < source {
        let message = format!(
            "step `{}` restores PVC `{}` at {}, smaller than its source ({source}); a volume cannot be restored smaller than its snapshot",
            here.id, p.claim.value, size.value
        );
        ctx.error("drplan::safety::restore_smaller", size.span, message, "smaller than the source").help =
            Some(format!("use at least {source}"));
    }
}

fn check_resize(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, p: &ResizePvcParams) {
    let here = graph.step(index);
    let Some(current) = source_size(ctx, &here.cluster, &here.namespace, &p.claim.value) else {
        return;
    };
    if p.size.value < current {
        let message = format!(
            "step `{}` would shrink PVC `{}` from {current} to {}; claims can only grow",
            here.id, p.claim.value, p.size.value
        );
        ctx.error("drplan::safety::resize_smaller", p.size.span, message, "smaller than the current size");
    }
}

/// A static PV for a zonal disk must pin pods to the disk's zone.
fn check_zone_affinity(ctx: &mut Ctx<'_>, p: &StaticPvParams) {
    if p.volume.is_zonal() && p.volume.zone.as_deref().is_none_or(str::is_empty) {
        let message = format!(
            "static PV `{}` for a zonal `{}` disk has no `zone`: pods could be scheduled where the disk cannot attach",
            p.pv_name, p.volume.driver
        );
        ctx.error("drplan::safety::missing_zone", p.volume.span, message, "no zone for a zonal disk").help =
            Some("add `zone:` (written as the PV's node affinity), or `zonal: false` for a zone-redundant disk".into());
    }
}

/// A static PV names its disk once: by `volumeHandle`, or as the volume an
/// `ebsCreateVolume` step creates, in the zone that step creates it in.
fn check_volume_source(ctx: &mut Ctx<'_>, graph: &StepGraph, p: &StaticPvParams) {
    let v = &p.volume.value;
    let Some(from) = &v.volume_from_step else {
        if v.volume_handle.is_empty() {
            let message = format!("static PV `{}` names no disk", p.pv_name);
            ctx.error("drplan::plan::missing_volume", p.volume.span, message, "no volumeHandle").help = Some(
                "add `volumeHandle:`, or `volumeFromStep:` naming the `ebsCreateVolume` step that creates it".into(),
            );
        }
        return;
    };
    if !v.volume_handle.is_empty() {
        let message = format!("static PV `{}` names its disk twice (volumeHandle and volumeFromStep)", p.pv_name);
        ctx.error("drplan::plan::ambiguous_volume", p.volume.span, message, "keep one of the two");
        return;
    }
    // An unknown step id is reported where dependencies are resolved.
    let Some(index) = graph.index_of(from) else { return };
    match graph.step(index).action() {
        Some(Action::EbsCreateVolume(create)) => {
            if v.zone.as_deref().is_some_and(|zone| zone != create.availability_zone) {
                let message = format!(
                    "static PV `{}` is pinned to zone {} but step `{from}` creates its volume in {}: pods could never attach it",
                    p.pv_name,
                    v.zone.as_deref().unwrap_or_default(),
                    create.availability_zone
                );
                ctx.error("drplan::safety::zone_mismatch", p.volume.span, message, "not the volume's zone");
            }
        }
        _ => {
            let message = format!("`volumeFromStep` names step `{from}`, which creates no EBS volume");
            ctx.error("drplan::plan::not_a_volume_step", p.volume.span, message, "not an ebsCreateVolume step");
        }
    }
}

/// `scaleBack` restores replicas recorded by an earlier `scale` of the same workload.
fn check_scale_recorded(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, p: &WorkloadParams) {
    let here = graph.step(index);
    let recorded = graph.ancestors(index).into_iter().any(|a| {
        let s = graph.step(a);
        s.cluster == here.cluster
            && s.namespace == here.namespace
            && matches!(s.action(), Some(Action::Scale(sp)) if sp.workload == p.workload)
    });
    if !recorded {
        let message = format!(
            "step `{}` scales {} back, but no earlier step scaled it and recorded its replicas",
            here.id, p.workload
        );
        ctx.error("drplan::safety::scale_back_unrecorded", here.origin, message, "nothing to scale back to");
    }
}

/// Objects are deleted and restored only after they were saved in this run.
fn check_saved(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, action: &Action, p: &ObjectParams) {
    let here = graph.step(index);
    let saved = graph.ancestors(index).into_iter().any(|a| {
        let s = graph.step(a);
        s.cluster == here.cluster && matches!(s.action(), Some(Action::SaveObject(sp)) if sp.object == p.object)
    });
    if !saved {
        let verb = if matches!(action, Action::DeleteObject(_)) { "deletes" } else { "restores" };
        let message = format!("step `{}` {verb} {} without saving it earlier in this run", here.id, p.object);
        ctx.error("drplan::safety::object_not_saved", here.origin, message, "no saveObject before this step").help =
            Some("add a `saveObject` step for the same object to this step's `after:`".into());
    }
}

/// A claim is restored from a snapshot this run takes earlier, or from one that exists
/// and is ready in the cluster; a snapshot named after the run (`{run}`) can only be
/// one this run takes.
fn check_restore_source(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, p: &RestorePvcParams) {
    let here = graph.step(index);
    let wanted = expand_name(&p.snapshot, &p.claim.value, RUN_TOKEN);
    let taken_earlier = graph.ancestors(index).into_iter().any(|a| {
        let s = graph.step(a);
        s.cluster == here.cluster
            && s.namespace == here.namespace
            && matches!(s.action(), Some(Action::SnapshotPvc(sp)) if expand_name(&sp.snapshot_name, &sp.claim.value, RUN_TOKEN) == wanted)
    });
    if taken_earlier {
        return;
    }
    let of_this_run = p.snapshot.contains("{run}");
    let live = match ctx.facts {
        Some(facts) => facts.snapshot(&here.cluster, &here.namespace, &wanted),
        None if !of_this_run => return, // reported as a check skipped without cluster facts
        None => None,
    };
    let problem = match &live {
        Some(snapshot) if snapshot.ready_to_use => return,
        Some(_) => "exists but is not readyToUse",
        None if of_this_run => "is named after this run, but no earlier step of this run takes it",
        None => "is not taken by any earlier step of this plan and does not exist in the cluster",
    };
    let message = format!(
        "step `{}` restores PVC `{}` from VolumeSnapshot `{}`, which {problem}",
        here.id, p.claim.value, p.snapshot
    );
    ctx.error("drplan::safety::restore_source_missing", here.origin, message, "nothing to restore from").help = Some(
        "take the snapshot earlier in the plan (`snapshotPvc` and a `wait` for `snapshotReady` in this step's `after:`), or name a VolumeSnapshot that exists and is ready".into(),
    );
}

/// Stands for the run id when comparing snapshot names before a run exists.
const RUN_TOKEN: &str = "\u{0}run";

/// A claim whose volume reclaims with `Delete` is only deleted after an earlier step
/// set the volume to `Retain` (or when the plan accepts losing the data): otherwise the
/// disk goes with the claim and nothing can bring it back.
fn check_retained_before_delete(ctx: &mut Ctx<'_>, graph: &StepGraph, index: NodeIndex, p: &DeletePvcParams) {
    if p.accept_data_loss || ctx.loaded.plan.accept_data_loss {
        return;
    }
    let here = graph.step(index);
    let Some(facts) = ctx.facts else { return };
    let Some(volume) = facts.volume_of_claim(&here.cluster, &here.namespace, &p.claim.value) else { return };
    if volume.reclaim_policy != Some(ReclaimPolicy::Delete) {
        return;
    }
    let retained = graph.ancestors(index).into_iter().any(|a| {
        let s = graph.step(a);
        s.cluster == here.cluster
            && s.namespace == here.namespace
            && matches!(s.action(), Some(Action::SetReclaimPolicy(r)) if r.claim == p.claim.value && r.policy == ReclaimPolicy::Retain)
    });
    if !retained {
        let message = format!(
            "step `{}` deletes PVC `{}`, whose volume {} reclaims with Delete: the disk would be deleted with the claim",
            here.id, p.claim.value, volume.name
        );
        ctx.error("drplan::safety::delete_reclaims_volume", p.claim.span, message, "volume reclaimed with Delete")
            .help = Some(format!(
            "add a `setReclaimPolicy` step (claim: {}, policy: Retain) to this step's `after:`, or set `acceptDataLoss: true` if losing the disk is intended",
            p.claim.value
        ));
    }
}
