//! Where a cluster is reached: the kubeconfig file, the context and the API server URL a
//! run used, recorded so resume, rollback and commit reach the same cluster again (and
//! refuse another one). Only locations are read here, never credentials.

use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;
use serde::{Deserialize, Serialize};

/// How a run reached one of its clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTarget {
    /// The kubeconfig file, absolute; `None` for the default lookup or in-cluster config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// The context used; `None` for in-cluster config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The API server URL the context points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl std::fmt::Display for ClusterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = self.server.as_deref().unwrap_or("an unknown server");
        match (&self.context, &self.kubeconfig) {
            (Some(context), Some(file)) => write!(f, "{server} (context `{context}` of {})", file.display()),
            (Some(context), None) => write!(f, "{server} (context `{context}`)"),
            (None, _) => write!(f, "{server} (in-cluster configuration)"),
        }
    }
}

/// Resolves which file, context and server `kubeconfig` (`None`: `KUBECONFIG` or
/// `~/.kube/config`) and `context` (`None`: the current one) stand for.
pub fn resolve(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<ClusterTarget, String> {
    let file = kubeconfig.map(absolute).or_else(default_file);
    let config = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?,
        None => match Kubeconfig::read() {
            Ok(config) => config,
            // No kubeconfig at all: in-cluster configuration, if any.
            Err(_) if context.is_none() => return Ok(in_cluster()),
            Err(e) => return Err(format!("reading the kubeconfig: {e}")),
        },
    };
    let name = context.map(String::from).or(config.current_context.clone());
    let Some(name) = name else {
        return Ok(ClusterTarget { kubeconfig: file, context: None, server: None });
    };
    let Some(named) = config.contexts.iter().find(|c| c.name == name) else {
        let known: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
        let file = file.as_deref().map(|f| format!(" {}", f.display())).unwrap_or_default();
        return Err(format!("context `{name}` is not in the kubeconfig{file} (it has: {})", known.join(", ")));
    };
    let cluster = named.context.as_ref().map(|c| &c.cluster);
    let server = cluster
        .and_then(|cluster| config.clusters.iter().find(|c| &c.name == cluster))
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone());
    Ok(ClusterTarget { kubeconfig: file, context: Some(name), server })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The file the default lookup reads, when it is one file.
fn default_file() -> Option<PathBuf> {
    match std::env::var_os("KUBECONFIG") {
        Some(value) => {
            let mut paths = std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty());
            match (paths.next(), paths.next()) {
                (Some(only), None) => Some(absolute(&only)),
                _ => None,
            }
        }
        None => {
            let home = std::env::var_os("HOME")?;
            let path = PathBuf::from(home).join(".kube").join("config");
            path.is_file().then_some(path)
        }
    }
}

fn in_cluster() -> ClusterTarget {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    ClusterTarget { kubeconfig: None, context: None, server: host.map(|h| format!("https://{h}:{port}")) }
}

/// Where to reach a cluster a run recorded, now: the file and context given on the
/// command line, else the recorded ones. Refused, naming both, when that points at
/// another API server than the run used.
pub fn reach_again(
    cluster: &str,
    recorded: &ClusterTarget,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<ClusterTarget, String> {
    let kubeconfig = kubeconfig.map(Path::to_path_buf).or(recorded.kubeconfig.clone());
    let context = context.map(String::from).or(recorded.context.clone());
    let now = resolve(kubeconfig.as_deref(), context.as_deref())?;
    if recorded.server.is_some() && now.server != recorded.server {
        return Err(format!(
            "cluster `{cluster}` of this run was reached at {recorded}, but the kubeconfig and context in use now point at {now}; \
             pass --kubeconfig and --context for the run's cluster (or leave them out to use the recorded ones)"
        ));
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_resolves_to_its_cluster_server_and_the_file_is_absolute() {
        let dir = std::env::temp_dir().join(format!("drplan-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kubeconfig");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: ca\n  cluster: {server: 'https://a.example:6443'}\n\
             - name: cb\n  cluster: {server: 'https://b.example:6443'}\n\
             contexts:\n- name: a\n  context: {cluster: ca, user: u}\n- name: b\n  context: {cluster: cb, user: u}\n\
             users:\n- name: u\n  user: {token: secret}\n",
        )
        .unwrap();
        let current = resolve(Some(&file), None).unwrap();
        assert_eq!(current.context.as_deref(), Some("a"));
        assert_eq!(current.server.as_deref(), Some("https://a.example:6443"));
        assert!(current.kubeconfig.as_ref().is_some_and(|p| p.is_absolute()));
        let b = resolve(Some(&file), Some("b")).unwrap();
        assert_eq!(b.server.as_deref(), Some("https://b.example:6443"));
        let recorded = serde_json::to_string(&b).unwrap();
        assert!(!recorded.contains("secret"), "no credentials: {recorded}");

        // Reaching the run's cluster again: the recorded context by default; another
        // context pointing at another server is refused, naming both.
        assert_eq!(reach_again("primary", &b, None, None).unwrap(), b);
        let refused = reach_again("primary", &b, None, Some("a")).unwrap_err();
        assert!(refused.contains("https://a.example:6443") && refused.contains("https://b.example:6443"), "{refused}");
        let unknown = resolve(Some(&file), Some("c")).unwrap_err();
        assert!(unknown.contains("context `c`") && unknown.contains("a, b"), "{unknown}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
