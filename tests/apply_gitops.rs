//! Restores of workloads that a GitOps controller reconciles (plans/argocd-postgres-restore):
//! fought without a pause and failing safely, completed with `pauseReconciliation`, and
//! the controller resumed after a crash (`dr resume`) and after `dr rollback`; `dr
//! validate` and `dr plan` refuse a plan that leaves a self-healing Application running.

mod apply_common;

use std::path::PathBuf;
use std::time::Duration;

use apply_common::{Env, env, env_at, fast_config, manifests, plan_path};
use drplan::sim::SimConfig;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const DB: &str = "db";
const PLAN: &str = "argocd-postgres-restore";
const ARGO_ACTOR: &str = "controller/argocd-application-controller";

fn applications(env: &Env) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    Api::namespaced_with(env.client.clone(), "argocd", &ApiResource::from_gvk(&gvk))
}

async fn application(env: &Env) -> Value {
    let app = applications(env).get("postgres").await.expect("Application argocd/postgres");
    serde_json::to_value(app).expect("Application as JSON")
}

async fn seed(env: &Env) {
    for ordinal in 0..2 {
        let claim = format!("data-postgres-{ordinal}");
        env.sim.write_claim_data(DB, &claim, format!("postgres-{ordinal}")).expect("claim data written");
    }
}

/// Every claim Bound and holding what `seed` wrote.
async fn assert_claims_hold_their_data(env: &Env) {
    let claims = env.claims(DB).await;
    for ordinal in 0..2 {
        let claim = &claims[&format!("data-postgres-{ordinal}")];
        assert_eq!(claim.phase, "Bound", "{claims:?}");
        assert_eq!(claim.data.as_deref(), Some(format!("postgres-{ordinal}").as_str()), "{claims:?}");
    }
}

/// The self-heal policy the example's Application starts with.
fn self_heal() -> Value {
    json!({ "prune": true, "selfHeal": true })
}

/// Changes to StatefulSet db/postgres made by the Argo CD-like controller.
fn argo_writes_to_postgres(env: &Env) -> usize {
    env.sim
        .mutations()
        .iter()
        .filter(|m| m.actor == ARGO_ACTOR && m.resource.0 == "apps/statefulsets" && m.name == "postgres")
        .count()
}

