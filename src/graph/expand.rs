//! Expansion: each plan entry becomes a fragment of steps with internal dependencies.
//!
//! Intents encode the runbooks' hard-won order (quiesce, snapshot, wait for ready,
//! retain, delete, restore, resume) so a plan cannot get it wrong by accident.

use super::build::Ctx;
use super::{Step, StepKind};
use crate::lang::*;
use crate::steps::*;

/// The steps one entry expands into, with edges between them (indices into `steps`).
#[derive(Debug, Default)]
pub(super) struct Fragment {
    pub steps: Vec<Step>,
    pub edges: Vec<(usize, usize)>,
    /// Steps that wait for the entry's `after:` dependencies.
    pub entries: Vec<usize>,
    /// Steps that dependents of the entry wait for.
    pub exits: Vec<usize>,
    /// For `setAside` and `pauseReconciliation`: the step the `during` steps wait for.
    pub before_during: Option<usize>,
    /// For `setAside` and `pauseReconciliation`: the step that waits for the `during` steps.
    pub after_during: Option<usize>,
}

/// Where a fragment acts and where it was written.
struct Scope<'e> {
    entry: &'e StepEntry,
    cluster: String,
    namespace: String,
}

impl Fragment {
    fn push(&mut self, scope: &Scope<'_>, sub: &str, action: Action) -> usize {
        let id = if sub.is_empty() { scope.entry.id.value.clone() } else { format!("{}/{sub}", scope.entry.id.value) };
        self.steps.push(Step {
            id,
            kind: StepKind::Action(action),
            entry: scope.entry.id.value.clone(),
            origin: scope.entry.kind_span,
            cluster: scope.cluster.clone(),
            namespace: scope.namespace.clone(),
            fallback_for: None,
        });
        self.steps.len() - 1
    }

    /// Adds an intent as one node, for graphs drawn without cluster facts.
    fn push_unexpanded(&mut self, scope: &Scope<'_>, intent: &Intent) {
        self.steps.push(Step {
            id: scope.entry.id.value.clone(),
            kind: StepKind::Intent(intent.clone()),
            entry: scope.entry.id.value.clone(),
            origin: scope.entry.kind_span,
            cluster: scope.cluster.clone(),
            namespace: scope.namespace.clone(),
            fallback_for: None,
        });
    }

    /// Adds a step that runs after all of `deps`.
    fn then(&mut self, scope: &Scope<'_>, deps: &[usize], sub: &str, action: Action) -> usize {
        let index = self.push(scope, sub, action);
        self.edges.extend(deps.iter().map(|&d| (d, index)));
        index
    }

    /// Marks roots as entries and leaves as exits.
    fn seal(mut self) -> Fragment {
        let n = self.steps.len();
        let has_pred = |i: usize| self.edges.iter().any(|&(_, t)| t == i);
        let has_succ = |i: usize| self.edges.iter().any(|&(f, _)| f == i);
        self.entries = (0..n).filter(|&i| !has_pred(i)).collect();
        self.exits = (0..n).filter(|&i| !has_succ(i)).collect();
        self
    }
}

/// Expands one entry; `None` when it cannot be placed (already reported).
pub(super) fn expand_entry(ctx: &mut Ctx<'_>, entry: &StepEntry, intents_only: bool) -> Option<Fragment> {
    let (cluster_name, namespace) = match &entry.body {
        EntryBody::Action(a) => (a.cluster(), a.namespace()),
        EntryBody::Intent(i) => (i.cluster(), intent_namespace(i)),
    };
    let needs_cluster = match &entry.body {
        EntryBody::Action(a) => is_kubernetes_action(a),
        EntryBody::Intent(i) => !matches!(i, Intent::EfsFailover(_) | Intent::EfsFailback(_)),
    };
    let cluster = resolve_cluster(ctx, entry, cluster_name, needs_cluster)?;
    let default_ns = ctx.loaded.plan.cluster(&cluster).and_then(|c| c.namespace.clone());
    let namespace = namespace.map(str::to_string).or(default_ns).unwrap_or_else(|| "default".into());
    let scope = Scope { entry, cluster, namespace };
    let mut fragment = Fragment::default();
    match &entry.body {
        EntryBody::Action(Action::ResizePvc(p)) if p.on_rate_limit == RateLimitFallback::RestoreBigger => {
            resize_or_restore_bigger(ctx, &scope, p, &mut fragment)?
        }
        EntryBody::Action(action) => {
            fragment.push(&scope, "", action.clone());
        }
        EntryBody::Intent(intent) if intents_only => fragment.push_unexpanded(&scope, intent),
        EntryBody::Intent(Intent::RestoreClaims(p)) => restore_claims(ctx, &scope, p, &mut fragment)?,
        EntryBody::Intent(Intent::RebindVolume(p)) => rebind_volume(&scope, p, &mut fragment),
        EntryBody::Intent(Intent::EfsFailover(p)) => efs_failover(&scope, p, &mut fragment),
        EntryBody::Intent(Intent::EfsFailback(p)) => efs_failback(&scope, p, &mut fragment),
        EntryBody::Intent(Intent::EtcdRestore(p)) => etcd_restore(&scope, p, &mut fragment),
        EntryBody::Intent(Intent::SetAside(p)) => {
            let fragment = set_aside(&scope, p);
            return Some(fragment);
        }
        EntryBody::Intent(Intent::PauseReconciliation(p)) => return pause_reconciliation(ctx, &scope, p),
    }
    Some(fragment.seal())
}

