//! Predicting a plan's effect: replay its steps over a copy of live state.

use std::cell::LazyCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{LiveState, ObjectKey};
use crate::graph::{Step, StepGraph};
use crate::steps::manifests::{self, clean_manifest};
use crate::steps::{Action, WorkloadKind, WorkloadRef};

/// Where a step stands against live state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Nothing to do; why.
    Satisfied(String),
    ToDo,
    /// Part of the fallback of the step with this id: runs only if that step needs it.
    Conditional(String),
    /// Would fail or be refused; why.
    Blocked(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Create,
    Update,
    /// Deleted and created again under the same name (claims restored from snapshots).
    Replace,
    Delete,
}

/// The net change of one object over the whole run.
#[derive(Clone, Debug)]
pub struct Change {
    pub key: ObjectKey,
    pub kind: ChangeKind,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Steps that touch it, in order.
    pub steps: Vec<String>,
    /// Deleted at some point (destructive even if recreated).
    pub deleted_on_the_way: bool,
    /// Deleted (and restored) only if a fallback runs.
    pub deleted_if_fallback: bool,
    /// Touched only by fallback steps: changes only if a fallback runs.
    pub only_if_fallback: bool,
    /// Changed for part of the run, then back as it was (a controller paused and
    /// resumed): `after` is the object while paused.
    pub temporary: bool,
}

impl Change {
    /// The change when no fallback runs; `None` when only a fallback touches the object.
    pub fn kind_without_fallback(&self) -> Option<ChangeKind> {
        match self {
            Change { only_if_fallback: true, .. } => None,
            Change { deleted_if_fallback: true, .. } => Some(ChangeKind::Update),
            _ => Some(self.kind),
        }
    }
}

/// Shown in names that include the run, which is only known when applying.
pub const RUN_PLACEHOLDER: &str = "RUN";

pub(super) struct Replay<'a> {
    pub(super) live: &'a LiveState,
    /// Every object a step looked at or changed. Hashed, not ordered: it is looked up
    /// several times per step, and comparing keys field by field dominated the replay.
    objects: HashMap<ObjectKey, Slot>,
    replicas: BTreeMap<(String, String, WorkloadRef), i64>,
    /// Workloads scaled to zero by steps replayed so far.
    quiesced: BTreeSet<(String, String, WorkloadRef)>,
    /// Pods by (cluster, namespace, claim they mount), built once.
    pods_by_claim: PodIndex<'a>,
}

/// One object as read and as replayed.
struct Slot {
    /// As read (cleaned), decoded once; `None` if it did not exist.
    original: Option<Shared>,
    /// Set once a step changes it.
    replayed: Option<Replayed>,
}

/// One object changed by the replay.
#[derive(Default)]
struct Replayed {
    /// `None` once deleted.
    state: Option<Shared>,
    /// Steps that touch it, in order.
    steps: Vec<String>,
    /// Deleted at some point.
    deleted: bool,
    /// Deleted by a fallback step (so only if the fallback runs).
    deleted_if_fallback: bool,
    /// The object while a controller is paused (the last pause step's result).
    paused: Option<Shared>,
}

/// An object as the replay holds it, shared: most steps only look at an object, and
/// copying it for each of them was most of the prediction's time. A step that changes
/// one gets its own copy on the first write (`Rc::make_mut`).
#[derive(Clone, Debug, Default)]
pub(super) struct Shared(Rc<Value>);

impl Deref for Shared {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl DerefMut for Shared {
    fn deref_mut(&mut self) -> &mut Value {
        Rc::make_mut(&mut self.0)
    }
}

impl From<Shared> for Value {
    /// Copies only if the object is still shared.
    fn from(object: Shared) -> Value {
        Rc::unwrap_or_clone(object.0)
    }
}

/// Hashed: only looked up. Each list keeps the pods in key order.
type PodIndex<'a> = HashMap<(String, String, String), Vec<(&'a ObjectKey, Option<WorkloadRef>)>>;

