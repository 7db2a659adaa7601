//! Connecting to live clusters and reading the facts a plan needs from them.
//!
//! Reads with one list per (kind, namespace) the plan touches, never one GET per object,
//! so planning a thousand StatefulSets costs a handful of requests.

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::Inventory;

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

/// Lists StatefulSets, Deployments and claims in each namespace, and all PVs.
pub async fn fetch_inventory(client: &Client, namespaces: &BTreeSet<String>) -> Result<Inventory, String> {
    let mut inventory = Inventory::default();
    let params = ListParams::default();
    for ns in namespaces {
        let key = |name: Option<String>| (ns.clone(), name.unwrap_or_default());
        let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&params)
            .await
            .map_err(|e| list_error("StatefulSets", ns, e))?;
        for o in sts.items {
            inventory.statefulsets.insert(key(o.metadata.name.clone()), o);
        }
        let deps = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&params)
            .await
            .map_err(|e| list_error("Deployments", ns, e))?;
        for o in deps.items {
            inventory.deployments.insert(key(o.metadata.name.clone()), o);
        }
        let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .list(&params)
            .await
            .map_err(|e| list_error("PersistentVolumeClaims", ns, e))?;
        for o in pvcs.items {
            inventory.claims.insert(key(o.metadata.name.clone()), o);
        }
    }
    let pvs = Api::<PersistentVolume>::all(client.clone())
        .list(&params)
        .await
        .map_err(|e| list_error("PersistentVolumes", "", e))?;
    for o in pvs.items {
        inventory.volumes.insert(o.metadata.name.clone().unwrap_or_default(), o);
    }
    Ok(inventory)
}

fn list_error(what: &str, ns: &str, e: kube::Error) -> String {
    if ns.is_empty() { format!("listing {what}: {e}") } else { format!("listing {what} in {ns}: {e}") }
}