fn intent_namespace(intent: &Intent) -> Option<&str> {
    match intent {
        Intent::RestoreClaims(p) => p.namespace.as_deref(),
        Intent::RebindVolume(p) => p.namespace.as_deref(),
        Intent::EtcdRestore(p) => p.namespace.as_deref(),
        Intent::SetAside(p) => p.object.namespace.as_deref(),
        Intent::PauseReconciliation(p) => pause_namespace(p),
        Intent::EfsFailover(_) | Intent::EfsFailback(_) => None,
    }
}

fn is_kubernetes_action(action: &Action) -> bool {
    !matches!(
        action,
        Action::EbsSnapshot(_)
            | Action::EbsCopySnapshot(_)
            | Action::EbsCreateVolume(_)
            | Action::EfsDeleteReplication(_)
            | Action::EfsCreateReplication(_)
            | Action::EfsSetOverwriteProtection(_)
    ) && !matches!(
        action,
        Action::Wait(WaitParams {
            condition: WaitCondition::EfsReplicationDeleted { .. }
                | WaitCondition::EfsReplicationSynced { .. }
                | WaitCondition::EbsSnapshotCompleted { .. },
            ..
        })
    )
}

fn resolve_cluster(ctx: &mut Ctx<'_>, entry: &StepEntry, named: Option<&str>, needed: bool) -> Option<String> {
    let plan = &ctx.loaded.plan;
    match named {
        Some(name) if plan.cluster(name).is_some() => Some(name.to_string()),
        Some(name) => {
            let known: Vec<&str> = plan.clusters.iter().map(|c| c.name.value.as_str()).collect();
            let hint =
                crate::lang::de::closest(name, &known).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
            let message = format!(
                "step `{}` names unknown cluster `{name}`{hint}; the plan defines: {}",
                entry.id.value,
                known.join(", ")
            );
            ctx.error("drplan::plan::unknown_cluster", entry.kind_span, message, "unknown cluster");
            None
        }
        None if !needed => Some(String::new()),
        None => match plan.only_cluster() {
            Some(only) => Some(only.name.value.clone()),
            None => {
                let message =
                    format!("step `{}` must name its `cluster:`, because the plan has several", entry.id.value);
                ctx.error("drplan::plan::missing_field", entry.kind_span, message, "which cluster?");
                None
            }
        },
    }
}

fn scope_fields(scope: &Scope<'_>) -> (Option<String>, Option<String>) {
    (Some(scope.cluster.clone()), Some(scope.namespace.clone()))
}

fn scale(scope: &Scope<'_>, workload: &WorkloadRef, replicas: u32) -> Action {
    let (cluster, namespace) = scope_fields(scope);
    Action::Scale(ScaleParams { cluster, namespace, workload: workload.clone(), replicas })
}

fn scale_back(scope: &Scope<'_>, workload: &WorkloadRef) -> Action {
    let (cluster, namespace) = scope_fields(scope);
    Action::ScaleBack(WorkloadParams { cluster, namespace, workload: workload.clone() })
}

