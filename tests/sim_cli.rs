//! The `dr sim` subcommands as the CLI runs them: `data put` / `data get` against a running
//! sim, and `serve` refusing a non-loopback address.

mod sim_common;

use std::time::Duration;

use drplan::sim::cli::{DataCommand, DataTarget, ServeArgs, SimCommand, run};
use drplan::sim::{SimCluster, SimConfig};
use sim_common::fixture;

#[test]
fn data_put_and_get_reach_the_claims_volume() {
    // The sim gets its own runtime; `run` builds another, as `dr` does.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = SimConfig { paused: true, ..SimConfig::default() };
    let sim = runtime.block_on(SimCluster::start(&[fixture("cassandra")], config)).unwrap();
    sim.advance(Duration::from_secs(60));
    let put = DataCommand::Put {
        target: DataTarget { server: Some(sim.url()), ..DataTarget::default() },
        namespace: "db".into(),
        claim: "cassandra-data-cassandra-2".into(),
        value: "cassandra-2".into(),
    };
    assert_eq!(run(SimCommand::Data(put)), Ok(0));
    assert_eq!(sim.read_claim_data("db", "cassandra-data-cassandra-2").unwrap(), b"cassandra-2");
    let target = DataTarget { server: Some(sim.url()), ..DataTarget::default() };
    let get = DataCommand::Get { target, namespace: "db".into(), claim: "no-such-claim".into() };
    let err = run(SimCommand::Data(get)).unwrap_err();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn serve_refuses_non_loopback_addresses() {
    let args = ServeArgs {
        paths: vec![fixture("cassandra")],
        listen: "0.0.0.0:0".parse().unwrap(),
        kubeconfig_out: None,
        context: "sim".into(),
        allow_non_loopback: false,
        faults: None,
        speed: 1.0,
        snapshot_ready_after: None,
        aws: None,
        aws_listen: "127.0.0.1:0".parse().unwrap(),
        aws_endpoint_out: None,
    };
    let err = run(SimCommand::Serve(args)).unwrap_err();
    assert!(err.contains("non-loopback"), "{err}");
}

/// Runs `dr` with `args` off the calling thread's runtime; returns (exit code, stdout, stderr).
fn dr(args: &[&str], envs: &[(&str, &std::path::Path)]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dr"));
    command.args(args).env("NO_COLOR", "1").env_remove("KUBECONFIG");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().expect("dr runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn data_reads_the_kubeconfig_and_prints_api_errors_as_messages() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = SimConfig { paused: true, ..SimConfig::default() };
    let sim = runtime.block_on(SimCluster::start(&[fixture("cassandra")], config)).unwrap();
    sim.advance(Duration::from_secs(60));
    let dir = sim_common::scratch_dir("data-kubeconfig");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "rehearsal").unwrap();

    // No --server: the kubeconfig (flag or KUBECONFIG) says where the sim is.
    let claim = "cassandra-data-cassandra-1";
    let put = ["sim", "data", "put", "--kubeconfig", kubeconfig.to_str().unwrap(), "-n", "db", claim, "one"];
    let (code, _, stderr) = dr(&put, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = dr(&["sim", "data", "get", "-n", "db", claim], &[("KUBECONFIG", &kubeconfig)]);
    assert_eq!((code, stdout.trim()), (Some(0), "one"), "{stderr}");

    // A claim that is not bound: the API's message, not a debug dump of its Status.
    let pending = serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "pending", "namespace": "db"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class",
                 "resources": {"requests": {"storage": "1Gi"}}},
    });
    let _inside = runtime.enter();
    let claims: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        sim.client().unwrap(),
        "db",
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("", "v1", "PersistentVolumeClaim")),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(pending).unwrap();
    runtime.block_on(claims.create(&Default::default(), &object)).unwrap();
    let (code, _, stderr) = dr(&["sim", "data", "get", "-n", "db", "pending"], &[("KUBECONFIG", &kubeconfig)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"pending\" is not bound"), "{stderr}");
    for debug in ["Status {", "ErrorResponse", "ApiError", "code: 409"] {
        assert!(!stderr.contains(debug), "a debug dump ({debug}):\n{stderr}");
    }
}