/// `dr validate PLAN --cluster-from DIR`: exit code and everything it printed.
fn validate(plan: &std::path::Path, cluster: &std::path::Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .arg("validate")
        .arg(plan)
        .arg("--cluster-from")
        .arg(cluster)
        .env("NO_COLOR", "1")
        .output()
        .expect("dr validate runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// The example plan without its `pause-argocd` entry, written into the env's directory.
fn plan_without_pause(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(plan_path(PLAN)).expect("example plan");
    let start = text.find("  - id: pause-argocd").expect("pause entry");
    let end = text.find("  - id: restore-postgres").expect("restore entry");
    let path = dir.join("without-pause.yaml");
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).expect("plan written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_pause_the_restore_completes_and_self_heal_comes_back_in_sync() {
    let env = env(PLAN, "gitops-ok", fast_config()).await;
    seed(&env).await;
    let result = env.apply(&[]).await;
    result.assert_success("dr apply");

    assert_eq!(argo_writes_to_postgres(&env), 0, "Argo CD never reverted the StatefulSet during the run");
    let app = application(&env).await;
    assert_eq!(app["spec"]["syncPolicy"]["automated"], self_heal(), "self-heal is back as it was: {app}");
    let sts = env.statefulset(DB, "postgres").await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(2));
    assert_claims_hold_their_data(&env).await;
    // Argo CD compares the restored state with Git again and finds it in sync.
    env.sim.settle();
    let app = application(&env).await;
    assert_eq!(app["status"]["sync"]["status"], "Synced", "{app}");
    assert_eq!(app["status"]["health"]["status"], "Healthy", "{app}");

    // The pause was recorded with what it replaced.
    let run_id = result.run_id().expect("run id");
    let record = env.run_record(&run_id);
    let saved = &record["steps"]["pause-argocd/pause"]["captured"]["original"];
    let expected = json!({
        "metadata": { "annotations": { "drplan.dev/paused-by": null } },
        "spec": { "syncPolicy": { "automated": self_heal() } },
    });
    assert_eq!(saved, &expected, "{record}");
    assert!(app["metadata"]["annotations"].get("drplan.dev/paused-by").is_none(), "the run's mark is gone: {app}");
    apply_common::assert_second_run_changes_nothing(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_was_not_automated_is_not_automated_afterwards() {
    let env = env(PLAN, "gitops-manual", fast_config()).await;
    let manual = json!({ "spec": { "syncPolicy": { "automated": null } } });
    applications(&env).patch("postgres", &PatchParams::default(), &Patch::Merge(&manual)).await.expect("patched");
    env.apply(&[]).await.assert_success("dr apply");
    let app = application(&env).await;
    assert!(app["spec"]["syncPolicy"].get("automated").is_none(), "never re-enabled: {app}");
    assert_eq!(app["spec"]["syncPolicy"]["syncOptions"], json!(["CreateNamespace=true"]), "the rest kept: {app}");
}

/// Without the pause, self-heal is switched on while the restore is running (as someone
/// doing it by hand would): Argo CD scales the StatefulSet back up before the claims are
/// deleted, and the run stops without deleting any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_pause_self_heal_scales_the_database_back_up_and_no_claim_is_deleted() {
    // Argo CD reverts at once; snapshots take long enough to switch self-heal on meanwhile.
    let config =
        SimConfig { revert_after: Duration::ZERO, snapshot_ready_after: Duration::from_secs(60), ..fast_config() };
    let mut env = env_at(manifests(PLAN), plan_path(PLAN), "gitops-fought", config).await;
    env.plan = plan_without_pause(&env.dir);
    seed(&env).await;
    // Self-heal off when the run starts (so the plan's check lets it run), on once the
    // database is stopped and its snapshots are being taken.
    let manual = json!({ "spec": { "syncPolicy": { "automated": null } } });
    applications(&env).patch("postgres", &PatchParams::default(), &Patch::Merge(&manual)).await.expect("patched");
    let plan = env.plan.to_string_lossy().into_owned();
    let apply = env.spawn(&["apply", &plan, "--auto-approve"], &[]);
    env.eventually("a snapshot of the stopped database", Duration::from_secs(60), || async {
        let snapshots = env.snapshots(DB).list(&Default::default()).await.map_err(|e| e.to_string())?;
        if snapshots.items.is_empty() { Err("no snapshot yet".to_string()) } else { Ok(()) }
    })
    .await;
    let heal = json!({ "spec": { "syncPolicy": { "automated": self_heal() } } });
    applications(&env).patch("postgres", &PatchParams::default(), &Patch::Merge(&heal)).await.expect("patched");
    let output = tokio::task::spawn_blocking(move || apply.wait_with_output()).await.expect("joined").expect("dr ran");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_ne!(output.status.code(), Some(0), "the fought apply fails\n{stderr}");
    assert!(argo_writes_to_postgres(&env) > 0, "Argo CD scaled the StatefulSet back up");
    assert!(stderr.contains("refusing to delete"), "the interlock names the refusal\n{stderr}");
    // On a real cluster the pods of a scale-up appear later than the scale-up itself: the
    // interlock must not depend on them, and names the scale-up.
    assert!(stderr.contains("StatefulSet postgres was scaled back up to 2"), "names the scale-up\n{stderr}");
    let deletions = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.verb == "delete" && r.resource == "persistentvolumeclaims" && r.code < 300)
        .count();
    assert_eq!(deletions, 0, "no claim was deleted\n{stderr}");
    env.sim.settle();
    assert_claims_hold_their_data(&env).await;
}

/// A crash at each transition of the pause (after it saved the policy and before it
/// removed it; after it removed it), then `dr resume`: the Application gets exactly its
/// original policy back, never the paused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_the_pause_in_flight_is_resumed_with_the_original_policy() {
    for k in [2, 6] {
        let env = env(PLAN, &format!("gitops-crash-{k}"), fast_config()).await;
        seed(&env).await;
        let crashed = env.apply(&[("DRPLAN_FAILPOINT", &format!("kill-after-transition={k}"))]).await;
        assert_eq!(crashed.signal, Some(9), "killed at transition {k}\n{}", env.dump_logs(&crashed));
        let run_id = crashed.run_id().expect("run id");
        let resumed = env.resume(&run_id).await;
        resumed.assert_success(&format!("dr resume after a crash at transition {k}"));
        let app = application(&env).await;
        assert_eq!(app["spec"]["syncPolicy"]["automated"], self_heal(), "crash at {k}: {app}");
        assert_claims_hold_their_data(&env).await;
    }
}

