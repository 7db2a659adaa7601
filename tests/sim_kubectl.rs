//! kubectl, a client nobody here wrote, against the simulated cluster: get, scale, delete
//! and apply through the kubeconfig the sim writes. kubectl must be installed (`.ci/run`
//! installs Debian's `kubernetes-client`); its absence fails the test.

mod sim_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drplan::sim::{SimCluster, SimConfig};
use sim_common::{fixture, scratch_dir};

fn kubectl_binary() -> PathBuf {
    let candidates =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    candidates.into_iter().map(|dir| dir.join("kubectl")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("kubectl is not installed: this test needs it (Debian package kubernetes-client; .ci/run installs it)")
    })
}

/// Runs kubectl off the async runtime (the sim serves on it) and returns stdout; fails on error.
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let (binary, kubeconfig) = (kubectl_binary(), kubeconfig.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", kubeconfig.parent().unwrap())
            .args(&args)
            .output()
    })
    .await
    .unwrap()
    .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl failed\nstdout: {stdout}\nstderr: {stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_scale_delete_apply() {
    let config = SimConfig { pod_ready_after: Duration::ZERO, ..SimConfig::default() };
    let sim = SimCluster::start(&[fixture("cassandra")], config).await.unwrap();
    sim.settle();
    let dir = scratch_dir("kubectl");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();

    let pods = kubectl(&kubeconfig, &["get", "pods", "-n", "db", "-o", "name"]).await;
    assert_eq!(pods.lines().collect::<Vec<_>>(), ["pod/cassandra-0", "pod/cassandra-1", "pod/cassandra-2"]);
    let claims = kubectl(&kubeconfig, &["get", "pvc", "-n", "db", "-o", "jsonpath={.items[*].status.phase}"]).await;
    assert_eq!(claims, "Bound Bound Bound");
    let table = kubectl(&kubeconfig, &["get", "sts", "-n", "db"]).await;
    assert!(table.lines().any(|l| l.starts_with("cassandra") && l.contains("3/3")), "{table}");
    let table = kubectl(&kubeconfig, &["get", "pods", "-n", "db"]).await;
    assert!(table.starts_with("NAME") && table.contains("STATUS"), "{table}");
    assert!(table.lines().skip(1).all(|l| l.contains("1/1") && l.contains("Running")), "{table}");
    let table = kubectl(&kubeconfig, &["get", "pvc", "-n", "db", "cassandra-data-cassandra-0"]).await;
    assert!(
        table.contains("Bound") && table.contains("10Gi") && table.contains("RWO") && table.contains("gp3"),
        "{table}"
    );

    let scaled = kubectl(&kubeconfig, &["scale", "statefulset", "cassandra", "-n", "db", "--replicas=1"]).await;
    assert!(scaled.contains("scaled"), "{scaled}");
    let pods = kubectl(&kubeconfig, &["get", "pods", "-n", "db", "-o", "name"]).await;
    assert_eq!(pods.trim(), "pod/cassandra-0");
    // The API server defaults a StatefulSet's update strategy (RollingUpdate, partition 0),
    // which `kubectl rollout status` requires.
    let rolled =
        kubectl(&kubeconfig, &["rollout", "status", "statefulset/cassandra", "-n", "db", "--timeout=60s"]).await;
    assert!(rolled.contains("roll out complete"), "{rolled}");

    let deleted = kubectl(&kubeconfig, &["delete", "pod", "cassandra-0", "-n", "db"]).await;
    assert!(deleted.contains("deleted"), "{deleted}");
    let recreated =
        kubectl(&kubeconfig, &["get", "pod", "cassandra-0", "-n", "db", "-o", "jsonpath={.metadata.uid}"]).await;
    assert!(!recreated.is_empty(), "the StatefulSet recreates its pod");

    let manifest = dir.join("settings.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: db\ndata:\n  mode: restore\n",
    )
    .unwrap();
    let manifest_arg = manifest.to_str().unwrap();
    assert!(kubectl(&kubeconfig, &["apply", "-f", manifest_arg]).await.contains("created"));
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: db\ndata:\n  mode: verify\n",
    )
    .unwrap();
    assert!(kubectl(&kubeconfig, &["apply", "-f", manifest_arg]).await.contains("configured"));
    let mode = kubectl(&kubeconfig, &["get", "configmap", "settings", "-n", "db", "-o", "jsonpath={.data.mode}"]).await;
    assert_eq!(mode, "verify");

    let verbs: Vec<String> =
        sim.requests().iter().filter(|r| r.resource == "configmaps").map(|r| r.verb.clone()).collect();
    assert!(verbs.contains(&"patch".to_string()), "kubectl apply patches an existing object: {verbs:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A dump whose pods carry their conditions but no container statuses (hand-written or
/// trimmed dumps): the pods and their StatefulSet must agree on readiness.
const TRIMMED_DUMP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: pg}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres, namespace: pg, uid: 0c1e7a52-0000-4000-8000-000000000001}
spec:
  replicas: 2
  serviceName: postgres
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers: [{name: postgres, image: postgres:16}]
status: {replicas: 2, readyReplicas: 2}
"#;

