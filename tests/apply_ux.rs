//! What `dr` tells a person about runs and connections (issue 8): errors naming the
//! server and context, machine-readable output, and cleaning up a run's snapshots.

mod apply_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use apply_common::{CASSANDRA_NS, DrResult, KillOnDrop, env, fast_config, seed_cassandra, wait_child};
use drplan::sim::SimConfig;
use drplan::sim::config::{FaultRule, Faults};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// `dr` with exactly these arguments (no defaults added) and a fresh state directory.
async fn dr_raw(args: &[&str], state_dir: &Path) -> DrResult {
    let child = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env("NO_COLOR", "1")
        .env_remove("DRPLAN_FAILPOINT")
        .env_remove("DRPLAN_STATE_DIR")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dr starts");
    wait_child(KillOnDrop(Some(child))).await
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drplan-ux-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A kubeconfig whose contexts point at `server`.
fn kubeconfig(dir: &Path, server: &str, contexts: &[&str]) -> PathBuf {
    let path = dir.join("kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": contexts.iter().map(|c| json!({"name": c, "context": {"cluster": "c", "user": "u"}})).collect::<Vec<_>>(),
    });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

fn plan() -> String {
    apply_common::plan_path("ebs-cassandra-restore").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_server_and_context_and_is_not_retried() {
    let dir = scratch("refused");
    // Port 1 on loopback: nothing listens there, the kernel refuses at once.
    let kc = kubeconfig(&dir, "https://127.0.0.1:1", &["prod"]);
    let result =
        dr_raw(&["plan", &plan(), "--kubeconfig", kc.to_str().unwrap(), "--context", "prod"], &dir.join("state")).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    for expected in ["https://127.0.0.1:1", "prod", "refused"] {
        assert!(result.stderr.contains(expected), "expected {expected:?} in:\n{}", result.stderr);
    }
    // One more attempt (an API server restarting), then no more.
    let retries = result.stderr.matches("retrying").count();
    assert!(retries <= 1, "a refused connection was retried {retries} times:\n{}", result.stderr);
    assert!(!result.stderr.contains("ServiceError"), "{}", result.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_is_called_one() {
    let env = env("ebs-cassandra-restore", "tls", fast_config()).await;
    // The sim serves plain HTTP: a TLS client gets no handshake from it.
    let https = env.sim.url().replace("http://", "https://");
    let dir = scratch("tls");
    let kc = kubeconfig(&dir, &https, &["prod"]);
    let result =
        dr_raw(&["plan", &plan(), "--kubeconfig", kc.to_str().unwrap(), "--context", "prod"], &dir.join("state")).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(result.stderr.contains(&https) && result.stderr.contains("TLS"), "{}", result.stderr);
    assert!(!result.stderr.contains("retrying"), "{}", result.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_is_not_retried() {
    let rule = FaultRule {
        verb: Some("list".into()),
        resource: Some("persistentvolumes".into()),
        status: Some(403),
        ..FaultRule::default()
    };
    let config = SimConfig { faults: Faults { seed: 1, rules: vec![rule] }, ..fast_config() };
    let env = env("ebs-cassandra-restore", "forbidden", config).await;
    let result = env.dr(&["plan", &plan()], &[]).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(result.stderr.contains("forbidden") || result.stderr.contains("Forbidden"), "{}", result.stderr);
    assert!(!result.stderr.contains("retrying"), "a 403 was retried:\n{}", result.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_context_lists_the_kubeconfigs_contexts() {
    let dir = scratch("context");
    let kc = kubeconfig(&dir, "http://127.0.0.1:1", &["staging", "e2e"]);
    // The plan names context arn:aws:eks:...:cluster/prod-data, which this kubeconfig lacks.
    let result = dr_raw(&["plan", &plan(), "--kubeconfig", kc.to_str().unwrap()], &dir.join("state")).await;
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    for expected in
        ["arn:aws:eks:us-east-1:123456789012:cluster/prod-data", "staging", "e2e", "clusters[].context", "--context"]
    {
        assert!(result.stderr.contains(expected), "expected {expected:?} in:\n{}", result.stderr);
    }
}

fn snapshot_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind), plural)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_names_the_run_and_commit_deletes_its_snapshots() {
    let env = env("ebs-cassandra-restore", "json", fast_config()).await;
    seed_cassandra(&env).await;
    // Snapshots of a Retain class keep their contents unless drplan deletes them.
    let classes: Api<DynamicObject> =
        Api::all_with(env.client.clone(), &snapshot_resource("VolumeSnapshotClass", "volumesnapshotclasses"));
    let retain = Patch::Merge(json!({"deletionPolicy": "Retain"}));
    classes.patch("csi-aws-vsc", &PatchParams::default(), &retain).await.expect("class patched");

    let planned = env.dr(&["plan", &plan(), "--format", "json"], &[]).await;
    assert_eq!(planned.code, Some(2), "{}", planned.stderr);
    let report: Value = serde_json::from_str(&planned.stdout).expect("plan JSON");
    let objects: Vec<&Value> = report["changes"].as_array().unwrap().iter().map(|c| &c["object"]).collect();
    assert!(!objects.is_empty());
    for object in objects {
        for key in object.as_object().unwrap().keys() {
            assert!(!key.contains('_'), "plan JSON key {key:?} is not camelCase: {object}");
        }
    }

    let command = env.command(&["apply", &plan(), "--auto-approve"], &[]);
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().replace("plain", "json")).collect();
    let mut json_command = Command::new(command.get_program());
    json_command.args(&args).env_remove("DRPLAN_STATE_DIR").stdout(Stdio::piped()).stderr(Stdio::piped());
    let applied = wait_child(KillOnDrop(Some(json_command.spawn().unwrap()))).await;
    applied.assert_success("dr apply --output json");
    let run_id = applied.run_id().expect("run id");
    let events: Vec<Value> =
        applied.stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert!(events.len() > 2, "{}", applied.stdout);
    assert!(events.iter().all(|e| e["run"] == run_id.as_str()), "events without the run id:\n{}", applied.stdout);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run", "no final run event:\n{}", applied.stdout);
    assert_eq!(last["status"], "succeeded");
    assert!(last["seconds"].as_f64().is_some_and(|s| s > 0.0), "{last}");

    let runs = env.dr(&["runs", "--output", "json"], &[]).await;
    runs.assert_success("dr runs --output json");
    let listed: Value = serde_json::from_str(&runs.stdout).expect("runs JSON");
    assert_eq!(listed[0]["runId"], run_id.as_str(), "{listed}");
    assert_eq!(listed[0]["status"], "succeeded", "{listed}");

    let snapshots: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), CASSANDRA_NS, &snapshot_resource("VolumeSnapshot", "volumesnapshots"));
    let contents: Api<DynamicObject> =
        Api::all_with(env.client.clone(), &snapshot_resource("VolumeSnapshotContent", "volumesnapshotcontents"));
    assert_eq!(snapshots.list(&ListParams::default()).await.unwrap().items.len(), 3);
    let committed = env.dr(&["commit", &run_id, "--auto-approve", "--delete-snapshots"], &[]).await;
    committed.assert_success("dr commit --delete-snapshots");
    env.eventually("the run's snapshots and their contents deleted", std::time::Duration::from_secs(30), || async {
        let left = snapshots.list(&ListParams::default()).await.unwrap().items.len();
        let contents_left = contents.list(&ListParams::default()).await.unwrap().items.len();
        if left == 0 && contents_left == 0 {
            Ok(())
        } else {
            Err(format!("{left} snapshots, {contents_left} contents"))
        }
    })
    .await;
}
