//! A container's view of files: its root filesystem (ephemeral, gone with the pod) with
//! the pod's volumes mounted over it: claims as their backing volumes' trees (shared
//! with every pod mounting the claim, kept across restarts and copied by snapshots),
//! Secrets and ConfigMaps as read-only trees of their keys.

use serde_json::Value;

use crate::sim::files::{FileNode, FileTree, FsError};
use crate::sim::registry::ResourceKey;
use crate::sim::state::State;

/// What a mount point shows.
#[derive(Clone, Debug)]
pub enum Target {
    /// The container's own root filesystem (or an emptyDir): a tree in the exec state.
    Scratch(String),
    /// A claim's backing volume, by id.
    Volume(String),
    /// A read-only copy of a Secret's or ConfigMap's keys.
    ReadOnly(FileTree),
}

#[derive(Clone, Debug)]
pub struct Mount {
    /// Absolute path without trailing slash; `""` is `/`.
    pub at: String,
    pub target: Target,
}

/// Why a path operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    Fs(FsError),
    ReadOnly,
    Busy,
}

impl PathError {
    pub fn text(self) -> &'static str {
        match self {
            PathError::Fs(e) => e.text(),
            PathError::ReadOnly => "Read-only file system",
            PathError::Busy => "Device or resource busy",
        }
    }
}

impl From<FsError> for PathError {
    fn from(e: FsError) -> PathError {
        PathError::Fs(e)
    }
}

/// A container's mounts, most specific last.
#[derive(Clone, Debug)]
pub struct ContainerFs {
    pub mounts: Vec<Mount>,
}

/// `/a/./b/../c//` → `a/c` (relative to `/`), with `cwd` for relative paths.
pub fn normalize(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = if path.starts_with('/') { Vec::new() } else { cwd.split('/').collect() };
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join("/")
}

