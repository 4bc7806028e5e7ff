//! The sidecar under test: in this process ([`start_sidecar`]), or the built
//! binary as a child process ([`SidecarProc::builder`]); and what it reports
//! about its input bindings.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use outrigger::{Sidecar, SidecarConfig};

use super::*;

/// Writes component documents into a fresh folder.
pub fn components_dir(docs: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, doc) in docs.iter().enumerate() {
        std::fs::write(dir.path().join(format!("component-{i}.yaml")), doc).unwrap();
    }
    dir
}

/// A sidecar running in this process, on free ports.
pub struct TestSidecar {
    pub sidecar: Option<Sidecar>,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
}

impl TestSidecar {
    pub fn http(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.sidecar.as_ref().unwrap().http_port()
        )
    }
    pub fn grpc(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.sidecar.as_ref().unwrap().grpc_port()
        )
    }
    pub fn grpc_port(&self) -> u16 {
        self.sidecar.as_ref().unwrap().grpc_port()
    }
    pub fn http_port(&self) -> u16 {
        self.sidecar.as_ref().unwrap().http_port()
    }
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.sidecar.take() {
            s.wait().await;
        }
    }
}

impl Drop for TestSidecar {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The config tests start from: free ports, loopback, short timeouts.
pub fn test_config(dir: &Path) -> SidecarConfig {
    SidecarConfig {
        app_id: unique("app"),
        http_port: 0,
        grpc_port: 0,
        listen_addresses: vec!["127.0.0.1".into()],
        resources_paths: vec![dir.to_path_buf()],
        graceful_shutdown: Duration::from_secs(3),
        ..SidecarConfig::default()
    }
}

/// Starts an in-process sidecar over the given component documents.
pub async fn start_sidecar(docs: &[String], tweak: impl FnOnce(&mut SidecarConfig)) -> TestSidecar {
    init_logs();
    let dir = components_dir(docs);
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let shutdown = CancellationToken::new();
    let sidecar = Sidecar::start(config, shutdown.clone())
        .await
        .expect("sidecar starts");
    TestSidecar {
        sidecar: Some(sidecar),
        shutdown,
        dir,
    }
}

pub fn init_logs() {
    outrigger::logging::init(
        &std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        false,
        "test",
    );
}

/// Path of the built `outrigger` binary (cargo builds it for integration tests).
pub fn outrigger_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_outrigger"))
}

/// An `outrigger sidecar` child process; SIGKILLed on drop. Started by
/// [`SidecarProc::builder`]: ports are picked free and, should another process
/// take one first (the sidecar then exits at once), picked again.
pub struct SidecarProc {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    pub log: PathBuf,
}

pub struct SidecarProcBuilder {
    resources: PathBuf,
    app_id: String,
    app_port: Option<u16>,
    args: Vec<String>,
    log: PathBuf,
}

impl SidecarProcBuilder {
    pub fn app_id(mut self, id: &str) -> Self {
        self.app_id = id.to_string();
        self
    }
    pub fn app_port(mut self, port: u16) -> Self {
        self.app_port = Some(port);
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    /// The log file (appended to, so that restarts keep one history).
    pub fn log(mut self, path: &Path) -> Self {
        self.log = path.to_path_buf();
        self
    }

    pub fn start(self) -> SidecarProc {
        for attempt in 1..=3 {
            let (http, grpc) = (free_port(), free_port());
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut cmd = Command::new(outrigger_bin());
            cmd.arg("sidecar")
                .args(["--app-id", &self.app_id])
                .args(["--dapr-http-port", &http.to_string()])
                .args(["--dapr-grpc-port", &grpc.to_string()])
                .args(["--dapr-listen-addresses", "127.0.0.1"])
                .arg("--resources-path")
                .arg(&self.resources)
                .args(&self.args)
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .stdin(Stdio::null());
            if let Some(p) = self.app_port {
                cmd.args(["--app-port", &p.to_string()]);
            }
            let mut child = cmd.spawn().expect("start outrigger sidecar");
            let deadline = Instant::now() + Duration::from_secs(60);
            let started = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Err(status);
                }
                if port_open(http) && port_open(grpc) {
                    break Ok(());
                }
                assert!(
                    Instant::now() < deadline,
                    "the sidecar did not listen within 60 s:\n{}",
                    tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            match started {
                Ok(()) => {
                    return SidecarProc {
                        child,
                        http_port: http,
                        grpc_port: grpc,
                        log: self.log.clone(),
                    };
                }
                Err(status) if attempt < 3 => {
                    eprintln!(
                        "sidecar exited with {status} before listening (attempt {attempt}); retrying"
                    );
                }
                Err(status) => panic!(
                    "the sidecar exited with {status}:\n{}",
                    tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
                ),
            }
        }
        unreachable!()
    }
}

impl SidecarProc {
    /// A sidecar over the component files in `resources`.
    pub fn builder(resources: &Path) -> SidecarProcBuilder {
        SidecarProcBuilder {
            resources: resources.to_path_buf(),
            app_id: unique("app"),
            app_port: None,
            args: Vec::new(),
            log: resources.join("sidecar.log"),
        }
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics, with the end of its log, if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the sidecar process died: {status:?}\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
            );
        }
    }

    /// Sends `signal` (SIGTERM, SIGINT, ...) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The sidecar's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no commit, no goodbye to the consumer group.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SidecarProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The sidecar's `/v1.0/metadata` entry for input binding `name`.