fn wait(scope: &Scope<'_>, condition: WaitCondition, timeout: &Option<Spanned<Duration>>) -> Action {
    let (cluster, namespace) = scope_fields(scope);
    Action::Wait(WaitParams { cluster, namespace, condition, timeout: timeout.clone() })
}

fn cloud_wait(condition: WaitCondition, timeout: &Option<Spanned<Duration>>) -> Action {
    Action::Wait(WaitParams { cluster: None, namespace: None, condition, timeout: timeout.clone() })
}

/// The claims a `restoreClaims` intent covers: listed, or one per replica of a template.
fn claims_of(ctx: &mut Ctx<'_>, scope: &Scope<'_>, p: &RestoreClaims) -> Option<Vec<Spanned<String>>> {
    match (&p.claims, &p.claim_template) {
        (Some(claims), None) if !claims.is_empty() => Some(claims.clone()),
        (None, Some(template)) => claims_from_template(ctx, scope, p, template),
        (Some(_), Some(_)) => {
            ctx.error(
                "drplan::plan::invalid_value",
                scope.entry.kind_span,
                "give either `claims` or `claimTemplate`, not both",
                "restoreClaims",
            );
            None
        }
        _ => {
            ctx.error(
                "drplan::plan::missing_field",
                scope.entry.kind_span,
                "restoreClaims needs `claims` or `claimTemplate`",
                "restoreClaims",
            );
            None
        }
    }
}

fn claims_from_template(
    ctx: &mut Ctx<'_>,
    scope: &Scope<'_>,
    p: &RestoreClaims,
    template: &Spanned<String>,
) -> Option<Vec<Spanned<String>>> {
    if p.workload.kind != WorkloadKind::StatefulSet {
        ctx.error(
            "drplan::plan::invalid_value",
            template.span,
            "`claimTemplate` only applies to a StatefulSet",
            "not a StatefulSet",
        );
        return None;
    }
    let facts = ctx.facts?;
    let Some(workload) = facts.workload(&scope.cluster, &scope.namespace, &p.workload) else {
        super::missing::report_missing_workload(ctx, scope.entry, &scope.cluster, &scope.namespace, &p.workload);
        return None;
    };
    if !workload.claim_templates.iter().any(|t| t.name == template.value) {
        let names: Vec<&str> = workload.claim_templates.iter().map(|t| t.name.as_str()).collect();
        let message =
            format!("{} has no claim template `{}` (it has: {})", p.workload, template.value, names.join(", "));
        ctx.error("drplan::facts::not_found", template.span, message, "unknown claim template");
        return None;
    }
    if workload.replicas as usize > crate::lang::MAX_STEPS {
        let message = format!("{} has {} replicas, more than a plan can restore", p.workload, workload.replicas);
        ctx.error("drplan::input::too_many_steps", template.span, message, "over the step limit");
        return None;
    }
    let claims = (0..workload.replicas)
        .map(|ordinal| Spanned::new(format!("{}-{}-{ordinal}", template.value, p.workload.name), template.span))
        .collect();
    Some(claims)
}

fn restore_claims(ctx: &mut Ctx<'_>, scope: &Scope<'_>, p: &RestoreClaims, f: &mut Fragment) -> Option<()> {
    if p.claim_template.is_some() && p.claims.is_none() && ctx.facts.is_none() {
        // Without facts we do not know the replicas: keep the intent as one node.
        f.push_unexpanded(scope, &Intent::RestoreClaims(p.clone()));
        return Some(());
    }
    let chain = RestoreChain {
        workload: &p.workload,
        operator: p.operator.as_ref(),
        claims: claims_of(ctx, scope, p)?,
        snapshot_class: &p.snapshot_class,
        size: &p.resize,
        storage_class: &p.storage_class,
        timeout: &p.timeout,
    };
    add_restore_chain(f, scope, &[], &chain);
    Some(())
}