/// The paused state after a crash in the middle of the restore, and `dr rollback` of a
/// failed run: the controller is resumed last, after the claims are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_failed_run_resumes_the_controller() {
    let env = env(PLAN, "gitops-rollback", fast_config()).await;
    seed(&env).await;
    let failing = "restore-postgres/restore-data-postgres-0";
    let failed = env.apply(&[("DRPLAN_FAILPOINT", &format!("fail-step={failing}"))]).await;
    assert_ne!(failed.code, Some(0), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().expect("run id");
    // The failed run leaves the controller paused: it would otherwise recreate the
    // deleted claim empty. Rollback or resume is what resumes it.
    let app = application(&env).await;
    assert!(app["spec"]["syncPolicy"].get("automated").is_none(), "still paused after the failure: {app}");

    let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
    rolled_back.assert_success("dr rollback");
    let app = application(&env).await;
    assert_eq!(app["spec"]["syncPolicy"]["automated"], self_heal(), "{app}");
    let sts = env.statefulset(DB, "postgres").await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(2));
    assert_claims_hold_their_data(&env).await;
    assert_eq!(argo_writes_to_postgres(&env), 0, "Argo CD never had to revert anything");
}

/// A run that failed early leaves the controller paused; a new run must not take the
/// paused state for the original (its resume would leave self-heal off for good): it
/// refuses, naming the run that paused it, and rolling that run back resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_refuses_to_pause_what_a_failed_run_left_paused() {
    let env = env(PLAN, "gitops-again", fast_config()).await;
    seed(&env).await;
    let failing = "restore-postgres/scale-down";
    let failed = env.apply(&[("DRPLAN_FAILPOINT", &format!("fail-step={failing}"))]).await;
    assert_ne!(failed.code, Some(0), "{}", env.dump_logs(&failed));
    let run_id = failed.run_id().expect("run id");
    let plan = env.plan.to_string_lossy().into_owned();
    let planned = env.dr(&["plan", &plan], &[]).await;
    assert_eq!(planned.code, Some(1), "dr plan says blocked\n{}", env.dump_logs(&planned));
    let paused_by = format!("was paused by run {}", drplan::steps::kube::label_value(&run_id));
    assert!(planned.stdout.contains(&paused_by) || planned.stderr.contains(&paused_by), "{}", env.dump_logs(&planned));
    let again = env.apply(&[]).await;
    assert_ne!(again.code, Some(0), "{}", env.dump_logs(&again));
    assert!(again.stderr.contains(&paused_by), "{}", env.dump_logs(&again));
    let app = application(&env).await;
    assert!(app["spec"]["syncPolicy"].get("automated").is_none(), "left as the failed run left it: {app}");
    env.dr(&["rollback", &run_id], &[]).await.assert_success("dr rollback");
    let app = application(&env).await;
    assert_eq!(app["spec"]["syncPolicy"]["automated"], self_heal(), "{app}");
    assert_claims_hold_their_data(&env).await;
}