impl ContainerFs {
    /// The mounts of `container` in `pod` (JSON); unbound claims are left unmounted.
    pub fn of(state: &State, pod: &Value, container: &Value) -> ContainerFs {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = container["name"].as_str().unwrap_or_default();
        let mut mounts = vec![Mount { at: String::new(), target: Target::Scratch(format!("{uid}/{name}")) }];
        let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let Some(volume) = volumes.iter().find(|v| v["name"] == mount["name"]) else { continue };
            let at = normalize("", mount["mountPath"].as_str().unwrap_or_default());
            if let Some(target) = volume_target(state, ns, uid, volume) {
                mounts.push(Mount { at, target });
            }
        }
        // Longest mount point last, so the most specific one wins.
        mounts.sort_by_key(|m| if m.at.is_empty() { 0 } else { m.at.split('/').count() });
        ContainerFs { mounts }
    }

    /// Creates the directories mount points sit in, as the container runtime does.
    pub fn make_mount_points(&self, state: &mut State) {
        for mount in self.mounts.iter().filter(|m| !m.at.is_empty()) {
            let (index, inner) = self.resolve(mount.at.rsplit_once('/').map_or("", |(p, _)| p));
            if let Ok(tree) = self.tree_mut(state, index) {
                let _ = tree.mkdir(&inner, true);
            }
        }
    }

    /// The mount holding `path` and the path inside it.
    pub fn resolve(&self, path: &str) -> (usize, String) {
        for (i, mount) in self.mounts.iter().enumerate().rev() {
            if mount.at.is_empty() {
                return (i, path.to_string());
            }
            if path == mount.at {
                return (i, String::new());
            }
            if let Some(rest) = path.strip_prefix(&mount.at).and_then(|r| r.strip_prefix('/')) {
                return (i, rest.to_string());
            }
        }
        (0, path.to_string())
    }

    /// Whether `path` is a mount point (other than `/`).
    pub fn is_mount_point(&self, path: &str) -> bool {
        !path.is_empty() && self.mounts.iter().any(|m| m.at == path)
    }

    pub fn tree<'s>(&'s self, state: &'s State, index: usize) -> Option<&'s FileTree> {
        match &self.mounts[index].target {
            Target::Scratch(key) => state.exec.scratch.get(key),
            Target::Volume(id) => state.volumes.get(id).map(|v| &v.files),
            Target::ReadOnly(tree) => Some(tree),
        }
    }

    pub fn tree_mut<'s>(&'s self, state: &'s mut State, index: usize) -> Result<&'s mut FileTree, PathError> {
        match &self.mounts[index].target {
            Target::Scratch(key) => Ok(state.exec.scratch.entry(key.clone()).or_default()),
            Target::Volume(id) => {
                state.volumes.get_mut(id).map(|v| &mut v.files).ok_or(PathError::Fs(FsError::NotFound))
            }
            Target::ReadOnly(_) => Err(PathError::ReadOnly),
        }
    }

    /// The entry at an absolute (normalized) path; mount points are directories.
    pub fn node(&self, state: &State, path: &str) -> Option<FileNode> {
        if self.is_mount_point(path) {
            return Some(FileNode::Dir);
        }
        let (index, inner) = self.resolve(path);
        self.tree(state, index).map_or_else(|| inner.is_empty().then_some(FileNode::Dir), |t| t.get(&inner).cloned())
    }

    pub fn read(&self, state: &State, path: &str) -> Result<Vec<u8>, PathError> {
        match self.node(state, path) {
            Some(FileNode::File(bytes)) => Ok(bytes),
            Some(FileNode::Dir) => Err(FsError::IsADirectory.into()),
            None => Err(FsError::NotFound.into()),
        }
    }

    pub fn write(&self, state: &mut State, path: &str, bytes: Vec<u8>) -> Result<(), PathError> {
        let (index, inner) = self.resolve(path);
        if inner.is_empty() {
            return Err(FsError::IsADirectory.into());
        }
        Ok(self.tree_mut(state, index)?.write(&inner, bytes)?)
    }

    pub fn mkdir(&self, state: &mut State, path: &str, parents: bool) -> Result<(), PathError> {
        if self.is_mount_point(path) || path.is_empty() {
            return if parents { Ok(()) } else { Err(FsError::Exists.into()) };
        }
        if parents {
            // Parents may cross mount points (`mkdir -p /var/lib/etcd/member`).
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            self.mkdir(state, parent, true)?;
        }
        let (index, inner) = self.resolve(path);
        Ok(self.tree_mut(state, index)?.mkdir(&inner, parents)?)
    }

    /// Names in a directory, mount points below it included.
    pub fn list(&self, state: &State, path: &str) -> Result<Vec<String>, PathError> {
        let (index, inner) = self.resolve(path);
        let mut names = match self.tree(state, index) {
            Some(tree) => tree.list(&inner)?,
            None if inner.is_empty() => Vec::new(),
            None => return Err(FsError::NotFound.into()),
        };
        for mount in &self.mounts {
            let parent = mount.at.rsplit_once('/').map_or("", |(p, _)| p);
            if !mount.at.is_empty() && parent == path {
                names.push(mount.at.rsplit('/').next().unwrap_or_default().to_string());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub fn remove(&self, state: &mut State, path: &str, recursive: bool) -> Result<(), PathError> {
        if self.is_mount_point(path) || path.is_empty() {
            return Err(PathError::Busy);
        }
        let (index, inner) = self.resolve(path);
        Ok(self.tree_mut(state, index)?.remove(&inner, recursive)?)
    }

    /// A copy of what is at `path` (with its contents, for a directory).
    pub fn copy_out(&self, state: &State, path: &str) -> Result<(FileNode, FileTree), PathError> {
        let (index, inner) = self.resolve(path);
        let tree = self.tree(state, index).ok_or(PathError::Fs(FsError::NotFound))?;
        tree.subtree(&inner).ok_or(PathError::Fs(FsError::NotFound))
    }

    pub fn copy_in(&self, state: &mut State, path: &str, node: FileNode, contents: FileTree) -> Result<(), PathError> {
        if self.is_mount_point(path) {
            return Err(FsError::Exists.into());
        }
        let (index, inner) = self.resolve(path);
        Ok(self.tree_mut(state, index)?.graft(&inner, node, contents)?)
    }

    /// `rename(2)` within a filesystem, copy and delete across (like `mv`).
    pub fn rename(&self, state: &mut State, from: &str, to: &str) -> Result<(), PathError> {
        if self.is_mount_point(from) || from.is_empty() {
            return Err(PathError::Busy);
        }
        let (node, contents) = self.copy_out(state, from)?;
        let (from_index, _) = self.resolve(from);
        if matches!(self.mounts[from_index].target, Target::ReadOnly(_)) {
            return Err(PathError::ReadOnly);
        }
        self.copy_in(state, to, node, contents)?;
        self.remove(state, from, true)
    }
}

fn volume_target(state: &State, ns: &str, uid: &str, volume: &Value) -> Option<Target> {
    if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
        return state.claim_volume_id(ns, claim).ok().map(Target::Volume);
    }
    if let Some(secret) = volume["secret"]["secretName"].as_str() {
        let object = state.get(&ResourceKey::new("", "secrets"), ns, secret)?;
        return Some(Target::ReadOnly(keys_as_files(&object["data"], true)));
    }
    if let Some(map) = volume["configMap"]["name"].as_str() {
        let object = state.get(&ResourceKey::new("", "configmaps"), ns, map)?;
        return Some(Target::ReadOnly(keys_as_files(&object["data"], false)));
    }
    if volume.get("emptyDir").is_some() {
        let name = volume["name"].as_str().unwrap_or_default();
        return Some(Target::Scratch(format!("{uid}/volume/{name}")));
    }
    Some(Target::ReadOnly(FileTree::default()))
}

/// One file per key; Secret data is base64 in the API.
fn keys_as_files(data: &Value, base64: bool) -> FileTree {
    let mut tree = FileTree::default();
    for (key, value) in data.as_object().into_iter().flatten() {
        let text = value.as_str().unwrap_or_default();
        let bytes = if base64 {
            serde_json::from_value::<k8s_openapi::ByteString>(value.clone()).map(|b| b.0).unwrap_or_default()
        } else {
            text.as_bytes().to_vec()
        };
        let _ = tree.write(key, bytes);
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_are_normalized_against_the_working_directory() {
        assert_eq!(normalize("", "/var//lib/./etcd/"), "var/lib/etcd");
        assert_eq!(normalize("var/lib", "../tmp/x"), "var/tmp/x");
        assert_eq!(normalize("", "/.."), "");
    }
}