/// `resizePvc` with `onRateLimit: restoreBigger`: the resize, then the restore chain as
/// its fallback, which runs only if the provider refuses the resize for its rate limit.
fn resize_or_restore_bigger(ctx: &mut Ctx<'_>, scope: &Scope<'_>, p: &ResizePvcParams, f: &mut Fragment) -> Option<()> {
    let (Some(workload), Some(snapshot_class)) = (&p.workload, &p.snapshot_class) else {
        let message = "`onRateLimit: restoreBigger` needs `workload` (its pods stop while the claim is restored) \
                       and `snapshotClass` (for the snapshot the bigger claim is restored from)";
        ctx.error("drplan::plan::missing_field", scope.entry.kind_span, message, "restoreBigger fallback");
        return None;
    };
    let resize = f.push(scope, "", Action::ResizePvc(p.clone()));
    let first_fallback_step = f.steps.len();
    let chain = RestoreChain {
        workload,
        operator: p.operator.as_ref(),
        claims: vec![p.claim.clone()],
        snapshot_class,
        size: &Some(p.size.clone()),
        storage_class: &None,
        timeout: &p.timeout,
    };
    add_restore_chain(f, scope, &[resize], &chain);
    let resize_id = f.steps[resize].id.clone();
    for step in &mut f.steps[first_fallback_step..] {
        step.fallback_for = Some(resize_id.clone());
    }
    Some(())
}

/// What a quiesce, snapshot and restore chain works on.
struct RestoreChain<'p> {
    workload: &'p WorkloadRef,
    operator: Option<&'p WorkloadRef>,
    claims: Vec<Spanned<String>>,
    snapshot_class: &'p String,
    size: &'p Option<Spanned<Quantity>>,
    storage_class: &'p Option<String>,
    timeout: &'p Option<Spanned<Duration>>,
}

/// The runbook's order, after `roots`: stop the operator, then the workload; per claim
/// snapshot, wait until ready, retain the volume, delete and restore the claim; then
/// bring the workload back, and the operator last.
fn add_restore_chain(f: &mut Fragment, scope: &Scope<'_>, roots: &[usize], chain: &RestoreChain<'_>) {
    let (cluster, namespace) = scope_fields(scope);
    let timeout = chain.timeout;
    let mut quiesce = roots.to_vec();
    if let Some(operator) = chain.operator {
        quiesce = vec![f.then(scope, roots, "operator-down", scale(scope, operator, 0))];
    }
    let down = f.then(scope, &quiesce, "scale-down", scale(scope, chain.workload, 0));
    let pods_gone = WaitCondition::PodsGone { workload: chain.workload.clone() };
    let gone = f.then(scope, &[down], "pods-gone", wait(scope, pods_gone, timeout));
    let mut retained = Vec::new();
    for claim in &chain.claims {
        let c = &claim.value;
        let snap = f.then(
            scope,
            &[gone],
            &format!("snapshot-{c}"),
            Action::SnapshotPvc(SnapshotPvcParams {
                cluster: cluster.clone(),
                namespace: namespace.clone(),
                claim: claim.clone(),
                snapshot_class: chain.snapshot_class.clone(),
                snapshot_name: default_snapshot_name(),
            }),
        );
        let snapshot_ready = WaitCondition::SnapshotReady { claim: claim.clone() };
        let ready = f.then(scope, &[snap], &format!("snapshot-ready-{c}"), wait(scope, snapshot_ready, timeout));
        retained.push(f.then(
            scope,
            &[ready],
            &format!("retain-{c}"),
            Action::SetReclaimPolicy(ReclaimParams {
                cluster: cluster.clone(),
                namespace: namespace.clone(),
                claim: c.clone(),
                policy: ReclaimPolicy::Retain,
            }),
        ));
    }
    // One barrier before the first deletion: every claim of the entry is checked
    // together, so none is deleted while another one cannot be.
    let claims = chain.claims.iter().map(|c| c.value.clone()).collect();
    let safe =
        f.then(scope, &retained, "safe-to-delete", wait(scope, WaitCondition::ClaimsSafeToDelete { claims }, &None));
    let mut restored = Vec::new();
    for claim in &chain.claims {
        let c = &claim.value;
        let delete = f.then(
            scope,
            &[safe],
            &format!("delete-{c}"),
            Action::DeletePvc(DeletePvcParams {
                cluster: cluster.clone(),
                namespace: namespace.clone(),
                claim: claim.clone(),
                accept_data_loss: false,
            }),
        );
        restored.push(f.then(
            scope,
            &[delete],
            &format!("restore-{c}"),
            Action::RestorePvc(RestorePvcParams {
                cluster: cluster.clone(),
                namespace: namespace.clone(),
                claim: claim.clone(),
                snapshot: default_snapshot_name(),
                size: chain.size.clone(),
                storage_class: chain.storage_class.clone(),
            }),
        ));
    }
    let back = f.then(scope, &restored, "scale-back", scale_back(scope, chain.workload));
    let pods_ready = WaitCondition::PodsReady { workload: chain.workload.clone() };
    let ready = f.then(scope, &[back], "pods-ready", wait(scope, pods_ready, timeout));
    if let Some(operator) = chain.operator {
        f.then(scope, &[ready], "operator-up", scale_back(scope, operator));
    }
}

