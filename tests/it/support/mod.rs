//! Test harness: a real Apache Kafka broker (shared by the run, or dedicated to
//! a test), sidecars started in-process or as child processes, test apps, and
//! helpers to feed a topic and read it back with an independent client.
//! Everything a test starts is stopped on drop. Tools come from
//! `scripts/test-deps.sh` (in `.tools/`). Test modules take it all with
//! `use crate::support::*;`.
#![allow(dead_code)]

pub mod apps;
pub mod broker;
pub mod fakes;
pub mod fixtures;
pub mod kafka;
pub mod launcher;
pub mod ports;
pub mod procs;
pub mod sidecar;

pub use apps::*;
pub use broker::*;
pub use fakes::*;
pub use fixtures::*;
pub use kafka::*;
pub use launcher::*;
pub use ports::*;
pub use procs::*;
pub use sidecar::*;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by `scripts/test-deps.sh`, or named by `OUTRIGGER_<NAME>`.
pub fn tool(name: &str) -> PathBuf {
    let var = format!("OUTRIGGER_{}", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".tools/bin").join(name);
    assert!(
        p.exists(),
        "{name} not found at {}: run scripts/test-deps.sh (or set {var})",
        p.display()
    );
    p
}

pub fn python() -> PathBuf {
    let p = repo_root().join(".tools/venv/bin/python");
    assert!(
        p.exists(),
        "the test venv is missing: run scripts/test-deps.sh"
    );
    p
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async flavour of [`wait_for`].
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until_every(what, timeout, Duration::from_millis(20), check).await
}

/// [`wait_until`], checking every `interval` (for checks that cost, such as
/// asking an API server).
pub async fn wait_until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until `check` holds, polling every 20 ms.
pub async fn wait_cond(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait_until(what, timeout, || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await
}
