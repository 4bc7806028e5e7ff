//! App processes for the SDK and quickstart tests: Python, Node, Go and Java
//! apps whose output lines are collected as they come. Killed on drop.

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

/// Keeps a developer's own Dapr settings from steering an SDK elsewhere.
pub fn clear_dapr_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "DAPR_HTTP_ENDPOINT",
        "DAPR_GRPC_ENDPOINT",
        "DAPR_API_TOKEN",
        "APP_API_TOKEN",
        "DAPR_HTTP_PORT",
        "DAPR_GRPC_PORT",
        "APP_PORT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
