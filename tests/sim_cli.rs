//! The `dr sim` subcommands as the CLI runs them: `data put` / `data get` against a running
//! sim, and `serve` refusing a non-loopback address.

mod sim_common;

use std::time::Duration;

use drplan::sim::cli::{DataCommand, ServeArgs, SimCommand, run};
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
        server: sim.url(),
        namespace: "db".into(),
        claim: "cassandra-data-cassandra-2".into(),
        value: "cassandra-2".into(),
    };
    assert_eq!(run(SimCommand::Data(put)), Ok(0));
    assert_eq!(sim.read_claim_data("db", "cassandra-data-cassandra-2").unwrap(), b"cassandra-2");
    let get = DataCommand::Get { server: sim.url(), namespace: "db".into(), claim: "no-such-claim".into() };
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
