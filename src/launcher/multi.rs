//! `outrigger run -f dapr.yaml`: several apps, each beside its own sidecar.
//!
//! Each app runs under a child `outrigger run` (its own sidecar and process
//! group), started in the app's folder with the template's environment. Their
//! output is tagged with the app id: `== APP - id == ` for the app's lines,
//! `== DAPR - id == ` for the sidecar's. SIGINT/SIGTERM is passed on to every
//! child (which stops its app, then its sidecar). The run ends when every app
//! has exited; its code is the first non-zero code an app exited with.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::process::{LineSink, Process, Signal, Spec, exit_code, print_line, signal_pid};
use super::template::{self, AppPlan};
use super::{EX_USAGE, Signals, say};
use crate::cli::SidecarArgs;

/// Tags the lines of one child `outrigger run`: its app's lines carry
/// `== APP == ` already, every other line comes from the sidecar or launcher.
struct Tagged {
    app: String,
    dapr: String,
}

impl LineSink for Tagged {
    fn line(&self, line: &str) {
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
    for plan in &plans {
        let spec = child_spec(&exe, plan, parent);
        let sink = Arc::new(Tagged {
            app: format!("== APP - {} == ", plan.app_id),
            dapr: format!("== DAPR - {} == ", plan.app_id),
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
