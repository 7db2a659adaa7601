//! `dr rbac` is sufficient and minimal: every example plan that runs on the simulated
//! cluster is applied as a ServiceAccount bound to exactly the derived roles (the sim
//! authorises its requests with RBAC); it succeeds, and with a rule (or a verb of a
//! rule) taken away it fails with the API server's 403 naming that permission. `dr plan`
//! works with the `--read-only` rights, and fails without any one of them.
//!
//! The derived roles of the EBS example are a golden file (tests/golden/); after an
//! intended change, `UPDATE_GOLDEN=1 cargo test --test rbac` rewrites it.

mod apply_common;

use std::path::{Path, PathBuf};

use apply_common::{Env, env, fast_config, plan_path, seed_cassandra};
use drplan::rbac::file::FileOptions;
use drplan::rbac::{Rbac, Rule};
use drplan::sim::SimConfig;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The one cluster of the plans run here.
const CLUSTER: &str = "primary";

/// The rights `plan` needs, derived from its graph expanded against the state beside it.
fn derived(plan: &str, read_only: bool) -> Rbac {
    derived_with(plan, FileOptions { read_only, ..FileOptions::default() })
}

fn derived_with(plan: &str, options: FileOptions) -> Rbac {
    drplan::rbac::file::derive_for_plan(&plan_path(plan), &options)
        .unwrap_or_else(|diags| panic!("{plan}: {:?}", diags.iter().map(|d| &d.message).collect::<Vec<_>>()))
}

/// Creates `objects` in the sim, as the admin (the ServiceAccount's namespace first).
async fn create_all(env: &Env, objects: &[Value]) {
    let namespaces: Api<DynamicObject> = Api::all_with(env.client.clone(), &resource("v1", "Namespace"));
    let drplan_ns: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drplan"}}))
            .unwrap();
    let _ = namespaces.create(&PostParams::default(), &drplan_ns).await;
    for object in objects {
        let api = api_for(env, object);
        let typed: DynamicObject = serde_json::from_value(object.clone()).expect("a manifest");
        api.create(&PostParams::default(), &typed).await.unwrap_or_else(|e| panic!("creating {object}: {e}"));
    }
}

fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn api_for(env: &Env, object: &Value) -> Api<DynamicObject> {
    let resource = resource(object["apiVersion"].as_str().unwrap(), object["kind"].as_str().unwrap());
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(env.client.clone(), ns, &resource),
        None => Api::all_with(env.client.clone(), &resource),
    }
}

/// Grants `objects` and points the env's `dr` at a kubeconfig acting as the
/// ServiceAccount of `rbac`.
async fn act_as(env: &mut Env, rbac: &Rbac, objects: &[Value]) {
    create_all(env, objects).await;
    let path = env.dir.join(format!("kubeconfig-{}", rbac.name));
    env.sim
        .write_service_account_kubeconfig(&path, apply_common::CONTEXT, &rbac.service_account_namespace, &rbac.name)
        .expect("ServiceAccount kubeconfig");
    env.kubeconfig = path;
}

/// One rule of the derived roles: where it is, and the rule.
#[derive(Clone, Debug)]
struct Located {
    /// `None`: the ClusterRole.
    namespace: Option<String>,
    index: usize,
    rule: Rule,
}

fn rules_of(rbac: &Rbac) -> Vec<Located> {
    let rules = &rbac.clusters[CLUSTER];
    let mut all = Vec::new();
    for (ns, list) in &rules.namespaced {
        all.extend(list.iter().enumerate().map(|(index, rule)| Located {
            namespace: Some(ns.clone()),
            index,
            rule: rule.clone(),
        }));
    }
    all.extend(rules.cluster_scoped.iter().enumerate().map(|(index, rule)| Located {
        namespace: None,
        index,
        rule: rule.clone(),
    }));
    all
}

/// The manifests with `change` applied to the rules of the role holding `at`.
fn manifests_with(rbac: &Rbac, at: &Located, change: impl Fn(&mut Vec<Value>)) -> Vec<Value> {
    let mut objects = rbac.manifests_of(CLUSTER);
    for object in &mut objects {
        let holds = match &at.namespace {
            Some(ns) => object["kind"] == "Role" && object["metadata"]["namespace"] == json!(ns),
            None => object["kind"] == "ClusterRole",
        };
        if holds && let Some(rules) = object["rules"].as_array_mut() {
            change(rules);
        }
    }
    objects
}

