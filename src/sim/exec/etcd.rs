//! A simulated etcd member for containers whose image is etcd: the keys it serves live
//! in its data directory (`member/snap/db`, on whatever volume holds `--data-dir`), read
//! once when the member starts, like etcd reads its data directory only at start-up.
//! `etcdctl` (put, get, del, endpoint health, member list, snapshot save) talks to the
//! running member; `etcdutl` (snapshot status, snapshot restore) works on files.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::commands::Session;
use super::fs::{ContainerFs, normalize};
use crate::sim::files::FileNode;
use crate::sim::state::State;

/// A running member: what it loaded from its data directory at start-up.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Every member of its cluster (name, peer URLs), itself included.
    pub cluster: Vec<(String, Vec<String>)>,
    /// The pod running it: writes replicate to the running members of the same cluster
    /// in the same namespace.
    pub namespace: String,
    pub pod: String,
    /// Absolute data directory (normalized, no leading slash).
    pub data_dir: String,
    /// Identifies the database file this member opened: writes go there only while it is
    /// still the one at `data_dir` (a renamed-away directory keeps the old file).
    pub incarnation: u64,
    pub revision: u64,
    pub kvs: BTreeMap<String, String>,
    fs: ContainerFs,
}

/// The database file inside a data directory.
fn db_path(data_dir: &str) -> String {
    format!("{data_dir}/member/snap/db")
}

/// Whether a container runs etcd (by image name, e.g. `registry.k8s.io/etcd:3.5.15-0`).
pub fn is_etcd_image(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = repo.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(repo, |(r, _)| r);
    repo.rsplit('/').next().is_some_and(|name| name == "etcd")
}

/// `--flag=value` or `--flag value` in an argument list.
pub fn flag(args: &[&str], name: &str) -> Option<String> {
    let long = format!("--{name}");
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix(&long).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_string());
        }
        (*arg == long).then(|| args.get(i + 1).map(|v| v.to_string())).flatten()
    })
}

/// Arguments that are not flags (or flag values).
fn operands<'a>(args: &[&'a str], valued: &[&str]) -> Vec<&'a str> {
    let mut rest = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        if let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            skip = !name.contains('=') && valued.contains(&name);
            continue;
        }
        rest.push(*arg);
    }
    rest
}

