//! The sim's reconcilers that fight restores unless paused: the Argo CD-like Application
//! controller (self-heal only), the Flux-like Kustomization controller (unless
//! suspended) and the operator-like reconciler (unless its pause annotation is set or its
//! operator Deployment is down), each reverting after the configured delay.

mod sim_common;

use std::path::PathBuf;
use std::time::Duration;

use drplan::sim::{SimCluster, SimConfig, SimHandle};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: apps, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#;

fn git(namespace: &str) -> String {
    let indented: String = STATEFULSET.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: git, namespace: {namespace}}}\ndata:\n  web.yaml: |\n{indented}"
    )
}

async fn start(label: &str, manifests: &[String]) -> (SimHandle, kube::Client) {
    let dir = sim_common::scratch_dir(label);
    let path: PathBuf = dir.join("cluster.yaml");
    std::fs::write(&path, manifests.join("\n---\n")).expect("manifests written");
    let config = SimConfig { revert_after: Duration::from_secs(30), ..sim_common::paused_config() };
    let sim = SimCluster::start(&[path], config).await.expect("sim starts");
    let client = sim.client().expect("client");
    (sim, client)
}

async fn replicas(client: &kube::Client) -> i32 {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), "apps").get("web").await.expect("web");
    sts.spec.and_then(|s| s.replicas).unwrap_or_default()
}

async fn scale_to_zero(client: &kube::Client) {
    let api = Api::<StatefulSet>::namespaced(client.clone(), "apps");
    api.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 0 } })))
        .await
        .expect("scaled");
}

fn api(client: &kube::Client, group: &str, version: &str, kind: &str, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)))
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.expect("object")).expect("JSON")
}

fn application(sync_policy: Value) -> String {
    let app = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": { "name": "web", "namespace": "argocd", "annotations": { "sim.drplan.dev/manifests": "argocd/git" } },
        "spec": {
            "project": "default",
            "source": { "repoURL": "https://git.example.com/web.git", "path": "web" },
            "destination": { "server": "https://kubernetes.default.svc", "namespace": "apps" },
            "syncPolicy": sync_policy,
        },
    });
    serde_json::to_string(&app).expect("JSON is YAML")
}

#[tokio::test]
async fn argo_self_heal_reverts_a_scale_down_after_its_delay_and_reports_sync() {
    let policy = json!({ "automated": { "prune": true, "selfHeal": true } });
    let (sim, client) = start("argo-heal", &[STATEFULSET.into(), git("argocd"), application(policy)]).await;
    let apps = api(&client, "argoproj.io", "v1alpha1", "Application", "argocd");
    assert_eq!(get(&apps, "web").await["status"]["sync"]["status"], "Synced");
    scale_to_zero(&client).await;
    sim.advance(Duration::from_secs(29));
    assert_eq!(replicas(&client).await, 0, "not before the delay");
    assert_eq!(get(&apps, "web").await["status"]["sync"]["status"], "OutOfSync");
    sim.advance(Duration::from_secs(2));
    assert_eq!(replicas(&client).await, 2, "self-healed to Git");
    assert_eq!(get(&apps, "web").await["status"]["sync"]["status"], "Synced");
    let sts = Api::<StatefulSet>::namespaced(client.clone(), "apps").get("web").await.expect("web");
    let tracking = sts.metadata.annotations.unwrap_or_default().get("argocd.argoproj.io/tracking-id").cloned();
    assert_eq!(tracking.as_deref(), Some("web:apps/StatefulSet:apps/web"));
}

#[tokio::test]
async fn argo_without_self_heal_or_automation_only_reports_the_drift() {
    for policy in [json!({ "automated": { "prune": true } }), json!({})] {
        let (sim, client) =
            start("argo-manual", &[STATEFULSET.into(), git("argocd"), application(policy.clone())]).await;
        scale_to_zero(&client).await;
        sim.advance(Duration::from_secs(600));
        assert_eq!(replicas(&client).await, 0, "{policy}: never reverted");
        let apps = api(&client, "argoproj.io", "v1alpha1", "Application", "argocd");
        assert_eq!(get(&apps, "web").await["status"]["sync"]["status"], "OutOfSync", "{policy}");
    }
}

