//! The `exec` step: a command in a pod's container through `pods/exec` (WebSocket,
//! `v5.channel.k8s.io` or `v4.channel.k8s.io`), its exit status from the status channel.
//!
//! Exec is not idempotent by nature, so a step records that it issued its command before
//! issuing it: run again after a crash (or a lost answer), it re-runs the command only when
//! the plan says that is safe (`idempotent: true`, or a `creates:`/`unless:` guard that
//! then decides), and otherwise stops and says so. Output is kept in the run record,
//! redacted and bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, AttachParams, ListParams};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Kube, classify, is_not_found};
use crate::exec::StepError;
use crate::steps::redact::{redact_command, redact_text};
use crate::steps::{ExecParams, WorkloadKind};

/// Most output kept per stream in the run record (the last bytes).
pub const OUTPUT_LIMIT: usize = 32 << 10;
/// Lines of stderr quoted in a failure.
const STDERR_LINES: usize = 5;
/// Captured: the command was issued (it may have run even if no answer came).
const ISSUED: &str = "execIssued";

/// What one command did.
struct Finished {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Why the command failed to run at all (not an exit code), from the status.
    failure: Option<String>,
}

/// The container a command runs in.
struct Target {
    pod: String,
    container: String,
    /// Values of the Secrets the pod mounts or references, for redaction.
    secrets: Vec<String>,
}

pub async fn run(k: &Kube<'_>, p: &ExecParams, timeout: Duration) -> Result<(), StepError> {
    let target = resolve(k, p).await?;
    let issued_before = k.ctx.captured(ISSUED) == Some(json!(true));
    if issued_before && !p.is_rerun_safe() {
        return Err(StepError::unsafe_(format!(
            "`{}` in pod {} may already have run (an earlier attempt issued it and no answer was recorded); \
             the step has no `creates:`, `unless:` or `idempotent: true`, so drplan does not run it again. \
             Check the pod by hand, then finish the remaining steps yourself or add a guard to the plan",
            redact_command(&p.command),
            target.pod
        )));
    }
    if let Some(reason) = guard_holds(k, p, &target, timeout).await? {
        k.ctx.capture("skipped", json!(reason))?;
        return Ok(());
    }
    k.ctx.capture(ISSUED, json!(true))?;
    let finished = match tokio::time::timeout(timeout, command(k, &target, &p.command)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(StepError::failed(format!(
                "`{}` in pod {}/{} did not finish within {} (it may still be running in the container)",
                redact_command(&p.command),
                target.pod,
                target.container,
                humantime::format_duration(timeout)
            )));
        }
    };
    record(k, &target, &finished)?;
    if finished.code == 0 {
        return Ok(());
    }
    let stderr = redact_text(&String::from_utf8_lossy(&finished.stderr), &target.secrets);
    let last: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = last[last.len().saturating_sub(STDERR_LINES)..].join("\n  ");
    let why = finished.failure.clone().unwrap_or_else(|| format!("exited with code {}", finished.code));
    Err(StepError::failed(format!(
        "`{}` in pod {}/{} {why}{}",
        redact_command(&p.command),
        target.pod,
        target.container,
        if last.is_empty() { String::new() } else { format!("; stderr:\n  {last}") }
    )))
}

/// Keeps the (redacted, bounded) output and exit code in the run record.
fn record(k: &Kube<'_>, target: &Target, finished: &Finished) -> Result<(), StepError> {
    let shown = |bytes: &[u8]| redact_text(&tail(&String::from_utf8_lossy(bytes), OUTPUT_LIMIT), &target.secrets);
    let output = json!({
        "pod": target.pod,
        "container": target.container,
        "exitCode": finished.code,
        "stdout": shown(&finished.stdout),
        "stderr": shown(&finished.stderr),
    });
    k.ctx.capture("output", output)
}

/// Lines shown under an exec step in summaries: why its guard skipped it, or the last
/// lines of what it printed (already redacted in the record).
pub fn output_lines(captured: &std::collections::BTreeMap<String, serde_json::Value>, max: usize) -> Vec<String> {
    if let Some(reason) = captured.get("skipped").and_then(|r| r.as_str()) {
        return vec![format!("skipped: {reason}")];
    }
    let Some(output) = captured.get("output") else { return Vec::new() };
    let mut lines = Vec::new();
    for (stream, prefix) in [("stdout", ""), ("stderr", "stderr: ")] {
        let text = output[stream].as_str().unwrap_or_default();
        lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{prefix}{l}")));
    }
    let cut = lines.len().saturating_sub(max);
    lines.split_off(cut)
}

/// The last `limit` bytes of `text` (on a character boundary), marked when cut.
pub fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &text[start..])
}

/// A guard that says the command's effect is already there.
async fn guard_holds(
    k: &Kube<'_>,
    p: &ExecParams,
    target: &Target,
    timeout: Duration,
) -> Result<Option<String>, StepError> {
    let check = |argv: Vec<String>| async move {
        match tokio::time::timeout(timeout, command(k, target, &argv)).await {
            Ok(result) => result.map(|f| f.code == 0 && f.failure.is_none()),
            Err(_) => Err(StepError::failed(format!("the guard `{}` did not finish in time", redact_command(&argv)))),
        }
    };
    if let Some(path) = &p.creates
        && check(vec!["test".into(), "-e".into(), path.clone()]).await?
    {
        return Ok(Some(format!("{path} exists (creates:)")));
    }
    if let Some(unless) = &p.unless
        && check(unless.clone()).await?
    {
        return Ok(Some(format!("`{}` exited 0 (unless:)", redact_command(unless))));
    }
    Ok(None)
}

