//! The sidecar under test: in this process ([`start_sidecar`]), or the built
//! binary as a child process ([`SidecarProc::builder`]); and what it reports
//! about its input bindings.

use std::net::SocketAddr;
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

/// Variables of the test's own environment that would steer the sidecar: a
/// developer's Dapr settings (a token would turn authentication on), the
/// `APP_ID` and `NAMESPACE` flags read from the environment, and `RUST_LOG`,
/// which overrides `--log-level` and could hide the line the harness waits for.
/// (Besides [`super::procs::DAPR_ENV`].)
const STEERING_ENV: &[&str] = &[
    "APP_ID",
    "NAMESPACE",
    "KUBECONFIG",
    "RUST_LOG",
    "OUTRIGGER_OTLP_ENDPOINT",
    "OUTRIGGER_WORKER_THREADS",
];

/// An `outrigger sidecar` child process, started by [`SidecarProc::builder`]
/// (the one way tests run the binary as a serving sidecar); SIGKILLed on drop.
///
/// Its APIs listen on port 0: the harness reads the ports it got from its
/// `API listening http=[..] grpc=[..] metrics=[..]` log line, so no port is
/// picked beforehand and none can be lost to another process. While waiting
/// for that line the harness checks the process is alive and fails at once,
/// with the end of its log, when it is not.
pub struct SidecarProc {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    /// `None` when metrics are off.
    pub metrics_port: Option<u16>,
    /// Everything the process printed (stdout and stderr), appended to.
    pub log: PathBuf,
    /// Where this start's lines begin in `log` (restarts share one file).
    log_from: u64,
    _log_dir: Option<tempfile::TempDir>,
}

/// Flags and environment of a [`SidecarProc`]; [`start`](Self::start) runs it.
pub struct SidecarProcBuilder {
    resources: Option<PathBuf>,
    app_id: String,
    app_port: Option<u16>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Option<PathBuf>,
    log_level: String,
    json_logs: bool,
    metrics: bool,
    listen_addresses: Option<String>,
    ready_within: Duration,
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
    /// Any other flag (one argument; call again for its value).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
    /// Sets a variable of the process's environment (after the ones the
    /// harness clears, see [`STEERING_ENV`]).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// `--dapr-graceful-shutdown-seconds`.
    pub fn grace_secs(self, secs: u64) -> Self {
        self.arg("--dapr-graceful-shutdown-seconds")
            .arg(&secs.to_string())
    }
    /// The log file (appended to, so that restarts keep one history). Default:
    /// `sidecar.log` in the resources folder.
    pub fn log(mut self, path: &Path) -> Self {
        self.log = Some(path.to_path_buf());
        self
    }
    /// `--log-level` (default `info`). `warn` and `error` would hide the line the
    /// ports are read from, so they are refused.
    pub fn log_level(mut self, level: &str) -> Self {
        assert!(
            matches!(level, "info" | "debug"),
            "the harness reads the ports from an info line: --log-level {level} would hide it"
        );
        self.log_level = level.to_string();
        self
    }
    /// `--log-as-json`.
    pub fn json_logs(mut self) -> Self {
        self.json_logs = true;
        self
    }
    /// `--enable-metrics=false` (by default metrics listen on port 0).
    pub fn no_metrics(mut self) -> Self {
        self.metrics = false;
        self
    }
    /// `--dapr-listen-addresses` (default `127.0.0.1`); `None` leaves the
    /// sidecar's own default (`localhost`: 127.0.0.1 and ::1).
    pub fn listen_addresses(mut self, addrs: Option<&str>) -> Self {
        self.listen_addresses = addrs.map(str::to_string);
        self
    }
    /// How long the sidecar may take to listen (default 60 s).
    pub fn ready_within(mut self, d: Duration) -> Self {
        self.ready_within = d;
        self
    }

