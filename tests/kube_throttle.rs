//! Client-side rate limiting and 429 `Retry-After`, through the real `kube::Client` against
//! the simulated cluster. Timing assertions are lower bounds only (a loaded machine makes
//! things slower, never faster than the limit allows).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drplan::cluster::live::client_for;
use drplan::cluster::throttle::RateLimit;
use drplan::sim::{FaultRule, SimCluster, SimConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

fn manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans/ebs-cassandra-restore")
}

fn pod_lists(requests: &[drplan::sim::RequestRecord]) -> Vec<&drplan::sim::RequestRecord> {
    requests.iter().filter(|r| r.verb == "list" && r.resource == "pods").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sends_no_faster_than_its_token_bucket_allows() {
    let sim = SimCluster::start(&[manifests()], SimConfig::default()).await.unwrap();
    let limit = RateLimit { qps: 20.0, burst: 5 };
    let client = client_for(sim.kube_config().unwrap(), limit).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "cassandra");
    let requests = 25;
    let started = Instant::now();
    for _ in 0..requests {
        pods.list(&ListParams::default()).await.unwrap();
    }
    let elapsed = started.elapsed();
    // 5 go at once, the other 20 at 20 a second: at least one second, whatever the load.
    let least = Duration::from_secs_f64(f64::from(requests - limit.burst) / limit.qps);
    assert!(
        elapsed >= least.mul_f64(0.95),
        "{requests} requests took {elapsed:?}, the bucket allows no less than {least:?}"
    );
    let served = sim.requests();
    assert_eq!(pod_lists(&served).len(), requests as usize, "every request reached the server once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_bucket_per_client() {
    let sim = SimCluster::start(&[manifests()], SimConfig::default()).await.unwrap();
    let limit = RateLimit { qps: 20.0, burst: 4 };
    let client = client_for(sim.kube_config().unwrap(), limit).unwrap();
    let started = Instant::now();
    let lists = (0..24).map(|_| {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "cassandra");
        async move { pods.list(&ListParams::default()).await.map(|_| ()) }
    });
    for result in futures::future::join_all(lists).await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(950), "24 concurrent requests at 20/s past a burst of 4 took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_sent_again_only_after_the_server_said() {
    let sim = SimCluster::start(&[manifests()], SimConfig::default()).await.unwrap();
    sim.with_state(|s| {
        s.config.faults.rules = vec![FaultRule {
            verb: Some("list".into()),
            resource: Some("pods".into()),
            status: Some(429),
            retry_after: Some(Duration::from_secs(2)),
            times: Some(1),
            ..FaultRule::default()
        }]
    });
    let client = client_for(sim.kube_config().unwrap(), RateLimit::DEFAULT).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "cassandra");
    let started = Instant::now();
    pods.list(&ListParams::default()).await.expect("the retried request succeeds");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(2), "sent again after {elapsed:?}, before the 2 s the server asked for");
    let served = sim.requests();
    let codes: Vec<u16> = pod_lists(&served).iter().map(|r| r.code).collect();
    assert_eq!(codes, [429, 200], "one throttled answer, then the retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_asking_for_longer_than_the_bound_reaches_the_caller() {
    let sim = SimCluster::start(&[manifests()], SimConfig::default()).await.unwrap();
    sim.with_state(|s| {
        s.config.faults.rules = vec![FaultRule {
            verb: Some("list".into()),
            status: Some(429),
            retry_after: Some(Duration::from_secs(3600)),
            ..FaultRule::default()
        }]
    });
    let client = client_for(sim.kube_config().unwrap(), RateLimit::DEFAULT).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "cassandra");
    let error = pods.list(&ListParams::default()).await.expect_err("an hour is not waited out in the client");
    assert!(matches!(&error, kube::Error::Api(s) if s.code == 429), "{error:?}");
    assert_eq!(pod_lists(&sim.requests()).len(), 1);
}
