//! Reaching a plan's clusters (live, or simulated from the manifests beside the plan) and
//! the AWS endpoints of its cloud steps; and reaching them again for a recorded run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::Client;

use crate::checkpoint::RunRecord;
use crate::cluster::live;
use crate::lang::LoadedPlan;
use crate::sim::{SimCluster, SimConfig, SimHandle};

/// How to reach the plan's clusters.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Context for a one-cluster plan (default: the cluster's `context:`).
    pub context: Option<String>,
    /// Run against simulated clusters loaded from the manifests beside the plan.
    pub sim: bool,
    /// Simulated seconds per real second with `sim`.
    pub sim_speed: f64,
    /// AWS endpoint to send requests to (a test endpoint such as `dr sim serve --aws`).
    pub aws_endpoint_url: Option<String>,
    /// Client-side rate limit of each cluster's API client.
    pub rate_limit: crate::cluster::throttle::RateLimit,
}

/// Connections to a plan's clusters; simulated clusters live as long as this does.
pub struct Targets {
    pub clients: BTreeMap<String, Client>,
    pub contexts: BTreeMap<String, String>,
    /// API server URL of each cluster, for messages.
    pub servers: BTreeMap<String, String>,
    /// How each cluster was reached, recorded in the run.
    pub reached: BTreeMap<String, crate::cluster::ClusterTarget>,
    pub sims: Vec<SimHandle>,
    /// AWS clients for cloud steps; with `sim`, the simulated AWS they talk to.
    pub cloud: Arc<crate::cloud::CloudAccess>,
    pub aws_sim: Option<crate::sim::aws::AwsHandle>,
}

impl Targets {
    /// No cluster reached yet; AWS through the standard chain (or the endpoint given).
    fn none(options: &TargetOptions) -> Targets {
        let cloud =
            crate::cloud::CloudOptions { endpoint_url: options.aws_endpoint_url.clone(), dummy_credentials: false };
        Targets {
            clients: BTreeMap::new(),
            contexts: BTreeMap::new(),
            servers: BTreeMap::new(),
            reached: BTreeMap::new(),
            sims: Vec::new(),
            cloud: Arc::new(crate::cloud::CloudAccess::new(cloud)),
            aws_sim: None,
        }
    }

    /// " (server URL, context NAME)" for messages about a cluster.
    pub fn where_is(&self, cluster: &str) -> String {
        match (self.servers.get(cluster), self.contexts.get(cluster)) {
            (Some(server), Some(context)) => format!(" (server {server}, context {context})"),
            (Some(server), None) => format!(" (server {server})"),
            _ => String::new(),
        }
    }

    /// What the run acts on, for its lock key.
    pub fn description(&self) -> String {
        if !self.sims.is_empty() {
            return format!("sim:{}", self.sims.iter().map(|s| s.url()).collect::<Vec<_>>().join(","));
        }
        self.contexts.values().cloned().collect::<Vec<_>>().join(",")
    }
}

/// The directories of cluster manifests `--sim` loads for a plan, by cluster name:
/// `plans/NAME/CLUSTER/` when it exists, else `plans/NAME/`.
pub fn sim_dump_dirs(plan_path: &Path, clusters: &BTreeMap<String, Option<String>>) -> BTreeMap<String, PathBuf> {
    let dir = plan_path.with_extension("");
    clusters
        .keys()
        .map(|name| {
            let sub = dir.join(name);
            (name.clone(), if sub.is_dir() { sub } else { dir.clone() })
        })
        .collect()
}