pub async fn input_status(http: &str, name: &str) -> serde_json::Value {
    let md: serde_json::Value = reqwest::get(format!("{http}/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    md["inputBindings"]
        .as_array()
        .expect("inputBindings in metadata")
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("input binding {name} not in metadata: {md}"))
        .clone()
}

/// Waits until the sidecar reports input binding `name` in `state`; returns its status.
pub async fn wait_input_state(
    http: &str,
    name: &str,
    state: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_until(
        &format!("input binding {name} in state {state:?}"),
        timeout,
        || async {
            let s = input_status(http, name).await;
            (s["state"] == state).then_some(s)
        },
    )
    .await
}

/// `outrigger sidecar` as a child process on free ports, its output kept in a
/// [`Proc`] transcript (for tests that show it beside their apps' output).
pub struct ChildSidecar {
    pub proc: Proc,
    pub http_port: u16,
    pub grpc_port: u16,
}

impl ChildSidecar {
    /// Starts the binary; `extra` adds flags (e.g. `--app-port`). Returns once
    /// `/v1.0/healthz/outbound` answers 204 on the port it was given.
    pub async fn start(app_id: &str, resources: &Path, extra: &[&str]) -> ChildSidecar {
        let http_port = free_port();
        let grpc_port = free_port();
        let mut cmd = Command::new(outrigger_bin());
        clear_dapr_env(&mut cmd);
        cmd.arg("sidecar")
            .args(["--app-id", app_id])
            .args(["--dapr-http-port", &http_port.to_string()])
            .args(["--dapr-grpc-port", &grpc_port.to_string()])
            .arg("--resources-path")
            .arg(resources)
            .args(["--log-level", "info"])
            .args(extra);
        let mut proc = Proc::spawn(&format!("sidecar {app_id}"), cmd);
        let url = format!("http://127.0.0.1:{http_port}/v1.0/healthz/outbound");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Checked first: another process could hold the port we picked.
            if let Some(status) = proc.exited() {
                panic!(
                    "sidecar {app_id} exited early ({status})\n{}",
                    proc.transcript()
                );
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 204
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for sidecar {app_id} to answer {url}\n{}",
                proc.transcript()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ChildSidecar {
            proc,
            http_port,
            grpc_port,
        }
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

/// The `inputBindings` entry of `/v1.0/metadata` for `name` (outrigger's own
/// addition to the metadata: state, detail, delivered count).
pub async fn input_binding_status(http: &str, name: &str) -> Option<serde_json::Value> {
    let md: serde_json::Value = reqwest::get(format!("{http}/v1.0/metadata"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    md["inputBindings"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
}

/// True once the input binding has partitions assigned (its consumer joined the group).
pub async fn input_binding_assigned(http: &str, name: &str) -> bool {
    input_binding_status(http, name).await.is_some_and(|s| {
        s["state"] == "subscribed" && s["detail"].as_str().is_some_and(|d| d.contains("assigned"))
    })
}
