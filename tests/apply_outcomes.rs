//! "Succeeded" means the service is back (issue 8): outcomes are verified, not assumed.
//! Against a cluster like a new user's (tests/fixtures/cluster/postgres: a 2-replica
//! postgres StatefulSet on a WaitForFirstConsumer class, its PDB, a pgbouncer
//! Deployment), in the simulated cluster.

mod apply_common;

use std::path::PathBuf;
use std::time::Duration;

use apply_common::{Env, KillOnDrop, env_at, fast_config, path_str, wait_child};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "db";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

async fn postgres_env(plan: &str, label: &str) -> Env {
    let plan = fixture(&format!("outcomes/{plan}.yaml"));
    env_at(fixture("cluster/postgres"), plan, label, fast_config()).await
}

fn claim(ordinal: usize) -> String {
    format!("data-postgres-{ordinal}")
}

/// Writes `postgres-N` onto each claim's volume.
fn seed(env: &Env) {
    for ordinal in 0..2 {
        env.sim.write_claim_data(NS, &claim(ordinal), format!("postgres-{ordinal}")).expect("data written");
    }
}

async fn set_cordoned(env: &Env, node: &str, cordoned: bool) {
    let patch = Patch::Merge(json!({ "spec": { "unschedulable": cordoned } }));
    Api::<Node>::all(env.client.clone()).patch(node, &PatchParams::default(), &patch).await.expect("cordon");
}

