//! Controllers: deterministic reconcile passes over the state, run after every mutation and
//! whenever the sim clock passes a deadline a controller asked to be woken for.
//!
//! Besides Kubernetes' own controllers: GitOps controllers ([`gitops`]: Argo CD-like
//! Applications, Flux-like Kustomizations) and an operator-like reconciler ([`operator`])
//! that revert drift of what they manage unless paused.
//!
//! A pass is a function of the kinds a controller reads, the sim time and the wakeups it
//! asked for; after an API write only the controllers something they read has changed
//! for run (as informers would wake them). Running all of them on every write visited
//! every object of a 10,000-claim cluster per request.

mod gc;
pub mod gitops;
pub mod operator;
mod snapshots;
mod storage;
pub(crate) mod workloads;

use jiff::Timestamp;

use super::registry::{ResourceKey, keys};
use super::state::State;

/// Upper bound on passes per reconcile: each pass makes progress, but a bug must not hang the API.
const MAX_PASSES: usize = 200;

/// A controller's reconcile pass: true if it changed anything.
type Pass = fn(&mut State) -> bool;

/// What a controller reads: the kinds whose changes wake it, or everything (it finds what
/// it manages itself, and is cheap when it manages nothing).
#[derive(Clone, Copy)]
enum Reads {
    Kinds(fn() -> Vec<ResourceKey>),
    Everything,
}

struct Controller {
    /// The audit log's actor for its writes.
    actor: &'static str,
    reads: Reads,
    pass: Pass,
}

/// Every controller, in dependency order.
const CONTROLLERS: [Controller; 13] = [
    Controller { actor: "controller/garbage-collector", reads: Reads::Everything, pass: gc::reconcile },
    Controller {
        actor: "controller/argocd-application-controller",
        reads: Reads::Everything,
        pass: gitops::reconcile_applications,
    },
    Controller {
        actor: "controller/kustomize-controller",
        reads: Reads::Everything,
        pass: gitops::reconcile_kustomizations,
    },
    Controller { actor: "controller/operator", reads: Reads::Everything, pass: operator::reconcile },
    Controller {
        actor: "controller/statefulset",
        reads: Reads::Kinds(|| vec![keys::statefulsets(), keys::pods(), keys::pvcs()]),
        pass: workloads::reconcile_statefulsets,
    },
    Controller {
        actor: "controller/deployment",
        reads: Reads::Kinds(|| vec![keys::deployments(), keys::replicasets()]),
        pass: workloads::reconcile_deployments,
    },
    Controller {
        actor: "controller/replicaset",
        reads: Reads::Kinds(|| vec![keys::replicasets(), keys::pods()]),
        pass: workloads::reconcile_replicasets,
    },
    Controller {
        actor: "controller/persistentvolume-binder",
        reads: Reads::Kinds(|| {
            vec![
                keys::pvcs(),
                keys::pvs(),
                keys::storage_classes(),
                keys::pods(),
                keys::nodes(),
                keys::snapshots(),
                keys::snapshot_contents(),
            ]
        }),
        pass: storage::reconcile_claims,
    },
    Controller {
        actor: "controller/persistentvolume-binder",
        reads: Reads::Kinds(|| vec![keys::pvs(), keys::pvcs()]),
        pass: storage::reconcile_volumes,
    },
    Controller {
        actor: "controller/scheduler",
        reads: Reads::Kinds(|| vec![keys::pods(), keys::nodes(), keys::pvcs(), keys::pvs(), keys::storage_classes()]),
        pass: workloads::schedule_pods,
    },
    Controller {
        actor: "controller/kubelet",
        reads: Reads::Kinds(|| vec![keys::pods(), keys::pvcs(), keys::pvs(), keys::nodes()]),
        pass: workloads::run_pods,
    },
    Controller {
        actor: "controller/snapshot-controller",
        reads: Reads::Kinds(|| {
            vec![keys::snapshots(), keys::snapshot_contents(), keys::snapshot_classes(), keys::pvcs(), keys::pvs()]
        }),
        pass: snapshots::reconcile,
    },
    Controller {
        actor: "controller/volume-expander",
        reads: Reads::Kinds(|| vec![keys::pvcs(), keys::pvs(), keys::storage_classes()]),
        pass: storage::reconcile_expansion,
    },
];

/// Per controller: what it last saw and the wakeup it asked for.
#[derive(Default)]
pub struct ControllerMarks {
    /// The store's resourceVersion when each controller last ran (0: never).
    seen: [u64; CONTROLLERS.len()],
    /// A controller that reported a change runs again in the next pass whatever it reads.
    again: [bool; CONTROLLERS.len()],
    wakeups: [Option<Timestamp>; CONTROLLERS.len()],
    running: Option<usize>,
    /// Wakeups asked for outside a controller's pass.
    other_wakeup: Option<Timestamp>,
}