/// The words of the API server's 403 for `verb` on what `at` grants.
fn refusal(rbac: &Rbac, at: &Located, verb: &str) -> String {
    let scope = match &at.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "User \"{}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
        rbac.user(),
        at.rule.resource,
        at.rule.api_group
    )
}

/// A plan run on the sim: its name, how its sim is set up, what to do before applying.
#[derive(Clone, Copy)]
struct Example {
    plan: &'static str,
    config: fn() -> SimConfig,
    seed: bool,
}

const EBS_RESTORE: Example = Example { plan: "ebs-cassandra-restore", config: fast_config, seed: true };
const ETCD_RESTORE: Example = Example { plan: "etcd-restore", config: fast_config, seed: false };

/// The grow example with EBS refusing every resize, so each claim's fallback (restore
/// bigger) runs.
fn rate_limited() -> SimConfig {
    let limit = drplan::sim::ModificationLimit { max: 0, window: std::time::Duration::from_secs(24 * 3600) };
    // `max: 0`: EBS refuses every modification.
    SimConfig { modification_limit: limit, ..fast_config() }
}

async fn example_env(example: Example, label: &str) -> Env {
    let env = env(example.plan, label, (example.config)()).await;
    if example.seed {
        seed_cassandra(&env).await;
    }
    env
}

/// Applies `example` as the ServiceAccount with `objects` granted.
async fn apply_with(example: Example, label: &str, rbac: &Rbac, objects: &[Value]) -> (Env, apply_common::DrResult) {
    let mut env = example_env(example, label).await;
    act_as(&mut env, rbac, objects).await;
    let result = env.apply(&[]).await;
    (env, result)
}

/// The derived rights suffice: the apply succeeds, and the sim saw requests from the
/// ServiceAccount only (nothing was refused).
async fn applies_with_derived_rights(example: Example) -> Env {
    let rbac = derived(example.plan, false);
    let (env, result) = apply_with(example, &format!("{}-ok", example.plan), &rbac, &rbac.manifests_of(CLUSTER)).await;
    result.assert_success(&format!("dr apply {} as {}", example.plan, rbac.user()));
    assert_nothing_refused(&env);
    env
}

/// The sim refused none of the ServiceAccount's requests. Secrets are never granted: an
/// exec step reads those its pod mounts only to redact their values from its output, and
/// does without them (patterns still apply).
fn assert_nothing_refused(env: &Env) {
    let refused: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.code == 403 && !(r.resource == "secrets" && r.verb == "get"))
        .collect();
    assert!(refused.is_empty(), "no request was refused: {refused:?}");
}

/// Without `rule` (or only some verbs of it) the apply fails with the 403 that names it.
async fn fails_without(example: Example, rbac: &Rbac, at: &Located, verbs: &[String]) {
    let label = format!("{}-{}-{}", example.plan, at.namespace.as_deref().unwrap_or("cluster"), at.index);
    let objects = manifests_with(rbac, at, |rules| {
        let rule = &mut rules[at.index];
        let kept: Vec<Value> =
            rule["verbs"].as_array().unwrap().iter().filter(|v| !verbs.iter().any(|r| *v == r)).cloned().collect();
        rule["verbs"] = json!(kept);
    });
    let objects: Vec<Value> = objects
        .into_iter()
        .map(|mut o| {
            if let Some(rules) = o["rules"].as_array_mut() {
                rules.retain(|r| r["verbs"].as_array().is_some_and(|v| !v.is_empty()));
            }
            o
        })
        .collect();
    let (env, result) = apply_with(example, &label, rbac, &objects).await;
    let logs = env.dump_logs(&result);
    assert_eq!(result.code, Some(1), "{} without {verbs:?} of {:?} must fail\n{logs}", example.plan, at.rule);
    let named = verbs.iter().any(|verb| logs.contains(&refusal(rbac, at, verb)));
    assert!(named, "the failure names the missing permission {verbs:?} of {:?}\n{logs}", at.rule);
}