/// Runs one command and collects its output and exit status.
async fn command(k: &Kube<'_>, target: &Target, argv: &[String]) -> Result<Finished, StepError> {
    let pods: Api<Pod> = k.api();
    let params = AttachParams::default().container(target.container.clone()).stdin(false).stdout(true).stderr(true);
    let mut process = match pods.exec(&target.pod, argv.to_vec(), &params).await {
        Ok(process) => process,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(StepError::failed(format!("pod {} not found: {}", target.pod, status.message)));
        }
        Err(e) => return Err(classify(&format!("exec in pod {}", target.pod), e)),
    };
    let (stdout, stderr) = (process.stdout(), process.stderr());
    let status = process.take_status();
    let (stdout, stderr) = tokio::join!(read_bounded(stdout), read_bounded(stderr));
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = process.join().await;
    let Some(status) = status else {
        return Err(StepError::transient(format!(
            "exec in pod {}: the connection ended without an exit status",
            target.pod
        )));
    };
    let (code, failure) = match status.status.as_deref() {
        Some("Success") => (0, None),
        _ if status.reason.as_deref() == Some("NonZeroExitCode") => {
            let code = status
                .details
                .and_then(|d| d.causes)
                .and_then(|c| c.into_iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                .and_then(|c| c.message?.parse().ok())
                .unwrap_or(1);
            (code, None)
        }
        _ => (-1, Some(format!("could not run: {}", status.message.unwrap_or_default()))),
    };
    Ok(Finished { code, stdout, stderr, failure })
}

/// Reads a stream to its end, keeping the last [`OUTPUT_LIMIT`] × 2 bytes.
async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let Some(mut reader) = reader else { return Vec::new() };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > OUTPUT_LIMIT * 2 {
            kept.drain(..kept.len() - OUTPUT_LIMIT * 2);
        }
    }
    kept
}

/// The pod and container the step names, and the Secret values it can see.
async fn resolve(k: &Kube<'_>, p: &ExecParams) -> Result<Target, StepError> {
    let pods: Api<Pod> = k.api();
    let pod = if let Some(workload) = &p.workload {
        let ordinal = p.ordinal.unwrap_or(0);
        match workload.kind {
            WorkloadKind::StatefulSet => get_pod(&pods, &format!("{}-{ordinal}", workload.name)).await?,
            WorkloadKind::Deployment => {
                let selector = super::workloads::pod_selector(k, workload).await?;
                let ready = ready_pods(&pods, &selector).await?;
                ready.into_iter().nth(ordinal as usize).ok_or_else(|| {
                    StepError::failed(format!(
                        "{workload} has no Ready pod number {ordinal} (counting from 0, by name)"
                    ))
                })?
            }
        }
    } else if let Some(labels) = &p.selector {
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let selector = selector.join(",");
        ready_pods(&pods, &selector)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StepError::failed(format!("no Ready pod in namespace {} matches {selector}", k.ns)))?
    } else {
        get_pod(&pods, &p.pod).await?
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers: Vec<&str> = pod.spec.iter().flat_map(|s| s.containers.iter()).map(|c| c.name.as_str()).collect();
    let container = match &p.container {
        Some(wanted) if containers.contains(&wanted.as_str()) => wanted.clone(),
        Some(wanted) => {
            return Err(StepError::failed(format!(
                "pod {name} has no container {wanted} (it has: {})",
                containers.join(", ")
            )));
        }
        None if containers.len() == 1 => containers[0].to_string(),
        None => {
            return Err(StepError::failed(format!(
                "pod {name} has {} containers ({}): name one with `container:`",
                containers.len(),
                containers.join(", ")
            )));
        }
    };
    let secrets = secret_values(k, &pod).await;
    Ok(Target { pod: name, container, secrets })
}

async fn get_pod(pods: &Api<Pod>, name: &str) -> Result<Pod, StepError> {
    match pods.get(name).await {
        Ok(pod) => Ok(pod),
        Err(e) if is_not_found(&e) => Err(StepError::failed(format!("pod {name} not found"))),
        Err(e) => Err(classify(&format!("reading pod {name}"), e)),
    }
}

/// Ready, not terminating pods matching a selector, by name.
async fn ready_pods(pods: &Api<Pod>, selector: &str) -> Result<Vec<Pod>, StepError> {
    let listed = pods.list(&ListParams::default().labels(selector)).await.map_err(|e| classify("listing pods", e))?;
    let mut ready: Vec<Pod> = listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(ready)
}

/// Values of every Secret the pod mounts (volumes, projected sources) or references
/// (env, envFrom). Unreadable Secrets are skipped: the patterns still apply.
async fn secret_values(k: &Kube<'_>, pod: &Pod) -> Vec<String> {
    let mut names = BTreeSet::new();
    if let Some(spec) = &pod.spec {
        for volume in spec.volumes.iter().flatten() {
            names.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
            for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                names.extend(source.secret.as_ref().map(|s| s.name.clone()));
            }
        }
        for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            for env in container.env.iter().flatten() {
                names.extend(env.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).map(|r| r.name.clone()));
            }
            for from in container.env_from.iter().flatten() {
                names.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
            }
        }
    }
    let secrets: Api<Secret> = k.api();
    let mut values = Vec::new();
    for name in names {
        if let Ok(secret) = secrets.get(&name).await {
            for bytes in secret.data.into_iter().flat_map(|d| d.into_values()) {
                values.push(String::from_utf8_lossy(&bytes.0).into_owned());
            }
            values.extend(secret.string_data.into_iter().flat_map(|d| d.into_values()));
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn output_keeps_its_last_bytes() {
        assert_eq!(tail("short", 10), "short");
        let cut = tail("0123456789abcdef", 6);
        assert!(cut.ends_with("abcdef") && cut.contains("10 bytes cut"), "{cut}");
    }
}