fn trimmed_pod(ordinal: usize) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Pod
metadata:
  name: postgres-{ordinal}
  namespace: pg
  labels: {{app: postgres}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: StatefulSet, name: postgres, uid: 0c1e7a52-0000-4000-8000-000000000001, controller: true}}
spec:
  nodeName: node-a
  containers: [{{name: postgres, image: postgres:16}}]
status:
  phase: Running
  conditions:
  - {{type: Ready, status: "True"}}
  - {{type: ContainersReady, status: "True"}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_from_a_dump_are_as_ready_as_their_statefulset() {
    let dir = scratch_dir("trimmed-dump");
    let dump = dir.join("dump.yaml");
    std::fs::write(&dump, format!("{TRIMMED_DUMP}{}{}", trimmed_pod(0), trimmed_pod(1))).unwrap();
    let sim = SimCluster::start(&[dump], SimConfig::default()).await.unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let sts = kubectl(&kubeconfig, &["get", "sts", "-n", "pg"]).await;
    assert!(sts.lines().any(|l| l.starts_with("postgres") && l.contains("2/2")), "{sts}");
    let pods = kubectl(&kubeconfig, &["get", "pods", "-n", "pg"]).await;
    let rows: Vec<&str> = pods.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{pods}");
    assert!(rows.iter().all(|l| l.contains("1/1") && l.contains("Running")), "{pods}");
    let ready = kubectl(
        &kubeconfig,
        &["get", "pod", "postgres-0", "-n", "pg", "-o", "jsonpath={.status.containerStatuses[0].ready}"],
    )
    .await;
    assert_eq!(ready, "true", "container statuses agree with the Ready condition");
    std::fs::remove_dir_all(&dir).ok();
}

/// `kubectl create token` (the TokenRequest API) mints a ServiceAccount token in the sim;
/// requests with it get what the Role bound to the ServiceAccount allows, and the API
/// server's 403 for the rest. (kubectl itself sends no credentials over plain HTTP, so
/// the token is used through kube-rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_mints_a_service_account_token_that_gets_what_its_role_allows() {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use kube::api::{Api, ListParams};

    let sim = SimCluster::start(&[fixture("cassandra")], SimConfig::default()).await.unwrap();
    let dir = scratch_dir("kubectl-rbac");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let manifests = dir.join("rbac.yaml");
    std::fs::write(
        &manifests,
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: db}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: db}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: db}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: db}]
"#,
    )
    .unwrap();
    kubectl(&kubeconfig, &["apply", "-f", manifests.to_str().unwrap()]).await;
    let token = kubectl(&kubeconfig, &["create", "token", "reader", "-n", "db"]).await.trim().to_string();
    assert!(token.len() > 16, "{token}");

    let mut config = kube::Config::new(sim.url().parse().unwrap());
    config.auth_info.token = Some(token.into());
    let client = kube::Client::try_from(config).unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), "db").list(&ListParams::default()).await.expect("pods allowed");
    assert!(!pods.items.is_empty(), "the reader lists the pods");
    let refused = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "db").list(&ListParams::default()).await;
    match refused {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                status.message,
                "persistentvolumeclaims is forbidden: User \"system:serviceaccount:db:reader\" cannot list resource \
                 \"persistentvolumeclaims\" in API group \"\" in the namespace \"db\""
            );
        }
        other => panic!("listing claims must be forbidden: {other:?}"),
    }
    // A token nobody issued is 401.
    let mut config = kube::Config::new(sim.url().parse().unwrap());
    config.auth_info.token = Some("sim-sa.forged".to_string().into());
    let forged =
        Api::<Pod>::namespaced(kube::Client::try_from(config).unwrap(), "db").list(&ListParams::default()).await;
    assert!(matches!(forged, Err(kube::Error::Api(s)) if s.code == 401), "a forged token is refused");
}

/// `dr rbac PLAN | kubectl apply -f -`: the YAML it prints is what kubectl applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_what_dr_rbac_prints() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sim = SimCluster::start(&[root.join("plans/ebs-cassandra-restore")], SimConfig::default()).await.unwrap();
    let dir = scratch_dir("kubectl-dr-rbac");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let printed = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["rbac", root.join("plans/ebs-cassandra-restore.yaml").to_str().unwrap()])
        .output()
        .expect("dr rbac runs");
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let manifests = dir.join("rbac.yaml");
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: drplan\n---\n";
    std::fs::write(&manifests, [namespace.as_bytes(), &printed.stdout].concat()).unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-f", manifests.to_str().unwrap()]).await;
    for line in [
        "serviceaccount/drplan-ebs-cassandra-restore created",
        "role.rbac.authorization.k8s.io/drplan-ebs-cassandra-restore created",
        "rolebinding.rbac.authorization.k8s.io/drplan-ebs-cassandra-restore created",
        "clusterrole.rbac.authorization.k8s.io/drplan-ebs-cassandra-restore created",
        "clusterrolebinding.rbac.authorization.k8s.io/drplan-ebs-cassandra-restore created",
    ] {
        assert!(applied.contains(line), "{line}\n{applied}");
    }
    let rules = kubectl(
        &kubeconfig,
        &["get", "role", "drplan-ebs-cassandra-restore", "-n", "cassandra", "-o", "jsonpath={.rules[*].resources}"],
    )
    .await;
    assert!(rules.contains("statefulsets/scale"), "{rules}");
}