/// Every rule a planned run uses is needed: each removed once.
async fn every_rule_is_needed(example: Example, sample: impl Fn(usize) -> bool) {
    let rbac = derived(example.plan, false);
    let rules: Vec<Located> = rules_of(&rbac).into_iter().filter(|l| l.rule.always_used()).collect();
    assert!(rules.len() >= 3, "{} derives rules: {rules:?}", example.plan);
    for (n, at) in rules.iter().enumerate().filter(|(n, _)| sample(*n)) {
        let _ = n;
        fails_without(example, &rbac, at, &at.rule.verbs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebs_cassandra_restore_runs_with_exactly_its_derived_rights() {
    applies_with_derived_rights(EBS_RESTORE).await;
    every_rule_is_needed(EBS_RESTORE, |_| true).await;
}

/// Each verb of the EBS example's rules is needed too. Watches excepted: a wait whose
/// condition already holds at its initial list never starts its watch, so whether a run
/// watches depends on timing (`a_refused_watch_fails_its_step_without_retrying` covers one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebs_cassandra_restore_needs_each_verb_of_its_rules() {
    let rbac = derived(EBS_RESTORE.plan, false);
    for at in rules_of(&rbac).into_iter().filter(|l| l.rule.verbs.len() > 1) {
        for verb in &at.rule.verbs {
            if verb == "watch" || at.rule.conditional.contains_key(verb) {
                continue;
            }
            fails_without(EBS_RESTORE, &rbac, &at, std::slice::from_ref(verb)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restore_runs_with_exactly_its_derived_rights() {
    applies_with_derived_rights(ETCD_RESTORE).await;
    every_rule_is_needed(ETCD_RESTORE, |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ha_restore_runs_with_its_derived_rights_and_needs_a_sample_of_them() {
    let example = Example { plan: "etcd-ha-restore", config: fast_config, seed: false };
    applies_with_derived_rights(example).await;
    every_rule_is_needed(example, |n| n % 3 == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rook_ceph_kafka_restore_runs_with_its_derived_rights_and_needs_a_sample_of_them() {
    let example = Example { plan: "rook-ceph-kafka-restore", config: fast_config, seed: false };
    applies_with_derived_rights(example).await;
    every_rule_is_needed(example, |n| n % 3 == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_disk_rebind_runs_with_its_derived_rights_and_needs_a_sample_of_them() {
    let example = Example { plan: "aks-disk-rebind", config: fast_config, seed: false };
    applies_with_derived_rights(example).await;
    every_rule_is_needed(example, |n| n % 2 == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebs_cassandra_grow_runs_its_fallback_with_its_derived_rights() {
    let example = Example { plan: "ebs-cassandra-grow", config: rate_limited, seed: true };
    let env = applies_with_derived_rights(example).await;
    let snapshots = env.sim.requests().into_iter().filter(|r| r.resource == "volumesnapshots" && r.verb == "create");
    assert_eq!(snapshots.filter(|r| r.code == 201).count(), 3, "every claim was restored bigger by its fallback");
    every_rule_is_needed(example, |n| n % 3 == 2).await;
}

/// `dr plan` as the read-only ServiceAccount: it plans (exit 0 or 2), and without any
/// one of its rules it fails with the 403 naming it.
async fn plans_with_read_only_rights(plan: &'static str) {
    let rbac = derived(plan, true);
    let mut env = env(plan, &format!("{plan}-ro"), fast_config()).await;
    act_as(&mut env, &rbac, &rbac.manifests_of(CLUSTER)).await;
    let plan_file = env.plan.to_string_lossy().into_owned();
    let planned = env.dr(&["plan", &plan_file], &[]).await;
    assert!(matches!(planned.code, Some(0 | 2)), "dr plan {plan} read-only\n{}", env.dump_logs(&planned));
    for at in rules_of(&rbac) {
        assert!(at.rule.verbs.iter().all(|v| v == "list"), "read-only rules only list: {:?}", at.rule);
        // Swap in the role without this rule, run `dr plan`, put the whole role back.
        let without = manifests_with(&rbac, &at, |rules| {
            rules.remove(at.index);
        });
        replace_roles(&env, &without).await;
        let refused = env.dr(&["plan", &plan_file], &[]).await;
        let logs = env.dump_logs(&refused);
        assert_eq!(refused.code, Some(1), "dr plan {plan} without {:?}\n{logs}", at.rule);
        assert!(logs.contains(&refusal(&rbac, &at, "list")), "names the missing permission {:?}\n{logs}", at.rule);
        replace_roles(&env, &rbac.manifests_of(CLUSTER)).await;
    }
    // And with the read-only rights, `dr apply` is refused before it changes anything.
    let applied = env.apply(&[]).await;
    let logs = env.dump_logs(&applied);
    assert_eq!(applied.code, Some(1), "{logs}");
    assert!(logs.contains("is forbidden: User"), "{logs}");
    let changed: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.code < 300 && !["get", "list", "watch"].contains(&r.verb.as_str()))
        .filter(|r| {
            r.group != "rbac.authorization.k8s.io" && !["namespaces", "serviceaccounts"].contains(&r.resource.as_str())
        })
        .collect();
    assert!(changed.is_empty(), "nothing but the test's own set-up was written: {changed:?}");
}

/// Replaces the Roles and ClusterRole in the sim with those of `objects`.
async fn replace_roles(env: &Env, objects: &[Value]) {
    for object in objects.iter().filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole") {
        let api = api_for(env, object);
        let name = object["metadata"]["name"].as_str().unwrap();
        let mut current = api.get(name).await.expect("role exists");
        current.data["rules"] = object["rules"].clone();
        api.replace(name, &PostParams::default(), &current).await.expect("role replaced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_plans_with_its_read_only_rights_and_needs_each_of_them() {
    for plan in [
        "ebs-cassandra-restore",
        "ebs-cassandra-grow",
        "rook-ceph-kafka-restore",
        "aks-disk-rebind",
        "etcd-restore",
        "etcd-ha-restore",
    ] {
        plans_with_read_only_rights(plan).await;
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check_golden(name: &str, actual: &str) {
    let path: PathBuf = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual).unified_diff().header("golden", "now").to_string();
        panic!("{} differs (regenerate with UPDATE_GOLDEN=1 cargo test --test rbac):\n{diff}", path.display());
    }
}

/// `dr rbac` of the EBS example, as printed (YAML), and as JSON read back.
#[test]
fn the_ebs_example_derives_these_roles() {
    let dr = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr")).args(args).output().expect("dr runs");
        assert!(out.status.success(), "dr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let plan = plan_path("ebs-cassandra-restore");
    let plan = plan.to_str().unwrap();
    let yaml = dr(&["rbac", plan]);
    check_golden("rbac-ebs-cassandra-restore.yaml", &yaml);
    let list: Value = serde_json::from_str(&dr(&["rbac", plan, "--format", "json"])).expect("JSON");
    let kinds: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]);
    // The same documents as the YAML, read back by the plan-language reader.
    let parsed = drplan::lang::yaml::parse_str("rbac.yaml", &yaml, drplan::lang::yaml::Limits::MANIFEST).expect("YAML");
    let from_yaml: Vec<Value> = parsed.documents.iter().map(|d| d.to_json()).collect();
    assert_eq!(Value::Array(from_yaml), list["items"]);
    // Claims and volumes are named; nothing is granted on Secrets or on every PV.
    let role = &list["items"][1];
    assert!(role["rules"].as_array().unwrap().iter().any(|r| r["resourceNames"]
        == json!(["cassandra-data-cassandra-0", "cassandra-data-cassandra-1", "cassandra-data-cassandra-2"])));
    assert!(!yaml.contains("secrets"));
    let cluster_role = &list["items"][3];
    let patch_pvs = cluster_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["verbs"].as_array().unwrap().contains(&json!("patch")));
    assert_eq!(patch_pvs.and_then(|r| r["resourceNames"].as_array()).map(Vec::len), Some(3), "{cluster_role}");
}

/// With `--with-rollback` rights, a run is applied and rolled back as the ServiceAccount
/// (what a drill does); without them the rollback is refused with a 403.
async fn rolls_back_with_derived_rights(example: Example) {
    let with_rollback = derived_with(example.plan, FileOptions { rollback: true, ..FileOptions::default() });
    let apply_only = derived(example.plan, false);

    for (rbac, rolls_back) in [(&apply_only, false), (&with_rollback, true)] {
        let label = format!("{}-rollback-{rolls_back}", example.plan);
        let (env, applied) = apply_with(example, &label, rbac, &rbac.manifests_of(CLUSTER)).await;
        applied.assert_success("dr apply");
        let run_id = applied.run_id().expect("run id");
        let rolled_back = env.dr(&["rollback", &run_id], &[]).await;
        let logs = env.dump_logs(&rolled_back);
        if rolls_back {
            rolled_back.assert_success(&format!("dr rollback as {}", rbac.user()));
            assert_nothing_refused(&env);
        } else {
            assert_eq!(rolled_back.code, Some(1), "apply-only rights do not roll back\n{logs}");
            assert!(logs.contains("is forbidden: User"), "{logs}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebs_cassandra_restore_rolls_back_with_its_derived_rollback_rights() {
    rolls_back_with_derived_rights(EBS_RESTORE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_disk_rebind_rolls_back_with_its_derived_rollback_rights() {
    rolls_back_with_derived_rights(Example { plan: "aks-disk-rebind", config: fast_config, seed: false }).await;
}

/// The IAM policy of the EBS step kinds: each create on the ARNs the plan names, tags
/// only within the create call that makes the resource (`ec2:CreateAction`).
#[test]
fn ebs_steps_get_their_ec2_actions_with_tags_only_on_create() {
    let dir = std::env::temp_dir().join(format!("drplan-rbac-ebs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("ebs-copy.yaml");
    std::fs::write(
        &plan,
        r#"apiVersion: drplan.dev/v1alpha1
kind: DrPlan
metadata: {name: ebs-copy}
clusters:
  - {name: primary, context: prod}
steps:
  - id: snap
    ebsSnapshot: {region: us-east-1, volumeId: vol-0123456789abcdef0}
  - id: snap-done
    wait:
      for:
        ebsSnapshotCompleted: {region: us-east-1, snapshot: {fromStep: snap}}
  - id: copy
    after: snap-done
    ebsCopySnapshot: {sourceRegion: us-east-1, region: us-west-2, snapshot: {fromStep: snap}}
  - id: volume
    ebsCreateVolume: {region: us-west-2, availabilityZone: us-west-2a, snapshot: {fromStep: copy}}
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["rbac", plan.to_str().unwrap(), "--iam", "--account-id", "123456789012"])
        .output()
        .expect("dr runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let policy: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let statements = policy["Statement"].as_array().unwrap();
    let with = |action: &str| -> Vec<&Value> {
        statements.iter().filter(|s| s["Action"].as_array().unwrap().contains(&json!(action))).collect()
    };
    let create_snapshot = with("ec2:CreateSnapshot");
    assert_eq!(
        create_snapshot[0]["Resource"],
        json!(["arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0", "arn:aws:ec2:us-east-1::snapshot/*"])
    );
    let tags = with("ec2:CreateTags");
    let mut conditions: Vec<&str> =
        tags.iter().map(|s| s["Condition"]["StringEquals"]["ec2:CreateAction"].as_str().unwrap()).collect();
    conditions.sort();
    assert_eq!(conditions, ["CopySnapshot", "CreateSnapshot", "CreateVolume"], "every tag grant is conditional");
    assert_eq!(with("ec2:CreateVolume")[0]["Resource"][0], "arn:aws:ec2:us-west-2:123456789012:volume/*");
    assert_eq!(with("ec2:DescribeSnapshots")[0]["Resource"], json!(["*"]));
    assert!(with("ec2:DeleteSnapshot").is_empty() && with("ec2:DeleteVolume").is_empty(), "nothing is deleted");
    // `--read-only`: what `dr plan` reads of EBS (one DescribeVolumes and one
    // DescribeSnapshots per region), nothing that changes anything.
    let rbac = |extra: &str| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
            .args(["rbac", plan.to_str().unwrap(), "--iam", extra])
            .output()
            .expect("dr runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let actions = |policy: &Value| -> Vec<String> {
        let mut all: Vec<String> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(actions(&rbac("--read-only")), ["ec2:DescribeSnapshots", "ec2:DescribeVolumes"]);
    // `--with-rollback`: rollback deletes what the run made, found by its tags.
    let with_rollback = actions(&rbac("--with-rollback"));
    for action in ["ec2:DeleteSnapshot", "ec2:DeleteVolume"] {
        assert!(with_rollback.iter().any(|a| a == action), "{action} in {with_rollback:?}");
    }
}

/// A watch the API server refuses (403) fails its step at once, naming the permission:
/// retrying cannot grant it (a cut or throttled watch is still retried). The sim runs
/// slowly enough here that the restored pods are not Ready when the wait starts, so the
/// wait has to watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_watch_fails_its_step_without_retrying() {
    fn slow() -> SimConfig {
        SimConfig { speed: 5.0, ..SimConfig::default() }
    }
    let example = Example { config: slow, ..EBS_RESTORE };
    let rbac = derived(example.plan, false);
    let workloads = rules_of(&rbac)
        .into_iter()
        .find(|l| l.rule.resource == "statefulsets" && l.rule.verbs.contains(&"watch".to_string()))
        .expect("a rule watching StatefulSets");
    let objects = manifests_with(&rbac, &workloads, |rules| {
        let rule = &mut rules[workloads.index];
        let kept: Vec<Value> = rule["verbs"].as_array().unwrap().iter().filter(|v| *v != "watch").cloned().collect();
        rule["verbs"] = json!(kept);
    });
    let (env, result) = apply_with(example, "ebs-no-watch", &rbac, &objects).await;
    let logs = env.dump_logs(&result);
    assert_eq!(result.code, Some(1), "{logs}");
    assert!(logs.contains(&refusal(&rbac, &workloads, "watch")), "names the missing permission\n{logs}");
    assert!(!logs.contains("retrying"), "a 403 is not retried\n{logs}");
}

/// What `dr drill manifests` prints is enough for the scheduled drill: created in the
/// cluster, its ServiceAccount applies the plan, verifies it and rolls it back, with the
/// run record and lock kept in the cluster (`--state-store kubernetes://drplan`), and no
/// request of it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_drill_runs_with_the_rights_its_manifests_grant() {
    use drplan::ops::drill::manifests::{DerivedAccess, DrillManifestOptions, manifests};
    let example = EBS_RESTORE;
    let rbac = derived_with(
        example.plan,
        FileOptions { rollback: true, service_account_namespace: "drplan".into(), ..FileOptions::default() },
    );
    let (access, others) = DerivedAccess::in_cluster(&rbac, CLUSTER);
    assert!(others.is_empty(), "{others:?}");
    let mut options = DrillManifestOptions::new("@daily");
    options.derived = Some(access);
    let objects = manifests("plan.yaml", "kind: DrPlan\n", example.plan, &options);
    let cron = objects.iter().find(|o| o["kind"] == "CronJob").expect("a CronJob");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], rbac.name.as_str());
    // Everything but the ConfigMap and the CronJob: the sim runs no CronJobs, so the
    // drill is started here, as the pod would start it.
    let grants: Vec<Value> =
        objects.iter().filter(|o| !["ConfigMap", "CronJob"].contains(&o["kind"].as_str().unwrap())).cloned().collect();
    let mut env = example_env(example, "scheduled-drill").await;
    act_as(&mut env, &rbac, &grants).await;
    let plan = env.plan.to_string_lossy().into_owned();
    let drilled =
        env.dr(&["drill", &plan, "--output", "plain"], &[("DRPLAN_STATE_STORE", "kubernetes://drplan")]).await;
    drilled.assert_success(&format!("dr drill as {}", rbac.user()));
    assert_nothing_refused(&env);
    let records = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "configmaps" && r.namespace == "drplan" && r.verb == "create")
        .count();
    assert!(records >= 2, "the run and its rollback are recorded in the cluster ({records} ConfigMaps created)");
    assert!(env.run_ids().is_empty(), "nothing in the local state directory: {:?}", env.run_ids());
}

/// The Argo CD example pauses self-heal through the Application: its derived rights
/// suffice, and without the rule on `applications` the pause is refused before anything
/// is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_postgres_restore_runs_with_its_derived_rights_and_needs_the_application_rule() {
    let example = Example { plan: "argocd-postgres-restore", config: fast_config, seed: false };
    let rbac = derived(example.plan, false);
    let cluster = rbac.clusters.keys().next().expect("one cluster").clone();
    let objects = rbac.manifests_of(&cluster);
    let (env, result) = apply_with(example, "argocd-ok", &rbac, &objects).await;
    result.assert_success(&format!("dr apply {} as {}", example.plan, rbac.user()));
    let refused: Vec<_> = env.sim.requests().into_iter().filter(|r| r.code == 403).collect();
    assert!(refused.is_empty(), "no request was refused: {refused:?}");

    let without: Vec<Value> = objects
        .iter()
        .cloned()
        .map(|mut o| {
            if let Some(rules) = o["rules"].as_array_mut() {
                rules.retain(|r| !r["resources"].as_array().unwrap().iter().any(|x| x == "applications"));
            }
            o
        })
        .collect();
    assert_ne!(without, objects, "the derived roles grant something on applications");
    let (env, result) = apply_with(example, "argocd-no-applications", &rbac, &without).await;
    let logs = env.dump_logs(&result);
    assert_eq!(result.code, Some(1), "{logs}");
    assert!(logs.contains("applications.argoproj.io") && logs.contains("is forbidden"), "{logs}");
    let scaled: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "statefulsets" && r.subresource == "scale" && r.verb == "patch")
        .collect();
    assert!(scaled.is_empty(), "nothing was stopped: {scaled:?}");
}
