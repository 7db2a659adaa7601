//! `exec` steps through `dr apply` on the simulated cluster: how each failure reads
//! (non-zero exit, timeout, pod or container not found), Secret values kept out of the
//! record and the output, choosing the pod by workload and ordinal or by selector, the
//! `dr validate` warning for an unguarded exec, and resume refusing to run an unguarded
//! exec whose answer was lost (the command ran exactly once).

mod apply_common;

use std::time::{Duration, Instant};

use apply_common::{Env, env, fast_config};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

/// A plan over the etcd example's cluster with one step, written into the env's directory.
fn plan_with(env: &mut Env, step: &str) {
    let text = format!(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata:\n  name: exec-test\nclusters:\n  - name: primary\n    context: e2e\n    namespace: kube-system\nsteps:\n{step}"
    );
    let path = env.dir.join("exec-test.yaml");
    std::fs::write(&path, text).unwrap();
    env.plan = path;
}

fn record(env: &Env) -> serde_json::Value {
    let run = env.run_ids().pop().expect("a run");
    env.run_record(&run)
}

async fn apply_one(label: &str, step: &str) -> (Env, apply_common::DrResult) {
    let mut env = env("etcd-restore", label, fast_config()).await;
    plan_with(&mut env, step);
    let result = env.apply(&[]).await;
    (env, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_zero_exit_fails_with_the_command_code_and_stderr() {
    let step = "  - id: read\n    exec:\n      pod: etcd-0\n      command: [sh, -c, 'echo started; cat /var/lib/missing']\n      idempotent: true\n";
    let (env, result) = apply_one("exec-nonzero", step).await;
    assert_eq!(result.code, Some(1), "{}", env.dump_logs(&result));
    let error = record(&env)["steps"]["read"]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("`sh -c 'echo started; cat /var/lib/missing'` in pod etcd-0/etcd exited with code 1"),
        "{error}"
    );
    assert!(error.contains("cat: /var/lib/missing: No such file or directory"), "{error}");
    assert_eq!(record(&env)["steps"]["read"]["captured"]["output"]["stdout"], "started\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_fails() {
    let step = "  - id: slow\n    exec:\n      pod: etcd-0\n      command: [sleep, '5']\n      timeout: 1s\n      idempotent: true\n";
    let started = Instant::now();
    let (env, result) = apply_one("exec-timeout", step).await;
    assert_eq!(result.code, Some(1), "{}", env.dump_logs(&result));
    let error = record(&env)["steps"]["slow"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("did not finish within 1s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pod_or_container_fails_the_step() {
    let step = "  - id: nopod\n    exec:\n      pod: etcd-9\n      command: ['true']\n      idempotent: true\n";
    let (env, result) = apply_one("exec-nopod", step).await;
    assert_eq!(result.code, Some(1));
    assert_eq!(record(&env)["steps"]["nopod"]["error"], "pod etcd-9 not found");
    let step = "  - id: nocontainer\n    exec:\n      pod: etcd-0\n      container: sidecar\n      command: ['true']\n      idempotent: true\n";
    let (env, result) = apply_one("exec-nocontainer", step).await;
    assert_eq!(result.code, Some(1));
    assert_eq!(record(&env)["steps"]["nocontainer"]["error"], "pod etcd-0 has no container sidecar (it has: etcd)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_secrets_value_is_redacted_in_the_record_and_the_output() {
    let secret = "placeholder server.key: not a real key or certificate";
    let step = "  - id: leak\n    exec:\n      workload: {kind: StatefulSet, name: etcd}\n      ordinal: 0\n      command: [sh, -c, 'cat /etc/etcd/pki/server.key; cat /etc/etcd/pki/server.key > /nope/x']\n      idempotent: true\n";
    let (env, result) = apply_one("exec-secret", step).await;
    assert_eq!(result.code, Some(1), "{}", env.dump_logs(&result));
    // Every file of the run (the base and the journal) as written to disk.
    let run_dir = env.state_dir.join("runs").join(env.run_ids().pop().unwrap());
    let text: String = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(text.contains("leak"), "the run's files were read:\n{text}");
    assert!(!text.contains(secret), "the record holds a secret:\n{text}");
    let output = &record(&env)["steps"]["leak"]["captured"]["output"];
    assert_eq!(output["stdout"], "[REDACTED]", "{output}");
    assert!(!result.stdout.contains(secret) && !result.stderr.contains(secret), "{}", env.dump_logs(&result));
    assert!(result.stdout.contains("[REDACTED]") || result.stderr.contains("[REDACTED]"), "{}", env.dump_logs(&result));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_can_be_chosen_by_selector() {
    let step = "  - id: pick\n    exec:\n      selector: {app: kube-apiserver}\n      command: [echo, picked]\n      idempotent: true\n";
    let (env, result) = apply_one("exec-selector", step).await;
    result.assert_success("dr apply");
    let output = &record(&env)["steps"]["pick"]["captured"]["output"];
    assert_eq!(output["stdout"], "picked\n");
    assert!(output["pod"].as_str().unwrap().starts_with("kube-apiserver-"), "{output}");
    assert!(result.stderr.contains("│ picked"), "the summary shows the output\n{}", result.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_warns_about_an_exec_without_a_guard() {
    let mut env = env("etcd-restore", "exec-validate", fast_config()).await;
    plan_with(
        &mut env,
        "  - id: count\n    exec:\n      pod: etcd-0\n      command: [sh, -c, 'echo ran >> /var/lib/etcd-backup/count']\n",
    );
    let plan = env.plan.to_string_lossy().into_owned();
    let validated = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["validate", &plan])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let shown = format!("{}{}", String::from_utf8_lossy(&validated.stdout), String::from_utf8_lossy(&validated.stderr));
    assert_eq!(validated.status.code(), Some(0), "a warning, not an error\n{shown}");
    assert!(
        shown.contains("drplan::exec::no_guard") && shown.contains("exec step `count` has no idempotency guard"),
        "{shown}"
    );
}

async fn count_file(env: &Env) -> String {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "kube-system");
    let mut process =
        pods.exec("etcd-0", vec!["cat", "/var/lib/etcd-backup/count"], &AttachParams::default()).await.unwrap();
    let mut out = String::new();
    process.stdout().unwrap().read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_does_not_run_an_unguarded_exec_whose_answer_was_lost() {
    let mut config = fast_config();
    config.faults.rules.push(drplan::sim::config::FaultRule {
        verb: Some("create".into()),
        resource: Some("pods".into()),
        response_latency: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let mut env = env("etcd-restore", "exec-unguarded", config).await;
    plan_with(
        &mut env,
        "  - id: count\n    exec:\n      pod: etcd-0\n      command: [sh, -c, 'echo ran >> /var/lib/etcd-backup/count']\n",
    );
    let plan = env.plan.to_string_lossy().into_owned();
    let mut child = env.spawn(&["apply", &plan, "--auto-approve"], &[]);
    let deadline = Instant::now() + apply_common::DR_DEADLINE;
    while !env.sim.requests().iter().any(|r| r.subresource == "exec") {
        assert!(Instant::now() < deadline, "the exec never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    env.sim.with_state(|state| state.config.faults.rules.clear());
    assert_eq!(count_file(&env).await, "ran\n", "the command ran before dr died");
    let run_id = env.run_ids().pop().unwrap();
    let resumed = env.resume(&run_id).await;
    assert_ne!(resumed.code, Some(0), "{}", env.dump_logs(&resumed));
    let error = record(&env)["steps"]["count"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("may already have run") && error.contains("does not run it again"), "{error}");
    assert_eq!(count_file(&env).await, "ran\n", "not run twice");
}

async fn exists(env: &Env, path: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "kube-system");
    let mut process = pods.exec("etcd-0", vec!["test", "-e", path], &AttachParams::default()).await.unwrap();
    process.take_status().unwrap().await.unwrap().status.as_deref() == Some("Success")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_runs_undo_commands_and_names_the_execs_it_cannot_undo() {
    let mut env = env("etcd-restore", "exec-rollback", fast_config()).await;
    let steps = "  - id: mark\n    exec:\n      pod: etcd-0\n      command: [mkdir, /var/lib/etcd-backup/mark]\n      creates: /var/lib/etcd-backup/mark\n      undo: [rm, -r, /var/lib/etcd-backup/mark]\n  - id: note\n    after: mark\n    exec:\n      pod: etcd-0\n      command: [sh, -c, 'echo x > /var/lib/etcd-backup/note']\n      creates: /var/lib/etcd-backup/note\n  - id: boom\n    after: note\n    exec:\n      pod: etcd-0\n      command: ['false']\n      idempotent: true\n";
    plan_with(&mut env, steps);
    let failed = env.apply(&[]).await;
    assert_eq!(failed.code, Some(1), "{}", env.dump_logs(&failed));
    assert!(exists(&env, "/var/lib/etcd-backup/mark").await && exists(&env, "/var/lib/etcd-backup/note").await);
    let run_id = env.run_ids().pop().unwrap();
    let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
    rolled_back.assert_success("dr rollback");
    assert!(!exists(&env, "/var/lib/etcd-backup/mark").await, "undo: ran");
    assert!(exists(&env, "/var/lib/etcd-backup/note").await, "no undo: left as it is");
    assert!(
        rolled_back
            .stderr
            .contains("Rollback cannot undo step note: it ran a command in a pod and names no `undo:` command"),
        "{}",
        env.dump_logs(&rolled_back)
    );
}

/// A command's output (and the command itself) comes from the cluster and the plan: its
/// control characters must not reach the terminal of whoever runs `dr apply`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_a_command_never_reach_the_terminal() {
    let step = "  - id: noisy\n    exec:\n      pod: etcd-0\n      command: [echo, \"\\e[2J\\e]0;pwned\\a\"]\n      idempotent: true\n";
    let (env, result) = apply_one("exec-escape", step).await;
    assert_eq!(record(&env)["steps"]["noisy"]["status"], "succeeded", "{}", env.dump_logs(&result));
    let output =
        record(&env)["steps"]["noisy"]["captured"]["output"]["stdout"].as_str().unwrap_or_default().to_string();
    assert!(output.contains('\u{1b}'), "the command printed the escape sequence: {output:?}");
    for (stream, text) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "raw control characters on {stream}: {text:?}");
    }
    assert!(result.stdout.contains("pwned") || result.stderr.contains("pwned"), "{}", env.dump_logs(&result));
}
