//! `dr drill`: a drill of an example plan on the simulated cluster passes and writes its
//! reports (JUnit read by Python's own XML parser, JSON checked against the schema,
//! Markdown with the trend); a drill whose RTO objective is below what the run takes
//! fails and says by how much; `dr drill manifests` prints objects `kubectl` reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dr(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("DRPLAN_STATE_DIR")
        .output()
        .expect("dr runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("drill").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(drop).unwrap() }
    }
}

/// A copy of the EBS example (plan and cluster dump) with `rto` replaced.
fn ebs_plan_with_rto(dir: &Path, rto: &str) -> PathBuf {
    let plans = root().join("plans");
    let text = std::fs::read_to_string(plans.join("ebs-cassandra-restore.yaml")).unwrap();
    assert!(text.contains("  rto: 45m\n"), "the example's objective changed; update this test");
    let plan = dir.join("ebs-cassandra-restore.yaml");
    std::fs::write(&plan, text.replace("  rto: 45m\n", &format!("  rto: {rto}\n"))).unwrap();
    copy_dir(&plans.join("ebs-cassandra-restore"), &dir.join("ebs-cassandra-restore"));
    plan
}

/// The JUnit file as Python's `xml.etree` reads it (tests/drill/check_junit.py).
fn junit_as_python_reads_it(path: &Path) -> Value {
    let script = root().join("tests/drill/check_junit.py");
    let out = Command::new("python3").arg(&script).arg(path).output().expect("python3 runs");
    assert!(out.status.success(), "check_junit.py rejected {}: {}", path.display(), text(&out));
    serde_json::from_slice(&out.stdout).expect("check_junit.py prints JSON")
}

fn cases_of<'a>(junit: &'a Value, class: &str) -> Vec<&'a Value> {
    junit["cases"].as_array().unwrap().iter().filter(|c| c["class"] == class).collect()
}

fn schema_validator() -> jsonschema::Validator {
    let path = root().join(drplan::ops::drill::report::DRILL_REPORT_SCHEMA_PATH);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

#[test]
fn the_drill_report_schema_is_current() {
    let path = root().join(drplan::ops::drill::report::DRILL_REPORT_SCHEMA_PATH);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == drplan::ops::drill::report::drill_report_schema_json(),
        "{} is stale: regenerate it with `cargo run -- schema drill-report > {}`",
        path.display(),
        drplan::ops::drill::report::DRILL_REPORT_SCHEMA_PATH
    );
}

