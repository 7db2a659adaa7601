//! The simulated EC2 against an implementation nobody here wrote: moto (PyPI
//! `moto[server]`, installed by `scripts/test-setup`). The EC2 calls of the EBS
//! cross-region scenario run through the real AWS SDK (drplan's own client set-up)
//! against both, and what a plan can observe must be the same: states once settled,
//! sizes, zones, types, IOPS and throughput, encryption of a copy, tags, tag filters, and
//! the error codes for a volume or snapshot that does not exist.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VolumeType};
use drplan::cloud::{CloudAccess, CloudOptions};
use drplan::sim::aws::{AwsHandle, AwsState, AwsWorld};
use drplan::sim::clock::SimClock;

/// A moto server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_moto() -> Moto {
    let port = free_port();
    let spawned = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_else(|_| {
            Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        });
    let mut child = spawned.unwrap_or_else(|e| {
        panic!("moto is not installed ({e}): run `scripts/test-setup` (it installs moto[server] with pip)")
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!(
                "moto did not start ({status}): run `scripts/test-setup` (it installs moto[server] with pip)\n{stderr}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(60), "moto did not listen on {addr} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, url: format!("http://{addr}") }
}

async fn clients(url: &str) -> (Client, Client) {
    let cloud = CloudAccess::new(CloudOptions { endpoint_url: Some(url.to_string()), dummy_credentials: true });
    (cloud.ec2("us-east-1").await, cloud.ec2("us-west-2").await)
}

fn tags(pairs: &[(&str, &str)], kind: ResourceType) -> TagSpecification {
    pairs
        .iter()
        .fold(TagSpecification::builder().resource_type(kind), |b, (k, v)| {
            b.tags(Tag::builder().key(*k).value(*v).build())
        })
        .build()
}

fn tag_text(tags: &[Tag]) -> String {
    let mut pairs: Vec<String> =
        tags.iter().map(|t| format!("{}={}", t.key().unwrap_or_default(), t.value().unwrap_or_default())).collect();
    pairs.sort();
    pairs.join(",")
}

fn code<E: ProvideErrorMetadata, R>(
    result: Result<R, aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
) -> String {
    match result {
        Ok(_) => "no error".into(),
        Err(e) => match e.as_service_error() {
            Some(service) => service.code().unwrap_or("no code").to_string(),
            None => format!("not a service error: {e}"),
        },
    }
}

async fn volume_settled(client: &Client, id: &str) -> aws_sdk_ec2::types::Volume {
    for _ in 0..300 {
        let found = client.describe_volumes().volume_ids(id).send().await.expect("DescribeVolumes");
        let volume = found.volumes()[0].clone();
        if volume.state().map(|s| s.as_str()) != Some("creating") {
            return volume;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("volume {id} never left `creating`");
}

async fn snapshot_settled(client: &Client, id: &str) -> aws_sdk_ec2::types::Snapshot {
    for _ in 0..300 {
        let found = client.describe_snapshots().snapshot_ids(id).send().await.expect("DescribeSnapshots");
        let snapshot = found.snapshots()[0].clone();
        if snapshot.state().map(|s| s.as_str()) != Some("pending") {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("snapshot {id} never left `pending`");
}

/// A volume as a plan sees it. Two known differences between moto and EC2 are left out:
/// EC2 (and the sim) write an empty `snapshotId` for a volume made from none, moto none
/// (both mean "no snapshot"); and EC2 reports a gp3 volume created without `Throughput`
/// at the gp3 baseline of 125 MiB/s, as the sim does, where moto reports none — so
/// throughput is compared where it was asked for.
fn volume_line(what: &str, v: &aws_sdk_ec2::types::Volume, snapshot: &str, asked_throughput: bool) -> String {
    let from = match v.snapshot_id().filter(|s| !s.is_empty()) {
        Some(id) if id == snapshot => "the copy",
        Some(id) => id,
        None => "none",
    };
    format!(
        "{what}: {} {} GiB {} in {} iops={:?} throughput={:?} from={from} tags[{}]",
        v.state().map(|s| s.as_str()).unwrap_or("?"),
        v.size().unwrap_or_default(),
        v.volume_type().map(|t| t.as_str()).unwrap_or("?"),
        v.availability_zone().unwrap_or("?"),
        v.iops(),
        v.throughput().filter(|_| asked_throughput),
        tag_text(v.tags())
    )
}

fn snapshot_line(what: &str, s: &aws_sdk_ec2::types::Snapshot) -> String {
    format!(
        "{what}: {} {} GiB encrypted={:?} kms={:?} tags[{}]",
        s.state().map(|st| st.as_str()).unwrap_or("?"),
        s.volume_size().unwrap_or_default(),
        s.encrypted(),
        s.kms_key_id(),
        tag_text(s.tags())
    )
}

/// The EBS cross-region scenario's EC2 calls; what a plan can observe, with ids named
/// by role (each implementation makes its own).
async fn scenario(url: &str) -> Vec<String> {
    let (east, west) = clients(url).await;
    let mut seen = Vec::new();

    let created = east
        .create_volume()
        .availability_zone("us-east-1a")
        .size(4)
        .volume_type(VolumeType::Gp3)
        .tag_specifications(tags(&[("app", "orders")], ResourceType::Volume))
        .send()
        .await
        .expect("CreateVolume");
    let volume = created.volume_id().expect("volume id").to_string();
    seen.push(volume_line("source volume", &volume_settled(&east, &volume).await, "-", false));

    let snapshot = east
        .create_snapshot()
        .volume_id(&volume)
        .tag_specifications(tags(&[("drplan.dev/step", "snapshot-0")], ResourceType::Snapshot))
        .send()
        .await
        .expect("CreateSnapshot");
    let snapshot = snapshot.snapshot_id().expect("snapshot id").to_string();
    seen.push(snapshot_line("snapshot", &snapshot_settled(&east, &snapshot).await));
    let by_tag = east
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name("tag:drplan.dev/step").values("snapshot-0").build())
        .send()
        .await
        .expect("DescribeSnapshots by tag");
    seen.push(format!(
        "snapshots tagged snapshot-0: {:?}",
        by_tag.snapshots().iter().map(|s| s.snapshot_id() == Some(snapshot.as_str())).collect::<Vec<_>>()
    ));
    let by_volume = east
        .describe_snapshots()
        .filters(Filter::builder().name("volume-id").values(&volume).build())
        .send()
        .await
        .expect("DescribeSnapshots by volume");
    seen.push(format!("snapshots of the volume: {}", by_volume.snapshots().len()));

    let copied = west
        .copy_snapshot()
        .source_region("us-east-1")
        .source_snapshot_id(&snapshot)
        .encrypted(true)
        .kms_key_id("alias/orders-dr")
        .tag_specifications(tags(&[("drplan.dev/step", "copy-0")], ResourceType::Snapshot))
        .send()
        .await
        .expect("CopySnapshot");
    let copy = copied.snapshot_id().expect("copy id").to_string();
    seen.push(snapshot_line("copy in us-west-2", &snapshot_settled(&west, &copy).await));
    seen.push(format!(
        "the copy is not in us-east-1: {}",
        code(east.describe_snapshots().snapshot_ids(&copy).send().await)
    ));

    let restored = west
        .create_volume()
        .availability_zone("us-west-2b")
        .snapshot_id(&copy)
        .size(8)
        .volume_type(VolumeType::Gp3)
        .iops(4000)
        .throughput(250)
        .tag_specifications(tags(&[("drplan.dev/step", "volume-0")], ResourceType::Volume))
        .send()
        .await
        .expect("CreateVolume from the copy");
    let restored = restored.volume_id().expect("volume id").to_string();
    seen.push(volume_line("restored volume", &volume_settled(&west, &restored).await, &copy, true));
    let tagged = west
        .describe_volumes()
        .filters(Filter::builder().name("tag:drplan.dev/step").values("volume-0").build())
        .send()
        .await
        .expect("DescribeVolumes by tag");
    seen.push(format!("volumes tagged volume-0: {}", tagged.volumes().len()));
    east.create_tags()
        .resources(&volume)
        .tags(Tag::builder().key("owner").value("drplan").build())
        .send()
        .await
        .expect("CreateTags");
    seen.push(volume_line("source volume tagged", &volume_settled(&east, &volume).await, "-", false));

    // Errors a plan reports by code.
    let missing_volume = "vol-0000000000000dead";
    let missing_snapshot = "snap-000000000000dead";
    seen.push(format!(
        "describe missing volume: {}",
        code(east.describe_volumes().volume_ids(missing_volume).send().await)
    ));
    seen.push(format!(
        "snapshot missing volume: {}",
        code(east.create_snapshot().volume_id(missing_volume).send().await)
    ));
    seen.push(format!(
        "describe missing snapshot: {}",
        code(east.describe_snapshots().snapshot_ids(missing_snapshot).send().await)
    ));
    seen.push(format!(
        "volume from missing snapshot: {}",
        code(west.create_volume().availability_zone("us-west-2a").snapshot_id(missing_snapshot).send().await)
    ));
    seen.push(format!("delete missing volume: {}", code(east.delete_volume().volume_id(missing_volume).send().await)));

    // Rollback's deletes.
    west.delete_volume().volume_id(&restored).send().await.expect("DeleteVolume");
    seen.push(format!("deleted volume: {}", code(west.describe_volumes().volume_ids(&restored).send().await)));
    west.delete_snapshot().snapshot_id(&copy).send().await.expect("DeleteSnapshot");
    seen.push(format!("deleted copy: {}", code(west.describe_snapshots().snapshot_ids(&copy).send().await)));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_ec2_answers_the_ebs_scenario_like_moto() {
    let moto = start_moto();
    let clock = SimClock::new(jiff::Timestamp::now(), false, 600.0);
    let world = AwsWorld::new(AwsState::new(Default::default(), Default::default()), clock);
    let sim = AwsHandle::start(world, "127.0.0.1:0".parse().unwrap()).await.expect("simulated AWS");

    let from_moto = scenario(&moto.url).await;
    let from_sim = scenario(&sim.url()).await;
    assert_eq!(from_sim, from_moto, "the simulated EC2 (left) differs from moto (right)");
    // The comparison is not vacuous: the scenario saw what it set up.
    assert!(
        from_moto.iter().any(|l| l.starts_with("restored volume: available 8 GiB gp3 in us-west-2b iops=Some(4000)")),
        "{from_moto:#?}"
    );
    assert!(from_moto.iter().any(|l| l == "describe missing volume: InvalidVolume.NotFound"), "{from_moto:#?}");
}
