//! `pods/exec` on the simulated cluster: kubectl (a client nobody here wrote) and kube's
//! WebSocket client run commands and get their exit codes; a v4-only client is served;
//! the shell and file utilities work on the pod's volumes; the simulated etcd member
//! snapshots, refuses to restore over an existing data dir, and serves what its data dir
//! holds when it starts again.

mod sim_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drplan::sim::{SimCluster, SimConfig, SimHandle};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, DeleteParams};
use sim_common::scratch_dir;
use tokio::io::AsyncReadExt;

fn etcd_cluster() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans/etcd-restore")
}

async fn start() -> (SimHandle, kube::Client) {
    let config = SimConfig { pod_ready_after: Duration::ZERO, ..SimConfig::default() };
    let sim = SimCluster::start(&[etcd_cluster()], config).await.expect("sim starts");
    sim.settle();
    let client = sim.client().expect("client");
    (sim, client)
}

/// Output of a command run through kube's WebSocket client.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
    code: i32,
}

async fn exec(client: &kube::Client, pod: &str, argv: &[&str]) -> Result<Ran, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let mut process = pods.exec(pod, argv.to_vec(), &AttachParams::default().stdout(true).stderr(true)).await?;
    let (mut stdout, mut stderr) = (process.stdout().unwrap(), process.stderr().unwrap());
    let status = process.take_status().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
    let status = status.await.expect("a status on the status channel");
    let code = match status.status.as_deref() {
        Some("Success") => 0,
        _ => {
            status.details.and_then(|d| d.causes).and_then(|c| c.first()?.message.as_ref()?.parse().ok()).unwrap_or(-1)
        }
    };
    Ok(Ran { stdout: out, stderr: err, code })
}

