//! `outrigger run -f dapr.yaml`: several apps, each beside its own sidecar.
//!
//! Each app runs under a child `outrigger run` (its own sidecar and process
//! group), started in the app's folder with the template's environment. Their
//! output is tagged with the app id: `== APP - id == ` for the app's lines,
//! `== DAPR - id == ` for the sidecar's. SIGINT/SIGTERM is passed on to every
//! child (which stops its app, then its sidecar). The run ends when every app
//! has exited; its code is the first non-zero code an app exited with.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::process::{LineSink, Process, Signal, Spec, exit_code, print_line, signal_pid};
use super::template::{self, AppPlan};
use super::{EX_USAGE, Signals, say};
use crate::cli::SidecarArgs;

/// Tags the lines of one child `outrigger run`: its app's lines carry
/// `== APP == ` already, every other line comes from the sidecar or launcher.
struct Tagged {
    app: String,
    dapr: String,
    /// The sidecar's HTTP port, from the child's "Starting Dapr ..." line.
    http_port: watch::Sender<Option<u16>>,
}

impl LineSink for Tagged {
    fn line(&self, line: &str) {
        if self.http_port.borrow().is_none()
            && let Some(port) = announced_http_port(line)
        {
            self.http_port.send_replace(Some(port));
        }
        match line.strip_prefix("== APP == ") {
            Some(rest) => print_line(&format!("{}{rest}", self.app)),
            None => print_line(&format!("{}{line}", self.dapr)),
        }
    }
}

pub(super) async fn run(file: &Path, parent: &SidecarArgs, signals: &mut Signals) -> i32 {
    let plans = match template::load(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("outrigger run: {e}");
            return EX_USAGE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("outrigger run: cannot find the outrigger binary to start the apps: {e}");
            return 1;
        }
    };
    say(format!(
        "Validating the run template {} and starting {} apps",
        template::locate(file).display(),
        plans.len()
    ));

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, i32)>();
    let mut running: Vec<(String, u32)> = Vec::new();
    let mut first_failure = 0;
    let mut ports: HashMap<String, watch::Receiver<Option<u16>>> = HashMap::new();
    let mut signal_while_starting = None;
    for plan in &plans {
        if let Some(after) = &plan.start_after
            && let Some(port) = ports.get(after).cloned()
        {
            say(format!(
                "Starting app {} once app {after} is ready (startAfter)",
                plan.app_id
            ));
            tokio::select! {
                ready = wait_ready(port, READY_WITHIN) => match ready {
                    Ok(()) => say(format!("App {after} is ready")),
                    Err(why) => say(format!("App {after} is not ready ({why}); starting {} anyway", plan.app_id)),
                },
                name = signals.recv() => {
                    signal_while_starting = Some(name);
                    break;
                }
            }
        }
        let spec = child_spec(&exe, plan, parent);
        let (port_tx, port_rx) = watch::channel(None);
        ports.insert(plan.app_id.clone(), port_rx);
        let sink = Arc::new(Tagged {
            app: format!("== APP - {} == ", plan.app_id),
            dapr: format!("== DAPR - {} == ", plan.app_id),
            http_port: port_tx,
        });
        match Process::spawn(&spec, sink) {
            Ok(mut child) => {
                running.push((plan.app_id.clone(), child.pid()));
                let tx = done_tx.clone();
                let id = plan.app_id.clone();
                tokio::spawn(async move {
                    let code = match child.wait().await {
                        Ok(status) => exit_code(&status),
                        Err(_) => 1,
                    };
                    // The child launcher cleans up its own app; just drain its output.
                    child.reap_group(Duration::from_secs(1)).await;
                    let _ = tx.send((id, code));
                });
            }
            Err(e) => {
                say(format!("cannot start app {}: {e}", plan.app_id));
                first_failure = 1;
            }
        }
    }
    drop(done_tx);
    if running.is_empty() {
        return first_failure.max(1);
    }

    let mut signalled = 0u32;
    let mut outcome = first_failure;
    if let Some(name) = signal_while_starting {
        signalled = 1;
        let left: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
        say(format!("{name} received: stopping {}", left.join(", ")));
        for (_, pid) in &running {
            signal_pid(*pid, Signal::Term);
        }
    }
    loop {
        tokio::select! {
            done = done_rx.recv() => {
                let Some((id, code)) = done else { break };
                running.retain(|(r, _)| *r != id);
                if code == 0 {
                    say(format!("Exited app {id} successfully"));
                } else {
                    say(format!("App {id} exited with code {code}"));
                    if outcome == 0 {
                        outcome = code;
                    }
                }
                if running.is_empty() {
                    break;
                }
            }
            name = signals.recv() => {
                signalled += 1;
                let left: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
                say(format!("{name} received: stopping {}", left.join(", ")));
                // Each child stops its app (SIGTERM, then SIGKILL after the grace
                // period; at once on a second signal), then its sidecar.
                for (_, pid) in &running {
                    signal_pid(*pid, Signal::Term);
                }
                if signalled >= 3 {
                    for (_, pid) in &running {
                        signal_pid(*pid, Signal::Kill);
                    }
                }
            }
        }
    }
    if signalled == 0 || outcome != 0 {
        outcome
    } else {
        0
    }
}

