//! The simulated AWS (`dr sim serve --aws FILE`, `dr apply --sim`): the EFS API
//! (REST-JSON: file systems, replication configurations, replication overwrite
//! protection) and the EC2 API's EBS subset (Query/XML: volumes, snapshots, copies,
//! modifications, tags) on a loopback port, so the real AWS SDK talks to it.
//!
//! - [`model`]: file systems and replications, their state transitions on the sim clock,
//!   and the data claims on a file system read and write.
//! - [`ebs`]: EBS volumes and snapshots, their states and the data they carry.
//! - [`load`]: the `aws.yaml` file beside a plan's cluster dumps.
//! - [`efs`], [`ec2`]: the operations; [`server`]: the listener (region and service from
//!   the SigV4 credential scope), fault injection and the request log.
//!
//! Like the simulated cluster it is self-contained: it uses the plan-language YAML reader
//! and the sim clock, nothing of the engine.

pub mod ebs;
pub mod ec2;
pub mod efs;
pub mod load;
pub mod model;
pub mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use model::{AwsState, FileSystem, Protection, Replication, ReplicationStatus};

use super::clock::SimClock;

/// The simulated AWS account: its state behind one lock, and the clock it runs on.
pub struct AwsWorld {
    state: Mutex<AwsState>,
    pub clock: SimClock,
}

impl AwsWorld {
    pub fn new(state: AwsState, clock: SimClock) -> Arc<AwsWorld> {
        Arc::new(AwsWorld { state: Mutex::new(state), clock })
    }

    /// The state, brought up to the current sim time (replications sync, deletions end).
    pub fn lock(&self) -> MutexGuard<'_, AwsState> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.advance(self.clock.now());
        state
    }

    /// The data of file system `id`, if the sim knows it.
    pub fn read_file_system(&self, id: &str) -> Option<Vec<u8>> {
        self.lock().file_systems.get(file_system_of(id)).map(|fs| fs.data.clone())
    }

    /// The data of EBS volume `id`, if the sim knows it.
    pub fn read_ebs_volume(&self, id: &str) -> Option<Vec<u8>> {
        self.lock().ebs.volume_data(id)
    }

    /// Writes through a mount of EBS volume `id`; `None` if unknown.
    pub fn write_ebs_volume(&self, id: &str, bytes: Vec<u8>) -> Option<()> {
        self.lock().ebs.write_volume(id, bytes)
    }

    /// Writes through a mount of file system `id`: `None` if unknown, `Some(Err)` while it
    /// is a replication destination (mounted read-only).
    pub fn write_file_system(&self, id: &str, bytes: Vec<u8>) -> Option<Result<(), String>> {
        self.lock().write(file_system_of(id), bytes)
    }
}

/// An EFS CSI volume handle is `fs-ID`, `fs-ID::fsap-ID` or `fs-ID:/path`.
pub fn file_system_of(handle: &str) -> &str {
    handle.split(':').next().unwrap_or(handle)
}

/// A running simulated AWS endpoint. Dropping it stops serving.
pub struct AwsHandle {
    pub world: Arc<AwsWorld>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for AwsHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl AwsHandle {
    /// Serves `world` on `listen` (loopback: the sim checks no signatures).
    pub async fn start(world: Arc<AwsWorld>, listen: SocketAddr) -> std::io::Result<AwsHandle> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(server::serve(listener, world.clone(), stopped));
        Ok(AwsHandle { world, addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `--aws-endpoint-url` / `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts the simulated AWS described by `aws.yaml` in `dir` (a plan's state directory),
/// on a free loopback port, and attaches it to `clusters` so their EFS claims read and
/// write its file systems. `None` when there is no such file.
pub async fn start_beside(
    dir: &std::path::Path,
    clusters: &[&super::SimHandle],
    clock: SimClock,
    faults: super::config::Faults,
) -> Result<Option<AwsHandle>, String> {
    let file = dir.join("aws.yaml");
    if !file.is_file() {
        return Ok(None);
    }
    let state = load::read(&file, clock.now(), faults)?;
    let world = AwsWorld::new(state, clock);
    let handle = AwsHandle::start(world.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("starting the simulated AWS: {e}"))?;
    for cluster in clusters {
        cluster.with_state(|state| state.aws = Some(world.clone()));
    }
    Ok(Some(handle))
}

/// `dr sim serve --aws FILE`: the simulated AWS on its own loopback port, sharing the
/// cluster's clock and fault rules, attached to the cluster.
pub async fn serve_file(
    file: &std::path::Path,
    args: &super::cli::ServeArgs,
    cluster: &super::SimHandle,
) -> Result<AwsHandle, String> {
    if !args.aws_listen.ip().is_loopback() {
        return Err(format!("refusing to serve the simulated AWS on non-loopback address {}", args.aws_listen));
    }
    let faults = cluster.with_state(|state| state.config.faults.clone());
    let state = load::read(file, cluster.clock().now(), faults)?;
    let world = AwsWorld::new(state, cluster.clock());
    let handle = AwsHandle::start(world.clone(), args.aws_listen)
        .await
        .map_err(|e| format!("serving the simulated AWS: {e}"))?;
    cluster.with_state(|state| state.aws = Some(world));
    if let Some(out) = &args.aws_endpoint_out {
        std::fs::write(out, handle.url()).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    eprintln!("serving the simulated AWS (EFS, EC2/EBS) at {} (--aws-endpoint-url)", handle.url());
    Ok(handle)
}