fn rebind_volume(scope: &Scope<'_>, p: &RebindVolume, f: &mut Fragment) {
    let (cluster, namespace) = scope_fields(scope);
    let bind = f.push(
        scope,
        "bind",
        Action::BindStaticPv(StaticPvParams {
            cluster: cluster.clone(),
            namespace: namespace.clone(),
            pv_name: p.pv_name.clone(),
            volume: p.volume.clone(),
            claim: p.claim.clone(),
            storage_class: p.storage_class.clone(),
        }),
    );
    let bound =
        f.then(scope, &[bind], "bound", wait(scope, WaitCondition::PvcBound { claim: p.claim.clone() }, &p.timeout));
    let down = f.push(scope, "scale-down", scale(scope, &p.workload, 0));
    let gone = f.then(
        scope,
        &[down],
        "pods-gone",
        wait(scope, WaitCondition::PodsGone { workload: p.workload.clone() }, &p.timeout),
    );
    let repoint = f.then(
        scope,
        &[bound, gone],
        "repoint",
        Action::SetWorkloadClaim(SetWorkloadClaimParams {
            cluster,
            namespace,
            workload: p.workload.clone(),
            volume: p.pod_volume.clone(),
            claim: p.claim.clone(),
        }),
    );
    let back = f.then(scope, &[repoint], "scale-back", scale_back(scope, &p.workload));
    f.then(
        scope,
        &[back],
        "pods-ready",
        wait(scope, WaitCondition::PodsReady { workload: p.workload.clone() }, &p.timeout),
    );
}

fn efs_failover(scope: &Scope<'_>, p: &EfsFailover, f: &mut Fragment) {
    // With the primary region down, the replication is deleted from the replica's
    // region; the replica turns writable once the deletion completes.
    let delete = f.push(
        scope,
        "delete-replication",
        Action::EfsDeleteReplication(EfsDeleteReplicationParams {
            region: p.replica.region.clone(),
            source_file_system_id: p.primary.file_system_id.clone(),
            deletion_mode: p.deletion_mode,
        }),
    );
    f.then(
        scope,
        &[delete],
        "replica-writable",
        cloud_wait(
            WaitCondition::EfsReplicationDeleted {
                region: p.replica.region.clone(),
                file_system_id: p.replica.file_system_id.clone(),
            },
            &p.timeout,
        ),
    );
}

fn efs_failback(scope: &Scope<'_>, p: &EfsFailback, f: &mut Fragment) {
    let protection = |side: &EfsSide, protection| {
        Action::EfsSetOverwriteProtection(EfsProtectionParams {
            region: side.region.clone(),
            file_system_id: side.file_system_id.clone(),
            protection,
        })
    };
    let replicate = |from: &EfsSide, to: &EfsSide| {
        Action::EfsCreateReplication(EfsCreateReplicationParams {
            region: from.region.clone(),
            source_file_system_id: from.file_system_id.clone(),
            destination_region: to.region.clone(),
            destination_file_system_id: Some(to.file_system_id.clone()),
        })
    };
    // Replicating into an existing file system needs its overwrite protection off.
    let unprotect = f.push(scope, "unprotect-primary", protection(&p.primary, OverwriteProtection::Disabled));
    let back = f.then(scope, &[unprotect], "replicate-back", replicate(&p.replica, &p.primary));
    let synced = f.then(
        scope,
        &[back],
        "primary-synced",
        cloud_wait(
            WaitCondition::EfsReplicationSynced {
                region: p.primary.region.clone(),
                file_system_id: p.primary.file_system_id.clone(),
            },
            &p.timeout,
        ),
    );
    let cutover = f.then(
        scope,
        &[synced],
        "cutover",
        Action::EfsDeleteReplication(EfsDeleteReplicationParams {
            region: p.replica.region.clone(),
            source_file_system_id: p.replica.file_system_id.clone(),
            deletion_mode: None,
        }),
    );
    let writable = f.then(
        scope,
        &[cutover],
        "primary-writable",
        cloud_wait(
            WaitCondition::EfsReplicationDeleted {
                region: p.primary.region.clone(),
                file_system_id: p.primary.file_system_id.clone(),
            },
            &p.timeout,
        ),
    );
    let unprotect_replica =
        f.then(scope, &[writable], "unprotect-replica", protection(&p.replica, OverwriteProtection::Disabled));
    f.then(scope, &[unprotect_replica], "replicate-forward", replicate(&p.primary, &p.replica));
}

