//! `outrigger run` as a child process, its output collected line by line.

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

/// The message of a panic caught by `catch_unwind`.
pub fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn waiting_for_a_line_fails_at_once_with_the_output_when_the_launcher_exits() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<OsString> = [
        "--app-id",
        "dies",
        "--",
        "sh",
        "-c",
        "echo bind failed; exit 3",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut run = Launcher::start(&args, dir.path(), &[]);
    let started = Instant::now();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run.wait_line("== APP == READY", Duration::from_secs(60))
    }));
    let message = panic_text(waited.expect_err("no READY line"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?}",
        started.elapsed()
    );
    assert!(message.contains("exited (exit status: 3)"), "{message}");
    assert!(message.contains("== APP == bind failed"), "{message}");
}
