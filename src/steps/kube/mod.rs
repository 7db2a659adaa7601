//! Executing steps against the Kubernetes API: one function per step kind, each
//! idempotent (re-running adopts what exists or stops with a conflict naming the object)
//! and each re-checking its safety interlocks against live state before acting.

pub mod cleanup;
pub mod commit;
pub(crate) mod exec;
pub mod fresh;
mod objects;
pub(crate) mod outcome;
mod reconcilers;
pub mod undo;
mod volumes;
pub mod watches;
mod workloads;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::Value;

use crate::exec::{ErrorKind, StepContext, StepError, StepRunner};
use crate::graph::Step;
use crate::steps::Action;
use fresh::FreshLists;
use watches::{SharedWatches, Watched};

pub use exec::output_lines as exec_output_lines;
pub use workloads::original_replicas_key;

pub use crate::steps::manifests::{MANAGED_BY, RUN_LABEL, STEP_ANNOTATION};

/// Runs steps with one API client per plan cluster.
pub struct KubeRunner {
    pub clients: BTreeMap<String, Client>,
    /// The plan accepts data loss (PVCs may be deleted without a snapshot).
    pub accept_data_loss: bool,
    /// Timeout of waits whose step names none.
    pub default_timeout: Duration,
    /// One watch per cluster, kind and namespace, shared by the run's waits.
    pub watches: SharedWatches,
    /// Fresh lists shared by concurrent safety checks (one in flight per kind and namespace).
    pub fresh_lists: FreshLists,
}

impl KubeRunner {
    /// A step's own timeout, or the run's default.
    fn timeout_of(&self, written: &Option<crate::lang::Spanned<crate::lang::Duration>>) -> Duration {
        written.as_ref().map(|t| t.value.0).unwrap_or(self.default_timeout)
    }

    fn client(&self, step: &Step) -> Result<Client, StepError> {
        self.clients
            .get(&step.cluster)
            .cloned()
            .ok_or_else(|| StepError::failed(format!("no connection to cluster `{}`", step.cluster)))
    }
}

impl StepRunner for KubeRunner {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<(), StepError> {
        let Some(action) = step.action() else {
            return Err(StepError::failed(format!("intent `{}` was not expanded", step.id)));
        };
        let client = self.client(step)?;
        let k =
            Kube { client, ns: step.namespace.clone(), ctx, step, watches: &self.watches, fresh: &self.fresh_lists };
        match action {
            Action::Scale(p) => workloads::scale(&k, &p.workload, p.replicas).await,
            Action::ScaleBack(p) => workloads::scale_back(&k, &p.workload).await,
            Action::Wait(crate::steps::WaitParams {
                condition: crate::steps::WaitCondition::ClaimsSafeToDelete { claims },
                ..
            }) => volumes::check_claims_safe(&k, claims, self.accept_data_loss).await,
            Action::Wait(
                p @ crate::steps::WaitParams { condition: crate::steps::WaitCondition::PodsReady { workload }, .. },
            ) => {
                let replicas = workloads::expected_replicas(&k, workload);
                outcome::verify_ready(&k, workload, replicas, self.timeout_of(&p.timeout)).await
            }
            Action::Wait(p) => {
                let timeout = self.timeout_of(&p.timeout);
                within(timeout, &step.id, wait(&k, &p.condition)).await
            }
            Action::SnapshotPvc(p) => volumes::snapshot(&k, p).await,
            Action::SetReclaimPolicy(p) => volumes::set_reclaim_policy(&k, &p.claim, p.policy).await,
            Action::DeletePvc(p) => {
                let accepted = p.accept_data_loss || self.accept_data_loss;
                within(self.default_timeout, &step.id, volumes::delete_claim(&k, &p.claim.value, accepted)).await
            }
            Action::RestorePvc(p) => volumes::restore_claim(&k, p).await,
            Action::BindStaticPv(p) => volumes::bind_static(&k, p).await,
            Action::ResizePvc(p) => {
                let timeout = self.timeout_of(&p.timeout);
                within(timeout, &step.id, volumes::resize(&k, p)).await
            }
            Action::SaveObject(p) => objects::save(&k, &p.object).await,
            Action::DeleteObject(p) => objects::delete(&k, &p.object).await,
            Action::RestoreObject(p) => objects::restore(&k, &p.object).await,
            Action::SetWorkloadClaim(p) => workloads::set_claim(&k, &p.workload, &p.volume, &p.claim).await,
            Action::RestartPod(p) => {
                let timeout = self.timeout_of(&p.timeout);
                within(timeout, &step.id, workloads::restart_pod(&k, &p.pod)).await
            }
            Action::Exec(p) => exec::run(&k, p, self.timeout_of(&p.timeout)).await,
            Action::PauseReconciler(p) => reconcilers::pause(&k, p).await,
            Action::ResumeReconciler(p) => reconcilers::resume(&k, p).await,
            other => Err(StepError::new(
                ErrorKind::Unsupported,
                format!("`{}` steps cannot be executed by this build yet", other.kind_name()),
            )),
        }
    }
}

async fn wait(k: &Kube<'_>, condition: &crate::steps::WaitCondition) -> Result<(), StepError> {
    use crate::steps::WaitCondition as W;
    match condition {
        W::SnapshotReady { claim } => volumes::wait_snapshot_ready(k, &claim.value).await,
        W::PodsGone { workload } => workloads::wait_pods_gone(k, workload).await,
        W::PodsReady { workload } => workloads::wait_ready_at(k, workload, None).await,
        W::PvcBound { claim } => volumes::wait_bound(k, claim).await,
        _ => Err(StepError::new(ErrorKind::Unsupported, "cloud waits cannot be executed by this build yet")),
    }
}

