//! `outrigger run` as a child process, its output collected line by line, and
//! what the tests ask of the processes it leaves (or must not leave) behind.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

/// A running `outrigger run`, its stdout and stderr collected line by line.
/// Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Launcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Launcher {
    /// `outrigger run ARGS` in `dir`, with `env` added to the test's environment.
    pub fn start(args: &[OsString], dir: &Path, env: &[(&str, String)]) -> Launcher {
        let mut cmd = Command::new(outrigger_bin());
        cmd.arg("run")
            .args(args)
            .current_dir(dir)
            // RUST_LOG would override --log-level, and with it what the tests read.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start outrigger run");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), lines.clone()),
            collect(child.stderr.take().unwrap(), lines.clone()),
        ];
        Launcher {
            child,
            lines,
            readers,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn output(&self) -> String {
        self.lines().join("\n")
    }

    /// The exit status once `outrigger run` has exited; its output is then read
    /// to the end.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
            if self.status.is_some() {
                for r in self.readers.drain(..) {
                    // Pipes held by a process it left behind would keep a reader
                    // going forever: bounded.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while !r.is_finished() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if r.is_finished() {
                        r.join().unwrap();
                    }
                }
            }
        }
        self.status
    }

    /// Waits for a line that starts with `prefix` (or is `prefix`); returns the rest of it.
    /// Fails at once, with the whole output, if `outrigger run` exits first
    /// (an app or a sidecar that could not start), and after `timeout`.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .lines()
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_string));
            if let Some(rest) = found {
                return rest;
            }
            if let Some(status) = self.exited() {
                // The line may have come with the last output.
                if let Some(rest) = self
                    .lines()
                    .iter()
                    .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
                {
                    return rest;
                }
                panic!(
                    "outrigger run exited ({status}) before printing a line starting {prefix:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for a line starting {prefix:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many output lines are exactly `line`.
    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "signal {sig} to outrigger run");
    }

    /// Waits for `outrigger run` to exit and for its output to be read to the end.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "outrigger run did not exit within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- outrigger run output ---\n{}", tail(&self.output(), 80));
        }
        // A failed test must not leave apps behind: SIGTERM lets the launcher stop them.
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(pipe: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            lines.lock().unwrap().push(line);
        }
    })
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
