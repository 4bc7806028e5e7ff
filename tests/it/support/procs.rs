//! App processes for the SDK and quickstart tests: Python, Node, Go and Java
//! apps whose output lines are collected as they come (killed on drop); and
//! what tests ask /proc about processes and the ports they listen on.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

/// A child process whose stdout and stderr lines are collected by reader threads.
pub struct Proc {
    pub name: String,
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    })
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Proc {
            name: name.to_string(),
            child,
            out,
            err,
            readers,
            status: None,
        }
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// The stdout lines that are JSON objects (SDK log lines are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_lines()
            .iter()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// JSON lines whose `event` field is `event`.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Everything the process printed, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.out.lock().unwrap().join("\n"),
            self.name,
            self.err.lock().unwrap().join("\n")
        )
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits for the pipes to close after an exit, so that no output line is missed.
    fn drain(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !self.readers.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to end; panics (with its output) after `timeout`.
    /// Blocking: call from `spawn_blocking` in async tests.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                self.drain();
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}\n{}",
                self.name,
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout`; kills it
    /// after that and returns `None`. Blocking.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited().is_none() {
            // SAFETY: signals only the child this struct started and has not reaped.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + timeout;
        while self.exited().is_none() {
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.drain();
        self.status
    }

    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.drain();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a process to its end off the async runtime; panics after `timeout`.
pub async fn run_to_end(proc: Proc, timeout: Duration) -> (Proc, ExitStatus) {
    tokio::task::spawn_blocking(move || {
        let mut proc = proc;
        let status = proc.wait_exit(timeout);
        (proc, status)
    })
    .await
    .unwrap()
}

/// The single JSON line a script printed.
pub fn only_json_line(proc: &Proc) -> serde_json::Value {
    let lines = proc.json_lines();
    assert_eq!(
        lines.len(),
        1,
        "expected one JSON line\n{}",
        proc.transcript()
    );
    lines[0].clone()
}

/// `node SCRIPT` from PATH, run in `dir` so that `require` finds its `node_modules`.
pub fn node(dir: &Path, script: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(dir).arg(script);
    cmd
}

pub fn tests_node_dir() -> PathBuf {
    repo_root().join("tests/node")
}

/// A script of tests/python, run with the test venv.
pub fn python_script(script: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/python").join(script))
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

/// A developer's own Dapr settings, which would steer an SDK (or a sidecar) elsewhere.
pub const DAPR_ENV: &[&str] = &[
    "DAPR_HTTP_ENDPOINT",
    "DAPR_GRPC_ENDPOINT",
    "DAPR_API_TOKEN",
    "APP_API_TOKEN",
    "DAPR_HTTP_PORT",
    "DAPR_GRPC_PORT",
    "APP_PORT",
];

/// Keeps a developer's own Dapr settings from steering an SDK elsewhere.
pub fn clear_dapr_env(cmd: &mut Command) -> &mut Command {
    for var in DAPR_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// True while the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Live processes whose working directory is under `dir` (apps we started there).
pub fn processes_in(dir: &Path) -> Vec<(i32, String)> {
    let dir = dir.canonicalize().unwrap();
    let mut found = Vec::new();
    for (pid, proc_dir) in pids() {
        let Ok(cwd) = std::fs::read_link(proc_dir.join("cwd")) else {
            continue;
        };
        if cwd.starts_with(&dir) && alive(pid) {
            let cmdline = std::fs::read_to_string(proc_dir.join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            found.push((pid, cmdline));
        }
    }
    found
}

fn pids() -> impl Iterator<Item = (i32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<i32>().ok()?, e.path())))
}

/// The processes (that this user may inspect) with a socket listening on TCP
/// `port`, any address. Unlike "can the port be bound", this does not change
/// when some other process on the machine takes the port after ours let it go.
pub fn listeners_on(port: u16) -> Vec<(i32, String)> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .is_some_and(|(_, p)| u16::from_str_radix(p, 16) == Ok(port));
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let mut found = Vec::new();
    if inodes.is_empty() {
        return found;
    }
    for (pid, proc_dir) in pids() {
        let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
        });
        if holds {
            let cmdline = std::fs::read_to_string(proc_dir.join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            found.push((pid, cmdline));
        }
    }
    found
}

/// True when this (test) process has a socket listening on `port`.
pub fn listening_here(port: u16) -> bool {
    let me = std::process::id() as i32;
    listeners_on(port).iter().any(|(pid, _)| *pid == me)
}

/// Asserts that none of the processes started in `dir` and no process `pids`
/// names listens on `port` any more.
pub fn assert_released(port: u16, dir: &Path, pids: &[i32]) {
    let dir = dir.canonicalize().unwrap();
    let ours: Vec<(i32, String)> = listeners_on(port)
        .into_iter()
        .filter(|(pid, _)| {
            pids.contains(pid)
                || std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir))
        })
        .collect();
    assert!(ours.is_empty(), "port {port} still held by {ours:?}");
}
