//! Connecting to live clusters (kubeconfig and context, or in-cluster configuration),
//! every client rate limited ([`super::throttle`]), and saying why a connection failed
//! in words a person can act on.
//! Reading their state for a plan is [`crate::state`]'s job.

use std::path::Path;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::throttle::{RateLimit, ThrottleLayer};

/// A client for a kube context (`None`: the current one) of a kubeconfig (`None`: the
/// default lookup, `KUBECONFIG` or `~/.kube/config`, or in-cluster config).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client, String> {
    connect_named(kubeconfig, context, "").await.map(|(client, _)| client)
}

/// A client for `config` whose every request is rate limited to `limit` and waits out
/// the server's 429 `Retry-After`.
pub fn client_for(mut config: Config, limit: RateLimit) -> Result<Client, String> {
    // kube's own retry layer sits below ours: its retries would skip the rate limit, and
    // it waits out any `Retry-After`, an hour included. Throttling is ours; 5xx answers
    // go to the step, whose retries the executor bounds.
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config).map_err(|e| format!("creating a Kubernetes client: {e}"))?;
    Ok(builder.with_layer(&ThrottleLayer::new(limit)).build())
}

/// [`connect`], also returning the server's URL. `origin` says where the context name
/// came from (e.g. "the plan's `clusters[].context` of cluster `primary`"), for the
/// error when the kubeconfig has no such context.
pub async fn connect_named(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    origin: &str,
) -> Result<(Client, String), String> {
    connect_limited(kubeconfig, context, origin, RateLimit::DEFAULT).await
}

/// [`connect_named`] with a rate limit other than the default.
pub async fn connect_limited(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    origin: &str,
    limit: RateLimit,
) -> Result<(Client, String), String> {
    let config = load_config(kubeconfig, context, origin).await?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    Ok((client_for(config, limit)?, server))
}

/// The client configuration [`connect_named`] uses, for callers that build their client
/// elsewhere (the Kubernetes state store builds it on its own runtime).
pub async fn load_config(kubeconfig: Option<&Path>, context: Option<&str>, origin: &str) -> Result<Config, String> {
    let options = KubeConfigOptions { context: context.map(String::from), ..KubeConfigOptions::default() };
    let which = context.map(|c| format!(" for context {c}")).unwrap_or_default();
    let file = match (kubeconfig, context) {
        (Some(path), _) => {
            Some(Kubeconfig::read_from(path).map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?)
        }
        (None, Some(_)) => Some(
            Kubeconfig::read().map_err(|e| format!("reading the kubeconfig (KUBECONFIG or ~/.kube/config): {e}"))?,
        ),
        (None, None) => None,
    };
    let config = match file {
        Some(file) => {
            if let Some(name) = context {
                check_context(&file, name, kubeconfig, origin)?;
            }
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| format!("loading kube config{which}: {e}"))?
        }
        None => Config::infer().await.map_err(|e| format!("loading kube config: {e}"))?,
    };
    Ok(config)
}

/// Refuses a context the kubeconfig does not define, listing the ones it does.
fn check_context(file: &Kubeconfig, name: &str, path: Option<&Path>, origin: &str) -> Result<(), String> {
    if file.contexts.iter().any(|c| c.name == name) {
        return Ok(());
    }
    let known: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();
    let hint = crate::lang::de::closest(name, &known).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
    let listed = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    let file = path.map_or_else(|| "the kubeconfig (KUBECONFIG or ~/.kube/config)".into(), |p| p.display().to_string());
    let origin = if origin.is_empty() { String::new() } else { format!(" (from {origin})") };
    Err(format!(
        "context `{name}`{origin} is not in {file}{hint}; its contexts: {listed}. \
         Pass --context NAME to use another one (one-cluster plans), or fix `clusters[].context` in the plan"
    ))
}

/// Why a request failed, and whether trying again can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub kind: FailureKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, conflicts, server errors, timeouts, cut connections: retry.
    Transient,
    /// Nothing listens at the address: an API server restarting comes back within
    /// seconds, so one more attempt, then stop.
    Refused,
    /// TLS, name resolution, credentials, permissions, missing kinds: retrying cannot help.
    Permanent,
}

/// Explains a client error: refused, timed out, TLS, DNS, or the API's own status.
pub fn explain(error: &kube::Error) -> Failure {
    let failure = |kind, reason: String| Failure { reason, kind };
    if let kube::Error::Api(status) = error {
        let message = &status.message;
        return match status.code {
            401 => failure(
                FailureKind::Permanent,
                format!("the server did not accept the credentials (401 Unauthorized): {message}"),
            ),
            403 => failure(FailureKind::Permanent, format!("forbidden (403): {message}")),
            404 => failure(
                FailureKind::Permanent,
                format!("not found (404): {message} (is the kind's CustomResourceDefinition installed?)"),
            ),
            409 | 429 | 500 | 502 | 503 | 504 => {
                failure(FailureKind::Transient, format!("{message} ({})", status.code))
            }
            code => failure(FailureKind::Permanent, format!("{message} ({code})")),
        };
    }
    let chain = error_chain(error);
    let text = chain.join(": ").to_lowercase();
    let io_kind = io_error_kind(error);
    if io_kind == Some(std::io::ErrorKind::ConnectionRefused) || text.contains("connection refused") {
        return failure(
            FailureKind::Refused,
            "connection refused (is the API server running and the address right?)".into(),
        );
    }
    if ["certificate", "tls", "handshake", "corrupt message", "invalidcontenttype", "rustls"]
        .iter()
        .any(|w| text.contains(w))
    {
        let detail = chain.last().cloned().unwrap_or_default();
        return failure(FailureKind::Permanent, format!("TLS failed: {detail}"));
    }
    if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
    {
        let detail = chain.last().cloned().unwrap_or_default();
        return failure(FailureKind::Permanent, format!("the server's name does not resolve: {detail}"));
    }
    if io_kind == Some(std::io::ErrorKind::TimedOut) || text.contains("timed out") || text.contains("elapsed") {
        return failure(FailureKind::Transient, "the connection timed out".into());
    }
    match error {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            failure(FailureKind::Transient, chain.join(": "))
        }
        _ => failure(FailureKind::Permanent, chain.join(": ")),
    }
}

/// The error's message and its sources', without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !chain.iter().any(|seen| seen.contains(&text)) {
            chain.push(text);
        }
        next = e.source();
    }
    chain
}

fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}
