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
    /// Fault injection rules (JSON or YAML: {seed, rules: [{verb, resource, status, rate, latency, responseLatency, watchCutAfterEvents, watchCutAfter, retryAfter, times}]}).
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// Sim seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Default delay before snapshots become ready (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub snapshot_ready_after: Option<Duration>,
    /// Also serve a simulated AWS (EFS, EC2/EBS) from this state file (`aws.yaml`) on a
    /// second loopback port; claims on its file systems and volumes read and write their data.
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
        #[command(flatten)]
        target: DataTarget,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Claim whose volume is written.
        claim: String,
        /// Text to store on the volume.
        value: String,
    },
    /// Print the contents of the volume bound to CLAIM.
    Get {
        #[command(flatten)]
        target: DataTarget,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Claim whose volume is read.
        claim: String,
    },
}

/// Which running sim to reach: through a kubeconfig, like every other command, or its URL.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct DataTarget {
    /// kubeconfig file, as `dr sim serve --kubeconfig-out` writes it (default: KUBECONFIG
    /// or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The sim's URL (e.g. http://127.0.0.1:8080), instead of a kubeconfig.
    #[arg(long, conflicts_with_all = ["kubeconfig", "context"])]
    pub server: Option<String>,
}

impl DataTarget {
    async fn client(&self) -> Result<kube::Client, String> {
        let config = match (&self.server, &self.kubeconfig) {
            (Some(server), _) => kube::Config::new(server.parse().map_err(|e| format!("--server {server}: {e}"))?),
            (None, kubeconfig) => {
                let options = kube::config::KubeConfigOptions { context: self.context.clone(), ..Default::default() };
                let file = match kubeconfig {
                    Some(path) => kube::config::Kubeconfig::read_from(path)
                        .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?,
                    None => kube::config::Kubeconfig::read().map_err(|e| {
                        format!("reading the kubeconfig (KUBECONFIG or ~/.kube/config): {e}; pass --kubeconfig FILE or --server URL")
                    })?,
                };
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| format!("loading the kubeconfig: {e}"))?
            }
        };
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }
}

/// Runs a `dr sim` subcommand to completion; returns the process exit code.
pub fn run(cmd: SimCommand) -> Result<i32, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match cmd {
            SimCommand::Serve(args) => serve(args).await,
            SimCommand::Data(DataCommand::Put { target, namespace, claim, value }) => {
                data_request(&target, &namespace, &claim, Some(value)).await.map(|_| 0)
            }
            SimCommand::Data(DataCommand::Get { target, namespace, claim }) => {
                let text = data_request(&target, &namespace, &claim, None).await?;
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

async fn data_request(target: &DataTarget, ns: &str, claim: &str, value: Option<String>) -> Result<String, String> {
    let client = target.client().await?;
    let path = format!("/sim/v1/namespaces/{ns}/persistentvolumeclaims/{claim}/data");
    let builder = hyper::Request::builder().uri(path);
    let request = match value {
        Some(value) => builder.method("PUT").body(value.into_bytes()),
        None => builder.method("GET").body(Vec::new()),
    }
    .map_err(|e| e.to_string())?;
    client.request_text(request).await.map_err(|e| match e {
        // The API's own words (`... is not bound to a volume with data`), not its Status dump.
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    })
}