/// How long an app with `startAfter` waits for the other app to be ready
/// before it starts anyway (a Kafka group join takes seconds, not minutes).
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The HTTP port in the child's `Starting Dapr with id X. HTTP Port: N. ...` line.
fn announced_http_port(line: &str) -> Option<u16> {
    if !line.contains("Starting Dapr with id") {
        return None;
    }
    let rest = line.split("HTTP Port: ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Waits until the sidecar on the announced port is ready: `/v1.0/healthz`
/// answers 204 and every input binding in `/v1.0/metadata` is subscribed (a
/// Kafka one with its partitions assigned, not just joining the group).
async fn wait_ready(
    mut port: watch::Receiver<Option<u16>>,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let port = tokio::time::timeout_at(deadline, port.wait_for(Option::is_some))
        .await
        .map_err(|_| "its sidecar did not announce its HTTP port".to_string())?
        .map_err(|_| "it exited before its sidecar started".to_string())?
        .unwrap_or_default();
    loop {
        let why = match sidecar_ready(port).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{why} after {}s", within.as_secs()));
        }
        // Polling: the sidecar has no event to wait on from outside.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sidecar_ready(port: u16) -> Result<(), String> {
    let (status, _) = get(port, "/v1.0/healthz").await?;
    if status != 204 {
        return Err(format!("healthz answers {status}"));
    }
    let (status, body) = get(port, "/v1.0/metadata").await?;
    if status != 200 {
        return Err(format!("metadata answers {status}"));
    }
    let md: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("metadata is not JSON: {e}"))?;
    for input in md["inputBindings"].as_array().into_iter().flatten() {
        let state = input["state"].as_str().unwrap_or_default();
        let detail = input["detail"].as_str().unwrap_or_default();
        let kafka = input["type"].as_str() == Some("bindings.kafka");
        if state != "subscribed" || (kafka && !detail.contains("assigned")) {
            return Err(format!(
                "input binding {} is {state}{}",
                input["name"].as_str().unwrap_or("?"),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ));
        }
    }
    Ok(())
}

/// A plain HTTP/1.0 GET on the loopback: status and body.
async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.take(1 << 20).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5s".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("not an HTTP answer")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The child `outrigger run` for one app: template flags first, then the
/// parent's own flags the template did not set (log level, grace period, ...).
fn child_spec(exe: &Path, plan: &AppPlan, parent: &SidecarArgs) -> Spec {
    let mut args: Vec<OsString> = vec!["run".into()];
    args.extend(plan.flags.iter().cloned());
    let has = |name: &str| plan.flags.iter().any(|f| f == name);
    if !has("--log-level") {
        args.extend(["--log-level".into(), parent.log_level.clone().into()]);
    }
    if parent.log_as_json {
        args.push("--log-as-json".into());
    }
    if !has("--dapr-graceful-shutdown-seconds") {
        args.extend([
            "--dapr-graceful-shutdown-seconds".into(),
            parent.dapr_graceful_shutdown_seconds.to_string().into(),
        ]);
    }
    args.extend([
        "--dapr-listen-addresses".into(),
        parent.dapr_listen_addresses.clone().into(),
    ]);
    // Each child's sidecar does the message work: it gets the parent's settings.
    args.extend([
        "--worker-threads".into(),
        parent.worker_threads.to_string().into(),
    ]);
    if let Some(endpoint) = &parent.otlp_endpoint {
        args.extend(["--otlp-endpoint".into(), endpoint.into()]);
    }
    args.push("--".into());
    args.extend(plan.command.iter().map(OsString::from));
    Spec {
        program: exe.as_os_str().to_owned(),
        args,
        env: plan.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        dir: Some(plan.dir.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_announced_http_port() {
        assert_eq!(
            announced_http_port(
                "== outrigger == Starting Dapr with id a. HTTP Port: 41234. gRPC Port: 1"
            ),
            Some(41234)
        );
        assert_eq!(announced_http_port("== APP == HTTP Port: 5"), None);
    }
}