    /// Starts the process and waits until it listens; panics, with the end of
    /// its log, if it exits first or does not listen in time.
    pub fn start(self) -> SidecarProc {
        let (log, log_dir) = match (&self.log, &self.resources) {
            (Some(log), _) => (log.clone(), None),
            (None, Some(resources)) => (resources.join("sidecar.log"), None),
            (None, None) => {
                let dir = tempfile::tempdir().unwrap();
                (dir.path().join("sidecar.log"), Some(dir))
            }
        };
        let log_from = std::fs::metadata(&log).map_or(0, |m| m.len());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(outrigger_bin());
        for var in super::procs::DAPR_ENV.iter().chain(STEERING_ENV) {
            cmd.env_remove(var);
        }
        cmd.arg("sidecar")
            .args(["--app-id", &self.app_id])
            .args(["--dapr-http-port", "0", "--dapr-grpc-port", "0"])
            .args(["--log-level", &self.log_level]);
        if self.metrics {
            cmd.args(["--metrics-port", "0"]);
        } else {
            cmd.arg("--enable-metrics=false");
        }
        if let Some(addrs) = &self.listen_addresses {
            cmd.args(["--dapr-listen-addresses", addrs]);
        }
        if let Some(resources) = &self.resources {
            cmd.arg("--resources-path").arg(resources);
        }
        if let Some(p) = self.app_port {
            cmd.args(["--app-port", &p.to_string()]);
        }
        if self.json_logs {
            cmd.arg("--log-as-json");
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("start outrigger sidecar");
        // Built before the wait, so that a failed wait kills the process (drop).
        let mut proc = SidecarProc {
            child,
            http_port: 0,
            grpc_port: 0,
            metrics_port: None,
            log,
            log_from,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + self.ready_within;
        let ports = loop {
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!(
                    "the sidecar exited ({status}) before it listened:\n{}",
                    tail(&proc.log_text(), 40)
                );
            }
            let log = proc.log_text();
            if let Some(ports) = Listening::find(&log) {
                break ports;
            }
            // Logged right after the listeners: a running sidecar whose line did
            // not parse means the line changed (src/runtime.rs), not a slow start.
            assert!(
                !log.contains("outrigger initialized"),
                "the sidecar runs but logged no `API listening http=[..] grpc=[..] metrics=[..]` line the harness can read:\n{}",
                tail(&log, 40)
            );
            assert!(
                Instant::now() < deadline,
                "the sidecar did not listen within {:?}:\n{}",
                self.ready_within,
                tail(&proc.log_text(), 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        proc.http_port = ports.http_port().expect("an HTTP listener");
        proc.grpc_port = ports.grpc_port().expect("a gRPC listener");
        proc.metrics_port = ports.metrics.first().map(SocketAddr::port);
        assert_eq!(
            proc.metrics_port.is_some(),
            self.metrics,
            "metrics listeners: {:?}\n{}",
            ports.metrics,
            tail(&proc.log_text(), 40)
        );
        proc
    }
}

/// The addresses of a sidecar's `API listening` log line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listening {
    pub http: Vec<SocketAddr>,
    pub grpc: Vec<SocketAddr>,
    pub metrics: Vec<SocketAddr>,
}

impl Listening {
    /// From the first `API listening` line of a log, text
    /// (`... INFO API listening http=[127.0.0.1:1, [::1]:1] grpc=[..] metrics=[..]`)
    /// or JSON (`{"msg":"API listening","http":"[127.0.0.1:1]",...}`).
    pub fn find(log: &str) -> Option<Listening> {
        let line = log.lines().find(|l| l.contains("API listening"))?;
        let field = |name: &str| -> Option<Vec<SocketAddr>> {
            let list = if line.trim_start().starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                v[name].as_str()?.to_string()
            } else {
                bracketed(line, &format!("{name}="))?
            };
            addr_list(&list)
        };
        let found = Listening {
            http: field("http")?,
            grpc: field("grpc")?,
            metrics: field("metrics")?,
        };
        // A line that does not parse is a format change: say so, not "timed out".
        assert!(
            !found.http.is_empty() && !found.grpc.is_empty(),
            "an `API listening` line without addresses: {line}"
        );
        Some(found)
    }

    pub fn http_port(&self) -> Option<u16> {
        self.http.first().map(SocketAddr::port)
    }

    pub fn grpc_port(&self) -> Option<u16> {
        self.grpc.first().map(SocketAddr::port)
    }
}

/// `[a, [::1]:2]` after `key` in `line`, brackets included.
fn bracketed(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..=i].to_string());
                }
            }
            _ if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// `[127.0.0.1:1, [::1]:1]` (Rust's Debug of a `Vec<SocketAddr>`).