/// The example plan without its pause: `dr validate --cluster-from` and `dr plan` (live)
/// report the Application at the intent, with the entry to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_plan_refuse_an_unpaused_self_healing_application() {
    let env = env(PLAN, "gitops-validate", fast_config()).await;
    let plan = plan_without_pause(&env.dir);
    let plan_text = std::fs::read_to_string(&plan).expect("plan");
    let line = plan_text.lines().position(|l| l.trim() == "restoreClaims:").expect("intent line") + 1;
    let location = format!("without-pause.yaml:{line}:5");
    let suggestion = [
        "- id: pause-postgres",
        "pauseReconciliation:",
        "argoCd: {name: postgres, namespace: argocd}",
        "during: [restore-postgres]",
    ];
    let (code, validated) = validate(&plan, &manifests(PLAN));
    assert_eq!(code, Some(1), "{validated}");
    let plan_arg = plan.to_string_lossy().into_owned();
    let planned = env.dr(&["plan", &plan_arg], &[]).await;
    assert_ne!(planned.code, Some(0), "{}", env.dump_logs(&planned));
    let planned = format!("{}{}", planned.stdout, planned.stderr);
    for (what, text) in [("validate", &validated), ("plan", &planned)] {
        assert!(text.contains("drplan::safety::unpaused_reconciler"), "{what}: {text}");
        assert!(text.contains("Argo CD Application argocd/postgres (automated sync with selfHeal)"), "{what}: {text}");
        assert!(text.contains(&location), "{what} points at {location}: {text}");
        for line in suggestion {
            assert!(text.lines().any(|l| l.trim() == line), "{what} suggests the entry ({line}): {text}");
        }
    }
}

/// Automated sync without self-heal does not revert a change made in the cluster: a
/// warning, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_sync_without_self_heal_is_a_warning() {
    let env = env(PLAN, "gitops-warn", fast_config()).await;
    let plan = plan_without_pause(&env.dir);
    let cluster = env.dir.join("cluster");
    std::fs::create_dir_all(&cluster).expect("cluster dir");
    for entry in std::fs::read_dir(manifests(PLAN)).expect("manifests") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("manifest");
        let text = text.replace("selfHeal: true", "selfHeal: false");
        std::fs::write(cluster.join(path.file_name().expect("name")), text).expect("copied");
    }
    let (code, text) = validate(&plan, &cluster);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("drplan::safety::reconciler_may_sync"), "{text}");
    assert!(text.contains("automated sync without selfHeal"), "{text}");
}

/// A database whose StatefulSet an operator owns (controller owner reference to its
/// `PostgresCluster`), in a copy of the example's storage; `annotations` go on the
/// resource, `extra` is added to the manifests.
fn operator_cluster(dir: &std::path::Path, annotations: Value, extra: &str) -> PathBuf {
    let cluster = dir.join("operator-cluster");
    std::fs::create_dir_all(&cluster).expect("cluster dir");
    for file in ["storage.yaml", "volumes.yaml"] {
        std::fs::copy(manifests(PLAN).join(file), cluster.join(file)).expect("copied");
    }
    let workloads = std::fs::read_to_string(manifests(PLAN).join("workloads.yaml")).expect("workloads");
    let owned = workloads.replace(
        "    argocd.argoproj.io/tracking-id: postgres:apps/StatefulSet:db/postgres\n",
        "    operator.example.com/managed: \"true\"\n",
    );
    let owned = owned.replace(
        "  generation: 7\n",
        "  generation: 7\n  ownerReferences:\n  - {apiVersion: db.example.com/v1, kind: PostgresCluster, name: pg, uid: 9e3c1a55-0000-4000-8000-0000000000aa, controller: true}\n",
    );
    let resource = json!({
        "apiVersion": "db.example.com/v1", "kind": "PostgresCluster",
        "metadata": { "name": "pg", "namespace": "db", "uid": "9e3c1a55-0000-4000-8000-0000000000aa", "annotations": annotations },
        "spec": { "replicas": 2 },
    });
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: postgresclusters.db.example.com}\nspec:\n  group: db.example.com\n  names: {kind: PostgresCluster, plural: postgresclusters, singular: postgrescluster, listKind: PostgresClusterList}\n  scope: Namespaced\n  versions:\n  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}\n";
    let text = format!("{owned}\n---\n{crd}---\n{}\n---\n{extra}", serde_json::to_string(&resource).expect("JSON"));
    std::fs::write(cluster.join("workloads.yaml"), text).expect("written");
    cluster
}