#[tokio::test]
async fn flux_reverts_drift_unless_suspended() {
    let kustomization = |suspend: bool| {
        serde_json::to_string(&json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": { "name": "web", "namespace": "flux-system", "annotations": { "sim.drplan.dev/manifests": "flux-system/git" } },
            "spec": { "interval": "10m", "path": "./web", "prune": true, "suspend": suspend,
                      "sourceRef": { "kind": "GitRepository", "name": "web" } },
        }))
        .expect("JSON")
    };
    for suspend in [false, true] {
        let (sim, client) = start("flux", &[STATEFULSET.into(), git("flux-system"), kustomization(suspend)]).await;
        scale_to_zero(&client).await;
        sim.advance(Duration::from_secs(31));
        let expected = if suspend { 0 } else { 2 };
        assert_eq!(replicas(&client).await, expected, "suspend: {suspend}");
        let sts = Api::<StatefulSet>::namespaced(client.clone(), "apps").get("web").await.expect("web");
        let labels = sts.metadata.labels.unwrap_or_default();
        assert_eq!(labels.contains_key("kustomize.toolkit.fluxcd.io/name"), !suspend, "labelled when applied");
    }
}

const KAFKA_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: kafkas.kafka.strimzi.io}
spec:
  group: kafka.strimzi.io
  names: {kind: Kafka, plural: kafkas, singular: kafka, listKind: KafkaList}
  scope: Namespaced
  versions:
  - name: v1beta2
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

fn kafka(annotations: Value) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "Kafka",
        "metadata": { "name": "es", "namespace": "apps", "uid": "11111111-2222-4333-8444-555555555555", "annotations": annotations },
        "spec": { "kafka": { "replicas": 2 } },
    }))
    .expect("JSON")
}

/// The StatefulSet owned by the Kafka resource, as an operator creates it.
fn owned_statefulset() -> String {
    STATEFULSET.replace(
        "metadata: {name: web, namespace: apps, labels: {app: web}}",
        "metadata: {name: web, namespace: apps, labels: {app: web}, ownerReferences: [{apiVersion: kafka.strimzi.io/v1beta2, kind: Kafka, name: es, uid: 11111111-2222-4333-8444-555555555555, controller: true}]}",
    )
}

#[tokio::test]
async fn an_operator_rescales_what_it_owns_unless_paused() {
    let running = kafka(json!({}));
    let (sim, client) = start("operator", &[KAFKA_CRD.into(), running, owned_statefulset()]).await;
    scale_to_zero(&client).await;
    sim.advance(Duration::from_secs(31));
    assert_eq!(replicas(&client).await, 2, "the operator put its replicas back");

    let paused = kafka(json!({ "strimzi.io/pause-reconciliation": "true" }));
    let (sim, client) = start("operator-paused", &[KAFKA_CRD.into(), paused, owned_statefulset()]).await;
    scale_to_zero(&client).await;
    sim.advance(Duration::from_secs(600));
    assert_eq!(replicas(&client).await, 0, "paused: left alone");
    // Unpaused, it reconciles again.
    let kafkas = api(&client, "kafka.strimzi.io", "v1beta2", "Kafka", "apps");
    let resume = json!({ "metadata": { "annotations": { "strimzi.io/pause-reconciliation": null } } });
    kafkas.patch("es", &PatchParams::default(), &Patch::Merge(&resume)).await.expect("resumed");
    sim.advance(Duration::from_secs(31));
    assert_eq!(replicas(&client).await, 2, "resumed: reconciled");
}

#[tokio::test]
async fn an_operator_whose_deployment_is_down_does_not_reconcile() {
    let operator = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: strimzi-operator, namespace: apps}
spec:
  replicas: 0
  selector: {matchLabels: {app: strimzi}}
  template:
    metadata: {labels: {app: strimzi}}
    spec: {containers: [{name: operator, image: strimzi/operator}]}
"#;
    let owner = kafka(json!({ "sim.drplan.dev/operator-deployment": "strimzi-operator" }));
    let (sim, client) = start("operator-down", &[KAFKA_CRD.into(), owner, owned_statefulset(), operator.into()]).await;
    scale_to_zero(&client).await;
    sim.advance(Duration::from_secs(600));
    assert_eq!(replicas(&client).await, 0, "its operator is not running");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "apps");
    deployments
        .patch_scale("strimzi-operator", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } })))
        .await
        .expect("operator up");
    sim.advance(Duration::from_secs(60));
    assert_eq!(replicas(&client).await, 2, "running again: reconciled");
}
