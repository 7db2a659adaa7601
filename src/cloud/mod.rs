//! Cloud access beside cluster access: AWS SDK clients (one per service and region, from
//! the standard credential chain: environment, profile, IRSA web identity) and the cloud
//! steps a plan runs through them.
//!
//! - [`errors`]: AWS errors → step errors (throttling and 5xx retried; the rest reported
//!   with the step, the API call and the provider's message).
//! - [`efs`]: EFS replication steps and waits.
//! - [`read`]: EFS state read into the plan's live state, so `dr plan` diffs it.
//! - [`ebs`]: EBS snapshot, copy and volume steps, adopted by their tags after a crash.
//! - [`ebs_report`]: EBS state for `dr plan` (one Describe per kind and region).
//! - [`report`]: cloud state and the RPO a failover would have now, for `dr plan`.
//! - [`runner`]: the step runner that sends cloud steps here and the rest to Kubernetes.
//!
//! The SDK runs on the same TLS stack as kube (hyper 1 + rustls with ring): its default
//! HTTPS client would bring a second crypto library (aws-lc), so one is built here.

pub mod ebs;
pub mod ebs_report;
pub mod efs;
pub mod errors;
pub mod read;
pub mod report;
pub mod runner;

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use tokio::sync::Mutex;

/// Where the SDK sends requests and with which credentials.
#[derive(Clone, Debug, Default)]
pub struct CloudOptions {
    /// A test endpoint (`--aws-endpoint-url`; the SDK also reads `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Dummy static credentials, for the simulated AWS (it checks no signature).
    pub dummy_credentials: bool,
}

/// SDK configurations per region, loaded on first use (credentials resolve lazily, so a
/// plan without cloud steps never touches the credential chain).
pub struct CloudAccess {
    options: CloudOptions,
    configs: Mutex<BTreeMap<String, SdkConfig>>,
}

impl CloudAccess {
    pub fn new(options: CloudOptions) -> CloudAccess {
        CloudAccess { options, configs: Mutex::new(BTreeMap::new()) }
    }

    pub fn options(&self) -> &CloudOptions {
        &self.options
    }

    async fn config(&self, region: &str) -> SdkConfig {
        let mut configs = self.configs.lock().await;
        if let Some(config) = configs.get(region) {
            return config.clone();
        }
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string())).http_client(http);
        if let Some(url) = &self.options.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if self.options.dummy_credentials {
            loader = loader.credentials_provider(aws_sdk_efs::config::Credentials::new(
                "drplan-sim",
                "drplan-sim",
                None,
                None,
                "drplan-sim",
            ));
        }
        let config = loader.load().await;
        configs.insert(region.to_string(), config.clone());
        config
    }

    pub async fn efs(&self, region: &str) -> aws_sdk_efs::Client {
        aws_sdk_efs::Client::new(&self.config(region).await)
    }

    pub async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config(region).await)
    }
}