const OPERATOR_RESTORE: &str = "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: operator-pause}\nclusters: [{name: prod, namespace: db}]\nsteps:\n  - id: restore\n    restoreClaims: {workload: {kind: StatefulSet, name: postgres}, claimTemplate: data, snapshotClass: ebs-csi, timeout: 10m}\n";

fn operator_writes_to_postgres(env: &Env) -> usize {
    let mutations = env.sim.mutations();
    mutations.iter().filter(|m| m.actor == "controller/operator" && m.resource.0 == "apps/statefulsets").count()
}

/// The operator's own pause switch (an annotation on its resource), and the blunt one
/// (its Deployment scaled to 0): either way the restore completes without the operator
/// touching the StatefulSet, and the switch is back as it was. Without a pause, validate
/// names the resource and suggests the annotation form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pauses_by_annotation_or_by_deployment_and_are_required() {
    let dir = std::env::temp_dir().join(format!("drplan-gitops-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let annotate = "  - id: pause-pg\n    pauseReconciliation:\n      annotate:\n        object: {apiVersion: db.example.com/v1, kind: PostgresCluster, namespace: db, name: pg}\n        key: sim.drplan.dev/pause-reconciliation\n        value: \"true\"\n      during: [restore]\n";
    let deployment = "  - id: pause-pg\n    pauseReconciliation:\n      operator: {kind: Deployment, name: pg-operator}\n      during: [restore]\n";
    let operator_deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pg-operator, namespace: db}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: pg-operator}}\n  template:\n    metadata: {labels: {app: pg-operator}}\n    spec: {containers: [{name: operator, image: example/pg-operator}]}\n";

    let unpaused = dir.join("unpaused.yaml");
    std::fs::write(&unpaused, OPERATOR_RESTORE).expect("plan");
    let (code, text) = validate(&unpaused, &operator_cluster(&dir, json!({}), ""));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the operator of PostgresCluster db/pg"), "{text}");
    assert!(text.lines().any(|l| l.trim() == "annotate:"), "suggests the annotation form: {text}");

    let variants = [
        ("annotation", annotate, json!({}), ""),
        ("deployment", deployment, json!({ "sim.drplan.dev/operator-deployment": "pg-operator" }), operator_deployment),
    ];
    for (label, pause, annotations, extra) in variants {
        let sub = dir.join(label);
        std::fs::create_dir_all(&sub).expect("dir");
        let cluster = operator_cluster(&sub, annotations.clone(), extra);
        let plan = sub.join("plan.yaml");
        std::fs::write(&plan, format!("{OPERATOR_RESTORE}{pause}")).expect("plan");
        let (code, text) = validate(&plan, &cluster);
        assert_eq!(code, Some(0), "{label}: {text}");
        let env = env_at(cluster, plan, &format!("gitops-operator-{label}"), fast_config()).await;
        seed(&env).await;
        env.apply(&[]).await.assert_success(&format!("dr apply ({label})"));
        assert_eq!(operator_writes_to_postgres(&env), 0, "{label}: the operator never touched the StatefulSet");
        let resources = Api::<DynamicObject>::namespaced_with(
            env.client.clone(),
            DB,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("db.example.com", "v1", "PostgresCluster")),
        );
        let pg = serde_json::to_value(resources.get("pg").await.expect("pg")).expect("JSON");
        assert_eq!(pg["metadata"]["annotations"], annotations, "{label}: the switch is back as it was: {pg}");
        if label == "deployment" {
            let operator = env.deployment(DB, "pg-operator").await;
            assert_eq!(operator.spec.and_then(|s| s.replicas), Some(1), "the operator runs again");
        }
        assert_claims_hold_their_data(&env).await;
    }
}