fn addr_list(list: &str) -> Option<Vec<SocketAddr>> {
    let inner = list.strip_prefix('[')?.strip_suffix(']')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    inner.split(", ").map(|a| a.trim().parse().ok()).collect()
}

#[test]
fn listening_lines_in_both_log_formats() {
    let text = "2026-01-01T00:00:00Z  INFO starting\n2026-01-01T00:00:00Z  INFO API listening http=[127.0.0.1:45209, [::1]:45209] grpc=[127.0.0.1:46307] metrics=[]\n";
    let got = Listening::find(text).unwrap();
    assert_eq!(got.http_port(), Some(45209));
    assert_eq!(got.http.len(), 2);
    assert_eq!(got.grpc_port(), Some(46307));
    assert!(got.metrics.is_empty());
    let json = r#"{"app_id":"","grpc":"[127.0.0.1:40593, [::1]:40593]","http":"[127.0.0.1:40607]","metrics":"[127.0.0.1:9]","msg":"API listening"}"#;
    let got = Listening::find(json).unwrap();
    assert_eq!(
        (got.http_port(), got.grpc_port(), got.metrics[0].port()),
        (Some(40607), Some(40593), 9)
    );
    assert_eq!(Listening::find("INFO starting outrigger"), None);
}

impl SidecarProc {
    /// A sidecar over the component files in `resources`.
    pub fn builder(resources: &Path) -> SidecarProcBuilder {
        SidecarProcBuilder {
            resources: Some(resources.to_path_buf()),
            ..Self::builder_without_resources()
        }
    }

    /// A sidecar without `--resources-path` (Kubernetes mode takes its
    /// components from the API server); logs to a temporary folder.
    pub fn builder_without_resources() -> SidecarProcBuilder {
        SidecarProcBuilder {
            resources: None,
            app_id: unique("app"),
            app_port: None,
            args: Vec::new(),
            env: Vec::new(),
            log: None,
            log_level: "info".into(),
            json_logs: false,
            metrics: true,
            listen_addresses: Some("127.0.0.1".into()),
            ready_within: Duration::from_secs(60),
        }
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn grpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics, with the end of its log, if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the sidecar process died: {status:?}\n{}",
                tail(&self.log_text(), 40)
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

    /// Waits up to `timeout` for the process to exit; panics, with its log, after.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the sidecar did not exit within {timeout:?}:\n{}",
                tail(&self.log_text(), 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit (blocking).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        if self.try_wait().is_none() {
            self.signal(libc::SIGTERM);
        }
        self.wait_exit(timeout)
    }

    /// What this process printed so far (not earlier runs sharing the file).
    pub fn log_text(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        let from = (self.log_from as usize).min(all.len());
        String::from_utf8_lossy(&all[from..]).into_owned()
    }

    /// `host:port` of the first log line containing `marker` that names a
    /// 127.0.0.1 address (another listener, e.g. Kubernetes mode's public port).
    pub fn logged_addr(&self, marker: &str) -> Option<String> {
        let log = self.log_text();
        let line = log.lines().find(|l| l.contains(marker))?;
        let start = line.find("127.0.0.1:")?;
        let rest = &line[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }

    /// Resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// SIGKILL: no drain, no commit, no goodbye to the consumer group.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SidecarProc {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.try_wait().ok().flatten().is_none() {
            eprintln!(
                "--- sidecar log ({}) ---\n{}",
                self.log.display(),
                tail(&self.log_text(), 60)
            );
        }
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

#[test]
fn a_sidecar_that_exits_fails_the_start_at_once_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "kind: Component\nspec: [").unwrap();
    let started = Instant::now();
    let result = std::panic::catch_unwind(|| SidecarProc::builder(dir.path()).start());
    let message = panic_text(result.err().expect("the start fails"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?}",
        started.elapsed()
    );
    assert!(message.contains("exited (exit status: 64)"), "{message}");
    assert!(message.contains("broken.yaml"), "{message}");
}
