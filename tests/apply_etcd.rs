//! The etcd runbook end to end on the simulated cluster: `dr apply plans/etcd-restore.yaml`
//! snapshots the member, stops the API server, restores and swaps the data directory,
//! restarts etcd and starts the API server again. Keys written before the snapshot are
//! served after it, a key written after it is gone, the member keeps its identity, the
//! old data directory is kept, the PDB is back. Then the same run crashed at every
//! transition, and with the answer of `restore` / `swap-data-dir` lost after the command
//! ran, resumes to the same end state without running a command twice.

mod apply_common;

use std::time::{Duration, Instant};

use apply_common::{Env, env, fast_config};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

const NS: &str = "kube-system";
const TLS: [&str; 4] = [
    "--endpoints=https://127.0.0.1:2379",
    "--cacert=/etc/etcd/pki/ca.crt",
    "--cert=/etc/etcd/pki/server.crt",
    "--key=/etc/etcd/pki/server.key",
];

/// (stdout, exit code) of a command in etcd-0, through kube's WebSocket client.
async fn exec(env: &Env, argv: &[&str]) -> (String, i32) {
    exec_in(env, "etcd-0", argv).await
}

async fn exec_in(env: &Env, pod: &str, argv: &[&str]) -> (String, i32) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let mut process = pods.exec(pod, argv.to_vec(), &AttachParams::default().stderr(false)).await.expect("exec");
    let mut stdout = String::new();
    process.stdout().unwrap().read_to_string(&mut stdout).await.unwrap();
    let status = process.take_status().unwrap().await.expect("status");
    (stdout, if status.status.as_deref() == Some("Success") { 0 } else { 1 })
}

async fn etcdctl(env: &Env, args: &[&str]) -> String {
    etcdctl_in(env, "etcd-0", args).await
}

async fn etcdctl_in(env: &Env, pod: &str, args: &[&str]) -> String {
    let mut argv = vec!["etcdctl"];
    argv.extend(TLS);
    argv.extend(args);
    let (out, code) = exec_in(env, pod, &argv).await;
    assert_eq!(code, 0, "etcdctl {args:?}");
    out
}

/// The keys the hosted control plane wrote before the runbook.
async fn seed(env: &Env) {
    for (key, value) in [("/registry/namespaces/default", "ns"), ("/registry/pods/default/web-0", "pod")] {
        assert_eq!(etcdctl(env, &["put", key, value]).await, "OK\n");
    }
}

/// What the tests compare: every key and value etcd serves, and the member list.
async fn etcd_state(env: &Env) -> (String, String) {
    (etcdctl(env, &["get", "/", "--prefix"]).await, etcdctl(env, &["member", "list"]).await)
}

