//! `pods/exec` for the simulated cluster: the WebSocket remote-command protocol
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`) as the API server proxies it from the
//! kubelet, with a small command interpreter per container ([`commands`], [`shell`])
//! over the pod's mounted volumes ([`fs`]) and a simulated etcd member ([`etcd`]).
//!
//! The command runs to completion before the connection is upgraded, so a command that
//! was accepted always ran, even when its answer is delayed (`responseLatency`) or lost.

pub mod commands;
pub mod etcd;
pub mod fs;
pub mod shell;

use std::collections::HashMap;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::cluster::Shared;
use super::error::ApiError;
use super::files::FileTree;
use super::registry::keys;
use super::state::State;

/// Per-pod state of commands: container root filesystems and running etcd members.
#[derive(Debug, Default)]
pub struct ExecState {
    /// Root filesystems (`{pod uid}/{container}`) and emptyDirs (`{pod uid}/volume/{name}`).
    pub scratch: HashMap<String, FileTree>,
    /// Running etcd members by pod uid.
    pub etcd: HashMap<String, etcd::Member>,
}

/// The container a command runs in.
#[derive(Clone, Debug)]
pub struct Container {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub name: String,
    pub is_etcd: bool,
    /// Working directory, relative to `/`.
    pub working_dir: String,
}

/// What a command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
}

/// Protocols served, most preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// The exec request's query: `command` repeats, one word each.
struct ExecQuery {
    command: Vec<String>,
    container: Option<String>,
    stdout: bool,
    stderr: bool,
}

fn parse_query(query: Option<&str>) -> ExecQuery {
    let mut parsed = ExecQuery { command: Vec::new(), container: None, stdout: false, stderr: false };
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::http::percent_decode(value);
        match key {
            "command" => parsed.command.push(value),
            "container" => parsed.container = Some(value),
            "stdout" => parsed.stdout = matches!(value.as_str(), "true" | "1"),
            "stderr" => parsed.stderr = matches!(value.as_str(), "true" | "1"),
            _ => {}
        }
    }
    parsed
}

/// Finds the pod and container, or the API server's error for them.
fn container_of(state: &State, ns: &str, pod: &str, wanted: Option<&str>) -> Result<Container, ApiError> {
    let object = state.get(&keys::pods(), ns, pod).ok_or_else(|| ApiError::not_found("", "pods", pod))?;
    let containers = object["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = containers.iter().filter_map(|c| c["name"].as_str()).collect();
    let chosen = match wanted {
        Some(name) => containers
            .iter()
            .find(|c| c["name"] == name)
            .ok_or_else(|| ApiError::bad_request(format!("container {name} is not valid for pod {pod}")))?,
        None if containers.len() == 1 => &containers[0],
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let name = chosen["name"].as_str().unwrap_or_default();
    if object["status"]["phase"] != "Running" || object["metadata"]["deletionTimestamp"].is_string() {
        return Err(ApiError::bad_request(format!("unable to upgrade connection: container not found (\"{name}\")")));
    }
    Ok(Container {
        namespace: ns.to_string(),
        pod: pod.to_string(),
        pod_uid: object["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        name: name.to_string(),
        is_etcd: etcd::is_etcd_image(chosen["image"].as_str().unwrap_or_default()),
        working_dir: fs::normalize("", chosen["workingDir"].as_str().unwrap_or("/")),
    })
}

/// Runs `argv` in the container (blocking: commands take the state lock as they go).
pub fn run(shared: &Shared, container: &Container, argv: &[String]) -> Output {
    let fs = {
        let mut state = shared.lock();
        let pod = state.get(&keys::pods(), &container.namespace, &container.pod);
        // Pods loaded already running: their etcd members started before anyone looked.
        if container.is_etcd && !state.exec.etcd.contains_key(&container.pod_uid) {
            etcd::start_loaded(&mut state, &container.namespace);
        }
        let spec = pod.as_ref().and_then(|p| {
            p["spec"]["containers"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == container.name.as_str()).cloned())
        });
        match (pod, spec) {
            (Some(pod), Some(spec)) => fs::ContainerFs::of(&state, &pod, &spec),
            _ => fs::ContainerFs { mounts: Vec::new() },
        }
    };
    fs.make_mount_points(&mut shared.lock());
    let session = commands::Session { shared, container, fs, out: Vec::new(), err: Vec::new() };
    session.exec(argv)
}

/// The remote-command protocol's last message, as the kubelet sends it.
pub fn exit_status(argv: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({ "metadata": {}, "status": "Success" });
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", argv.join(" ")),
        "reason": "NonZeroExitCode",
        "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
    })
}

fn header(req: &Request<Incoming>, name: hyper::header::HeaderName) -> Vec<&str> {
    req.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

/// The protocol to speak: the client's first offer that is served.
fn negotiate(req: &Request<Incoming>) -> Option<&'static str> {
    let offered: Vec<String> = header(req, hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    offered.iter().find_map(|p| PROTOCOLS.iter().find(|s| **s == p.as_str()).copied())
}

/// Serves `pods/NAME/exec`: checks the request, runs the command, then upgrades the
/// connection and streams the output and exit status. Errors before the upgrade are
/// the API's Status errors (404 unknown pod, 400 bad container or protocol).
pub async fn serve(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Result<Response<()>, ApiError> {
    let query = parse_query(req.uri().query());
    let container = container_of(&shared.lock(), ns, pod, query.container.as_deref())?;
    if query.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let upgrade = header(&req, hyper::header::UPGRADE).iter().any(|v| v.eq_ignore_ascii_case("websocket"));
    let key = header(&req, hyper::header::SEC_WEBSOCKET_KEY).first().map(|k| k.to_string());
    let (Some(key), true) = (key, upgrade) else {
        return Err(ApiError::bad_request("Upgrade request required: pods/exec is served over WebSocket only"));
    };
    let Some(protocol) = negotiate(&req) else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: none of the requested subprotocols is supported ({})",
            PROTOCOLS.join(", ")
        )));
    };
    let worker = shared.clone();
    let argv = query.command.clone();
    let ran = container.clone();
    let output = tokio::task::spawn_blocking(move || run(&worker, &ran, &argv))
        .await
        .map_err(|e| ApiError::internal(format!("exec: {e}")))?;
    let status = exit_status(&query.command, output.code);
    let streams = Streams { stdout: query.stdout, stderr: query.stderr };
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let _ = stream_output(ws, streams, output, status).await;
        }
    });
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .header(hyper::header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(response)
}

#[derive(Clone, Copy)]
struct Streams {
    stdout: bool,
    stderr: bool,
}

async fn stream_output<S>(
    mut ws: WebSocketStream<S>,
    streams: Streams,
    output: Output,
    status: Value,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = |channel: u8, data: &[u8]| {
        let mut bytes = Vec::with_capacity(data.len() + 1);
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::binary(bytes)
    };
    for (wanted, channel, data) in [(streams.stdout, STDOUT, &output.stdout), (streams.stderr, STDERR, &output.stderr)]
    {
        // Frames of at most 32 KiB, like the kubelet's copy buffer.
        for chunk in data.chunks(32 << 10).filter(|_| wanted) {
            ws.send(frame(channel, chunk)).await?;
        }
    }
    ws.send(frame(STATUS, &serde_json::to_vec(&status).unwrap_or_default())).await?;
    // A normal closure: clients read it as the end of every stream.
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await?;
    // Drain until the client's close (answering its pings meanwhile), briefly.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async { while ws.next().await.is_some() {} }).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_command_words_keep_their_order() {
        let query =
            parse_query(Some("command=sh&command=-c&command=echo%20hi%20%26%26%20exit%203&container=etcd&stdout=true"));
        assert_eq!(query.command, ["sh", "-c", "echo hi && exit 3"]);
        assert_eq!(query.container.as_deref(), Some("etcd"));
        assert!(query.stdout && !query.stderr);
    }

    #[test]
    fn a_non_zero_exit_is_reported_like_the_kubelet() {
        let status = exit_status(&["false".into()], 3);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}
