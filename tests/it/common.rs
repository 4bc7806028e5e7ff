//! Test harness: a real Kafka-protocol broker (tansu) on a free loopback port,
//! sidecars started in-process on port 0 or as child processes, and helpers to
//! read a topic back with an independent client. Everything started is stopped
//! on drop. Tools come from `scripts/test-deps.sh` (in `.tools/`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use outrigger::{Sidecar, SidecarConfig};

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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A tansu broker with in-memory storage on a free loopback port.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tool("tansu"))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_for("tansu to listen", Duration::from_secs(20), || {
            port_open(port).then_some(())
        });
        Broker {
            child: Some(child),
            port,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic and waits until the broker reports it.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .unwrap();
        let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
        // The admin future is driven by librdkafka's thread: no async runtime needed.
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = futures::executor::block_on(admin.create_topics(&topics, &options))
            .expect("create_topics");
        for r in results {
            if let Err((name, code)) = r {
                assert_eq!(
                    code,
                    rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                    "create topic {name}: {code:?}"
                );
            }
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .unwrap();
        wait_for(
            &format!("topic {topic} in metadata"),
            Duration::from_secs(10),
            || {
                let md = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(2))
                    .ok()?;
                let t = md.topics().iter().find(|t| t.name() == topic)?;
                (t.error().is_none() && t.partitions().len() == partitions as usize).then_some(())
            },
        );
    }

    /// Kills the broker (memory storage: its data is gone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, Vec<u8>>,
}

impl Record {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn record(m: &OwnedMessage) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Reads every partition of `topic` from the beginning, with no consumer group,
/// until `n` records arrived (panics after `timeout`). Records come sorted by
/// partition, then offset.
pub fn read_topic(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = wait_for(&format!("metadata of {topic}"), timeout, || {
        consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .ok()
            .filter(|md| {
                md.topics()
                    .first()
                    .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
            })
    });
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} records from {topic} within {timeout:?}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(record(&m.detach()));
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Reads whatever the topic holds, waiting `settle` with no new record before returning.
pub fn read_all(brokers: &str, topic: &str, settle: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push(record(&m.detach()));
            last = Instant::now();
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// A `bindings.kafka` component; `extra` adds or overrides metadata.
pub fn kafka_component(name: &str, brokers: &str, extra: &[(&str, &str)]) -> String {
    let mut meta: Vec<(String, String)> = vec![("brokers".into(), brokers.into())];
    for (k, v) in extra {
        meta.retain(|(n, _)| n != k);
        meta.push((k.to_string(), v.to_string()));
    }
    let items: String = meta
        .iter()
        .map(|(k, v)| format!("  - name: {k}\n    value: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n{items}"
    )
}

/// The quickstart's Kafka component text (from the example folder or the
/// deploy ConfigMap) pointed at `brokers`, `topic` and `group` instead of its
/// own broker address `was_brokers`, topic `sample` and group `group1`. Fails
/// if the component no longer has that shape.
pub fn retarget_quickstart_component(
    text: &str,
    was_brokers: &str,
    brokers: &str,
    topic: &str,
    group: &str,
) -> String {
    let mut out = String::new();
    let mut replaced = [0; 3];
    let broker_line = format!("value: {was_brokers}");
    for line in text.lines() {
        let trimmed = line.trim();
        let rewritten = if trimmed == broker_line {
            replaced[0] += 1;
            line.replace(was_brokers, brokers)
        } else if trimmed == "value: sample" {
            // `topics` and `publishTopic` both name the topic `sample`.
            replaced[1] += 1;
            line.replace("sample", topic)
        } else if trimmed == "value: group1" {
            replaced[2] += 1;
            line.replace("group1", group)
        } else {
            line.to_string()
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    assert_eq!(replaced, [1, 2, 1], "the component changed shape:\n{text}");
    out
}

/// Writes component documents into a fresh folder.
pub fn components_dir(docs: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, doc) in docs.iter().enumerate() {
        std::fs::write(dir.path().join(format!("component-{i}.yaml")), doc).unwrap();
    }
    dir
}

/// A sidecar running in this process, on free ports.
pub struct TestSidecar {
    pub sidecar: Option<Sidecar>,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
}

impl TestSidecar {
    pub fn http(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.sidecar.as_ref().unwrap().http_port()
        )
    }
    pub fn grpc(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.sidecar.as_ref().unwrap().grpc_port()
        )
    }
    pub fn grpc_port(&self) -> u16 {
        self.sidecar.as_ref().unwrap().grpc_port()
    }
    pub fn http_port(&self) -> u16 {
        self.sidecar.as_ref().unwrap().http_port()
    }
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.sidecar.take() {
            s.wait().await;
        }
    }
}

impl Drop for TestSidecar {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The config tests start from: free ports, loopback, short timeouts.
pub fn test_config(dir: &Path) -> SidecarConfig {
    SidecarConfig {
        app_id: unique("app"),
        http_port: 0,
        grpc_port: 0,
        listen_addresses: vec!["127.0.0.1".into()],
        resources_paths: vec![dir.to_path_buf()],
        graceful_shutdown: Duration::from_secs(3),
        ..SidecarConfig::default()
    }
}

/// Starts an in-process sidecar over the given component documents.
pub async fn start_sidecar(docs: &[String], tweak: impl FnOnce(&mut SidecarConfig)) -> TestSidecar {
    init_logs();
    let dir = components_dir(docs);
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let shutdown = CancellationToken::new();
    let sidecar = Sidecar::start(config, shutdown.clone())
        .await
        .expect("sidecar starts");
    TestSidecar {
        sidecar: Some(sidecar),
        shutdown,
        dir,
    }
}

pub fn init_logs() {
    outrigger::logging::init(
        &std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        false,
        "test",
    );
}

/// Path of the built `outrigger` binary (cargo builds it for integration tests).
pub fn outrigger_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_outrigger"))
}
