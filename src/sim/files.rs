//! Files on simulated volumes: a tree of directories and files a volume (and a snapshot of
//! it) holds beside its opaque `payload`, so commands run in pods (`dr sim` exec) can
//! create, move and read them, and snapshots and restores carry them along.

use std::collections::BTreeMap;

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileNode {
    Dir,
    File(Vec<u8>),
}

/// Paths relative to the tree's root, `/`-separated without a leading slash (`a/b/c`);
/// the root itself (`""`) is an implicit directory. Parents of every entry exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileTree {
    entries: BTreeMap<String, FileNode>,
}

/// Why a file operation failed, worded like coreutils' `strerror`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    NotADirectory,
    IsADirectory,
    Exists,
    NotEmpty,
}

impl FsError {
    pub fn text(self) -> &'static str {
        match self {
            FsError::NotFound => "No such file or directory",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
            FsError::Exists => "File exists",
            FsError::NotEmpty => "Directory not empty",
        }
    }
}

/// `a/b` for `a` and `b`; either may be the root `""`.
pub fn join(parent: &str, name: &str) -> String {
    match (parent.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => parent.to_string(),
        _ => format!("{parent}/{name}"),
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl FileTree {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&FileNode> {
        if path.is_empty() {
            return Some(&FileNode::Dir);
        }
        self.entries.get(path)
    }

    pub fn exists(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.get(path), Some(FileNode::Dir))
    }

    pub fn is_file(&self, path: &str) -> bool {
        matches!(self.get(path), Some(FileNode::File(_)))
    }

    pub fn read(&self, path: &str) -> Result<&[u8], FsError> {
        match self.get(path) {
            Some(FileNode::File(bytes)) => Ok(bytes),
            Some(FileNode::Dir) => Err(FsError::IsADirectory),
            None => Err(FsError::NotFound),
        }
    }

    fn parent_ready(&self, path: &str) -> Result<(), FsError> {
        match self.get(parent_of(path)) {
            Some(FileNode::Dir) => Ok(()),
            Some(FileNode::File(_)) => Err(FsError::NotADirectory),
            None => Err(FsError::NotFound),
        }
    }

    /// Writes a file (creating or replacing it); its directory must exist.
    pub fn write(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), FsError> {
        self.parent_ready(path)?;
        if self.is_dir(path) {
            return Err(FsError::IsADirectory);
        }
        self.entries.insert(path.to_string(), FileNode::File(bytes));
        Ok(())
    }

    /// `mkdir`; with `parents`, like `mkdir -p` (no error when it exists).
    pub fn mkdir(&mut self, path: &str, parents: bool) -> Result<(), FsError> {
        if path.is_empty() || self.is_dir(path) {
            return if parents { Ok(()) } else { Err(FsError::Exists) };
        }
        if self.exists(path) {
            return Err(FsError::Exists);
        }
        if parents {
            self.mkdir(parent_of(path), true)?;
        } else {
            self.parent_ready(path)?;
        }
        self.entries.insert(path.to_string(), FileNode::Dir);
        Ok(())
    }

    /// Names directly inside a directory, sorted.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        match self.get(dir) {
            Some(FileNode::Dir) => {}
            Some(FileNode::File(_)) => return Err(FsError::NotADirectory),
            None => return Err(FsError::NotFound),
        }
        Ok(self
            .entries
            .keys()
            .filter(|p| is_under(p, dir) && parent_of(p) == dir)
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .collect())
    }

    /// Removes a file, or a directory with everything in it when `recursive`.
    pub fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        match self.get(path) {
            None => Err(FsError::NotFound),
            Some(FileNode::Dir) if !recursive => Err(FsError::IsADirectory),
            _ => {
                self.take(path);
                Ok(())
            }
        }
    }

    /// Removes `path` and everything under it, returning them relative to `path`.
    pub fn take(&mut self, path: &str) -> FileTree {
        let mut taken = FileTree::default();
        let keys: Vec<String> = self.entries.keys().filter(|p| *p == path || is_under(p, path)).cloned().collect();
        for key in keys {
            if let Some(node) = self.entries.remove(&key) {
                let relative = key[path.len()..].trim_start_matches('/').to_string();
                taken.entries.insert(relative, node);
            }
        }
        taken.entries.remove("");
        taken
    }

    /// A copy of `path` and everything under it, relative to `path` (a file is `""`).
    pub fn subtree(&self, path: &str) -> Option<(FileNode, FileTree)> {
        let node = self.get(path)?.clone();
        let mut copy = FileTree::default();
        for (key, value) in self.entries.iter().filter(|(p, _)| is_under(p, path)) {
            let relative = key[path.len()..].trim_start_matches('/').to_string();
            copy.entries.insert(relative, value.clone());
        }
        copy.entries.remove("");
        Some((node, copy))
    }

    /// Places `node` (and, for a directory, `contents`) at `path`, whose parent must exist
    /// and which must not exist.
    pub fn graft(&mut self, path: &str, node: FileNode, contents: FileTree) -> Result<(), FsError> {
        self.parent_ready(path)?;
        if self.exists(path) {
            return Err(FsError::Exists);
        }
        self.entries.insert(path.to_string(), node);
        for (relative, node) in contents.entries {
            self.entries.insert(join(path, &relative), node);
        }
        Ok(())
    }

    /// Every entry, for dumps and tests.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &FileNode)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_moves_with_its_contents() {
        let mut tree = FileTree::default();
        tree.mkdir("etcd/member/snap", true).unwrap();
        tree.write("etcd/member/snap/db", b"kv".to_vec()).unwrap();
        let (node, contents) = tree.subtree("etcd").unwrap();
        tree.take("etcd");
        tree.graft("etcd.before-restore", node, contents).unwrap();
        assert!(!tree.exists("etcd"));
        assert_eq!(tree.read("etcd.before-restore/member/snap/db").unwrap(), b"kv");
        assert_eq!(tree.list("").unwrap(), ["etcd.before-restore"]);
    }

    #[test]
    fn writes_need_their_directory_and_mkdir_refuses_an_existing_one() {
        let mut tree = FileTree::default();
        assert_eq!(tree.write("a/b", vec![]), Err(FsError::NotFound));
        tree.mkdir("a", false).unwrap();
        assert_eq!(tree.mkdir("a", false), Err(FsError::Exists));
        assert_eq!(tree.mkdir("a", true), Ok(()));
        tree.write("a/b", vec![1]).unwrap();
        assert_eq!(tree.remove("a", false), Err(FsError::IsADirectory));
        tree.remove("a", true).unwrap();
        assert!(tree.is_empty());
    }
}