/// The fields of a pod the replay reads (as `Value`s, read as before by JSON pointer);
/// the rest of the pod is not decoded.
#[derive(Default, Deserialize)]
struct PodUse {
    #[serde(default)]
    metadata: PodOwners,
    #[serde(default)]
    spec: PodVolumes,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodOwners {
    #[serde(default)]
    owner_references: Value,
}

#[derive(Default, Deserialize)]
struct PodVolumes {
    #[serde(default)]
    volumes: Value,
}

/// Indexes pods by the claims they mount, so each deletion looks up its users directly.
fn index_pods(live: &LiveState) -> PodIndex<'_> {
    let mut index: PodIndex<'_> = HashMap::new();
    for (key, pod) in live.raw_of_kind("Pod") {
        let pod: PodUse = serde_json::from_str(pod.get()).unwrap_or_default();
        let claims = pod.spec.volumes.as_array().into_iter().flatten();
        for claim in claims.filter_map(|v| v.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str)) {
            let ns = key.namespace.clone().unwrap_or_default();
            let owner = owner_workload(&pod.metadata.owner_references);
            index.entry((key.cluster.clone(), ns, claim.to_string())).or_default().push((key, owner));
        }
    }
    index
}

impl Replay<'_> {
    /// The object as replayed so far.
    pub(super) fn get(&mut self, key: &ObjectKey) -> Option<Shared> {
        let slot = self.slot(key);
        match &slot.replayed {
            Some(replayed) => replayed.state.clone(),
            None => slot.original.clone(),
        }
    }

    /// The object as read, cleaned for showing or recreating it.
    fn original(&mut self, key: &ObjectKey) -> Option<Shared> {
        self.slot(key).original.clone()
    }

    pub(super) fn set(&mut self, key: ObjectKey, step: &Step, value: Option<Value>) {
        let slot = self.slot(&key);
        let replayed = slot.replayed.get_or_insert_with(Replayed::default);
        match (&value, &step.fallback_for) {
            (None, None) => replayed.deleted = true,
            (None, Some(_)) => replayed.deleted_if_fallback = true,
            _ => {}
        }
        replayed.steps.push(step.id.clone());
        replayed.state = value.map(|v| Shared(Rc::new(v)));
    }

    /// The slot of an object, reading it from live state on first use.
    fn slot(&mut self, key: &ObjectKey) -> &mut Slot {
        // Looked up before inserting: cloning the key for every lookup would cost more.
        if !self.objects.contains_key(key) {
            let original = self.live.get(key).map(|o| Shared(Rc::new(clean_manifest(o))));
            self.objects.insert(key.clone(), Slot { original, replayed: None });
        }
        self.objects.get_mut(key).expect("inserted above")
    }
}

pub(super) fn workload_key(step: &Step, w: &WorkloadRef) -> ObjectKey {
    ObjectKey::new(&step.cluster, "apps/v1", &w.kind.to_string(), Some(&step.namespace), &w.name)
}

pub(super) fn claim_key(step: &Step, claim: &str) -> ObjectKey {
    ObjectKey::new(&step.cluster, "v1", "PersistentVolumeClaim", Some(&step.namespace), claim)
}

pub(super) fn pv_key(step: &Step, name: &str) -> ObjectKey {
    ObjectKey::new(&step.cluster, "v1", "PersistentVolume", None, name)
}

/// The predicted states of every step and the net change of every object.
///
/// Entries whose end state live state already shows are satisfied as a whole: that is
/// read from the objects and compared with what this plan asks for, not taken from which
/// steps an earlier run applied.
pub fn predict(graph: &StepGraph, live: &LiveState) -> (Vec<(String, StepState)>, Vec<Change>) {
    let mut replay = Replay {
        live,
        objects: HashMap::new(),
        replicas: BTreeMap::new(),
        quiesced: BTreeSet::new(),
        pods_by_claim: index_pods(live),
    };
    let holding = super::satisfied::satisfied_entries(graph, live);
    let mut states = Vec::new();
    for index in graph.topological_order().unwrap_or_default() {
        let step = graph.step(index);
        if let Some(why) = holding.get(&step.entry) {
            states.push((step.id.clone(), StepState::Satisfied(why.clone())));
            continue;
        }
        let state = match &step.fallback_for {
            None => replay_step(&mut replay, step),
            Some(of) => replay_fallback_step(&mut replay, step, of, &states),
        };
        states.push((step.id.clone(), state));
    }
    // Changes in key order, as they are shown.
    let mut replayed: Vec<_> = replay.objects.into_iter().filter(|(_, slot)| slot.replayed.is_some()).collect();
    replayed.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    let mut changes = Vec::with_capacity(replayed.len());
    changes.extend(replayed.into_iter().filter_map(|(key, Slot { original, replayed })| {
        let Replayed { state, steps, deleted, deleted_if_fallback, paused } = replayed?;
        // Each object's last use: nothing else holds these any more, so they are moved
        // out, not copied.
        let before = original.map(Value::from);
        let after = state.map(Value::from);
        let deleted_on_the_way = deleted;
        let deleted_if_fallback = !deleted && deleted_if_fallback;
        let mut temporary = false;
        let (kind, after) = match (&before, after) {
            (None, Some(a)) => (ChangeKind::Create, Some(a)),
            (Some(_), None) => (ChangeKind::Delete, None),
            (Some(_), Some(a)) if deleted_on_the_way || deleted_if_fallback => (ChangeKind::Replace, Some(a)),
            (Some(b), Some(a)) if *b != a => (ChangeKind::Update, Some(a)),
            // Paused and resumed: shown as the change it is while the plan runs.
            (Some(_), Some(_)) if paused.is_some() => {
                temporary = true;
                (ChangeKind::Update, paused.map(Value::from))
            }
            _ => return None,
        };
        let only_if_fallback = steps.iter().all(|id| is_fallback_step(graph, id));
        Some(Change {
            key,
            kind,
            before,
            after,
            steps,
            deleted_on_the_way,
            deleted_if_fallback,
            only_if_fallback,
            temporary,
        })
    }));
    (states, changes)
}

