//! Test harness: a real Apache Kafka broker (shared by the run, or dedicated to
//! a test), sidecars started in-process on port 0 or as child processes, and
//! helpers to read a topic back with an independent client. Everything a test
//! starts is stopped on drop. Tools come from `scripts/test-deps.sh` (in `.tools/`).
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

/// An Apache Kafka broker (`scripts/kafka.sh`): the one shared by every test of
/// a run, or a dedicated one that a test owns and may kill, restart or stall.
pub struct Broker {
    /// The broker's folder: `broker.env`, TLS files, log directory, log.
    dir: PathBuf,
    env: HashMap<String, String>,
    /// The plaintext listener's port.
    pub port: u16,
    /// Only for a dedicated broker: the JVM (`kafka.sh run` execs it).
    child: Option<Child>,
    dedicated: bool,
    _tmp: Option<tempfile::TempDir>,
}

/// Reads `KEY=VALUE` lines.
fn read_env(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

fn kafka_script() -> PathBuf {
    repo_root().join("scripts/kafka.sh")
}

fn plaintext_port(env: &HashMap<String, String>) -> u16 {
    env.get("KAFKA_PLAINTEXT")
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("KAFKA_PLAINTEXT in broker.env")
}

/// True once the broker answers a metadata request on its plaintext listener.
fn answers_metadata(addr: &str) -> bool {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("reconnect.backoff.max.ms", "200")
        .create()
    {
        Ok(c) => c,
        Err(_) => return false,
    };
    consumer
        .fetch_metadata(None, Duration::from_secs(2))
        .is_ok_and(|m| !m.brokers().is_empty())
}

impl Broker {
    /// The broker shared by every test of this run (its own topics and groups per
    /// test): the one `scripts/test.sh` started (`OUTRIGGER_KAFKA_DIR`), else the
    /// one in `.tools/kafka-test`, started on first use and left running.
    pub fn start() -> Broker {
        Self::shared()
    }

    pub fn shared() -> Broker {
        let dir = std::env::var_os("OUTRIGGER_KAFKA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".tools/kafka-test"));
        let env_file = dir.join("broker.env");
        let alive = |env: &HashMap<String, String>| {
            let pid_alive = env
                .get("KAFKA_PID")
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
            pid_alive && port_open(plaintext_port(env))
        };
        let env = match read_env(&env_file).filter(|e| e.contains_key("KAFKA_PID") && alive(e)) {
            Some(env) => env,
            None => {
                // kafka.sh serialises concurrent starts with a lock: the first
                // test process starts the broker, the others wait for it.
                let out = Command::new("bash")
                    .arg(kafka_script())
                    .args(["start", "--dir"])
                    .arg(&dir)
                    .stdin(Stdio::null())
                    .output()
                    .expect("run scripts/kafka.sh start");
                assert!(
                    out.status.success(),
                    "scripts/kafka.sh start --dir {} failed:\n{}\n{}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                read_env(&env_file).expect("broker.env after kafka.sh start")
            }
        };
        Broker {
            port: plaintext_port(&env),
            dir,
            env,
            child: None,
            dedicated: false,
            _tmp: None,
        }
    }

    /// A broker of its own (own JVM, folder and ports), for tests that kill,
    /// restart or stall it. A lost race for a port is retried on new ports.
    pub fn dedicated() -> Broker {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut b = Broker {
            dir,
            env: HashMap::new(),
            port: 0,
            child: None,
            dedicated: true,
            _tmp: Some(tmp),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log_path = self.dir.join("run.log");
        for attempt in 1..=3 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap();
            // `run` prepares the folder (keeping its ports) and execs the JVM, so
            // this child is the broker itself.
            let mut child = Command::new("bash")
                .arg(kafka_script())
                .args(["run", "--dir"])
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("run scripts/kafka.sh run");
            let deadline = Instant::now() + Duration::from_secs(180);
            let ready = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Err(format!("exited with {status}"));
                }
                if let Some(env) = read_env(&self.dir.join("broker.env"))
                    && env.contains_key("KAFKA_PLAINTEXT")
                {
                    let addr = format!("127.0.0.1:{}", plaintext_port(&env));
                    if port_open(plaintext_port(&env)) && answers_metadata(&addr) {
                        self.port = plaintext_port(&env);
                        self.env = env;
                        break Ok(());
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err("did not answer within 180 s".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            match ready {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) if attempt < 3 => {
                    eprintln!("dedicated Kafka broker {why} (attempt {attempt}); retrying");
                }
                Err(why) => panic!(
                    "dedicated Kafka broker in {} {why}:\n{}",
                    self.dir.display(),
                    tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 40)
                ),
            }
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A value of `broker.env`: listener addresses (`KAFKA_SASL_SSL`, ...), TLS
    /// file paths (`KAFKA_CA_CERT`, ...), test credentials.
    pub fn env(&self, key: &str) -> String {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in {}/broker.env", self.dir.display()))
            .clone()
    }

    /// The text of a file that `broker.env` names (a PEM certificate or key).
    pub fn pem(&self, key: &str) -> String {
        std::fs::read_to_string(self.env(key)).unwrap()
    }

    /// Creates a topic and waits until the broker reports it.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        create_topic_on(&self.addr(), topic, partitions)
    }

    fn own_child(&mut self) -> &mut Child {
        assert!(
            self.dedicated,
            "only a dedicated broker may be killed or stalled"
        );
        self.child.as_mut().expect("the broker is running")
    }

    /// SIGKILL: no goodbye to clients. The log directory stays for [`restart`].
    pub fn kill(&mut self) {
        if !self.dedicated {
            panic!("only a dedicated broker may be killed: use Broker::dedicated()");
        }
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed broker again on the same log directory and ports.
    pub fn restart(&mut self) {
        assert!(
            self.dedicated && self.child.is_none(),
            "kill the dedicated broker first"
        );
        let ports = self.port;
        self.spawn();
        assert_eq!(self.port, ports, "the restarted broker must keep its ports");
    }

    /// Kills the broker and loses everything it stored (topics, records,
    /// offsets), then starts an empty one on the same ports.
    pub fn restart_empty(&mut self) {
        self.kill();
        let data = self.env("KAFKA_LOG_DIR");
        std::fs::remove_dir_all(&data).unwrap();
        self.restart();
    }

    fn signal(&mut self, sig: libc::c_int) {
        let pid = self.own_child().id() as libc::pid_t;
        assert_eq!(
            unsafe { libc::kill(pid, sig) },
            0,
            "signal {sig} to the broker"
        );
    }

    /// Freezes the broker: connections stay open, nothing is answered.
    pub fn stall(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    pub fn log(&self) -> String {
        let path = self
            .env
            .get("KAFKA_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.join("run.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.dedicated {
            self.kill();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Creates a topic on `brokers` and waits until the broker reports it.
pub fn create_topic_on(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    // The admin future is driven by librdkafka's thread: no async runtime needed.
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        futures::executor::block_on(admin.create_topics(&topics, &options)).expect("create_topics");
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
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    wait_for(
        &format!("topic {topic} in metadata"),
        Duration::from_secs(30),
        || {
            let md = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(2))
                .ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            (t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0))
            .then_some(())
        },
    );
}

/// tansu, the embedded development broker of `scripts/dev-broker.sh` and the
/// quickstart: only its smoke test uses it.
pub struct DevBroker {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl DevBroker {
    pub fn start() -> DevBroker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
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
            .stdout(std::fs::File::create(dir.path().join("tansu.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_for("tansu to listen", Duration::from_secs(20), || {
            port_open(port).then_some(())
        });
        DevBroker {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// An `outrigger sidecar` child process; SIGKILLed on drop. Started by
/// [`SidecarProc::builder`]: ports are picked free and, should another process
/// take one first (the sidecar then exits at once), picked again.
pub struct SidecarProc {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    pub log: PathBuf,
}

pub struct SidecarProcBuilder {
    resources: PathBuf,
    app_id: String,
    app_port: Option<u16>,
    args: Vec<String>,
    log: PathBuf,
}

impl SidecarProcBuilder {
    pub fn app_id(mut self, id: &str) -> Self {
        self.app_id = id.to_string();
        self
    }
    pub fn app_port(mut self, port: u16) -> Self {
        self.app_port = Some(port);
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    /// The log file (appended to, so that restarts keep one history).
    pub fn log(mut self, path: &Path) -> Self {
        self.log = path.to_path_buf();
        self
    }

    pub fn start(self) -> SidecarProc {
        for attempt in 1..=3 {
            let (http, grpc) = (free_port(), free_port());
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut cmd = Command::new(outrigger_bin());
            cmd.arg("sidecar")
                .args(["--app-id", &self.app_id])
                .args(["--dapr-http-port", &http.to_string()])
                .args(["--dapr-grpc-port", &grpc.to_string()])
                .args(["--dapr-listen-addresses", "127.0.0.1"])
                .arg("--resources-path")
                .arg(&self.resources)
                .args(&self.args)
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .stdin(Stdio::null());
            if let Some(p) = self.app_port {
                cmd.args(["--app-port", &p.to_string()]);
            }
            let mut child = cmd.spawn().expect("start outrigger sidecar");
            let deadline = Instant::now() + Duration::from_secs(60);
            let started = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Err(status);
                }
                if port_open(http) && port_open(grpc) {
                    break Ok(());
                }
                assert!(
                    Instant::now() < deadline,
                    "the sidecar did not listen within 60 s:\n{}",
                    tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            match started {
                Ok(()) => {
                    return SidecarProc {
                        child,
                        http_port: http,
                        grpc_port: grpc,
                        log: self.log.clone(),
                    };
                }
                Err(status) if attempt < 3 => {
                    eprintln!(
                        "sidecar exited with {status} before listening (attempt {attempt}); retrying"
                    );
                }
                Err(status) => panic!(
                    "the sidecar exited with {status}:\n{}",
                    tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
                ),
            }
        }
        unreachable!()
    }
}

impl SidecarProc {
    /// A sidecar over the component files in `resources`.
    pub fn builder(resources: &Path) -> SidecarProcBuilder {
        SidecarProcBuilder {
            resources: resources.to_path_buf(),
            app_id: unique("app"),
            app_port: None,
            args: Vec::new(),
            log: resources.join("sidecar.log"),
        }
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics, with the end of its log, if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the sidecar process died: {status:?}\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
            );
        }
    }

    /// Sends `signal` (SIGTERM, SIGINT, ...) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The sidecar's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no commit, no goodbye to the consumer group.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SidecarProc {
    fn drop(&mut self) {
        self.kill9();
    }
}