#[test]
fn a_drill_of_the_ebs_example_passes_rolls_back_and_reports_rto_and_rpo() {
    let dir = scratch("passes");
    let plan = root().join("plans/ebs-cassandra-restore.yaml");
    let out = dr(&["drill", plan.to_str().unwrap(), "--sim", "--report-dir", "out/", "--output", "plain"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Drill of ebs-cassandra-restore: passed"), "{}", text(&out));

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/drill-report.json")).unwrap()).unwrap();
    let errors: Vec<String> = schema_validator().iter_errors(&report).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "the report does not match its schema: {errors:#?}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["runStatus"], "succeeded");
    assert_eq!((report["then"].as_str(), report["thenStatus"].as_str()), (Some("rollback"), Some("succeeded")));
    let rto = report["rto"]["achievedSeconds"].as_f64().expect("an achieved RTO");
    assert!(rto > 0.0 && rto < 2700.0, "RTO {rto}");
    assert_eq!(report["rto"]["objectiveSeconds"], 2700.0);
    assert_eq!(report["rto"]["verdict"], "met");
    // The snapshots are taken after the scale-down, so no acknowledged write is lost.
    assert_eq!(report["rpo"]["achievedSeconds"], 0.0);
    assert!(report["rpo"]["detail"].as_str().unwrap().contains("restored from snapshot"), "{}", report["rpo"]);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 20, "one entry per step of the expanded plan");
    assert!(steps.iter().all(|s| s["status"] == "succeeded" && s["seconds"].as_f64().is_some()));
    let checks: Vec<&str> =
        report["verification"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(checks.contains(&"claim cassandra/cassandra-data-cassandra-0 Bound at 4Gi"), "{checks:?}");
    assert!(checks.contains(&"StatefulSet cassandra in cassandra Ready"), "{checks:?}");

    let junit = junit_as_python_reads_it(&dir.join("out/drill-junit.xml"));
    assert_eq!(cases_of(&junit, "steps").len(), 20);
    assert_eq!(cases_of(&junit, "verification").len(), checks.len());
    let objectives: Vec<&str> = cases_of(&junit, "objectives").iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(objectives, ["RTO", "RPO"]);
    assert!(junit["cases"].as_array().unwrap().iter().all(|c| c["failure"].is_null()), "{junit}");
    assert_eq!(junit["properties"]["runId"], report["runId"]);

    let markdown = std::fs::read_to_string(dir.join("out/drill-report.md")).unwrap();
    assert!(markdown.starts_with("# Drill of `ebs-cassandra-restore`: ✅ passed"), "{markdown}");
    assert!(markdown.contains("| RTO | ") && markdown.contains("| RPO | "), "{markdown}");

    // The run was rolled back: the drill left the clusters as it found them.
    let runs = dr(&["runs", "--output", "json"], &dir);
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let apply = runs.as_array().unwrap().iter().find(|r| r["runId"] == report["runId"]).expect("the drill's run");
    assert_eq!(apply["status"], "rolled_back");
}

#[test]
fn a_drill_that_misses_its_rto_fails_and_says_by_how_much() {
    let dir = scratch("misses");
    let plan = ebs_plan_with_rto(&dir, "10ms");
    let args = ["drill", plan.to_str().unwrap(), "--sim", "--report-dir", "out", "--output", "plain"];
    let first = dr(&args, &dir);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let all = text(&first);
    let missed = all.lines().find(|l| l.contains("RTO missed by")).unwrap_or_else(|| panic!("no RTO verdict:\n{all}"));
    assert!(missed.contains("objective 10ms") && missed.contains("achieved"), "{missed}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/drill-report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["rto"]["verdict"], "missed");
    let (achieved, objective) =
        (report["rto"]["achievedSeconds"].as_f64().unwrap(), report["rto"]["objectiveSeconds"].as_f64().unwrap());
    assert_eq!(objective, 0.01);
    let by = format!("RTO missed by {}", drplan::ops::drill::report::seconds(achieved - objective));
    assert!(missed.contains(&by), "{missed} should say {by}");
    // The run itself succeeded and was still rolled back.
    assert_eq!((report["runStatus"].as_str(), report["thenStatus"].as_str()), (Some("succeeded"), Some("succeeded")));

    let junit = junit_as_python_reads_it(&dir.join("out/drill-junit.xml"));
    let objectives = cases_of(&junit, "objectives");
    let rto = objectives.iter().find(|c| c["name"] == "RTO").unwrap();
    assert!(rto["failure"].as_str().unwrap().starts_with("RTO missed by"), "{rto}");
    assert!(cases_of(&junit, "steps").iter().all(|c| c["failure"].is_null()));

    // A second drill into the same directory: the history shows both.
    let mut json_args = args.to_vec();
    *json_args.last_mut().unwrap() = "json";
    let second = dr(&json_args, &dir);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    // For machines, the drill ends with one event: status, RTO, RPO and report paths.
    let stdout = String::from_utf8_lossy(&second.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON event");
    assert_eq!((last["event"].as_str(), last["status"].as_str()), (Some("drill"), Some("failed")), "{last}");
    assert!(last["run"].as_str().is_some_and(|r| r.contains("ebs-cassandra-restore")), "{last}");
    assert!(last["rtoSeconds"].as_f64().is_some(), "{last}");
    assert!(last["reports"]["junit"].as_str().is_some_and(|p| p.ends_with("drill-junit.xml")), "{last}");
    let history = std::fs::read_to_string(dir.join("out/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
    let markdown = std::fs::read_to_string(dir.join("out/drill-report.md")).unwrap();
    assert!(markdown.contains("## Trend (last 2 drills)"), "{markdown}");
    let trend: Vec<&str> =
        markdown.lines().skip_while(|l| !l.starts_with("## Trend")).filter(|l| l.contains("| failed |")).collect();
    assert_eq!(trend.len(), 2, "{markdown}");
}

#[test]
fn an_efs_failover_drill_measures_the_rpo_from_the_replicas_last_replication() {
    let dir = scratch("efs");
    let plan = root().join("plans/efs-failover.yaml");
    let out = dr(&["drill", plan.to_str().unwrap(), "--sim", "--report-dir", "out", "--output", "plain"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/drill-report.json")).unwrap()).unwrap();
    let rpo = &report["rpo"];
    let detail = rpo["detail"].as_str().unwrap();
    assert!(detail.contains("restored from replica") && detail.contains("(last replicated)"), "{rpo}");
    assert!(rpo["achievedSeconds"].as_f64().is_some_and(|s| s >= 0.0), "{rpo}");
    assert_eq!(rpo["verdict"], "met", "{rpo}");
    assert_eq!(report["thenStatus"], "succeeded");
}

#[test]
fn an_invalid_plan_is_not_drilled() {
    let dir = scratch("invalid");
    let plan = dir.join("bad.yaml");
    std::fs::write(&plan, "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: bad}\nsteps: 3\n").unwrap();
    let out = dr(&["drill", plan.to_str().unwrap(), "--sim", "--report-dir", "out"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad.yaml:4"), "diagnostics point at the line: {}", text(&out));
    assert!(!dir.join("out").exists(), "no report for a drill that did not run");
}

/// The documents of a YAML stream (split at `---` lines, each read by the YAML parser).
fn yaml_documents(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        match line {
            "---" => docs.push(String::new()),
            line => docs.last_mut().unwrap().push_str(&format!("{line}\n")),
        }
    }
    let with_content = docs.into_iter().filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.starts_with('#')));
    with_content
        .map(|doc| {
            let file = drplan::lang::yaml::parse_str("manifests.yaml", &doc, drplan::lang::yaml::Limits::PLAN)
                .unwrap_or_else(|e| panic!("not YAML: {e:?}\n{doc}"));
            file.documents[0].to_json()
        })
        .collect()
}

#[test]
fn drill_manifests_print_a_cronjob_with_the_plan_a_service_account_and_its_binding() {
    let dir = scratch("manifests");
    let plan = root().join("plans/ebs-cassandra-restore.yaml");
    let args = [
        "drill",
        "manifests",
        plan.to_str().unwrap(),
        "--schedule",
        "0 3 * * 1",
        "--image",
        "example.com/dr:1.2",
        "-n",
        "dr",
        "--role",
        "drplan-drill",
    ];
    let out = dr(&args, &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_documents(&stdout);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "CronJob"]);
    let by_kind = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap();

    let cron = by_kind("CronJob");
    assert_eq!(cron["apiVersion"], "batch/v1");
    assert_eq!(cron["metadata"]["namespace"], "dr");
    assert_eq!(cron["spec"]["schedule"], "0 3 * * 1");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let account = by_kind("ServiceAccount")["metadata"]["name"].clone();
    assert_eq!(pod["serviceAccountName"], account);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "example.com/dr:1.2");
    let container_args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&container_args[..2], ["drill", "/plan/ebs-cassandra-restore.yaml"]);
    assert!(container_args.windows(2).any(|w| w == ["--report-dir", "/reports"]), "{container_args:?}");
    // Runs and the lock live in the cluster: a killed drill pod is resumed, not lost.
    assert!(container_args.windows(2).any(|w| w == ["--state-store", "kubernetes://dr"]), "{container_args:?}");
    let state_role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(state_role["metadata"]["namespace"], "dr");
    let resources: Vec<&str> =
        state_role["rules"].as_array().unwrap().iter().map(|r| r["resources"][0].as_str().unwrap()).collect();
    assert_eq!(resources, ["configmaps", "leases"]);

    // The plan is in the ConfigMap the pod mounts at /plan, byte for byte.
    let config_map = by_kind("ConfigMap");
    let mounted = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "plan").unwrap();
    assert_eq!(mounted["configMap"]["name"], config_map["metadata"]["name"]);
    let plan_text = std::fs::read_to_string(&plan).unwrap();
    assert_eq!(config_map["data"]["ebs-cassandra-restore.yaml"].as_str(), Some(plan_text.as_str()));

    let binding = by_kind("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "drplan-drill");
    assert_eq!(binding["subjects"][0]["name"], account);
    assert_eq!(binding["subjects"][0]["namespace"], "dr");
}

#[test]
fn drill_manifests_grant_the_rights_derived_from_the_plan_by_default() {
    let dir = scratch("derived");
    let plan = root().join("plans/ebs-cassandra-restore.yaml");
    let out = dr(&["drill", "manifests", plan.to_str().unwrap(), "--schedule", "@weekly", "-n", "dr"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let docs = yaml_documents(&String::from_utf8(out.stdout).unwrap());
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    let account = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
    let accounts: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ServiceAccount").collect();
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        (accounts[0]["metadata"]["name"].as_str(), accounts[0]["metadata"]["namespace"].as_str()),
        (Some(account), Some("dr"))
    );
    // The plan's namespace: a Role with what its steps do, bound to the drill's account.
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "cassandra")
        .expect("a Role in the plan's namespace");
    let grants = |resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["resources"].as_array().unwrap().iter().any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|x| x == verb)
        })
    };
    assert!(grants("statefulsets/scale", "patch") && grants("persistentvolumeclaims", "delete"), "{role}");
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding" && d["metadata"]["namespace"] == "cassandra")
        .expect("its binding");
    assert_eq!(binding["subjects"][0]["name"], account);
    // A drill rolls back: rollback's rights are in (it recreates the deleted claims).
    assert!(grants("persistentvolumeclaims", "create"), "{role}");
    assert!(!docs.iter().any(|d| d["roleRef"]["name"] == "drplan-drill"), "no role bound by name only");
}

