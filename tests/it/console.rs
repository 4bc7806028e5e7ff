//! Logs and the launcher's app output never block the async runtime: with one
//! worker thread (the default) and a stdout that nobody reads, the sidecar
//! still serves, and Kafka writes still go through; the lines that did not fit
//! are counted in `/metrics`.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid and process group, not reaped yet.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
            libc::kill(self.0.id() as i32, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn dropped_lines(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with("outrigger_log_lines_dropped_total{"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdout_nobody_reads_does_not_stall_the_sidecar_or_kafka() {
    let broker = Broker::start();
    let topic = unique("console");
    broker.create_topic(&topic, 1);
    let dir = components_dir(&[kafka_component(
        "out",
        &broker.addr(),
        &[("publishTopic", &topic)],
    )]);
    // Ports the launcher must be told: reserved (held, never listened on) so
    // that nobody else takes them while the sidecar binds them.
    let reserved = [
        ReservedPort::new(),
        ReservedPort::new(),
        ReservedPort::new(),
    ];
    let (http, grpc, metrics) = (reserved[0].port(), reserved[1].port(), reserved[2].port());
    // The app floods its output (far more than a pipe and the launcher's
    // buffer hold), then stays up; nothing ever reads the launcher's stdout.
    let (reader, writer) = std::io::pipe().unwrap();
    let child = Command::new(outrigger_bin())
        .args(["run", "--app-id", "flood", "--resources-path"])
        .arg(dir.path())
        .args(["--dapr-http-port", &http.to_string()])
        .args(["--dapr-grpc-port", &grpc.to_string()])
        .args(["--enable-metrics", "--metrics-port", &metrics.to_string()])
        .args(["--worker-threads", "1", "--log-level", "debug"])
        .args(["--", "sh", "-c", "seq 1 400000; exec sleep 600"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Saturated: lines are being dropped, so stdout is full and stays full.
    let dropped = wait_until("lines dropped for a full stdout", DEADLINE, || {
        assert!(child.0.try_wait().unwrap().is_none(), "the launcher exited");
        let client = client.clone();
        async move {
            let text = client
                .get(format!("http://127.0.0.1:{metrics}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            dropped_lines(&text).filter(|n| *n > 0)
        }
    })
    .await;
    assert!(dropped > 0);

    // The sidecar still answers and writes to Kafka, call after call.
    for i in 0..50 {
        let reply = client
            .post(format!("http://127.0.0.1:{http}/v1.0/bindings/out"))
            .body(format!(r#"{{"operation":"create","data":{i}}}"#))
            .send()
            .await
            .expect("the sidecar answers while stdout is full");
        assert_eq!(reply.status(), 204, "call {i}");
    }
    let brokers = broker.addr();
    let records = tokio::task::spawn_blocking(move || read_topic(&brokers, &topic, 50, DEADLINE))
        .await
        .unwrap();
    let texts: Vec<String> = records.iter().map(|r| r.text()).collect();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected);
    drop(reader);
}