fn etcd_restore(scope: &Scope<'_>, p: &EtcdRestore, f: &mut Fragment) {
    let (cluster, namespace) = scope_fields(scope);
    let exec_in = |pod: &str, command: Vec<String>| ExecParams {
        cluster: cluster.clone(),
        namespace: namespace.clone(),
        pod: pod.to_string(),
        container: p.container.clone(),
        command,
        timeout: p.timeout.clone(),
        ..ExecParams::default()
    };
    let words = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<String>>();
    let mut save = words(&["etcdctl"]);
    save.extend(p.etcdctl_args.iter().cloned());
    save.extend(words(&["snapshot", "save", &p.snapshot_path]));
    // One member (etcdPod, with memberName and its peer URL), or every listed member.
    let single = p.members.is_empty();
    let members: Vec<(String, Option<String>, Option<String>)> = if single {
        vec![(p.etcd_pod.clone(), p.member_name.clone(), p.initial_advertise_peer_urls.clone())]
    } else {
        p.members.iter().map(|m| (m.pod.clone(), Some(m.name.clone()), Some(m.peer_url.clone()))).collect()
    };
    // Left-overs of an earlier restore would be taken for this run's (the restore's
    // `creates:` guard) or nest the data directory (the swap's `mv`): refuse them first.
    let preflight = etcd_preflight(p);
    let mut checked = Vec::new();
    for (pod, _, _) in &members {
        let id = if single { "preflight".to_string() } else { format!("preflight-{pod}") };
        let check = ExecParams { idempotent: true, ..exec_in(pod, preflight.clone()) };
        checked.push(f.push(scope, &id, Action::Exec(check)));
    }
    // Taking the snapshot again, or checking it again, changes nothing that matters.
    let snapshot = ExecParams { idempotent: true, ..exec_in(&p.etcd_pod, save) };
    let snapshot = f.then(scope, &checked, "snapshot", Action::Exec(snapshot));
    let status = words(&["etcdutl", "snapshot", "status", &p.snapshot_path, "-w", "table"]);
    let verify = ExecParams { idempotent: true, ..exec_in(&p.etcd_pod, status) };
    let verify = f.then(scope, &[snapshot], "verify", Action::Exec(verify));
    let down = f.then(scope, &[verify], "apiserver-down", scale(scope, &p.api_server, 0));
    let gone = f.then(
        scope,
        &[down],
        "apiserver-gone",
        wait(scope, WaitCondition::PodsGone { workload: p.api_server.clone() }, &p.timeout),
    );
    let initial_cluster = p.initial_cluster.clone().or_else(|| {
        (!single).then(|| p.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(","))
    });
    let mut swapped = Vec::new();
    for (pod, name, peer_url) in &members {
        let suffix = if single { String::new() } else { format!("-{pod}") };
        let restore = etcd_restore_member(p, name.as_deref(), peer_url.as_deref(), initial_cluster.as_deref());
        let restore = ExecParams { creates: restore.creates, undo: restore.undo, ..exec_in(pod, restore.command) };
        let restored = f.then(scope, &[gone], &format!("restore{suffix}"), Action::Exec(restore));
        let swap = match etcd_swap(p) {
            // A command of the plan's own: drplan cannot tell whether it ran, so never twice.
            None => exec_in(pod, p.swap_command.clone().unwrap_or_default()),
            Some(swap) => ExecParams { unless: swap.unless, undo: swap.undo, ..exec_in(pod, swap.command) },
        };
        swapped.push(f.then(scope, &[restored], &format!("swap-data-dir{suffix}"), Action::Exec(swap)));
    }
    // etcd reads its data directory only at start: restart every member on the new one,
    // once every data directory is swapped (a member restarted early would find peers
    // still serving the old cluster).
    let mut restarted = Vec::new();
    for (pod, _, _) in &members {
        let restart = Action::RestartPod(RestartPodParams {
            cluster: cluster.clone(),
            namespace: namespace.clone(),
            pod: pod.clone(),
            timeout: p.timeout.clone(),
        });
        let id = if single { "restart-etcd".to_string() } else { format!("restart-{pod}") };
        restarted.push(f.then(scope, &swapped, &id, restart));
    }
    let up = f.then(scope, &restarted, "apiserver-up", scale_back(scope, &p.api_server));
    let ready = WaitCondition::PodsReady { workload: p.api_server.clone() };
    f.then(scope, &[up], "apiserver-ready", wait(scope, ready, &p.timeout));
}