/// Takes a ready VolumeSnapshot `name` of `claim`, as a user's earlier backup.
async fn take_snapshot(env: &Env, name: &str, claim: &str) {
    let snapshot: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "volumeSnapshotClassName": "csi-aws-vsc", "source": { "persistentVolumeClaimName": claim } },
    }))
    .unwrap();
    env.snapshots(NS).create(&PostParams::default(), &snapshot).await.expect("snapshot created");
    env.eventually("the backup is ready", Duration::from_secs(30), || async {
        let s = env.snapshots(NS).get(name).await.map_err(|e| e.to_string())?;
        if s.data.pointer("/status/readyToUse") == Some(&json!(true)) { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
}

fn run_status(env: &Env, run_id: &str) -> String {
    let record = env.run_record(run_id);
    record["status"].as_str().unwrap_or_default().to_string()
}

/// Item 1: a restore from a snapshot that nothing takes and that does not exist is
/// refused by `dr plan`, and, when the snapshot vanishes after the plan was approved, at
/// execution time: the step fails and no claim is created to sit Pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_from_a_missing_snapshot_is_refused_at_plan_and_at_execution() {
    let env = postgres_env("postgres-old-backup", "missing-snapshot").await;
    seed(&env);
    let plan = path_str(&env.plan);
    let planned = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(planned.code, Some(1), "{}", env.dump_logs(&planned));
    assert!(planned.stderr.contains("restore_source_missing"), "{}", planned.stderr);
    assert!(planned.stderr.contains("old-backup"), "{}", planned.stderr);

    take_snapshot(&env, "old-backup", &claim(0)).await;
    // The restore fails once (injected), after its claim was deleted.
    let failed = env.apply(&[("DRPLAN_FAILPOINT", "fail-step=restore-0")]).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().unwrap_or_else(|| panic!("run id: {}", env.dump_logs(&failed)));
    // Meanwhile the backup is deleted.
    env.snapshots(NS).delete("old-backup", &Default::default()).await.expect("backup deleted");
    env.eventually("the backup is gone", Duration::from_secs(30), || async {
        match env.snapshots(NS).get_opt("old-backup").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;

    let resumed = env.resume(&run_id).await;
    assert_eq!(resumed.code, Some(1), "{}", env.dump_logs(&resumed));
    assert!(resumed.stderr.contains("VolumeSnapshot old-backup does not exist"), "{}", resumed.stderr);
    assert!(env.pvcs(NS).get_opt(&claim(0)).await.unwrap().is_none(), "no claim was created from nothing");
    assert_eq!(run_status(&env, &run_id), "failed");
}

/// Item 2: a run whose workload does not come back Ready fails with the reason the pods
/// give (here: every node cordoned), pointing at `dr resume` and `dr rollback`; once the
/// cause is gone, resuming verifies the outcome and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fails_when_the_restored_workload_is_not_ready_and_says_why() {
    let mut env = postgres_env("postgres-restore", "not-ready").await;
    seed(&env);
    let short = env.dir.join("plan.yaml");
    let text = std::fs::read_to_string(&env.plan).unwrap().replace("timeout: 1m", "timeout: 4s");
    std::fs::write(&short, text).unwrap();
    env.plan = short;
    let plan = path_str(&env.plan);
    let args = ["apply", plan.as_str(), "--auto-approve"];
    let child = KillOnDrop(Some(env.spawn(&args, &[])));
    // Once the snapshots are taken, the nodes are cordoned: the restored pods cannot start.
    env.eventually("the run takes its snapshots", Duration::from_secs(60), || async {
        let n = env.snapshots(NS).list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        if n == 2 { Ok(()) } else { Err(format!("{n} snapshots")) }
    })
    .await;
    for node in ["node-a", "node-b", "node-c"] {
        set_cordoned(&env, node, true).await;
    }
    let failed = wait_child(child).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().expect("run id");
    assert!(failed.stderr.contains("is not Ready after"), "{}", failed.stderr);
    assert!(failed.stderr.contains("0/2 ready"), "{}", failed.stderr);
    assert!(failed.stderr.contains("FailedScheduling"), "the pod's own reason: {}", failed.stderr);
    assert!(failed.stderr.contains("were unschedulable"), "{}", failed.stderr);
    assert!(failed.stderr.contains(&format!("dr resume {run_id}")), "{}", failed.stderr);
    assert!(failed.stderr.contains(&format!("dr rollback {run_id}")), "{}", failed.stderr);
    assert_eq!(run_status(&env, &run_id), "failed");

    for node in ["node-a", "node-b", "node-c"] {
        set_cordoned(&env, node, false).await;
    }
    env.resume(&run_id).await.assert_success("dr resume once the nodes are back");
    let claims = env.claims(NS).await;
    for ordinal in 0..2 {
        let state = &claims[&claim(ordinal)];
        assert_eq!((state.phase.as_str(), state.capacity.as_str()), ("Bound", "20Gi"), "{state:?}");
        assert_eq!(state.data.as_deref(), Some(format!("postgres-{ordinal}").as_str()));
    }
}

/// Item 3: a rollback whose workload cannot come back (its original volume's zone has
/// no schedulable node) fails loudly with the reason instead of reporting success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_waits_for_ready_and_fails_loudly_when_not() {
    let mut env = postgres_env("postgres-restore", "rollback-not-ready").await;
    env.step_timeout = "4s";
    seed(&env);
    let failing = "restore-postgres/restore-data-postgres-0";
    let failed = env.apply(&[("DRPLAN_FAILPOINT", &format!("fail-step={failing}"))]).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().expect("run id");
    // The node of data-postgres-0's original volume (us-east-1a) is cordoned.
    set_cordoned(&env, "node-a", true).await;

    let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
    assert_eq!(rolled_back.code, Some(1), "{}", env.dump_logs(&rolled_back));
    assert!(rolled_back.stderr.contains("volume node affinity conflict (zone us-east-1a)"), "{}", rolled_back.stderr);
    assert!(rolled_back.stderr.contains("StatefulSet postgres is not Ready"), "{}", rolled_back.stderr);
    assert!(!rolled_back.stderr.contains("succeeded"), "{}", rolled_back.stderr);
    assert_ne!(run_status(&env, &run_id), "rolled_back");

    // With the node back, continuing the rollback finishes it.
    set_cordoned(&env, "node-a", false).await;
    env.step_timeout = "2m";
    env.dr(&["rollback", &run_id], &[]).await.assert_success("dr rollback once the node is back");
    assert_eq!(run_status(&env, &run_id), "rolled_back");
    let claims = env.claims(NS).await;
    assert_eq!(claims[&claim(0)].data.as_deref(), Some("postgres-0"));
}

/// Item 4: a workload that starts mounting claim 0 while the run waits for its
/// snapshots makes the barrier refuse, and no claim of the entry is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claim_is_deleted_unless_every_claim_of_the_entry_is_safe() {
    let env = postgres_env("postgres-restore", "barrier").await;
    seed(&env);
    // Snapshots take long enough here for a pod to appear while the run waits for them.
    env.sim.with_state(|s| s.config.speed = 2.0);
    let plan = path_str(&env.plan);
    let child = KillOnDrop(Some(env.spawn(&["apply", plan.as_str(), "--auto-approve"], &[])));
    env.eventually("the run takes its snapshots", Duration::from_secs(60), || async {
        let n = env.snapshots(NS).list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        if n >= 1 { Ok(()) } else { Err(format!("{n} snapshots")) }
    })
    .await;
    let intruder: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "report-job", "namespace": NS },
        "spec": {
            "containers": [{ "name": "psql", "image": "postgres:16" }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim(0) } }],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.client.clone(), NS).create(&PostParams::default(), &intruder).await.expect("pod");
    let refused = wait_child(child).await;
    assert_eq!(refused.code, Some(1), "{}", env.dump_logs(&refused));
    assert!(refused.stderr.contains("report-job"), "names the pod: {}", refused.stderr);
    assert!(refused.stderr.contains(&claim(0)), "{}", refused.stderr);
    let deletions: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.verb == "delete" && r.resource == "persistentvolumeclaims")
        .collect();
    assert!(deletions.is_empty(), "no claim may be deleted: {deletions:?}");
    let claims = env.claims(NS).await;
    for ordinal in 0..2 {
        assert_eq!(claims[&claim(ordinal)].data.as_deref(), Some(format!("postgres-{ordinal}").as_str()));
    }
}