/// Bounds a step by its timeout; a timeout is a failure, not a retry.
async fn within<F: std::future::Future<Output = Result<(), StepError>>>(
    timeout: Duration,
    id: &str,
    work: F,
) -> Result<(), StepError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            Err(StepError::failed(format!("step `{id}` timed out after {}", humantime::format_duration(timeout))))
        }
    }
}

/// Everything a step implementation needs: its client, namespace, checkpoint context.
pub(crate) struct Kube<'a> {
    pub client: Client,
    pub ns: String,
    pub ctx: &'a StepContext,
    pub step: &'a Step,
    pub watches: &'a SharedWatches,
    pub fresh: &'a FreshLists,
}

impl Kube<'_> {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn cluster_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    pub fn dynamic(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// Waits, on the run's shared watch of `api`'s kind and namespace, until `condition`
    /// holds for the object `name` (`None`: absent); returns the object as it then was.
    pub async fn until_named<K: Watched>(
        &self,
        api: &Api<K>,
        name: &str,
        condition: impl Fn(Option<&K>) -> bool,
    ) -> Result<Option<K>, watches::WatchError> {
        self.watches.until_named(&self.step.cluster, api, name, condition).await
    }

    /// Whether `step` acts in the same cluster and namespace as the running one: a plan
    /// over two clusters may name the same claim or workload in both (a DR cluster
    /// mirrors the primary).
    pub fn same_place(&self, step: &Step) -> bool {
        step.cluster == self.step.cluster && step.namespace == self.step.namespace
    }

    /// A name-safe token of the run id, for object names (`{run}` in templates).
    pub fn run_token(&self) -> String {
        run_token(&self.ctx.run_id)
    }

    /// Labels and annotations marking an object as created by this run and step.
    pub fn ownership(&self) -> Value {
        crate::steps::manifests::ownership(&label_value(&self.ctx.run_id), &self.step.id)
    }

    /// Whether an object carries this run's label.
    pub fn created_by_this_run(&self, metadata: &kube::core::ObjectMeta) -> bool {
        metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL)) == Some(&label_value(&self.ctx.run_id))
    }
}

/// `{run}` in names: the run id lowercased (DNS-1123 friendly), without the plan name.
pub fn run_token(run_id: &str) -> String {
    let lower = run_id.to_ascii_lowercase();
    let mut parts = lower.split('-');
    let stamp = parts.next().unwrap_or_default().to_string();
    let suffix = lower.rsplit('-').next().unwrap_or_default();
    format!("{stamp}-{suffix}")
}

/// A label value (at most 63 characters, alphanumeric at both ends).
pub fn label_value(text: &str) -> String {
    let cleaned: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    let tail = &cleaned[cleaned.len().saturating_sub(63)..];
    tail.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

pub use crate::steps::manifests::{clean_manifest, expand_name};

/// Maps API errors to step errors: throttling, conflicts and server errors are worth
/// retrying, the rest stop the step.
pub fn classify(context: &str, e: kube::Error) -> StepError {
    match &e {
        kube::Error::Api(status) if matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504) => {
            StepError::transient(format!("{context}: {}", status.message))
        }
        kube::Error::Api(status) => StepError::failed(format!("{context}: {} ({})", status.message, status.code)),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            StepError::transient(format!("{context}: {e}"))
        }
        _ => StepError::failed(format!("{context}: {e}")),
    }
}

/// Maps a failed watch to a step error: one the API server refuses (401, 403) will not
/// be granted by retrying, so the step fails with the server's message; a cut, throttled
/// or failing watch is worth retrying.
pub fn watch_failed(context: &str, error: &kube::runtime::watcher::Error) -> StepError {
    use kube::runtime::watcher::Error as W;
    let refused = match error {
        W::InitialListFailed(kube::Error::Api(s))
        | W::WatchStartFailed(kube::Error::Api(s))
        | W::WatchFailed(kube::Error::Api(s)) => Some((s.code, s.message.as_str())),
        W::WatchError(s) => Some((s.code, s.message.as_str())),
        _ => None,
    };
    match refused {
        Some((code @ (401 | 403), message)) => StepError::failed(format!("{context}: {message} ({code})")),
        _ => StepError::transient(format!("{context}: {error}")),
    }
}

/// [`watch_failed`] for the waits on the run's shared watches.
pub fn shared_wait_failed(context: &str, error: &watches::WatchError) -> StepError {
    if error.refused {
        StepError::failed(format!("{context}: {error}"))
    } else {
        StepError::transient(format!("{context}: {error}"))
    }
}

/// [`watch_failed`] for the waits of `kube::runtime::wait`.
pub fn wait_failed(context: &str, error: &kube::runtime::wait::Error) -> StepError {
    let kube::runtime::wait::Error::ProbeFailed(error) = error;
    watch_failed(context, error)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Creates an object; `Ok(false)` when one with that name already exists.
pub async fn create_or_exists<K>(api: &Api<K>, object: &K, what: &str) -> Result<bool, StepError>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(e) if is_already_exists(&e) => Ok(false),
        Err(e) => Err(classify(&format!("creating {what}"), e)),
    }
}