/// Connects to every cluster of the plan (or starts simulated ones).
pub async fn connect(
    plan_path: &Path,
    clusters: &BTreeMap<String, Option<String>>,
    options: &TargetOptions,
) -> Result<Targets, String> {
    let mut targets = Targets::none(options);
    if options.sim {
        for (name, manifests) in sim_dump_dirs(plan_path, clusters) {
            let config = SimConfig { speed: options.sim_speed, ..SimConfig::default() };
            let sim = SimCluster::start(std::slice::from_ref(&manifests), config)
                .await
                .map_err(|e| format!("starting the simulated cluster from {}: {e}", manifests.display()))?;
            let config = sim.kube_config().map_err(|e| e.to_string())?;
            targets.clients.insert(name.clone(), live::client_for(config, options.rate_limit)?);
            targets.contexts.insert(name.clone(), format!("sim:{}", sim.url()));
            targets.servers.insert(name.clone(), sim.url());
            let reached = crate::cluster::ClusterTarget { server: Some(sim.url()), ..Default::default() };
            targets.reached.insert(name.clone(), reached);
            targets.sims.push(sim);
        }
        let dir = plan_path.with_extension("");
        let clock = crate::sim::SimClock::new(jiff::Timestamp::now(), false, options.sim_speed);
        let sims: Vec<&SimHandle> = targets.sims.iter().collect();
        targets.aws_sim = crate::sim::aws::start_beside(&dir, &sims, clock, Default::default()).await?;
        if let Some(aws) = &targets.aws_sim {
            let options = crate::cloud::CloudOptions { endpoint_url: Some(aws.url()), dummy_credentials: true };
            targets.cloud = Arc::new(crate::cloud::CloudAccess::new(options));
        }
        return Ok(targets);
    }
    let single = clusters.len() == 1;
    for (name, context) in clusters {
        let from_flag = single && options.context.is_some();
        let context = if single { options.context.clone().or(context.clone()) } else { context.clone() };
        let origin = if from_flag {
            "--context".to_string()
        } else {
            format!("the plan's `clusters[].context` of cluster `{name}`")
        };
        let (client, server) =
            live::connect_limited(options.kubeconfig.as_deref(), context.as_deref(), &origin, options.rate_limit)
                .await?;
        let reached = crate::cluster::resolve_target(options.kubeconfig.as_deref(), context.as_deref())?;
        targets.reached.insert(name.clone(), reached);
        targets.contexts.insert(name.clone(), context.unwrap_or_else(|| "(current)".into()));
        targets.servers.insert(name.clone(), server);
        targets.clients.insert(name.clone(), client);
    }
    Ok(targets)
}

/// The plan's clusters and the context each names.
pub fn plan_clusters(loaded: &LoadedPlan) -> BTreeMap<String, Option<String>> {
    loaded.plan.clusters.iter().map(|c| (c.name.value.clone(), c.context.clone())).collect()
}

/// Connects again to the clusters a run was made against.
///
/// A simulated cluster started by `sim` lives only as long as the process that started
/// it, so a later resume or rollback cannot reach it; serve one with `dr sim serve` and
/// use its kubeconfig instead.
pub async fn reconnect(record: &RunRecord, options: &TargetOptions) -> Result<Targets, String> {
    if options.sim {
        return Err(format!(
            "--sim starts a new, empty simulated cluster; run {} cannot continue there. Use `dr sim serve` with --kubeconfig-out for runs that must outlive one process",
            record.run_id
        ));
    }
    if record.clusters.is_empty() {
        // Recorded before runs kept where they ran.
        return connect(Path::new("."), &saved_clusters(record), options).await;
    }
    let single = record.clusters.len() == 1;
    let mut targets = Targets::none(options);
    for (name, recorded) in &record.clusters {
        let context = options.context.as_deref().filter(|_| single);
        let now = crate::cluster::reach_again(name, recorded, options.kubeconfig.as_deref(), context)?;
        let origin = format!("the context run {} recorded for cluster `{name}`", record.run_id);
        let (client, server) =
            live::connect_limited(now.kubeconfig.as_deref(), now.context.as_deref(), &origin, options.rate_limit)
                .await?;
        targets.clients.insert(name.clone(), client);
        targets.servers.insert(name.clone(), server);
        targets.contexts.insert(name.clone(), now.context.clone().unwrap_or_else(|| "(in-cluster)".into()));
        targets.reached.insert(name.clone(), now);
    }
    Ok(targets)
}

/// The cluster → context map a run was made with (simulated targets have none).
fn saved_clusters(record: &RunRecord) -> BTreeMap<String, Option<String>> {
    record.plan["clusters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, context)| {
            let context = context.as_str().filter(|c| !c.starts_with("sim:") && *c != "(current)").map(String::from);
            (name.clone(), context)
        })
        .collect()
}

/// How an operation on a recorded run reaches its clusters: again, from the run's record
/// (a later `dr rollback`), or through connections already open (a drill rolling back the
/// run it just made, on clusters that may be simulated and live only in this process).
#[derive(Clone, Copy)]
pub enum Reach<'a> {
    Again(&'a TargetOptions),
    Connected(&'a Targets),
}

impl Reach<'_> {
    /// Clients of the clusters `record` ran against.
    pub async fn clients(self, record: &RunRecord) -> Result<BTreeMap<String, Client>, String> {
        Ok(self.connections(record).await?.0)
    }

    /// The clusters' clients and the AWS access (for cloud compensations).
    pub async fn connections(
        self,
        record: &RunRecord,
    ) -> Result<(BTreeMap<String, Client>, Arc<crate::cloud::CloudAccess>), String> {
        match self {
            Reach::Again(options) => {
                let targets = reconnect(record, options).await?;
                Ok((targets.clients.clone(), targets.cloud.clone()))
            }
            Reach::Connected(targets) => Ok((targets.clients.clone(), targets.cloud.clone())),
        }
    }
}
