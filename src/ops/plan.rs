//! `plan`: a plan expanded against live state with the changes it would make, for review;
//! and saved plans, which `apply` executes only if nothing they depend on changed since.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::target::{self, TargetOptions, Targets};
use super::{Frontend, Notice};
use crate::checkpoint;
use crate::cloud::report::CloudReport;
use crate::cluster::{ClusterInventories, live};
use crate::diag::Diagnostics;
use crate::graph::{self, BuildOptions, StepGraph};
use crate::lang::{self, LoadedPlan};
use crate::state::{self, Change, Fingerprint, LiveState, StepState, report::PlanReport};

/// A plan expanded against live state, with what it will change.
pub struct Prepared {
    pub graph: StepGraph,
    pub live: LiveState,
    pub states: Vec<(String, StepState)>,
    pub changes: Vec<Change>,
}

impl Prepared {
    pub fn report(&self) -> PlanReport<'_> {
        PlanReport { graph: &self.graph, states: &self.states, changes: &self.changes, requests: self.live.requests }
    }
}

/// Reads live state (one list per kind and namespace the plan touches), expands the
/// plan with it and predicts the changes; entries whose end state live state already
/// shows are satisfied.
pub async fn prepare(loaded: &LoadedPlan, targets: &Targets, ui: &dyn Frontend) -> Result<Prepared, String> {
    let (outline, _) = graph::build(loaded, BuildOptions { facts: None, intents_only: true });
    let outline = outline.ok_or("the plan could not be built")?;
    let live = fetch_live(targets, &state::needs_of(&outline), ui).await?;
    let mut facts = ClusterInventories::default();
    for cluster in targets.clients.keys() {
        facts.by_cluster.insert(cluster.clone(), live.inventory(cluster));
    }
    let (graph, diags) = graph::build(loaded, BuildOptions { facts: Some(&facts), intents_only: false });
    // Only the expansion reads the typed inventories: freed now, their memory serves the
    // prediction (tens of MB for a thousand StatefulSets) instead of adding to the peak.
    drop(facts);
    if diags.has_errors() {
        ui.diagnostics(&diags.sorted());
        return Err("the plan is not valid against the live cluster state".into());
    }
    let graph = graph.ok_or("the plan could not be built")?;
    let mut live = live;
    crate::cloud::read::add_efs_state(&graph, &targets.cloud, &mut live).await;
    let (states, changes) = state::predict(&graph, &live);
    Ok(Prepared { graph, live, states, changes })
}