/// Item 7: after a successful run, re-plan exits 0 and a second apply changes nothing:
/// the PodDisruptionBudget set aside keeps its uid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_successful_run_the_set_aside_pdb_is_not_replaced_again() {
    let env = postgres_env("postgres-restore", "noop").await;
    seed(&env);
    env.apply(&[]).await.assert_success("dr apply");
    let pdbs = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        NS,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("policy", "v1", "PodDisruptionBudget"),
            "poddisruptionbudgets",
        ),
    );
    let uid = pdbs.get("postgres-pdb").await.expect("the PDB is back").metadata.uid;
    let claims = env.claims(NS).await;
    apply_common::assert_second_run_changes_nothing(&env).await;
    assert_eq!(pdbs.get("postgres-pdb").await.expect("PDB").metadata.uid, uid, "the PDB was not recreated");
    assert_eq!(env.claims(NS).await, claims, "the claims were not touched");
}

/// Item 8: satisfied is decided against live state: after a run restored the claims at
/// 20Gi, the same plan asking for 30Gi shows the claims to replace, not "satisfied".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_plan_shows_the_difference_to_live_state() {
    let mut env = postgres_env("postgres-restore", "drift").await;
    seed(&env);
    env.apply(&[]).await.assert_success("dr apply");
    let bigger = env.dir.join("plan.yaml");
    let text = std::fs::read_to_string(&env.plan).unwrap().replace("resize: 20Gi", "resize: 30Gi");
    std::fs::write(&bigger, text).unwrap();
    env.plan = bigger;
    let planned = env.dr(&["plan", &path_str(&env.plan)], &[]).await;
    assert_eq!(planned.code, Some(2), "changes pending\n{}", env.dump_logs(&planned));
    let out = format!("{}{}", planned.stdout, planned.stderr);
    assert!(!out.contains("satisfied, applied by run"), "{out}");
    assert!(out.contains("-      storage: 20Gi") && out.contains("+      storage: 30Gi"), "the size change: {out}");
    assert!(out.contains("3 to replace"), "the two claims and the PDB set aside: {out}");
    env.apply(&[]).await.assert_success("dr apply of the bigger plan");
    let claims = env.claims(NS).await;
    for ordinal in 0..2 {
        let state = &claims[&claim(ordinal)];
        assert_eq!((state.phase.as_str(), state.capacity.as_str()), ("Bound", "30Gi"), "{state:?}");
        assert_eq!(state.data.as_deref(), Some(format!("postgres-{ordinal}").as_str()));
    }
}