/// Fails (with the reason on stderr) when `DATADIR-restored` or `DATADIR.before-restore`
/// exists in the member's container.
fn etcd_preflight(p: &EtcdRestore) -> Vec<String> {
    let dir = &p.data_dir;
    let refuse = |path: String, why: &str| {
        format!("test -e {path} && echo '{path} exists ({why}): move it away before restoring' >&2 && exit 1")
    };
    let script = [
        refuse(format!("{dir}-restored"), "left by an earlier restore"),
        refuse(format!("{dir}.before-restore"), "the data directory an earlier restore replaced"),
        "exit 0".to_string(),
    ]
    .join("; ");
    vec!["sh".into(), "-c".into(), script]
}

/// The restore of one member into `DATADIR-restored`, with its identity. etcdutl refuses
/// an existing data dir, so the restored directory existing means done (`creates`).
fn etcd_restore_member(
    p: &EtcdRestore,
    name: Option<&str>,
    peer_url: Option<&str>,
    initial_cluster: Option<&str>,
) -> ExecParams {
    let restored_dir = format!("{}-restored", p.data_dir);
    let mut restore: Vec<String> = ["etcdutl", "snapshot", "restore", &p.snapshot_path, "--data-dir", &restored_dir]
        .iter()
        .map(|w| w.to_string())
        .collect();
    // Without its name and peers the member restores as "default" and cannot rejoin.
    for (flag, value) in
        [("--name", name), ("--initial-cluster", initial_cluster), ("--initial-advertise-peer-urls", peer_url)]
    {
        if let Some(value) = value {
            restore.extend([flag.to_string(), value.to_string()]);
        }
    }
    ExecParams {
        command: restore,
        creates: Some(restored_dir.clone()),
        undo: Some(vec!["rm".into(), "-rf".into(), restored_dir]),
        ..ExecParams::default()
    }
}

/// The default swap (None when the plan gives its own `swapCommand`): the old directory
/// stays beside the restored one, as `DATADIR.before-restore`, until the run is committed.
fn etcd_swap(p: &EtcdRestore) -> Option<ExecParams> {
    if p.swap_command.is_some() {
        return None;
    }
    let (dir, restored, kept) =
        (&p.data_dir, format!("{}-restored", p.data_dir), format!("{}.before-restore", p.data_dir));
    let sh = |script: String| vec!["sh".to_string(), "-c".to_string(), script];
    Some(ExecParams {
        command: sh(format!("mv {dir} {kept} && mv {restored} {dir}")),
        // Done when the old directory is kept and the restored one moved in.
        unless: Some(sh(format!("test -e {kept} && test ! -e {restored}"))),
        undo: Some(sh(format!("mv {dir} {restored} && mv {kept} {dir}"))),
        ..ExecParams::default()
    })
}

fn set_aside(scope: &Scope<'_>, p: &SetAside) -> Fragment {
    let mut f = Fragment::default();
    let params = ObjectParams { cluster: Some(scope.cluster.clone()), object: p.object.clone() };
    let save = f.push(scope, "save", Action::SaveObject(params.clone()));
    let delete = f.then(scope, &[save], "delete", Action::DeleteObject(params.clone()));
    let restore = f.push(scope, "restore", Action::RestoreObject(params));
    f.edges.push((delete, restore));
    f.entries = vec![save];
    f.exits = vec![restore];
    f.before_during = Some(delete);
    f.after_during = Some(restore);
    f
}

