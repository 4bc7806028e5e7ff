//! Child processes of the launcher: started in their own process group (so that
//! a signal reaches the grandchildren too), their output copied line by line to
//! our stdout behind a prefix, and stopped with SIGTERM, then SIGKILL after the
//! grace period.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// kill(2), which std does not wrap.
mod sys {
    pub use libc::{SIGKILL, SIGTERM};

    /// Sends `sig` to a process (`pid` > 0) or a process group (`pid` < 0);
    /// signal 0 only checks that the target exists. True when delivered.
    pub fn send(pid: i32, sig: libc::c_int) -> bool {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe { libc::kill(pid, sig) == 0 }
    }
}

/// A signal the launcher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Term => sys::SIGTERM,
            Signal::Kill => sys::SIGKILL,
        }
    }
}

/// Sends a signal to one process (not its group).
pub fn signal_pid(pid: u32, sig: Signal) -> bool {
    i32::try_from(pid).is_ok_and(|p| p > 0 && sys::send(p, sig.number()))
}

/// Sends a signal to every process of a group.
pub fn signal_group(pgid: u32, sig: Signal) -> bool {
    i32::try_from(pgid).is_ok_and(|p| p > 0 && sys::send(-p, sig.number()))
}

/// True while any process of the group is alive (zombies do not count).
pub fn group_exists(pgid: u32) -> bool {
    if !i32::try_from(pgid).is_ok_and(|p| p > 0 && sys::send(-p, 0)) {
        return false;
    }
    // kill(2) counts zombies too, and an init that does not reap orphans (some
    // containers) keeps them forever: ask /proc where there is one.
    live_members(pgid).is_none_or(|n| n > 0)
}

/// The number of live (not zombie) processes in a group, from /proc; None without /proc.
fn live_members(pgid: u32) -> Option<usize> {
    let pgid = pgid.to_string();
    let mut live = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, pgrp) = (fields.next(), fields.nth(1));
        if pgrp == Some(pgid.as_str()) && !matches!(state, Some("Z" | "X")) {
            live += 1;
        }
    }
    Some(live)
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub dir: Option<PathBuf>,
}

/// How each output line of a child is written to our stdout.
pub trait LineSink: Send + Sync + 'static {
    fn line(&self, line: &str);
}

/// Prefixes every line with a fixed tag (`== APP == `).
pub struct Prefix(pub String);

impl LineSink for Prefix {
    fn line(&self, line: &str) {
        print_line(&format!("{}{line}", self.0));
    }
}

/// Writes one line to stdout in one call, so that concurrent writers do not
/// interleave within a line, through the log's stdout thread: a paused
/// terminal never blocks the runtime, and lines keep their order with the logs.
pub fn print_line(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    // A closed stdout (the reader went away) must not take the launcher down.
    let _ = crate::logging::console().clone().write_all(text.as_bytes());
}

/// A running child in its own process group.
pub struct Process {
    child: Child,
    pid: u32,
    pumps: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts the child with stdin closed and stdout/stderr copied to `sink`.
    pub fn spawn(spec: &Spec, sink: Arc<dyn LineSink>) -> std::io::Result<Process> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            // Its own group: signals to the group reach the grandchildren, and a
            // Ctrl-C at the terminal reaches only the launcher, which stops it in order.
            .process_group(0)
            // A background process group reading the terminal would be stopped (SIGTTIN).
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(dir) = &spec.dir {
            cmd.current_dir(dir);
        }
        // If the launcher itself is killed (SIGKILL, OOM) it cannot stop the app:
        // ask the kernel to send the app SIGTERM then. Linux only. The signal is
        // tied to the spawning thread: this runs on the main thread (block_on),
        // which lives as long as the process; a spawn_blocking thread would not
        // (it exits when idle, and the kernel would then stop a healthy app).
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: between fork and exec only async-signal-safe calls are made
            // (signal, prctl, getppid) and nothing is allocated.
            unsafe {
                cmd.pre_exec(move || {
                    // The child inherits tokio's SIGTERM handler until exec: with it
                    // a death signal arriving before exec would be swallowed.
                    libc::signal(libc::SIGTERM, libc::SIG_DFL);
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The launcher died before the prctl took effect: do not start.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(out, sink.clone())));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(err, sink)));
        }
        Ok(Process { child, pid, pumps })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stops the child: SIGTERM to its group, SIGKILL to the group after `grace`.
    /// Returns its exit status (None if it could not be waited for).
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        signal_group(self.pid, Signal::Term);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                signal_group(self.pid, Signal::Kill);
                self.child.wait().await.ok()
            }
        };
        self.reap_group(grace).await;
        status
    }

    /// Stops the child at once (SIGKILL to its group).
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        signal_group(self.pid, Signal::Kill);
        let status = self.child.wait().await.ok();
        self.finish_output().await;
        status
    }

    /// After the child exited: gives what is left of its group (grandchildren)
    /// `grace` to exit after a SIGTERM, then kills it, and drains the output.
    pub async fn reap_group(&mut self, grace: Duration) {
        if group_exists(self.pid) {
            signal_group(self.pid, Signal::Term);
            let deadline = tokio::time::Instant::now() + grace;
            while group_exists(self.pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            signal_group(self.pid, Signal::Kill);
        }
        self.finish_output().await;
    }

    /// Waits (briefly) for the last output lines to be written.
    async fn finish_output(&mut self) {
        for pump in self.pumps.drain(..) {
            // A pipe inherited by a process outside the group could stay open forever.
            let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
        }
    }
}

/// Copies lines from a child pipe to the sink; invalid UTF-8 is replaced, not fatal.
async fn pump(pipe: impl AsyncRead + Unpin, sink: Arc<dyn LineSink>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                sink.line(&String::from_utf8_lossy(&buf));
            }
        }
    }
}

/// The exit code `outrigger run` reports for a child: its code, or 128 + the
/// signal that killed it (as shells do).
pub fn exit_code(status: &ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
