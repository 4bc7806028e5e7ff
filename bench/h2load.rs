//! A cross-check with an independent load tool written in C, nghttp2's
//! `h2load`, when it is installed: the same requests (the same prebuilt gRPC
//! frame or JSON body) at the same concurrency, so that a sidecar's rate can
//! be told apart from the bench's own generator's cost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::load::Transport;
use crate::sidecar::RunningSidecar;

#[derive(Debug, Clone, Default)]
pub struct H2Result {
    pub rate: Option<f64>,
    pub succeeded: u64,
    pub failed: u64,
    pub error: Option<String>,
}

pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("h2load"))
        .find(|p| p.is_file())
}

/// gRPC: 4 HTTP/2 connections with the callers' streams spread over them
/// (as the bench's own generator does); HTTP: one HTTP/1.1 connection per
/// caller, no pipelining. h2load counts an HTTP 2xx as a success, so for gRPC
/// it does not see a grpc-status error; the bench's own rows check that.
pub fn run(
    tool: &Path,
    t: Transport,
    s: &RunningSidecar,
    payload: usize,
    concurrency: usize,
    duration: Duration,
    tmp: &Path,
) -> H2Result {
    let body = tmp.join(format!("h2load-{}-{payload}.bin", t.name()));
    let mut cmd = Command::new(tool);
    let secs = duration.as_secs().max(1).to_string();
    cmd.args(["-D", &secs, "-t", "1"]);
    match t {
        Transport::Grpc => {
            std::fs::write(&body, crate::load::grpc_frame("bench", payload)).unwrap();
            let conns = concurrency.div_ceil(16).max(1);
            let streams = concurrency.div_ceil(conns);
            cmd.args(["-c", &conns.to_string(), "-m", &streams.to_string()])
                .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
                .arg("-d")
                .arg(&body)
                .arg(format!(
                    "http://127.0.0.1:{}/dapr.proto.runtime.v1.Dapr/InvokeBinding",
                    s.grpc
                ));
        }
        _ => {
            let json = format!(
                "{{\"data\":\"{}\",\"operation\":\"create\"}}",
                "x".repeat(payload.saturating_sub(2))
            );
            std::fs::write(&body, json).unwrap();
            cmd.args(["--h1", "-c", &concurrency.to_string(), "-m", "1"])
                .args(["-H", "content-type: application/json"])
                .arg("-d")
                .arg(&body)
                .arg(format!("http://127.0.0.1:{}/v1.0/bindings/bench", s.http));
        }
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            return H2Result {
                error: Some(format!("could not run: {e}")),
                ..Default::default()
            };
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut r = parse(&text);
    if !out.status.success() || r.rate.is_none() {
        r.error = Some(format!(
            "exit {}; {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .chain(text.lines())
                .take(6)
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    r
}

/// Reads `finished in 5.00s, 27000.00 req/s, ...` and
/// `requests: N total, N started, N done, N succeeded, N failed, ...`.
fn parse(text: &str) -> H2Result {
    let mut r = H2Result::default();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("finished in ") {
            r.rate = rest
                .split(',')
                .nth(1)
                .and_then(|x| x.trim().strip_suffix(" req/s"))
                .and_then(|x| x.trim().parse().ok());
        }
        if let Some(rest) = l.strip_prefix("requests: ") {
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                if let (Some(n), Some(what)) = (it.next(), it.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "succeeded" => r.succeeded = n,
                        "failed" => r.failed = n,
                        _ => {}
                    }
                }
            }
        }
    }
    r
}