/// Item 9: a run records how it reached its cluster (kubeconfig file, context, server;
/// no credentials). `dr commit` without `--kubeconfig`/`--context` uses them, and a
/// rollback pointed at another server is refused naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_remember_where_they_ran() {
    let env = postgres_env("postgres-restore", "where").await;
    seed(&env);
    let applied = env.apply(&[]).await;
    applied.assert_success("dr apply");
    let run_id = applied.run_id().expect("run id");
    let record = env.run_record(&run_id);
    let primary = &record["clusters"]["primary"];
    assert_eq!(primary["context"], json!(apply_common::CONTEXT), "{primary}");
    assert_eq!(primary["server"], json!(env.sim.url()), "{primary}");
    assert_eq!(primary["kubeconfig"], json!(path_str(&env.kubeconfig)), "{primary}");
    let kubeconfig = std::fs::read_to_string(&env.kubeconfig).unwrap();
    assert!(kubeconfig.contains("users"), "the kubeconfig has a user entry");
    let run_dir = env.state_dir.join("runs").join(&run_id);
    let text: String = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!text.contains("token") && !text.contains("client-key"), "no credentials in the record");

    // Another cluster's kubeconfig: refused, naming both servers, before anything runs.
    let elsewhere = env.dir.join("elsewhere.kubeconfig");
    std::fs::write(
        &elsewhere,
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n\
         clusters:\n- name: other\n  cluster: {server: 'http://127.0.0.1:9'}\n\
         contexts:\n- name: other\n  context: {cluster: other, user: other}\n\
         users:\n- name: other\n  user: {}\n",
    )
    .unwrap();
    let no_target = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dr"));
        command
            .args(args)
            .arg("--state-dir")
            .arg(&env.state_dir)
            .env("HOME", &env.dir)
            .env_remove("KUBECONFIG")
            .env_remove("DRPLAN_STATE_DIR")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let run = |mut command: std::process::Command| async move {
        tokio::task::spawn_blocking(move || command.output().expect("dr runs")).await.unwrap()
    };
    let mut refused = no_target(&["rollback", &run_id]);
    refused.arg("--kubeconfig").arg(&elsewhere).args(["--context", "other"]);
    let refused = run(refused).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&env.sim.url()) && stderr.contains("http://127.0.0.1:9"), "names both: {stderr}");
    assert!(stderr.contains("context `other`") && stderr.contains("context `e2e`"), "{stderr}");
    assert_eq!(run_status(&env, &run_id), "succeeded", "nothing was rolled back");
    assert_eq!(env.run_ids().len(), 1, "no rollback run was recorded");

    // No --kubeconfig, no --context, no KUBECONFIG or ~/.kube/config: the recorded ones.
    let committed = run(no_target(&["commit", &run_id, "--auto-approve"])).await;
    let stderr = String::from_utf8_lossy(&committed.stderr);
    assert_eq!(committed.status.code(), Some(0), "{stderr}");
    assert_eq!(run_status(&env, &run_id), "committed");
}

/// Item 5: deleting a claim whose volume reclaims with `Delete`, with no
/// `setReclaimPolicy` before it, is refused by `dr plan` and `dr apply` before anything
/// is scaled down or snapshotted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_that_would_lose_the_disk_is_refused_before_anything_runs() {
    let mut env = postgres_env("postgres-restore", "reclaim-delete").await;
    env.plan = fixture("invalid/delete-reclaimed-volume.yaml");
    let plan = path_str(&env.plan);
    for args in [vec!["plan", plan.as_str()], vec!["apply", plan.as_str(), "--auto-approve"]] {
        let refused = env.dr(&args, &[]).await;
        assert_eq!(refused.code, Some(1), "{}", env.dump_logs(&refused));
        assert!(refused.stderr.contains("delete_reclaims_volume"), "{}", refused.stderr);
        assert!(refused.stderr.contains("pv-postgres-0 reclaims with Delete"), "{}", refused.stderr);
    }
    let writes: Vec<_> =
        env.sim.requests().into_iter().filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch")).collect();
    assert!(writes.is_empty(), "nothing was changed: {writes:?}");
    assert!(env.run_ids().is_empty(), "no run started");
}
