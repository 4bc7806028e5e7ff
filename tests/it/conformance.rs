//! Differential conformance: replays the cases recorded against the real daprd
//! (`tests/conformance/golden.json`, written by `scripts/conformance.sh --record`)
//! against this build of outrigger, and fails listing every case whose answer
//! differs from daprd's and is not a deliberate difference in `COMPAT.md`.
//!
//! Needs no daprd. Kafka: `KAFKA_BOOTSTRAP` (host:port) when set, otherwise
//! `scripts/conformance.sh` starts an Apache Kafka broker of its own
//! (`scripts/kafka.sh start --dir <tempdir>`) and stops it. The SDK programs
//! (`scripts/sdk-check.sh`) are not part of this replay (`--no-sdk`): they build
//! Go and Java programs and have their own test.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn outrigger_answers_as_daprd_recorded() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/conformance.sh"))
        .args([
            "--sidecar",
            "outrigger",
            "--bin",
            env!("CARGO_BIN_EXE_outrigger"),
            "--no-sdk",
        ])
        .current_dir(&root)
        .output()
        .expect("run scripts/conformance.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary line proves that cases ran: an empty run must not pass.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("conformance: "))
        .unwrap_or_else(|| panic!("no summary from the conformance runner\n{stdout}\n{stderr}"));
    let passed: usize = summary
        .trim_start_matches("conformance: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed > 0, "no case passed: {summary}\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "cases that answer differently from daprd (and are not in COMPAT.md):\n{stdout}\n--- runner log (tail)\n{}",
        tail(&stderr, 4000)
    );
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