fn is_fallback_step(graph: &StepGraph, id: &str) -> bool {
    graph.index_of(id).is_some_and(|i| graph.step(i).fallback_for.is_some())
}

/// A fallback step is replayed as if its fallback were needed, so the review shows the
/// worst case; it is not needed at all when the step it backs up is already satisfied.
fn replay_fallback_step(r: &mut Replay<'_>, step: &Step, of: &str, so_far: &[(String, StepState)]) -> StepState {
    let backed_up = so_far.iter().find(|(id, _)| id == of).map(|(_, state)| state);
    if let Some(StepState::Satisfied(_)) = backed_up {
        return StepState::Satisfied(format!("fallback not needed: `{of}` is already satisfied"));
    }
    match replay_step(r, step) {
        StepState::ToDo => StepState::Conditional(of.to_string()),
        other => other,
    }
}

fn replay_step(r: &mut Replay<'_>, step: &Step) -> StepState {
    let Some(action) = step.action() else { return StepState::Blocked("intent not expanded".into()) };
    // Built only for the steps that create objects (a third of them).
    let ownership = LazyCell::new(|| manifests::ownership(RUN_PLACEHOLDER, &step.id));
    match action {
        Action::Scale(p) => {
            let key = workload_key(step, &p.workload);
            let Some(mut object) = r.get(&key) else { return StepState::Blocked(format!("{} not found", p.workload)) };
            let current = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let target = (step.cluster.clone(), step.namespace.clone(), p.workload.clone());
            r.replicas.entry(target.clone()).or_insert(current);
            if p.replicas == 0 {
                r.quiesced.insert(target);
            }
            if current == i64::from(p.replicas) {
                return StepState::Satisfied(format!("already at {current} replicas"));
            }
            object["spec"]["replicas"] = json!(p.replicas);
            r.set(key, step, Some(object.into()));
            StepState::ToDo
        }
        Action::ScaleBack(p) => {
            let key = workload_key(step, &p.workload);
            let original = r.replicas.get(&(step.cluster.clone(), step.namespace.clone(), p.workload.clone())).copied();
            let (Some(mut object), Some(original)) = (r.get(&key), original) else { return StepState::ToDo };
            object["spec"]["replicas"] = json!(original);
            r.set(key, step, Some(object.into()));
            StepState::ToDo
        }
        Action::SnapshotPvc(p) => {
            if r.get(&claim_key(step, &p.claim.value)).is_none() {
                return StepState::Blocked(format!("PVC {} not found", p.claim.value));
            }
            let snapshot = manifests::volume_snapshot(&step.namespace, p, RUN_PLACEHOLDER, &ownership);
            let name = snapshot["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let key = ObjectKey::new(
                &step.cluster,
                "snapshot.storage.k8s.io/v1",
                "VolumeSnapshot",
                Some(&step.namespace),
                &name,
            );
            r.set(key, step, Some(snapshot));
            StepState::ToDo
        }
        Action::SetReclaimPolicy(p) => {
            let volume = r
                .get(&claim_key(step, &p.claim))
                .and_then(|c| c.pointer("/spec/volumeName").and_then(Value::as_str).map(String::from));
            let Some(volume) = volume else { return StepState::Blocked(format!("PVC {} is not bound", p.claim)) };
            let key = pv_key(step, &volume);
            let Some(mut pv) = r.get(&key) else { return StepState::Blocked(format!("PV {volume} not found")) };
            if pv.pointer("/spec/persistentVolumeReclaimPolicy").and_then(Value::as_str) == Some(&p.policy.to_string())
            {
                return StepState::Satisfied(format!("PV {volume} already reclaims with {}", p.policy));
            }
            pv["spec"]["persistentVolumeReclaimPolicy"] = json!(p.policy.to_string());
            r.set(key, step, Some(pv.into()));
            StepState::ToDo
        }
        Action::DeletePvc(p) => {
            let key = claim_key(step, &p.claim.value);
            if r.get(&key).is_none() {
                return StepState::Satisfied(format!("PVC {} does not exist", p.claim.value));
            }
            if let Some(blocker) = foreign_user(r, step, &p.claim.value) {
                return StepState::Blocked(blocker);
            }
            r.set(key, step, None);
            StepState::ToDo
        }
        Action::RestorePvc(p) => {
            let key = claim_key(step, &p.claim.value);
            let before = r.original(&key).unwrap_or_default();
            match manifests::restored_claim(&step.namespace, p, &before, RUN_PLACEHOLDER, &ownership) {
                Ok(claim) => {
                    r.set(key, step, Some(claim));
                    StepState::ToDo
                }
                Err(e) => StepState::Blocked(e),
            }
        }
        Action::BindStaticPv(p) => {
            let pv = pv_key(step, &p.pv_name);
            if r.get(&pv).is_some() {
                return StepState::Blocked(format!("PV {} already exists", p.pv_name));
            }
            r.set(pv, step, Some(manifests::static_volume(&step.namespace, p, &ownership)));
            r.set(claim_key(step, &p.claim), step, Some(manifests::static_claim(&step.namespace, p, &ownership)));
            StepState::ToDo
        }
        Action::ResizePvc(p) => {
            let key = claim_key(step, &p.claim.value);
            let Some(mut claim) = r.get(&key) else {
                return StepState::Blocked(format!("PVC {} not found", p.claim.value));
            };
            // The status is what the provider delivered; the replayed copy has none.
            let live_claim = r.live.get(&key);
            let capacity = live_claim.as_ref().and_then(|c| c.pointer("/status/capacity/storage"));
            let capacity = capacity.and_then(Value::as_str).and_then(|c| c.parse::<crate::lang::Quantity>().ok());
            if let Some(capacity) = capacity.filter(|c| c.bytes() >= p.size.value.bytes()) {
                return StepState::Satisfied(format!("PVC {} already holds {capacity}", p.claim.value));
            }
            claim["spec"]["resources"]["requests"]["storage"] = json!(p.size.value.to_string());
            r.set(key, step, Some(claim.into()));
            StepState::ToDo
        }
        Action::SetWorkloadClaim(p) => {
            let key = workload_key(step, &p.workload);
            let Some(mut object) = r.get(&key) else { return StepState::Blocked(format!("{} not found", p.workload)) };
            let volumes = object.pointer_mut("/spec/template/spec/volumes").and_then(Value::as_array_mut);
            let Some(volume) = volumes.and_then(|v| v.iter_mut().find(|v| v["name"] == json!(p.volume))) else {
                return StepState::Blocked(format!("{} has no pod volume {}", p.workload, p.volume));
            };
            if volume.pointer("/persistentVolumeClaim/claimName") == Some(&json!(p.claim)) {
                return StepState::Satisfied(format!("volume {} already uses {}", p.volume, p.claim));
            }
            volume["persistentVolumeClaim"]["claimName"] = json!(p.claim);
            r.set(key, step, Some(object.into()));
            StepState::ToDo
        }
        Action::SaveObject(p) | Action::DeleteObject(p) | Action::RestoreObject(p) => {
            let key = ObjectKey::of_ref(&step.cluster, &p.object);
            match action {
                Action::SaveObject(_) if p.object.kind == "Secret" => {
                    StepState::Blocked("Secrets are never saved into checkpoints".into())
                }
                Action::SaveObject(_) if r.get(&key).is_none() => StepState::Blocked(format!("{} not found", p.object)),
                Action::SaveObject(_) => StepState::ToDo,
                Action::DeleteObject(_) => {
                    r.set(key, step, None);
                    StepState::ToDo
                }
                _ => {
                    let original = r.original(&key).map(Value::from);
                    r.set(key, step, original);
                    StepState::ToDo
                }
            }
        }
        Action::PauseReconciler(p) => {
            let key = ObjectKey::of_ref(&step.cluster, &p.object);
            let Some(mut object) = r.get(&key) else { return StepState::Blocked(format!("{} not found", p.object)) };
            if let Some(run) = object.pointer("/metadata/annotations/drplan.dev~1paused-by").and_then(Value::as_str) {
                return StepState::Blocked(format!(
                    "{} was paused by run {run} and not resumed: `dr resume` or `dr rollback` that run first",
                    p.object
                ));
            }
            let mut paused: Value = object.clone().into();
            crate::steps::merge_patch(&mut paused, &p.patch);
            if paused == *object {
                return StepState::Satisfied(format!("{} is already paused", p.object));
            }
            *object = paused;
            r.set(key.clone(), step, Some(object.clone().into()));
            if let Some(replayed) = r.slot(&key).replayed.as_mut() {
                replayed.paused = Some(object);
            }
            StepState::ToDo
        }
        Action::ResumeReconciler(p) => {
            let key = ObjectKey::of_ref(&step.cluster, &p.object);
            let (Some(mut object), Some(original)) = (r.get(&key), r.original(&key)) else {
                return StepState::Blocked(format!("{} not found", p.object));
            };
            let original: Value = original.into();
            crate::steps::merge_patch(&mut object, &crate::steps::restoring_patch(&p.patch, &original));
            r.set(key, step, Some(object.into()));
            StepState::ToDo
        }
        Action::EfsDeleteReplication(_) | Action::EfsCreateReplication(_) | Action::EfsSetOverwriteProtection(_) => {
            super::efs::replay(r, step, action).unwrap_or(StepState::ToDo)
        }
        // Cloud steps this build executes; their cloud state is checked when they run.
        cloud if crate::cloud::runner::executes(cloud) => StepState::ToDo,
        // Expansion placed kube waits in a cluster (the only one, when none is written);
        // only cloud waits have none.
        Action::Wait(_) if step.cluster.is_empty() => {
            StepState::Blocked("cloud waits are not executable by this build yet".into())
        }
        Action::Wait(_) | Action::RestartPod(_) | Action::Exec(_) => StepState::ToDo,
        other => StepState::Blocked(format!("`{}` steps are not executable by this build yet", other.kind_name())),
    }
}

