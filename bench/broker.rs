//! The Apache Kafka broker the run measures against: an existing one
//! (`--brokers ADDR`, or a broker directory written by `scripts/kafka.sh`:
//! `--kafka-dir DIR` or env `OUTRIGGER_KAFKA_DIR`), else a fresh one started
//! with `scripts/kafka.sh start --dir <tempdir>` and stopped when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Broker {
    pub addr: String,
    pub version: String,
    /// The broker's JVM, to read its CPU time; None if unknown.
    pub pid: Option<u32>,
    pub origin: String,
    /// Set when this run started the broker: stopped on drop.
    own: Option<(PathBuf, tempfile::TempDir)>,
}

fn read_env(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn from_env(env: &HashMap<String, String>) -> Option<(String, String, Option<u32>)> {
    let addr = env.get("KAFKA_PLAINTEXT")?.clone();
    let pid = env.get("KAFKA_PID").and_then(|p| p.parse().ok());
    let version = env
        .get("KAFKA_VERSION")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    Some((addr, version, pid))
}

impl Broker {
    pub fn acquire(brokers: Option<String>, kafka_dir: Option<PathBuf>, script: &Path) -> Broker {
        if let Some(addr) = brokers {
            let version = kafka_dir
                .as_deref()
                .and_then(|d| read_env(&d.join("broker.env")))
                .and_then(|e| e.get("KAFKA_VERSION").cloned())
                .unwrap_or_else(|| "unknown (given with --brokers)".into());
            return Broker {
                addr,
                version,
                pid: None,
                origin: "an existing broker (--brokers)".into(),
                own: None,
            };
        }
        if let Some(dir) = kafka_dir {
            let env = read_env(&dir.join("broker.env"));
            if let Some((addr, version, pid)) = env.as_ref().and_then(from_env)
                && pid.is_some_and(alive)
            {
                return Broker {
                    addr,
                    version,
                    pid,
                    origin: format!("the running broker of {}", dir.display()),
                    own: None,
                };
            }
            eprintln!(
                "no running broker in {}: starting one for this run",
                dir.display()
            );
        }
        let tmp = tempfile::Builder::new()
            .prefix("outrigger-bench-kafka")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let status = Command::new("bash")
            .arg(script)
            .args(["start", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/kafka.sh");
        assert!(status.success(), "scripts/kafka.sh start failed");
        let env = read_env(&dir.join("broker.env")).expect("broker.env");
        let (addr, version, pid) = from_env(&env).expect("KAFKA_PLAINTEXT in broker.env");
        Broker {
            addr,
            version,
            pid,
            origin: "started for this run (scripts/kafka.sh start)".into(),
            own: Some((script.to_path_buf(), tmp)),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some((script, dir)) = &self.own {
            let _ = Command::new("bash")
                .arg(script)
                .args(["stop", "--dir"])
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}