/// Where a pause acts: the controlled object's namespace, or the operator's.
fn pause_namespace(p: &PauseReconciliation) -> Option<&str> {
    if let Some(app) = &p.argo_cd {
        return Some(app.namespace.as_deref().unwrap_or(ARGOCD_NAMESPACE));
    }
    if let Some(flux) = &p.flux {
        return Some(flux.namespace.as_deref().unwrap_or(FLUX_NAMESPACE));
    }
    if let Some(a) = &p.annotate {
        return a.object.namespace.as_deref();
    }
    if let Some(patch) = &p.patch {
        return patch.object.namespace.as_deref();
    }
    p.namespace.as_deref()
}

/// Where Argo CD keeps its Applications unless told otherwise.
pub const ARGOCD_NAMESPACE: &str = "argocd";
/// Where Flux keeps its objects unless told otherwise.
pub const FLUX_NAMESPACE: &str = "flux-system";

/// The object a pause patches and the merge patch that pauses its controller; `None` for
/// the operator Deployment (scaled instead).
pub fn pause_patch(p: &PauseReconciliation) -> Option<(ObjectRef, serde_json::Value)> {
    use serde_json::json;
    if let Some(app) = &p.argo_cd {
        let object = ObjectRef {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Application".into(),
            namespace: Some(app.namespace.clone().unwrap_or_else(|| ARGOCD_NAMESPACE.into())),
            name: app.name.clone(),
        };
        // Without `automated` Argo CD neither syncs new revisions nor self-heals.
        return Some((object, json!({ "spec": { "syncPolicy": { "automated": null } } })));
    }
    if let Some(flux) = &p.flux {
        let (api_version, kind) = match flux.kind {
            FluxKind::Kustomization => ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            FluxKind::HelmRelease => ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
        };
        let object = ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(flux.namespace.clone().unwrap_or_else(|| FLUX_NAMESPACE.into())),
            name: flux.name.clone(),
        };
        return Some((object, json!({ "spec": { "suspend": true } })));
    }
    if let Some(a) = &p.annotate {
        return Some((a.object.clone(), json!({ "metadata": { "annotations": { a.key.clone(): a.value.clone() } } })));
    }
    p.patch.as_ref().map(|patch| (patch.object.clone(), patch.patch.clone()))
}

/// How many controllers a pause names (exactly one is valid).
fn pause_targets(p: &PauseReconciliation) -> usize {
    [p.argo_cd.is_some(), p.flux.is_some(), p.annotate.is_some(), p.patch.is_some(), p.operator.is_some()]
        .iter()
        .filter(|&&given| given)
        .count()
}

/// `pauseReconciliation`: pause → (the `during` steps) → resume. The operator form scales
/// the operator's Deployment to 0 and waits for its pods to go before anything it
/// protects starts.
fn pause_reconciliation(ctx: &mut Ctx<'_>, scope: &Scope<'_>, p: &PauseReconciliation) -> Option<Fragment> {
    if pause_targets(p) != 1 {
        ctx.error(
            "drplan::plan::invalid_value",
            scope.entry.kind_span,
            "pauseReconciliation needs exactly one of `argoCd`, `flux`, `annotate`, `patch`, `operator`",
            "which controller?",
        );
        return None;
    }
    if p.patch.as_ref().is_some_and(|patch| !patch.patch.is_object()) {
        ctx.error(
            "drplan::plan::invalid_value",
            scope.entry.kind_span,
            "`patch.patch` must be a JSON merge patch: a mapping of the fields to set",
            "not a mapping",
        );
        return None;
    }
    let mut f = Fragment::default();
    let (paused, resume) = match (pause_patch(p), &p.operator) {
        (Some((object, patch)), _) => {
            let params = ReconcilerParams { cluster: Some(scope.cluster.clone()), object, patch };
            let pause = f.push(scope, "pause", Action::PauseReconciler(params.clone()));
            let resume = f.push(scope, "resume", Action::ResumeReconciler(params));
            f.edges.push((pause, resume));
            (pause, resume)
        }
        (None, Some(operator)) => {
            let down = f.push(scope, "pause", scale(scope, operator, 0));
            let gone = WaitCondition::PodsGone { workload: operator.clone() };
            let gone = f.then(scope, &[down], "paused", wait(scope, gone, &None));
            let back = f.push(scope, "resume", scale_back(scope, operator));
            f.edges.push((gone, back));
            (gone, back)
        }
        (None, None) => return None,
    };
    f.entries = vec![0];
    f.exits = vec![resume];
    f.before_during = Some(paused);
    f.after_during = Some(resume);
    Some(f)
}