/// Reads the live state a plan is checked against. The reads are plain lists, so a
/// failure is most likely transient (throttling, an API server restart): try a few times,
/// but not for what retrying cannot heal (TLS, credentials, permissions, missing kinds),
/// and only once more for a refused connection.
pub(crate) async fn fetch_live(
    targets: &Targets,
    needs: &BTreeSet<state::ListNeed>,
    ui: &dyn Frontend,
) -> Result<LiveState, String> {
    let mut delay = Duration::from_millis(250);
    let (mut attempt, mut refused) = (0, 0);
    loop {
        attempt += 1;
        let error = match state::fetch(&targets.clients, needs).await {
            Ok(live) => return Ok(live),
            Err(error) => error,
        };
        refused += u32::from(error.kind == live::FailureKind::Refused);
        let heals = error.kind == live::FailureKind::Transient || refused == 1;
        let message = format!("{}{}", error.message, targets.where_is(&error.cluster));
        if !heals || attempt == FETCH_ATTEMPTS {
            return Err(message);
        }
        ui.notice(Notice::Warning(&format!("reading the live state failed, retrying in {delay:?}: {message}")));
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

const FETCH_ATTEMPTS: u32 = 5;

/// What `plan` computed: the plan, the clusters it reached and what it would change.
pub struct Planned {
    pub loaded: LoadedPlan,
    pub clusters: BTreeMap<String, Option<String>>,
    pub targets: Targets,
    pub prepared: Prepared,
    /// Cloud state the plan depends on (EFS replication lag against the RPO).
    pub cloud: CloudReport,
}

impl Planned {
    /// Exit status like `terraform plan -detailed-exitcode`: 0 no changes, 1 blocked, 2 changes.
    pub fn detailed_status(&self) -> i32 {
        let report = self.prepared.report();
        if !report.blocked().is_empty() {
            1
        } else if report.to_do() == 0 {
            0
        } else {
            2
        }
    }
}

/// Computes what a plan would do to its clusters. The plan's problems come back as
/// diagnostics (also given to `ui`); what stops planning otherwise is an error.
pub async fn plan(
    plan_path: &Path,
    options: &TargetOptions,
    namespace: Option<&str>,
    ui: &dyn Frontend,
) -> Result<Result<Planned, Diagnostics>, String> {
    let (loaded, diags) = lang::load_plan(plan_path);
    ui.diagnostics(&diags);
    let Some(mut loaded) = loaded.filter(|_| !diags.has_errors()) else { return Ok(Err(diags)) };
    if let Some(ns) = namespace {
        let [only] = loaded.plan.clusters.as_mut_slice() else {
            return Err("-n/--namespace applies to one-cluster plans; name namespaces in the plan instead".into());
        };
        only.namespace = Some(ns.to_string());
    }
    let clusters = target::plan_clusters(&loaded);
    let targets = target::connect(plan_path, &clusters, options).await?;
    let prepared = prepare(&loaded, &targets, ui).await?;
    let rpo = loaded.plan.objectives.as_ref().and_then(|o| o.rpo.as_ref()).map(|r| r.value.0);
    let cloud = crate::cloud::report::read(&prepared.graph, rpo, &prepared.live, &targets.cloud).await;
    Ok(Ok(Planned { loaded, clusters, targets, prepared, cloud }))
}

/// A reviewed plan, saved with `dr plan --out`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    pub kind: String,
    pub format: u32,
    pub plan_path: PathBuf,
    pub plan_name: String,
    pub plan_digest: String,
    pub accept_data_loss: bool,
    /// The expanded steps ([`crate::graph::saved`]).
    pub graph: Value,
    pub clusters: BTreeMap<String, Option<String>>,
    /// Every object read, at the version the plan was computed from.
    pub fingerprints: Vec<Fingerprint>,
}

pub const SAVED_PLAN_KIND: &str = "DrplanSavedPlan";

/// Saves what `plan` computed, with the versions of the objects it read, to `out`.
pub fn save(plan_path: &Path, planned: &Planned, out: &Path) -> Result<(), String> {
    let bytes = std::fs::read(plan_path).map_err(|e| format!("reading {}: {e}", plan_path.display()))?;
    let saved = SavedPlan {
        kind: SAVED_PLAN_KIND.into(),
        format: 1,
        plan_path: plan_path.to_path_buf(),
        plan_name: planned.loaded.plan.name().to_string(),
        plan_digest: checkpoint::digest(&bytes),
        accept_data_loss: planned.loaded.plan.accept_data_loss,
        graph: crate::graph::saved::to_json(&planned.prepared.graph),
        clusters: planned.clusters.clone(),
        fingerprints: planned.prepared.live.fingerprints(),
    };
    let mut text = serde_json::to_vec_pretty(&saved).map_err(|e| e.to_string())?;
    text.push(b'\n');
    std::fs::write(out, text).map_err(|e| format!("writing {}: {e}", out.display()))
}

/// Reads a file as a saved plan, if it is one.
pub fn read_saved(path: &Path) -> Option<Result<SavedPlan, String>> {
    let bytes = std::fs::read(path).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    (value.get("kind").and_then(Value::as_str) == Some(SAVED_PLAN_KIND)).then(|| {
        serde_json::from_value(value).map_err(|e| format!("{}: not a readable saved plan: {e}", path.display()))
    })
}

/// Every fingerprinted object that changed since the plan was saved, and how.
pub fn stale_objects(saved: &SavedPlan, now: &state::LiveState) -> Vec<String> {
    let current: BTreeMap<_, _> = now.fingerprints().into_iter().map(|f| (f.key.clone(), f)).collect();
    saved
        .fingerprints
        .iter()
        .filter_map(|then| match current.get(&then.key) {
            None => Some(format!("{} [{}] was deleted", then.key, then.key.cluster)),
            Some(now) if now.uid != then.uid => Some(format!(
                "{} [{}] was deleted and recreated (uid {} → {})",
                then.key, then.key.cluster, then.uid, now.uid
            )),
            Some(now) if now.resource_version != then.resource_version => Some(format!(
                "{} [{}] changed (resourceVersion {} → {})",
                then.key, then.key.cluster, then.resource_version, now.resource_version
            )),
            Some(_) => None,
        })
        .collect()
}
