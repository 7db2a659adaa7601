//! Which store a command uses: `--state-store` (or `DRPLAN_STATE_STORE`), a local
//! directory or `kubernetes://NAMESPACE`, else `--state-dir`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::kube::{KubeStore, KubeStoreUrl};
use super::local::LocalDirStore;
use super::store::StateStore;

/// Where runs and locks are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Local(PathBuf),
    Kubernetes(KubeStoreUrl),
}

impl StoreLocation {
    /// `--state-store` when given (a `kubernetes://` URL or a directory), else `--state-dir`.
    pub fn choose(state_store: Option<&str>, state_dir: &Path) -> Result<StoreLocation, String> {
        match state_store.filter(|spec| !spec.is_empty()) {
            None => Ok(StoreLocation::Local(state_dir.to_path_buf())),
            Some(spec) => match KubeStoreUrl::parse(spec) {
                Some(url) => url.map(StoreLocation::Kubernetes),
                None if spec.contains("://") => {
                    Err(format!("--state-store {spec}: unknown scheme; use a directory or kubernetes://NAMESPACE"))
                }
                None => Ok(StoreLocation::Local(PathBuf::from(spec))),
            },
        }
    }

    /// Opens the store. A Kubernetes store reaches the cluster of `kubeconfig` and
    /// `context` (the defaults: `KUBECONFIG` or `~/.kube/config` and its current context,
    /// or the pod's service account in a cluster), like the plan's cluster.
    pub async fn open(&self, kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Arc<dyn StateStore>, String> {
        match self {
            StoreLocation::Local(dir) => Ok(Arc::new(LocalDirStore::new(dir))),
            StoreLocation::Kubernetes(url) => {
                let config = crate::cluster::live::load_config(kubeconfig, context, "--state-store")
                    .await
                    .map_err(|e| format!("--state-store {self}: {e}"))?;
                let store = KubeStore::new(config, url).map_err(|e| e.to_string())?;
                Ok(Arc::new(store))
            }
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Local(dir) => write!(f, "{}", dir.display()),
            StoreLocation::Kubernetes(url) => write!(f, "{}{}", super::kube::SCHEME, url.namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_store_option_wins_over_the_state_dir() {
        let dir = Path::new(".drplan");
        assert_eq!(StoreLocation::choose(None, dir).unwrap(), StoreLocation::Local(dir.into()));
        assert_eq!(StoreLocation::choose(Some(""), dir).unwrap(), StoreLocation::Local(dir.into()));
        assert_eq!(StoreLocation::choose(Some("/var/dr"), dir).unwrap(), StoreLocation::Local("/var/dr".into()));
        let kube = StoreLocation::choose(Some("kubernetes://dr"), dir).unwrap();
        assert_eq!(kube.to_string(), "kubernetes://dr");
        assert!(StoreLocation::choose(Some("s3://bucket"), dir).unwrap_err().contains("unknown scheme"));
    }
}
