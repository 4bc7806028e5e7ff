//! The contenders: outrigger (the release binary next to this one) and, when
//! present, Dapr's own daprd, each started as a separate process on loopback
//! with the same components folder, and timed from spawn to `/v1.0/healthz` 204.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contender {
    Outrigger,
    Daprd,
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Contender::Outrigger => "outrigger",
            Contender::Daprd => "daprd",
        }
    }
}

/// Where the sidecar binaries are, and where daprd writes its log.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub outrigger: PathBuf,
    pub daprd: Option<PathBuf>,
    pub logs: PathBuf,
}

impl Binaries {
    pub fn path(&self, c: Contender) -> &Path {
        match c {
            Contender::Outrigger => &self.outrigger,
            Contender::Daprd => self.daprd.as_deref().expect("daprd"),
        }
    }

    /// `--version` of a contender's binary, first line.
    pub fn version(&self, c: Contender) -> String {
        let mut cmd = Command::new(self.path(c));
        cmd.arg("--version");
        cmd.output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    }
}

pub struct RunningSidecar {
    pub child: Killed,
    pub http: u16,
    pub grpc: u16,
    pub ready_after: Duration,
}

impl RunningSidecar {
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `c` on free loopback ports with the components in `resources`
/// (and an app on `app` = (port, "grpc"|"http")), and waits until it is ready.
/// A start that loses a port race (the process exits before it is ready) is
/// tried again on new ports.
pub fn start(
    bins: &Binaries,
    c: Contender,
    resources: &Path,
    app: Option<(u16, &str)>,
) -> RunningSidecar {
    let mut last_log = String::new();
    for attempt in 0..4 {
        let (http, grpc) = (free_port(), free_port());
        let mut cmd = Command::new(bins.path(c));
        let log_path = bins.logs.join(format!("{}-{http}-{attempt}.log", c.name()));
        let log = std::fs::File::create(&log_path).expect("sidecar log file");
        match c {
            Contender::Outrigger => {
                cmd.args(["sidecar", "--app-id", "bench", "--log-level", "warn"]);
            }
            Contender::Daprd => {
                // Standalone on loopback, with no placement or scheduler to wait on
                // (the command line of scripts/daprd.sh); other settings stay at
                // daprd's defaults (metrics and tracing as shipped).
                cmd.args([
                    "--mode",
                    "standalone",
                    "--app-id",
                    "bench",
                    "--log-level",
                    "warn",
                ])
                .args(["--dapr-internal-grpc-port", &free_port().to_string()])
                .args(["--metrics-port", &free_port().to_string()])
                .args([
                    "--placement-host-address",
                    "",
                    "--scheduler-host-address",
                    "",
                ]);
            }
        }
        cmd.args(["--dapr-http-port", &http.to_string()])
            .args(["--dapr-grpc-port", &grpc.to_string()])
            .args(["--dapr-listen-addresses", "127.0.0.1"])
            .arg("--resources-path")
            .arg(resources)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((port, protocol)) = app {
            cmd.args(["--app-port", &port.to_string(), "--app-protocol", protocol]);
        }
        let started = Instant::now();
        let mut child = Killed(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", c.name())),
        );
        match wait_healthz(&mut child.0, http, started) {
            Some(ready_after) => {
                return RunningSidecar {
                    child,
                    http,
                    grpc,
                    ready_after,
                };
            }
            None => {
                drop(child);
                last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: String = last_log
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                last_log = tail;
                if !last_log.to_lowercase().contains("address already in use") {
                    break;
                }
            }
        }
    }
    panic!("{} did not get ready:\n{last_log}", c.name());
}

/// Polls `/v1.0/healthz` until 204; the time since `started`, or None if the
/// process exited first. Gives up after 60 s.
fn wait_healthz(child: &mut Child, port: u16, started: Instant) -> Option<Duration> {
    use std::io::{Read, Write};
    let deadline = started + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ =
                s.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 32];
            if let Ok(n) = s.read(&mut buf)
                && buf[..n].starts_with(b"HTTP/1.1 204")
            {
                return Some(started.elapsed());
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        assert!(Instant::now() < deadline, "sidecar not ready within 60 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}