impl ControllerMarks {
    /// Records a wakeup for the controller running now.
    pub fn wake_at(&mut self, at: Timestamp) {
        let slot = match self.running {
            Some(i) => &mut self.wakeups[i],
            None => &mut self.other_wakeup,
        };
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// The earliest sim time a controller waits for; the ticker reconciles when it passes.
    pub fn earliest_wakeup(&self) -> Option<Timestamp> {
        self.wakeups.iter().chain([&self.other_wakeup]).flatten().min().copied()
    }
}

/// Runs every controller until none changes anything (after a change outside the API:
/// sim time moved, manifests loaded, a handle changed volumes).
pub fn reconcile(state: &mut State) {
    run_until_settled(state, true);
}

/// Runs the controllers an API write may concern, or whose wakeup has passed, until none
/// changes anything.
pub fn reconcile_after_write(state: &mut State) {
    run_until_settled(state, false);
}

fn run_until_settled(state: &mut State, everything: bool) {
    // A wakeup asked for outside any controller is owed a reconcile of everything; this
    // is it, so it is spent.
    let marks = &mut state.controller_marks;
    let owed = marks.other_wakeup.is_some_and(|at| at <= state.clock.now());
    if everything || owed {
        marks.other_wakeup = None;
    }
    for pass in 0..MAX_PASSES {
        if !run_pass(state, (everything || owed) && pass == 0) {
            break;
        }
    }
    state.controller_marks.running = None;
    state.store.actor = "api".into();
}

/// Whether controller `i` has anything to do: forced, asked to run again, its wakeup
/// passed, or something it reads changed since it last ran.
fn due(state: &State, i: usize, forced: bool, now: Timestamp) -> bool {
    let marks = &state.controller_marks;
    forced
        || marks.again[i]
        || marks.wakeups[i].is_some_and(|at| at <= now)
        || match CONTROLLERS[i].reads {
            Reads::Everything => true,
            Reads::Kinds(kinds) => kinds().iter().any(|k| state.store.changed_since(k, marks.seen[i])),
        }
}

/// One pass of each controller that is due, in dependency order; true if anything changed.
fn run_pass(state: &mut State, forced: bool) -> bool {
    let now = state.now();
    let mut changed = false;
    for (i, controller) in CONTROLLERS.iter().enumerate() {
        if !due(state, i, forced, now) {
            continue;
        }
        let marks = &mut state.controller_marks;
        marks.seen[i] = state.store.resource_version();
        marks.wakeups[i] = None;
        marks.running = Some(i);
        state.store.actor = controller.actor.into();
        let made_changes = (controller.pass)(state);
        state.controller_marks.again[i] = made_changes;
        changed |= made_changes;
    }
    changed
}

pub use workloads::pv_zone;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sim::SimConfig;
    use crate::sim::cluster::SimCluster;

    fn settled_state() -> State {
        let mut state =
            SimCluster::build_state(Vec::new(), SimConfig { paused: true, ..SimConfig::default() }).unwrap();
        reconcile(&mut state);
        state
    }

    fn index_of(actor: &str) -> usize {
        CONTROLLERS.iter().position(|c| c.actor == actor).unwrap()
    }

    #[test]
    fn a_write_wakes_only_the_controllers_that_read_its_kind() {
        let mut state = settled_state();
        let (expander, deployments) = (index_of("controller/volume-expander"), index_of("controller/deployment"));
        let now = state.now();
        assert!(!due(&state, expander, false, now) && !due(&state, deployments, false, now), "nothing changed");
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
        state.save(&ResourceKey::new("", "configmaps"), config_map);
        assert!(!due(&state, expander, false, now), "the expander reads no ConfigMaps");
        let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"}});
        state.save(&keys::pvcs(), claim);
        assert!(due(&state, expander, false, now), "the expander reads claims");
        assert!(!due(&state, deployments, false, now), "the deployment controller does not");
        assert!(due(&state, index_of("controller/garbage-collector"), false, now), "reads everything");
    }

    #[test]
    fn a_wakeup_asked_for_outside_a_controller_is_spent_by_the_reconcile_it_asked_for() {
        let mut state = settled_state();
        let at = crate::sim::clock::after(state.now(), std::time::Duration::from_secs(5));
        state.wake_at(at);
        assert_eq!(state.next_wakeup(), Some(at));
        state.clock.advance(std::time::Duration::from_secs(6));
        // What the ticker runs once the deadline passed.
        reconcile_after_write(&mut state);
        assert_eq!(state.next_wakeup(), None, "a spent wakeup would have the ticker reconcile every 20 ms");
    }

    #[test]
    fn a_controller_skipped_after_a_write_keeps_the_wakeup_it_asked_for() {
        let mut state = settled_state();
        let snapshots = index_of("controller/snapshot-controller");
        let ready_at = crate::sim::clock::after(state.now(), std::time::Duration::from_secs(5));
        state.controller_marks.running = Some(snapshots);
        state.wake_at(ready_at);
        state.controller_marks.running = None;
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
        state.save(&ResourceKey::new("", "configmaps"), config_map);
        reconcile_after_write(&mut state);
        assert_eq!(state.next_wakeup(), Some(ready_at), "the ticker must still wake the snapshot controller");
        state.clock.advance(std::time::Duration::from_secs(6));
        assert!(due(&state, snapshots, false, state.now()), "its wakeup has passed");
    }
}