async fn sh(client: &kube::Client, script: &str) -> Ran {
    exec(client, "etcd-0", &["sh", "-c", script]).await.expect("exec")
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .args(args)
        .output()
        .expect("kubectl is installed (Debian package kubernetes-client)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_gets_output_and_exit_codes() {
    let (sim, _client) = start().await;
    let dir = scratch_dir("kubectl-exec");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let config = kubeconfig.clone();
    let (ok, failed, no_pod, no_container) = tokio::task::spawn_blocking(move || {
        let k = |args: &[&str]| kubectl(&config, args);
        (
            k(&["-n", "kube-system", "exec", "etcd-0", "-c", "etcd", "--", "sh", "-c", "echo hello; ls /var/lib"]),
            k(&["-n", "kube-system", "exec", "etcd-0", "--", "sh", "-c", "echo oops; exit 4"]),
            k(&["-n", "kube-system", "exec", "etcd-9", "--", "true"]),
            k(&["-n", "kube-system", "exec", "etcd-0", "-c", "sidecar", "--", "true"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hello\netcd\netcd-backup\n");
    assert_eq!(failed.status.code(), Some(4), "kubectl passes the exit code on");
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "oops\n");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("command terminated with exit code"), "{stderr}");
    assert_eq!(no_pod.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_pod.stderr).contains("pods \"etcd-9\" not found"));
    assert!(String::from_utf8_lossy(&no_container.stderr).contains("container sidecar is not valid for pod etcd-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_only_client_is_served_and_errors_are_api_statuses() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let (sim, client) = start().await;
    let url = format!(
        "ws://{}/api/v1/namespaces/kube-system/pods/etcd-0/exec?command=sh&command=-c&command=echo%20v4%3B%20exit%205&stdout=true&stderr=true",
        sim.addr()
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("v4.channel.k8s.io"));
    let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream).await.expect("upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], "v4.channel.k8s.io");
    let mut frames = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        if message.is_binary() {
            frames.push(message.into_data().to_vec());
        }
    }
    assert_eq!(frames[0], b"\x01v4\n");
    let status: serde_json::Value = serde_json::from_slice(&frames.last().unwrap()[1..]).unwrap();
    assert_eq!(frames.last().unwrap()[0], 3, "the status channel");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "5");

    let missing = exec(&client, "etcd-7", &["true"]).await.unwrap_err();
    assert!(matches!(&missing, kube::Error::Api(s) if s.code == 404), "{missing:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let wrong =
        pods.exec("etcd-0", vec!["true"], &AttachParams::default().container("nope")).await.err().expect("refused");
    assert!(matches!(&wrong, kube::Error::Api(s) if s.code == 400 && s.message.contains("not valid")), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_commands_work_on_the_pods_volumes() {
    let (sim, client) = start().await;
    let ran = sh(&client, "mkdir -p /var/lib/x/y && echo one > /var/lib/x/y/f && cp -r /var/lib/x /var/lib/z && mv /var/lib/x /var/lib/w && ls /var/lib && cat /var/lib/z/y/f").await;
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "etcd\netcd-backup\nw\nz\none\n"), "{}", ran.stderr);
    let ran = sh(&client, "test -d /var/lib/w/y && test -f /var/lib/w/y/f && test ! -e /var/lib/x && echo yes").await;
    assert_eq!(ran.stdout, "yes\n", "{ran:?}");
    let ran = sh(
        &client,
        "rm /var/lib/w || echo refused; rm -rf /var/lib/w /var/lib/nothing && test -e /var/lib/w || echo gone",
    )
    .await;
    assert_eq!(ran.stdout, "refused\ngone\n", "{}", ran.stderr);
    assert!(ran.stderr.contains("rm: cannot remove '/var/lib/w': Is a directory"));
    let ran = sh(&client, "mv /var/lib /srv").await;
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("Device or resource busy"), "{}", ran.stderr);
    let ran = sh(&client, "echo x > /etc/etcd/pki/ca.crt").await;
    assert!(ran.stderr.contains("Read-only file system"), "{}", ran.stderr);
    let ran = sh(&client, "frobnicate --now && echo never").await;
    assert_eq!((ran.code, ran.stderr.as_str(), ran.stdout.as_str()), (127, "sh: frobnicate: not found\n", ""));
    let ran = sh(&client, "echo 'unterminated").await;
    assert_eq!(ran.code, 2);
    // The files are the claim's: the data volume holds them, not the pod.
    let files = sim.with_state(|state| {
        let id = state.claim_volume_id("kube-system", "data-etcd-0").unwrap();
        state.volumes[&id].files.entries().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    });
    assert!(files.contains(&"z/y/f".to_string()), "{files:?}");
}

/// Waits until etcd-0 is a new pod (other uid) and Running.
async fn wait_restarted(client: &kube::Client, old_uid: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    for _ in 0..200 {
        if let Ok(pod) = pods.get("etcd-0").await
            && pod.metadata.uid.as_deref() != Some(old_uid)
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("etcd-0 did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_serves_its_data_dir_as_it_was_when_it_started() {
    let (_sim, client) = start().await;
    let etcdctl = |args: &'static [&'static str]| {
        let client = client.clone();
        async move {
            let mut argv = vec!["etcdctl", "--endpoints=https://127.0.0.1:2379", "--cacert=/etc/etcd/pki/ca.crt"];
            argv.extend_from_slice(args);
            exec(&client, "etcd-0", &argv).await.unwrap()
        }
    };
    assert_eq!(etcdctl(&["put", "/registry/a", "1"]).await.stdout, "OK\n");
    let saved = etcdctl(&["snapshot", "save", "/var/lib/etcd-backup/snap.db"]).await;
    assert_eq!(saved.code, 0, "{saved:?}");
    etcdctl(&["put", "/registry/late", "2"]).await;
    let status = sh(&client, "etcdutl snapshot status /var/lib/etcd-backup/snap.db -w table").await;
    assert!(status.stdout.contains("TOTAL KEYS") && status.stdout.contains("|          1 |"), "{status:?}");
    let refused = sh(&client, "etcdutl snapshot restore /var/lib/etcd-backup/snap.db --data-dir /var/lib/etcd").await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("data-dir \"/var/lib/etcd\" exists"), "{}", refused.stderr);
    let restored = sh(&client, "etcdutl snapshot restore /var/lib/etcd-backup/snap.db --data-dir /var/lib/etcd-restored --name etcd-0 --initial-cluster etcd-0=https://etcd-0.etcd.kube-system.svc:2380 --initial-advertise-peer-urls https://etcd-0.etcd.kube-system.svc:2380 && mv /var/lib/etcd /var/lib/etcd.before-restore && mv /var/lib/etcd-restored /var/lib/etcd").await;
    assert_eq!(restored.code, 0, "{restored:?}");
    // Still the member that started on the old directory.
    assert_eq!(etcdctl(&["get", "/registry/late", "--print-value-only"]).await.stdout, "2\n");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let uid = pods.get("etcd-0").await.unwrap().metadata.uid.unwrap();
    pods.delete("etcd-0", &DeleteParams::default()).await.unwrap();
    wait_restarted(&client, &uid).await;
    assert_eq!(etcdctl(&["get", "/registry/a", "--print-value-only"]).await.stdout, "1\n");
    assert_eq!(etcdctl(&["get", "/registry/late"]).await.stdout, "", "written after the snapshot: lost");
    let members = etcdctl(&["member", "list"]).await.stdout;
    assert!(members.contains(", started, etcd-0, https://etcd-0.etcd.kube-system.svc:2380,"), "{members}");
    let kept = sh(&client, "etcdutl snapshot status /var/lib/etcd.before-restore/member/snap/db; test -f /var/lib/etcd.before-restore/member/snap/db").await;
    assert_eq!(kept.code, 0, "{kept:?}");
    let missing_cert = exec(&client, "etcd-0", &["etcdctl", "--cert=/nope.crt", "endpoint", "health"]).await.unwrap();
    assert_eq!(
        (missing_cert.code, missing_cert.stderr.as_str()),
        (1, "Error: open /nope.crt: no such file or directory\n")
    );
}
