//! The `dr sim` subcommands: `serve` manifests as a Kubernetes API on loopback, and
//! `data put|get` to reach the contents of a claim's volume in a running sim.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cluster::SimCluster;
use super::config::{Faults, SimConfig};
use crate::lang::yaml::{self, Limits};

#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Serve manifests (files or directories, CRDs included) as a Kubernetes API until Ctrl-C.
    Serve(ServeArgs),
    /// Read or write the data on the volume bound to a claim in a running sim.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Manifest files or directories (multi-document YAML, `kind: List` accepted).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Address to listen on; loopback only unless --allow-non-loopback.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Write a kubeconfig for kubectl and drplan here.
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
    /// Context name in the written kubeconfig.
    #[arg(long, default_value = "drplan-sim")]
    pub context: String,
    /// Serve on a non-loopback address (the sim has no authentication).
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Fault injection rules (JSON or YAML: {seed, rules: [{verb, resource, status, rate, latency, responseLatency, watchCutAfterEvents, watchCutAfter}]}).
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// Sim seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Default delay before snapshots become ready (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub snapshot_ready_after: Option<Duration>,
    /// Also serve a simulated AWS (EFS) from this state file (`aws.yaml`) on a second
    /// loopback port; claims on its file systems read and write its data.
    #[arg(long, value_name = "FILE")]
    pub aws: Option<PathBuf>,
    /// Address of the simulated AWS endpoint (port 0: any free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:0", requires = "aws")]
    pub aws_listen: SocketAddr,
    /// Write the simulated AWS endpoint URL to this file (for --aws-endpoint-url).
    #[arg(long, value_name = "FILE", requires = "aws")]
    pub aws_endpoint_out: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Write VALUE to the volume bound to CLAIM.
    Put {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        claim: String,
        value: String,
    },
    /// Print the contents of the volume bound to CLAIM.
    Get {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        claim: String,
    },
}

/// Runs a `dr sim` subcommand to completion; returns the process exit code.
pub fn run(cmd: SimCommand) -> Result<i32, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match cmd {
            SimCommand::Serve(args) => serve(args).await,
            SimCommand::Data(DataCommand::Put { server, namespace, claim, value }) => {
                data_request(&server, &namespace, &claim, Some(value)).await.map(|_| 0)
            }
            SimCommand::Data(DataCommand::Get { server, namespace, claim }) => {
                let text = data_request(&server, &namespace, &claim, None).await?;
                println!("{text}");
                Ok(0)
            }
        }
    })
}

pub fn load_faults(path: &std::path::Path) -> Result<Faults, String> {
    let file = yaml::read_file(path, Limits::PLAN).map_err(|d| format!("{}: {}", path.display(), d.message))?;
    let document = file.documents.first().map(|d| d.to_json()).unwrap_or_default();
    serde_json::from_value(document).map_err(|e| format!("{}: {e}", path.display()))
}

async fn serve(args: ServeArgs) -> Result<i32, String> {
    let mut config = SimConfig { speed: args.speed, ..SimConfig::default() };
    if let Some(path) = &args.faults {
        config.faults = load_faults(path)?;
    }
    if let Some(delay) = args.snapshot_ready_after {
        config.snapshot_ready_after = delay;
    }
    let handle = SimCluster::start_on(args.listen, &args.paths, config, args.allow_non_loopback)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(path) = &args.kubeconfig_out {
        handle.write_kubeconfig(path, &args.context).map_err(|e| e.to_string())?;
        eprintln!("wrote kubeconfig {} (context {})", path.display(), args.context);
    }
    let _aws = match &args.aws {
        Some(file) => Some(super::aws::serve_file(file, &args, &handle).await?),
        None => None,
    };
    eprintln!("serving the simulated cluster at {} (Ctrl-C to stop)", handle.url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    handle.shutdown();
    Ok(0)
}

async fn data_request(server: &str, ns: &str, claim: &str, value: Option<String>) -> Result<String, String> {
    let uri = server.parse().map_err(|e| format!("--server {server}: {e}"))?;
    let client = kube::Client::try_from(kube::Config::new(uri)).map_err(|e| e.to_string())?;
    let path = format!("/sim/v1/namespaces/{ns}/persistentvolumeclaims/{claim}/data");
    let builder = hyper::Request::builder().uri(path);
    let request = match value {
        Some(value) => builder.method("PUT").body(value.into_bytes()),
        None => builder.method("GET").body(Vec::new()),
    }
    .map_err(|e| e.to_string())?;
    client.request_text(request).await.map_err(|e| e.to_string())
}
