//! Apache Kafka brokers (`scripts/kafka.sh`): the one shared by the run, or a
//! dedicated one a test may kill, restart or stall; and tansu, the quickstart's
//! development broker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::*;

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

/// tansu, the embedded development broker of `scripts/dev-broker.sh` and the
/// quickstart: only its smoke test uses it.
pub struct DevBroker {
    child: Child,
    pub port: u16,
    /// Held while tansu runs (it binds with SO_REUSEADDR, as tokio does).
    _reserved: ReservedPort,
    dir: tempfile::TempDir,
}

impl DevBroker {
    pub fn start() -> DevBroker {
        let dir = tempfile::tempdir().unwrap();
        let reserved = ReservedPort::new();
        let port = reserved.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let child = Command::new(tool("tansu"))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let mut broker = DevBroker {
            child,
            port,
            _reserved: reserved,
            dir,
        };
        wait_for("tansu to listen", Duration::from_secs(20), || {
            if let Some(status) = broker.child.try_wait().unwrap() {
                panic!(
                    "tansu exited ({status}):\n{}",
                    tail(
                        &std::fs::read_to_string(broker.dir.path().join("tansu.log"))
                            .unwrap_or_default(),
                        30
                    )
                );
            }
            port_open(port).then_some(())
        });
        broker
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