/// The example database deployed by Flux instead: a Kustomization (the ConfigMap as its
/// source) and Flux's labels on the StatefulSet.
fn flux_cluster(dir: &std::path::Path) -> PathBuf {
    let cluster = dir.join("flux-cluster");
    std::fs::create_dir_all(&cluster).expect("cluster dir");
    for file in ["storage.yaml", "volumes.yaml"] {
        std::fs::copy(manifests(PLAN).join(file), cluster.join(file)).expect("copied");
    }
    let workloads = std::fs::read_to_string(manifests(PLAN).join("workloads.yaml")).expect("workloads");
    let labelled = workloads.replace(
        "    argocd.argoproj.io/tracking-id: postgres:apps/StatefulSet:db/postgres\n  labels:\n",
        "    flux: managed\n  labels:\n    kustomize.toolkit.fluxcd.io/name: db\n    kustomize.toolkit.fluxcd.io/namespace: flux-system\n",
    );
    assert_ne!(labelled, workloads, "labels added");
    let argocd = std::fs::read_to_string(manifests(PLAN).join("argocd.yaml")).expect("argocd");
    let git = &argocd[argocd.find("apiVersion: v1\nkind: ConfigMap").expect("the Git stand-in")..];
    let git = git.replace("namespace: argocd", "namespace: flux-system");
    let kustomization = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": { "name": "db", "namespace": "flux-system",
                      "annotations": { "sim.drplan.dev/manifests": "flux-system/postgres-git" } },
        "spec": { "interval": "10m", "path": "./postgres", "prune": true,
                  "sourceRef": { "kind": "GitRepository", "name": "platform" } },
    });
    let text = format!("{labelled}\n---\n{git}\n---\n{}\n", serde_json::to_string(&kustomization).expect("JSON"));
    std::fs::write(cluster.join("workloads.yaml"), text).expect("written");
    cluster
}

/// Flux: validate requires the pause, and with it the Kustomization is suspended during
/// the restore only (`spec.suspend` absent again afterwards, as it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_is_suspended_during_the_restore_and_back_as_it_was() {
    let dir = std::env::temp_dir().join(format!("drplan-gitops-flux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cluster = flux_cluster(&dir);
    let unpaused = dir.join("unpaused.yaml");
    std::fs::write(&unpaused, OPERATOR_RESTORE).expect("plan");
    let (code, text) = validate(&unpaused, &cluster);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("Flux Kustomization flux-system/db"), "{text}");
    assert!(
        text.lines().any(|l| l.trim() == "flux: {kind: Kustomization, name: db, namespace: flux-system}"),
        "{text}"
    );

    let plan = dir.join("plan.yaml");
    let pause = "  - id: pause-flux\n    pauseReconciliation:\n      flux: {name: db}\n      during: [restore]\n";
    std::fs::write(&plan, format!("{OPERATOR_RESTORE}{pause}")).expect("plan");
    let (code, text) = validate(&plan, &cluster);
    assert_eq!(code, Some(0), "{text}");
    let env = env_at(cluster, plan, "gitops-flux", fast_config()).await;
    seed(&env).await;
    env.apply(&[]).await.assert_success("dr apply");
    let flux_writes = env
        .sim
        .mutations()
        .iter()
        .filter(|m| m.actor == "controller/kustomize-controller" && m.resource.0 == "apps/statefulsets")
        .count();
    assert_eq!(flux_writes, 0, "Flux never reverted the StatefulSet");
    let kustomizations = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "flux-system",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization")),
    );
    let ks = serde_json::to_value(kustomizations.get("db").await.expect("db")).expect("JSON");
    assert!(ks["spec"].get("suspend").is_none(), "suspend is absent again, as it was: {ks}");
    assert_claims_hold_their_data(&env).await;
}