/// A running pod using the claim whose workload this plan does not scale down first.
fn foreign_user(r: &Replay<'_>, step: &Step, claim: &str) -> Option<String> {
    let quiesced = |w: &WorkloadRef| r.quiesced.contains(&(step.cluster.clone(), step.namespace.clone(), w.clone()));
    let users = r.pods_by_claim.get(&(step.cluster.clone(), step.namespace.clone(), claim.to_string()))?;
    users.iter().find(|(_, owner)| owner.as_ref().is_none_or(|w| !quiesced(w))).map(|(key, owner)| {
        let owner = owner.as_ref().map(|w| format!(" ({w})")).unwrap_or_default();
        format!("pod {}{owner} uses PVC {claim} and this plan does not scale it down first", key.name)
    })
}

/// The workload owning a pod, from its `ownerReferences`.
fn owner_workload(owner_references: &Value) -> Option<WorkloadRef> {
    let owner = owner_references.as_array()?.first()?;
    let name = owner.get("name")?.as_str()?;
    match owner.get("kind")?.as_str()? {
        "StatefulSet" => Some(WorkloadRef { kind: WorkloadKind::StatefulSet, name: name.to_string() }),
        // A ReplicaSet is named `<deployment>-<pod-template-hash>`.
        "ReplicaSet" => {
            name.rsplit_once('-').map(|(d, _)| WorkloadRef { kind: WorkloadKind::Deployment, name: d.to_string() })
        }
        "Deployment" => Some(WorkloadRef { kind: WorkloadKind::Deployment, name: name.to_string() }),
        _ => None,
    }
}
