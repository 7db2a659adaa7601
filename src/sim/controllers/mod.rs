//! Controllers: deterministic reconcile passes over the state, run after every mutation and
//! whenever the sim clock passes a deadline a controller asked to be woken for.
//!
//! Besides Kubernetes' own controllers: GitOps controllers ([`gitops`]: Argo CD-like
//! Applications, Flux-like Kustomizations) and an operator-like reconciler ([`operator`])
//! that revert drift of what they manage unless paused.

mod gc;
pub mod gitops;
pub mod operator;
mod snapshots;
mod storage;
pub(crate) mod workloads;

use super::state::State;

/// Upper bound on passes per reconcile: each pass makes progress, but a bug must not hang the API.
const MAX_PASSES: usize = 200;

/// Runs every controller until none changes anything.
pub fn reconcile(state: &mut State) {
    state.next_wakeup = None;
    for _ in 0..MAX_PASSES {
        if !run_pass(state) {
            break;
        }
    }
    state.store.actor = "api".into();
}

/// A controller's reconcile pass: true if it changed anything.
type Pass = fn(&mut State) -> bool;

/// One pass of each controller, in dependency order; true if anything changed.
fn run_pass(state: &mut State) -> bool {
    let passes: [(&str, Pass); 12] = [
        ("controller/garbage-collector", gc::reconcile),
        ("controller/argocd-application-controller", gitops::reconcile_applications),
        ("controller/kustomize-controller", gitops::reconcile_kustomizations),
        ("controller/operator", operator::reconcile),
        ("controller/statefulset", workloads::reconcile_statefulsets),
        ("controller/deployment", workloads::reconcile_deployments),
        ("controller/replicaset", workloads::reconcile_replicasets),
        ("controller/persistentvolume-binder", storage::reconcile_claims),
        ("controller/persistentvolume-binder", storage::reconcile_volumes),
        ("controller/scheduler", workloads::schedule_pods),
        ("controller/kubelet", workloads::run_pods),
        ("controller/snapshot-controller", snapshots::reconcile),
    ];
    let mut changed = false;
    for (actor, pass) in passes {
        state.store.actor = actor.into();
        changed |= pass(state);
    }
    state.store.actor = "controller/volume-expander".into();
    changed |= storage::reconcile_expansion(state);
    changed
}

pub use workloads::pv_zone;