#[test]
fn drill_manifests_refuse_a_schedule_that_is_not_cron() {
    let dir = scratch("schedule");
    let plan = root().join("plans/ebs-cassandra-restore.yaml");
    let out = dr(&["drill", "manifests", plan.to_str().unwrap(), "--schedule", "every monday"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not a cron schedule"), "{}", text(&out));
    assert!(out.stdout.is_empty());
}

/// The drill as a library, as the CLI calls it, against a simulated cluster that outlives
/// the drill, so what it leaves behind can be read.
mod library {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use drplan::checkpoint::LocalDirStore;
    use drplan::diag::Diagnostics;
    use drplan::exec::Outcome;
    use drplan::ops::drill::{DrillOptions, Then, drill};
    use drplan::ops::{Frontend, Notice, RunOptions, RunView, TargetOptions};
    use drplan::sim::{SimCluster, SimConfig};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::Api;

    use super::{root, scratch};

    /// Keeps notes and drains step events; refuses to ask anything.
    #[derive(Default)]
    struct Recorder {
        notes: Mutex<Vec<String>>,
        /// Kept open: a closed cancel channel would wake the executor again and again.
        cancels: Mutex<Vec<tokio::sync::watch::Sender<bool>>>,
    }

    impl Frontend for Recorder {
        fn notice(&self, notice: Notice<'_>) {
            let text = match notice {
                Notice::Note(t) | Notice::Warning(t) | Notice::Review(t) => t.to_string(),
            };
            self.notes.lock().unwrap().push(text);
        }
        fn diagnostics(&self, diags: &Diagnostics) {
            assert!(!diags.has_errors(), "unexpected diagnostics");
        }
        fn confirm(&self, question: &str) -> Result<bool, String> {
            Err(format!("a drill must not ask: {question}"))
        }
        fn show_run(&self, _run_id: &str) -> RunView {
            let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let shown = tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
            self.cancels.lock().unwrap().push(cancel_tx);
            RunView { events, shown, cancel }
        }
        fn run_ended(&self, _outcome: &Outcome, _elapsed: Duration) {}
    }

    async fn claim_sizes(client: &kube::Client) -> Vec<String> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "cassandra");
        let mut sizes = Vec::new();
        for i in 0..3 {
            let pvc = api.get(&format!("cassandra-data-cassandra-{i}")).await.unwrap();
            let status = pvc.status.unwrap_or_default();
            let size = status.capacity.and_then(|c| c.get("storage").cloned()).map(|q| q.0).unwrap_or_default();
            sizes.push(format!("{} {size}", status.phase.unwrap_or_default()));
        }
        sizes
    }

    async fn drill_then(then: Then, name: &str) -> (Vec<String>, Vec<String>, drplan::ops::drill::Drilled) {
        let dir = scratch(name);
        let config = SimConfig { speed: 20.0, ..SimConfig::default() };
        let sim = SimCluster::start(&[root().join("plans/ebs-cassandra-restore")], config).await.unwrap();
        sim.settle();
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
        let client = sim.client().unwrap();
        let before = claim_sizes(&client).await;
        let targets = TargetOptions { kubeconfig: Some(kubeconfig), context: Some("sim".into()), ..Default::default() };
        let store = Arc::new(LocalDirStore::new(dir.join("state")));
        let runs = RunOptions {
            parallelism: 4,
            max_waits: drplan::exec::Options::default().max_waits,
            step_timeout: Duration::from_secs(120),
            store,
            store_location: dir.join("state").display().to_string(),
        };
        let options = DrillOptions { then, report_dir: Some(dir.join("out")) };
        let ui = Recorder::default();
        let plan = root().join("plans/ebs-cassandra-restore.yaml");
        let drilled = drill(&plan, &targets, &runs, &options, &ui).await.expect("the drill runs");
        let notes = ui.notes.lock().unwrap().join("\n");
        assert!(notes.contains("Verifying the restored service"), "{notes}");
        let after = claim_sizes(&client).await;
        (before, after, drilled)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drill_rolls_back_to_the_claims_it_found() {
        let (before, after, drilled) = drill_then(Then::Rollback, "library-rollback").await;
        assert_eq!(before, ["Bound 2Gi", "Bound 2Gi", "Bound 2Gi"]);
        assert!(drilled.report.passed, "{:?}", drilled.report.failures());
        assert_eq!(drilled.report.then_status, "succeeded");
        assert!(drilled.report.rollback_run_id.is_some());
        assert_eq!(after, before, "the drill left the claims as it found them");
        assert!(drilled.paths.expect("reports written").junit.is_file());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drill_that_commits_keeps_the_restored_claims() {
        let (_, after, drilled) = drill_then(Then::Commit, "library-commit").await;
        assert!(drilled.report.passed, "{:?}", drilled.report.failures());
        assert_eq!(drilled.report.then_status, "committed");
        assert_eq!(after, ["Bound 4Gi", "Bound 4Gi", "Bound 4Gi"]);
    }
}