/// Everything the issue asks of a finished restore; returns the etcd state.
async fn assert_restored(env: &Env, run_id: &str) -> (String, String) {
    let (keys, members) = etcd_state(env).await;
    assert_eq!(keys, "/registry/namespaces/default\nns\n/registry/pods/default/web-0\npod\n", "keys after the restore");
    assert!(members.contains(", started, etcd-0, https://etcd-0.etcd.kube-system.svc:2380,"), "{members}");
    let (_, kept) = exec(env, &["test", "-f", "/var/lib/etcd.before-restore/member/snap/db"]).await;
    assert_eq!(kept, 0, "the old data directory is kept as /var/lib/etcd.before-restore");
    let (_, leftover) = exec(env, &["test", "-e", "/var/lib/etcd-restored"]).await;
    assert_ne!(leftover, 0, "the restored directory was moved into place");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(env.client.clone(), NS);
    assert!(pdbs.get_opt("kube-apiserver-pdb").await.unwrap().is_some(), "the PDB is back");
    let apiserver = env.deployment(NS, "kube-apiserver").await;
    assert_eq!(apiserver.spec.unwrap().replicas, Some(2));
    assert_eq!(apiserver.status.unwrap().ready_replicas, Some(2), "kube-apiserver Ready");
    let record = env.run_record(run_id);
    let health = &record["steps"]["check-etcd-health"];
    assert_eq!(health["status"], "succeeded");
    let out = health["captured"]["output"]["stdout"].as_str().unwrap_or_default();
    assert!(out.contains("is healthy"), "{health}");
    (keys, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restore_loses_only_what_was_written_after_the_snapshot() {
    let env = env("etcd-restore", "etcd", fast_config()).await;
    seed(&env).await;
    // Stop right after the snapshot was taken and checked, while the API server still runs.
    let stopped = env.apply(&[("DRPLAN_FAILPOINT", "fail-step=etcd-restore/apiserver-down")]).await;
    assert_eq!(stopped.code, Some(1), "{}", env.dump_logs(&stopped));
    let run_id = env.run_ids().pop().unwrap();
    // The hosted cluster's controllers keep writing: this write is after the snapshot.
    etcdctl(&env, &["put", "/registry/late", "after-snapshot"]).await;
    let resumed = env.resume(&run_id).await;
    resumed.assert_success("dr resume");
    assert_restored(&env, &run_id).await;
    assert_eq!(etcdctl(&env, &["get", "/registry/late"]).await, "", "written after the snapshot: lost by the restore");
    assert!(resumed.stdout.contains("etcd-restore/restore") || resumed.stderr.contains("etcd-restore/restore"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restore_applies_in_one_go() {
    let env = env("etcd-restore", "etcd-once", fast_config()).await;
    seed(&env).await;
    let applied = env.apply(&[]).await;
    applied.assert_success("dr apply");
    let run_id = env.run_ids().pop().unwrap();
    assert_restored(&env, &run_id).await;
    let shown = format!("{}{}", applied.stdout, applied.stderr);
    assert!(shown.contains("is healthy"), "the exec output is shown in the summary\n{shown}");

    // Again: the kept directory of the first restore stops it before anything changes.
    let again = env.apply(&[]).await;
    assert_eq!(again.code, Some(1), "{}", env.dump_logs(&again));
    let second = env.run_ids().into_iter().find(|id| *id != run_id).unwrap();
    let record = env.run_record(&second);
    let error = record["steps"]["etcd-restore/preflight"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("/var/lib/etcd.before-restore exists"), "{error}");
    assert_eq!(record["steps"]["etcd-restore/snapshot"]["status"], "pending", "nothing ran after it");
    assert_eq!(env.deployment(NS, "kube-apiserver").await.spec.unwrap().replicas, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_transition_of_the_etcd_plan_resumes_to_the_same_end_state() {
    let reference = env("etcd-restore", "etcd-ref", fast_config()).await;
    seed(&reference).await;
    reference.apply(&[]).await.assert_success("uninterrupted dr apply");
    let expected = assert_restored(&reference, &reference.run_ids()[0]).await;
    drop(reference);

    let mut boundaries = 0;
    for k in 1.. {
        assert!(k < 300, "the run never completed without reaching the failpoint");
        let env = env("etcd-restore", &format!("etcd-crash-{k}"), fast_config()).await;
        seed(&env).await;
        let crashed = env.apply(&[("DRPLAN_FAILPOINT", &format!("kill-after-transition={k}"))]).await;
        if crashed.code == Some(0) {
            break;
        }
        assert_eq!(crashed.signal, Some(9), "k={k}: expected a SIGKILL\n{}", env.dump_logs(&crashed));
        boundaries += 1;
        let run_id = env.run_ids().pop().unwrap();
        let resumed = env.resume(&run_id).await;
        assert_eq!(resumed.code, Some(0), "k={k}: dr resume failed\n{}", env.dump_logs(&resumed));
        assert_eq!(assert_restored(&env, &run_id).await, expected, "k={k}: end state differs");
    }
    // 13 steps: a start and a finish each, captures, the final status.
    assert!(boundaries >= 27, "only {boundaries} transitions were crashed at");
}

/// `pods/exec` requests (create pods/exec) the sim has answered so far.
fn execs(env: &Env) -> usize {
    env.sim.requests().iter().filter(|r| r.subresource == "exec").count()
}

/// For the n-th exec request of the run: the command ran in the pod, then `dr` dies
/// before the answer arrives. Resume must not run it again unless its guard says so.
async fn crash_inside_exec(label: &str, n: usize, faults: bool) -> (Env, String) {
    let mut config = fast_config();
    if faults {
        config.faults.rules.push(drplan::sim::config::FaultRule {
            verb: Some("create".into()),
            resource: Some("pods".into()),
            response_latency: Some(Duration::from_secs(2)),
            ..Default::default()
        });
    }
    let env = env("etcd-restore", label, config).await;
    seed(&env).await;
    let before = execs(&env);
    let plan = env.plan.to_string_lossy().into_owned();
    let mut child = env.spawn(&["apply", &plan, "--auto-approve"], &[]);
    let deadline = Instant::now() + apply_common::DR_DEADLINE;
    while execs(&env) < before + n {
        assert!(Instant::now() < deadline, "exec {n} never came");
        assert!(child.try_wait().unwrap().is_none(), "dr apply ended before exec {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL dr apply");
    let _ = child.wait();
    env.sim.with_state(|state| state.config.faults.rules.clear());
    let run_id = env.run_ids().pop().unwrap();
    (env, run_id)
}

fn step_record(env: &Env, run_id: &str, step: &str) -> serde_json::Value {
    env.run_record(run_id)["steps"][step].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_of_restore_or_swap_resumes_without_running_them_twice() {
    let reference = env("etcd-restore", "etcd-exec-ref", fast_config()).await;
    seed(&reference).await;
    reference.apply(&[]).await.assert_success("uninterrupted dr apply");
    let expected = assert_restored(&reference, &reference.run_ids()[0]).await;
    drop(reference);
    // Exec requests in order: preflight, snapshot, verify, restore's guard, restore, swap's
    // guard, swap.
    for (n, step) in [(5, "etcd-restore/restore"), (7, "etcd-restore/swap-data-dir")] {
        let (env, run_id) = crash_inside_exec(&format!("etcd-exec-{n}"), n, true).await;
        assert_eq!(step_record(&env, &run_id, step)["status"], "running", "{step}: killed inside its exec");
        let resumed = env.resume(&run_id).await;
        assert_eq!(resumed.code, Some(0), "{step}: dr resume failed\n{}", env.dump_logs(&resumed));
        assert_eq!(assert_restored(&env, &run_id).await, expected, "{step}: end state differs");
        let skipped = step_record(&env, &run_id, step)["captured"]["skipped"].clone();
        assert!(skipped.is_string(), "{step}: its guard held, the command was not run again: {skipped}");
    }
}

/// The HA variant: three members restored from one snapshot, each with its own identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ha_restore_restores_every_member_with_its_own_identity() {
    let env = env("etcd-ha-restore", "etcd-ha", fast_config()).await;
    seed(&env).await;
    let members = "/registry/namespaces/default\nns\n/registry/pods/default/web-0\npod\n";
    assert_eq!(etcdctl_in(&env, "etcd-2", &["get", "/", "--prefix"]).await, members, "writes replicate");
    let stopped = env.apply(&[("DRPLAN_FAILPOINT", "fail-step=etcd-restore/apiserver-down")]).await;
    assert_eq!(stopped.code, Some(1), "{}", env.dump_logs(&stopped));
    let run_id = env.run_ids().pop().unwrap();
    etcdctl_in(&env, "etcd-1", &["put", "/registry/late", "after-snapshot"]).await;
    env.resume(&run_id).await.assert_success("dr resume");
    for (i, pod) in ["etcd-0", "etcd-1", "etcd-2"].iter().enumerate() {
        assert_eq!(etcdctl_in(&env, pod, &["get", "/", "--prefix"]).await, members, "{pod}: the snapshot's keys only");
        let list = etcdctl_in(&env, pod, &["member", "list"]).await;
        for other in 0..3 {
            let line = format!(", started, etcd-{other}, https://etcd-{other}.etcd.kube-system.svc:2380,");
            assert!(list.contains(&line), "{pod}: member list\n{list}");
        }
        assert!(list.lines().nth(i).unwrap().contains("https://127.0.0.1:2379"), "{pod} is itself\n{list}");
        let (_, kept) = exec_in(&env, pod, &["test", "-d", "/var/lib/etcd.before-restore/member"]).await;
        assert_eq!(kept, 0, "{pod}: old data directory kept");
    }
    // After the restore the members form one cluster again: a write reaches all three.
    etcdctl_in(&env, "etcd-0", &["put", "/registry/after", "restore"]).await;
    assert_eq!(etcdctl_in(&env, "etcd-2", &["get", "/registry/after", "--print-value-only"]).await, "restore\n");
    let apiserver = env.deployment(NS, "kube-apiserver").await;
    assert_eq!(apiserver.status.unwrap().ready_replicas, Some(2));
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(env.client.clone(), NS);
    assert!(pdbs.get_opt("kube-apiserver-pdb").await.unwrap().is_some(), "the PDB is back");
}
