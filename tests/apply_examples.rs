//! `dr apply` of the Rook-Ceph/Kafka, AKS and Argo CD examples against the simulated
//! cluster (tests/apply_gitops.rs goes further with the Argo CD one).

mod apply_common;

use apply_common::{env, fast_config};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

const KAFKA_NS: &str = "kafka";
const OPERATOR: &str = "eventstreams-cluster-operator";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_operator_is_stopped_before_the_brokers_and_started_after_them() {
    let env = env("rook-ceph-kafka-restore", "kafka", fast_config()).await;
    for ordinal in 0..3 {
        env.sim.write_claim_data(KAFKA_NS, &format!("data-es-kafka-{ordinal}"), format!("broker-{ordinal}")).unwrap();
    }
    let result = env.apply(&[]).await;
    result.assert_success("dr apply");

    // The successful writes of the run, in the order the API server handled them.
    let writes: Vec<String> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.code < 300 && r.namespace == KAFKA_NS)
        .filter_map(|r| match (r.verb.as_str(), r.resource.as_str(), r.subresource.as_str()) {
            ("patch", "deployments", "scale") => Some(format!("scale deployment/{}", r.name)),
            ("patch", "statefulsets", "scale") => Some(format!("scale statefulset/{}", r.name)),
            ("delete", "persistentvolumeclaims", "") => Some(format!("delete pvc/{}", r.name)),
            ("create", "persistentvolumeclaims", "") => Some("create pvc".to_string()),
            _ => None,
        })
        .collect();
    let position = |what: &str| writes.iter().position(|w| w == what);
    let last_position = |what: &str| writes.iter().rposition(|w| w == what);
    let operator = format!("scale deployment/{OPERATOR}");
    let brokers = "scale statefulset/es-kafka";
    assert_eq!(writes.iter().filter(|w| **w == operator).count(), 2, "operator scaled down and up once: {writes:?}");
    assert_eq!(writes.iter().filter(|w| *w == brokers).count(), 2, "brokers scaled down and up once: {writes:?}");
    let (operator_down, operator_up) = (position(&operator).unwrap(), last_position(&operator).unwrap());
    let (brokers_down, brokers_up) = (position(brokers).unwrap(), last_position(brokers).unwrap());
    assert!(operator_down < brokers_down, "operator stopped first: {writes:?}");
    assert!(brokers_up < operator_up, "operator started last: {writes:?}");
    let claim_writes: Vec<usize> =
        writes.iter().enumerate().filter(|(_, w)| w.contains("pvc")).map(|(i, _)| i).collect();
    assert_eq!(claim_writes.len(), 6, "three deletions and three restores: {writes:?}");
    assert!(
        claim_writes.iter().all(|&i| brokers_down < i && i < brokers_up),
        "claims replaced while stopped: {writes:?}"
    );

    // And the values: everything back at its replicas, each broker with its own data.
    let operator = env.deployment(KAFKA_NS, OPERATOR).await;
    assert_eq!(operator.spec.and_then(|s| s.replicas), Some(1));
    let brokers = env.statefulset(KAFKA_NS, "es-kafka").await;
    assert_eq!(brokers.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(brokers.status.and_then(|s| s.ready_replicas), Some(3));
    let claims = env.claims(KAFKA_NS).await;
    for ordinal in 0..3 {
        let claim = &claims[&format!("data-es-kafka-{ordinal}")];
        assert_eq!(claim.phase, "Bound");
        assert_eq!(claim.data.as_deref(), Some(format!("broker-{ordinal}").as_str()), "{claim:?}");
    }
    apply_common::assert_second_run_changes_nothing(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_restored_disk_is_bound_and_used_in_its_zone() {
    let env = env("aks-disk-rebind", "aks", fast_config()).await;
    let result = env.apply(&[]).await;
    result.assert_success("dr apply");

    let pvc = env.pvcs("web").get("restoredpvc").await.expect("restoredpvc exists");
    assert_eq!(pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()), Some("restored-pv"));
    assert_eq!(pvc.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Bound"));
    let pv = env.pvs().get("restored-pv").await.expect("restored-pv exists");
    let pv_spec = pv.spec.expect("PV spec");
    assert_eq!(pv_spec.claim_ref.as_ref().and_then(|r| r.name.as_deref()), Some("restoredpvc"));
    assert_eq!(pv_spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    let term = &pv_spec.node_affinity.and_then(|a| a.required).expect("PV has node affinity").node_selector_terms[0];
    let expression = &term.match_expressions.as_ref().expect("match expressions")[0];
    assert_eq!(expression.key, "topology.kubernetes.io/zone");
    assert_eq!(expression.values.as_deref(), Some(&["westeurope-1".to_string()][..]));

    let web = env.deployment("web", "web").await;
    let volumes = web.spec.and_then(|s| s.template.spec).and_then(|s| s.volumes).unwrap_or_default();
    let data = volumes.iter().find(|v| v.name == "data").expect("volume data");
    assert_eq!(data.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()), Some("restoredpvc"));
    assert_eq!(web.status.and_then(|s| s.ready_replicas), Some(1));

    let pods: Vec<_> = env
        .pods("web")
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str) == Some("web"))
        .collect();
    assert_eq!(pods.len(), 1, "one web pod: {pods:?}");
    let spec = pods[0].spec.as_ref().expect("pod spec");
    let claims: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()))
        .collect();
    assert_eq!(claims, ["restoredpvc"]);
    let node_name = spec.node_name.as_deref().expect("pod is scheduled");
    let node = Api::<Node>::all(env.client.clone()).get(node_name).await.expect("node");
    let zone = node.metadata.labels.as_ref().and_then(|l| l.get("topology.kubernetes.io/zone")).cloned();
    assert_eq!(zone.as_deref(), Some("westeurope-1"), "pod {:?} on node {node_name}", pods[0].metadata.name);
    // The claim it replaced is left alone, as evidence.
    let datapvc = env.pvcs("web").list(&ListParams::default()).await.unwrap();
    assert!(datapvc.items.iter().any(|c| c.metadata.name.as_deref() == Some("datapvc")));
    apply_common::assert_second_run_changes_nothing(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_example_restores_under_a_paused_self_heal() {
    let env = env("argocd-postgres-restore", "argocd", fast_config()).await;
    env.apply(&[]).await.assert_success("dr apply");
    let sts = env.statefulset("db", "postgres").await;
    assert_eq!(sts.status.and_then(|s| s.ready_replicas), Some(2));
    let self_heal_reverts = env
        .sim
        .mutations()
        .iter()
        .filter(|m| m.actor == "controller/argocd-application-controller" && m.resource.0 == "apps/statefulsets")
        .count();
    assert_eq!(self_heal_reverts, 0, "Argo CD had nothing to revert");
}

/// The cloud examples run with `dr apply PLAN --sim`: the simulated clusters from the
/// plan's directory and the simulated AWS from its `aws.yaml`, talked to through kube and
/// the AWS SDK (faster sim time than the default, same code path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ebs_cross_region_example_applies_with_sim() {
    let plan = apply_common::plan_path("ebs-cross-region");
    let state = std::env::temp_dir().join(format!("drplan-ebs-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dr"));
    command
        .args(["apply", &apply_common::path_str(&plan), "--sim", "--sim-speed", "60", "--auto-approve"])
        .args(["--output", "plain", "--state-dir", &apply_common::path_str(&state)])
        .env("NO_COLOR", "1")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("DRPLAN_FAILPOINT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let result = apply_common::wait_child(apply_common::KillOnDrop(Some(command.spawn().expect("dr starts")))).await;
    result.assert_success("dr apply plans/ebs-cross-region.yaml --sim");
    assert!(result.stderr.contains("copy-2") && result.stderr.contains("dr-ready"), "{}", result.stderr);
}
