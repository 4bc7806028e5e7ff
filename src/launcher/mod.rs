//! `outrigger run`: starts an app beside its sidecar, as `dapr run` does.
//!
//! The sidecar runs in this process; the app is a child process in its own
//! process group, with `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `APP_ID`, ... set and
//! its output prefixed `== APP == `. The sidecar starts first; when the app
//! exits the sidecar stops and `outrigger run` exits with the app's code; on
//! SIGINT/SIGTERM the app gets SIGTERM (SIGKILL after the grace period) and the
//! sidecar stops. `-f` runs a multi-app template instead (see [`multi`]).

pub mod args;
mod multi;
pub mod process;
pub mod template;

use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::Arc;

use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::runtime::{Sidecar, SidecarConfig};
use process::{Prefix, Process, Spec, exit_code, print_line};

/// Exit code for bad usage (no command and no template, both, a bad template).
const EX_USAGE: i32 = 64;

pub async fn run(args: RunArgs) -> i32 {
    // Handlers first: a SIGTERM right after the app started must not kill us
    // before we can pass it on (the app would be left behind).
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outrigger run: cannot handle signals: {e}");
            return 1;
        }
    };
    match &args.run_file {
        Some(_) if !args.command.is_empty() => {
            eprintln!("outrigger run: give either a run template (-f) or an app command, not both");
            EX_USAGE
        }
        Some(file) => multi::run(file, &args.sidecar, &mut signals).await,
        None => run_one(args, &mut signals).await,
    }
}

/// SIGINT, SIGTERM and SIGHUP, as a stream (a second one forces the stop).
pub(crate) struct Signals {
    int: SignalStream,
    term: SignalStream,
    hup: SignalStream,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            // The terminal closed: the app, in its own group, would not hear of it.
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// A line of the launcher's own, for the user (not a log line).
fn say(text: impl AsRef<str>) {
    print_line(text.as_ref());
}

/// How the run ended.
enum Ended {
    App(std::io::Result<ExitStatus>),
    Signal(&'static str),
    SidecarStopped,
}

async fn run_one(args: RunArgs, signals: &mut Signals) -> i32 {
    let mut sidecar_args = args.sidecar.clone();
    if sidecar_args.app_id.is_empty() {
        sidecar_args.app_id = default_app_id();
    }
    let app_id = sidecar_args.app_id.clone();
    crate::logging::size_console_for_app_output();
    crate::logging::init(&sidecar_args.log_level, sidecar_args.log_as_json, &app_id);
    let config = sidecar_args.to_config();
    let grace = config.graceful_shutdown;

    let shutdown = CancellationToken::new();
    let sidecar = match Sidecar::start(config.clone(), shutdown.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outrigger run: Dapr (the sidecar) did not start: {e}");
            return e.exit_code();
        }
    };
    let (http_port, grpc_port) = (sidecar.http_port(), sidecar.grpc_port());
    say(format!(
        "Starting Dapr with id {app_id}. HTTP Port: {http_port}. gRPC Port: {grpc_port}"
    ));

    let Some((program, app_args)) = args.command.split_first() else {
        // No app command: the sidecar alone, until a signal (as `dapr run -a x`).
        say("You're up and running! Dapr logs will appear here.");
        tokio::select! {
            name = signals.recv() => say(format!("{name} received: shutting down")),
            _ = shutdown.cancelled() => {}
        }
        shutdown.cancel();
        sidecar.wait().await;
        say("Exited Dapr successfully");
        return 0;
    };

    let spec = Spec {
        program: program.into(),
        args: app_args.iter().map(OsString::from).collect(),
        env: app_env(&config, http_port, grpc_port),
        dir: None,
    };
    let mut app = match Process::spawn(&spec, Arc::new(Prefix("== APP == ".into()))) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("outrigger run: cannot start the app command `{program}`: {e}");
            shutdown.cancel();
            sidecar.wait().await;
            say("Exited Dapr successfully");
            // As shells do: 127 for a command not found, 126 for one that cannot run.
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    say("You're up and running! Both Dapr and your app logs will appear here.");

    let ended = tokio::select! {
        status = app.wait() => Ended::App(status),
        name = signals.recv() => Ended::Signal(name),
        _ = shutdown.cancelled() => Ended::SidecarStopped,
    };
    let code = match ended {
        Ended::App(status) => {
            // Grandchildren left in the app's group go too: no orphans.
            app.reap_group(grace).await;
            match status {
                Ok(status) => {
                    let code = exit_code(&status);
                    if status.success() {
                        say("Exited App successfully");
                    } else {
                        say(format!("The App process exited with error code: {code}"));
                    }
                    code
                }
                Err(e) => {
                    say(format!("The App process could not be waited for: {e}"));
                    1
                }
            }
        }
        Ended::Signal(name) => {
            say(format!("{name} received: stopping the app and Dapr"));
            shutdown.cancel();
            if stop_app(&mut app, grace, signals).await {
                say("Exited App successfully");
            } else {
                say("The App process was killed");
            }
            0
        }
        Ended::SidecarStopped => {
            say("Dapr was shut down: stopping the app");
            stop_app(&mut app, grace, signals).await;
            0
        }
    };

    shutdown.cancel();
    tokio::select! {
        _ = sidecar.wait() => say("Exited Dapr successfully"),
        name = signals.recv() => {
            say(format!("{name} received again: exiting now"));
            return if code == 0 { 1 } else { code };
        }
    }
    code
}

/// SIGTERM, then SIGKILL after the grace period, or at once on a second signal.
/// True when the app stopped before it had to be killed.
async fn stop_app(app: &mut Process, grace: std::time::Duration, signals: &mut Signals) -> bool {
    let stopped = tokio::select! {
        status = app.stop(grace) => Some(status),
        name = signals.recv() => {
            say(format!("{name} received again: killing the app"));
            None
        }
    };
    match stopped {
        Some(status) => status.is_some_and(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.signal() != Some(9)
        }),
        None => {
            app.kill().await;
            false
        }
    }
}

/// What the app finds in its environment, as `dapr run` sets it.
fn app_env(config: &SidecarConfig, http_port: u16, grpc_port: u16) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("DAPR_HTTP_PORT".into(), http_port.to_string().into()),
        ("DAPR_GRPC_PORT".into(), grpc_port.to_string().into()),
        ("APP_ID".into(), config.app_id.clone().into()),
    ];
    if let Some(port) = config.app_port {
        env.push(("APP_PORT".into(), port.to_string().into()));
    }
    if let Some(token) = &config.api_token {
        env.push(("DAPR_API_TOKEN".into(), token.into()));
    }
    if let Some(token) = &config.app_token {
        env.push(("APP_API_TOKEN".into(), token.into()));
    }
    // Output goes to a pipe: without this a Python app's prints would show up
    // only when its buffer fills. Left alone when the user set it.
    if std::env::var_os("PYTHONUNBUFFERED").is_none() {
        env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    }
    env
}

/// An app id when none is given: the current folder's name (dapr makes one up).
fn default_app_id() -> String {
    let name = std::env::current_dir()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let id = id.trim_matches('-').to_string();
    if id.is_empty() { "app".into() } else { id }
}
