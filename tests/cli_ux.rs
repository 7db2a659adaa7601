//! What a person sees from `dr` when things go wrong or are unclear (issue 8): broken
//! pipes, missing runs, help text, counts, diagnostics that point at the value to fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn dr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DRPLAN_STATE_DIR")
        .env_remove("DRPLAN_STATE_STORE")
        .output()
        .expect("dr runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_ux");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `dr` with its standard output closed by the reader before anything is written,
/// as `dr ... | head -0` does.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dr starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("dr ends");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_closed_pipe_ends_dr_quietly() {
    let plan = repo("plans/ebs-cassandra-restore.yaml");
    let cluster = repo("plans/ebs-cassandra-restore");
    for args in [
        vec!["schema"],
        vec!["graph", &plan, "--cluster-from", &cluster, "--format", "dot"],
        vec!["validate", &plan, "--cluster-from", &cluster],
    ] {
        let (code, stderr) = with_closed_stdout(&args);
        assert_ne!(code, Some(101), "dr {args:?} panicked:\n{stderr}");
        assert!(!stderr.contains("panicked"), "dr {args:?}:\n{stderr}");
        assert!(stderr.is_empty(), "dr {args:?} should end quietly, printed:\n{stderr}");
    }
}

#[test]
fn a_missing_run_says_where_runs_are_looked_for() {
    let state = scratch("no-runs-state");
    for verb in ["resume", "rollback", "commit"] {
        let out = dr(&[verb, "no-such-run", "--state-dir", state.to_str().unwrap()]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        for hint in ["no-runs-state", "--state-dir", "DRPLAN_STATE_DIR", "dr runs"] {
            assert!(all.contains(hint), "dr {verb}: expected {hint:?} in:\n{all}");
        }
    }
}

fn help(command: &str) -> String {
    let out = dr(&[command, "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_lists_only_the_options_that_apply() {
    for command in ["plan", "runs", "commit"] {
        let help = help(command);
        for apply_only in ["--parallelism", "--step-timeout"] {
            assert!(!help.contains(apply_only), "`dr {command} --help` lists {apply_only}:\n{help}");
        }
    }
    for command in ["apply", "resume", "rollback"] {
        assert!(help(command).contains("--parallelism"), "`dr {command} --help` lacks --parallelism");
    }
    for command in ["resume", "rollback", "commit"] {
        let help = help(command);
        assert!(!help.contains("beside the plan"), "`dr {command} --help` describes --sim for a plan:\n{help}");
        assert!(help.contains("dr sim serve"), "`dr {command} --help` should say how to reach a sim:\n{help}");
    }
}

#[test]
fn help_describes_positional_arguments() {
    for (command, argument) in [
        ("validate", "<PLANS>"),
        ("graph", "<PLAN>"),
        ("plan", "<PLAN>"),
        ("apply", "<PLAN>"),
        ("resume", "<RUN_ID>"),
        ("rollback", "<RUN_ID>"),
        ("commit", "<RUN_ID>"),
    ] {
        let help = help(command);
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(argument))
            .unwrap_or_else(|| panic!("`dr {command} --help` has no {argument} line:\n{help}"));
        // clap puts the description beside the argument, or below it in long help.
        let beside = lines[at].trim_start().len() > argument.len() + 3;
        let below = lines.get(at + 1).is_some_and(|l| l.starts_with("          ") && !l.trim().is_empty());
        assert!(beside || below, "`dr {command} --help`: {argument} is not described:\n{help}");
    }
}

#[test]
fn cluster_from_is_repeatable_and_takes_files() {
    let plan = repo("plans/ebs-cassandra-restore.yaml");
    let mut args = vec!["validate".to_string(), plan];
    for file in ["nodes.yaml", "storage.yaml", "volumes.yaml", "workloads.yaml"] {
        args.push("--cluster-from".into());
        args.push(repo(&format!("plans/ebs-cassandra-restore/{file}")));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dr(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let from_dir = dr(&["validate", args[1], "--cluster-from", &repo("plans/ebs-cassandra-restore")]);
    assert_eq!(text(&out), text(&from_dir), "the files describe the cluster as their directory does");
    assert!(text(&out).contains("valid (20 steps)"), "{}", text(&out));
}

const ONE_STEP: &str = "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: one}\nclusters: [{name: primary, namespace: cassandra}]\nsteps:\n  - id: ready\n    wait:\n      for: {podsReady: {workload: {kind: StatefulSet, name: cassandra}}}\n";

#[test]
fn one_step_is_not_one_steps() {
    let path = scratch("one-step.yaml");
    std::fs::write(&path, ONE_STEP).unwrap();
    let out = dr(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid (1 step)"), "{}", text(&out));
    let out = dr(&["graph", path.to_str().unwrap()]);
    assert!(!text(&out).contains("1 steps"), "{}", text(&out));
}

/// A plan in a scratch directory that `--sim` loads the EBS example's cluster for.
fn plan_beside_ebs_manifests(name: &str, text: &str) -> PathBuf {
    let dir = scratch(&format!("{name}-dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    let manifests = dir.join(name);
    if !manifests.exists() {
        std::os::unix::fs::symlink(repo("plans/ebs-cassandra-restore"), &manifests).unwrap();
    }
    path
}

#[test]
fn a_wait_without_cluster_in_a_one_cluster_plan_waits_in_that_cluster() {
    let path = plan_beside_ebs_manifests("wait-one-cluster", ONE_STEP);
    let state = scratch("wait-one-cluster-state");
    let out = dr(&["plan", path.to_str().unwrap(), "--sim", "--state-dir", state.to_str().unwrap()]);
    let all = text(&out);
    assert!(!all.contains("BLOCKED") && !all.contains("cloud wait"), "{all}");
    assert_eq!(out.status.code(), Some(2), "{all}");
}

#[test]
fn a_kube_wait_without_cluster_in_a_two_cluster_plan_is_refused() {
    let path = scratch("wait-two-clusters.yaml");
    let two = ONE_STEP.replace(
        "clusters: [{name: primary, namespace: cassandra}]",
        "clusters: [{name: primary, namespace: cassandra}, {name: dr, namespace: cassandra}]",
    );
    std::fs::write(&path, two).unwrap();
    let out = dr(&["validate", path.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("must name its `cluster:`"), "{all}");
}

fn ebs_plan_with(label: &str, from: &str, to: &str) -> PathBuf {
    let original = std::fs::read_to_string(repo("plans/ebs-cassandra-restore.yaml")).unwrap();
    assert!(original.contains(from));
    let path = scratch(&format!("ebs-{label}.yaml"));
    std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn a_missing_statefulset_points_at_its_name_and_suggests_the_closest() {
    let path = ebs_plan_with("missing-sts", "        name: cassandra\n", "        name: casandra\n");
    let line = std::fs::read_to_string(&path).unwrap().lines().position(|l| l == "        name: casandra").unwrap() + 1;
    let out = dr(&["validate", path.to_str().unwrap(), "--cluster-from", &repo("plans/ebs-cassandra-restore")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(&format!(":{line}:15]")), "expected the location of the name ({line}:15) in:\n{all}");
    assert!(all.contains("did you mean `cassandra`?"), "{all}");
    assert!(all.contains("1 problem"), "one problem, not a derived one too:\n{all}");
}

#[test]
fn a_step_during_an_unexpandable_intent_gets_no_derived_error() {
    let path = ebs_plan_with("derived", "        name: cassandra\n", "        name: casandra\n");
    let aside = "  - id: aside\n    setAside:\n      object: {apiVersion: policy/v1, kind: PodDisruptionBudget, namespace: cassandra, name: cassandra-pdb}\n      during: [restore-cassandra]\n";
    let mut text_with_aside = std::fs::read_to_string(&path).unwrap();
    text_with_aside.push_str(aside);
    std::fs::write(&path, text_with_aside).unwrap();
    let out = dr(&["validate", path.to_str().unwrap(), "--cluster-from", &repo("plans/ebs-cassandra-restore")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains("unknown step"), "a derived error:\n{all}");
    assert!(all.contains("1 problem"), "{all}");
}

#[test]
fn a_missing_namespace_is_named_as_such() {
    let path = ebs_plan_with("missing-ns", "    namespace: cassandra\n", "    namespace: casandra\n");
    let out = dr(&["validate", path.to_str().unwrap(), "--cluster-from", &repo("plans/ebs-cassandra-restore")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("namespace `casandra` does not exist"), "{all}");
    assert!(all.contains("did you mean `cassandra`?"), "{all}");
}

#[test]
fn completions_are_generated_for_common_shells() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef dr"), ("fish", "complete -c dr")] {
        let out = dr(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("rollback"), "{shell} completions lack subcommands");
    }
}

#[test]
fn runs_prints_json_when_asked() {
    let state = scratch("empty-runs-state");
    let out = dr(&["runs", "--output", "json", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let value: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(value, serde_json::json!([]));
}

#[test]
fn kubectl_runs_dr_as_its_plugin() {
    let bin = scratch("plugin-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("kubectl-dr");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dr"), &plugin).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .args(["dr", "validate", "--help"])
        .env("PATH", path)
        .env("HOME", &bin)
        .output()
        .expect("kubectl must be installed (.ci/install-deps installs it)");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("Usage: kubectl dr validate"), "{all}");
}
