//! Connecting to live clusters (kubeconfig and context, or in-cluster configuration).
//! Reading their state for a plan is [`crate::state`]'s job.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for a kube context (`None`: the current one) of a kubeconfig (`None`: the
/// default lookup, `KUBECONFIG` or `~/.kube/config`, or in-cluster config).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client, String> {
    let options = KubeConfigOptions { context: context.map(String::from), ..KubeConfigOptions::default() };
    let which = context.map(|c| format!(" for context {c}")).unwrap_or_default();
    let config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| format!("loading kube config{which}: {e}"))?
        }
        None if context.is_some() => {
            Config::from_kubeconfig(&options).await.map_err(|e| format!("loading kube config{which}: {e}"))?
        }
        None => Config::infer().await.map_err(|e| format!("loading kube config: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("creating a Kubernetes client: {e}"))
}