/// Starts the member of an etcd pod: reads its data directory, or initializes one from
/// its flags when there is none. Called when the kubelet starts the pod (and, for pods
/// loaded already running, on first use).
pub fn start(state: &mut State, pod: &Value) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let Some(container) = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| is_etcd_image(c["image"].as_str().unwrap_or_default()))
    else {
        return;
    };
    let words: Vec<String> = ["command", "args"]
        .iter()
        .flat_map(|k| container[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect();
    let words: Vec<String> = words.iter().map(|w| expand_env(w, container, pod)).collect();
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let name = flag(&args, "name").unwrap_or_else(|| "default".into());
    let data_dir = normalize("", &flag(&args, "data-dir").unwrap_or_else(|| format!("{name}.etcd")));
    let peer_urls =
        split_urls(&flag(&args, "initial-advertise-peer-urls").unwrap_or_else(|| "http://localhost:2380".into()));
    let cluster =
        parse_cluster(&flag(&args, "initial-cluster").unwrap_or_else(|| format!("{name}={}", peer_urls.join(","))));
    let fs = ContainerFs::of(state, pod, container);
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let member = match read_db(&fs, state, &data_dir) {
        Some(db) => Member {
            name: db["name"].as_str().unwrap_or(&name).to_string(),
            peer_urls: db["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["name"] == db["name"])
                .map(|m| strings(&m["peerURLs"]))
                .unwrap_or_default(),
            cluster: db["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| (m["name"].as_str().unwrap_or_default().to_string(), strings(&m["peerURLs"])))
                .collect(),
            namespace,
            pod: pod_name,
            data_dir,
            incarnation: db["incarnation"].as_u64().unwrap_or_default(),
            revision: db["revision"].as_u64().unwrap_or(1),
            kvs: kvs_of(&db["kvs"]),
            fs,
        },
        None => {
            let incarnation = state.rng.next_u64() >> 12;
            let member = Member {
                name,
                peer_urls,
                cluster,
                namespace,
                pod: pod_name,
                data_dir,
                incarnation,
                revision: 1,
                kvs: BTreeMap::new(),
                fs,
            };
            let _ = member.fs.mkdir(state, &format!("{}/member/wal", member.data_dir), true);
            let _ = member.fs.mkdir(state, &format!("{}/member/snap", member.data_dir), true);
            persist(state, &member, true);
            member
        }
    };
    state.exec.etcd.insert(uid, member);
}

/// Starts the members of every running etcd pod in `namespace` that has none yet (pods
/// loaded from manifests already running), all before the first command reaches one.
pub fn start_loaded(state: &mut State, namespace: &str) {
    let pods = state.store.list(&crate::sim::registry::keys::pods(), Some(namespace));
    for pod in pods {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let etcd = pod["spec"]["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| is_etcd_image(c["image"].as_str().unwrap_or_default())));
        if etcd && pod["status"]["phase"] == "Running" && !state.exec.etcd.contains_key(uid) {
            start(state, &pod);
        }
    }
}

/// `$(VAR)` in a container's command, from its `env` (values and the pod's name and
/// namespace by `fieldRef`), as the kubelet expands it.
fn expand_env(word: &str, container: &Value, pod: &Value) -> String {
    let mut out = word.to_string();
    for env in container["env"].as_array().into_iter().flatten() {
        let Some(name) = env["name"].as_str() else { continue };
        let value = match (env["value"].as_str(), env["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Some(value), _) => value.to_string(),
            (None, Some("metadata.name")) => pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            (None, Some("metadata.namespace")) => pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
            _ => continue,
        };
        out = out.replace(&format!("$({name})"), &value);
    }
    out
}

/// `--initial-cluster`: `name=url,name=url`, a name listed once per peer URL.
fn parse_cluster(text: &str) -> Vec<(String, Vec<String>)> {
    let mut cluster: Vec<(String, Vec<String>)> = Vec::new();
    for (name, url) in text.split(',').filter_map(|m| m.trim().split_once('=')) {
        match cluster.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => cluster.push((name.to_string(), vec![url.to_string()])),
        }
    }
    cluster
}

fn split_urls(text: &str) -> Vec<String> {
    text.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

fn kvs_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

fn read_db(fs: &ContainerFs, state: &State, data_dir: &str) -> Option<Value> {
    let bytes = fs.read(state, &db_path(data_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn db_json(member: &Member) -> Value {
    json!({
        "incarnation": member.incarnation,
        "name": member.name,
        "members": member.cluster.iter().map(|(name, urls)| json!({ "name": name, "peerURLs": urls })).collect::<Vec<_>>(),
        "revision": member.revision,
        "kvs": member.kvs,
    })
}

/// Writes the member's keys to its database file, if that file is still the one it
/// opened (or `create`, for a new data directory).
fn persist(state: &mut State, member: &Member, create: bool) {
    let path = db_path(&member.data_dir);
    let current = read_db(&member.fs, state, &member.data_dir);
    let ours = current.as_ref().is_some_and(|db| db["incarnation"].as_u64() == Some(member.incarnation));
    if ours || (create && current.is_none()) {
        let bytes = serde_json::to_vec_pretty(&db_json(member)).unwrap_or_default();
        let _ = member.fs.write(state, &path, bytes);
    }
}

/// Applies a write to the other running members of `member`'s cluster (same namespace,
/// same membership), as raft would; each persists it to the database it opened.
fn replicate(state: &mut State, uid: &str, member: &Member, change: impl Fn(&mut BTreeMap<String, String>)) {
    let peers: Vec<String> = state
        .exec
        .etcd
        .iter()
        .filter(|(id, m)| *id != uid && m.namespace == member.namespace && m.cluster == member.cluster)
        .map(|(id, _)| id.clone())
        .collect();
    for id in peers {
        let Some(mut peer) = state.exec.etcd.get(&id).cloned() else { continue };
        let running = state
            .get(&crate::sim::registry::keys::pods(), &peer.namespace, &peer.pod)
            .is_some_and(|p| p["metadata"]["uid"] == id.as_str() && p["metadata"]["deletionTimestamp"].is_null());
        if !running {
            continue;
        }
        change(&mut peer.kvs);
        peer.revision = member.revision;
        persist(state, &peer, false);
        state.exec.etcd.insert(id, peer);
    }
}

/// The running member of the session's pod, started now if the pod was loaded running.
fn member_of(session: &Session<'_>, state: &mut State) -> Option<Member> {
    let uid = &session.container.pod_uid;
    if !state.exec.etcd.contains_key(uid) {
        let pod =
            state.get(&crate::sim::registry::keys::pods(), &session.container.namespace, &session.container.pod)?;
        start(state, &pod);
    }
    state.exec.etcd.get(uid).cloned()
}

/// A snapshot file's content: the keys at a revision, with a hash over them.
fn snapshot_json(revision: u64, kvs: &BTreeMap<String, String>) -> Value {
    json!({ "format": "drplan-sim-etcd-snapshot/v1", "revision": revision, "kvs": kvs, "hash": kv_hash(kvs) })
}

fn kv_hash(kvs: &BTreeMap<String, String>) -> String {
    let digest = Sha256::digest(serde_json::to_vec(kvs).unwrap_or_default());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and checks a snapshot file: (revision, keys, hash, size).
fn read_snapshot(
    session: &Session<'_>,
    state: &State,
    path: &str,
) -> Result<(u64, BTreeMap<String, String>, String, usize), String> {
    let bytes =
        session.fs.read(state, &session.path(path)).map_err(|e| format!("open {path}: {}", e.text().to_lowercase()))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| "snapshot file integrity check failed".to_string())?;
    let kvs = kvs_of(&value["kvs"]);
    let hash = value["hash"].as_str().unwrap_or_default().to_string();
    if value["format"] != "drplan-sim-etcd-snapshot/v1" || hash != kv_hash(&kvs) {
        return Err("snapshot file integrity check failed".into());
    }
    Ok((value["revision"].as_u64().unwrap_or_default(), kvs, hash, bytes.len()))
}

/// TLS files named on the command line must exist, as etcdctl reads them first.
fn check_tls_files(session: &mut Session<'_>, state: &State, args: &[&str]) -> bool {
    for name in ["cacert", "cert", "key"] {
        if let Some(path) = flag(args, name)
            && !matches!(session.fs.node(state, &session.path(&path)), Some(FileNode::File(_)))
        {
            session.err(&format!("Error: open {path}: no such file or directory"));
            return false;
        }
    }
    true
}

pub fn etcdctl(session: &mut Session<'_>, args: &[&str]) -> i32 {
    let valued = ["endpoints", "cacert", "cert", "key", "w", "write-out", "dial-timeout", "command-timeout", "user"];
    let words = operands(args, &valued);
    let endpoint = flag(args, "endpoints").unwrap_or_else(|| "127.0.0.1:2379".into());
    let endpoint = endpoint.split(',').next().unwrap_or_default().to_string();
    let shared = session.shared;
    let mut state = shared.lock();
    if !check_tls_files(session, &state, args) {
        return 1;
    }
    let Some(mut member) = member_of(session, &mut state) else {
        session.err(&format!("{endpoint} is unhealthy: failed to commit proposal: context deadline exceeded"));
        session.err("Error: unhealthy cluster");
        return 1;
    };
    let uid = session.container.pod_uid.clone();
    match words.as_slice() {
        ["put", key, value] => {
            member.revision += 1;
            member.kvs.insert(key.to_string(), value.to_string());
            replicate(&mut state, &uid, &member, |kvs| {
                kvs.insert(key.to_string(), value.to_string());
            });
            persist(&mut state, &member, false);
            state.exec.etcd.insert(uid, member);
            session.say("OK");
            0
        }
        ["get", key] => {
            let prefix = args.contains(&"--prefix");
            let values_only = args.contains(&"--print-value-only");
            let found: Vec<(String, String)> = member
                .kvs
                .iter()
                .filter(|(k, _)| if prefix { k.starts_with(key) } else { k == key })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in found {
                if !values_only {
                    session.say(&k);
                }
                session.say(&v);
            }
            0
        }
        ["del", key] => {
            let removed = member.kvs.remove(*key).is_some();
            if removed {
                replicate(&mut state, &uid, &member, |kvs| {
                    kvs.remove(*key);
                });
                member.revision += 1;
                persist(&mut state, &member, false);
                state.exec.etcd.insert(uid, member);
            }
            session.say(if removed { "1" } else { "0" });
            0
        }
        ["endpoint", "health"] => {
            session.say(&format!("{endpoint} is healthy: successfully committed proposal: took = 1.912ms"));
            0
        }
        ["member", "list"] => {
            for (name, urls) in &member.cluster {
                let id = &kv_hash(&BTreeMap::from([(name.clone(), urls.join(","))]));
                let client = if *name == member.name { endpoint.clone() } else { String::new() };
                session.say(&format!("{id}{id}, started, {name}, {}, {client}, false", urls.join(",")));
            }
            0
        }
        ["snapshot", "save", path] => {
            let bytes = serde_json::to_vec(&snapshot_json(member.revision, &member.kvs)).unwrap_or_default();
            let target = session.path(path);
            let written = session.fs.write(&mut state, &target, bytes);
            drop(state);
            match written {
                Ok(()) => {
                    session.say(&format!("Snapshot saved at {path}"));
                    0
                }
                Err(e) => {
                    session.err(&format!("Error: could not open {path}.part ({})", e.text().to_lowercase()));
                    1
                }
            }
        }
        _ => {
            session.err(&format!("Error: unknown command {:?} for \"etcdctl\" (simulated: put, get, del, endpoint health, member list, snapshot save)", words.join(" ")));
            1
        }
    }
}

pub fn etcdutl(session: &mut Session<'_>, args: &[&str]) -> i32 {
    let valued = [
        "data-dir",
        "name",
        "initial-cluster",
        "initial-cluster-token",
        "initial-advertise-peer-urls",
        "w",
        "write-out",
        "wal-dir",
    ];
    let words = operands(args, &valued);
    let shared = session.shared;
    let mut state = shared.lock();
    match words.as_slice() {
        ["snapshot", "status", path] => match read_snapshot(session, &state, path) {
            Ok((revision, kvs, hash, size)) => {
                drop(state);
                let line = "+----------+----------+------------+------------+";
                session.say(line);
                session.say("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |");
                session.say(line);
                session.say(&format!("| {hash:>8} | {revision:>8} | {:>10} | {:>8} B |", kvs.len(), size));
                session.say(line);
                0
            }
            Err(e) => {
                drop(state);
                session.err(&format!("Error: {e}"));
                1
            }
        },
        ["snapshot", "restore", path] => {
            let name = flag(args, "name").unwrap_or_else(|| "default".into());
            let data_dir_written = flag(args, "data-dir").unwrap_or_else(|| format!("{name}.etcd"));
            let data_dir = session.path(&data_dir_written);
            let peer_urls = split_urls(
                &flag(args, "initial-advertise-peer-urls").unwrap_or_else(|| "http://localhost:2380".into()),
            );
            let cluster = flag(args, "initial-cluster").unwrap_or_else(|| format!("{name}={}", peer_urls.join(",")));
            let listed = cluster
                .split(',')
                .filter_map(|m| m.split_once('='))
                .any(|(n, u)| n == name && peer_urls.iter().any(|p| p == u));
            let failure = if session.fs.node(&state, &data_dir).is_some() {
                Some(format!("data-dir {data_dir_written:?} exists"))
            } else if !listed {
                Some(format!("couldn't find local name {name:?} in the initial cluster configuration"))
            } else {
                None
            };
            let snapshot = read_snapshot(session, &state, path);
            let result = match (failure, snapshot) {
                (Some(why), _) | (None, Err(why)) => Err(why),
                (None, Ok((revision, kvs, _, _))) => {
                    let incarnation = state.rng.next_u64() >> 12;
                    let member = Member {
                        name: name.clone(),
                        peer_urls,
                        cluster: parse_cluster(&cluster),
                        namespace: session.container.namespace.clone(),
                        pod: session.container.pod.clone(),
                        data_dir: data_dir.clone(),
                        incarnation,
                        revision,
                        kvs,
                        fs: session.fs.clone(),
                    };
                    let made = session
                        .fs
                        .mkdir(&mut state, &format!("{data_dir}/member/snap"), true)
                        .and_then(|()| session.fs.mkdir(&mut state, &format!("{data_dir}/member/wal"), true));
                    made.map(|()| persist(&mut state, &member, true))
                        .map_err(|e| format!("mkdir {data_dir_written}: {}", e.text().to_lowercase()))
                }
            };
            drop(state);
            match result {
                Ok(()) => {
                    session.err(&format!("restoring snapshot path={path} wal-dir={data_dir_written}/member/wal data-dir={data_dir_written} snap-dir={data_dir_written}/member/snap"));
                    session.err(&format!("restored snapshot path={path} name={name}"));
                    0
                }
                Err(e) => {
                    session.err(&format!("Error: {e}"));
                    1
                }
            }
        }
        _ => {
            drop(state);
            session.err(&format!(
                "Error: unknown command {:?} for \"etcdutl\" (simulated: snapshot status, snapshot restore)",
                words.join(" ")
            ));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_images_are_recognized_by_repository_name() {
        assert!(is_etcd_image("registry.k8s.io/etcd:3.5.15-0"));
        assert!(is_etcd_image("quay.io/coreos/etcd@sha256:abc"));
        assert!(!is_etcd_image("registry.k8s.io/kube-apiserver:v1.30.4"));
        assert!(!is_etcd_image("example.com/etcd-operator:1"));
    }

    #[test]
    fn flags_are_read_in_both_spellings() {
        let args = ["--name", "etcd-0", "--data-dir=/var/lib/etcd", "snapshot"];
        assert_eq!(flag(&args, "name").as_deref(), Some("etcd-0"));
        assert_eq!(flag(&args, "data-dir").as_deref(), Some("/var/lib/etcd"));
        assert_eq!(operands(&args, &["name", "data-dir"]), ["snapshot"]);
    }
}
